// The model: opening a GGUF through the family table, TransformerLens hook names, and the
// forward driver (embeddings, the family's block per layer, final norm, logits), with a KV cache
// for decoding. The blocks are in block.c, the families in their own files (see model_impl.h).
#include "cterp/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "io/gguf.h"
#include "core/dist.h"
#include "model/model_impl.h"
#include "model/quant.h"
#include "tokenizer/tokenizer_gguf.h"

// ---- hook points --------------------------------------------------------------------------

static const char *HK_NAMES[HK_N] = {
    "hook_resid_pre",      "ln1.hook_normalized",      "attn.hook_q",
    "attn.hook_k",         "attn.hook_v",              "attn.hook_pattern",
    "attn.hook_z",         "ln1_post.hook_normalized", "hook_attn_out",
    "hook_resid_mid",      "ln2.hook_normalized",      "mlp.hook_pre",
    "mlp.hook_pre_linear", "mlp.hook_post",            "ln2_post.hook_normalized",
    "hook_mlp_out",        "hook_resid_post"};

// Which hooks the family has: hook_pos_embed with learned positions, mlp.hook_pre_linear with a
// gated MLP, no hook_resid_mid in a parallel block, ln1_post/ln2_post with post-norms.
static int hook_exists(const cterp_model *m, int kind) {
    if (kind == HK_MLP_PRE_LINEAR) return m->mlp != MLP_GELU;
    if (kind == HK_POS_EMBED) return m->pos_embd.data != NULL;
    if (kind == HK_RESID_MID) return !m->cfg.parallel;
    if (kind == HK_LN1_POST) return m->layers[0].attn_post_norm != NULL;
    if (kind == HK_LN2_POST) return m->layers[0].ffn_post_norm != NULL;
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
    return 1 + hook_exists(m, HK_POS_EMBED) + per * m->cfg.n_layers + 1;
}

const char *cterp_model_hook_point(const cterp_model *m, int i, char *buf, size_t cap) {
    if (i == 0) return snprintf(buf, cap, "hook_embed"), buf;
    i--;
    if (hook_exists(m, HK_POS_EMBED)) {
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
                          hook_exists(m, HK_POS_EMBED) ? "hook_pos_embed, " : "",
                          m->cfg.n_layers - 1);
    for (int k = 0, first = 1; k < HK_N && n < sizeof list; k++)
        if (hook_exists(m, k)) {
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", first ? "" : ", ", HK_NAMES[k]);
            first = 0;
        }
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

static int64_t mat_bytes(const wmat *w) {
    return w->data ? (int64_t)w->row_bytes * w->rows : 0;
}

int64_t cterp_model_weight_bytes(const cterp_model *m, int n_layers, int with_output) {
    int64_t n = with_output ? mat_bytes(&m->output) : 0;
    for (int l = 0; l < n_layers && l < m->cfg.n_layers; l++) {
        const layer_w *w = &m->layers[l];
        n += mat_bytes(&w->wq) + mat_bytes(&w->wk) + mat_bytes(&w->wv) + mat_bytes(&w->wqkv) +
             mat_bytes(&w->wo) + mat_bytes(&w->gate) + mat_bytes(&w->up) + mat_bytes(&w->down);
    }
    return n;
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

static cterp_status load(cterp_model *m) {
    cterp_status s;
    gguf_str arch;
    cterp_model_config *c = &m->cfg;
    if ((s = gguf_get_str(m->g, "general.architecture", &arch))) return s;
    gguf_str_copy(arch, c->arch, sizeof c->arch);
    m->family = model_family_find(c->arch);
    if (!m->family || arch.len >= sizeof c->arch)
        return cterp_error(CTERP_EFORMAT, "%s: general.architecture: expected one of %s, found \"%.*s\"",
                           m->g->path, model_family_names(), (int)(arch.len > 64 ? 64 : arch.len),
                           arch.s);
    model_loader ld = {.m = m, .arch = c->arch};
    m->embed_scale = 1.0f;
    if ((s = m->family->load(&ld))) return s;
    if (m->attn_scale == 0) m->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    c->rope_neox = m->rope == ROPE_NEOX;
    c->mlp_gated = m->mlp != MLP_GELU;
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
    cterp_status s = model_decode_rows_env();
    if (s) return s;
    cterp_model *m = calloc(1, sizeof *m);
    if (!m) return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    // under mpirun the ranks of a node share the page cache's copy; each would hold its own
    s = dist_size() > 1 ? gguf_open(&m->g, path) : gguf_open_huge(&m->g, path, &m->huge_pages);
    if (!s) s = load(m);
    if (s) {
        cterp_model_free(m);
        return s;
    }
    *out = m;
    return CTERP_OK;
}

int cterp_model_huge_pages(const cterp_model *m) { return m->huge_pages; }

// ---- forward ------------------------------------------------------------------------------

static void softcap(float *x, size_t n, float cap) {
    if (cap > 0)
        for (size_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
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
    if (pos0 + T > c->n_ctx)
        return cterp_error(CTERP_EINVAL,
                           "forward: positions up to %d exceed the model's context of %d tokens "
                           "(%s.context_length)",
                           pos0 + T, c->n_ctx, c->arch);
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
    int nthr = omp_get_max_threads();
    int any_pattern = 0, fused = 0;
    for (int i = 0; i < n_hooks; i++) any_pattern |= hc.kind[i] == HK_PATTERN;
    for (int l = 0; l < c->n_layers; l++)
        fused |= m->layers[l].wqkv.data != NULL || (m->mlp != MLP_GELU && !m->layers[l].gate.data);
    size_t n_x = (size_t)BT * D, n_q = (size_t)BT * qd, n_kv = (size_t)BT * kvd,
           n_f = (size_t)BT * F;
    size_t n_tile = model_tile_floats(m->k_max);
    size_t n_rope = (size_t)T * (size_t)(c->n_rot / 2 + 1);
    size_t n_pat = any_pattern ? (size_t)B * H * T * S : 0;
    size_t n_fused = 0;
    if (fused) n_fused = (size_t)BT * (size_t)(qd + 2 * kvd > 2 * F ? qd + 2 * kvd : 2 * F);
    size_t n_x2 = c->parallel ? n_x : 0;
    size_t total = 3 * n_x + 2 * n_q + 2 * n_kv + 2 * n_f + n_tile + 2 * n_rope + n_pat + n_fused +
                   n_x2 + (size_t)nthr * ATTN_QBLOCK * (size_t)S;
    float *mem = malloc(total * sizeof(float));
    if (!mem) {
        free(hc.layer);
        return cterp_error(CTERP_ENOMEM, "forward: out of memory (%zu MiB of activations)",
                           total * 4 >> 20);
    }
    block_ctx b = {.m = m, .hc = &hc, .B = B, .T = T, .pos0 = pos0, .any_pattern = any_pattern,
                   .kc = kc};
    b.x = mem;              // (BT, D) residual stream
    b.xn = b.x + n_x;       // (BT, D) normalized
    b.ao = b.xn + n_x;      // (BT, D) attn_out / mlp_out / pos_embed
    b.q = b.ao + n_x;       // (BT, H, hd)
    b.z = b.q + n_q;        // (BT, H, hd)
    b.k = b.z + n_q;        // (BT, Hkv, hd)
    b.v = b.k + n_kv;       // (BT, Hkv, hd)
    b.h1 = b.v + n_kv;      // (BT, F)
    b.h2 = b.h1 + n_f;      // (BT, F)
    b.tile = b.h2 + n_f;    // dequantized weight tile
    b.rc = b.tile + n_tile; // (T, n_rot/2) cos
    b.rs = b.rc + n_rope;   // (T, n_rot/2) sin
    b.pat = b.rs + n_rope;  // (B, H, T, S) when hooked
    b.qkv = b.pat + n_pat;  // (BT, qd + 2 kvd) or (BT, 2F): fused projections
    b.x2 = b.qkv + n_fused; // (BT, D) the MLP output of a parallel block
    b.scr = b.x2 + n_x2;    // (nthr, ATTN_QBLOCK, S) attention scores
    cterp_status s = CTERP_OK;
    float *x = b.x, *xn = b.xn;

    // embeddings
#pragma omp parallel for schedule(static) if (BT * D > PAR_MIN)
    for (int64_t i = 0; i < BT; i++) {
        quant_dequant_row(m->tok_embd.type,
                          (const uint8_t *)m->tok_embd.data +
                              (size_t)tokens[i] * m->tok_embd.row_bytes,
                          x + i * D, D);
        if (m->embed_scale != 1.0f)
            for (int64_t j = 0; j < D; j++) x[i * D + j] *= m->embed_scale;
    }
    if ((s = model_hook(&hc, -1, HK_EMBED, x, 3, B, T, D, 0))) goto done;
    if (m->pos_embd.data) {
#pragma omp parallel for schedule(static) if (BT * D > PAR_MIN)
        for (int64_t i = 0; i < BT; i++)
            quant_dequant_row(m->pos_embd.type,
                              (const uint8_t *)m->pos_embd.data +
                                  (size_t)(pos0 + i % T) * m->pos_embd.row_bytes,
                              b.ao + i * D, D);
        if ((s = model_hook(&hc, -1, HK_POS_EMBED, b.ao, 3, B, T, D, 0))) goto done;
        for (size_t i = 0; i < n_x; i++) x[i] += b.ao[i];
    }

    for (int l = 0; l < n_run; l++)
        if ((s = m->family->block(&b, l))) goto done;

    if (want_final) {
        model_normalize(xn, x, BT, D, c->norm_eps, m->norm == NORM_LAYER);
        if ((s = model_hook(&hc, c->n_layers, HK_LN_FINAL, xn, 3, B, T, D, 0))) goto done;
        if (o->logits) {
            int64_t M = BT;
            if (o->last_only) { // only the last position of each sequence
                for (int bi = 0; bi < B; bi++)
                    memmove(xn + (int64_t)bi * D, xn + ((int64_t)bi * T + T - 1) * D,
                            (size_t)D * 4);
                M = B;
            }
            model_scale_shift(xn, m->out_norm, m->out_norm_b, M, D);
            model_matmul(o->logits, xn, &m->output, NULL, M, b.tile);
            softcap(o->logits, (size_t)M * (size_t)c->n_vocab, c->final_softcap);
        }
    }
    if (kc) kc->len += T;
done:
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
    float *xs = malloc(((size_t)(R * D) + model_tile_floats(D)) * sizeof(float));
    if (!xs) return cterp_error(CTERP_ENOMEM, "unembed: out of memory (%lld rows)", (long long)R);
    memcpy(xs, x, (size_t)(R * D) * sizeof(float));
    model_scale_shift(xs, m->out_norm, NULL, R, D);
    model_matmul(out, xs, &m->output, NULL, R, xs + R * D);
    softcap(out, (size_t)R * (size_t)m->cfg.n_vocab, m->cfg.final_softcap);
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
