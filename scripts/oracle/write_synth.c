// The cterp side of scripts/oracle/model_refs.sh: writes the synthetic GGUFs of
// tests/synth_arch.h and checks llama.cpp's references against an independent double-precision
// forward written from our reading of llama.cpp's graphs (src/models/<arch>.cpp). The check
// confirms the reading (every family's semantics as docs/model.md states them) and measures
// llama.cpp's own numerical error, from which test_arch's tolerances are set.
//
//   write_synth list                       variant names
//   write_synth write NAME OUT.gguf        the model file
//   write_synth tokens NAME T              the T prompt ids
//   write_synth check NAME MODEL.gguf REF  llama.cpp's REF vs the exact forward; exit 1 on a
//                                          mismatch beyond llama.cpp's expected error
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

typedef struct {
    double max_p_mean;  // mean over heads/queries of the largest attention probability
    double capped_frac; // attention scores with |s| > cap/2
    double final_capped_frac;
    double swa_masked; // fraction of causal (query, key) pairs the window removes on SWA layers
} fwd_stats;

// logits (T, V), post/mid (L, T, D) in double precision, from the GGUF's weights and c's
// hyperparameters, following llama.cpp's graphs.
static void exact_forward(const gguf_file *g, const synth_arch_cfg *c, const int32_t *tok, int T,
                          double *logits, double *post, double *mid, fwd_stats *st) {
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
        // sliding-window layers: gemma2 even layers, gemma3 five of every six (llama.cpp's
        // set_swa_pattern(n): il % n < n - 1); phi3's key is ignored
        int swa = 0;
        if (synth_arch_is(c, "gemma2")) swa = l % 2 < 1;
        if (synth_arch_is(c, "gemma3")) swa = l % 6 < 5;
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
                    if (swa && t - s >= c->swa) { // llama.cpp is_masked_swa: p1 - p0 >= n_swa
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

static double max_diff(const float *a, const double *b, size_t n, double *rms) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > m) m = d;
        s += b[i] * b[i];
    }
    *rms = sqrt(s / (double)n);
    return m;
}

static int check(const synth_arch_cfg *c, const char *model, const char *ref) {
    FILE *f = fopen(ref, "rb");
    if (!f) return perror(ref), 1;
    char magic[8], arch[24];
    uint32_t h[7];
    float margin;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "CTERPREF", 8) || fread(h, 4, 7, f) != 7 ||
        fread(&margin, 4, 1, f) != 1 || fread(arch, 1, 24, f) != 24)
        return fprintf(stderr, "%s: bad header\n", ref), 1;
    int T = (int)h[1], n_gen = (int)h[2], V = (int)h[3], D = (int)h[4], L = (int)h[5];
    int has_mid = (int)h[6];
    int32_t *tok = malloc((size_t)(T + n_gen) * 4);
    float *lg = malloc((size_t)T * V * 4), *post = malloc((size_t)L * T * D * 4);
    float *mid = malloc((size_t)L * T * D * 4);
    if (fread(tok, 4, (size_t)(T + n_gen), f) != (size_t)(T + n_gen) ||
        fread(lg, 4, (size_t)T * V, f) != (size_t)T * V ||
        fread(post, 4, (size_t)L * T * D, f) != (size_t)L * T * D ||
        (has_mid && fread(mid, 4, (size_t)L * T * D, f) != (size_t)L * T * D))
        return fprintf(stderr, "%s: truncated\n", ref), 1;
    fclose(f);
    gguf_file *g;
    if (gguf_open(&g, model)) return fprintf(stderr, "%s\n", cterp_last_error()), 1;
    double *elg = malloc((size_t)T * V * sizeof *elg);
    double *epost = malloc((size_t)L * T * D * sizeof *epost);
    double *emid = malloc((size_t)L * T * D * sizeof *emid);
    fwd_stats st;
    exact_forward(g, c, tok, T, elg, epost, emid, &st);
    double rl, rp, rm = 0;
    double dl = max_diff(lg, elg, (size_t)T * V, &rl);
    double dp = max_diff(post, epost, (size_t)L * T * D, &rp);
    double dm = has_mid ? max_diff(mid, emid, (size_t)L * T * D, &rm) : 0;
    // expected llama.cpp error, relative to the rms: f32 everywhere (~3e-6 at these sizes), and
    // where there is a GELU its fp16 table (GGML_GELU_FP16: input and output rounded to fp16)
    int gelu = synth_arch_layernorm(c) || synth_arch_gemma(c);
    double rel = gelu ? 1e-2 : 1e-5;
    printf("%-17s llama.cpp vs exact: logits %.2e (rms %.2f)  resid_post %.2e (rms %.2f)  "
           "resid_mid %.2e | attn max-p %.2f, capped %.2f, final capped %.2f, swa masked %.2f, "
           "greedy margin %.3f\n",
           c->name, dl, rl, dp, rp, dm, st.max_p_mean, st.capped_frac, st.final_capped_frac,
           st.swa_masked, margin);
    gguf_close(g);
    int bad = !(dl < rel * rl && dp < rel * rp && dm <= rel * rm);
    if (bad)
        fprintf(stderr, "%s: llama.cpp and the exact forward disagree beyond %g x rms\n", c->name,
                rel);
    free(tok), free(lg), free(post), free(mid), free(elg), free(epost), free(emid);
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
                        "check NAME MODEL.gguf REF\n");
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
    if (!strcmp(argv[1], "check") && argc == 5) return check(c, argv[3], argv[4]);
    return 2;
}
