// Llama and GPT-2 forward passes in f32 over mmapped (possibly quantized) GGUF weights, with
// TransformerLens hook points. Batched prefill dequantizes weight tiles to f32 and calls SGEMM;
// a single token uses a fused dequantize-dot per output row.
#include "cterp/model.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "io/gguf.h"
#include "model/quant.h"
#include "tokenizer/tokenizer_gguf.h"

// A weight matrix W (rows, cols) as stored: rows of `cols` elements (cols = ne[0], the input).
typedef struct {
    const void *data;
    uint32_t type;
    int64_t rows, cols;
    size_t row_bytes;
} wmat;

typedef struct {
    const float *attn_norm, *attn_norm_b; // (D)
    wmat wq, wk, wv, wqkv, wo;            // llama: q/k/v separate; gpt2: fused qkv (3D, D)
    const float *bq, *bk, *bv, *bqkv, *bo;
    const float *ffn_norm, *ffn_norm_b; // (D)
    wmat gate, up, down;
    const float *bgate, *bup, *bdown;
} layer_w;

struct cterp_model {
    cterp_model_config cfg;
    gguf_file *g;
    cterp_tokenizer *tok;
    wmat tok_embd, pos_embd, output;
    const float *out_norm, *out_norm_b; // (D)
    const float *rope_freqs;            // (n_rot/2) or NULL
    layer_w *layers;                    // (L)
    float *vecs;                        // one block holding every norm weight and bias as f32
    int64_t k_max;                      // largest input dim of any matmul
};

// ---- hook points --------------------------------------------------------------------------

enum {
    HK_RESID_PRE,
    HK_LN1,
    HK_Q,
    HK_K,
    HK_V,
    HK_PATTERN,
    HK_Z,
    HK_ATTN_OUT,
    HK_RESID_MID,
    HK_LN2,
    HK_MLP_PRE,
    HK_MLP_PRE_LINEAR,
    HK_MLP_POST,
    HK_MLP_OUT,
    HK_RESID_POST,
    HK_N,
    HK_EMBED = HK_N,
    HK_POS_EMBED,
    HK_LN_FINAL
};

static const char *HK_NAMES[HK_N] = {
    "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q",    "attn.hook_k",
    "attn.hook_v",    "attn.hook_pattern",   "attn.hook_z",    "hook_attn_out",
    "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre",   "mlp.hook_pre_linear",
    "mlp.hook_post",  "hook_mlp_out",        "hook_resid_post"};

static int hook_exists(const cterp_model *m, int kind) {
    if (kind == HK_MLP_PRE_LINEAR) return m->cfg.arch == CTERP_ARCH_LLAMA;
    if (kind == HK_POS_EMBED) return m->cfg.arch == CTERP_ARCH_GPT2;
    return 1;
}

static int parse_hook(const cterp_model *m, const char *name, int *layer, int *kind) {
    if (!strcmp(name, "hook_embed")) return *layer = -1, *kind = HK_EMBED, 1;
    if (!strcmp(name, "hook_pos_embed"))
        return *layer = -1, *kind = HK_POS_EMBED, hook_exists(m, HK_POS_EMBED);
    if (!strcmp(name, "ln_final.hook_normalized"))
        return *layer = m->cfg.n_layers, *kind = HK_LN_FINAL, 1;
    if (strncmp(name, "blocks.", 7) != 0) return 0;
    const char *p = name + 7;
    if (*p < '0' || *p > '9') return 0;
    long l = 0;
    while (*p >= '0' && *p <= '9' && l < 1000000) l = l * 10 + (*p++ - '0');
    if (*p != '.' || l >= m->cfg.n_layers) return 0;
    p++;
    for (int k = 0; k < HK_N; k++)
        if (!strcmp(p, HK_NAMES[k]) && hook_exists(m, k)) return *layer = (int)l, *kind = k, 1;
    return 0;
}

int cterp_model_n_hook_points(const cterp_model *m) {
    int per = 0;
    for (int k = 0; k < HK_N; k++) per += hook_exists(m, k);
    return 1 + (m->cfg.arch == CTERP_ARCH_GPT2) + per * m->cfg.n_layers + 1;
}

const char *cterp_model_hook_point(const cterp_model *m, int i, char *buf, size_t cap) {
    if (i == 0) return snprintf(buf, cap, "hook_embed"), buf;
    i--;
    if (m->cfg.arch == CTERP_ARCH_GPT2) {
        if (i == 0) return snprintf(buf, cap, "hook_pos_embed"), buf;
        i--;
    }
    int per = 0, kinds[HK_N];
    for (int k = 0; k < HK_N; k++)
        if (hook_exists(m, k)) kinds[per++] = k;
    if (i < per * m->cfg.n_layers)
        return snprintf(buf, cap, "blocks.%d.%s", i / per, HK_NAMES[kinds[i % per]]), buf;
    if (i == per * m->cfg.n_layers) return snprintf(buf, cap, "ln_final.hook_normalized"), buf;
    if (cap) buf[0] = 0;
    return buf;
}

static cterp_status unknown_hook(const cterp_model *m, const char *name) {
    char list[1200];
    size_t n = 0;
    n += (size_t)snprintf(list + n, sizeof list - n, "hook_embed, %sblocks.{0..%d}.{",
                          m->cfg.arch == CTERP_ARCH_GPT2 ? "hook_pos_embed, " : "",
                          m->cfg.n_layers - 1);
    for (int k = 0; k < HK_N && n < sizeof list; k++)
        if (hook_exists(m, k))
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", k ? ", " : "", HK_NAMES[k]);
    if (n < sizeof list) snprintf(list + n, sizeof list - n, "}, ln_final.hook_normalized");
    return cterp_error(CTERP_ENOTFOUND, "unknown hook '%.200s'; valid hook names: %s", name, list);
}

cterp_status cterp_model_hook_info(const cterp_model *m, const char *name, int *layer, int *dim) {
    int l, k;
    if (!parse_hook(m, name, &l, &k)) return unknown_hook(m, name);
    const cterp_model_config *c = &m->cfg;
    int d = c->d_model;
    if (k == HK_Q || k == HK_K || k == HK_V || k == HK_Z)
        d = c->head_dim;
    else if (k == HK_PATTERN)
        d = 0;
    else if (k == HK_MLP_PRE || k == HK_MLP_PRE_LINEAR || k == HK_MLP_POST)
        d = c->d_ff;
    if (layer) *layer = l;
    if (dim) *dim = d;
    return CTERP_OK;
}

cterp_status cterp_hook_name(int layer, const char *component, char *buf, size_t cap) {
    static const struct {
        const char *comp, *hook;
    } map[] = {{"mlp", "hook_mlp_out"},
               {"mlp_out", "hook_mlp_out"},
               {"attn", "hook_attn_out"},
               {"attn_out", "hook_attn_out"},
               {"resid", "hook_resid_post"},
               {"resid_post", "hook_resid_post"},
               {"resid_pre", "hook_resid_pre"},
               {"resid_mid", "hook_resid_mid"},
               {"mlp_post", "mlp.hook_post"},
               {"mlp_pre", "mlp.hook_pre"},
               {"q", "attn.hook_q"},
               {"k", "attn.hook_k"},
               {"v", "attn.hook_v"},
               {"z", "attn.hook_z"},
               {"pattern", "attn.hook_pattern"},
               {"ln1", "ln1.hook_normalized"},
               {"ln2", "ln2.hook_normalized"}};
    if (!component || !buf || !cap) return cterp_error(CTERP_EINVAL, "hook name: no component");
    if (strchr(component, '.') || !strncmp(component, "hook_", 5)) {
        if (strlen(component) >= cap)
            return cterp_error(CTERP_EINVAL, "hook name: '%s' longer than the buffer", component);
        strcpy(buf, component);
        return CTERP_OK;
    }
    if (layer < 0) return cterp_error(CTERP_EINVAL, "hook name: layer %d < 0", layer);
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(component, map[i].comp)) {
            if ((size_t)snprintf(buf, cap, "blocks.%d.%s", layer, map[i].hook) >= cap)
                return cterp_error(CTERP_EINVAL, "hook name: buffer too small");
            return CTERP_OK;
        }
    return cterp_error(CTERP_EINVAL,
                       "unknown component '%s': expected mlp, attn, resid, resid_post, resid_pre, "
                       "resid_mid, mlp_post, mlp_pre, q, k, v, z, pattern, ln1, ln2 or a hook name",
                       component);
}

// ---- loading ------------------------------------------------------------------------------

void cterp_model_free(cterp_model *m) {
    if (!m) return;
    cterp_tokenizer_free(m->tok);
    gguf_close(m->g);
    free(m->layers);
    free(m->vecs);
    free(m);
}

const cterp_model_config *cterp_model_config_of(const cterp_model *m) {
    return &m->cfg;
}
const cterp_tokenizer *cterp_model_tokenizer(const cterp_model *m) {
    return m->tok;
}
const char *cterp_model_weight_type(const cterp_model *m) {
    return gguf_type_name(m->layers[0].wo.type);
}

const char *cterp_model_path(const cterp_model *m) {
    return m->g->path;
}

uint64_t cterp_model_fingerprint(const cterp_model *m, int64_t *bytes) {
    const gguf_file *g = m->g;
    *bytes = (int64_t)g->size;
    // header, metadata and tensor infos whole: architecture, dims, vocabulary, tensor types
    uint64_t h = hash_bytes(0x6767756dULL, g->map, g->data_offset);
    return hash_sampled(h, g->map + g->data_offset, g->size - g->data_offset);
}

typedef struct {
    cterp_model *m;
    const char *arch;
    size_t vec_used, vec_cap;
    char key[128];
} loader;

static const char *akey(loader *ld, const char *suffix) {
    snprintf(ld->key, sizeof ld->key, "%s.%s", ld->arch, suffix);
    return ld->key;
}

static cterp_status need_u32(loader *ld, const char *suffix, int *out, int def, int lo, int hi) {
    uint32_t v;
    cterp_status s = gguf_get_u32(ld->m->g, akey(ld, suffix), &v);
    if (s == CTERP_ENOTFOUND && def >= 0)
        v = (uint32_t)def;
    else if (s == CTERP_ENOTFOUND)
        return cterp_error(CTERP_EFORMAT, "%s: missing key '%s'", ld->m->g->path, ld->key);
    else if (s)
        return s;
    if (v < (uint32_t)lo || v > (uint32_t)hi)
        return cterp_error(CTERP_EFORMAT, "%s: %s: expected %d..%d, found %u", ld->m->g->path,
                           ld->key, lo, hi, v);
    *out = (int)v;
    return CTERP_OK;
}

static cterp_status get_mat(loader *ld, const char *name, int64_t cols, int64_t rows, wmat *w,
                            int optional) {
    const gguf_tensor *t = gguf_find_tensor(ld->m->g, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (optional) return CTERP_OK;
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s' missing", ld->m->g->path, name);
    }
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor '%s': expected shape [%lld, %lld], found [%lld, %lld, %lld, "
                           "%lld]",
                           ld->m->g->path, name, (long long)cols, (long long)rows,
                           (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                           (long long)t->ne[3]);
    if (!quant_supported(t->type))
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor '%s': type %s not supported (F32, F16, BF16, Q8_0, Q4_0, "
                           "Q4_K, Q6_K are)",
                           ld->m->g->path, name, gguf_type_name(t->type));
    if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data & 3))
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': F32 data not 4-byte aligned",
                           ld->m->g->path, name);
    w->data = t->data;
    w->type = t->type;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = quant_row_bytes(t->type, cols);
    if (cols > ld->m->k_max) ld->m->k_max = cols;
    return CTERP_OK;
}

// A vector (n) of any supported type, converted into the model's f32 block.
static cterp_status get_vec(loader *ld, const char *name, int64_t n, const float **out,
                            int optional) {
    *out = NULL;
    wmat w;
    cterp_status s = get_mat(ld, name, n, 1, &w, optional);
    if (s || !w.data) return s;
    if (ld->vec_used + (size_t)n > ld->vec_cap)
        return cterp_error(CTERP_EINVAL, "internal: vector block too small for '%s'", name);
    float *dst = ld->m->vecs + ld->vec_used;
    quant_dequant_row(w.type, w.data, dst, n);
    ld->vec_used += (size_t)n;
    *out = dst;
    return CTERP_OK;
}

static cterp_status load(cterp_model *m) {
    cterp_status s;
    gguf_str arch;
    cterp_model_config *c = &m->cfg;
    if ((s = gguf_get_str(m->g, "general.architecture", &arch))) return s;
    char an[32];
    gguf_str_copy(arch, an, sizeof an);
    if (!strcmp(an, "llama"))
        c->arch = CTERP_ARCH_LLAMA;
    else if (!strcmp(an, "gpt2"))
        c->arch = CTERP_ARCH_GPT2;
    else
        return cterp_error(CTERP_EFORMAT,
                           "%s: general.architecture: expected \"llama\" or \"gpt2\", found \"%s\"",
                           m->g->path, an);
    loader ld = {.m = m, .arch = c->arch == CTERP_ARCH_LLAMA ? "llama" : "gpt2"};
    const int BIG = 1 << 20;
    if ((s = need_u32(&ld, "block_count", &c->n_layers, -1, 1, 4096))) return s;
    if ((s = need_u32(&ld, "embedding_length", &c->d_model, -1, 1, BIG))) return s;
    if ((s = need_u32(&ld, "feed_forward_length", &c->d_ff, -1, 1, BIG))) return s;
    if ((s = need_u32(&ld, "attention.head_count", &c->n_heads, -1, 1, 4096))) return s;
    if ((s = need_u32(&ld, "attention.head_count_kv", &c->n_kv_heads, c->n_heads, 1, 4096)))
        return s;
    if ((s = need_u32(&ld, "context_length", &c->n_ctx, 2048, 1, 1 << 24))) return s;
    if (c->d_model % c->n_heads && !gguf_has_key(m->g, akey(&ld, "attention.key_length")))
        return cterp_error(CTERP_EFORMAT, "%s: embedding_length %d not divisible by head_count %d",
                           m->g->path, c->d_model, c->n_heads);
    if ((s = need_u32(&ld, "attention.key_length", &c->head_dim, c->d_model / c->n_heads, 1,
                      65536)))
        return s;
    int vlen;
    if ((s = need_u32(&ld, "attention.value_length", &vlen, c->head_dim, 1, 65536))) return s;
    if (vlen != c->head_dim)
        return cterp_error(CTERP_EFORMAT,
                           "%s: attention.value_length %d != key_length %d (unsupported)",
                           m->g->path, vlen, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return cterp_error(CTERP_EFORMAT, "%s: head_count %d not a multiple of head_count_kv %d",
                           m->g->path, c->n_heads, c->n_kv_heads);
    if (c->arch == CTERP_ARCH_GPT2 &&
        (c->head_dim * c->n_heads != c->d_model || c->n_kv_heads != c->n_heads))
        return cterp_error(CTERP_EFORMAT,
                           "%s: gpt2 needs head_count * head_dim == embedding_length", m->g->path);
    c->n_rot = 0;
    if (c->arch == CTERP_ARCH_LLAMA) {
        if ((s = need_u32(&ld, "rope.dimension_count", &c->n_rot, c->head_dim, 2, c->head_dim)))
            return s;
        if (c->n_rot % 2)
            return cterp_error(CTERP_EFORMAT, "%s: rope.dimension_count: expected even, found %d",
                               m->g->path, c->n_rot);
        c->rope_base = 10000.0f;
        s = gguf_get_f32(m->g, akey(&ld, "rope.freq_base"), &c->rope_base);
        if (s && s != CTERP_ENOTFOUND) return s;
        c->norm_eps = 1e-5f;
        s = gguf_get_f32(m->g, akey(&ld, "attention.layer_norm_rms_epsilon"), &c->norm_eps);
    } else {
        c->norm_eps = 1e-5f;
        s = gguf_get_f32(m->g, akey(&ld, "attention.layer_norm_epsilon"), &c->norm_eps);
    }
    if (s && s != CTERP_ENOTFOUND) return s;

    const gguf_tensor *te = gguf_find_tensor(m->g, "token_embd.weight");
    if (!te)
        return cterp_error(CTERP_EFORMAT, "%s: tensor 'token_embd.weight' missing", m->g->path);
    if (te->ne[1] < 1 || te->ne[1] > (1 << 30))
        return cterp_error(CTERP_EFORMAT, "%s: token_embd.weight: vocabulary of %lld rows",
                           m->g->path, (long long)te->ne[1]);
    c->n_vocab = (int)te->ne[1];
    int64_t D = c->d_model, F = c->d_ff, V = c->n_vocab, hd = c->head_dim;
    int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;

    // vector block: norms and biases of every layer plus the final norm and rope_freqs
    ld.vec_cap = (size_t)c->n_layers * (size_t)(4 * D + qd + 2 * kvd + 3 * qd + D + 2 * F + D) +
                 2 * (size_t)D + (size_t)hd;
    // Real files hold far more matrix bytes than vector elements; a header claiming dims the
    // file cannot contain must not drive a huge allocation.
    if (ld.vec_cap / 4 > m->g->size)
        return cterp_error(
            CTERP_EFORMAT,
            "%s: dims (%d layers, d_model %d, d_ff %d) too large for a %zu-byte file", m->g->path,
            c->n_layers, c->d_model, c->d_ff, m->g->size);
    m->vecs = malloc(ld.vec_cap * sizeof(float));
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->vecs || !m->layers) return cterp_error(CTERP_ENOMEM, "%s: out of memory", m->g->path);

    if ((s = get_mat(&ld, "token_embd.weight", D, V, &m->tok_embd, 0))) return s;
    if ((s = get_mat(&ld, "output.weight", D, V, &m->output, 1))) return s;
    c->tied_output = m->output.data == NULL;
    if (c->tied_output) m->output = m->tok_embd;
    if ((s = get_vec(&ld, "output_norm.weight", D, &m->out_norm, 0))) return s;
    if ((s = get_vec(&ld, "output_norm.bias", D, &m->out_norm_b, c->arch == CTERP_ARCH_LLAMA)))
        return s;
    if (c->arch == CTERP_ARCH_GPT2) {
        const gguf_tensor *pe = gguf_find_tensor(m->g, "position_embd.weight");
        if (pe && pe->ne[1] >= 1 && pe->ne[1] < (1 << 24)) c->n_ctx = (int)pe->ne[1];
        if ((s = get_mat(&ld, "position_embd.weight", D, c->n_ctx, &m->pos_embd, 0))) return s;
    } else if ((s = get_vec(&ld, "rope_freqs.weight", c->n_rot / 2, &m->rope_freqs, 1)))
        return s;

    char nm[96];
#define NAME(fmt) (snprintf(nm, sizeof nm, "blk.%d." fmt, l), nm)
    for (int l = 0; l < c->n_layers; l++) {
        layer_w *w = &m->layers[l];
        int gpt = c->arch == CTERP_ARCH_GPT2;
        if ((s = get_vec(&ld, NAME("attn_norm.weight"), D, &w->attn_norm, 0))) return s;
        if ((s = get_vec(&ld, NAME("attn_norm.bias"), D, &w->attn_norm_b, !gpt))) return s;
        if ((s = get_vec(&ld, NAME("ffn_norm.weight"), D, &w->ffn_norm, 0))) return s;
        if ((s = get_vec(&ld, NAME("ffn_norm.bias"), D, &w->ffn_norm_b, !gpt))) return s;
        if (gpt) {
            if ((s = get_mat(&ld, NAME("attn_qkv.weight"), D, 3 * D, &w->wqkv, 0))) return s;
            if ((s = get_vec(&ld, NAME("attn_qkv.bias"), 3 * D, &w->bqkv, 1))) return s;
        } else {
            if ((s = get_mat(&ld, NAME("attn_q.weight"), D, qd, &w->wq, 0))) return s;
            if ((s = get_mat(&ld, NAME("attn_k.weight"), D, kvd, &w->wk, 0))) return s;
            if ((s = get_mat(&ld, NAME("attn_v.weight"), D, kvd, &w->wv, 0))) return s;
            if ((s = get_vec(&ld, NAME("attn_q.bias"), qd, &w->bq, 1))) return s;
            if ((s = get_vec(&ld, NAME("attn_k.bias"), kvd, &w->bk, 1))) return s;
            if ((s = get_vec(&ld, NAME("attn_v.bias"), kvd, &w->bv, 1))) return s;
            if ((s = get_mat(&ld, NAME("ffn_gate.weight"), D, F, &w->gate, 0))) return s;
        }
        if ((s = get_mat(&ld, NAME("attn_output.weight"), qd, D, &w->wo, 0))) return s;
        if ((s = get_vec(&ld, NAME("attn_output.bias"), D, &w->bo, 1))) return s;
        if ((s = get_mat(&ld, NAME("ffn_up.weight"), D, F, &w->up, 0))) return s;
        if ((s = get_vec(&ld, NAME("ffn_up.bias"), F, &w->bup, 1))) return s;
        if ((s = get_mat(&ld, NAME("ffn_down.weight"), F, D, &w->down, 0))) return s;
        if ((s = get_vec(&ld, NAME("ffn_down.bias"), D, &w->bdown, 1))) return s;
    }
#undef NAME
    if (gguf_has_key(m->g, "tokenizer.ggml.model")) {
        if ((s = tokenizer_from_gguf(&m->tok, m->g))) return s;
        if (cterp_tokenizer_n_vocab(m->tok) > c->n_vocab)
            return cterp_error(CTERP_EFORMAT, "%s: vocabulary has %d tokens but token_embd %d rows",
                               m->g->path, cterp_tokenizer_n_vocab(m->tok), c->n_vocab);
    }
    return CTERP_OK;
}

cterp_status cterp_model_open(cterp_model **out, const char *path) {
    *out = NULL;
    cterp_model *m = calloc(1, sizeof *m);
    if (!m) return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    cterp_status s = gguf_open(&m->g, path);
    if (!s) s = load(m);
    if (s) {
        cterp_model_free(m);
        return s;
    }
    *out = m;
    return CTERP_OK;
}

// ---- kernels ------------------------------------------------------------------------------

// Below this much work a loop runs on one thread: a parallel region costs microseconds, and on
// a loaded machine spinning OpenMP threads cost far more than tiny loops save.
#define PAR_MIN (1 << 16)

// Rows per dequantized tile: about 1 MiB of f32, at least 16 rows.
static int64_t tile_rows(int64_t cols) {
    int64_t r = (1 << 18) / cols;
    return r < 16 ? 16 : r;
}

// y (M, N) = x (M, K) · W^T (+ bias (N)); W (N, K) in any supported type. tile: scratch of
// tile_rows(K) * K floats. Deterministic for a fixed thread count.
static void matmul(float *y, const float *x, const wmat *W, const float *bias, int64_t M,
                   float *tile) {
    int64_t N = W->rows, K = W->cols;
    if (M < 4) { // single-token decode: the fused dot reads each weight once
#pragma omp parallel for schedule(static) if (M * N * K > PAR_MIN)
        for (int64_t n = 0; n < N; n++) {
            const uint8_t *row = (const uint8_t *)W->data + (size_t)n * W->row_bytes;
            for (int64_t mi = 0; mi < M; mi++)
                y[mi * N + n] = quant_dot_row(W->type, row, x + mi * K, K);
        }
    } else if (W->type == GGML_TYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x,
                    (int)K, (const float *)W->data, (int)K, 0.0f, y, (int)N);
    } else {
        int64_t tr = tile_rows(K);
        for (int64_t n0 = 0; n0 < N; n0 += tr) {
            int64_t nr = N - n0 < tr ? N - n0 : tr;
#pragma omp parallel for schedule(static) if (nr * K > PAR_MIN)
            for (int64_t r = 0; r < nr; r++)
                quant_dequant_row(W->type,
                                  (const uint8_t *)W->data + (size_t)(n0 + r) * W->row_bytes,
                                  tile + r * K, K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nr, (int)K, 1.0f, x,
                        (int)K, tile, (int)K, 0.0f, y + n0, (int)N);
        }
    }
    if (bias)
#pragma omp parallel for schedule(static) if (M * N > PAR_MIN)
        for (int64_t mi = 0; mi < M; mi++)
            for (int64_t n = 0; n < N; n++) y[mi * N + n] += bias[n];
}

// out (M, D) = normalized x (before weight/bias): RMS (llama) or centred LayerNorm (gpt2).
static void normalize(float *out, const float *x, int64_t M, int64_t D, float eps, int layer_norm) {
#pragma omp parallel for schedule(static) if (M * D > PAR_MIN)
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * D;
        float *o = out + i * D;
        double mean = 0, ss = 0;
        if (layer_norm) {
            for (int64_t j = 0; j < D; j++) mean += xi[j];
            mean /= (double)D;
        }
        for (int64_t j = 0; j < D; j++) ss += ((double)xi[j] - mean) * ((double)xi[j] - mean);
        float inv = (float)(1.0 / sqrt(ss / (double)D + eps));
        for (int64_t j = 0; j < D; j++) o[j] = (float)((double)xi[j] - mean) * inv;
    }
}

static void scale_shift(float *x, const float *w, const float *b, int64_t M, int64_t D) {
#pragma omp parallel for schedule(static) if (M * D > PAR_MIN)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < D; j++) x[i * D + j] = x[i * D + j] * w[j] + (b ? b[j] : 0.0f);
}

// Adjacent-pair RoPE (GGUF / llama.cpp NORM layout): rotate (x[2j], x[2j+1]) by pos·θ_j.
static void rope(float *x, int64_t M, int heads, int hd, int n_rot, const float *cs,
                 const float *sn) {
#pragma omp parallel for schedule(static) if (M * heads * n_rot > PAR_MIN)
    for (int64_t i = 0; i < M; i++)
        for (int h = 0; h < heads; h++) {
            float *v = x + (i * heads + h) * hd;
            for (int j = 0; j < n_rot / 2; j++) {
                float c = cs[i * (n_rot / 2) + j], s = sn[i * (n_rot / 2) + j];
                float a = v[2 * j], b = v[2 * j + 1];
                v[2 * j] = a * c - b * s;
                v[2 * j + 1] = a * s + b * c;
            }
        }
}

static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// ---- forward ------------------------------------------------------------------------------

struct cterp_kv_cache {
    int max, len;
    int n_layers;
    int64_t kvd;
    float *k, *v; // (L, max, kvd)
};

typedef struct {
    const cterp_forward_opts *o;
    int *layer, *kind; // parsed per hook
} hooks_ctx;

static cterp_status call(const hooks_ctx *hc, int layer, int kind, float *act, const int64_t *shape,
                         int ndim) {
    for (int i = 0; i < hc->o->n_hooks; i++)
        if (hc->layer[i] == layer && hc->kind[i] == kind) {
            cterp_status s =
                hc->o->hooks[i].fn(hc->o->hooks[i].name, act, shape, ndim, hc->o->hooks[i].user);
            if (s) return s;
        }
    return CTERP_OK;
}

static int hooked(const hooks_ctx *hc, int layer, int kind) {
    for (int i = 0; i < hc->o->n_hooks; i++)
        if (hc->layer[i] == layer && hc->kind[i] == kind) return 1;
    return 0;
}

static cterp_status run(cterp_model *m, const int32_t *tokens, int B, int T, cterp_kv_cache *kc,
                        const cterp_forward_opts *opts) {
    static const cterp_forward_opts none = {0};
    const cterp_forward_opts *o = opts ? opts : &none;
    const cterp_model_config *c = &m->cfg;
    if (B < 1 || T < 1)
        return cterp_error(CTERP_EINVAL, "forward: expected B >= 1 and T >= 1, found B=%d T=%d", B,
                           T);
    int pos0 = kc ? kc->len : 0;
    if (kc && (B != 1 || pos0 + T > kc->max))
        return cterp_error(CTERP_EINVAL, "decode: %d tokens do not fit the cache (%d of %d used)",
                           T, kc->len, kc->max);
    if (c->arch == CTERP_ARCH_GPT2 && pos0 + T > c->n_ctx)
        return cterp_error(CTERP_EINVAL, "forward: %d positions exceed gpt2's %d learned positions",
                           pos0 + T, c->n_ctx);
    const int64_t BT = (int64_t)B * T;
    for (int64_t i = 0; i < BT; i++)
        if (tokens[i] < 0 || tokens[i] >= c->n_vocab)
            return cterp_error(CTERP_EINVAL, "forward: token %d at position %lld outside [0, %d)",
                               tokens[i], (long long)i, c->n_vocab);

    hooks_ctx hc = {o, NULL, NULL};
    int n_hooks = o->n_hooks > 0 ? o->n_hooks : 0, last_layer = -1;
    hc.layer = malloc(((size_t)n_hooks + 1) * 2 * sizeof(int));
    if (!hc.layer) return cterp_error(CTERP_ENOMEM, "forward: out of memory");
    hc.kind = hc.layer + n_hooks + 1;
    for (int i = 0; i < n_hooks; i++) {
        if (!o->hooks[i].name || !o->hooks[i].fn ||
            !parse_hook(m, o->hooks[i].name, &hc.layer[i], &hc.kind[i])) {
            free(hc.layer);
            if (!o->hooks[i].fn) return cterp_error(CTERP_EINVAL, "hook %d has no function", i);
            return unknown_hook(m, o->hooks[i].name ? o->hooks[i].name : "(null)");
        }
        if (hc.layer[i] > last_layer) last_layer = hc.layer[i];
    }
    int n_run = c->n_layers, want_final = o->logits != NULL || last_layer == c->n_layers;
    if (o->stop_at_layer > 0) {
        n_run = o->stop_at_layer < c->n_layers ? o->stop_at_layer : c->n_layers;
        want_final = 0;
    } else if (!o->logits && !kc && n_hooks) {
        n_run = last_layer + 1 < c->n_layers ? (last_layer < 0 ? 0 : last_layer + 1) : c->n_layers;
    }
    if (kc) n_run = c->n_layers; // the cache must hold every layer

    const int64_t D = c->d_model, F = c->d_ff, H = c->n_heads, Hkv = c->n_kv_heads,
                  hd = c->head_dim;
    const int64_t qd = H * hd, kvd = Hkv * hd, S = pos0 + T;
    const int gpt = c->arch == CTERP_ARCH_GPT2;
    int nthr = omp_get_max_threads();
    int any_pattern = 0;
    for (int i = 0; i < n_hooks; i++) any_pattern |= hc.kind[i] == HK_PATTERN;
    size_t n_x = (size_t)BT * D, n_q = (size_t)BT * qd, n_kv = (size_t)BT * kvd,
           n_f = (size_t)BT * F;
    // tile_rows(K) * K <= max(2^18, 16 K) for every K <= k_max
    size_t n_tile = (size_t)m->k_max * 16 > (1u << 18) ? (size_t)m->k_max * 16 : (1u << 18);
    size_t n_rope = (size_t)T * (size_t)(c->n_rot / 2 + 1);
    size_t n_pat = any_pattern ? (size_t)B * H * T * S : 0;
    size_t n_qkv = gpt ? (size_t)BT * 3 * D : 0;
    size_t total = 3 * n_x + 2 * n_q + 2 * n_kv + 2 * n_f + n_tile + 2 * n_rope + n_pat + n_qkv +
                   (size_t)nthr * (size_t)S;
    float *mem = malloc(total * sizeof(float));
    if (!mem) {
        free(hc.layer);
        return cterp_error(CTERP_ENOMEM, "forward: out of memory (%zu MiB of activations)",
                           total * 4 >> 20);
    }
    float *x = mem;            // (BT, D) residual stream
    float *xn = x + n_x;       // (BT, D) normalized
    float *ao = xn + n_x;      // (BT, D) attn_out / mlp_out / pos_embed
    float *q = ao + n_x;       // (BT, H, hd)
    float *z = q + n_q;        // (BT, H, hd)
    float *k = z + n_q;        // (BT, Hkv, hd)
    float *v = k + n_kv;       // (BT, Hkv, hd)
    float *h1 = v + n_kv;      // (BT, F)
    float *h2 = h1 + n_f;      // (BT, F)
    float *tile = h2 + n_f;    // dequantized weight tile
    float *rc = tile + n_tile; // (T, n_rot/2) cos
    float *rs = rc + n_rope;   // (T, n_rot/2) sin
    float *pat = rs + n_rope;  // (B, H, T, S) when hooked
    float *qkv = pat + n_pat;  // (BT, 3D) gpt2
    float *scr = qkv + n_qkv;  // (nthr, S) attention rows
    cterp_status s = CTERP_OK;
    int64_t shp[4];
#define HOOK(layer, kind, act, nd, ...)                                                            \
    do {                                                                                           \
        int64_t sh_[] = {__VA_ARGS__};                                                             \
        memcpy(shp, sh_, sizeof sh_);                                                              \
        if ((s = call(&hc, layer, kind, act, shp, nd))) goto done;                                 \
    } while (0)

    // embeddings
#pragma omp parallel for schedule(static) if (BT * D > PAR_MIN)
    for (int64_t i = 0; i < BT; i++)
        quant_dequant_row(m->tok_embd.type,
                          (const uint8_t *)m->tok_embd.data +
                              (size_t)tokens[i] * m->tok_embd.row_bytes,
                          x + i * D, D);
    HOOK(-1, HK_EMBED, x, 3, B, T, D);
    if (gpt) {
#pragma omp parallel for schedule(static) if (BT * D > PAR_MIN)
        for (int64_t i = 0; i < BT; i++)
            quant_dequant_row(m->pos_embd.type,
                              (const uint8_t *)m->pos_embd.data +
                                  (size_t)(pos0 + i % T) * m->pos_embd.row_bytes,
                              ao + i * D, D);
        HOOK(-1, HK_POS_EMBED, ao, 3, B, T, D);
        for (size_t i = 0; i < n_x; i++) x[i] += ao[i];
    } else {
        int half = c->n_rot / 2;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < half; j++) {
                double theta = pow((double)c->rope_base, -2.0 * j / (double)c->n_rot);
                if (m->rope_freqs) theta /= (double)m->rope_freqs[j];
                double a = (double)(pos0 + t) * theta;
                rc[t * half + j] = (float)cos(a);
                rs[t * half + j] = (float)sin(a);
            }
    }

    for (int l = 0; l < n_run; l++) {
        const layer_w *w = &m->layers[l];
        HOOK(l, HK_RESID_PRE, x, 3, B, T, D);
        normalize(xn, x, BT, D, c->norm_eps, gpt);
        HOOK(l, HK_LN1, xn, 3, B, T, D);
        scale_shift(xn, w->attn_norm, w->attn_norm_b, BT, D);
        if (gpt) {
            matmul(qkv, xn, &w->wqkv, w->bqkv, BT, tile);
#pragma omp parallel for schedule(static) if (BT * D > PAR_MIN)
            for (int64_t i = 0; i < BT; i++) {
                memcpy(q + i * qd, qkv + i * 3 * D, (size_t)D * 4);
                memcpy(k + i * kvd, qkv + i * 3 * D + D, (size_t)D * 4);
                memcpy(v + i * kvd, qkv + i * 3 * D + 2 * D, (size_t)D * 4);
            }
        } else {
            matmul(q, xn, &w->wq, w->bq, BT, tile);
            matmul(k, xn, &w->wk, w->bk, BT, tile);
            matmul(v, xn, &w->wv, w->bv, BT, tile);
        }
        HOOK(l, HK_Q, q, 4, B, T, H, hd);
        HOOK(l, HK_K, k, 4, B, T, Hkv, hd);
        HOOK(l, HK_V, v, 4, B, T, Hkv, hd);
        if (!gpt) {
            // positions repeat per sequence: rope tables are per t, so apply per batch row
            for (int b = 0; b < B; b++) {
                rope(q + (int64_t)b * T * qd, T, (int)H, (int)hd, c->n_rot, rc, rs);
                rope(k + (int64_t)b * T * kvd, T, (int)Hkv, (int)hd, c->n_rot, rc, rs);
            }
        }
        const float *kbase = k, *vbase = v;
        if (kc) {
            float *ck = kc->k + ((size_t)l * kc->max + (size_t)pos0) * kvd;
            float *cv = kc->v + ((size_t)l * kc->max + (size_t)pos0) * kvd;
            memcpy(ck, k, n_kv * 4);
            memcpy(cv, v, n_kv * 4);
            kbase = kc->k + (size_t)l * kc->max * kvd;
            vbase = kc->v + (size_t)l * kc->max * kvd;
        }
        int hook_pat = any_pattern && hooked(&hc, l, HK_PATTERN);
        const float scale = 1.0f / sqrtf((float)hd);
        const int64_t grp = H / Hkv;
        // pass 1 (always): scores and softmax; pass 2: z = pattern · v. With a pattern hook the
        // full pattern is kept between the passes so the hook can read or edit it.
        for (int pass = 0; pass < (hook_pat ? 2 : 1); pass++) {
#pragma omp parallel for schedule(static) if (B * H * T * S * hd > PAR_MIN)
            for (int64_t r = 0; r < (int64_t)B * H * T; r++) {
                int64_t b = r / (H * T), h = (r / T) % H, t = r % T;
                int64_t n_keys = pos0 + t + 1, kvh = h / grp;
                const float *kb = kbase + (kc ? 0 : b * T * kvd);
                const float *vb = vbase + (kc ? 0 : b * T * kvd);
                float *p = hook_pat ? pat + r * S : scr + (size_t)omp_get_thread_num() * S;
                if (pass == 0) {
                    const float *qr = q + ((b * T + t) * H + h) * hd;
                    float mx = -INFINITY;
                    for (int64_t j = 0; j < n_keys; j++) {
                        const float *kr = kb + j * kvd + kvh * hd;
                        float dot = 0;
                        for (int64_t d = 0; d < hd; d++) dot += qr[d] * kr[d];
                        p[j] = dot * scale;
                        if (p[j] > mx) mx = p[j];
                    }
                    float sum = 0;
                    for (int64_t j = 0; j < n_keys; j++) sum += (p[j] = expf(p[j] - mx));
                    for (int64_t j = 0; j < n_keys; j++) p[j] /= sum;
                    for (int64_t j = n_keys; j < S; j++) p[j] = 0;
                }
                if (pass == 1 || !hook_pat) {
                    float *zr = z + ((b * T + t) * H + h) * hd;
                    for (int64_t d = 0; d < hd; d++) zr[d] = 0;
                    for (int64_t j = 0; j < n_keys; j++) {
                        const float *vr = vb + j * kvd + kvh * hd;
                        for (int64_t d = 0; d < hd; d++) zr[d] += p[j] * vr[d];
                    }
                }
            }
            if (pass == 0 && hook_pat) HOOK(l, HK_PATTERN, pat, 4, B, H, T, S);
        }
        HOOK(l, HK_Z, z, 4, B, T, H, hd);
        matmul(ao, z, &w->wo, w->bo, BT, tile);
        HOOK(l, HK_ATTN_OUT, ao, 3, B, T, D);
        for (size_t i = 0; i < n_x; i++) x[i] += ao[i];
        HOOK(l, HK_RESID_MID, x, 3, B, T, D);

        normalize(xn, x, BT, D, c->norm_eps, gpt);
        HOOK(l, HK_LN2, xn, 3, B, T, D);
        scale_shift(xn, w->ffn_norm, w->ffn_norm_b, BT, D);
        if (gpt) {
            matmul(h1, xn, &w->up, w->bup, BT, tile);
            HOOK(l, HK_MLP_PRE, h1, 3, B, T, F);
#pragma omp parallel for schedule(static) if (n_f > PAR_MIN)
            for (size_t i = 0; i < n_f; i++) h1[i] = gelu_tanh(h1[i]);
        } else {
            matmul(h1, xn, &w->gate, w->bgate, BT, tile);
            HOOK(l, HK_MLP_PRE, h1, 3, B, T, F);
            matmul(h2, xn, &w->up, w->bup, BT, tile);
            HOOK(l, HK_MLP_PRE_LINEAR, h2, 3, B, T, F);
#pragma omp parallel for schedule(static) if (n_f > PAR_MIN)
            for (size_t i = 0; i < n_f; i++) h1[i] = h1[i] / (1.0f + expf(-h1[i])) * h2[i];
        }
        HOOK(l, HK_MLP_POST, h1, 3, B, T, F);
        matmul(ao, h1, &w->down, w->bdown, BT, tile);
        HOOK(l, HK_MLP_OUT, ao, 3, B, T, D);
        for (size_t i = 0; i < n_x; i++) x[i] += ao[i];
        HOOK(l, HK_RESID_POST, x, 3, B, T, D);
    }

    if (want_final) {
        normalize(xn, x, BT, D, c->norm_eps, gpt);
        HOOK(c->n_layers, HK_LN_FINAL, xn, 3, B, T, D);
        if (o->logits) {
            int64_t M = BT;
            if (o->last_only) { // only the last position of each sequence
                for (int b = 0; b < B; b++)
                    memmove(xn + (int64_t)b * D, xn + ((int64_t)b * T + T - 1) * D, (size_t)D * 4);
                M = B;
            }
            scale_shift(xn, m->out_norm, m->out_norm_b, M, D);
            matmul(o->logits, xn, &m->output, NULL, M, tile);
        }
    }
    if (kc) kc->len += T;
done:
#undef HOOK
    free(mem);
    free(hc.layer);
    return s;
}

cterp_status cterp_model_forward(cterp_model *m, const int32_t *tokens, int B, int T,
                                 const cterp_forward_opts *opts) {
    return run(m, tokens, B, T, NULL, opts);
}

cterp_status cterp_model_decode(cterp_model *m, cterp_kv_cache *c, const int32_t *tokens, int n,
                                const cterp_forward_opts *opts) {
    if (!c) return cterp_error(CTERP_EINVAL, "decode: no cache");
    return run(m, tokens, 1, n, c, opts);
}

cterp_status cterp_model_unembed(cterp_model *m, const float *x, int64_t R, float *out) {
    const int64_t D = m->cfg.d_model;
    if (R < 1) return CTERP_OK;
    float *xs = malloc((size_t)(R * D + tile_rows(D) * D) * sizeof(float));
    if (!xs) return cterp_error(CTERP_ENOMEM, "unembed: out of memory (%lld rows)", (long long)R);
    memcpy(xs, x, (size_t)(R * D) * sizeof(float));
    scale_shift(xs, m->out_norm, NULL, R, D);
    matmul(out, xs, &m->output, NULL, R, xs + R * D);
    free(xs);
    return CTERP_OK;
}

cterp_status cterp_kv_cache_create(cterp_kv_cache **out, const cterp_model *m, int max_tokens) {
    *out = NULL;
    if (max_tokens < 1) return cterp_error(CTERP_EINVAL, "kv cache: max_tokens %d < 1", max_tokens);
    cterp_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return cterp_error(CTERP_ENOMEM, "kv cache: out of memory");
    c->max = max_tokens;
    c->n_layers = m->cfg.n_layers;
    c->kvd = (int64_t)m->cfg.n_kv_heads * m->cfg.head_dim;
    size_t n = (size_t)c->n_layers * (size_t)max_tokens * (size_t)c->kvd;
    c->k = malloc(2 * n * sizeof(float));
    if (!c->k) {
        free(c);
        return cterp_error(CTERP_ENOMEM, "kv cache: out of memory (%zu MiB)", 2 * n * 4 >> 20);
    }
    c->v = c->k + n;
    *out = c;
    return CTERP_OK;
}

void cterp_kv_cache_free(cterp_kv_cache *c) {
    if (!c) return;
    free(c->k);
    free(c);
}
void cterp_kv_cache_clear(cterp_kv_cache *c) {
    c->len = 0;
}
int cterp_kv_cache_len(const cterp_kv_cache *c) {
    return c->len;
}
