// Transformer language models from GGUF files (llama and gpt2 architectures; weights F32, F16,
// BF16, Q8_0, Q4_0, Q4_K, Q6_K, computed in f32) with TransformerLens hook points.
//
// Hook names (L = layer):
//   hook_embed, hook_pos_embed (gpt2), blocks.L.hook_resid_pre, blocks.L.ln1.hook_normalized,
//   blocks.L.attn.hook_q / hook_k / hook_v (before RoPE) / hook_z, blocks.L.attn.hook_pattern,
//   blocks.L.hook_attn_out, blocks.L.hook_resid_mid, blocks.L.ln2.hook_normalized,
//   blocks.L.mlp.hook_pre, blocks.L.mlp.hook_pre_linear (llama), blocks.L.mlp.hook_post,
//   blocks.L.hook_mlp_out, blocks.L.hook_resid_post, ln_final.hook_normalized.
// Shapes: [B,T,D] for the residual stream, [B,T,H,hd] for q/k/v/z (k/v with the KV heads),
// [B,H,T,S] for the pattern (S = keys: T, or cache length + T when decoding), [B,T,F] for MLP.
// Q/K are in GGUF's adjacent-pair RoPE layout (TransformerLens uses half-split for Llama, a
// permutation within each head).
#ifndef CTERP_MODEL_H
#define CTERP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"
#include "cterp/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char arch[24];  // general.architecture: llama, gpt2, gptneox, gemma, gemma2, gemma3, qwen2, qwen3, phi3
    int n_layers;   // L
    int d_model;    // D
    int n_heads;    // H
    int n_kv_heads; // Hkv (GQA when < H)
    int head_dim;   // hd
    int d_ff;       // F
    int n_vocab;    // V
    int n_ctx;      // trained context (from the GGUF); the forward refuses positions past it
    int n_rot;      // rotary dims per head (0: learned positions, gpt2)
    float norm_eps, rope_base;
    int tied_output;     // output.weight absent: token_embd is the unembedding
    int rope_neox;       // rotary pairs (j, j + n_rot/2) (neox, gemma, qwen, phi3), else (2j, 2j+1)
    int parallel;        // attention and MLP both read resid_pre (gptneox): no hook_resid_mid
    int sliding_window;  // keys a sliding-window layer's query sees; 0: no such layers
    float rope_scale;    // linear RoPE scaling: positions times this (1: none)
    float attn_softcap;  // scores -> cap * tanh(scores / cap) before the softmax (0: none)
    float final_softcap; // the same on the logits (0: none)
    int mlp_gated;       // the MLP has a gate (SwiGLU/GeGLU: three matrices), else up/down only
} cterp_model_config;

typedef struct cterp_model cterp_model;

// Loads a GGUF model, read-only: the file read into memory the kernel may back with 2 MiB pages
// where transparent huge pages are on and it fits in half the available memory (the decode
// streams every weight per token: 1.3x the tokens/s of 4 KiB pages on the 1B-shaped model,
// docs/model.md), else mmapped; CTERP_HUGE_PAGES=0 always maps. Errors name the file and
// tensor/key.
cterp_status cterp_model_open(cterp_model **out, const char *path);
// 1 when the model's file was read into memory for huge pages, 0 when it is mapped.
int cterp_model_huge_pages(const cterp_model *m);
void cterp_model_free(cterp_model *m); // NULL is a no-op

const cterp_model_config *cterp_model_config_of(const cterp_model *m);
// The model's tokenizer (owned by the model), or NULL if the file has no vocabulary.
const cterp_tokenizer *cterp_model_tokenizer(const cterp_model *m);
// Weight type name of the largest tensors ("F32", "Q8_0", ...).
const char *cterp_model_weight_type(const cterp_model *m);
// The GGUF file the model was opened from.
const char *cterp_model_path(const cterp_model *m);

// Bytes of the matmul weights a forward reads through the first n_layers blocks, plus the
// unembedding when with_output (as stored: quantized types count their packed size). For
// bandwidth bounds (cterp bench --model).
int64_t cterp_model_weight_bytes(const cterp_model *m, int n_layers, int with_output);
// The model file's identity as a 64-bit hash: its header, metadata and tensor infos whole, its
// tensor data sampled above 64 MiB (core/hash.h); not its path, so a copy matches. *bytes: the
// file's size.
uint64_t cterp_model_fingerprint(const cterp_model *m, int64_t *bytes);

// ---- hooks --------------------------------------------------------------------------------

// Called with the activation in place: read it, or modify it (the forward continues with the
// modified values). shape has ndim entries. A non-zero return aborts the forward with it.
typedef cterp_status (*cterp_hook_fn)(const char *name, float *act, const int64_t *shape, int ndim,
                                      void *user);

typedef struct {
    const char *name;
    cterp_hook_fn fn;
    void *user;
} cterp_hook;

// Number of hook points of this model and the i-th name (in forward order), for listings.
int cterp_model_n_hook_points(const cterp_model *m);
const char *cterp_model_hook_point(const cterp_model *m, int i, char *buf, size_t cap);
// Layer (-1 for hook_embed/hook_pos_embed, n_layers for ln_final) and the size of the last
// dimension (D, F, hd, or S for the pattern (0)) of a hook; CTERP_ENOTFOUND with the list of
// valid names otherwise.
cterp_status cterp_model_hook_info(const cterp_model *m, const char *name, int *layer, int *dim);

// Hook name of a component at a layer: "mlp" -> blocks.L.hook_mlp_out, "attn" -> hook_attn_out,
// "resid"/"resid_post", "resid_pre", "resid_mid", "mlp_post" -> blocks.L.mlp.hook_post,
// "mlp_pre", "q","k","v","z","pattern", "ln1", "ln2"; a name containing '.' or starting with
// "hook_" is returned as is.
cterp_status cterp_hook_name(int layer, const char *component, char *buf, size_t cap);

// ---- forward ------------------------------------------------------------------------------

typedef struct {
    const cterp_hook *hooks;
    int n_hooks;
    // Run blocks [0, stop_at_layer) only (TransformerLens semantics; no logits). 0: all blocks
    // when logits are wanted, else up to the block of the last hook.
    int stop_at_layer;
    float *logits; // (B, T, V), or (B, V) with last_only; NULL: none
    int last_only; // logits of the last position of each sequence only
} cterp_forward_opts;

// Forward of B sequences of T tokens each (tokens (B, T), row-major). opts may be NULL.
cterp_status cterp_model_forward(cterp_model *m, const int32_t *tokens, int B, int T,
                                 const cterp_forward_opts *opts);

// Logits of residual-stream directions without the final normalisation: out (R, V) =
// (x * the final norm's weight) W_U^T, TransformerLens's W_U with ln_final folded in and no
// bias (the form SAEDashboard's logit effects use). x is (R, D).
cterp_status cterp_model_unembed(cterp_model *m, const float *x, int64_t R, float *out);

// ---- KV cache and generation ---------------------------------------------------------------

typedef struct cterp_kv_cache cterp_kv_cache;

cterp_status cterp_kv_cache_create(cterp_kv_cache **out, const cterp_model *m, int max_tokens);
void cterp_kv_cache_free(cterp_kv_cache *c); // NULL is a no-op
void cterp_kv_cache_clear(cterp_kv_cache *c);
int cterp_kv_cache_len(const cterp_kv_cache *c);

// Appends n tokens of one sequence to the cache and runs them (B = 1); logits (n, V) or (V)
// with last_only. Hooks see only the new positions (pattern: [1, H, n, len + n]).
cterp_status cterp_model_decode(cterp_model *m, cterp_kv_cache *c, const int32_t *tokens, int n,
                                const cterp_forward_opts *opts);

typedef struct {
    float temperature; // 0: greedy
    float top_p;       // 1: off
    uint64_t seed;
} cterp_sampler_params;

// Samples a token from logits (V): greedy when temperature <= 0, otherwise softmax(logits/T)
// restricted to the smallest set with probability >= top_p. `state` is a 4-word RNG state
// seeded by cterp_sampler_seed.
int32_t cterp_sample(const float *logits, int V, const cterp_sampler_params *p, uint64_t state[4]);
void cterp_sampler_seed(uint64_t state[4], uint64_t seed);

// Called for each generated token; return non-zero to stop.
typedef int (*cterp_token_fn)(int32_t token, void *user);

// Runs the prompt then generates up to n_new tokens (stops at EOS, and at the model's context
// n_ctx: *n_out <= n_ctx; a prompt longer than that is an error). Hooks in opts (may be NULL)
// apply to every step, e.g. for steering. *out (malloc'd) receives prompt + generated ids.
cterp_status cterp_generate(cterp_model *m, const int32_t *prompt, int n_prompt, int n_new,
                            const cterp_sampler_params *p, const cterp_forward_opts *opts,
                            cterp_token_fn on_token, void *user, int32_t **out, int *n_out);

#ifdef __cplusplus
}
#endif
#endif
