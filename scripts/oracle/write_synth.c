// The cterp side of scripts/oracle/model_refs.sh: writes the synthetic GGUFs of
// tests/synth_arch.h, computes an exact double-precision forward of each (written from our
// reading of llama.cpp's graphs, src/models/<arch>.cpp), checks llama.cpp's outputs against it,
// and stores both in tests/data/model_ref/<variant>.ref. The check confirms the reading (every
// family's semantics as docs/model.md states them) and measures llama.cpp's own numerical error,
// from which test_arch sets its tolerance against llama.cpp.
//
// Independent of cterp's model code: it uses cterp only to read and write GGUF files
// (io/gguf) and for the weights' random numbers (core/rng); the forward below is all its own.
//
//   write_synth list                      variant names
//   write_synth write NAME OUT.gguf       the model file
//   write_synth tokens NAME T             the T prompt ids
//   write_synth llama_cpp NAME            exit 0 when llama.cpp computes the variant's function;
//                                         else says why not and exits 1
//   write_synth ref NAME MODEL.gguf OUT.ref T N_GEN [LLAMA.ref]
//                                         the exact forward's outputs (and llama.cpp's, from
//                                         model_ref's LLAMA.ref) into OUT.ref; exit 1, writing
//                                         nothing, when llama.cpp disagrees beyond its expected
//                                         error or its greedy continuation differs
//
// OUT.ref, little-endian, version 2 (docs/model.md, "Reference outputs from llama.cpp"):
//   0  char[8]  "CTERPREF"
//   8  u32      version (2)
//   12 u32      T (prompt tokens)      16 u32 N_GEN      20 u32 V      24 u32 D      28 u32 L
//   32 u32      has_mid (1: resid_mid recorded for every layer)
//   36 u32      has_llama (1: llama.cpp's section follows the exact one)
//   40 f32      exact: smallest top-1 minus top-2 logit over the N_GEN greedy steps
//   44 f32      llama.cpp: the same (0 without its section)
//   48 char[24] general.architecture, NUL-padded
//   72 i32 tokens[T], then per section (exact, then llama.cpp when has_llama):
//      i32 generated[N_GEN], f32 logits[T][V], f32 resid_post[L][T][D],
//      f32 resid_mid[L][T][D] (when has_mid)
// The exact section is the double-precision forward rounded to f32 once at the end.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "synth_arch.h"

static const float *W(const gguf_file *g, int l, const char *name) {
    char n[128];
    if (l >= 0)
        snprintf(n, sizeof n, "blk.%d.%s", l, name);
    else
        snprintf(n, sizeof n, "%s", name);
    const gguf_tensor *t = gguf_find_tensor(g, n);
    return t ? (const float *)t->data : NULL;
}

// y (out) = W (out, in) x (in) + b
static void linear(double *y, const float *w, const float *b, const double *x, int in, int out) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += (double)w[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

// LayerNorm (ln) or RMSNorm of x (n) times w plus b
static void norm(double *y, const double *x, const float *w, const float *b, int n, double eps,
                 int ln) {
    double mean = 0, ss = 0;
    if (ln) {
        for (int i = 0; i < n; i++) mean += x[i];
        mean /= n;
    }
    for (int i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * (w ? w[i] : 1) + (b ? b[i] : 0);
}

static double gelu_tanh(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double silu(double x) {
    return x / (1 + exp(-x));
}

// rotates the first n_rot dims of v (one head): NORM pairs (2j, 2j+1), NEOX pairs (j, j+n_rot/2)
static void rope(double *v, int n_rot, int neox, int pos, double base, double scale,
                 const float *ff) {
    for (int j = 0; j < n_rot / 2; j++) {
        double th = pos * scale * pow(base, -2.0 * j / n_rot) / (ff ? ff[j] : 1.0);
        int a = neox ? j : 2 * j, b = neox ? j + n_rot / 2 : 2 * j + 1;
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * cos(th) - x1 * sin(th);
        v[b] = x0 * sin(th) + x1 * cos(th);
    }
}

// The window of layer l (0: full attention), as llama.cpp applies it: gemma2 even layers,
// gemma3 five of every six (set_swa_pattern(n): il % n < n - 1); phi3's key is read and
// disabled. llama: every layer, Mistral v0.1's definition, which cterp follows and llama.cpp
// does not (synth_arch_llama_cpp_differs).
static int window_of(const synth_arch_cfg *c, int l) {
    if (!c->swa) return 0;
    if (synth_arch_is(c, "gemma2")) return l % 2 < 1 ? c->swa : 0;
    if (synth_arch_is(c, "gemma3")) return l % 6 < 5 ? c->swa : 0;
    if (synth_arch_is(c, "llama")) return c->swa;
    return 0;
}

typedef struct {
    double max_p_mean;  // mean over heads/queries of the largest attention probability
    double capped_frac; // attention scores with |s| > cap/2
    double final_capped_frac;
    double swa_masked; // fraction of causal (query, key) pairs the window removes on SWA layers
} fwd_stats;

// logits (T, V), post/mid (L, T, D) in double precision, from the GGUF's weights and c's
// hyperparameters, following llama.cpp's graphs. windows 0 drops every sliding window (to
// measure what the window changes).
static void exact_forward(const gguf_file *g, const synth_arch_cfg *c, const int32_t *tok, int T,
                          int windows, double *logits, double *post, double *mid, fwd_stats *st) {
    const int D = c->D, H = c->H, Hkv = c->Hkv, hd = synth_arch_hd(c), F = c->F, V = c->V;
    const int qd = H * hd, kvd = Hkv * hd, ln = synth_arch_layernorm(c);
    const int n_rot = synth_arch_is(c, "gpt2") ? 0 : (c->n_rot ? c->n_rot : hd);
    const int neox = !synth_arch_is(c, "llama"); // every other roped family here is NEOX
    const int gemma = synth_arch_gemma(c), phi3 = synth_arch_is(c, "phi3");
    double *x = calloc((size_t)T * D, sizeof *x), *h = calloc(D, sizeof *h);
    double *q = calloc((size_t)T * qd, sizeof *q), *k = calloc((size_t)T * kvd, sizeof *k);
    double *v = calloc((size_t)T * kvd, sizeof *v), *z = calloc(qd, sizeof *z);
    double *att = calloc(T, sizeof *att), *ao = calloc((size_t)T * D, sizeof *ao);
    double *f1 = calloc(2 * (size_t)F, sizeof *f1), *f2 = calloc(F, sizeof *f2);
    double *mo = calloc(D, sizeof *mo), *qkv = calloc(qd + 2 * kvd, sizeof *qkv);
    memset(st, 0, sizeof *st);
    long n_att = 0, n_cap = 0, n_pairs = 0, n_masked = 0;

    const float *E = W(g, -1, "token_embd.weight"), *P = W(g, -1, "position_embd.weight");
    const float *ff = W(g, -1, "rope_freqs.weight");
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++)
            x[(size_t)t * D + i] =
                (double)E[(size_t)tok[t] * D + i] * (gemma ? sqrt((double)D) : 1) +
                (P ? P[(size_t)t * D + i] : 0);
    for (int l = 0; l < c->L; l++) {
        const int swa = window_of(c, l) != 0, win = windows ? window_of(c, l) : 0;
        double base = c->rope_base, scale = c->rope_linear ? 1.0 / c->rope_linear : 1.0;
        if (swa && synth_arch_is(c, "gemma3"))
            base = c->rope_base_swa ? c->rope_base_swa : 10000, scale = 1;
        for (int t = 0; t < T; t++) {
            norm(h, x + (size_t)t * D, W(g, l, "attn_norm.weight"), W(g, l, "attn_norm.bias"), D,
                 c->eps, ln);
            double *qt = q + (size_t)t * qd, *kt = k + (size_t)t * kvd, *vt = v + (size_t)t * kvd;
            if (synth_arch_fused_qkv(c)) {
                linear(qkv, W(g, l, "attn_qkv.weight"), W(g, l, "attn_qkv.bias"), h, D,
                       qd + 2 * kvd);
                memcpy(qt, qkv, qd * sizeof *qt);
                memcpy(kt, qkv + qd, kvd * sizeof *kt);
                memcpy(vt, qkv + qd + kvd, kvd * sizeof *vt);
            } else {
                linear(qt, W(g, l, "attn_q.weight"), W(g, l, "attn_q.bias"), h, D, qd);
                linear(kt, W(g, l, "attn_k.weight"), W(g, l, "attn_k.bias"), h, D, kvd);
                linear(vt, W(g, l, "attn_v.weight"), W(g, l, "attn_v.bias"), h, D, kvd);
            }
            for (int hh = 0; hh < H + Hkv; hh++) {
                double *vec = hh < H ? qt + hh * hd : kt + (hh - H) * hd;
                if (synth_arch_qk_norm(c)) // RMSNorm per head, before RoPE
                    norm(vec, vec, W(g, l, hh < H ? "attn_q_norm.weight" : "attn_k_norm.weight"),
                         NULL, hd, c->eps, 0);
                if (n_rot) rope(vec, n_rot, neox, t, base, scale, ff);
            }
        }
        const double kq_scale = 1.0 / sqrt((double)hd);
        for (int t = 0; t < T; t++) {
            for (int hh = 0; hh < H; hh++) {
                int kh = hh / (H / Hkv);
                double mx = -INFINITY, sum = 0, pmax = 0;
                for (int s = 0; s <= t; s++) {
                    n_pairs++;
                    if (win && t - s >= win) { // llama.cpp is_masked_swa: p1 - p0 >= n_swa
                        att[s] = -INFINITY;
                        n_masked++;
                        continue;
                    }
                    double d = 0;
                    for (int i = 0; i < hd; i++)
                        d += q[(size_t)t * qd + hh * hd + i] * k[(size_t)s * kvd + kh * hd + i];
                    d *= kq_scale;
                    if (c->attn_softcap != 0) {
                        n_att++;
                        n_cap += fabs(d) > c->attn_softcap / 2;
                        d = c->attn_softcap * tanh(d / c->attn_softcap);
                    }
                    att[s] = d;
                    if (d > mx) mx = d;
                }
                for (int s = 0; s <= t; s++) sum += (att[s] = exp(att[s] - mx));
                for (int s = 0; s <= t; s++) {
                    att[s] /= sum;
                    if (att[s] > pmax) pmax = att[s];
                }
                st->max_p_mean += pmax / (T * H * c->L);
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += att[s] * v[(size_t)s * kvd + kh * hd + i];
                    z[hh * hd + i] = acc;
                }
            }
            double *a = ao + (size_t)t * D;
            linear(a, W(g, l, "attn_output.weight"), W(g, l, "attn_output.bias"), z, qd, D);
            if (synth_arch_post_norms(c))
                norm(a, a, W(g, l, "post_attention_norm.weight"), NULL, D, c->eps, 0);
        }
        for (int t = 0; t < T; t++) {
            double *xt = x + (size_t)t * D, *a = ao + (size_t)t * D;
            if (!c->par_res) {
                for (int i = 0; i < D; i++) xt[i] += a[i];
                if (mid) memcpy(mid + ((size_t)l * T + t) * D, xt, D * sizeof *xt);
            }
            norm(h, xt, W(g, l, "ffn_norm.weight"), W(g, l, "ffn_norm.bias"), D, c->eps, ln);
            if (ln) { // gelu(up + b) -> down + b
                linear(f1, W(g, l, "ffn_up.weight"), W(g, l, "ffn_up.bias"), h, D, F);
                for (int i = 0; i < F; i++) f1[i] = gelu_tanh(f1[i]);
            } else if (phi3) { // y = up(h) (2F): silu(y[:F]) * y[F:]
                linear(f1, W(g, l, "ffn_up.weight"), NULL, h, D, 2 * F);
                for (int i = 0; i < F; i++) f1[i] = silu(f1[i]) * f1[F + i];
            } else { // act(gate(h)) * up(h)
                linear(f1, W(g, l, "ffn_gate.weight"), NULL, h, D, F);
                linear(f2, W(g, l, "ffn_up.weight"), NULL, h, D, F);
                for (int i = 0; i < F; i++)
                    f1[i] = (gemma ? gelu_tanh(f1[i]) : silu(f1[i])) * f2[i];
            }
            linear(mo, W(g, l, "ffn_down.weight"), W(g, l, "ffn_down.bias"), f1, F, D);
            if (synth_arch_post_norms(c))
                norm(mo, mo, W(g, l, "post_ffw_norm.weight"), NULL, D, c->eps, 0);
            // parallel residual (gptneox): x + attn(ln1(x)) + mlp(ln2(x)), both from the old x
            for (int i = 0; i < D; i++) xt[i] += mo[i] + (c->par_res ? a[i] : 0);
            memcpy(post + ((size_t)l * T + t) * D, xt, D * sizeof *xt);
        }
    }
    const float *Wo = W(g, -1, "output.weight");
    if (!Wo) Wo = E;
    long n_fc = 0;
    for (int t = 0; t < T; t++) {
        norm(h, x + (size_t)t * D, W(g, -1, "output_norm.weight"), W(g, -1, "output_norm.bias"), D,
             c->eps, ln);
        double *lg = logits + (size_t)t * V;
        linear(lg, Wo, NULL, h, D, V);
        if (c->final_softcap != 0)
            for (int i = 0; i < V; i++) {
                n_fc += fabs(lg[i]) > c->final_softcap / 2;
                lg[i] = c->final_softcap * tanh(lg[i] / c->final_softcap);
            }
    }
    st->capped_frac = n_att ? (double)n_cap / n_att : 0;
    st->final_capped_frac = (double)n_fc / ((double)T * V);
    st->swa_masked = n_pairs ? (double)n_masked / n_pairs : 0;
    free(x), free(h), free(q), free(k), free(v), free(z), free(att), free(ao), free(f1), free(f2);
    free(mo), free(qkv);
}

// max |a - b| / rms(b), as test_arch measures it
static double rel_diff(const float *a, const float *b, size_t n) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
        s += (double)b[i] * b[i];
    }
    return m / (sqrt(s / (double)n) + 1e-30);
}

// One side of a reference: what llama.cpp or the exact forward computed for the prompt.
typedef struct {
    int32_t *gen;               // (N_GEN) greedy continuation
    float *logits, *post, *mid; // (T, V), (L, T, D), (L, T, D)
    float margin;               // smallest top-1 minus top-2 logit over the greedy steps
} side;

static void side_free(side *s) {
    free(s->gen), free(s->logits), free(s->post), free(s->mid);
}

// Reads model_ref's output (version 1: llama.cpp alone) for a variant of T, N_GEN, V, D, L.
static int read_llama(side *o, int *has_mid, const char *path, const int32_t *tok, int T, int n_gen,
                      int V, int D, int L) {
    FILE *f = fopen(path, "rb");
    if (!f) return perror(path), 0;
    char magic[8], arch[24];
    uint32_t h[7];
    size_t nr = (size_t)L * T * D;
    int32_t *ltok = malloc((size_t)(T + n_gen) * 4);
    o->logits = malloc((size_t)T * V * 4), o->post = malloc(nr * 4), o->mid = malloc(nr * 4);
    o->gen = malloc((size_t)n_gen * 4);
    int ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "CTERPREF", 8) &&
             fread(h, 4, 7, f) == 7 && fread(&o->margin, 4, 1, f) == 1 &&
             fread(arch, 1, 24, f) == 24;
    if (ok && (h[0] != 1 || h[1] != (uint32_t)T || h[2] != (uint32_t)n_gen || h[3] != (uint32_t)V ||
               h[4] != (uint32_t)D || h[5] != (uint32_t)L)) {
        fprintf(stderr,
                "%s: version %u, T %u, N_GEN %u, V %u, D %u, L %u; expected 1, %d, %d, "
                "%d, %d, %d\n",
                path, h[0], h[1], h[2], h[3], h[4], h[5], T, n_gen, V, D, L);
        ok = 0;
    }
    *has_mid = ok && h[6];
    ok = ok && fread(ltok, 4, (size_t)(T + n_gen), f) == (size_t)(T + n_gen) &&
         fread(o->logits, 4, (size_t)T * V, f) == (size_t)T * V && fread(o->post, 4, nr, f) == nr &&
         (!*has_mid || fread(o->mid, 4, nr, f) == nr) && fgetc(f) == EOF;
    fclose(f);
    if (ok && memcmp(ltok, tok, (size_t)T * 4)) ok = 0, fprintf(stderr, "%s: other prompt\n", path);
    if (ok) memcpy(o->gen, ltok + T, (size_t)n_gen * 4);
    free(ltok);
    return ok;
}

static void to_f32(float *y, const double *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
}

// The exact side: the prompt's outputs, then the greedy continuation, one full forward per step.
static void exact_side(side *o, const gguf_file *g, const synth_arch_cfg *c, const int32_t *prompt,
                       int T, int n_gen, fwd_stats *st) {
    const int V = c->V, L = c->L, D = c->D, n = T + n_gen;
    size_t nr = (size_t)L * n * D;
    double *lg = malloc((size_t)n * V * sizeof *lg), *post = malloc(nr * sizeof *post);
    double *mid = malloc(nr * sizeof *mid);
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    memcpy(tok, prompt, (size_t)T * sizeof *tok);
    o->logits = malloc((size_t)T * V * 4), o->post = malloc((size_t)L * T * D * 4);
    o->mid = malloc((size_t)L * T * D * 4), o->gen = malloc((size_t)n_gen * 4);
    exact_forward(g, c, tok, T, 1, lg, post, mid, st);
    to_f32(o->logits, lg, (size_t)T * V);
    to_f32(o->post, post, (size_t)L * T * D);
    to_f32(o->mid, mid, (size_t)L * T * D);
    double margin = INFINITY;
    for (int s = 0; s < n_gen; s++) {
        fwd_stats st2;
        if (s) exact_forward(g, c, tok, T + s, 1, lg, post, mid, &st2);
        const double *x = lg + (size_t)(T + s - 1) * V;
        int a = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[a]) a = i;
        double second = -INFINITY;
        for (int i = 0; i < V; i++)
            if (i != a && x[i] > second) second = x[i];
        if (x[a] - second < margin) margin = x[a] - second;
        tok[T + s] = o->gen[s] = a;
    }
    o->margin = (float)margin;
    free(lg), free(post), free(mid), free(tok);
}

// How far the prompt's logits move with every sliding window removed, relative to their rms.
static double window_effect(const gguf_file *g, const synth_arch_cfg *c, const int32_t *tok, int T,
                            const side *e) {
    size_t nl = (size_t)T * c->V, nr = (size_t)c->L * T * c->D;
    double *lg = malloc(nl * sizeof *lg), *post = malloc(nr * sizeof *post);
    float *lf = malloc(nl * sizeof *lf);
    fwd_stats st;
    exact_forward(g, c, tok, T, 0, lg, post, NULL, &st);
    to_f32(lf, lg, nl);
    double d = rel_diff(lf, e->logits, nl);
    free(lg), free(post), free(lf);
    return d;
}

static int put(FILE *f, const void *p, size_t n) {
    return fwrite(p, 1, n, f) == n;
}

static int put_side(FILE *f, const side *s, int T, int n_gen, int V, size_t nr, int has_mid) {
    return put(f, s->gen, (size_t)n_gen * 4) && put(f, s->logits, (size_t)T * V * 4) &&
           put(f, s->post, nr * 4) && (!has_mid || put(f, s->mid, nr * 4));
}

// Computes the exact side for the variant's T-token prompt, checks llama.cpp's side against it
// (when LLAMA is given), and writes OUT in the stored format (version 2, docs/model.md). Returns
// 1, writing nothing, when llama.cpp and the exact forward disagree beyond llama.cpp's expected
// error: f32 rounding (~3e-6 of the rms at these sizes), and where there is a GELU its fp16
// table (GGML_GELU_FP16: input and output rounded to fp16, ~3e-3).
static int make_ref(const synth_arch_cfg *c, const char *model, const char *out, int T, int n_gen,
                    const char *llama) {
    const int V = c->V, D = c->D, L = c->L;
    const size_t nl = (size_t)T * V, nr = (size_t)L * T * D;
    // resid_mid where llama.cpp names it: not for phi3 (unnamed) nor the parallel residual
    const int has_mid = !synth_arch_is(c, "phi3") && !c->par_res;
    int32_t *tok = malloc((size_t)T * 4);
    synth_arch_tokens(c, tok, T);
    gguf_file *g;
    if (gguf_open(&g, model)) return fprintf(stderr, "%s\n", cterp_last_error()), 1;
    side e = {0}, lc = {0};
    fwd_stats st;
    exact_side(&e, g, c, tok, T, n_gen, &st);
    printf("%-17s exact: greedy", c->name);
    for (int s = 0; s < n_gen; s++) printf(" %d", e.gen[s]);
    printf(" (margin %.3f) | attn max-p %.2f, capped %.2f, final capped %.2f, swa masked %.2f",
           e.margin, st.max_p_mean, st.capped_frac, st.final_capped_frac, st.swa_masked);
    if (st.swa_masked > 0)
        printf(", windows off move logits %.2f x rms", window_effect(g, c, tok, T, &e));
    printf("\n");
    gguf_close(g);
    int bad = 0, lmid = 0;
    if (llama) {
        bad = !read_llama(&lc, &lmid, llama, tok, T, n_gen, V, D, L);
        if (!bad && lmid != has_mid) {
            fprintf(stderr, "%s: llama.cpp %s resid_mid; expected %s\n", c->name,
                    lmid ? "names" : "does not name", has_mid ? "it" : "none");
            bad = 1;
        }
    }
    if (llama && !bad) {
        double dl = rel_diff(lc.logits, e.logits, nl), dp = rel_diff(lc.post, e.post, nr);
        double dm = has_mid ? rel_diff(lc.mid, e.mid, nr) : 0;
        double rel = synth_arch_gelu(c) ? 1e-2 : 1e-5;
        int same = !memcmp(lc.gen, e.gen, (size_t)n_gen * 4);
        printf("%-17s llama.cpp vs exact: logits %.2e, resid_post %.2e, resid_mid %.2e x rms "
               "(bound %g); greedy %s (llama.cpp margin %.3f)\n",
               c->name, dl, dp, dm, rel, same ? "identical" : "DIFFERS", lc.margin);
        if (!(dl < rel && dp < rel && dm < rel)) {
            fprintf(stderr, "%s: llama.cpp and the exact forward disagree beyond %g x rms\n",
                    c->name, rel);
            bad = 1;
        }
        if (!same)
            fprintf(stderr, "%s: llama.cpp's greedy continuation differs\n", c->name), bad = 1;
    }
    if (!bad) {
        FILE *f = fopen(out, "wb");
        if (!f) return perror(out), 1;
        char arch[24] = {0};
        snprintf(arch, sizeof arch, "%s", c->arch);
        uint32_t hdr[8] = {2,           (uint32_t)T, (uint32_t)n_gen,   (uint32_t)V,
                           (uint32_t)D, (uint32_t)L, (uint32_t)has_mid, llama != NULL};
        int ok = put(f, "CTERPREF", 8) && put(f, hdr, sizeof hdr) && put(f, &e.margin, 4) &&
                 put(f, &lc.margin, 4) && put(f, arch, sizeof arch) && put(f, tok, (size_t)T * 4) &&
                 put_side(f, &e, T, n_gen, V, nr, has_mid) &&
                 (!llama || put_side(f, &lc, T, n_gen, V, nr, has_mid));
        if (fclose(f) || !ok) fprintf(stderr, "%s: write failed\n", out), bad = 1;
    }
    side_free(&e), side_free(&lc), free(tok);
    return bad;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "list")) {
        for (int i = 0; i < SYNTH_ARCH_N_VARIANTS; i++) printf("%s\n", synth_arch_variants[i].name);
        return 0;
    }
    const synth_arch_cfg *c = argc >= 3 ? synth_arch_find(argv[2]) : NULL;
    if (!c) {
        fprintf(stderr, "usage: write_synth list | write NAME OUT.gguf | tokens NAME T | "
                        "llama_cpp NAME | ref NAME MODEL.gguf OUT.ref T N_GEN [LLAMA.ref]\n");
        return 2;
    }
    if (!strcmp(argv[1], "write") && argc == 4) {
        if (synth_arch_write(argv[3], c)) return fprintf(stderr, "%s\n", cterp_last_error()), 1;
        return 0;
    }
    if (!strcmp(argv[1], "tokens") && argc == 4) {
        int T = atoi(argv[3]);
        int32_t tok[256];
        if (T < 1 || T > 256) return 2;
        synth_arch_tokens(c, tok, T);
        for (int i = 0; i < T; i++) printf("%d%c", tok[i], i + 1 < T ? ' ' : '\n');
        return 0;
    }
    if (!strcmp(argv[1], "llama_cpp") && argc == 3) {
        const char *why = synth_arch_llama_cpp_differs(c);
        if (why) printf("%s: no llama.cpp reference: %s\n", c->name, why);
        return why != NULL;
    }
    if (!strcmp(argv[1], "ref") && (argc == 7 || argc == 8)) {
        int T = atoi(argv[5]), n_gen = atoi(argv[6]);
        if (T < 1 || n_gen < 0 || T + n_gen > c->n_ctx) return 2;
        return make_ref(c, argv[3], argv[4], T, n_gen, argc == 8 ? argv[7] : NULL);
    }
    return 2;
}
