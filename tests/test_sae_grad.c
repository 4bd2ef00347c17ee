// Backward passes against finite differences (every architecture, AuxK, ghost grads), the
// jumprelu threshold's straight-through gradient against its formula, and the sparse training
// forward against its naive dense twin.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "cterp/sae.h"
#include "sae/arch.h"
#include "sae/bf16.h"
#include "sae/kernels.h"
#include "test.h"
#include "train/revive.h"

enum { B = 7, D = 6, N = 12 };

static void random_sae(cterp_sae *s, rng_t *r) {
    for (size_t q = 0; q < s->n_params; q++) s->params[q] = 0.5f * rng_normal(r);
    for (int i = 0; i < N; i++) s->b_enc[i] = 0.1f * rng_normal(r);
    for (int64_t d = 0; d < s->d_out; d++) s->b_dec[d] = 0.1f * rng_normal(r); // d_out: transcoders
}

static double loss_of(arch_work *w, const cterp_sae *s, const arch_opts *o, const float *theta,
                      const float *x) {
    arch_forward(w, s, o, theta, x);
    return w->mse_loss + w->sparsity_loss + w->aux_loss;
}

// the active set (pairs, and which have a nonzero decode coefficient: gated's magnitude ReLU) as
// a signature to detect selection changes
static uint64_t pairs_sig(const arch_work *w) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)w->nnz;
    for (int64_t p = 0; p < w->nnz; p++)
        h = (h ^ (uint64_t)(w->lat[p] * 262 + w->tok[p] * 2 + (w->a[p] > 0))) * 1099511628211ULL;
    return h;
}

// The whole loss of matryoshka_batchtopk, gated and the transcoders computed densely and in f64
// from the naive forward's activations (SAELens's formulas): the sparse forward must give the
// same number.
static const int64_t matry_widths[3] = {3, 7, N};
enum { DT = 4 }; // the transcoders' d_out (their d_in is D)

static double naive_loss(const cterp_sae *s, const arch_opts *o, const float *x) {
    float f[B * N];
    arch_forward_naive(f, s, o, NULL, x, B);
    double z[B][N], nrm[N], loss = 0;
    if (s->arch == CTERP_ARCH_CROSSCODER) { // sum_l ||x_l - x_hat_l||^2 + coef sum_i f_i sum_l ||W_dec_i^l||
        const int L = (int)s->n_layers, DL = D / L;
        for (int t = 0; t < B; t++) {
            double sq = 0, l1 = 0, h[N];
            for (int i = 0; i < N; i++) { // no b_dec subtracted from the input
                h[i] = s->b_enc[i];
                for (int d = 0; d < D; d++) h[i] += (double)s->W_enc[i * D + d] * x[t * D + d];
                h[i] = h[i] > 0 ? h[i] : 0;
            }
            for (int d = 0; d < D; d++) {
                double r = s->b_dec[d] - x[t * D + d];
                for (int i = 0; i < N; i++) r += h[i] * s->W_dec[i * D + d];
                sq += r * r;
            }
            for (int i = 0; i < N; i++)
                for (int l = 0; l < L; l++) {
                    double n2 = 0;
                    for (int d = l * DL; d < (l + 1) * DL; d++) n2 += (double)s->W_dec[i * D + d] * s->W_dec[i * D + d];
                    l1 += h[i] * sqrt(n2);
                }
            loss += (sq + o->coef * l1) / B;
        }
        return loss;
    }
    if (cterp_sae_is_transcoder(s)) { // ||ReLU(x W_enc + b_enc) W_dec + b_dec + x W_skip^T - y||^2 + L1
        for (int t = 0; t < B; t++) {
            double sq = 0, l1 = 0;
            for (int e = 0; e < DT; e++) {
                double r = s->b_dec[e] - o->target[t * DT + e];
                for (int i = 0; i < N; i++) {
                    double h = s->b_enc[i];
                    for (int d = 0; d < D; d++) h += (double)s->W_enc[i * D + d] * x[t * D + d];
                    if (h > 0) r += h * s->W_dec[i * DT + e];
                }
                if (s->W_skip)
                    for (int d = 0; d < D; d++) r += (double)s->W_skip[e * D + d] * x[t * D + d];
                sq += r * r;
            }
            for (int i = 0; i < N; i++) {
                double n2 = 0;
                for (int e = 0; e < DT; e++) n2 += (double)s->W_dec[i * DT + e] * s->W_dec[i * DT + e];
                l1 += f[t * N + i] * sqrt(n2);
            }
            loss += (sq + o->coef * l1) / B;
        }
        return loss;
    }
    for (int i = 0; i < N; i++) {
        nrm[i] = 0;
        for (int d = 0; d < D; d++) nrm[i] += (double)s->W_dec[i * D + d] * s->W_dec[i * D + d];
        nrm[i] = sqrt(nrm[i]);
        for (int t = 0; t < B; t++) {
            z[t][i] = s->b_enc[i];
            for (int d = 0; d < D; d++) z[t][i] += (double)s->W_enc[i * D + d] * (x[t * D + d] - s->b_dec[d]);
        }
    }
    for (int t = 0; t < B; t++) {
        if (o->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK) { // every prefix, the last = the full SAE
            for (int j = 0; j < 3; j++) {
                double sq = 0;
                for (int d = 0; d < D; d++) {
                    double r = s->b_dec[d] - x[t * D + d];
                    for (int i = 0; i < matry_widths[j]; i++) // f = z n when rescaling: decode f / n
                        if (f[t * N + i] != 0) r += z[t][i] * s->W_dec[i * D + d];
                    sq += r * r;
                }
                loss += sq / B;
            }
        } else { // gated: mse + coef L1(ReLU(pi) n) + ||ReLU(pi) W_dec + b_dec - x||^2
            double sq = 0, sqa = 0, l1 = 0;
            for (int d = 0; d < D; d++) {
                double r = s->b_dec[d] - x[t * D + d], ra = r;
                for (int i = 0; i < N; i++) {
                    r += (double)f[t * N + i] * s->W_dec[i * D + d];
                    if (z[t][i] > 0) ra += z[t][i] * s->W_dec[i * D + d];
                }
                sq += r * r, sqa += ra * ra;
            }
            for (int i = 0; i < N; i++) l1 += z[t][i] > 0 ? z[t][i] * nrm[i] : 0;
            loss += (sq + sqa + o->coef * l1) / B;
        }
    }
    return loss;
}

// detach: gated with gated_detach_aux_decoder (W_dec and b_dec against the loss without the aux term)
static void check_arch(cterp_arch arch, int rescale, uint64_t seed, int detach) {
    rng_t r;
    rng_seed(&r, seed);
    cterp_sae *s;
    const int tc = arch == CTERP_ARCH_TRANSCODER || arch == CTERP_ARCH_SKIP_TRANSCODER;
    const int cc = arch == CTERP_ARCH_CROSSCODER;
    if (tc) cterp_sae_create_transcoder(&s, arch, D, DT, N);
    else if (cc) CHECK(cterp_sae_create_crosscoder(&s, 3, D / 3, N) == CTERP_OK); // 3 layers of 2
    else cterp_sae_create(&s, arch, D, N, 3);
    random_sae(s, &r);
    float x[B * D], theta[N], y[B * DT];
    for (int q = 0; q < B * D; q++) x[q] = rng_normal(&r);
    for (int q = 0; q < B * DT; q++) y[q] = rng_normal(&r);
    for (int i = 0; i < N; i++) theta[i] = 0.2f + 0.3f * rng_uniform(&r);
    const int matry = arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK, gated = arch == CTERP_ARCH_GATED;
    arch_opts o = {arch, 3, rescale, 0.7f, 0.3f, NULL, 0, 0, 0, matry ? matry_widths : NULL, matry ? 3 : 0,
                   tc ? y : NULL, detach};
    arch_work w;
    arch_work_init_out(&w, B, D, tc ? DT : D, N);

    // sparse forward vs naive dense twin
    float fn[B * N];
    arch_forward_naive(fn, s, &o, theta, x, B);
    loss_of(&w, s, &o, theta, x);
    float fs[B * N];
    memset(fs, 0, sizeof fs);
    for (int64_t p = 0; p < w.nnz; p++) fs[w.tok[p] * N + w.lat[p]] = w.f[p];
    double maxdiff = 0;
    // max by comparison, not fmax: GCC 12 for aarch64 crashes vectorising an fmax reduction
    for (int q = 0; q < B * N; q++) { double e_ = fabs(fs[q] - fn[q]); maxdiff = e_ > maxdiff ? e_ : maxdiff; }
    CHECK_MSG(maxdiff < 1e-4, "%s: forward differs from naive by %g", cterp_arch_name(arch), maxdiff);
    if (arch == CTERP_ARCH_TOPK) CHECK(w.nnz <= B * 3);
    if (arch == CTERP_ARCH_BATCHTOPK || matry) CHECK(w.nnz <= B * 3);
    if (matry || gated) CHECK(w.aux_loss > 0);
    if (matry || gated || tc || cc) CHECK_CLOSE(loss_of(&w, s, &o, theta, x), naive_loss(s, &o, x), 1e-5, 1e-5);
    if (matry) { // the prefixes must split the active latents, or the test checks nothing
        int in[3] = {0, 0, 0};
        for (int64_t p = 0; p < w.nnz; p++) in[w.lat[p] < 3 ? 0 : w.lat[p] < 7 ? 1 : 2]++;
        CHECK_MSG(in[0] > 0 && in[1] > 0 && in[2] > 0, "matryoshka: active latents per level %d %d %d", in[0],
                  in[1], in[2]);
    }
    if (gated) { // some gates open with their magnitude at 0 (ReLU), some with it positive
        int closed = 0, open = 0;
        for (int64_t p = 0; p < w.nnz; p++) closed += w.a[p] == 0, open += w.a[p] > 0;
        CHECK_MSG(closed > 0 && open > 0, "gated: %d pairs with magnitude 0, %d positive", closed, open);
    }

    float grads[2 * N * D + N + D + 2 * N + DT * D], dtheta[N];
    memset(grads, 0, sizeof grads);
    memset(dtheta, 0, sizeof dtheta);
    loss_of(&w, s, &o, theta, x);
    uint64_t sig0 = pairs_sig(&w);
    arch_backward(&w, s, &o, theta, x, grads, dtheta);
    const int64_t DOUT = s->d_out; // db_dec follows W_enc, b_enc, W_dec (N, DOUT)
    arch_bdec_from_benc(s, grads + N * D, s->b_mag ? grads + 2 * N * D + N + D + N : NULL,
                        grads + N * D + N + N * DOUT);

    const float eps = 1e-3f;
    int checked = 0, bad = 0;
    // every trained parameter: + r_mag, b_mag (gated), + W_skip (skip_transcoder); not the
    // jumprelu threshold (its gradient is checked against the STE formula below)
    size_t ntrain = s->n_params - (s->threshold ? N : 0);
    // detached: the aux reconstruction ReLU(pi) W_dec + b_dec - x is a constant to W_dec (its FD
    // leaves the aux term out) and b_dec keeps only its path through the input centring (its FD
    // minus the direct 2/B sum_t (x_aux - x))
    double direct[D] = {0};
    if (detach)
        for (int t = 0; t < B; t++)
            for (int d = 0; d < D; d++) {
                double xa = s->b_dec[d];
                for (int i = 0; i < N; i++) {
                    double pi = s->b_enc[i];
                    for (int e = 0; e < D; e++) pi += (double)s->W_enc[i * D + e] * (x[t * D + e] - s->b_dec[e]);
                    if (pi > 0) xa += pi * s->W_dec[i * D + d];
                }
                direct[d] += 2.0 / B * (xa - x[t * D + d]);
            }
    for (size_t q = 0; q < ntrain; q++) {
        const int noaux = detach && q >= (size_t)(N * D + N) && q < (size_t)(N * D + N + N * DOUT);
        const int bdec = detach && q >= (size_t)(N * D + N + N * DOUT) && q < (size_t)(N * D + N + N * DOUT + DOUT);
        float save = s->params[q];
        s->params[q] = save + eps;
        double lp = loss_of(&w, s, &o, theta, x) - (noaux ? w.aux_loss : 0);
        uint64_t sp = pairs_sig(&w);
        s->params[q] = save - eps;
        double lm = loss_of(&w, s, &o, theta, x) - (noaux ? w.aux_loss : 0);
        uint64_t sm = pairs_sig(&w);
        s->params[q] = save;
        if (sp != sig0 || sm != sig0) continue; // selection changed: not differentiable here
        double fd = (lp - lm) / (2 * eps) - (bdec ? direct[q - (size_t)(N * D + N + N * DOUT)] : 0);
        checked++;
        if (fabs(fd - grads[q]) > 2e-3 + 2e-2 * fabs(fd)) {
            if (bad++ < 5)
                fprintf(stderr, "  %s param %zu: fd %.6g analytic %.6g\n", cterp_arch_name(arch), q, fd,
                        grads[q]);
        }
    }
    CHECK_MSG(bad == 0, "%s (rescale %d, detach %d): %d of %d gradients differ from finite differences",
              cterp_arch_name(arch), rescale, detach, bad, checked);
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
    arch_opts o = {CTERP_ARCH_TOPK, 3, rescale, 0, 0.1f, NULL, 0, 0, 0, NULL, 0, NULL, 0};
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
    arch_bdec_from_benc(s, grads + N * D, s->b_mag ? grads + 2 * N * D + N + D + N : NULL, grads + 2 * N * D + N);
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

// The bf16 encoder GEMM against its naive twin (same bf16 inputs, double sums) on shapes with
// every edge: rows not a multiple of the 8-row tile, latents not a multiple of the 48-wide panel,
// odd d_in and d_in past the 32-wide vector packing, z aligned for the streaming stores (latents
// a multiple of 16) or not. Also the rounding itself.
static void check_bf16_gemm(void) {
    CHECK(bf16_from_f32(1.0f) == 0x3f80);
    CHECK(bf16_from_f32(1.00390625f) == 0x3f80);  // 1 + 2^-8: a tie, rounds to even (down)
    CHECK(bf16_from_f32(1.01171875f) == 0x3f82);  // 1 + 3 * 2^-8: a tie, rounds to even (up)
    CHECK(bf16_from_f32(-2.0f) == 0xc000);
    CHECK(bf16_to_f32(bf16_from_f32(INFINITY)) == INFINITY);
    CHECK(bf16_from_f32(1e-40f) == 0 && bf16_from_f32(-1e-40f) == 0x8000); // subnormals flush
    CHECK(bf16_from_f32(1.17549421e-38f) == 0);                          // the largest one too
    CHECK(isnan(bf16_to_f32(bf16_from_f32(NAN))));
    if (!bf16_available()) {
        printf("skip: bf16 GEMM (this build or CPU has no AVX-512 BF16)\n");
        return;
    }
    static const int64_t shapes[][3] = {{1, 1, 1}, {13, 50, 33}, {8, 48, 64}, {21, 97, 70}, {64, 130, 128}, {16, 96, 40}, {9, 144, 97}};
    rng_t r;
    rng_seed(&r, 11);
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t b = shapes[c][0], n = shapes[c][1], d = shapes[c][2];
        float *x = malloc((size_t)(b * d) * sizeof(float)), *w = malloc((size_t)(n * d) * sizeof(float));
        float *bias = malloc((size_t)n * sizeof(float)), *z = aligned_alloc(64, (size_t)((b * n + 15) / 16 * 16) * sizeof(float));
        float *ref = malloc((size_t)(b * n) * sizeof(float));
        uint32_t *xp = malloc((size_t)bf16_packed_x_words(b, d) * 4), *wp = malloc((size_t)bf16_packed_w_words(n, d) * 4);
        for (int64_t q = 0; q < b * d; q++) x[q] = rng_normal(&r);
        for (int64_t q = 0; q < n * d; q++) w[q] = rng_normal(&r);
        for (int64_t q = 0; q < n; q++) bias[q] = rng_normal(&r);
        for (int64_t q = 0; q < b * d; q += 5) x[q] *= 1e-39f; // subnormals, in the vector part and the tail
        for (int64_t q = 0; q < n * d; q += 7) w[q] *= -1e-39f;
        bf16_pack_x(xp, x, b, d);
        bf16_pack_w(wp, w, n, d);
        // the vectorised packing rounds as bf16_from_f32 does
        int pack_bad = 0;
        for (int64_t t = 0; t < b; t++)
            for (int64_t q = 0; q < d; q++) {
                uint32_t word = xp[t * ((d + 1) / 2) + q / 2];
                pack_bad += (uint16_t)(q % 2 ? word >> 16 : word) != bf16_from_f32(x[t * d + q]);
            }
        CHECK_MSG(pack_bad == 0, "bf16 pack of %lldx%lld: %d values rounded differently", (long long)b,
                  (long long)d, pack_bad);
        // packed W: panel of 48 latents, pair q, lane i; latents past n are zero
        const int64_t P = (d + 1) / 2, np = (n + BF16_NR - 1) / BF16_NR * BF16_NR;
        for (int64_t i = 0; i < np; i++)
            for (int64_t q = 0; q < 2 * P; q++) {
                const uint32_t word = wp[i / BF16_NR * BF16_NR * P + q / 2 * BF16_NR + i % BF16_NR];
                const uint16_t want = i < n && q < d ? bf16_from_f32(w[i * d + q]) : 0;
                pack_bad += (uint16_t)(q % 2 ? word >> 16 : word) != want;
            }
        CHECK_MSG(pack_bad == 0, "bf16 pack of W %lldx%lld: %d values differ", (long long)n, (long long)d,
                  pack_bad);
        bf16_gemm(z, xp, wp, bias, b, n, d);
        bf16_gemm_naive(ref, x, w, bias, b, n, d);
        int bad = 0;
        for (int64_t t = 0; t < b; t++)
            for (int64_t i = 0; i < n; i++) {
                double mag = fabs(bias[i]);
                for (int64_t q = 0; q < d; q++) mag += fabs((double)x[t * d + q] * w[i * d + q]);
                bad += !(fabs((double)z[t * n + i] - ref[t * n + i]) <= 1e-5 * mag + 1e-6);
            }
        CHECK_MSG(bad == 0, "bf16 GEMM %lldx%lldx%lld: %d of %lld values differ from the naive twin",
                  (long long)b, (long long)n, (long long)d, bad, (long long)(b * n));
        free(x), free(w), free(bias), free(z), free(ref), free(xp), free(wp);
    }
}

// The GEMM fused with TopK against the GEMM then topk_row on each row (with and without the
// decoder-norm scale): the same latents, values and order, including ties (duplicate W_enc rows),
// rows with fewer than K positive values (negative biases), K past a panel, several row blocks.
static void check_bf16_topk(void) {
    if (!bf16_available()) return;
    static const int64_t shapes[][4] = {{13, 50, 33, 4}, {130, 200, 64, 8}, {9, 97, 40, 60}, {21, 480, 70, 32}};
    rng_t r;
    rng_seed(&r, 21);
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t b = shapes[c][0], n = shapes[c][1], d = shapes[c][2];
        const int K = (int)shapes[c][3];
        float *x = malloc((size_t)(b * d) * sizeof(float)), *w = malloc((size_t)(n * d) * sizeof(float));
        float *bias = malloc((size_t)n * sizeof(float)), *scale = malloc((size_t)n * sizeof(float));
        float *z = malloc((size_t)(b * n) * sizeof(float)), *h = malloc((size_t)n * sizeof(float));
        uint32_t *xp = malloc((size_t)bf16_packed_x_words(b, d) * 4), *wp = malloc((size_t)bf16_packed_w_words(n, d) * 4);
        int32_t *idx = malloc((size_t)(b * K) * sizeof(int32_t)), *ri = malloc((size_t)K * sizeof(int32_t));
        float *val = malloc((size_t)(b * K) * sizeof(float)), *rv = malloc((size_t)K * sizeof(float));
        int *cnt = malloc((size_t)b * sizeof(int));
        for (int64_t q = 0; q < b * d; q++) x[q] = rng_normal(&r);
        for (int64_t q = 0; q < n * d; q++) w[q] = rng_normal(&r);
        for (int64_t i = 0; i < n; i++) bias[i] = rng_normal(&r) - (c == 2 ? 40.0f : 0.0f), scale[i] = 0.5f + rng_uniform(&r);
        for (int64_t i = 7; i < n; i += 11) { // ties: latent i repeats latent i - 5 exactly
            memcpy(w + i * d, w + (i - 5) * d, (size_t)d * sizeof(float));
            bias[i] = bias[i - 5], scale[i] = scale[i - 5];
        }
        if (c == 1) // only 5 distinct latents: the K-th value always falls inside a tie
            for (int64_t i = 5; i < n; i++) {
                memcpy(w + i * d, w + (i % 5) * d, (size_t)d * sizeof(float));
                bias[i] = bias[i % 5], scale[i] = scale[i % 5];
            }
        bf16_pack_x(xp, x, b, d);
        bf16_pack_w(wp, w, n, d);
        bf16_gemm(z, xp, wp, bias, b, n, d);
        for (int sc = 0; sc < 2; sc++) {
            CHECK(bf16_gemm_topk(idx, val, cnt, xp, wp, bias, sc ? scale : NULL, b, n, d, K) == 0);
            int bad = 0, few = 0;
            for (int64_t t = 0; t < b; t++) {
                for (int64_t i = 0; i < n; i++) h[i] = z[t * n + i] * (sc ? scale[i] : 1.0f);
                const int m = topk_row(ri, rv, h, (int)n, K);
                few += m < K;
                bad += m != cnt[t];
                for (int j = 0; j < m && j < cnt[t]; j++) bad += ri[j] != idx[t * K + j] || rv[j] != val[t * K + j];
            }
            CHECK_MSG(bad == 0, "bf16 GEMM + top-%d %lldx%lldx%lld (scale %d): %d differences from topk_row", K,
                      (long long)b, (long long)n, (long long)d, sc, bad);
            if (c == 2) CHECK_MSG(few > 0, "the negative-bias case has rows with fewer than K positives (%d)", few);
        }
        free(x), free(w), free(bias), free(scale), free(z), free(h), free(xp), free(wp);
        free(idx), free(ri), free(val), free(rv), free(cnt);
    }
}

// The training forward choosing on bf16 pre-activations: every pair's values are its f32 z
// (bit for bit the f32 dot product), positive, and the chosen set matches the f32 forward's
// except near the k-th value (topk and batchtopk, with and without decoder-norm ranking).
static void check_bf16_forward(cterp_arch arch, int rescale, int fuse) {
    if (!bf16_available()) return; // said once by check_bf16_gemm
    enum { FB = 64, FD = 96, FN = 200, FK = 8 };
    rng_t r;
    rng_seed(&r, 5);
    cterp_sae *s;
    cterp_sae_create(&s, arch, FD, FN, FK);
    for (size_t q = 0; q < s->n_params; q++) s->params[q] = 0.3f * rng_normal(&r);
    float *x = malloc(FB * FD * sizeof(float));
    for (int q = 0; q < FB * FD; q++) x[q] = rng_normal(&r);
    arch_work w32, w16;
    CHECK_OK(arch_work_init(&w32, FB, FD, FN));
    CHECK_OK(arch_work_init(&w16, FB, FD, FN));
    static const int64_t widths[3] = {50, 120, FN};
    const int matry = arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK;
    arch_opts o = {arch, FK, rescale, 0, 0.1f, NULL, 0, 0, 0, matry ? widths : NULL, matry ? 3 : 0, NULL, 0};
    int32_t sub[FN / 7 + 1]; // a "dead" list: AuxK's pre-activations, f32 in both
    int nsub = 0;
    for (int i = 3; i < FN; i += 7) sub[nsub++] = i;
    o.sub = sub, o.n_sub = nsub;
    CHECK_OK(arch_forward(&w32, s, &o, NULL, x));
    o.bf16 = 1, o.bf16_fuse = fuse;
    CHECK_OK(arch_forward(&w16, s, &o, NULL, x));
    int sub_bad = 0;
    for (int64_t t = 0; t < FB; t++)
        for (int j = 0; j < nsub; j++) {
            const float z32 = w32.zsub[t * nsub + j], z16 = w16.zsub[t * nsub + j];
            sub_bad += !(fabsf(z16 - z32) <= 1e-5f * (1 + fabsf(z32))) || z32 != w32.z[t * FN + sub[j]];
        }
    CHECK_MSG(sub_bad == 0, "bf16 forward (%s): %d of %d dead pre-activations are not the f32 ones",
              cterp_arch_name(arch), sub_bad, FB * nsub);
    if (arch == CTERP_ARCH_TOPK)
        CHECK_MSG((w16.z == NULL) == (fuse > 0), "bf16 topk (fuse %d): z %s", fuse, w16.z ? "allocated" : "not allocated");
    int bad = 0;
    for (int64_t p = 0; p < w16.nnz; p++) {
        const int64_t i = w16.lat[p];
        const float z = arch_preact(&w16, s, w16.tok[p], i);
        bad += w16.a[p] != z || !(w16.f[p] > 0) || w16.f[p] != z * (rescale ? w16.nrm[i] : 1.0f);
    }
    CHECK_MSG(bad == 0, "bf16 forward (%s, rescale %d): %d of %lld pairs do not carry their f32 z",
              cterp_arch_name(arch), rescale, bad, (long long)w16.nnz);
    int64_t same = 0; // pairs chosen by both (both lists are per token)
    for (int64_t t = 0; t < FB; t++)
        for (int64_t p = w16.row[t]; p < w16.row[t + 1]; p++)
            for (int64_t q = w32.row[t]; q < w32.row[t + 1]; q++) same += w32.lat[q] == w16.lat[p];
    CHECK_MSG(same >= 0.95 * w32.nnz && w16.nnz <= w32.nnz, "bf16 forward (%s, rescale %d): %lld of %lld f32 pairs chosen, %lld in all",
              cterp_arch_name(arch), rescale, (long long)same, (long long)w32.nnz, (long long)w16.nnz);
    CHECK(fabs(w16.mse_loss - w32.mse_loss) <= 0.02 * w32.mse_loss);
    if (matry) // the prefixes decoded from the bf16-chosen pairs (still in latent order per token)
        CHECK_MSG(w32.aux_loss > 0 && fabs(w16.aux_loss - w32.aux_loss) <= 0.02 * w32.aux_loss,
                  "bf16 matryoshka: inner mse %g, f32 %g", w16.aux_loss, w32.aux_loss);
    arch_work_free(&w32), arch_work_free(&w16);
    free(x);
    cterp_sae_free(s);
}

// More dead latents than exact_sub's chunk of 2048 rows: every column of zsub is the f32 one.
static void check_bf16_sub_chunks(void) {
    if (!bf16_available()) return;
    enum { SB = 16, SD = 32, SN = 5000, SK = 4 };
    rng_t r;
    rng_seed(&r, 9);
    cterp_sae *s;
    cterp_sae_create(&s, CTERP_ARCH_TOPK, SD, SN, SK);
    for (size_t q = 0; q < s->n_params; q++) s->params[q] = 0.3f * rng_normal(&r);
    float *x = malloc(SB * SD * sizeof(float));
    for (int q = 0; q < SB * SD; q++) x[q] = rng_normal(&r);
    static int32_t sub[SN];
    int nsub = 0;
    for (int i = 0; i < SN; i++)
        if (i % 10) sub[nsub++] = i; // 4500 "dead"
    arch_work w;
    CHECK_OK(arch_work_init(&w, SB, SD, SN));
    arch_opts o = {CTERP_ARCH_TOPK, SK, 0, 0, 0.1f, sub, nsub, 1, 1, NULL, 0, NULL, 0};
    CHECK_OK(arch_forward(&w, s, &o, NULL, x));
    int bad = 0;
    for (int64_t t = 0; t < SB; t++)
        for (int j = 0; j < nsub; j++) {
            const float z = arch_preact(&w, s, t, sub[j]);
            bad += !(fabsf(w.zsub[t * nsub + j] - z) <= 1e-5f * (1 + fabsf(z)));
        }
    CHECK_MSG(bad == 0, "bf16 forward, %d dead in chunks: %d of %d pre-activations are not the f32 ones", nsub,
              bad, SB * nsub);
    arch_work_free(&w);
    free(x);
    cterp_sae_free(s);
}

// Wide d_in: the chosen pairs' f32 recompute runs in several blocks of tokens (6 MB of token
// rows each, at least 256 tokens); every pair still carries its own f32 z.
static void check_bf16_exact_blocks(void) {
    if (!bf16_available()) return;
    enum { EB = 600, ED = 8192, EN = 64, EK = 4 };
    rng_t r;
    rng_seed(&r, 13);
    cterp_sae *s;
    cterp_sae_create(&s, CTERP_ARCH_TOPK, ED, EN, EK);
    for (size_t q = 0; q < s->n_params; q++) s->params[q] = 0.05f * rng_normal(&r);
    float *x = malloc((size_t)EB * ED * sizeof(float));
    for (int64_t q = 0; q < (int64_t)EB * ED; q++) x[q] = rng_normal(&r);
    arch_work w;
    CHECK_OK(arch_work_init(&w, EB, ED, EN));
    for (int fuse = -1; fuse <= 1; fuse += 2) {
        arch_opts o = {CTERP_ARCH_TOPK, EK, 0, 0, 0.1f, NULL, 0, 1, fuse, NULL, 0, NULL, 0};
        CHECK_OK(arch_forward(&w, s, &o, NULL, x));
        int bad = 0, last = 0;
        for (int64_t p = 0; p < w.nnz; p++) {
            bad += w.a[p] != arch_preact(&w, s, w.tok[p], w.lat[p]) || !(w.a[p] > 0);
            last = w.tok[p] > last ? w.tok[p] : last;
        }
        CHECK_MSG(bad == 0 && w.nnz > EB && last > 512, "bf16 forward, %d tokens of d_in %d (fuse %d): %d of %lld pairs "
                  "without their f32 z (last token %d)", EB, ED, fuse, bad, (long long)w.nnz, last);
    }
    arch_work_free(&w);
    free(x);
    cterp_sae_free(s);
}

int main(void) {
    check_topk_kernel();
    check_bf16_gemm();
    check_bf16_topk();
    check_bf16_sub_chunks();
    check_bf16_exact_blocks();
    // topk through z (-1) and with the GEMM fused with the top-k (1: z never allocated)
    for (int fuse = -1; fuse <= 1; fuse += 2) {
        check_bf16_forward(CTERP_ARCH_TOPK, 0, fuse);
        check_bf16_forward(CTERP_ARCH_TOPK, 1, fuse);
        check_bf16_forward(CTERP_ARCH_BATCHTOPK, 0, fuse);
        check_bf16_forward(CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 1, fuse);
    }
    check_arch(CTERP_ARCH_STANDARD, 0, 1, 0);
    check_arch(CTERP_ARCH_TOPK, 0, 2, 0);
    check_arch(CTERP_ARCH_TOPK, 1, 3, 0);
    check_arch(CTERP_ARCH_BATCHTOPK, 1, 4, 0);
    check_arch(CTERP_ARCH_JUMPRELU, 0, 5, 0);
    check_arch(CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 0, 6, 0);
    check_arch(CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 1, 7, 0);
    check_arch(CTERP_ARCH_GATED, 0, 8, 0);
    check_arch(CTERP_ARCH_GATED, 0, 9, 1);
    check_arch(CTERP_ARCH_TRANSCODER, 0, 10, 0);
    check_arch(CTERP_ARCH_SKIP_TRANSCODER, 0, 11, 0);
    check_arch(CTERP_ARCH_CROSSCODER, 0, 12, 0);
    { // the crosscoder's penalty differs from a standard SAE's: sum of block norms > whole norm
        cterp_sae *s;
        CHECK(cterp_sae_create_crosscoder(&s, 2, 3, 2) == CTERP_OK);
        CHECK(s->d_in == 6 && s->d_out == 6 && s->n_layers == 2 && !s->apply_b_dec_to_input);
        const float row[6] = {3, 4, 0, 0, 0, 5}; // ||(3,4,0)|| + ||(0,0,5)|| = 10, whole row sqrt(50)
        memcpy(s->W_dec, row, sizeof row);
        CHECK_CLOSE(cterp_sae_decoder_norm(s, 0), 10.0, 1e-6, 1e-6);
        cterp_sae_free(s);
        CHECK(cterp_sae_create_crosscoder(&s, 1, 6, 2) == CTERP_EINVAL && !s); // one layer is an SAE
    }
    check_revive(0, 0, 0);
    check_revive(0, 1, 0);
    check_revive(0, 0, 1);
    check_revive(0, 1, 1);
    check_revive(1, 0, -1);
    return test_done();
}
