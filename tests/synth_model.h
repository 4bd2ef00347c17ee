// Test helper: writes synthetic GGUF models (llama or gpt2) with random weights in any
// supported tensor type, plus a naive reference forward (plain loops in double, no BLAS, no code
// shared with src/model) that reads F32 GGUFs through the GGUF reader.
#ifndef CTERP_TEST_SYNTH_MODEL_H
#define CTERP_TEST_SYNTH_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/gguf.h"
#include "model/quant.h"
#include "synth_bytes.h"

typedef struct {
    int gpt2;
    int L, D, H, Hkv, F, V, n_ctx, n_rot;
    int rope_freqs, tied;
    uint32_t type; // type of the 2-D matrices (norms and biases stay F32)
    uint64_t seed;
    uint32_t type_hi; // nonzero: token_embd, output, attn_v and ffn_down in this type (a _M mix)
} synth_cfg;

static void synth_tensor(gguf_writer *w, const char *name, uint32_t type, int64_t cols,
                         int64_t rows, float std, float mean, rng_t *r) {
    float *x = malloc((size_t)(cols * rows) * sizeof *x);
    for (int64_t i = 0; i < cols * rows; i++) x[i] = mean + std * rng_normal(r);
    uint8_t *q = malloc(quant_row_bytes(type, cols) * (size_t)rows);
    for (int64_t i = 0; i < rows; i++)
        quant_quantize_row(type, x + i * cols, q + (size_t)i * quant_row_bytes(type, cols), cols);
    int64_t ne[2] = {cols, rows};
    gguf_writer_tensor(w, name, type, rows == 1 ? 1 : 2, ne, q);
    free(q);
    free(x);
}

// Adds the model's keys and tensors to w. Same seed -> same underlying f32 weights whatever
// `type` is.
static inline void synth_add(gguf_writer *w, const synth_cfg *c) {
    const char *a = c->gpt2 ? "gpt2" : "llama";
    char k[128], n[128];
    gguf_writer_str(w, "general.architecture", a);
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
    gguf_writer_u32(w, KEY("block_count"), (uint32_t)c->L);
    gguf_writer_u32(w, KEY("embedding_length"), (uint32_t)c->D);
    gguf_writer_u32(w, KEY("feed_forward_length"), (uint32_t)c->F);
    gguf_writer_u32(w, KEY("attention.head_count"), (uint32_t)c->H);
    gguf_writer_u32(w, KEY("context_length"), (uint32_t)c->n_ctx);
    if (c->gpt2)
        gguf_writer_f32(w, KEY("attention.layer_norm_epsilon"), 1e-5f);
    else {
        gguf_writer_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->Hkv);
        gguf_writer_u32(w, KEY("rope.dimension_count"), (uint32_t)c->n_rot);
        gguf_writer_f32(w, KEY("rope.freq_base"), 500.0f);
        gguf_writer_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    }
#undef KEY
    rng_t r;
    rng_seed(&r, c->seed);
    int64_t D = c->D, F = c->F, hd = c->D / c->H, kvd = (int64_t)c->Hkv * hd;
    uint32_t t = c->type, f32 = GGML_TYPE_F32, th = c->type_hi ? c->type_hi : c->type;
    float sD = 1.0f / sqrtf((float)D), sF = 1.0f / sqrtf((float)F);
    synth_tensor(w, "token_embd.weight", th, D, c->V, 1.0f, 0, &r);
    if (c->gpt2) synth_tensor(w, "position_embd.weight", t, D, c->n_ctx, 0.3f, 0, &r);
    synth_tensor(w, "output_norm.weight", f32, D, 1, 0.1f, 1.0f, &r);
    if (c->gpt2) synth_tensor(w, "output_norm.bias", f32, D, 1, 0.1f, 0, &r);
    if (!c->tied) synth_tensor(w, "output.weight", th, D, c->V, sD, 0, &r);
    if (c->rope_freqs) {
        float ff[64];
        for (int j = 0; j < c->n_rot / 2; j++) ff[j] = 1.0f + (float)j;
        int64_t ne[1] = {c->n_rot / 2};
        gguf_writer_tensor(w, "rope_freqs.weight", f32, 1, ne, ff);
    }
    for (int l = 0; l < c->L; l++) {
#define NM(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        synth_tensor(w, NM("attn_norm.weight"), f32, D, 1, 0.1f, 1.0f, &r);
        synth_tensor(w, NM("ffn_norm.weight"), f32, D, 1, 0.1f, 1.0f, &r);
        if (c->gpt2) {
            synth_tensor(w, NM("attn_norm.bias"), f32, D, 1, 0.1f, 0, &r);
            synth_tensor(w, NM("ffn_norm.bias"), f32, D, 1, 0.1f, 0, &r);
            synth_tensor(w, NM("attn_qkv.weight"), t, D, 3 * D, sD, 0, &r);
            synth_tensor(w, NM("attn_qkv.bias"), f32, 3 * D, 1, 0.1f, 0, &r);
            synth_tensor(w, NM("attn_output.bias"), f32, D, 1, 0.1f, 0, &r);
            synth_tensor(w, NM("ffn_up.bias"), f32, F, 1, 0.1f, 0, &r);
            synth_tensor(w, NM("ffn_down.bias"), f32, D, 1, 0.1f, 0, &r);
        } else {
            synth_tensor(w, NM("attn_q.weight"), t, D, D, sD, 0, &r);
            synth_tensor(w, NM("attn_k.weight"), t, D, kvd, sD, 0, &r);
            synth_tensor(w, NM("attn_v.weight"), th, D, kvd, sD, 0, &r);
            synth_tensor(w, NM("ffn_gate.weight"), t, D, F, sD, 0, &r);
        }
        synth_tensor(w, NM("attn_output.weight"), t, D, D, sD, 0, &r);
        synth_tensor(w, NM("ffn_up.weight"), t, D, F, sD, 0, &r);
        synth_tensor(w, NM("ffn_down.weight"), th, F, D, sF, 0, &r);
#undef NM
    }
}

static inline cterp_status synth_write(const char *path, const synth_cfg *c) {
    gguf_writer *w = gguf_writer_new(0);
    synth_add(w, c);
    cterp_status s = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return s;
}

// A tiny GPT-2 byte-level BPE vocabulary (tokenizer.ggml.*): the 256 byte tokens in byte order,
// then He 256, ll 257, llo 258, Hello 259, 12 260, 123 261, 45 262, <|bos|> 263 (control), with
// 7 merges; `pre` is "gpt-2" or "llama-bpe". Returns the number of tokens (264).
static inline int synth_vocab_bpe(gguf_writer *w, const char *pre) {
    char store[256][4];
    const char *toks[264];
    int n = 0;
    for (; n < 256; n++) synth_byte_token(n, store[n]), toks[n] = store[n];
    const char *more[] = {"He", "ll", "llo", "Hello", "12", "123", "45", "<|bos|>"};
    for (int i = 0; i < 8; i++) toks[n++] = more[i];
    const char *merges[] = {"H e", "l l", "ll o", "He llo", "1 2", "12 3", "4 5"};
    int32_t types[264];
    for (int i = 0; i < n; i++) types[i] = i == n - 1 ? 3 : 1;
    gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_str(w, "tokenizer.ggml.pre", pre);
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, (uint64_t)n);
    gguf_writer_arr_str(w, "tokenizer.ggml.merges", merges, 7);
    gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)n - 1);
    return n;
}

// A tiny SentencePiece vocabulary: <unk> 0, <s> 1, </s> 2, the 256 byte tokens <0xXX>, then a
// few pieces with scores (longer pieces score higher, as SentencePiece's merges rank them).
// Returns the number of tokens.
static inline int synth_vocab_spm(gguf_writer *w) {
    static const char *const pieces[] = {"▁", "e", "t", "h", "a", "o", "n", "▁t", "he", "▁the",
                                         "▁a", "an", "on", "▁on", "▁and", "Once", "▁upon"};
    enum { NP = sizeof pieces / sizeof pieces[0], NT = 3 + 256 + NP };
    char bytes[256][8];
    const char *toks[NT];
    float scores[NT];
    int32_t types[NT];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = types[2] = 3;
    scores[0] = scores[1] = scores[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[3 + b] = bytes[b], types[3 + b] = 6, scores[3 + b] = 0;
    }
    for (int i = 0; i < NP; i++) {
        toks[259 + i] = pieces[i], types[259 + i] = 1;
        scores[259 + i] = (float)strlen(pieces[i]) - 0.01f * (float)i;
    }
    gguf_writer_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", toks, NT);
    gguf_writer_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_F32, scores, NT);
    gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, NT);
    gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", 2);
    return NT;
}

// ---- naive reference forward (one sequence, F32 weights) -----------------------------------

static const float *ref_t(const gguf_file *g, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    return t && t->type == GGML_TYPE_F32 ? (const float *)t->data : NULL;
}

static const float *ref_tl(const gguf_file *g, int l, const char *name) {
    char n[128];
    snprintf(n, sizeof n, "blk.%d.%s", l, name);
    return ref_t(g, n);
}

// y (out) = W (out, in) x (in) + b
static void ref_linear(double *y, const float *W, const float *b, const double *x, int in,
                       int out) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += (double)W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void ref_norm(double *y, const double *x, const float *w, const float *b, int D, double eps,
                     int ln) {
    double mean = 0, ss = 0;
    if (ln) {
        for (int i = 0; i < D; i++) mean += x[i];
        mean /= D;
    }
    for (int i = 0; i < D; i++) ss += (x[i] - mean) * (x[i] - mean);
    double inv = 1.0 / sqrt(ss / D + eps);
    for (int i = 0; i < D; i++) y[i] = (x[i] - mean) * inv * w[i] + (b ? b[i] : 0);
}

// logits (T, V); if resid_layer >= 0 also copies resid_post of that layer into resid (T, D);
// adds `bump` to every element of resid_mid at layer bump_layer (tests modifying hooks).
static inline int ref_forward(const gguf_file *g, const int32_t *tok, int T, float *logits,
                              int resid_layer, float *resid, int bump_layer, float bump) {
    gguf_str as;
    if (gguf_get_str(g, "general.architecture", &as)) return 0;
    int gpt = as.len == 4 && !memcmp(as.s, "gpt2", 4);
    const char *a = gpt ? "gpt2" : "llama";
    char k[128];
    uint32_t L, D, H, Hkv, F, n_rot = 0;
    float eps = 1e-5f, base = 10000.0f;
#define U(s, v) (snprintf(k, sizeof k, "%s.%s", a, s), gguf_get_u32(g, k, &v))
    if (U("block_count", L) || U("embedding_length", D) || U("attention.head_count", H) ||
        U("feed_forward_length", F))
        return 0;
    if (U("attention.head_count_kv", Hkv)) Hkv = H;
    uint32_t hd = D / H;
    if (!gpt && U("rope.dimension_count", n_rot)) n_rot = hd;
#undef U
    snprintf(k, sizeof k, "%s.%s", a,
             gpt ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon");
    gguf_get_f32(g, k, &eps);
    snprintf(k, sizeof k, "%s.rope.freq_base", a);
    gguf_get_f32(g, k, &base);
    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    int V = (int)te->ne[1];
    uint32_t kvd = Hkv * hd;
    double *x = calloc((size_t)T * D, sizeof *x), *xn = calloc(D, sizeof *xn);
    double *q = calloc((size_t)T * D, sizeof *q), *kk = calloc((size_t)T * kvd, sizeof *kk);
    double *vv = calloc((size_t)T * kvd, sizeof *vv), *z = calloc(D, sizeof *z);
    double *tmp = calloc(3 * (size_t)D + 2 * (size_t)F, sizeof *tmp), *att = calloc(T, sizeof *att);
    double *zall = calloc((size_t)T * D, sizeof *zall);
    const float *E = (const float *)te->data, *P = ref_t(g, "position_embd.weight");
    const float *freqs = ref_t(g, "rope_freqs.weight");
    for (int t = 0; t < T; t++)
        for (uint32_t i = 0; i < D; i++)
            x[(size_t)t * D + i] = E[(size_t)tok[t] * D + i] + (gpt ? P[(size_t)t * D + i] : 0);
    for (uint32_t l = 0; l < L; l++) {
        for (int t = 0; t < T; t++) {
            ref_norm(xn, x + (size_t)t * D, ref_tl(g, l, "attn_norm.weight"),
                     gpt ? ref_tl(g, l, "attn_norm.bias") : NULL, D, eps, gpt);
            if (gpt) {
                ref_linear(tmp, ref_tl(g, l, "attn_qkv.weight"), ref_tl(g, l, "attn_qkv.bias"), xn,
                           D, 3 * D);
                memcpy(q + (size_t)t * D, tmp, D * sizeof *q);
                memcpy(kk + (size_t)t * kvd, tmp + D, D * sizeof *q);
                memcpy(vv + (size_t)t * kvd, tmp + 2 * D, D * sizeof *q);
            } else {
                ref_linear(q + (size_t)t * D, ref_tl(g, l, "attn_q.weight"), NULL, xn, D, D);
                ref_linear(kk + (size_t)t * kvd, ref_tl(g, l, "attn_k.weight"), NULL, xn, D, kvd);
                ref_linear(vv + (size_t)t * kvd, ref_tl(g, l, "attn_v.weight"), NULL, xn, D, kvd);
                // rotate pairs (2j, 2j+1) of the first n_rot dims of each head
                for (uint32_t h = 0; h < H + Hkv; h++) {
                    double *v =
                        h < H ? q + (size_t)t * D + h * hd : kk + (size_t)t * kvd + (h - H) * hd;
                    for (uint32_t j = 0; j < n_rot / 2; j++) {
                        double th = t / pow(base, 2.0 * j / n_rot) / (freqs ? freqs[j] : 1.0);
                        double c0 = v[2 * j], c1 = v[2 * j + 1];
                        v[2 * j] = c0 * cos(th) - c1 * sin(th);
                        v[2 * j + 1] = c0 * sin(th) + c1 * cos(th);
                    }
                }
            }
        }
        for (int t = 0; t < T; t++) {
            for (uint32_t h = 0; h < H; h++) {
                uint32_t kh = h / (H / Hkv);
                double mx = -1e300, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (uint32_t i = 0; i < hd; i++)
                        d += q[(size_t)t * D + h * hd + i] * kk[(size_t)s * kvd + kh * hd + i];
                    att[s] = d / sqrt((double)hd);
                    if (att[s] > mx) mx = att[s];
                }
                for (int s = 0; s <= t; s++) sum += (att[s] = exp(att[s] - mx));
                for (uint32_t i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++)
                        acc += att[s] / sum * vv[(size_t)s * kvd + kh * hd + i];
                    zall[(size_t)t * D + h * hd + i] = acc;
                }
            }
        }
        for (int t = 0; t < T; t++) {
            double *xt = x + (size_t)t * D;
            ref_linear(tmp, ref_tl(g, l, "attn_output.weight"),
                       gpt ? ref_tl(g, l, "attn_output.bias") : NULL, zall + (size_t)t * D, D, D);
            for (uint32_t i = 0; i < D; i++) xt[i] += tmp[i] + ((int)l == bump_layer ? bump : 0);
            ref_norm(xn, xt, ref_tl(g, l, "ffn_norm.weight"),
                     gpt ? ref_tl(g, l, "ffn_norm.bias") : NULL, D, eps, gpt);
            double *h1 = tmp + D, *h2 = tmp + D + F;
            if (gpt) {
                ref_linear(h1, ref_tl(g, l, "ffn_up.weight"), ref_tl(g, l, "ffn_up.bias"), xn, D,
                           F);
                for (uint32_t i = 0; i < F; i++)
                    h1[i] = 0.5 * h1[i] *
                            (1 + tanh(sqrt(2 / M_PI) * (h1[i] + 0.044715 * pow(h1[i], 3))));
            } else {
                ref_linear(h1, ref_tl(g, l, "ffn_gate.weight"), NULL, xn, D, F);
                ref_linear(h2, ref_tl(g, l, "ffn_up.weight"), NULL, xn, D, F);
                for (uint32_t i = 0; i < F; i++) h1[i] = h1[i] / (1 + exp(-h1[i])) * h2[i];
            }
            ref_linear(tmp, ref_tl(g, l, "ffn_down.weight"),
                       gpt ? ref_tl(g, l, "ffn_down.bias") : NULL, h1, F, D);
            for (uint32_t i = 0; i < D; i++) xt[i] += tmp[i];
            if ((int)l == resid_layer)
                for (uint32_t i = 0; i < D; i++) resid[(size_t)t * D + i] = (float)xt[i];
        }
    }
    const float *Wout = ref_t(g, "output.weight");
    if (!Wout) Wout = E;
    double *lg = calloc(V, sizeof *lg);
    for (int t = 0; t < T && logits; t++) {
        ref_norm(xn, x + (size_t)t * D, ref_t(g, "output_norm.weight"),
                 gpt ? ref_t(g, "output_norm.bias") : NULL, D, eps, gpt);
        ref_linear(lg, Wout, NULL, xn, D, V);
        for (int i = 0; i < V; i++) logits[(size_t)t * V + i] = (float)lg[i];
    }
    free(lg);
    free(x), free(xn), free(q), free(kk), free(vv), free(z), free(tmp), free(att), free(zall);
    return 1;
}

#endif
