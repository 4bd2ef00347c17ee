// cterp features: what each latent of an SAE does, and editing latents while the model runs.
//
// Statistics (cterp_features_collect): one streaming pass over a corpus (the SAE's hook, its
// context windows, special positions left out as in eval) gathers for every latent i
//   frequency   fired_i / n_tokens, fired_i = tokens with f_i > 0
//   mean_act    sum of f_i over the tokens where it fired / fired_i; max_act
//   histogram   64 equal bins [j w, (j+1) w) over [0, hi), hi = the smallest power of two above
//               every activation seen (bins merge pairwise when hi doubles, so counts are exact
//               and memory is fixed); only bins up to the max are reported (33..64 of them)
//   top         the top_n activations, a min-heap per latent; ties go to the earlier token
//   quantiles   16 activation intervals of width hi/16 (4 histogram bins each), each with a
//               uniform sample of quantile_k of its tokens: bottom-k of a seeded hash of
//               (seed, latent, token index), so the sample does not depend on batch order and
//               two intervals merge exactly when hi doubles (SAEDashboard's quantile groups)
// Memory is O(d_sae x (top_n + 16 x quantile_k + 64)), whatever the corpus size. A second,
// shorter pass re-runs only the forward batches holding an example (the same batches, so the
// same bits) to cut the context around each example: ctx_left tokens before, ctx_right after,
// with this latent's activation at every context token (0 at special positions).
//
// Ablation effect on the next-token loss (over the first loss_windows windows; optional): for
// every window w and latent i that fires in it, the model runs on w with i ablated at the hook
// where it fires, x' = x - f_i(x) W_dec[i] at the non-special positions (SAE reconstruction
// with f_i = 0 plus the SAE error term, as SAELens/SAEDashboard splice it; without the edit
// the spliced model is the clean model). dloss(t) = CE_ablated(t) - CE_clean(t) of the next
// token at position t. loss_mean averages dloss over the positions where i fires (t < T-1,
// non-special); loss_top lists the positions where ablating hurts most (i helps most there).
// Cost: one extra window-forward per (window, firing latent) pair, run Bm rows at a time.
//
// Correlated latents: co-firing neighbours by Jaccard index over firing positions,
// |A_i n A_j| / |A_i u A_j| (counted in the statistics pass: an N x N table, so only when
// d_sae <= cofire_max_latents), and decoder neighbours by cosine of W_dec rows.
//
// Token view: for the first view_windows windows, the CTERP_FEAT_VIEW_K strongest latents at
// every position ("which latents fire here").
//
// Logit effects (SAEDashboard): W_dec[i] . W_U through the final norm's weight, i.e.
// logit_v = sum_d W_dec[i,d] g_d W_U[v,d] (no normalisation, no bias); the n_logits highest and
// lowest tokens and a 32-bin histogram over the vocabulary; only for hooks of shape [B,T,d_model].
//
// Steering (cterp_steer_hook, a model hook at the SAE's hook point, every position):
//   ADD     x' = x + strength W_dec[i]
//   CLAMP   x' = SAE(x) + (x - SAE(x)) with f_i set to value: x' = dec(f') + x - dec(f)
//   ABLATE  the same with f_i = 0
// The error term x - SAE(x) makes CLAMP/ABLATE exact interventions: every other latent keeps
// its activation and a no-op edit returns x (SAELens HookedSAETransformer, use_error_term).
#ifndef CTERP_FEATURES_H
#define CTERP_FEATURES_H

#include <stdint.h>

#include "cterp/data.h"
#include "cterp/error.h"
#include "cterp/model.h"
#include "cterp/sae.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CTERP_FEAT_HIST_BINS 64
#define CTERP_FEAT_GROUPS 16
#define CTERP_FEAT_LOGIT_BINS 32
#define CTERP_FEAT_VIEW_K 5 // latents listed per token in the token view

typedef struct {
    cterp_window_config windows; // context size (128), BOS, separator; special positions masked
    cterp_dataset_opts data;
    int batch;               // windows per forward (8)
    int64_t n_windows;       // windows read (0: the whole dataset)
    const char *hook;        // NULL: the SAE's metadata hook_name
    int top_n;               // top examples per latent (20)
    int quantile_k;          // examples sampled per activation interval (5)
    int ctx_left, ctx_right; // context tokens around an example (5, 5)
    int n_logits;            // top and bottom logit-effect tokens (10)
    uint64_t seed;           // quantile sampling (0)
    cterp_progress_fn progress; // NULL: none ("features: statistics" in windows, then
    void *progress_user;        // "features: examples" in example windows)
    int n_neighbours;           // co-firing and decoder-cosine neighbours per latent (5; 0: none)
    int64_t cofire_max_latents; // co-firing counted only when d_sae <= this (4096: a 64 MiB table)
    int64_t loss_windows;       // windows over which ablation effects are measured (0: off)
    int loss_top;               // positions listed where ablating the latent hurts most (5)
    int view_windows;           // windows of the per-token view (4; 0: none)
} cterp_features_config;

typedef struct {
    float act;       // activation of the latent at the example's token
    int64_t window;  // window index in the dataset (0-based)
    int pos;         // token position in its window
    int start;       // window position of the first context token
    int n_ctx;       // context tokens
    int32_t *tokens; // (n_ctx) token ids
    float *acts;     // (n_ctx) the latent's activation at each context token
} cterp_feature_example;

typedef struct {
    float lo, hi;  // activation interval [lo, hi)
    int64_t count; // tokens of the corpus in it
    int n;         // examples sampled (<= quantile_k), by activation, highest first
    cterp_feature_example *ex;
} cterp_feature_group;

typedef struct {
    int64_t window; // window index in the dataset
    int pos;        // position whose next-token loss changed
    int32_t next;   // the next token (window position pos + 1)
    float dloss;    // CE with the latent ablated - CE without (nats)
} cterp_feature_loss;

typedef struct {
    int64_t fired;    // tokens with f_i > 0
    double frequency; // fired / n_tokens
    double mean_act;  // mean of f_i where it fired (0 if never)
    float max_act;
    float bin_width; // histogram bin width (0 if never fired)
    int n_bins;      // bins reported
    int64_t hist[CTERP_FEAT_HIST_BINS];
    int n_top; // top examples, highest first
    cterp_feature_example *top;
    int n_groups; // quantile intervals up to the max, lowest first
    cterp_feature_group groups[CTERP_FEAT_GROUPS];
    int n_logits; // top and bottom logit effects, highest / lowest first
    int32_t *logit_top_ids, *logit_bot_ids;
    float *logit_top, *logit_bot;
    float logit_lo, logit_hi; // range of the logit histogram
    int64_t logit_hist[CTERP_FEAT_LOGIT_BINS];
    // correlated latents, best first (n_cofire, n_dec <= cfg.n_neighbours)
    int n_cofire;
    int32_t *cofire_ids;
    float *cofire_jaccard;
    int n_dec;
    int32_t *dec_ids;
    float *dec_cos;
    // ablation effect (over cfg.loss_windows windows): positions measured, mean dloss, and the
    // n_loss positions with the largest dloss, largest first
    int64_t loss_n;
    double loss_mean;
    int n_loss;
    cterp_feature_loss *loss_top;
} cterp_feature;

typedef struct {
    int64_t d_sae, d_in;
    int64_t n_windows, n_tokens; // windows read; non-special tokens counted
    int context_size;
    char model[256], hook[256], dataset[1024], sae[1024];
    cterp_features_config cfg; // as run (hook points into `hook`)
    int64_t n_vocab;
    char **vocab;     // (n_vocab) display strings (SentencePiece "▁" shown as a space)
    cterp_feature *f; // (d_sae)
    void *mem;        // everything above lives in a few blocks owned by the struct
    void *ex_mem, *str_mem;
    int cofire_done; // co-firing neighbours were counted (d_sae <= cofire_max_latents)
    // token view: view_n windows of context_size tokens; per token the CTERP_FEAT_VIEW_K
    // strongest latents (id -1 and act 0 where fewer fire; special positions have none)
    int view_n;
    int64_t *view_window; // (view_n) window index in the dataset
    int32_t *view_tokens; // (view_n, T)
    uint8_t *view_mask;   // (view_n, T) special positions
    int32_t *view_ids;    // (view_n, T, K)
    float *view_acts;     // (view_n, T, K)
    void *view_mem;
} cterp_features;

void cterp_features_config_default(cterp_features_config *c);

// One pass over `dataset` with the SAE at its hook (see above). model_name and sae_dir are only
// recorded. Errors: unknown hook, hook width != d_in, a dataset without a window, bad config.
cterp_status cterp_features_collect(cterp_model *m, const cterp_sae *sae, const char *dataset,
                                    const cterp_features_config *c, const char *model_name,
                                    const char *sae_dir, cterp_features **out);
void cterp_features_free(cterp_features *f); // NULL is a no-op

// The accumulator under cterp_features_collect, for activations from anywhere (e.g. the toy):
// rows of latent activations f (R, N) for tokens g0 .. g0+R-1 (token g = window g / T,
// position g % T), rows with mask[r] != 0 skipped (mask may be NULL). The result carries the
// statistics and examples without contexts (n_ctx 0) or logit effects.
typedef struct cterp_feature_acc cterp_feature_acc;
cterp_status cterp_feature_acc_create(cterp_feature_acc **out, int64_t d_sae,
                                      const cterp_features_config *c);
cterp_status cterp_feature_acc_add(cterp_feature_acc *a, const float *f, int64_t R, int64_t g0,
                                   const uint8_t *mask);
int64_t cterp_feature_acc_tokens(const cterp_feature_acc *a); // rows counted (unmasked)
cterp_status cterp_feature_acc_result(cterp_feature_acc *a, int64_t T, cterp_features **out);
void cterp_feature_acc_free(cterp_feature_acc *a); // NULL is a no-op

// Writes DIR/features.json (run metadata, vocabulary, per-latent summary arrays) and
// DIR/latents.jsonl (line i: latent i in full). Formats: docs/features.md. Written atomically.
cterp_status cterp_features_save(const cterp_features *f, const char *dir);
// Reads what cterp_features_save wrote; errors name the file, line and field.
cterp_status cterp_features_load(const char *dir, cterp_features **out);

// Decoder neighbours: for every row i of W (N, D), the k rows j != i of largest cosine
// cos(W[i], W[j]), best first (ties: lower j), into ids (N, k) and cos (N, k); rows of norm 0
// have cosine 0 with everything. k must be < N. Chunks of 256 rows through SGEMM.
cterp_status cterp_decoder_neighbours(const float *W, int64_t N, int64_t D, int k, int32_t *ids,
                                      float *cos);

// Neuronpedia's feature-upload batch (SAEDashboard's NeuronpediaDashboardBatch, the file its
// neuronpedia runner writes): {"model_id", "layer", "sae_set", "features": [...]}, one feature
// per latent with activations (tokens as strings, values), logit tables, histograms and
// density. Format and field mapping: docs/features.md. Written atomically.
typedef struct {
    const char *model_id; // Neuronpedia model id (NULL: the features' model name)
    const char *sae_set;  // Neuronpedia SAE set (NULL: "cterp")
    int layer;            // -1: parsed from the hook name ("blocks.L....")
    const char *dataset;  // NULL: the features' dataset path
} cterp_neuronpedia_opts;
cterp_status cterp_features_export_neuronpedia(const cterp_features *f, const char *path,
                                               const cterp_neuronpedia_opts *o);

// Logit effects of latents [i0, i0 + n): out (n, V) = W_dec[i] . (g * W_U) as above.
cterp_status cterp_logit_effects(cterp_model *m, const cterp_sae *sae, int64_t i0, int64_t n,
                                 float *out);

// Latent activations over one token sequence: f (T, N) at the SAE's hook (or `hook`).
cterp_status cterp_features_on_tokens(cterp_model *m, const cterp_sae *sae, const char *hook,
                                      const int32_t *tokens, int T, float *f);

// Display form of a token: SentencePiece "▁" -> " ", byte tokens <0xXX> -> the byte when it
// is printable ASCII or a newline/tab, GPT-2 byte-level pieces decoded; invalid UTF-8 -> U+FFFD.
// Writes a NUL-terminated string into buf (cap >= 8) and returns buf.
char *cterp_token_display(const cterp_tokenizer *tok, int32_t id, char *buf, size_t cap);

// ---- steering ------------------------------------------------------------------------------

typedef enum {
    CTERP_STEER_ADD = 0,
    CTERP_STEER_CLAMP = 1,
    CTERP_STEER_ABLATE = 2
} cterp_steer_mode;

typedef struct {
    const cterp_sae *sae;
    int64_t feature; // latent index
    cterp_steer_mode mode;
    float value; // ADD: strength; CLAMP: the activation it is set to
    // filled by the hook (scratch and a record of the last call):
    float *f, *f_edit, *buf; // (R, N), (R, N), (2R, D) grown as needed, freed by cterp_steer_free
    int64_t cap_rows, rows;  // rows of the last call in f (before) and f_edit (after the edit)
    double sum_before;       // sum over calls and rows of f_i before the edit
    int64_t n_rows;          // rows edited in all calls
} cterp_steer;

// Checks the feature index and mode; fills s (value as given).
cterp_status cterp_steer_init(cterp_steer *s, const cterp_sae *sae, int64_t feature,
                              cterp_steer_mode mode, float value);
void cterp_steer_free(cterp_steer *s);
// The hook: user = a cterp_steer. Errors when the hook's width per token is not the SAE's d_in.
cterp_status cterp_steer_hook(const char *name, float *act, const int64_t *shape, int ndim,
                              void *user);

#ifdef __cplusplus
}
#endif
#endif
