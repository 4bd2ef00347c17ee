// cterp dashboards: self-contained HTML (inline CSS, inline SVG plots, a few lines of inline
// JavaScript for sorting; no server, no network) from a cterp_features result, and a training
// report from a trainer's metrics.jsonl.
//
// OUT/index.html   run summary, frequency histogram, a table of every latent (frequency, mean and
//                  max activation, top token, top logits) sortable by clicking a column; the
//                  fragment #sort=freq|mean|max|latent sorts on load
// OUT/f/I.html     latent I: statistics, activation histogram, logit effects (top/bottom tokens and
//                  their histogram), correlated latents (co-firing, decoder cosine), the ablation
//                  effect on the next-token loss when measured, top and quantile-interval examples
//                  with every token shaded by its activation (hover: the value)
// OUT/tokens.html  (with a token view) the first windows of the corpus token by token, with the
//                  latents firing on each ("which latents fire here")
// OUT/training.html  (with a metrics file) loss, explained variance, L0, dead fraction and LR
//                  over steps
#ifndef CTERP_DASHBOARD_H
#define CTERP_DASHBOARD_H

#include <stdint.h>

#include "cterp/error.h"
#include "cterp/features.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *title;   // NULL: from the SAE and hook
    const char *metrics; // a trainer's metrics.jsonl: also writes training.html (NULL: none)
    cterp_progress_fn progress; // NULL: none ("dashboard", latent pages)
    void *progress_user;
} cterp_dashboard_opts;

// Writes the dashboard into out_dir (created). o may be NULL. Files are written atomically.
cterp_status cterp_dashboard_write(const cterp_features *f, const char *out_dir,
                                   const cterp_dashboard_opts *o);

// Writes a training report (one HTML page of SVG line charts) from a metrics.jsonl file: every
// line a JSON object with "step" and any of loss, mse_loss, sparsity_loss, aux_loss,
// explained_variance, l0, dead_fraction, lr. Errors name the file and line.
cterp_status cterp_report_write(const char *metrics_jsonl, const char *out_html, const char *title);

#ifdef __cplusplus
}
#endif
#endif
