// Loader helpers the family files share: GGUF keys with ranges and defaults, tensors checked for
// shape and type, norm/bias vectors converted into the model's f32 block, and the hparams,
// embeddings and per-layer attention/MLP tensors that most families name the same way.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "model/quant.h"

const char *ld_key(model_loader *ld, const char *suffix) {
    snprintf(ld->key, sizeof ld->key, "%s.%s", ld->arch, suffix);
    return ld->key;
}

cterp_status ld_u32(model_loader *ld, const char *suffix, int *out, int def, int lo, int hi) {
    uint32_t v;
    cterp_status s = gguf_get_u32(ld->m->g, ld_key(ld, suffix), &v);
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

cterp_status ld_f32(model_loader *ld, const char *suffix, float *out, float def, float lo,
                    float hi) {
    float v = def;
    cterp_status s = gguf_get_f32(ld->m->g, ld_key(ld, suffix), &v);
    if (s && s != CTERP_ENOTFOUND) return s;
    if (!(v >= lo && v <= hi))
        return cterp_error(CTERP_EFORMAT, "%s: %s: expected %g..%g, found %g", ld->m->g->path,
                           ld->key, (double)lo, (double)hi, (double)v);
    *out = v;
    return CTERP_OK;
}

cterp_status ld_bool(model_loader *ld, const char *suffix, int *out, int def) {
    cterp_status s = gguf_get_bool(ld->m->g, ld_key(ld, suffix), out);
    if (s == CTERP_ENOTFOUND && def >= 0) return *out = def, CTERP_OK;
    if (s == CTERP_ENOTFOUND)
        return cterp_error(CTERP_EFORMAT, "%s: missing key '%s'", ld->m->g->path, ld->key);
    return s;
}

int ld_has(model_loader *ld, const char *name) {
    return gguf_find_tensor(ld->m->g, name) != NULL;
}

cterp_status ld_mat(model_loader *ld, const char *name, int64_t cols, int64_t rows, wmat *w,
                    int optional) {
    const gguf_tensor *t = gguf_find_tensor(ld->m->g, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (optional) return CTERP_OK;
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s' missing (%s)", ld->m->g->path, name,
                           ld->arch);
    }
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor '%s': expected shape [%lld, %lld], found [%lld, %lld, %lld, "
                           "%lld]",
                           ld->m->g->path, name, (long long)cols, (long long)rows,
                           (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                           (long long)t->ne[3]);
    if (!quant_supported(t->type))
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': type %s not supported (%s are)",
                           ld->m->g->path, name, gguf_type_name(t->type), quant_type_names());
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
cterp_status ld_vec(model_loader *ld, const char *name, int64_t n, const float **out,
                    int optional) {
    *out = NULL;
    wmat w;
    cterp_status s = ld_mat(ld, name, n, 1, &w, optional);
    if (s || !w.data) return s;
    if (ld->vec_used + (size_t)n > ld->vec_cap)
        return cterp_error(CTERP_EINVAL, "internal: vector block too small for '%s'", name);
    float *dst = ld->m->vecs + ld->vec_used;
    quant_dequant_row(w.type, w.data, dst, n);
    ld->vec_used += (size_t)n;
    *out = dst;
    return CTERP_OK;
}

cterp_status ld_common(model_loader *ld, const char *eps_key) {
    cterp_model *m = ld->m;
    cterp_model_config *c = &m->cfg;
    cterp_status s;
    const int BIG = 1 << 20;
    if ((s = ld_u32(ld, "block_count", &c->n_layers, -1, 1, 4096))) return s;
    if ((s = ld_u32(ld, "embedding_length", &c->d_model, -1, 1, BIG))) return s;
    if ((s = ld_u32(ld, "feed_forward_length", &c->d_ff, -1, 1, BIG))) return s;
    if ((s = ld_u32(ld, "attention.head_count", &c->n_heads, -1, 1, 4096))) return s;
    if ((s = ld_u32(ld, "attention.head_count_kv", &c->n_kv_heads, c->n_heads, 1, 4096)))
        return s;
    if ((s = ld_u32(ld, "context_length", &c->n_ctx, 2048, 1, 1 << 24))) return s;
    if (c->d_model % c->n_heads && !gguf_has_key(m->g, ld_key(ld, "attention.key_length")))
        return cterp_error(CTERP_EFORMAT, "%s: embedding_length %d not divisible by head_count %d",
                           m->g->path, c->d_model, c->n_heads);
    if ((s = ld_u32(ld, "attention.key_length", &c->head_dim, c->d_model / c->n_heads, 1, 65536)))
        return s;
    int vlen;
    if ((s = ld_u32(ld, "attention.value_length", &vlen, c->head_dim, 1, 65536))) return s;
    if (vlen != c->head_dim)
        return cterp_error(CTERP_EFORMAT,
                           "%s: attention.value_length %d != key_length %d (unsupported)",
                           m->g->path, vlen, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return cterp_error(CTERP_EFORMAT, "%s: head_count %d not a multiple of head_count_kv %d",
                           m->g->path, c->n_heads, c->n_kv_heads);
    if ((s = ld_f32(ld, eps_key, &c->norm_eps, 1e-5f, 0.0f, 1.0f))) return s;
    c->rope_scale = 1.0f;
    c->n_rot = 0;
    if (m->rope != ROPE_NONE) {
        if ((s = ld_u32(ld, "rope.dimension_count", &c->n_rot, c->head_dim, 2, c->head_dim)))
            return s;
        if (c->n_rot % 2)
            return cterp_error(CTERP_EFORMAT, "%s: rope.dimension_count: expected even, found %d",
                               m->g->path, c->n_rot);
        if ((s = ld_f32(ld, "rope.freq_base", &c->rope_base, 10000.0f, 1e-3f, 1e30f))) return s;
        // linear scaling (llama.cpp's default type): positions times 1/factor
        gguf_str st;
        char type[32] = "linear";
        if (!gguf_get_str(m->g, ld_key(ld, "rope.scaling.type"), &st))
            gguf_str_copy(st, type, sizeof type);
        float factor = 0;
        if ((s = ld_f32(ld, "rope.scaling.factor", &factor, 0.0f, 0.0f, 1e6f))) return s;
        if (factor == 0 && (s = ld_f32(ld, "rope.scale_linear", &factor, 0.0f, 0.0f, 1e6f)))
            return s;
        if (strcmp(type, "none") && strcmp(type, "linear") && factor != 0 && factor != 1)
            return cterp_error(CTERP_EFORMAT,
                               "%s: %s.rope.scaling.type: \"%s\" not supported (none and linear "
                               "are; Llama 3.1's scaling comes as rope_freqs.weight)",
                               m->g->path, ld->arch, type);
        if (strcmp(type, "none") && factor > 0) c->rope_scale = 1.0f / factor;
    }

    const gguf_tensor *te = gguf_find_tensor(m->g, "token_embd.weight");
    if (!te)
        return cterp_error(CTERP_EFORMAT, "%s: tensor 'token_embd.weight' missing", m->g->path);
    if (te->ne[1] < 1 || te->ne[1] > (1 << 30))
        return cterp_error(CTERP_EFORMAT, "%s: token_embd.weight: vocabulary of %lld rows",
                           m->g->path, (long long)te->ne[1]);
    c->n_vocab = (int)te->ne[1];
    int64_t D = c->d_model, F = c->d_ff, hd = c->head_dim;
    int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;

    // vector block: norms and biases of every layer plus the final norm and rope_freqs
    ld->vec_cap = (size_t)c->n_layers * (size_t)(6 * D + 2 * qd + 4 * kvd + 2 * hd + 3 * F + D) +
                  2 * (size_t)D + (size_t)hd;
    // Real files hold far more matrix bytes than vector elements; a header claiming dims the
    // file cannot contain must not drive a huge allocation.
    if (ld->vec_cap / 4 > m->g->size)
        return cterp_error(
            CTERP_EFORMAT,
            "%s: dims (%d layers, d_model %d, d_ff %d) too large for a %zu-byte file", m->g->path,
            c->n_layers, c->d_model, c->d_ff, m->g->size);
    m->vecs = malloc(ld->vec_cap * sizeof(float));
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->vecs || !m->layers) return cterp_error(CTERP_ENOMEM, "%s: out of memory", m->g->path);
    for (int l = 0; l < c->n_layers; l++) {
        m->layers[l].rope_base = c->rope_base;
        m->layers[l].rope_scale = c->rope_scale;
    }

    if ((s = ld_mat(ld, "token_embd.weight", D, c->n_vocab, &m->tok_embd, 0))) return s;
    if ((s = ld_mat(ld, "output.weight", D, c->n_vocab, &m->output, 1))) return s;
    c->tied_output = m->output.data == NULL;
    if (c->tied_output) m->output = m->tok_embd;
    if ((s = ld_vec(ld, "output_norm.weight", D, &m->out_norm, 0))) return s;
    if ((s = ld_vec(ld, "output_norm.bias", D, &m->out_norm_b, 1))) return s;
    return CTERP_OK;
}

cterp_status ld_attn(model_loader *ld, int l) {
    cterp_model *m = ld->m;
    const cterp_model_config *c = &m->cfg;
    layer_w *w = &m->layers[l];
    int64_t D = c->d_model, hd = c->head_dim;
    int64_t qd = (int64_t)c->n_heads * hd, kvd = (int64_t)c->n_kv_heads * hd;
    int ln = m->norm == NORM_LAYER;
    char nm[96];
    cterp_status s;
#define NAME(fmt) (snprintf(nm, sizeof nm, "blk.%d." fmt, l), nm)
    if ((s = ld_vec(ld, NAME("attn_norm.weight"), D, &w->attn_norm, 0))) return s;
    if ((s = ld_vec(ld, NAME("attn_norm.bias"), D, &w->attn_norm_b, !ln))) return s;
    if (ld_has(ld, NAME("attn_qkv.weight"))) {
        if ((s = ld_mat(ld, NAME("attn_qkv.weight"), D, qd + 2 * kvd, &w->wqkv, 0))) return s;
        if ((s = ld_vec(ld, NAME("attn_qkv.bias"), qd + 2 * kvd, &w->bqkv, 1))) return s;
    } else {
        if ((s = ld_mat(ld, NAME("attn_q.weight"), D, qd, &w->wq, 0))) return s;
        if ((s = ld_mat(ld, NAME("attn_k.weight"), D, kvd, &w->wk, 0))) return s;
        if ((s = ld_mat(ld, NAME("attn_v.weight"), D, kvd, &w->wv, 0))) return s;
    }
    if (!w->bqkv) {
        if ((s = ld_vec(ld, NAME("attn_q.bias"), qd, &w->bq, 1))) return s;
        if ((s = ld_vec(ld, NAME("attn_k.bias"), kvd, &w->bk, 1))) return s;
        if ((s = ld_vec(ld, NAME("attn_v.bias"), kvd, &w->bv, 1))) return s;
        if (w->wqkv.data && (w->bq || w->bk || w->bv) && !(w->bq && w->bk && w->bv))
            return cterp_error(CTERP_EFORMAT, "%s: layer %d: fused qkv with only some of q/k/v biases",
                               m->g->path, l);
    }
    if ((s = ld_vec(ld, NAME("attn_q_norm.weight"), hd, &w->q_norm, 1))) return s;
    if ((s = ld_vec(ld, NAME("attn_k_norm.weight"), hd, &w->k_norm, 1))) return s;
    if (!w->q_norm != !w->k_norm)
        return cterp_error(CTERP_EFORMAT, "%s: layer %d: attn_q_norm and attn_k_norm must come together",
                           m->g->path, l);
    if ((s = ld_mat(ld, NAME("attn_output.weight"), qd, D, &w->wo, 0))) return s;
    if ((s = ld_vec(ld, NAME("attn_output.bias"), D, &w->bo, 1))) return s;
#undef NAME
    return CTERP_OK;
}

cterp_status ld_mlp(model_loader *ld, int l, int gated, int fused) {
    cterp_model *m = ld->m;
    const cterp_model_config *c = &m->cfg;
    layer_w *w = &m->layers[l];
    int64_t D = c->d_model, F = c->d_ff;
    int ln = m->norm == NORM_LAYER;
    char nm[96];
    cterp_status s;
#define NAME(fmt) (snprintf(nm, sizeof nm, "blk.%d." fmt, l), nm)
    if ((s = ld_vec(ld, NAME("ffn_norm.weight"), D, &w->ffn_norm, 0))) return s;
    if ((s = ld_vec(ld, NAME("ffn_norm.bias"), D, &w->ffn_norm_b, !ln))) return s;
    if (gated && !fused) {
        if ((s = ld_mat(ld, NAME("ffn_gate.weight"), D, F, &w->gate, 0))) return s;
        if ((s = ld_vec(ld, NAME("ffn_gate.bias"), F, &w->bgate, 1))) return s;
    }
    if ((s = ld_mat(ld, NAME("ffn_up.weight"), D, fused ? 2 * F : F, &w->up, 0))) return s;
    if (!fused && (s = ld_vec(ld, NAME("ffn_up.bias"), F, &w->bup, 1))) return s;
    if ((s = ld_mat(ld, NAME("ffn_down.weight"), F, D, &w->down, 0))) return s;
    if ((s = ld_vec(ld, NAME("ffn_down.bias"), D, &w->bdown, 1))) return s;
#undef NAME
    return CTERP_OK;
}

cterp_status ld_swa(model_loader *ld, int default_window, int default_pattern) {
    cterp_model *m = ld->m;
    cterp_model_config *c = &m->cfg;
    cterp_status s;
    int window;
    if ((s = ld_u32(ld, "attention.sliding_window", &window, default_window, 0, 1 << 30))) return s;
    if (window == 0) return CTERP_OK;
    int64_t ki = gguf_find_key(m->g, ld_key(ld, "attention.sliding_window_pattern"));
    const gguf_kv *kv = ki >= 0 ? &m->g->kv[ki] : NULL;
    if (kv && kv->type == GGUF_TYPE_ARRAY) {
        if (kv->arr_type != GGUF_TYPE_BOOL || kv->n != (uint64_t)c->n_layers)
            return cterp_error(CTERP_EFORMAT, "%s: %s: expected %d bools, found %llu of type %s",
                               m->g->path, ld->key, c->n_layers, (unsigned long long)kv->n,
                               gguf_vtype_name(kv->arr_type));
        for (int l = 0; l < c->n_layers; l++) m->layers[l].window = kv->val[l] ? window : 0;
    } else {
        int pattern;
        if ((s = ld_u32(ld, "attention.sliding_window_pattern", &pattern, default_pattern, 0,
                        1 << 20)))
            return s;
        for (int l = 0; l < c->n_layers; l++)
            m->layers[l].window = pattern == 0 || l % pattern < pattern - 1 ? window : 0;
    }
    c->sliding_window = window;
    return CTERP_OK;
}
