// Eval of an SAE spliced into its model: reconstruction (explained variance, MSE, L2 ratio,
// cosine), sparsity (L0, L1, feature density), and what the model loses when the activation
// is replaced by the reconstruction (CE loss and KL against the clean run, scored against
// zero ablation), as SAELens's run_evals defines them (reference/saelens.md section 3).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cterp/analysis.h"

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
    int64_t D, N;
    float *f, *xhat; // (B*T, N), (B*T, D)
    // accumulators (f64, summed in row order)
    double sse, sum_x2, l0, l1, l2_ratio, cossim;
    double *sum_x;     // (D)
    int64_t *fired;    // (N) tokens with f_i > 0
    int64_t n;
} splice;

static cterp_status splice_hook(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    splice *s = user;
    const int64_t R = shape[0] * shape[1], D = s->D, N = s->N;
    int64_t width = 1; // [B, T, ...]: a row is everything after the position ([B,T,H,hd] -> H*hd)
    for (int i = 2; i < ndim; i++) width *= shape[i];
    if (width != D)
        return cterp_error(CTERP_EINVAL, "eval: hook %s has width %lld, the SAE's d_in is %lld", name,
                           (long long)width, (long long)D);
    if (s->ablate) { // zero ablation of the eval positions
        for (int64_t r = 0; r < R; r++)
            if (!s->mask[r]) memset(act + r * D, 0, (size_t)D * sizeof(float));
        return CTERP_OK;
    }
    cterp_status st = cterp_sae_encode(s->sae, act, R, s->f);
    if (!st) st = cterp_sae_decode(s->sae, s->f, R, s->xhat);
    if (st) return st;
    for (int64_t r = 0; r < R; r++) {
        if (s->mask[r]) continue; // special positions keep their activation (SAELens masks them)
        const float *x = act + r * D, *y = s->xhat + r * D, *f = s->f + r * N;
        double e = 0, xx = 0, yy = 0, xy = 0;
        for (int64_t d = 0; d < D; d++) {
            double dx = (double)x[d] - y[d];
            e += dx * dx, xx += (double)x[d] * x[d], yy += (double)y[d] * y[d], xy += (double)x[d] * y[d];
            s->sum_x[d] += x[d];
        }
        s->sse += e, s->sum_x2 += xx;
        s->l2_ratio += sqrt(xx) < 1e-4 ? 1.0 : sqrt(yy) / sqrt(xx);
        s->cossim += xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0.0;
        for (int64_t i = 0; i < N; i++)
            if (f[i] > 0) s->l0 += 1, s->l1 += f[i], s->fired[i]++;
        s->n++;
        memcpy(act + r * D, y, (size_t)D * sizeof(float));
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
    if (cterp_sae_is_transcoder(sae)) // its output belongs at another hook (the MLP's)
        return cterp_error(CTERP_EINVAL, "eval: a %s is not supported (splicing it in place of the MLP "
                           "is not implemented)", cterp_arch_name(sae->arch));
    cterp_eval_config cd;
    if (!c) cterp_eval_config_default(&cd), c = &cd;
    const char *hook = c->hook ? c->hook : sae->meta.hook_name;
    if (!hook || !*hook)
        return cterp_error(CTERP_EINVAL, "eval: no hook (the SAE's metadata has no hook_name; give one)");
    if (c->batch < 1 || c->n_windows < 1)
        return cterp_error(CTERP_EINVAL, "eval: batch and n_windows must be >= 1 (got %d, %lld)", c->batch,
                           (long long)c->n_windows);
    int layer, dim;
    cterp_status st = cterp_model_hook_info(m, hook, &layer, &dim);
    if (st) return st;
    const cterp_model_config *mc = cterp_model_config_of(m);
    const int64_t T = c->windows.context_size, V = mc->n_vocab, D = sae->d_in, N = sae->d_sae;
    const int64_t Bm = c->batch, P = Bm * T;
    cterp_windows *w = NULL;
    if ((st = cterp_windows_open(&w, dataset, &c->data, cterp_model_tokenizer(m), &c->windows))) return st;
    splice sp = {sae, NULL, 0, D, N, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL, NULL, 0};
    int32_t *tok = malloc((size_t)P * sizeof *tok);
    uint8_t *mask = malloc((size_t)P);
    float *lp = malloc((size_t)(P * V) * sizeof(float)), *lg = malloc((size_t)(P * V) * sizeof(float));
    double *ce = malloc((size_t)P * sizeof(double)), *kl = malloc((size_t)P * sizeof(double));
    sp.f = malloc((size_t)(P * N) * sizeof(float));
    sp.xhat = malloc((size_t)(P * D) * sizeof(float));
    sp.sum_x = calloc((size_t)D, sizeof(double));
    sp.fired = calloc((size_t)N, sizeof(int64_t));
    sp.mask = mask;
    double ce0 = 0, ce_sae = 0, ce_abl = 0, kl_sae = 0, kl_abl = 0;
    if (!tok || !mask || !lp || !lg || !ce || !kl || !sp.f || !sp.xhat || !sp.sum_x || !sp.fired) {
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
            cterp_hook h = {hook, splice_hook, &sp};
            cterp_forward_opts oh = {&h, 1, 0, lg, 0};
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
    for (int64_t d = 0; d < D; d++) mean2 += (sp.sum_x[d] / n) * (sp.sum_x[d] / n);
    double var = sp.sum_x2 - n * mean2; // sum ||x - mean||^2
    r->n_tokens = sp.n;
    r->explained_variance = var > 0 ? 1.0 - sp.sse / var : NAN;
    r->mse = sp.sse / n;
    r->l0 = sp.l0 / n, r->l1 = sp.l1 / n;
    r->l2_ratio = sp.l2_ratio / n, r->cossim = sp.cossim / n;
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
    free(sp.f), free(sp.xhat), free(sp.sum_x), free(sp.fired);
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
