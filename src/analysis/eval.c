// Eval of an SAE spliced into its model: reconstruction (explained variance, MSE, L2 ratio,
// cosine), sparsity (L0, L1, feature density), and what the model loses when the activation
// is replaced by the reconstruction (CE loss and KL against the clean run, scored against
// zero ablation), as SAELens's run_evals defines them (reference/saelens.md section 3).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cterp/analysis.h"
#include "cterp/features.h"

#include "core/file.h"

void cterp_eval_config_default(cterp_eval_config *c) {
    memset(c, 0, sizeof *c);
    cterp_window_config_default(&c->windows);
    cterp_dataset_opts_default(&c->data);
    c->batch = 8;
    c->n_windows = 64;
    c->hook = NULL;
}

typedef struct {
    const cterp_sae *sae;
    const uint8_t *mask; // (B*T)
    int ablate;
    int64_t D, DO, N;  // DO: width of the replaced activation (d_out; D for an SAE)
    float *f, *xhat;   // (B*T, N), (B*T, DO)
    // transcoders: the input hook's rows of this forward, copied when it fires (before the
    // output hook, which the reconstruction replaces)
    float *xin;        // (B*T, D), or NULL for an SAE
    int have_in;
    const char *hook_in;
    // accumulators (f64, summed in row order)
    double sse, sum_x2, l0, l1, l2_ratio, cossim;
    double norm_in, norm_out, xhat2, x_xhat;
    double *sum_x;     // (D)
    int64_t *fired;    // (N) tokens with f_i > 0
    int64_t *wfired;   // (N) windows where f_i > 0 somewhere, or NULL
    uint8_t *seen;     // (N) scratch for wfired
    int64_t n;
} splice;

// A transcoder's input hook: keep its rows for the output hook of the same forward.
static cterp_status splice_in_hook(const char *name, float *act, const int64_t *shape, int ndim,
                                   void *user) {
    splice *s = user;
    int64_t width = 1;
    for (int i = 2; i < ndim; i++) width *= shape[i];
    if (width != s->D)
        return cterp_error(CTERP_EINVAL, "eval: input hook %s has width %lld, the transcoder's d_in is %lld",
                           name, (long long)width, (long long)s->D);
    memcpy(s->xin, act, (size_t)(shape[0] * shape[1] * s->D) * sizeof(float));
    s->have_in = 1;
    return CTERP_OK;
}

static cterp_status splice_hook(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    splice *s = user;
    const int64_t R = shape[0] * shape[1], DO = s->DO, N = s->N;
    int64_t width = 1; // [B, T, ...]: a row is everything after the position ([B,T,H,hd] -> H*hd)
    for (int i = 2; i < ndim; i++) width *= shape[i];
    if (width != DO)
        return cterp_error(CTERP_EINVAL, "eval: hook %s has width %lld, the %s's %s is %lld", name,
                           (long long)width, s->xin ? "transcoder" : "SAE", s->xin ? "d_out" : "d_in",
                           (long long)DO);
    if (s->ablate) { // zero ablation of the eval positions
        for (int64_t r = 0; r < R; r++)
            if (!s->mask[r]) memset(act + r * DO, 0, (size_t)DO * sizeof(float));
        return CTERP_OK;
    }
    cterp_status st;
    if (s->xin) { // transcoder: f and y_hat (skip term included) from the input hook's rows
        if (!s->have_in)
            return cterp_error(CTERP_EINVAL, "eval: the transcoder's input hook %s does not run before "
                               "its output hook %s in the forward", s->hook_in, name);
        s->have_in = 0;
        st = cterp_sae_encode(s->sae, s->xin, R, s->f);
        if (!st) st = cterp_sae_forward(s->sae, s->xin, R, s->xhat);
    } else {
        st = cterp_sae_encode(s->sae, act, R, s->f);
        if (!st) st = cterp_sae_decode(s->sae, s->f, R, s->xhat);
    }
    if (st) return st;
    for (int64_t r = 0; r < R; r++) {
        if (s->mask[r]) continue; // special positions keep their activation (SAELens masks them)
        const float *x = act + r * DO, *y = s->xhat + r * DO, *f = s->f + r * N;
        double e = 0, xx = 0, yy = 0, xy = 0;
        for (int64_t d = 0; d < DO; d++) {
            double dx = (double)x[d] - y[d];
            e += dx * dx, xx += (double)x[d] * x[d], yy += (double)y[d] * y[d], xy += (double)x[d] * y[d];
            s->sum_x[d] += x[d];
        }
        s->sse += e, s->sum_x2 += xx;
        s->norm_in += sqrt(xx), s->norm_out += sqrt(yy), s->xhat2 += yy, s->x_xhat += xy;
        s->l2_ratio += sqrt(xx) < 1e-4 ? 1.0 : sqrt(yy) / sqrt(xx);
        s->cossim += xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0.0;
        for (int64_t i = 0; i < N; i++)
            if (f[i] > 0) s->l0 += 1, s->l1 += f[i], s->fired[i]++;
        s->n++;
        memcpy(act + r * DO, y, (size_t)DO * sizeof(float));
    }
    const int64_t T = shape[1];
    for (int64_t b = 0; s->wfired && b < shape[0]; b++) { // windows where each latent fired
        memset(s->seen, 0, (size_t)N);
        for (int64_t r = b * T; r < (b + 1) * T; r++)
            if (!s->mask[r])
                for (int64_t i = 0; i < N; i++) s->seen[i] |= s->f[r * N + i] > 0;
        for (int64_t i = 0; i < N; i++) s->wfired[i] += s->seen[i];
    }
    return CTERP_OK;
}

// Rows of logits -> log-probabilities in place (f64 inside).
static void log_softmax(float *l, int64_t R, int64_t V) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        float *x = l + r * V;
        double mx = x[0], z = 0;
        for (int64_t v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        for (int64_t v = 0; v < V; v++) z += exp((double)x[v] - mx);
        double lse = mx + log(z);
        for (int64_t v = 0; v < V; v++) x[v] = (float)((double)x[v] - lse);
    }
}

// Per row: CE of the next token and KL(clean || new) (ce/kl arrays, summed later in order).
static void ce_kl(const float *lp_clean, float *logits, const int32_t *tok, int64_t B, int64_t T,
                  int64_t V, double *ce, double *kl) {
    log_softmax(logits, B * T, V);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < B * T; r++) {
        const float *p = lp_clean + r * V, *q = logits + r * V;
        double k = 0;
        for (int64_t v = 0; v < V; v++) k += exp((double)p[v]) * ((double)p[v] - q[v]);
        kl[r] = k;
        ce[r] = r % T < T - 1 ? -(double)q[tok[r + 1]] : 0;
    }
}

cterp_status cterp_eval(cterp_model *m, const cterp_sae *sae, const char *dataset,
                        const cterp_eval_config *c, cterp_eval_result *r) {
    memset(r, 0, sizeof *r);
    cterp_eval_config cd;
    if (!c) cterp_eval_config_default(&cd), c = &cd;
    if (sae->arch == CTERP_ARCH_CROSSCODER) // it reads and writes several hooks at once
        return cterp_error(CTERP_EINVAL, "eval: a crosscoder (%lld layers) reads and writes several hooks: "
                           "evaluate it with cterp_eval_crosscoder (each layer spliced in alone)",
                           (long long)sae->n_layers);
    const int tc = cterp_sae_is_transcoder(sae);
    const char *hook = c->hook ? c->hook : sae->meta.hook_name;
    // a transcoder reads `hook` (its input) and its output replaces hook_out (the MLP's output)
    const char *hook_out = !tc ? hook : c->hook_out ? c->hook_out : sae->meta.hook_name_out;
    if (!hook || !*hook)
        return cterp_error(CTERP_EINVAL, "eval: no hook (the SAE's metadata has no hook_name; give one)");
    if (tc && (!hook_out || !*hook_out))
        return cterp_error(CTERP_EINVAL, "eval: no output hook for the %s (its cfg.json has no "
                           "hook_name_out, the hook its output replaces; give one)",
                           cterp_arch_name(sae->arch));
    if (!tc && c->hook_out && strcmp(c->hook_out, hook))
        return cterp_error(CTERP_EINVAL, "eval: an output hook (%s) is for transcoders; this SAE "
                           "(%s) reconstructs its own hook %s", c->hook_out,
                           cterp_arch_name(sae->arch), hook);
    if (tc && !strcmp(hook, hook_out))
        return cterp_error(CTERP_EINVAL, "eval: the transcoder's input and output hooks are both %s",
                           hook);
    if (c->batch < 1 || c->n_windows < 1)
        return cterp_error(CTERP_EINVAL, "eval: batch and n_windows must be >= 1 (got %d, %lld)", c->batch,
                           (long long)c->n_windows);
    int layer, dim;
    cterp_status st = cterp_model_hook_info(m, hook, &layer, &dim);
    if (!st && tc) st = cterp_model_hook_info(m, hook_out, &layer, &dim);
    if (st) return st;
    const cterp_model_config *mc = cterp_model_config_of(m);
    const int64_t T = c->windows.context_size, V = mc->n_vocab, D = sae->d_in, DO = sae->d_out,
                  N = sae->d_sae;
    const int64_t Bm = c->batch, P = Bm * T;
    cterp_windows *w = NULL;
    if ((st = cterp_windows_open(&w, dataset, &c->data, cterp_model_tokenizer(m), &c->windows))) return st;
    splice sp = {0};
    sp.sae = sae, sp.D = D, sp.DO = DO, sp.N = N, sp.hook_in = hook;
    int32_t *tok = malloc((size_t)P * sizeof *tok);
    uint8_t *mask = malloc((size_t)P);
    float *lp = malloc((size_t)(P * V) * sizeof(float)), *lg = malloc((size_t)(P * V) * sizeof(float));
    double *ce = malloc((size_t)P * sizeof(double)), *kl = malloc((size_t)P * sizeof(double));
    sp.f = malloc((size_t)(P * N) * sizeof(float));
    sp.xhat = malloc((size_t)(P * DO) * sizeof(float));
    sp.sum_x = calloc((size_t)DO, sizeof(double));
    if (tc) sp.xin = malloc((size_t)(P * D) * sizeof(float));
    sp.fired = calloc((size_t)N, sizeof(int64_t));
    sp.mask = mask;
    if (c->windows_fired) {
        sp.wfired = c->windows_fired, sp.seen = malloc((size_t)N);
        memset(sp.wfired, 0, (size_t)N * sizeof(int64_t));
    }
    double ce0 = 0, ce_sae = 0, ce_abl = 0, kl_sae = 0, kl_abl = 0;
    if (!tok || !mask || !lp || !lg || !ce || !kl || !sp.f || !sp.xhat || !sp.sum_x || !sp.fired ||
        (c->windows_fired && !sp.seen) || (tc && !sp.xin)) {
        st = cterp_error(CTERP_ENOMEM, "eval: out of memory (batch %lld x %lld positions, vocab %lld, d_sae %lld)",
                         (long long)Bm, (long long)T, (long long)V, (long long)N);
        goto done;
    }
    const double t_start = time_now();
    if (c->progress) c->progress("eval", 0, c->n_windows, "windows", 0, c->progress_user);
    while (r->n_windows < c->n_windows) {
        file_test_point("eval"); // a batch of windows at a time
        int64_t B = 0;
        int eof = 0;
        while (B < Bm && r->n_windows + B < c->n_windows) {
            if ((st = cterp_windows_next(w, tok + B * T, mask + B * T, &eof))) goto done;
            if (eof) break;
            B++;
        }
        if (B == 0) break;
        cterp_forward_opts o = {NULL, 0, 0, lp, 0};
        if ((st = cterp_model_forward(m, tok, (int)B, (int)T, &o))) goto done;
        log_softmax(lp, B * T, V);
        for (int64_t q = 0; q < B * T; q++) // clean CE
            if (!mask[q] && q % T < T - 1) ce0 += -(double)lp[q * V + tok[q + 1]], r->n_ce_tokens++;
        for (int ablate = 0; ablate < 2; ablate++) {
            sp.ablate = ablate;
            // a transcoder's run reads its input hook first; the ablation needs only the output
            cterp_hook h[2] = {{hook, splice_in_hook, &sp}, {hook_out, splice_hook, &sp}};
            const int with_in = tc && !ablate;
            sp.have_in = 0;
            cterp_forward_opts oh = {h + !with_in, 1 + with_in, 0, lg, 0};
            if ((st = cterp_model_forward(m, tok, (int)B, (int)T, &oh))) goto done;
            ce_kl(lp, lg, tok, B, T, V, ce, kl);
            double *cs = ablate ? &ce_abl : &ce_sae, *ks = ablate ? &kl_abl : &kl_sae;
            for (int64_t q = 0; q < B * T; q++)
                if (!mask[q] && q % T < T - 1) *cs += ce[q], *ks += kl[q];
        }
        r->n_windows += B;
        if (c->progress && r->n_windows < c->n_windows && !eof)
            c->progress("eval", r->n_windows, c->n_windows, "windows", time_now() - t_start, c->progress_user);
        if (eof) break;
    }
    if (c->progress) c->progress("eval", r->n_windows, r->n_windows, "windows", time_now() - t_start, c->progress_user);
    if (sp.n == 0 || r->n_ce_tokens == 0) {
        st = cterp_error(CTERP_EFORMAT, "eval: %s has no complete window of %lld tokens with a non-special "
                         "position", dataset, (long long)T);
        goto done;
    }
    const double n = (double)sp.n, nc = (double)r->n_ce_tokens;
    double mean2 = 0;
    for (int64_t d = 0; d < DO; d++) mean2 += (sp.sum_x[d] / n) * (sp.sum_x[d] / n);
    double var = sp.sum_x2 - n * mean2; // sum ||x - mean||^2
    r->n_tokens = sp.n;
    r->explained_variance = var > 0 ? 1.0 - sp.sse / var : NAN;
    r->mse = sp.sse / n;
    r->l0 = sp.l0 / n, r->l1 = sp.l1 / n;
    r->l2_ratio = sp.l2_ratio / n, r->cossim = sp.cossim / n;
    r->l2_norm_in = sp.norm_in / n, r->l2_norm_out = sp.norm_out / n;
    r->relative_reconstruction_bias = sp.x_xhat != 0 ? sp.xhat2 / sp.x_xhat : NAN;
    if (c->fired) memcpy(c->fired, sp.fired, (size_t)N * sizeof(int64_t));
    r->ce_loss_without_sae = ce0 / nc, r->ce_loss_with_sae = ce_sae / nc, r->ce_loss_with_ablation = ce_abl / nc;
    double den = r->ce_loss_with_ablation - r->ce_loss_without_sae;
    r->ce_loss_score = den != 0 ? (r->ce_loss_with_ablation - r->ce_loss_with_sae) / den : NAN;
    r->kl_div_with_sae = kl_sae / nc, r->kl_div_with_ablation = kl_abl / nc;
    r->kl_div_score = r->kl_div_with_ablation != 0
                          ? (r->kl_div_with_ablation - r->kl_div_with_sae) / r->kl_div_with_ablation
                          : NAN;
    r->d_sae = N;
    for (int64_t i = 0; i < N; i++) {
        double dens = (double)sp.fired[i] / n;
        if (sp.fired[i] == 0) {
            r->dead_latents++, r->density_hist[0]++;
            continue;
        }
        if (dens > 0.1) r->dense_latents++;
        int b = (int)floor(log10(dens)) + 9;
        r->density_hist[b < 1 ? 1 : b > 8 ? 8 : b]++;
    }
done:
    cterp_windows_close(w);
    free(tok), free(mask), free(lp), free(lg), free(ce), free(kl);
    free(sp.f), free(sp.xhat), free(sp.sum_x), free(sp.fired), free(sp.seen), free(sp.xin);
    return st;
}

void cterp_eval_print(const cterp_eval_result *r, FILE *f, int json) {
    struct {
        const char *name;
        double v;
        int is_int;
    } rows[] = {
        {"n_windows", (double)r->n_windows, 1},
        {"n_tokens", (double)r->n_tokens, 1},
        {"explained_variance", r->explained_variance, 0},
        {"mse", r->mse, 0},
        {"l0", r->l0, 0},
        {"l1", r->l1, 0},
        {"l2_ratio", r->l2_ratio, 0},
        {"cossim", r->cossim, 0},
        {"ce_loss_without_sae", r->ce_loss_without_sae, 0},
        {"ce_loss_with_sae", r->ce_loss_with_sae, 0},
        {"ce_loss_with_ablation", r->ce_loss_with_ablation, 0},
        {"ce_loss_score", r->ce_loss_score, 0},
        {"kl_div_with_sae", r->kl_div_with_sae, 0},
        {"kl_div_with_ablation", r->kl_div_with_ablation, 0},
        {"kl_div_score", r->kl_div_score, 0},
        {"d_sae", (double)r->d_sae, 1},
        {"dead_latents", (double)r->dead_latents, 1},
        {"dense_latents", (double)r->dense_latents, 1},
    };
    size_t n = sizeof rows / sizeof rows[0];
    if (json) fprintf(f, "{");
    for (size_t i = 0; i < n; i++) {
        if (json) {
            if (rows[i].is_int) fprintf(f, "\"%s\": %.0f, ", rows[i].name, rows[i].v);
            else if (isfinite(rows[i].v)) fprintf(f, "\"%s\": %.9g, ", rows[i].name, rows[i].v);
            else fprintf(f, "\"%s\": null, ", rows[i].name);
        } else if (rows[i].is_int) {
            fprintf(f, "%s: %.0f\n", rows[i].name, rows[i].v);
        } else {
            fprintf(f, "%s: %.6g\n", rows[i].name, rows[i].v);
        }
    }
    if (json) fprintf(f, "\"density_histogram\": [");
    else fprintf(f, "density_histogram (dead, <1e-7, >=1e-7, >=1e-6, >=1e-5, >=1e-4, >=1e-3, >=1e-2, >=1e-1):");
    for (int i = 0; i < CTERP_EVAL_HIST_BINS; i++)
        fprintf(f, json ? "%s%lld" : "%s%lld", json ? (i ? ", " : "") : " ", (long long)r->density_hist[i]);
    fprintf(f, json ? "]}\n" : "\n");
}

// ---- SAEBench core output ------------------------------------------------------------------

static void sb_str(FILE *o, const char *s) {
    fputc('"', o);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', o), fputc(*p, o);
        else if (*p < 0x20)
            fprintf(o, "\\u%04x", *p);
        else
            fputc(*p, o);
    }
    fputc('"', o);
}

// A number; NaN and infinities as -1, as SAEBench's replace_nans_with_negative_one writes NaN.
static void sb_num(FILE *o, const char *key, double v, int last) {
    fprintf(o, "\"%s\": ", key);
    if (isfinite(v))
        fprintf(o, "%.17g", v);
    else
        fputs("-1", o);
    fputs(last ? "" : ", ", o);
}

// A random version-4 UUID (SAEBench's eval_id), from /dev/urandom or, failing that, the clock.
static void sb_uuid(char out[37]) {
    unsigned char b[16];
    FILE *u = fopen("/dev/urandom", "rb");
    size_t got = u ? fread(b, 1, 16, u) : 0;
    if (u) fclose(u);
    if (got != 16) {
        uint64_t z = (uint64_t)(time_now() * 1e9);
        for (int k = 0; k < 16; k++) {
            z = z * 6364136223846793005ULL + 1442695040888963407ULL;
            b[k] = (unsigned char)(z >> 56);
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40), b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    int n = 0;
    for (int k = 0; k < 16; k++) {
        n += snprintf(out + n, (size_t)(37 - n), "%02x", b[k]);
        if (k == 3 || k == 5 || k == 7 || k == 9) out[n++] = '-';
    }
    out[36] = 0;
}

cterp_status cterp_eval_saebench_write(const char *path, const cterp_sae *sae,
                                       const cterp_eval_config *c, const cterp_eval_result *r,
                                       const int64_t *fired, const int64_t *windows_fired,
                                       const char *model_name, const char *dataset) {
    const int64_t N = sae->d_sae, D = sae->d_in;
    if (cterp_sae_is_transcoder(sae)) // SAEBench's core eval has no transcoder form
        return cterp_error(CTERP_EINVAL, "saebench: a %s has no SAEBench core output (its decoder "
                           "writes another activation); run eval without --saebench",
                           cterp_arch_name(sae->arch));
    if (!fired || !windows_fired)
        return cterp_error(CTERP_EINVAL,
                           "saebench: the per-latent counts are missing (set fired and "
                           "windows_fired in the eval config)");
    if (r->d_sae != N || r->n_tokens < 1)
        return cterp_error(CTERP_EINVAL,
                           "saebench: the eval result is not of this SAE (d_sae %lld "
                           "vs %lld) or has no tokens",
                           (long long)r->d_sae, (long long)N);
    // max cosine of every encoder and decoder row with any other row (SAEBench's
    // calculate_max_cosine_sim), through the neighbour search with k = 1
    int32_t *ids = malloc((size_t)N * 2 * sizeof(int32_t));
    float *mx = malloc((size_t)N * 2 * sizeof(float));
    cterp_status st = ids && mx ? CTERP_OK : cterp_error(CTERP_ENOMEM, "saebench: out of memory");
    if (!st && N > 1) st = cterp_decoder_neighbours(sae->W_enc, N, D, 1, ids, mx);
    if (!st && N > 1) st = cterp_decoder_neighbours(sae->W_dec, N, D, 1, ids + N, mx + N);
    if (!st && N == 1) mx[0] = mx[1] = NAN;
    file_atomic w;
    if (!st) st = file_atomic_open(&w, path);
    if (st) {
        free(ids), free(mx);
        return st;
    }
    FILE *o = w.fp;
    const double n = (double)r->n_tokens;
    double dens_sum = 0, dens1 = 0, dens10 = 0, over1 = 0, over10 = 0, alive = 0, enc_avg = 0,
           dec_avg = 0;
    for (int64_t i = 0; i < N; i++) {
        double d = (double)fired[i] / n;
        dens_sum += d, alive += fired[i] > 0;
        if (d > 0.01) over1 += 1, dens1 += d;
        if (d > 0.1) over10 += 1, dens10 += d;
        enc_avg += mx[i], dec_avg += mx[N + i];
    }
    char uuid[37];
    sb_uuid(uuid);
    const int64_t nb = (r->n_windows + c->batch - 1) / c->batch;
    fputs("{\n\"eval_type_id\": \"core\",\n\"eval_config\": {\"model_name\": ", o);
    sb_str(o, model_name ? model_name : "");
    fprintf(o,
            ", \"llm_dtype\": \"float32\", \"batch_size_prompts\": %d, "
            "\"n_eval_reconstruction_batches\": %lld, \"n_eval_sparsity_variance_batches\": %lld, "
            "\"dataset\": ",
            c->batch, (long long)nb, (long long)nb);
    sb_str(o, dataset ? dataset : "");
    fprintf(o,
            ", \"context_size\": %d, \"compute_kl\": true, \"compute_ce_loss\": true, "
            "\"compute_l2_norms\": true, \"compute_sparsity_metrics\": true, "
            "\"compute_variance_metrics\": true, \"compute_featurewise_density_statistics\": "
            "true, \"compute_featurewise_weight_based_metrics\": true, "
            "\"exclude_special_tokens_from_reconstruction\": true, \"verbose\": false},\n",
            c->windows.context_size);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fprintf(o, "\"eval_id\": \"%s\",\n\"datetime_epoch_millis\": %lld,\n", uuid,
            (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    fputs("\"eval_result_metrics\": {\n\"model_behavior_preservation\": {", o);
    sb_num(o, "kl_div_score", r->kl_div_score, 0);
    sb_num(o, "kl_div_with_ablation", r->kl_div_with_ablation, 0);
    sb_num(o, "kl_div_with_sae", r->kl_div_with_sae, 1);
    fputs("},\n\"model_performance_preservation\": {", o);
    sb_num(o, "ce_loss_score", r->ce_loss_score, 0);
    sb_num(o, "ce_loss_with_ablation", r->ce_loss_with_ablation, 0);
    sb_num(o, "ce_loss_with_sae", r->ce_loss_with_sae, 0);
    sb_num(o, "ce_loss_without_sae", r->ce_loss_without_sae, 1);
    fputs("},\n\"reconstruction_quality\": {", o);
    sb_num(o, "explained_variance", r->explained_variance, 0);
    sb_num(o, "mse", r->mse, 0);
    sb_num(o, "cossim", r->cossim, 1);
    fputs("},\n\"shrinkage\": {", o);
    sb_num(o, "l2_norm_in", r->l2_norm_in, 0);
    sb_num(o, "l2_norm_out", r->l2_norm_out, 0);
    sb_num(o, "l2_ratio", r->l2_ratio, 0);
    sb_num(o, "relative_reconstruction_bias", r->relative_reconstruction_bias, 1);
    fputs("},\n\"sparsity\": {", o);
    sb_num(o, "l0", r->l0, 0);
    sb_num(o, "l1", r->l1, 1);
    fprintf(o,
            "},\n\"token_stats\": {\"total_tokens_eval_reconstruction\": %lld, "
            "\"total_tokens_eval_sparsity_variance\": %lld},\n\"misc_metrics\": {",
            (long long)r->n_ce_tokens, (long long)r->n_tokens);
    sb_num(o, "freq_over_1_percent", over1 / (double)N, 0);
    sb_num(o, "freq_over_10_percent", over10 / (double)N, 0);
    sb_num(o, "normalized_freq_over_1_percent", dens_sum > 0 ? dens1 / dens_sum : 0, 0);
    sb_num(o, "normalized_freq_over_10_percent", dens_sum > 0 ? dens10 / dens_sum : 0, 0);
    sb_num(o, "average_max_encoder_cosine_sim", enc_avg / (double)N, 0);
    sb_num(o, "average_max_decoder_cosine_sim", dec_avg / (double)N, 0);
    sb_num(o, "frac_alive", alive / (double)N, 1);
    fputs("}},\n\"eval_result_details\": [\n", o);
    for (int64_t i = 0; i < N; i++) {
        const float *we = sae->W_enc + i * D, *wd = sae->W_dec + i * D;
        double ee = 0, dd = 0, ed = 0;
        for (int64_t d = 0; d < D; d++)
            ee += (double)we[d] * we[d], dd += (double)wd[d] * wd[d], ed += (double)we[d] * wd[d];
        fprintf(o, "%s{\"index\": %lld, ", i ? ",\n" : "", (long long)i);
        sb_num(o, "feature_density", (double)fired[i] / n, 0);
        sb_num(o, "consistent_activation_heuristic",
               windows_fired[i] ? (double)fired[i] / (double)windows_fired[i] : NAN, 0);
        sb_num(o, "encoder_bias", sae->b_enc[i], 0);
        sb_num(o, "encoder_norm", sqrt(ee), 0);
        sb_num(o, "encoder_decoder_cosine_sim", ee > 0 && dd > 0 ? ed / sqrt(ee * dd) : NAN, 0);
        sb_num(o, "max_decoder_cosine_sim", mx[N + i], 0);
        sb_num(o, "max_encoder_cosine_sim", mx[i], 1);
        fputc('}', o);
    }
    fputs("\n],\n\"sae_bench_commit_hash\": \"unknown\",\n\"sae_lens_id\": null,\n"
          "\"sae_lens_release_id\": null,\n\"sae_lens_version\": null,\n\"sae_cfg_dict\": {",
          o);
    fprintf(o, "\"architecture\": \"%s\", \"d_in\": %lld, \"d_sae\": %lld, ",
            cterp_arch_name(sae->arch), (long long)D, (long long)N);
    if (sae->arch == CTERP_ARCH_TOPK) fprintf(o, "\"k\": %d, ", sae->k);
    fputs("\"dtype\": \"float32\", \"hook_name\": ", o);
    sb_str(o, c->hook ? c->hook : sae->meta.hook_name);
    fputs(", \"model_name\": ", o);
    sb_str(o, model_name ? model_name : sae->meta.model_name);
    fprintf(o, ", \"context_size\": %d},\n\"eval_result_unstructured\": {\"cterp\": {",
            c->windows.context_size);
    fprintf(o,
            "\"n_windows\": %lld, \"n_tokens\": %lld, \"n_ce_tokens\": %lld, \"dead_latents\": "
            "%lld, \"dense_latents\": %lld, ",
            (long long)r->n_windows, (long long)r->n_tokens, (long long)r->n_ce_tokens,
            (long long)r->dead_latents, (long long)r->dense_latents);
    fputs("\"density_histogram\": {\"bins\": [\"dead\", \"<1e-7\", \"[1e-7,1e-6)\", "
          "\"[1e-6,1e-5)\", \"[1e-5,1e-4)\", \"[1e-4,1e-3)\", \"[1e-3,1e-2)\", \"[1e-2,1e-1)\", "
          "\">=1e-1\"], \"counts\": [",
          o);
    for (int b = 0; b < CTERP_EVAL_HIST_BINS; b++)
        fprintf(o, b ? ", %lld" : "%lld", (long long)r->density_hist[b]);
    fputs("]}}}\n}\n", o);
    free(ids), free(mx);
    if (ferror(o)) w.failed = 1;
    return file_atomic_commit(&w);
}

// ---- crosscoders: each layer spliced in on its own ------------------------------------------

typedef struct {
    float *x;          // (R, W) the layers' rows side by side, or the reconstruction to write
    const uint8_t *mask;
    int64_t W, D, off; // row width, layer width, this layer's offset in a row
    int write, ablate; // capture (0) or replace (1: x_hat, or zeros when ablate)
} xc_hook;

static cterp_status xc_hook_fn(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    xc_hook *h = user;
    int64_t width = 1;
    for (int i = 2; i < ndim; i++) width *= shape[i];
    if (width != h->D)
        return cterp_error(CTERP_EINVAL, "eval: hook %s has width %lld, the crosscoder's layers %lld", name,
                           (long long)width, (long long)h->D);
    const int64_t R = shape[0] * shape[1];
    for (int64_t r = 0; r < R; r++) {
        float *a = act + r * h->D, *x = h->x + r * h->W + h->off;
        if (!h->write) memcpy(x, a, (size_t)h->D * sizeof(float));
        else if (!h->mask[r]) // special positions keep their activation, as cterp_eval
            h->ablate ? memset(a, 0, (size_t)h->D * sizeof(float)) : memcpy(a, x, (size_t)h->D * sizeof(float));
    }
    return CTERP_OK;
}

cterp_status cterp_eval_crosscoder(cterp_model *m, const cterp_sae *sae, const char *dataset,
                                   const cterp_eval_config *c, double *ce_clean, double *ev,
                                   double *ce_spliced, double *ce_ablated) {
    cterp_eval_config cd;
    if (!c) cterp_eval_config_default(&cd), c = &cd;
    if (sae->arch != CTERP_ARCH_CROSSCODER || sae->n_layers < 2 || sae->n_layers > 64)
        return cterp_error(CTERP_EINVAL, "eval: cterp_eval_crosscoder takes a crosscoder of 2..64 layers (got %s, "
                           "%lld layers)", cterp_arch_name(sae->arch), (long long)sae->n_layers);
    if (c->batch < 1 || c->n_windows < 1)
        return cterp_error(CTERP_EINVAL, "eval: batch and n_windows must be >= 1 (got %d, %lld)", c->batch,
                           (long long)c->n_windows);
    const int L = (int)sae->n_layers;
    char names[64][256];
    {
        const char *p = sae->meta.hook_name;
        int k = 0;
        for (; k < L && *p; k++) {
            size_t n = strcspn(p, ",");
            if (n == 0 || n >= sizeof names[0]) break;
            memcpy(names[k], p, n), names[k][n] = 0;
            p += n + (p[n] == ',');
        }
        if (k != L || *p)
            return cterp_error(CTERP_EINVAL, "eval: the crosscoder's hook_name \"%s\" is not %d hooks separated by "
                               "commas", sae->meta.hook_name, L);
    }
    int layer, dim;
    for (int l = 0; l < L; l++) {
        cterp_status st = cterp_model_hook_info(m, names[l], &layer, &dim);
        if (st) return st;
    }
    const cterp_model_config *mc = cterp_model_config_of(m);
    const int64_t T = c->windows.context_size, V = mc->n_vocab, W = sae->d_in, D = W / L;
    const int64_t Bm = c->batch, P = Bm * T;
    cterp_windows *w = NULL;
    cterp_status st = cterp_windows_open(&w, dataset, &c->data, cterp_model_tokenizer(m), &c->windows);
    if (st) return st;
    int32_t *tok = malloc((size_t)P * sizeof *tok);
    uint8_t *mask = malloc((size_t)P);
    float *lp = malloc((size_t)(P * V) * sizeof(float)), *lg = malloc((size_t)(P * V) * sizeof(float));
    float *x = malloc((size_t)(P * W) * sizeof(float)), *y = malloc((size_t)(P * W) * sizeof(float));
    double *ce = malloc((size_t)P * sizeof(double)), *kl = malloc((size_t)P * sizeof(double));
    double *sum = calloc((size_t)W, sizeof(double)), sse[64] = {0}, sq[64] = {0}, cs[64] = {0}, ca[64] = {0};
    double ce0 = 0;
    int64_t n = 0, nc = 0, nw = 0;
    xc_hook hk[64];
    cterp_hook hooks[64];
    if (!tok || !mask || !lp || !lg || !x || !y || !ce || !kl || !sum) {
        st = cterp_error(CTERP_ENOMEM, "eval: out of memory (batch %lld x %lld positions, vocab %lld)",
                         (long long)Bm, (long long)T, (long long)V);
        goto done;
    }
    for (int l = 0; l < L; l++) {
        hk[l] = (xc_hook){x, mask, W, D, (int64_t)l * D, 0, 0};
        hooks[l] = (cterp_hook){names[l], xc_hook_fn, &hk[l]};
    }
    while (nw < c->n_windows) {
        int64_t B = 0;
        int eof = 0;
        while (B < Bm && nw + B < c->n_windows) {
            if ((st = cterp_windows_next(w, tok + B * T, mask + B * T, &eof))) goto done;
            if (eof) break;
            B++;
        }
        if (B == 0) break;
        for (int l = 0; l < L; l++) hk[l].x = x, hk[l].write = 0;
        cterp_forward_opts o = {hooks, L, 0, lp, 0}; // clean logits, every layer's rows captured
        if ((st = cterp_model_forward(m, tok, (int)B, (int)T, &o))) goto done;
        log_softmax(lp, B * T, V);
        for (int64_t q = 0; q < B * T; q++)
            if (!mask[q] && q % T < T - 1) ce0 += -(double)lp[q * V + tok[q + 1]], nc++;
        if ((st = cterp_sae_forward(sae, x, B * T, y))) goto done;
        for (int64_t r = 0; r < B * T; r++) {
            if (mask[r]) continue;
            n++;
            for (int64_t q = 0; q < W; q++) {
                const double v = x[r * W + q], e = v - y[r * W + q];
                sse[q / D] += e * e, sq[q / D] += v * v, sum[q] += v;
            }
        }
        for (int l = 0; l < L; l++) // layer l alone: its reconstruction, then zeros
            for (int ablate = 0; ablate < 2; ablate++) {
                hk[l].x = y, hk[l].write = 1, hk[l].ablate = ablate;
                cterp_forward_opts oh = {hooks + l, 1, 0, lg, 0};
                if ((st = cterp_model_forward(m, tok, (int)B, (int)T, &oh))) goto done;
                ce_kl(lp, lg, tok, B, T, V, ce, kl);
                for (int64_t q = 0; q < B * T; q++)
                    if (!mask[q] && q % T < T - 1) (ablate ? ca : cs)[l] += ce[q];
            }
        nw += B;
        if (eof) break;
    }
    if (n == 0 || nc == 0) {
        st = cterp_error(CTERP_EFORMAT, "eval: %s has no complete window of %lld tokens with a non-special "
                         "position", dataset, (long long)T);
        goto done;
    }
    *ce_clean = ce0 / (double)nc;
    for (int l = 0; l < L; l++) {
        double var = sq[l];
        for (int64_t q = (int64_t)l * D; q < (int64_t)(l + 1) * D; q++) var -= sum[q] * sum[q] / (double)n;
        ev[l] = var > 0 ? 1.0 - sse[l] / var : NAN;
        ce_spliced[l] = cs[l] / (double)nc, ce_ablated[l] = ca[l] / (double)nc;
    }
done:
    cterp_windows_close(w);
    free(tok), free(mask), free(lp), free(lg), free(x), free(y), free(ce), free(kl), free(sum);
    return st;
}
