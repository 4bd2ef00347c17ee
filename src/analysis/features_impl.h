// Shared by features.c (collect) and features_io.c (save/load): the allocation of a result.
#ifndef CTERP_ANALYSIS_FEATURES_IMPL_H
#define CTERP_ANALYSIS_FEATURES_IMPL_H

#include "cterp/features.h"

// The struct, N features, n_logits logit slots, n_neigh co-firing and decoder neighbour slots
// and n_loss ablation-effect slots per feature, and V vocab pointers (one block).
cterp_status features_alloc(cterp_features **out, int64_t N, int n_logits, int n_neigh, int n_loss,
                            int64_t V);
// The token view's arrays for n windows of T tokens (one block in f->view_mem).
cterp_status features_view_alloc(cterp_features *f, int n, int64_t T);
// One block for latent i: n_ex examples with room for ctx tokens each (NULL if n_ex == 0 or no
// memory).
cterp_feature_example *examples_alloc(cterp_features *f, int64_t i, int64_t n_ex, int64_t ctx);

#endif
