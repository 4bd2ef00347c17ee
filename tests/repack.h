// Test helper: rewrites a llama GGUF as another family that computes the same function, so a
// real trained model checks that family's code path against the llama path (and README can train
// on it): "qwen2" (half-split RoPE: Q/K rows un-permuted back from GGUF's adjacent-pair layout,
// no biases) and "phi3" (the same, plus q/k/v fused into attn_qkv and gate/up into one ffn_up of
// 2F rows, gate first). Keys `llama.*` become `<family>.*`; everything else is copied.
#ifndef CTERP_TEST_REPACK_H
#define CTERP_TEST_REPACK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"

static void repack_copy_kv(gguf_writer *w, const gguf_kv *kv, const char *key) {
    if (kv->type == GGUF_TYPE_STRING || (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING)) {
        char **v = malloc(kv->n * sizeof *v);
        for (uint64_t j = 0; j < kv->n; j++) {
            v[j] = malloc(kv->strs[j].len + 1);
            gguf_str_copy(kv->strs[j], v[j], kv->strs[j].len + 1);
        }
        if (kv->type == GGUF_TYPE_STRING)
            gguf_writer_str(w, key, v[0]);
        else
            gguf_writer_arr_str(w, key, (const char *const *)v, kv->n);
        for (uint64_t j = 0; j < kv->n; j++) free(v[j]);
        free(v);
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        gguf_writer_arr(w, key, kv->arr_type, kv->val, kv->n);
    } else if (kv->type == GGUF_TYPE_BOOL) {
        gguf_writer_bool(w, key, kv->val[0]);
    } else if (kv->type == GGUF_TYPE_U32) {
        uint32_t v;
        memcpy(&v, kv->val, 4);
        gguf_writer_u32(w, key, v);
    } else if (kv->type == GGUF_TYPE_I32) {
        int32_t v;
        memcpy(&v, kv->val, 4);
        gguf_writer_i32(w, key, v);
    } else if (kv->type == GGUF_TYPE_F32) {
        float v;
        memcpy(&v, kv->val, 4);
        gguf_writer_f32(w, key, v);
    }
}

// rows of t un-permuted per head: GGUF row h*hd + 2j + i <- half-split row h*hd + i*hd/2 + j
static uint8_t *repack_unpermute(const gguf_tensor *t, int64_t hd) {
    const size_t rb = t->n_bytes / (size_t)t->ne[1];
    uint8_t *out = malloc(t->n_bytes);
    for (int64_t r = 0; r < t->ne[1]; r++) {
        int64_t h = r / hd, k = r % hd, i = k / (hd / 2), j = k % (hd / 2);
        memcpy(out + (size_t)r * rb, (const uint8_t *)t->data + (size_t)(h * hd + 2 * j + i) * rb, rb);
    }
    return out;
}

static cterp_status repack_llama(const char *src, const char *dst, const char *as) {
    gguf_file *g;
    cterp_status s = gguf_open(&g, src);
    if (s) return s;
    const int phi3 = !strcmp(as, "phi3");
    uint32_t H = 0, Hkv = 0, D = 0;
    gguf_get_u32(g, "llama.attention.head_count", &H);
    gguf_get_u32(g, "llama.embedding_length", &D);
    Hkv = H;
    gguf_get_u32(g, "llama.attention.head_count_kv", &Hkv);
    const int64_t hd = H ? D / H : 1;
    gguf_writer *w = gguf_writer_new(0);
    char key[256];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (!strcmp(kv->key, "general.architecture"))
            gguf_writer_str(w, kv->key, as);
        else if (!strncmp(kv->key, "llama.", 6)) {
            snprintf(key, sizeof key, "%s.%s", as, kv->key + 6);
            repack_copy_kv(w, kv, key);
        } else
            repack_copy_kv(w, kv, kv->key);
    }
    for (uint64_t i = 0; i < g->n_tensors && !s; i++) {
        const gguf_tensor *t = &g->tensors[i];
        const char *dot = strchr(t->name, '.'), *part = dot ? strchr(dot + 1, '.') : NULL;
        part = part ? part + 1 : t->name;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        int is_q = !strcmp(part, "attn_q.weight"), is_k = !strcmp(part, "attn_k.weight");
        if (phi3 && (is_q || is_k || !strcmp(part, "attn_v.weight") || !strcmp(part, "ffn_up.weight")))
            continue; // written fused with their partners below
        if (is_q || is_k) {
            uint8_t *u = repack_unpermute(t, hd);
            gguf_writer_tensor(w, t->name, t->type, (int)t->n_dims, ne, u);
            free(u);
            continue;
        }
        if (phi3 && !strcmp(part, "ffn_gate.weight")) { // gate rows then up rows
            char up[96];
            snprintf(up, sizeof up, "%.*sffn_up.weight", (int)(part - t->name), t->name);
            const gguf_tensor *u = gguf_find_tensor(g, up);
            if (!u || u->type != t->type) {
                s = cterp_error(CTERP_EFORMAT, "repack: %s missing or of another type", up);
                break;
            }
            uint8_t *cat = malloc(t->n_bytes + u->n_bytes);
            memcpy(cat, t->data, t->n_bytes);
            memcpy(cat + t->n_bytes, u->data, u->n_bytes);
            ne[1] = t->ne[1] + u->ne[1];
            gguf_writer_tensor(w, up, t->type, 2, ne, cat);
            free(cat);
            continue;
        }
        gguf_writer_tensor(w, t->name, t->type, (int)t->n_dims, ne, t->data);
        if (phi3 && !strcmp(part, "attn_output.weight")) { // the layer's q, k, v fused
            char n[96];
            int64_t l = strtol(t->name + 4, NULL, 10);
            snprintf(n, sizeof n, "blk.%lld.attn_v.weight", (long long)l);
            const gguf_tensor *v = gguf_find_tensor(g, n);
            snprintf(n, sizeof n, "blk.%lld.attn_q.weight", (long long)l);
            const gguf_tensor *q = gguf_find_tensor(g, n);
            snprintf(n, sizeof n, "blk.%lld.attn_k.weight", (long long)l);
            const gguf_tensor *k = gguf_find_tensor(g, n);
            if (!v || !q || !k || v->type != q->type || k->type != q->type) {
                s = cterp_error(CTERP_EFORMAT, "repack: layer %lld: q/k/v missing or of mixed types", (long long)l);
                break;
            }
            uint8_t *qu = repack_unpermute(q, hd), *ku = repack_unpermute(k, hd);
            uint8_t *cat = malloc(q->n_bytes + k->n_bytes + v->n_bytes);
            memcpy(cat, qu, q->n_bytes);
            memcpy(cat + q->n_bytes, ku, k->n_bytes);
            memcpy(cat + q->n_bytes + k->n_bytes, v->data, v->n_bytes);
            int64_t qne[2] = {q->ne[0], q->ne[1] + k->ne[1] + v->ne[1]};
            snprintf(n, sizeof n, "blk.%lld.attn_qkv.weight", (long long)l);
            gguf_writer_tensor(w, n, q->type, 2, qne, cat);
            free(cat);
            free(qu), free(ku);
        }
    }
    (void)Hkv;
    if (!s) s = gguf_writer_write(w, dst);
    gguf_writer_free(w);
    gguf_close(g);
    return s;
}

#endif
