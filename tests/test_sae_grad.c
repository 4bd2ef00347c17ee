// Backward passes against finite differences (every architecture, AuxK, ghost grads), the
// jumprelu threshold's straight-through gradient against its formula, and the sparse training
// forward against its naive dense twin.
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "cterp/sae.h"
#include "sae/arch.h"
#include "sae/kernels.h"
#include "test.h"
#include "train/revive.h"

enum { B = 7, D = 6, N = 12 };

static void random_sae(cterp_sae *s, rng_t *r) {
    for (size_t q = 0; q < s->n_params; q++) s->params[q] = 0.5f * rng_normal(r);
    for (int i = 0; i < N; i++) s->b_enc[i] = 0.1f * rng_normal(r);
    for (int d = 0; d < D; d++) s->b_dec[d] = 0.1f * rng_normal(r);
}

static double loss_of(arch_work *w, const cterp_sae *s, const arch_opts *o, const float *theta,
                      const float *x) {
    arch_forward(w, s, o, theta, x);
    return w->mse_loss + w->sparsity_loss;
}

// the active set (pairs) as a signature to detect selection changes
static uint64_t pairs_sig(const arch_work *w) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)w->nnz;
    for (int64_t p = 0; p < w->nnz; p++) h = (h ^ (uint64_t)(w->lat[p] * 131 + w->tok[p])) * 1099511628211ULL;
    return h;
}

static void check_arch(cterp_arch arch, int rescale, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    cterp_sae *s;
    cterp_sae_create(&s, arch, D, N, 3);
    random_sae(s, &r);
    float x[B * D], theta[N];
    for (int q = 0; q < B * D; q++) x[q] = rng_normal(&r);
    for (int i = 0; i < N; i++) theta[i] = 0.2f + 0.3f * rng_uniform(&r);
    arch_opts o = {arch, 3, rescale, 0.7f, 0.3f, NULL, 0};
    arch_work w;
    arch_work_init(&w, B, D, N);

    // sparse forward vs naive dense twin
    float fn[B * N];
    arch_forward_naive(fn, s, &o, theta, x, B);
    loss_of(&w, s, &o, theta, x);
    float fs[B * N];
    memset(fs, 0, sizeof fs);
    for (int64_t p = 0; p < w.nnz; p++) fs[w.tok[p] * N + w.lat[p]] = w.f[p];
    double maxdiff = 0;
    for (int q = 0; q < B * N; q++) maxdiff = fmax(maxdiff, fabs(fs[q] - fn[q]));
    CHECK_MSG(maxdiff < 1e-4, "%s: forward differs from naive by %g", cterp_arch_name(arch), maxdiff);
    if (arch == CTERP_ARCH_TOPK) CHECK(w.nnz <= B * 3);
    if (arch == CTERP_ARCH_BATCHTOPK) CHECK(w.nnz <= B * 3);

    float grads[2 * N * D + N + D], dtheta[N];
    memset(grads, 0, sizeof grads);
    memset(dtheta, 0, sizeof dtheta);
    loss_of(&w, s, &o, theta, x);
    uint64_t sig0 = pairs_sig(&w);
    arch_backward(&w, s, &o, theta, x, grads, dtheta);
    arch_bdec_from_benc(s, grads + N * D, grads + 2 * N * D + N);

    const float eps = 1e-3f;
    int checked = 0, bad = 0;
    size_t ntrain = 2 * N * D + N + D;
    for (size_t q = 0; q < ntrain; q++) {
        float save = s->params[q];
        s->params[q] = save + eps;
        double lp = loss_of(&w, s, &o, theta, x);
        uint64_t sp = pairs_sig(&w);
        s->params[q] = save - eps;
        double lm = loss_of(&w, s, &o, theta, x);
        uint64_t sm = pairs_sig(&w);
        s->params[q] = save;
        if (sp != sig0 || sm != sig0) continue; // selection changed: not differentiable here
        double fd = (lp - lm) / (2 * eps);
        checked++;
        if (fabs(fd - grads[q]) > 2e-3 + 2e-2 * fabs(fd)) {
            if (bad++ < 5)
                fprintf(stderr, "  %s param %zu: fd %.6g analytic %.6g\n", cterp_arch_name(arch), q, fd,
                        grads[q]);
        }
    }
    CHECK_MSG(bad == 0, "%s (rescale %d): %d of %d gradients differ from finite differences",
              cterp_arch_name(arch), rescale, bad, checked);
    CHECK_MSG(checked > (int)ntrain / 2, "%s: only %d of %zu coordinates checkable", cterp_arch_name(arch),
              checked, ntrain);

    if (arch == CTERP_ARCH_JUMPRELU) { // STE threshold gradient against its formula, naively
        loss_of(&w, s, &o, theta, x);
        int tbad = 0, inband = 0;
        for (int i = 0; i < N; i++) {
            double want = 0;
            for (int t = 0; t < B; t++) {
                double z = s->b_enc[i], ga = 0;
                for (int d = 0; d < D; d++) z += (double)s->W_enc[i * D + d] * (x[t * D + d] - s->b_dec[d]);
                if (!(fabs(z - theta[i]) < 0.5 * o.bandwidth)) continue;
                inband++;
                for (int d = 0; d < D; d++) ga += 2.0 / B * (w.xhat[t * D + d] - x[t * D + d]) * s->W_dec[i * D + d];
                want += -(theta[i] / o.bandwidth) * ga - o.coef / B / o.bandwidth;
            }
            if (fabs(want - dtheta[i]) > 1e-4 + 1e-3 * fabs(want)) tbad++;
        }
        CHECK_MSG(tbad == 0, "jumprelu: %d threshold gradients differ from the STE formula", tbad);
        CHECK_MSG(inband > 0, "jumprelu: no pre-activation inside the band; the test is vacuous");
    }
    arch_work_free(&w);
    cterp_sae_free(s);
}

// --- AuxK: loss with the residual held fixed, computed naively ---
static double auxk_naive(const cterp_sae *s, const float *x, const float *e, const uint8_t *dead,
                         int nd, int kaux, float coef, int rescale) {
    int kk = kaux < nd ? kaux : nd;
    double scale = fmin(1.0, (double)nd / kaux), sum = 0;
    for (int t = 0; t < B; t++) {
        double z[N], h[N], ehat[D] = {0};
        int used[N] = {0};
        for (int i = 0; i < N; i++) {
            z[i] = s->b_enc[i];
            double n2 = 0;
            for (int d = 0; d < D; d++) {
                z[i] += (double)s->W_enc[i * D + d] * (x[t * D + d] - s->b_dec[d]);
                n2 += (double)s->W_dec[i * D + d] * s->W_dec[i * D + d];
            }
            h[i] = rescale ? z[i] * sqrt(n2) : z[i];
        }
        for (int j = 0; j < kk; j++) {
            int best = -1;
            for (int i = 0; i < N; i++)
                if (dead[i] && !used[i] && (best < 0 || h[i] > h[best])) best = i;
            used[best] = 1;
            for (int d = 0; d < D; d++) ehat[d] += z[best] * s->W_dec[best * D + d];
        }
        for (int d = 0; d < D; d++) sum += (ehat[d] - e[t * D + d]) * (ehat[d] - e[t * D + d]);
    }
    return coef * scale * sum / B;
}

// --- ghost grads: loss with r, the per-token scale and the ratio c held fixed ---
static void ghost_g(const cterp_sae *s, const float *x, const uint8_t *dead, double *g) {
    for (int t = 0; t < B; t++) {
        for (int d = 0; d < D; d++) g[t * D + d] = 0;
        for (int i = 0; i < N; i++) {
            if (!dead[i]) continue;
            double z = s->b_enc[i];
            for (int d = 0; d < D; d++) z += (double)s->W_enc[i * D + d] * (x[t * D + d] - s->b_dec[d]);
            for (int d = 0; d < D; d++) g[t * D + d] += exp(z) * s->W_dec[i * D + d];
        }
    }
}

static double ghost_naive(const cterp_sae *s, const float *x, const float *r, const double *sc,
                          const double *c, const uint8_t *dead) {
    double g[B * D], sum = 0;
    ghost_g(s, x, dead, g);
    for (int t = 0; t < B; t++)
        for (int d = 0; d < D; d++) {
            double diff = g[t * D + d] * sc[t] - r[t * D + d];
            sum += c[t * D + d] * diff * diff;
        }
    return sum / (B * D);
}

static void check_revive(int ghost, int rescale, int mode) {
    rng_t r;
    rng_seed(&r, 7 + ghost);
    cterp_sae *s;
    cterp_sae_create(&s, CTERP_ARCH_TOPK, D, N, 3);
    random_sae(s, &r);
    float x[B * D];
    for (int q = 0; q < B * D; q++) x[q] = rng_normal(&r);
    uint8_t dead[N] = {0};
    int nd = 0;
    for (int i = 0; i < N; i += 2) dead[i] = 1, nd++;
    arch_opts o = {CTERP_ARCH_TOPK, 3, rescale, 0, 0.1f, NULL, 0};
    arch_work w;
    arch_work_init(&w, B, D, N);
    arch_forward(&w, s, &o, NULL, x);
    { // the dead latents' pre-activations copied by the forward give the same bits as gathering
        int32_t list[N];
        for (int i = 0, j = 0; i < N; i++)
            if (dead[i]) list[j++] = i;
        arch_opts os = o;
        os.sub = list, os.n_sub = nd;
        arch_work ws;
        arch_work_init(&ws, B, D, N);
        arch_forward(&ws, s, &os, NULL, x);
        float ga[2 * N * D + N + D], gb[2 * N * D + N + D];
        memset(ga, 0, sizeof ga), memset(gb, 0, sizeof gb);
        double la = ghost ? revive_ghost(&w, s, x, dead, nd, ga) : revive_auxk(&w, s, x, dead, nd, 3, 0.5f, rescale, ga, mode);
        double lb = ghost ? revive_ghost(&ws, s, x, dead, nd, gb) : revive_auxk(&ws, s, x, dead, nd, 3, 0.5f, rescale, gb, mode);
        CHECK_MSG(ws.n_sub == nd && la == lb && !memcmp(ga, gb, sizeof ga),
                  "%s mode %d: revival from the forward's copy differs from gathering", ghost ? "ghost" : "auxk", mode);
        arch_work_free(&ws);
    }
    float e[B * D];
    for (int q = 0; q < B * D; q++) e[q] = x[q] - w.xhat[q];
    float grads[2 * N * D + N + D];
    memset(grads, 0, sizeof grads);
    const int kaux = 3;
    const float coef = 0.5f;
    double sc[B], c[B * D], g0[B * D];
    double l_impl;
    if (ghost) {
        ghost_g(s, x, dead, g0);
        for (int t = 0; t < B; t++) {
            double rn = 0, gn = 0;
            for (int d = 0; d < D; d++) rn += (double)e[t * D + d] * e[t * D + d], gn += g0[t * D + d] * g0[t * D + d];
            sc[t] = sqrt(rn) / (1e-6 + 2 * sqrt(gn));
            for (int d = 0; d < D; d++) {
                double diff = g0[t * D + d] * sc[t] - e[t * D + d];
                c[t * D + d] = (double)e[t * D + d] * e[t * D + d] / (diff * diff + 1e-6);
            }
        }
        l_impl = revive_ghost(&w, s, x, dead, nd, grads);
        CHECK_CLOSE(l_impl, ghost_naive(s, x, e, sc, c, dead), 1e-5, 1e-3);
    } else {
        l_impl = revive_auxk(&w, s, x, dead, nd, kaux, coef, rescale, grads, mode);
        CHECK_CLOSE(l_impl, auxk_naive(s, x, e, dead, nd, kaux, coef, rescale), 1e-5, 1e-4);
    }
    arch_bdec_from_benc(s, grads + N * D, grads + 2 * N * D + N);
    const float eps = 1e-3f;
    int bad = 0, checked = 0;
    size_t ntrain = 2 * N * D + N + D;
    for (size_t q = 0; q < ntrain; q++) {
        float save = s->params[q];
        double lp, lm;
        s->params[q] = save + eps;
        lp = ghost ? ghost_naive(s, x, e, sc, c, dead) : auxk_naive(s, x, e, dead, nd, kaux, coef, rescale);
        s->params[q] = save - eps;
        lm = ghost ? ghost_naive(s, x, e, sc, c, dead) : auxk_naive(s, x, e, dead, nd, kaux, coef, rescale);
        s->params[q] = save;
        double fd = (lp - lm) / (2 * eps);
        checked++;
        if (fabs(fd - grads[q]) > 2e-3 + 2e-2 * fabs(fd)) {
            if (bad++ < 5) fprintf(stderr, "  %s param %zu: fd %.6g analytic %.6g\n", ghost ? "ghost" : "auxk", q, fd, grads[q]);
        }
    }
    CHECK_MSG(bad == 0, "%s (rescale %d, mode %d): %d of %d gradients differ from finite differences",
              ghost ? "ghost grads" : "auxk", rescale, mode, bad, checked);
    arch_work_free(&w);
    cterp_sae_free(s);
}

static void check_topk_kernel(void) {
    rng_t r;
    rng_seed(&r, 3);
    int bad = 0;
    // small rows (heap scan), then rows long enough for one and two levels of block maxima and
    // past the block path's limit (65536); many ties, then continuous values
    enum { MAXN = 70000 };
    float *z = malloc(MAXN * sizeof(float));
    for (int trial = 0; trial < 200; trial++) {
        int n = trial < 100 ? 1 + (int)rng_below(&r, 300) : 1 + (int)rng_below(&r, MAXN);
        int k = 1 + (int)rng_below(&r, 40);
        for (int i = 0; i < n; i++)
            z[i] = trial % 2 ? (float)((int)rng_below(&r, 21) - 8) / 4 : rng_normal(&r); // ties
        int32_t i1[40], i2[40];
        float v1[40], v2[40];
        int c1 = topk_row(i1, v1, z, n, k), c2 = topk_row_naive(i2, v2, z, n, k);
        if (c1 != c2 || memcmp(i1, i2, (size_t)c1 * 4) || memcmp(v1, v2, (size_t)c1 * 4)) bad++;
    }
    free(z);
    CHECK_MSG(bad == 0, "topk_row differs from its naive twin in %d of 200 trials", bad);
    // unsorted selection over all entries (negative ones too): the same set as a naive
    // repeated arg-max with ties by the lowest index, reported in index order
    bad = 0;
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + (int)rng_below(&r, 500), k = 1 + (int)rng_below(&r, 400);
        float z[500], scratch[500], v1[400];
        int32_t i1[400];
        char taken[500] = {0};
        for (int i = 0; i < n; i++) z[i] = (float)((int)rng_below(&r, 41) - 20) / 4;
        if (trial % 7 == 0) z[rng_below(&r, (uint64_t)n)] = NAN;
        int c1 = topk_select_unsorted(i1, v1, z, n, k, scratch), want = 0;
        for (int m = 0; m < k; m++) {
            int best = -1;
            for (int i = 0; i < n; i++)
                if (!taken[i] && z[i] == z[i] && (best < 0 || z[i] > z[best])) best = i;
            if (best < 0) break;
            taken[best] = 1, want++;
        }
        int ok = c1 == want;
        for (int j = 0; ok && j < c1; j++)
            ok = taken[i1[j]] && v1[j] == z[i1[j]] && (j == 0 || i1[j] > i1[j - 1]);
        bad += !ok;
    }
    CHECK_MSG(bad == 0, "topk_select_unsorted differs from its naive twin in %d of 300 trials", bad);
}

int main(void) {
    check_topk_kernel();
    check_arch(CTERP_ARCH_STANDARD, 0, 1);
    check_arch(CTERP_ARCH_TOPK, 0, 2);
    check_arch(CTERP_ARCH_TOPK, 1, 3);
    check_arch(CTERP_ARCH_BATCHTOPK, 1, 4);
    check_arch(CTERP_ARCH_JUMPRELU, 0, 5);
    check_revive(0, 0, 0);
    check_revive(0, 1, 0);
    check_revive(0, 0, 1);
    check_revive(0, 1, 1);
    check_revive(1, 0, -1);
    return test_done();
}
