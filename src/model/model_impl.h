// Internal to src/model: the model struct every family fills, the family table, the loader
// helpers the family files call, and the block functions the forward runs.
//
// Data flow: model.c opens the GGUF and looks up `general.architecture` in the table
// (families.c); the family's `load` (one file per family: llama.c, gpt2.c, gptneox.c, gemma.c,
// qwen.c, phi3.c) reads its hparams and tensors into the common layer_w/cterp_model fields and
// sets the style switches; the forward (model.c) embeds, then calls the family's `block` for each
// layer (block.c: pre-norm sequential or parallel attention+MLP), then the final norm and logits.
#ifndef CTERP_MODEL_IMPL_H
#define CTERP_MODEL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/model.h"
#include "io/gguf.h"

// A weight matrix W (rows, cols) as stored: rows of `cols` elements (cols = ne[0], the input).
typedef struct {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
} wmat;

// Every tensor any family has; a family leaves what it lacks NULL / zero.
typedef struct {
    const float *attn_norm, *attn_norm_b; // (D)
    wmat wq, wk, wv, wqkv, wo;            // q/k/v separate, or fused qkv (qd + 2 kvd, D)
    const float *bq, *bk, *bv, *bqkv, *bo;
    const float *q_norm, *k_norm;       // (hd) RMS norm of each head's q/k before RoPE (qk-norm)
    const float *attn_post_norm;        // (D) norm of the attention output (gemma2/3 ln1_post)
    const float *ffn_norm, *ffn_norm_b; // (D)
    wmat gate, up, down;                // up is (2F, D), gate then up, when fused (phi3)
    const float *bgate, *bup, *bdown;
    const float *ffn_post_norm; // (D) norm of the MLP output (gemma2/3 ln2_post)
    int window;                 // sliding-window layer: a query sees its last `window` keys; 0: all
    float rope_base, rope_scale; // per layer (gemma3: local layers have their own base)
} layer_w;

enum { NORM_RMS, NORM_LAYER };              // x/rms(x), or (x-mean)/std
enum { ROPE_NONE, ROPE_NORM, ROPE_NEOX };   // adjacent pairs (2j, 2j+1), or (j, j + n_rot/2)
enum { MLP_GELU, MLP_GELU_GATED, MLP_SILU_GATED }; // gelu(up x); act(gate x) * (up x)

// Hook kinds inside a block, in the order a block runs them; HK_N.. are outside blocks.
enum {
    HK_RESID_PRE,
    HK_LN1,
    HK_Q,
    HK_K,
    HK_V,
    HK_PATTERN,
    HK_Z,
    HK_LN1_POST,
    HK_ATTN_OUT,
    HK_RESID_MID,
    HK_LN2,
    HK_MLP_PRE,
    HK_MLP_PRE_LINEAR,
    HK_MLP_POST,
    HK_LN2_POST,
    HK_MLP_OUT,
    HK_RESID_POST,
    HK_N,
    HK_EMBED = HK_N,
    HK_POS_EMBED,
    HK_LN_FINAL
};

typedef struct block_ctx block_ctx;
typedef struct model_loader model_loader;

struct cterp_model {
    cterp_model_config cfg;
    gguf_file *g;
    int huge_pages; // the file read into memory for huge pages (file_map_open_huge), not mapped
    cterp_tokenizer *tok;
    const struct model_family *family;
    wmat tok_embd, pos_embd, output;
    const float *out_norm, *out_norm_b; // (D)
    const float *rope_freqs;            // (n_rot/2) frequency divisors or NULL (Llama 3.1)
    layer_w *layers;                    // (L)
    float *vecs;                        // one block holding every norm weight and bias as f32
    int64_t k_max;                      // largest input dim of any matmul
    // style: set by the family's load
    int norm, rope, mlp;
    float embed_scale; // token embeddings times this (gemma: sqrt(D)); 1: none
    float attn_scale;  // scores = q·k * attn_scale (1/sqrt(hd) unless the family says)
};

// One row of the family table (families.c).
typedef struct model_family {
    const char *name;                          // general.architecture
    cterp_status (*load)(model_loader *ld);    // hparams, style and tensors
    cterp_status (*block)(block_ctx *b, int l); // one transformer block on b's residual stream
} model_family;

const model_family *model_family_find(const char *name);
const char *model_family_names(void); // "llama, gpt2, ..." for messages

// ---- loader (load.c) -----------------------------------------------------------------------

struct model_loader {
    cterp_model *m;
    const char *arch;
    size_t vec_used, vec_cap;
    char key[128];
};

const char *ld_key(model_loader *ld, const char *suffix); // "<arch>.<suffix>"
// u32 key <arch>.suffix in [lo, hi]; def < 0: required
cterp_status ld_u32(model_loader *ld, const char *suffix, int *out, int def, int lo, int hi);
// f32 key, default def when absent; must be finite and in [lo, hi]
cterp_status ld_f32(model_loader *ld, const char *suffix, float *out, float def, float lo, float hi);
cterp_status ld_bool(model_loader *ld, const char *suffix, int *out, int def); // def < 0: required
cterp_status ld_mat(model_loader *ld, const char *name, int64_t cols, int64_t rows, wmat *w,
                    int optional);
cterp_status ld_vec(model_loader *ld, const char *name, int64_t n, const float **out, int optional);
int ld_has(model_loader *ld, const char *name); // tensor present

// The common hparams (layers, dims, heads, context, head_dim, rope dims/base/linear scaling,
// norm eps from `eps_key`), the vector block, the embeddings, final norm and output (tied when
// output.weight is absent). Families call it first.
cterp_status ld_common(model_loader *ld, const char *eps_key);
// Per-layer attention tensors: attn_norm(.bias), q/k/v or fused qkv (+ biases),
// attn_output(.bias), and q/k norms when present.
cterp_status ld_attn(model_loader *ld, int l);
// Per-layer MLP tensors: ffn_norm(.bias), gate (when gated), up, down (+ biases); fused: up is
// (2F, D) holding gate then up.
cterp_status ld_mlp(model_loader *ld, int l, int gated, int fused);
// Sliding-window layers from <arch>.attention.sliding_window(_pattern) as llama.cpp reads them:
// with pattern n, layer l slides when l % n < n - 1; an array of bools gives each layer.
cterp_status ld_swa(model_loader *ld, int default_window, int default_pattern);

// ---- blocks (block.c) ----------------------------------------------------------------------

typedef struct {
    const cterp_forward_opts *o;
    int *layer, *kind; // parsed per hook
} hooks_ctx;

struct block_ctx {
    const cterp_model *m;
    const hooks_ctx *hc;
    int B, T, pos0, any_pattern;
    const float *kbase_cache, *vbase_cache; // unused outside attention
    struct cterp_kv_cache *kc;
    float *x, *xn, *ao, *q, *z, *k, *v, *h1, *h2, *tile, *rc, *rs, *pat, *qkv, *scr, *x2;
    float rope_base, rope_scale; // what rc/rs hold (0: nothing yet)
};

cterp_status block_sequential(block_ctx *b, int l); // x += attn(ln1 x); x += mlp(ln2 x)
cterp_status block_parallel(block_ctx *b, int l);   // x += attn(ln1 x) + mlp(ln2 x)

// kernels shared by the forward driver
void model_matmul(float *y, const float *x, const wmat *W, const float *bias, int64_t M,
                  float *tile);
// floats of model_matmul's tile for rows of up to `cols` columns on this thread's team
size_t model_tile_floats(int64_t cols);
// Reads CTERP_DECODE_ROWS (block.c: how the decode reads quantized rows); a bad value is an error.
cterp_status model_decode_rows_env(void);
// model_matmul of n <= MODEL_MATMUL_MAX matrices of the same width on one x (q, k, v; gate, up):
// the same bits; a single token (M < 4) makes one parallel pass over all their rows.
#define MODEL_MATMUL_MAX 4
void model_matmul_n(float *const y[], const float *x, const wmat *const W[], const float *const bias[],
                    int n, int64_t M, float *tile);
void model_normalize(float *out, const float *x, int64_t M, int64_t D, float eps, int layer_norm);
void model_scale_shift(float *x, const float *w, const float *b, int64_t M, int64_t D);
cterp_status model_hook(const hooks_ctx *hc, int layer, int kind, float *act, int ndim, int64_t d0,
                        int64_t d1, int64_t d2, int64_t d3);

struct cterp_kv_cache {
    int max, len;
    int n_layers;
    int64_t kvd;
    float *k, *v; // (L, max, kvd)
};

// Below this much work a loop runs on one thread: a parallel region costs microseconds, and on
// a loaded machine spinning OpenMP threads cost far more than tiny loops save.
#define PAR_MIN (1 << 16)

// queries per attention SGEMM block (the per-thread score buffer is ATTN_QBLOCK x keys)
#define ATTN_QBLOCK 256

#endif
