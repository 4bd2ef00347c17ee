// cterp analysis: evaluating an SAE spliced into its model (SAELens run_evals definitions),
// and the one-call pipeline that trains an SAE on a model's activations (mlxterp's
// model.train_sae).
#ifndef CTERP_ANALYSIS_H
#define CTERP_ANALYSIS_H

#include <stdint.h>
#include <stdio.h>

#include "cterp/acts.h"
#include "cterp/data.h"
#include "cterp/model.h"
#include "cterp/sae.h"
#include "cterp/train.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- eval ----------------------------------------------------------------------------------

#define CTERP_EVAL_HIST_BINS 9

typedef struct {
    cterp_window_config windows; // context size (128), BOS, separator; special positions masked
    cterp_dataset_opts data;
    int batch;          // windows per forward (8)
    int64_t n_windows;  // windows evaluated (64); fewer if the dataset has fewer
    const char *hook;   // NULL: the SAE's metadata hook_name (a transcoder's input hook)
    const char *hook_out; // transcoders: the hook the output replaces (NULL: the SAE's
                          // hook_name_out); SAEs: NULL or the same as hook
    cterp_progress_fn progress; // NULL: none ("eval", windows)
    void *progress_user;
    // optional per-latent counts over the eval positions, (d_sae) arrays owned by the caller
    // (NULL: not wanted): tokens where latent i fired, and windows where it fired at least once
    int64_t *fired;
    int64_t *windows_fired;
} cterp_eval_config;

// Over the eval positions (unmasked; for CE/KL also t < T-1, the positions with a next token):
typedef struct {
    int64_t n_windows, n_tokens, n_ce_tokens;
    double explained_variance; // 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 (f64)
    double mse;                // mean over tokens of ||x - x_hat||^2
    double l0, l1;             // mean #(f > 0), mean sum f
    double l2_ratio;           // mean ||x_hat|| / ||x|| (1 where ||x|| < 1e-4)
    double cossim;             // mean cos(x, x_hat)
    double ce_loss_without_sae, ce_loss_with_sae, ce_loss_with_ablation; // nats/token
    double ce_loss_score;      // (CE_abl - CE_sae) / (CE_abl - CE_orig)
    double kl_div_with_sae, kl_div_with_ablation; // KL(orig || new), summed over the vocabulary
    double kl_div_score;       // (KL_abl - KL_sae) / KL_abl
    int64_t d_sae, dead_latents, dense_latents; // density 0 / > 10%
    // density histogram: [0] dead; [i], i = 1..8: density in [10^(i-9), 10^(i-8)) (bin 1 also
    // holds anything lower, bin 8 anything up to 1)
    int64_t density_hist[CTERP_EVAL_HIST_BINS];
    double l2_norm_in, l2_norm_out;      // mean ||x||, mean ||x_hat||
    double relative_reconstruction_bias; // sum ||x_hat||^2 / sum x . x_hat (Gated SAE paper eq. 10)
} cterp_eval_result;

void cterp_eval_config_default(cterp_eval_config *c);
// Runs the model over n_windows windows of the dataset three times: clean, with the SAE's
// reconstruction replacing the activation at the hook (special positions keep theirs, as
// SAELens masks them), and with it zero-ablated; accumulates the metrics above. A transcoder
// (skip_transcoder) is spliced in place of what it replaces, the MLP: its input hook's rows
// (hook_name, e.g. blocks.L.ln2.hook_normalized) go through it and its output replaces the
// output hook's (hook_name_out, blocks.L.hook_mlp_out); the reconstruction metrics (explained
// variance, MSE, ...) are of the output hook's activation, and zero ablation zeroes that hook.
cterp_status cterp_eval(cterp_model *m, const cterp_sae *sae, const char *dataset,
                        const cterp_eval_config *c, cterp_eval_result *r);
// A crosscoder's cross-layer eval (cterp_eval refuses crosscoders): over the same windows as
// cterp_eval, *ce_clean the clean CE, and for each layer l (arrays of n_layers, 2..64) ev[l] its
// explained variance, ce_spliced[l] the CE with layer l's reconstruction in place of its hook
// (the other layers untouched; special positions keep theirs) and ce_ablated[l] with that hook
// zeroed. The hooks are cfg.json's hook_names (meta.hook_name, comma-separated).
cterp_status cterp_eval_crosscoder(cterp_model *m, const cterp_sae *sae, const char *dataset,
                                   const cterp_eval_config *c, double *ce_clean, double *ev,
                                   double *ce_spliced, double *ce_ablated);
// `name: value` lines (json = 0) or one JSON object (json = 1).
void cterp_eval_print(const cterp_eval_result *r, FILE *f, int json);

// Writes the eval as SAEBench's core eval output (sae_bench/evals/core/eval_output.py,
// CoreEvalOutput): eval_config, eval_id, datetime_epoch_millis, the seven metric categories,
// one CoreFeatureMetric per latent (density and consistent-activation heuristic from `fired` /
// `windows_fired` as cterp_eval filled them, encoder/decoder weight metrics from the SAE), and
// cterp's density histogram under eval_result_unstructured. Field mapping: docs/features.md.
// model_name and dataset are recorded as given. Written atomically.
cterp_status cterp_eval_saebench_write(const char *path, const cterp_sae *sae,
                                       const cterp_eval_config *c, const cterp_eval_result *r,
                                       const int64_t *fired, const int64_t *windows_fired,
                                       const char *model_name, const char *dataset);

// ---- training on a model -------------------------------------------------------------------

typedef struct {
    const char *model_name;   // recorded in cfg.json metadata (NULL: "")
    cterp_store_config store; // windows, dataset options, model batch, mixing buffer (seed: cfg's)
    cterp_train_log_fn log;   // progress callback (NULL: none)
    void *log_user;
    const char *resume;       // a checkpoint directory to continue from (NULL: fresh)
    int64_t eval_windows;     // windows evaluated at the end (0: none)
    cterp_progress_fn eval_progress; // the final eval's progress (NULL: none)
    void *eval_progress_user;
    // cterp_train_saes: called instead of log with the index of the hook whose trainer logged
    // (user: log_user); NULL: log, without the index
    void (*hook_log)(int hook, const cterp_train_metrics *m, void *user);
} cterp_pipeline_opts;

void cterp_pipeline_opts_default(cterp_pipeline_opts *o);
// Fills an SAE's metadata (model, hook, context size, BOS, dataset, separator, flags) from where
// its activations came from: the store's windows (cterp_train_sae, or a cache's header).
void cterp_store_meta(cterp_sae_meta *meta, const char *model_name, const char *hook,
                      const char *dataset, const cterp_window_config *w);

// Trains an SAE on the activations of `component` at `layer` (mlp, attn, resid, resid_pre,
// resid_mid, mlp_post, ...; or a full hook name, layer then ignored) over `dataset`, as
// mlxterp's model.train_sae(layer, component, dataset, config, save_path). Saves the SAE
// (metadata filled: model, hook, context size, dataset, tokens trained) and metrics.jsonl
// into out_dir when not NULL. *sae (if not NULL) receives the trained SAE, *ev (if not NULL
// and eval_windows > 0) the eval on the same dataset.
cterp_status cterp_train_sae(cterp_model *m, int layer, const char *component, const char *dataset,
                             const cterp_train_config *cfg, const char *out_dir,
                             const cterp_pipeline_opts *opts, cterp_sae **sae, cterp_eval_result *ev);

// Trains a transcoder or skip_transcoder (cfg->architecture) from hook_in's activations to
// hook_out's (e.g. blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out, the MLP's input and
// output) over `dataset`, both read from one forward per batch (cterp_act_pair_store). As
// cterp_train_sae otherwise: saved into out_dir with hook_name = hook_in and hook_name_out =
// hook_out, *sae, and *ev the eval with the transcoder spliced in place of hook_out.
cterp_status cterp_train_transcoder(cterp_model *m, const char *hook_in, const char *hook_out,
                                    const char *dataset, const cterp_train_config *cfg,
                                    const char *out_dir, const cterp_pipeline_opts *opts,
                                    cterp_sae **sae, cterp_eval_result *ev);

// Trains a crosscoder (cfg->architecture crosscoder) over n (2..4096) hooks of one width, their
// rows of the same tokens side by side (cterp_act_concat_store, one forward per batch). Saved
// into out_dir with cfg.json hook_names = hooks. *sae as cterp_train_sae; layer_ev (n, if not
// NULL and opts->eval_windows > 0) receives each layer's explained variance over the next
// eval_windows * context_size rows of the training stream (no CE splice yet).
cterp_status cterp_train_crosscoder(cterp_model *m, const char *const *hooks, int n, const char *dataset,
                                    const cterp_train_config *cfg, const char *out_dir,
                                    const cterp_pipeline_opts *opts, cterp_sae **sae, double *layer_ev);

// Several hooks, one forward: trains one SAE per hook (hooks[h] with cfgs[h]) from a single run
// of the model (cterp_multi_store: each batch of windows is run once, up to the last hook's
// layer). Each SAE gets exactly the rows, in the same order, that cterp_train_sae on its hook
// alone would get, so with the same config it trains to the same weights bit for bit. Configs
// may differ in the SAE's own fields (architecture, d_sae, k, lr, coefficients, ...), not in
// what decides the row stream: batch_size, seed and the rows the run takes
// (cterp_train_rows_needed: steps and normalize_activations), which must agree (an error names
// the field and both hooks otherwise). The trainers take turns a step at a time. SAE h is saved
// with its metrics.jsonl and checkpoints/ into out_dir/hooks[h] (when out_dir is not NULL).
// resume: NULL, or n_hooks checkpoint directories (an entry NULL: that hook starts fresh); a
// resumed hook's config is its checkpoint's. saes (if not NULL) receives n_hooks SAEs, evs (if
// not NULL and opts->eval_windows > 0) n_hooks evals (each SAE spliced in on its own).
cterp_status cterp_train_saes(cterp_model *m, const char *const *hooks, int n_hooks,
                              const char *dataset, const cterp_train_config *cfgs,
                              const char *out_dir, const char *const *resume,
                              const cterp_pipeline_opts *opts, cterp_sae **saes,
                              cterp_eval_result *evs);

#ifdef __cplusplus
}
#endif
#endif
