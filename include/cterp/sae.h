// cterp SAE: parameters, inference (encode/decode) and the SAELens v6 directory format.
//
// Forward (SAELens): z = (x - b_dec) W_enc^T + b_enc; f = act(z); x_hat = f W_dec + b_dec.
// In memory W_enc is stored (N, D), one row per latent (the encoder direction of latent i), so
// the sparse backward touches contiguous rows; SAELens files store it (D, N) and the reader and
// writer transpose. W_dec is (N, D) in both.
#ifndef CTERP_SAE_H
#define CTERP_SAE_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CTERP_ARCH_STANDARD = 0, // f = ReLU(z)
    CTERP_ARCH_TOPK = 1,     // f = TopK(ReLU(z)) per token
    CTERP_ARCH_BATCHTOPK = 2, // training only: top K*B over the batch; saved as jumprelu
    CTERP_ARCH_JUMPRELU = 3, // f = z * 1[z > threshold]
    CTERP_ARCH_MATRYOSHKA_BATCHTOPK = 4, // training only: batchtopk + an mse per latent prefix;
                                         // saved as jumprelu
    CTERP_ARCH_GATED = 5,    // f = 1[pi > 0] ReLU(mag): pi = xc W_enc^T + b_gate,
                             // mag = exp(r_mag) (xc W_enc^T) + b_mag
    CTERP_ARCH_TRANSCODER = 6,      // f = ReLU(x W_enc^T + b_enc) (no b_dec subtracted);
                                    // y_hat = f W_dec + b_dec, of width d_out
    CTERP_ARCH_SKIP_TRANSCODER = 7, // transcoder + x W_skip^T
    CTERP_ARCH_CROSSCODER = 8, // f = ReLU(x W_enc^T + b_enc) over L layers' rows side by side
                               // (d_in = d_out = L * D, no b_dec subtracted); x_hat = f W_dec +
                               // b_dec; L1 weighted by sum_l ||W_dec_i^l|| (Lindsey et al. 2024)
} cterp_arch;
enum { CTERP_N_ARCHS = 9 };

// "standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk", "gated", "transcoder",
// "skip_transcoder" (SAELens's names), "crosscoder" (cterp's; SAELens has none)
const char *cterp_arch_name(cterp_arch a);
// Parses an architecture name; CTERP_EINVAL (message lists the allowed names) if unknown.
cterp_status cterp_arch_parse(const char *name, cterp_arch *out);

// Where the SAE was trained (cfg.json "metadata"). Strings are "" when unknown.
typedef struct {
    char model_name[256];
    char hook_name[256];      // crosscoders: the L hooks in layer order, comma-separated
    int hook_head_index;      // -1 = none (null)
    int context_size;         // 0 = unknown
    int prepend_bos;          // 1/0
    char dataset_path[1024];
    int64_t training_tokens;  // 0 = unknown
    char sequence_separator_token[32]; // "bos"
    int exclude_special_tokens;
    int disable_concat_sequences;
    // transcoders: the hook y_hat stands for (SAELens's TranscoderConfig.hook_name_out, e.g.
    // blocks.L.hook_mlp_out); hook_name is the input hook. "" for the others.
    char hook_name_out[256];
} cterp_sae_meta;

typedef struct cterp_sae {
    cterp_arch arch;          // STANDARD, TOPK, JUMPRELU or GATED once trained (BATCHTOPK and
                              // MATRYOSHKA_BATCHTOPK save as JUMPRELU)
    int64_t d_in;             // D
    int64_t d_sae;            // N
    int64_t d_out;            // DO: width of x_hat; d_in except for transcoders
    int64_t n_layers;         // L: crosscoder layers, each d_in / L wide (a latent's decoder
                              // norm is sum_l ||W_dec_i^l||); 1 for every other architecture
    int k;                    // topk: active latents per token
    int rescale_acts_by_decoder_norm; // topk: rank by z_i * ||W_dec_i|| (SAELens v6 training)
    int apply_b_dec_to_input; // subtract b_dec before the encoder (1 for cterp SAEs)
    char normalize_activations[32]; // "none" (scaling is folded in at save)
    float *params;            // one block holding everything below
    size_t n_params;
    float *W_enc;     // (N, D)
    float *b_enc;     // (N); gated: b_gate (SAELens's name on disk; gated has no b_enc)
    float *W_dec;     // (N, DO)
    float *b_dec;     // (DO)
    float *threshold; // (N), jumprelu only; NULL otherwise
    float *r_mag;     // (N), gated only (magnitude path: W_enc_i scaled by exp(r_mag_i)); NULL otherwise
    float *b_mag;     // (N), gated only; NULL otherwise
    float *W_skip;    // (DO, D), skip_transcoder only; NULL otherwise
    cterp_sae_meta meta;
} cterp_sae;

// Floats in an SAE's parameter block, in this order: W_enc, b_enc, W_dec, b_dec (+ threshold for
// jumprelu; + r_mag, b_mag for gated; + W_skip for skip_transcoder). d_out = d_in.
size_t cterp_sae_n_params(cterp_arch arch, int64_t d_in, int64_t d_sae);
// The same for any d_out (transcoders).
size_t cterp_sae_n_params_out(cterp_arch arch, int64_t d_in, int64_t d_out, int64_t d_sae);
// Allocates a zeroed SAE (d_out = d_in). k is used by topk/batchtopk only (1 <= k <= d_sae).
cterp_status cterp_sae_create(cterp_sae **out, cterp_arch arch, int64_t d_in, int64_t d_sae, int k);
// Allocates a zeroed transcoder or skip_transcoder from d_in to d_out (apply_b_dec_to_input 0).
cterp_status cterp_sae_create_transcoder(cterp_sae **out, cterp_arch arch, int64_t d_in, int64_t d_out,
                                         int64_t d_sae);
// Allocates a zeroed crosscoder over n_layers (>= 2) layers of width d_layer: d_in = d_out =
// n_layers * d_layer, apply_b_dec_to_input 0.
cterp_status cterp_sae_create_crosscoder(cterp_sae **out, int64_t n_layers, int64_t d_layer, int64_t d_sae);
// Decoder norm of latent i as the sparsity penalty weighs it: ||W_dec_i|| (crosscoders: the sum
// over layers of ||W_dec_i^l||).
float cterp_sae_decoder_norm(const cterp_sae *sae, int64_t i);
// 1 for transcoder and skip_transcoder (x_hat is another activation, of width d_out).
int cterp_sae_is_transcoder(const cterp_sae *sae);
void cterp_sae_free(cterp_sae *sae); // NULL is a no-op

// Dense inference: f (B, N) = act(z) for x (B, D). batchtopk and matryoshka_batchtopk are not
// inference architectures.
cterp_status cterp_sae_encode(const cterp_sae *sae, const float *x, int64_t B, float *f);
// x_hat (B, DO) = f W_dec + b_dec for f (B, N) (divides by ||W_dec_i|| when rescaling). For a
// skip_transcoder this is SAELens's decode, without the skip term: cterp_sae_forward adds it.
cterp_status cterp_sae_decode(const cterp_sae *sae, const float *f, int64_t B, float *x_hat);
// x_hat (B, DO) of x (B, D): encode, decode, and for skip_transcoder + x W_skip^T.
cterp_status cterp_sae_forward(const cterp_sae *sae, const float *x, int64_t B, float *x_hat);

// Writes an SAELens v6 directory: cfg.json, sae_weights.safetensors (W_enc (D,N), b_enc,
// W_dec, b_dec [, threshold]; gated: W_enc, b_gate, r_mag, b_mag, W_dec, b_dec; transcoders:
// W_dec (N, DO), b_dec (DO) [, W_skip (DO, D)] and "d_out" in cfg.json) and, if log10_density is not NULL, sparsity.safetensors
// {"sparsity": (N)}. Every file is written to a temporary name and renamed into place.
cterp_status cterp_sae_save(const cterp_sae *sae, const char *dir, const float *log10_density);
// Reads an SAELens directory (ours, or SAELens v5/v6's: flat pre-6.0 configs converted).
cterp_status cterp_sae_load(const char *dir, cterp_sae **out);

#ifdef __cplusplus
}
#endif
#endif
