// Losses that revive dead latents (their gradients are added to the main ones):
//   AuxK (Gao et al. 2024): the top k_aux dead latents' pre-activations reconstruct the residual
//     e = x - x_hat (stop-gradient): L = coef * min(n_dead/k_aux, 1) * mean_B ||e_hat - e||^2,
//     e_hat = sum a_i W_dec_i with no b_dec (sparsify's b_dec double count avoided).
//   Ghost grads (Anthropic, Jan 2024; SAELens v5 formula): g = exp(z_dead) W_dec_dead rescaled
//     to half the residual norm; L = mean((mse / (ghost + 1e-6)).detach() * ghost) elementwise.
#ifndef CTERP_TRAIN_REVIVE_H
#define CTERP_TRAIN_REVIVE_H

#include <stdint.h>

#include "sae/arch.h"

// Both return the loss value and add gradients into grads (layout of sae->params).
// dead (N) marks dead latents; n_dead is their count (> 0).
// AuxK's products run either over the selected (token, dead latent) pairs, in token tiles
// (arch_backward_pairs), or as dense GEMMs over the dead columns with zeros off the selection
// (cheaper when the dead set is under ~4 k_aux). mode: -1 chooses, 0 pairs, 1 dense.
// Both use the dead latents' pre-activations from w->zsub when the forward copied them for the
// same list (arch_opts.sub), else gather them from w->z.
double revive_auxk(arch_work *w, const cterp_sae *sae, const float *x, const uint8_t *dead,
                   int64_t n_dead, int k_aux, float coef, int rescale, float *grads, int mode);
double revive_ghost(arch_work *w, const cterp_sae *sae, const float *x, const uint8_t *dead,
                    int64_t n_dead, float *grads);

#endif
