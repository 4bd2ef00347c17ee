// Toy model of superposition (include/cterp/toy.h).
#include "cterp/toy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/rng.h"

struct cterp_toy {
    cterp_toy_config cfg;
    float *features; // (G, d)
    double *p;       // (G)
    float *mix;      // (G, R) low-rank factor loadings for correlation
};

enum { TOY_RANK = 8 };

void cterp_toy_config_default(cterp_toy_config *c) {
    c->n_features = 512;
    c->d = 128;
    c->avg_active = 5.0;
    c->decay = 0.99;
    c->correlation = 0.0;
    c->mag_min = 0.0f;
    c->mag_max = 1.0f;
    c->seed = 0;
}

cterp_status cterp_toy_create(cterp_toy **out, const cterp_toy_config *c) {
    *out = NULL;
    if (c->n_features < 1 || c->n_features > (1 << 22))
        return cterp_error(CTERP_EINVAL, "toy n_features: got %d, expected 1..4194304", c->n_features);
    if (c->d < 1 || c->d > 65536)
        return cterp_error(CTERP_EINVAL, "toy d: got %d, expected 1..65536", c->d);
    if (!(c->avg_active > 0) || c->avg_active > c->n_features)
        return cterp_error(CTERP_EINVAL, "toy avg_active: got %g, expected in (0, n_features]",
                           c->avg_active);
    if (!(c->decay > 0 && c->decay <= 1))
        return cterp_error(CTERP_EINVAL, "toy decay: got %g, expected in (0, 1]", c->decay);
    if (!(c->correlation >= 0 && c->correlation <= 3))
        return cterp_error(CTERP_EINVAL, "toy correlation: got %g, expected in [0, 3]", c->correlation);
    if (!(c->mag_min >= 0 && c->mag_max > c->mag_min))
        return cterp_error(CTERP_EINVAL, "toy magnitudes: got [%g, %g], expected 0 <= min < max",
                           c->mag_min, c->mag_max);
    cterp_toy *t = calloc(1, sizeof *t);
    int G = c->n_features, d = c->d;
    if (t) {
        t->features = malloc((size_t)G * d * sizeof(float));
        t->p = malloc((size_t)G * sizeof(double));
        t->mix = malloc((size_t)G * TOY_RANK * sizeof(float));
    }
    if (!t || !t->features || !t->p || !t->mix) {
        cterp_toy_free(t);
        return cterp_error(CTERP_ENOMEM, "toy: out of memory");
    }
    t->cfg = *c;
    rng_t r;
    rng_seed(&r, c->seed ^ 0x70796f74ULL);
    for (int i = 0; i < G; i++) { // random unit directions
        float *f = t->features + (size_t)i * d;
        double n2 = 0;
        for (int j = 0; j < d; j++) {
            f[j] = rng_normal(&r);
            n2 += (double)f[j] * f[j];
        }
        float inv = (float)(1.0 / sqrt(n2));
        for (int j = 0; j < d; j++) f[j] *= inv;
    }
    double sum = 0;
    for (int i = 0; i < G; i++) sum += t->p[i] = pow(c->decay, i);
    for (int i = 0; i < G; i++) {
        t->p[i] *= c->avg_active / sum;
        if (t->p[i] > 1) t->p[i] = 1;
    }
    for (int i = 0; i < G * TOY_RANK; i++) t->mix[i] = rng_normal(&r) / sqrtf((float)TOY_RANK);
    *out = t;
    return CTERP_OK;
}

void cterp_toy_free(cterp_toy *t) {
    if (!t) return;
    free(t->features);
    free(t->p);
    free(t->mix);
    free(t);
}

const float *cterp_toy_features(const cterp_toy *t) { return t->features; }
const double *cterp_toy_probs(const cterp_toy *t) { return t->p; }

void cterp_toy_sample(const cterp_toy *t, uint64_t batch, float *x, int64_t B, float *coef) {
    const int G = t->cfg.n_features, d = t->cfg.d;
    memset(x, 0, (size_t)B * d * sizeof(float));
    if (coef) memset(coef, 0, (size_t)B * G * sizeof(float));
    rng_t base;
    rng_seed(&base, t->cfg.seed * 0x9e3779b97f4a7c15ULL + 0x5eed);
    rng_t r = rng_split(&base, batch);
    double fac[TOY_RANK];
    if (t->cfg.correlation > 0)
        for (int q = 0; q < TOY_RANK; q++) fac[q] = rng_normal(&r);
    const float span = t->cfg.mag_max - t->cfg.mag_min;
    for (int i = 0; i < G; i++) {
        double p = t->p[i];
        if (t->cfg.correlation > 0) { // p_i * exp(s z_i - s^2/2): mean-preserving co-modulation
            double z = 0, s = t->cfg.correlation;
            for (int q = 0; q < TOY_RANK; q++) z += t->mix[(size_t)i * TOY_RANK + q] * fac[q];
            p *= exp(s * z - 0.5 * s * s);
            if (p > 1) p = 1;
        }
        if (p <= 0) continue;
        // visit firing positions by geometric skips: cost proportional to the firings
        double lq = p < 1 ? log1p(-p) : -INFINITY;
        int64_t pos = -1;
        const float *fi = t->features + (size_t)i * d;
        for (;;) {
            double u = rng_uniform_d(&r);
            int64_t skip = p < 1 ? (int64_t)floor(log1p(-u) / lq) : 0;
            if (skip > B) break;
            pos += skip + 1;
            if (pos >= B) break;
            float m = t->cfg.mag_min + span * rng_uniform(&r);
            float *xt = x + pos * d;
            for (int j = 0; j < d; j++) xt[j] += m * fi[j];
            if (coef) coef[pos * G + i] = m;
        }
    }
}

typedef struct {
    const cterp_toy *toy;
    uint64_t batch;
} toy_src;

static cterp_status toy_next(void *ctx, float *x, int64_t B) {
    toy_src *s = ctx;
    cterp_toy_sample(s->toy, s->batch++, x, B, NULL);
    return CTERP_OK;
}

static int toy_get_state(void *ctx, uint64_t *st, int cap) {
    if (cap < 1) return 0;
    st[0] = ((toy_src *)ctx)->batch;
    return 1;
}

static cterp_status toy_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    if (n != 1) return cterp_error(CTERP_EFORMAT, "toy source state: expected 1 word, found %d", n);
    if (max_rows < 0 || st[0] > (uint64_t)max_rows) // a batch holds at least one row
        return cterp_error(CTERP_EFORMAT,
                           "toy source state: batch %llu, expected <= %lld (the rows taken)",
                           (unsigned long long)st[0], (long long)max_rows);
    ((toy_src *)ctx)->batch = st[0];
    return CTERP_OK;
}

cterp_status cterp_toy_source(cterp_act_source *s, const cterp_toy *t) {
    memset(s, 0, sizeof *s);
    toy_src *c = calloc(1, sizeof *c);
    if (!c) return cterp_error(CTERP_ENOMEM, "toy source: out of memory");
    c->toy = t;
    s->d_in = t->cfg.d;
    s->ctx = c;
    s->next = toy_next;
    s->get_state = toy_get_state;
    s->set_state = toy_set_state;
    s->free = free;
    snprintf(s->description, sizeof s->description,
             "toy superposition: %d features in %d dims, %.1f active, decay %.3f, seed %llu",
             t->cfg.n_features, t->cfg.d, t->cfg.avg_active, t->cfg.decay,
             (unsigned long long)t->cfg.seed);
    return CTERP_OK;
}

double cterp_mmcs(const float *features, int G, const float *W, int64_t N, int d, double *reverse) {
    float *Wn = malloc((size_t)N * d * sizeof(float));
    float *C = malloc((size_t)G * N * sizeof(float));
    if (!Wn || !C) {
        free(Wn);
        free(C);
        return NAN;
    }
    for (int64_t i = 0; i < N; i++) {
        double n2 = 0;
        for (int j = 0; j < d; j++) n2 += (double)W[i * d + j] * W[i * d + j];
        float inv = n2 > 0 ? (float)(1.0 / sqrt(n2)) : 0.0f;
        for (int j = 0; j < d; j++) Wn[i * d + j] = W[i * d + j] * inv;
    }
    // C (G, N) = features (G, d) . Wn^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, G, (int)N, d, 1.0f, features, d, Wn, d,
                0.0f, C, (int)N);
    double fwd = 0;
    for (int g = 0; g < G; g++) {
        float best = 0;
        for (int64_t i = 0; i < N; i++) best = fmaxf(best, C[(size_t)g * N + i]);
        fwd += best;
    }
    if (reverse) {
        double rev = 0;
        int64_t alive = 0;
        for (int64_t i = 0; i < N; i++) {
            if (Wn[i * d] == 0 && Wn[i * d + d - 1] == 0) {
                double n2 = 0;
                for (int j = 0; j < d; j++) n2 += Wn[i * d + j] * Wn[i * d + j];
                if (n2 == 0) continue;
            }
            float best = 0;
            for (int g = 0; g < G; g++) best = fmaxf(best, C[(size_t)g * N + i]);
            rev += best;
            alive++;
        }
        *reverse = alive ? rev / alive : 0;
    }
    free(Wn);
    free(C);
    return fwd / G;
}
