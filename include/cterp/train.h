// cterp SAE training: one config struct (defaults, presets, JSON, flags), activation sources,
// and the trainer (Adam, schedules, dead-latent tracking, ghost grads / AuxK, metrics,
// checkpoints that resume bit-identically). docs/training.md describes every field.
#ifndef CTERP_TRAIN_H
#define CTERP_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "cterp/error.h"
#include "cterp/sae.h"
#include "cterp/source.h" // cterp_act_source: what the trainer reads

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CTERP_LR_CONSTANT = 0, CTERP_LR_COSINE = 1, CTERP_LR_LINEAR = 2 } cterp_lr_sched;
typedef enum { CTERP_BDEC_GEOMETRIC_MEDIAN = 0, CTERP_BDEC_MEAN = 1, CTERP_BDEC_ZEROS = 2 } cterp_bdec_init;
enum { CTERP_MAX_MATRYOSHKA = 16 }; // prefix widths of a matryoshka_batchtopk SAE, at most
enum { CTERP_MAX_THREADS = 1024 }; // a config's threads, at most (more than any machine has cores)

typedef struct {
    // --- architecture ---
    cterp_arch architecture;
    int64_t d_sae;              // 0: d_in * expansion_factor
    int expansion_factor;
    int k;                      // topk/batchtopk: active latents per token (mean, for batchtopk)
    // topk family: k annealing (dictionary_learning's k_anneal_steps). The step with index s uses
    // int(k_start (1 - r) + k r), r = min(s, k_anneal_steps) / k_anneal_steps; 0: off
    int64_t k_anneal_steps;
    int k_anneal_start;         // k_start; 0: d_in (dictionary_learning); > k, <= d_sae
    int rescale_acts_by_decoder_norm; // topk/batchtopk: rank by z_i * ||W_dec_i||
    float jumprelu_bandwidth;   // STE kernel width (SAELens 0.05)
    float jumprelu_init_threshold;
    float topk_threshold_lr;    // batchtopk: EMA rate of the inference threshold
    // matryoshka_batchtopk: the prefix widths, strictly increasing, each in 1..d_sae; d_sae is
    // appended when the last is smaller (as SAELens does). Flag/JSON: "128,512,2048" or [128, ...]
    int64_t matryoshka_widths[CTERP_MAX_MATRYOSHKA];
    int n_matryoshka_widths;
    int gated_detach_aux_decoder; // gated: stop the aux reconstruction's gradient into W_dec and
                                  // b_dec (the paper); 0 (default): they learn from it (SAELens)
    // --- optimisation ---
    float lr, lr_end;
    cterp_lr_sched lr_scheduler;
    int64_t lr_warm_up_steps;
    int64_t lr_decay_steps;     // -1: all steps after warm-up
    float adam_beta1, adam_beta2, adam_eps;
    float grad_clip;            // global gradient-norm clip (1.0)
    // --- sparsity ---
    float l1_coefficient;       // standard: L1 of f_i * ||W_dec_i||
    float l0_coefficient;       // jumprelu: L0 (step function, STE)
    int64_t sparsity_warm_up_steps; // -1: all steps (mlxterp); 0: none
    // --- dead latents ---
    int64_t feature_sampling_window; // steps per density window
    int64_t dead_feature_window;     // steps without firing -> dead
    int use_ghost_grads;
    int use_auxk;               // topk/batchtopk only
    int aux_k;                  // 0: d_in / 2
    float aux_k_coefficient;    // 1/32
    // --- init and inputs ---
    float decoder_init_norm;    // W_dec rows random with this norm; W_enc = W_dec^T
    cterp_bdec_init b_dec_init;
    int normalize_activations;  // 1: expected_average_only_in (E||x|| = sqrt(d_in)), folded at save
    int norm_estimate_batches;  // batches used to estimate that scale
    // --- run ---
    int64_t batch_size;         // tokens per step
    int64_t training_steps;     // if 0, training_tokens / batch_size
    int64_t training_tokens;
    uint64_t seed;
    int64_t log_every;          // steps between metrics lines
    int64_t checkpoint_every;   // steps between checkpoints (0: only the final one)
    int threads;                // 0: OpenMP default; at most CTERP_MAX_THREADS
    int encoder_bf16;           // topk/batchtopk: encoder GEMM in bf16 (AVX-512 BF16) to choose the
                                // top-k; the chosen values are recomputed in f32 (off by default)
    int skip_nonfinite_rows;    // a row of activations with a NaN/Inf is replaced by the source's
                                // next row (counted in the metrics) instead of stopping training
} cterp_train_config;

// cterp's defaults (the measured best on the toy; see docs/training.md).
void cterp_train_config_default(cterp_train_config *c);
// "cterp" (the defaults), "mlxterp" (mlxterp's documented defaults), "saelens" (SAELens v6).
cterp_status cterp_train_config_preset(cterp_train_config *c, const char *name);
// Sets one field from a string: name is the field name (dashes or underscores), value parsed
// by the field's type. Unknown name or bad value -> CTERP_EINVAL naming both.
cterp_status cterp_train_config_set(cterp_train_config *c, const char *name, const char *value);
// Applies every key of a JSON object file (keys = field names; "preset" first if present).
cterp_status cterp_train_config_load_json(cterp_train_config *c, const char *path);
// Rows a run of this config takes from its source: training_steps batches, plus the batches that
// estimate the input scale when normalize_activations is on (cterp_store_config.run_rows).
int64_t cterp_train_rows_needed(const cterp_train_config *c);
// Writes the config as a JSON object (every field).
cterp_status cterp_train_config_write_json(const cterp_train_config *c, FILE *f);
// Checks ranges given d_in; the error names the field, the value and what is allowed.
cterp_status cterp_train_config_validate(const cterp_train_config *c, int64_t d_in);
// d_sae and steps after resolving defaults.
int64_t cterp_train_config_d_sae(const cterp_train_config *c, int64_t d_in);
int64_t cterp_train_config_steps(const cterp_train_config *c);
// The k the step with index `step` (0-based) uses: c->k, or while k_anneal_steps > 0 the annealed
// value (the same on every MPI rank: it depends on the step alone). Assumes a validated config.
int cterp_train_config_k_at(const cterp_train_config *c, int64_t d_in, int64_t step);

// Activations from a .npy float32 [n, d_in] or raw f32 file (d_in given for raw), served in a
// seeded random order (a new permutation each epoch), read through mmap.
cterp_status cterp_act_source_file(cterp_act_source *s, const char *path, int64_t d_in_raw,
                                   uint64_t seed);

// One line of metrics, passed to the callback every log_every steps.
typedef struct {
    int64_t step, steps, tokens;
    double loss, mse_loss, sparsity_loss, aux_loss; // aux_loss: AuxK / ghost grads, and the
                               // architecture's own (gated: the gate's reconstruction; matryoshka:
                               // the inner prefixes' mse, also in inner_mse_loss)
    double inner_mse_loss;     // matryoshka: sum over the inner prefixes of their mse (0 otherwise)
    double mse;                // mean over tokens of ||x - x_hat||^2 (scaled inputs)
    double explained_variance; // 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 (f64)
    double l0, l0_sparsity, l1_magnitude;
    int64_t dead_features;
    double dead_fraction;
    double mean_log10_density; // over the last complete feature_sampling_window (NaN before)
    int window_done;           // 1 on the step a feature_sampling_window completed:
    int64_t density_hist[10];  //   latents per log10(density) bin [i-10, i-9) (bin 0: never fired)
    int64_t below_1e5, below_1e6; // latents with density below 1e-5 / 1e-6 in that window
    double lr, sparsity_coefficient, threshold; // threshold: batchtopk inference threshold
    double tokens_per_s, elapsed_s, eta_s; // tokens_per_s: end to end (source + SAE) in this run
    // the same tokens over the seconds spent in the source (a live model's forward, buffer fills)
    // and over the rest (the SAE's steps): which of the two bounds the run (0 when not measured)
    double source_tokens_per_s, sae_tokens_per_s;
    int64_t nonfinite_rows_skipped; // rows with a NaN/Inf skipped so far (skip_nonfinite_rows)
    int k;                     // topk family: the k this step used (annealed: k_anneal_steps)
} cterp_train_metrics;

typedef void (*cterp_train_log_fn)(const cterp_train_metrics *m, void *user);

typedef struct cterp_trainer cterp_trainer;

// Creates a trainer over `src` (d_in from the source). Does not take ownership of src.
cterp_status cterp_trainer_create(cterp_trainer **out, const cterp_train_config *cfg,
                                  cterp_act_source *src);
// Restores from a checkpoint directory written by cterp_trainer_checkpoint (config included;
// the source must be the same kind of stream; its position is restored).
cterp_status cterp_trainer_resume(cterp_trainer **out, const char *dir, cterp_act_source *src);
void cterp_trainer_free(cterp_trainer *t);

// Output: metrics.jsonl is appended in out_dir (if not NULL); checkpoints every
// checkpoint_every steps into out_dir/checkpoints/step_N and the final SAE into out_dir.
void cterp_trainer_set_output(cterp_trainer *t, const char *out_dir, cterp_train_log_fn log,
                              void *user);
// Trains until `until_step` (or the configured steps if <= 0). NaN/Inf in an input row (unless
// skip_nonfinite_rows), the loss or the gradient stops with CTERP_ENAN naming the step (and the
// hook, row and column of an input); the last checkpoint is kept.
cterp_status cterp_trainer_run(cterp_trainer *t, int64_t until_step);
// Writes a checkpoint (SAE directory + trainer_state.safetensors + train_config.json, then the
// manifest checkpoint.json) into "<dir>.tmp", each file durably, and renames it to `dir`.
cterp_status cterp_trainer_checkpoint(cterp_trainer *t, const char *dir);
// Checks that `dir` is a complete checkpoint: its manifest checkpoint.json (written last) is
// there and every file has the size it records. Fails naming what is missing or differs.
cterp_status cterp_checkpoint_check(const char *dir);
// The SAE as it would be saved (scaling folded, decoder norms folded for topk, batchtopk ->
// jumprelu). Caller frees.
cterp_status cterp_trainer_export(const cterp_trainer *t, cterp_sae **out);
// Saves the exported SAE + sparsity.safetensors into dir.
cterp_status cterp_trainer_save(const cterp_trainer *t, const char *dir);
// Where the SAE is trained (model, hook, dataset, context...): written into cfg.json
// "metadata" of checkpoints and the saved SAE (training_tokens is filled at save).
void cterp_trainer_set_meta(cterp_trainer *t, const cterp_sae_meta *meta);
int64_t cterp_trainer_step(const cterp_trainer *t);
const cterp_sae *cterp_trainer_sae(const cterp_trainer *t); // live parameters (training form)
const cterp_train_metrics *cterp_trainer_last_metrics(const cterp_trainer *t);
// The factor inputs are multiplied by in training (1 unless normalize_activations).
double cterp_trainer_input_scale(const cterp_trainer *t);

// For benchmarks: makes a fraction of the latents dead from the first step (they never fire
// and count as dead, so AuxK / ghost grads run on them), and, if target_l0 > 0, offsets b_enc
// so that about target_l0 latents fire per token on unit-Gaussian inputs at initialisation.
void cterp_trainer_bench_setup(cterp_trainer *t, double dead_fraction, double target_l0);
// For benchmarks: wall seconds spent so far in each phase of the step: data, encode (centring +
// encoder GEMM), select (top-k / threshold -> pairs), decode (sparse decode + loss), backward,
// revive (AuxK / ghost grads), optim (gradient norm, clipping, Adam), stats (firing counts).
enum { CTERP_N_PHASES = 8 };
// For benchmarks: AuxK over gathered pairs (0), dense GEMMs over the dead columns (1), or the
// per-step choice by cost (-1, the default).
void cterp_trainer_bench_auxk_mode(cterp_trainer *t, int mode);
// For benchmarks, encoder_bf16 with topk: the GEMM fused with the top-k (1), through the z matrix
// (-1), or chosen by cost (0, the default).
void cterp_trainer_bench_fuse_mode(cterp_trainer *t, int mode);
void cterp_trainer_phase_times(const cterp_trainer *t, double out[CTERP_N_PHASES]);
const char *cterp_trainer_phase_name(int phase);

#ifdef __cplusplus
}
#endif
#endif
