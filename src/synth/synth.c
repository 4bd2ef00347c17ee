// The synthetic world and its stream (include/cterp/synth.h).
#include "cterp/synth.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "sae/kernels.h"

enum { SYN_BLOCK = 64 }; // features per thinning block: one bound per block and row

struct cterp_synth {
    cterp_synth_config cfg;
    cterp_toy *toy; // the toy world (toy.c draws it), or NULL
    int G, d;
    float *features;  // (G, d) unit rows
    float *bias;      // (d)
    double *p;        // (G) drawn probabilities (compensated, <= 1)
    int n_top;        // features without a parent (roots and those outside the trees)
    int32_t *top;     // (n_top) their indices, ascending
    double *blk_pmax; // (n_top / SYN_BLOCK rounded up) max p of a block of top features
    int32_t *child_first, *child_n; // (G) a node's children: child_first .. + child_n
    float *mag_mean, *mag_std;      // (G)
    int32_t *parent;                // (G) -1: none
    uint8_t *excl;                  // (G) 1: siblings mutually exclusive
    int R;                          // correlation rank (0: independent)
    float *F;                       // (G, R) the copula's factor
    float *FtTop; // (R, n_top) its rows of the top features, each scaled by 1/s_i and
                  // transposed for axpy: a_t = cTop_t + sum_q eps_q FtTop[q, t]
    float *cTop;  // (n_top) -t_i / s_i
    float *thr;   // (G) Phi^-1(1 - p_i)
    float *inv_s; // (G) 1 / sqrt(1 - |F_i|^2)
    rng_t stream; // root of the per-row streams
    char desc[256];
};

// ---- the normal distribution ----
static double phi_cdf(double a) {
    return 0.5 * erfc(-a * 0.70710678118654752440);
}

// Inverse normal CDF: Acklam's rational approximation, refined by one Halley step on erfc
// (about 1e-15 relative); 0 -> -inf, 1 -> +inf.
static double phi_inv(double p) {
    if (p <= 0) return -INFINITY;
    if (p >= 1) return INFINITY;
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    double q, r, x;
    if (p < 0.02425) {
        q = sqrt(-2 * log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else if (p > 1 - 0.02425) {
        q = sqrt(-2 * log(1 - p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else {
        q = p - 0.5;
        r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    double e = phi_cdf(x) - p;
    double u = e * 2.5066282746310002 * exp(x * x / 2);
    return x - u / (1 + x * u / 2);
}

// ---- presets ----
const char *cterp_synth_preset_names(void) {
    return "toy, synth16k, tiny";
}

cterp_status cterp_synth_preset(const char *name, cterp_synth_config *c, int *toy,
                                cterp_train_config *train) {
    memset(c, 0, sizeof *c);
    *toy = 0;
    if (!strcmp(name, "toy")) { // the demo's world and the demo's SAE (cterp defaults)
        *toy = 1;
        return CTERP_OK;
    }
    if (!strcmp(name, "synth16k")) { // SynthSAEBench-16k (SAELens docs/synthsaebench.md)
        c->n_features = 16384, c->d = 768;
        c->zipf_exponent = 0.5, c->p_max = 0.4, c->p_min = 5e-4;
        c->hier_roots = 128, c->hier_branching = 4, c->hier_depth = 3;
        c->hier_exclusive = 1, c->hier_compensate = 1, c->hier_scale_children = 0;
        c->corr_rank = 25, c->corr_scale = 0.1;
        c->mag_mean_start = 5.0, c->mag_mean_end = 4.0, c->mag_std_mean = 0.5, c->mag_std_std = 0.5;
        c->bias_norm = 0.5;
        c->orthogonal = 1; // no effect with G > d: random unit directions
        c->seed = 42;
        if (train) { // SynthSAEBench's recommended run: width 4096, L0 25, 200M samples
            train->d_sae = 4096, train->k = 25, train->lr = 3e-4f, train->batch_size = 1024;
            train->training_steps = 0, train->training_tokens = 200000000;
        }
        return CTERP_OK;
    }
    if (!strcmp(name, "tiny")) { // every mechanism, small enough for a test
        c->n_features = 128, c->d = 48;
        c->zipf_exponent = 0.5, c->p_max = 0.25, c->p_min = 0.01;
        c->hier_roots = 8, c->hier_branching = 3, c->hier_depth = 2;
        c->hier_exclusive = 1, c->hier_compensate = 1, c->hier_scale_children = 0;
        c->corr_rank = 4, c->corr_scale = 0.2;
        c->mag_mean_start = 2.0, c->mag_mean_end = 1.5, c->mag_std_mean = 0.2, c->mag_std_std = 0.1;
        c->bias_norm = 0.3;
        c->orthogonal = 1;
        c->seed = 7;
        if (train) {
            train->d_sae = 128, train->k = 3, train->lr = 3e-3f, train->batch_size = 256;
            train->training_steps = 300, train->training_tokens = 0;
        }
        return CTERP_OK;
    }
    return cterp_error(CTERP_EINVAL, "--preset: got '%s', expected one of %s", name,
                       cterp_synth_preset_names());
}

// ---- construction ----
void cterp_synth_free(cterp_synth *s) {
    if (!s) return;
    cterp_toy_free(s->toy);
    free(s->features), free(s->bias), free(s->p), free(s->blk_pmax), free(s->mag_mean),
        free(s->top);
    free(s->child_first), free(s->child_n), free(s->FtTop), free(s->cTop);
    free(s->mag_std), free(s->parent), free(s->excl), free(s->F), free(s->thr), free(s->inv_s);
    free(s);
}

static cterp_status validate(const cterp_synth_config *c) {
#define BADC(field, fmt, v, want)                                                                  \
    return cterp_error(CTERP_EINVAL, "synth %s: got " fmt ", expected %s", field, v, want)
    if (c->n_features < 1 || c->n_features > (1 << 22))
        BADC("n_features", "%d", c->n_features, "1..4194304");
    if (c->d < 1 || c->d > 65536) BADC("d", "%d", c->d, "1..65536");
    if ((int64_t)c->n_features * c->d > ((int64_t)1 << 31))
        BADC("n_features * d", "%lld", (long long)c->n_features * c->d, "<= 2^31");
    if (!(c->zipf_exponent > 0 && c->zipf_exponent <= 10))
        BADC("zipf_exponent", "%g", c->zipf_exponent, "in (0, 10]");
    if (!(c->p_min > 0 && c->p_min <= c->p_max && c->p_max <= 1))
        return cterp_error(CTERP_EINVAL,
                           "synth p_min, p_max: got %g, %g, expected 0 < p_min <= p_max <= 1",
                           c->p_min, c->p_max);
    if (c->hier_roots < 0) BADC("hier_roots", "%d", c->hier_roots, ">= 0");
    if (c->hier_roots > 0 && (c->hier_branching < 1 || c->hier_branching > 1024))
        BADC("hier_branching", "%d", c->hier_branching, "1..1024 with hier_roots > 0");
    if (c->hier_depth < 0 || c->hier_depth > 16) BADC("hier_depth", "%d", c->hier_depth, "0..16");
    if (c->corr_rank < 0 || c->corr_rank > 1024) BADC("corr_rank", "%d", c->corr_rank, "0..1024");
    if (!(c->corr_scale >= 0 && c->corr_scale <= 10))
        BADC("corr_scale", "%g", c->corr_scale, "in [0, 10]");
    if (!(c->mag_mean_start > 0 && c->mag_mean_end > 0 && c->mag_mean_start < 1e6 &&
          c->mag_mean_end < 1e6))
        return cterp_error(CTERP_EINVAL,
                           "synth mag_mean_start, mag_mean_end: got %g, %g, expected in (0, 1e6)",
                           c->mag_mean_start, c->mag_mean_end);
    if (!(c->mag_std_mean >= 0 && c->mag_std_mean < 1e6))
        BADC("mag_std_mean", "%g", c->mag_std_mean, "in [0, 1e6)");
    if (!(c->mag_std_std >= 0 && c->mag_std_std < 1e6))
        BADC("mag_std_std", "%g", c->mag_std_std, "in [0, 1e6)");
    if (!(c->bias_norm >= 0 && c->bias_norm < 1e6))
        BADC("bias_norm", "%g", c->bias_norm, "in [0, 1e6)");
#undef BADC
    return CTERP_OK;
}

static void unit_rows(float *f, int G, int d, rng_t *r) {
    for (int i = 0; i < G; i++) {
        float *v = f + (size_t)i * d;
        double n2 = 0;
        do {
            n2 = 0;
            for (int j = 0; j < d; j++) {
                v[j] = rng_normal(r);
                n2 += (double)v[j] * v[j];
            }
        } while (n2 == 0);
        float inv = (float)(1.0 / sqrt(n2));
        for (int j = 0; j < d; j++) v[j] *= inv;
    }
}

// Orthonormal rows (G <= d): Gaussian rows through modified Gram-Schmidt, twice (in double).
static void orthonormal_rows(float *f, int G, int d, rng_t *r) {
    double *w = malloc((size_t)G * d * sizeof(double));
    if (!w) { // the random unit rows are the fallback's contract too
        unit_rows(f, G, d, r);
        return;
    }
    for (size_t q = 0; q < (size_t)G * d; q++) w[q] = rng_normal(r);
    for (int i = 0; i < G; i++) {
        double *v = w + (size_t)i * d;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < i; k++) {
                const double *u = w + (size_t)k * d;
                double dot = 0;
                for (int j = 0; j < d; j++) dot += v[j] * u[j];
                for (int j = 0; j < d; j++) v[j] -= dot * u[j];
            }
        double n2 = 0;
        for (int j = 0; j < d; j++) n2 += v[j] * v[j];
        double inv = 1.0 / sqrt(n2);
        for (int j = 0; j < d; j++) v[j] *= inv;
    }
    for (size_t q = 0; q < (size_t)G * d; q++) f[q] = (float)w[q];
    free(w);
}

static cterp_status alloc_common(cterp_synth *s, int G, int d) {
    s->G = G, s->d = d;
    s->features = malloc((size_t)G * d * sizeof(float));
    s->bias = calloc((size_t)d, sizeof(float));
    s->p = malloc((size_t)G * sizeof(double));
    s->blk_pmax = malloc((size_t)G * sizeof(double));
    s->top = malloc((size_t)G * sizeof(int32_t));
    s->child_first = calloc((size_t)G, sizeof(int32_t));
    s->child_n = calloc((size_t)G, sizeof(int32_t));
    s->mag_mean = malloc((size_t)G * sizeof(float));
    s->mag_std = calloc((size_t)G, sizeof(float));
    s->parent = malloc((size_t)G * sizeof(int32_t));
    s->excl = calloc((size_t)G, 1);
    if (!s->features || !s->bias || !s->p || !s->blk_pmax || !s->mag_mean || !s->mag_std ||
        !s->parent || !s->excl || !s->top || !s->child_first || !s->child_n)
        return cterp_error(CTERP_ENOMEM, "synth: out of memory for %d features in %d dims", G, d);
    for (int i = 0; i < G; i++) s->parent[i] = -1;
    return CTERP_OK;
}

// The top features (no parent), the children ranges, and the top blocks' bounds.
static void structure(cterp_synth *s) {
    s->n_top = 0;
    for (int i = 0; i < s->G; i++) {
        const int par = s->parent[i];
        if (par < 0) {
            s->top[s->n_top++] = i;
        } else { // breadth-first: a node's children are contiguous indices
            if (!s->child_n[par]) s->child_first[par] = i;
            s->child_n[par]++;
        }
    }
    for (int b = 0; b * SYN_BLOCK < s->n_top; b++) {
        double m = 0;
        for (int q = b * SYN_BLOCK; q < s->n_top && q < (b + 1) * SYN_BLOCK; q++)
            m = fmax(m, s->p[s->top[q]]);
        s->blk_pmax[b] = m;
    }
}

cterp_status cterp_synth_create(cterp_synth **out, const cterp_synth_config *c) {
    *out = NULL;
    cterp_status st = validate(c);
    if (st) return st;
    cterp_synth *s = calloc(1, sizeof *s);
    if (!s) return cterp_error(CTERP_ENOMEM, "synth: out of memory");
    s->cfg = *c;
    const int G = c->n_features, d = c->d;
    if ((st = alloc_common(s, G, d))) goto fail;
    rng_t root;
    rng_seed(&root, c->seed ^ 0x73796e7468ULL); // "synth"
    rng_t r_dir = rng_split(&root, 0), r_bias = rng_split(&root, 1), r_mag = rng_split(&root, 2),
          r_corr = rng_split(&root, 3);
    s->stream = rng_split(&root, 4);
    // directions and bias
    if (c->orthogonal && G <= d)
        orthonormal_rows(s->features, G, d, &r_dir);
    else
        unit_rows(s->features, G, d, &r_dir);
    if (c->bias_norm > 0) {
        unit_rows(s->bias, 1, d, &r_bias);
        for (int j = 0; j < d; j++) s->bias[j] *= (float)c->bias_norm;
    }
    // Zipf probabilities over the index (descending), scaled into [p_min, p_max]
    double rmin = pow((double)G, -c->zipf_exponent);
    for (int i = 0; i < G; i++) {
        double ri = pow((double)(i + 1), -c->zipf_exponent);
        s->p[i] = G == 1 ? c->p_max : c->p_min + (c->p_max - c->p_min) * (ri - rmin) / (1.0 - rmin);
    }
    // hierarchy, breadth first over the indices: roots first, then each level's children
    if (c->hier_roots > 0) {
        int32_t *level = malloc((size_t)G * sizeof(int32_t)),
                *nextl = malloc((size_t)G * sizeof(int32_t));
        if (!level || !nextl) {
            free(level), free(nextl);
            st = cterp_error(CTERP_ENOMEM, "synth: out of memory for the hierarchy");
            goto fail;
        }
        int next = 0, nl = 0;
        for (int q = 0; q < c->hier_roots && next < G; q++) level[nl++] = next++;
        for (int depth = 0; depth < c->hier_depth && nl > 0; depth++) {
            int nn = 0;
            for (int q = 0; q < nl; q++) {
                int first = next;
                for (int b = 0; b < c->hier_branching && next < G; b++) {
                    s->parent[next] = level[q];
                    nextl[nn++] = next++;
                }
                if (c->hier_exclusive && next - first >= 2)
                    for (int ch = first; ch < next; ch++) s->excl[ch] = 1;
            }
            int32_t *t = level;
            level = nextl, nextl = t, nl = nn;
        }
        free(level), free(nextl);
        if (c->hier_compensate) { // SAELens compute_probability_correction_factors
            double *base = malloc((size_t)G * sizeof(double)),
                   *sib = calloc((size_t)G, sizeof(double));
            if (!base || !sib) {
                free(base), free(sib);
                st = cterp_error(CTERP_ENOMEM, "synth: out of memory for the hierarchy");
                goto fail;
            }
            memcpy(base, s->p, (size_t)G * sizeof(double));
            for (int i = 0; i < G; i++) // sib[parent] = sum of its exclusive children's base p
                if (s->parent[i] >= 0 && s->excl[i]) sib[s->parent[i]] += base[i];
            for (int i = 0; i < G; i++) {
                int par = s->parent[i];
                if (par < 0) continue;
                double f = 1.0 / base[par];
                if (s->excl[i]) f *= 1.0 + fmax(0.0, sib[par] - base[i]) / base[par];
                s->p[i] = base[i] * f;
            }
            free(base), free(sib);
        }
        for (int i = 0; i < G; i++)
            if (s->p[i] > 1) s->p[i] = 1;
    }
    structure(s);
    // magnitudes
    for (int i = 0; i < G; i++) {
        s->mag_mean[i] = (float)(G == 1 ? c->mag_mean_start
                                        : c->mag_mean_start +
                                              (c->mag_mean_end - c->mag_mean_start) * i / (G - 1));
        s->mag_std[i] =
            (float)(c->mag_std_std > 0 ? fabs(c->mag_std_mean + c->mag_std_std * rng_normal(&r_mag))
                                       : c->mag_std_mean);
    }
    // low-rank Gaussian copula (SAELens generate_random_low_rank_correlation_matrix)
    if (c->corr_rank > 0 && c->corr_scale > 0) {
        const int R = s->R = c->corr_rank;
        s->F = malloc((size_t)R * G * sizeof(float));
        s->FtTop = malloc((size_t)R * s->n_top * sizeof(float));
        s->cTop = malloc((size_t)(s->n_top ? s->n_top : 1) * sizeof(float));
        s->thr = malloc((size_t)G * sizeof(float));
        s->inv_s = malloc((size_t)G * sizeof(float));
        double *sq = calloc((size_t)G, sizeof(double));
        if (!s->F || !s->FtTop || !s->cTop || !s->thr || !s->inv_s || !sq) {
            free(sq);
            st = cterp_error(CTERP_ENOMEM, "synth: out of memory for the correlation factor");
            goto fail;
        }
        for (int i = 0; i < G; i++)
            for (int q = 0; q < R; q++) {
                float v = (float)(c->corr_scale * rng_normal(&r_corr));
                s->F[(size_t)i * R + q] = v;
                sq[i] += (double)v * v;
            }
        double mx = 0;
        for (int i = 0; i < G; i++) mx = fmax(mx, sq[i]);
        if (mx >= 1) { // rows too long for a unit diagonal: scale so the longest has 0.99
            float sc = (float)sqrt(0.99 / mx);
            for (size_t q = 0; q < (size_t)R * G; q++) s->F[q] *= sc;
            for (int i = 0; i < G; i++) sq[i] *= (double)sc * sc;
        }
        for (int i = 0; i < G; i++) {
            s->inv_s[i] = (float)(1.0 / sqrt(1.0 - sq[i]));
            s->thr[i] = (float)phi_inv(1.0 - s->p[i]);
        }
        free(sq);
        for (int t = 0; t < s->n_top; t++) {
            const int i = s->top[t];
            for (int q = 0; q < R; q++)
                s->FtTop[(size_t)q * s->n_top + t] = s->F[(size_t)i * R + q] * s->inv_s[i];
            s->cTop[t] = -s->thr[i] * s->inv_s[i]; // +-inf for p 1 (always) stays +-inf
        }
    }
    snprintf(s->desc, sizeof s->desc,
             "synthetic: %d features in %d dims, Zipf p %.3g..%.3g, hierarchy %d roots x %d^%d%s, "
             "correlation rank %d scale %.3g, bias %.3g, seed %llu",
             G, d, c->p_max, c->p_min, c->hier_roots, c->hier_branching, c->hier_depth,
             c->hier_exclusive ? " exclusive" : "", s->R, c->corr_scale, c->bias_norm,
             (unsigned long long)c->seed);
    *out = s;
    return CTERP_OK;
fail:
    cterp_synth_free(s);
    return st;
}

cterp_status cterp_synth_create_toy(cterp_synth **out, const cterp_toy_config *tc) {
    *out = NULL;
    cterp_synth *s = calloc(1, sizeof *s);
    if (!s) return cterp_error(CTERP_ENOMEM, "synth: out of memory");
    cterp_status st = cterp_toy_create(&s->toy, tc);
    if (!st) st = alloc_common(s, tc->n_features, tc->d);
    if (st) {
        cterp_synth_free(s);
        return st;
    }
    memcpy(s->features, cterp_toy_features(s->toy), (size_t)s->G * s->d * sizeof(float));
    memcpy(s->p, cterp_toy_probs(s->toy), (size_t)s->G * sizeof(double));
    structure(s);
    for (int i = 0; i < s->G; i++) s->mag_mean[i] = 0.5f * (tc->mag_min + tc->mag_max);
    s->cfg.n_features = s->G, s->cfg.d = s->d, s->cfg.seed = tc->seed;
    snprintf(s->desc, sizeof s->desc,
             "toy superposition: %d features in %d dims, %.1f active, decay %.3f, seed %llu", s->G,
             s->d, tc->avg_active, tc->decay, (unsigned long long)tc->seed);
    *out = s;
    return CTERP_OK;
}

int cterp_synth_n_features(const cterp_synth *s) {
    return s->G;
}
int cterp_synth_d(const cterp_synth *s) {
    return s->d;
}
const float *cterp_synth_features(const cterp_synth *s) {
    return s->features;
}
const float *cterp_synth_bias(const cterp_synth *s) {
    return s->bias;
}
const double *cterp_synth_probs(const cterp_synth *s) {
    return s->p;
}
int cterp_synth_parent(const cterp_synth *s, int i) {
    return s->parent[i];
}
int cterp_synth_exclusive(const cterp_synth *s, int i) {
    return s->excl[i];
}
const char *cterp_synth_description(const cterp_synth *s) {
    return s->desc;
}
const float *cterp_synth_corr_factor(const cterp_synth *s, int *rank) {
    *rank = s->R;
    return s->F;
}

void cterp_synth_acts_free(cterp_synth_acts *a) {
    if (!a) return;
    free(a->rowptr), free(a->idx), free(a->val);
    memset(a, 0, sizeof *a);
}

static int acts_reserve(cterp_synth_acts *a, int64_t rows, int64_t nnz) {
    if (rows + 1 > a->rows_cap) {
        int64_t *p = realloc(a->rowptr, (size_t)(rows + 1) * sizeof(int64_t));
        if (!p) return -1;
        a->rowptr = p, a->rows_cap = rows + 1;
    }
    if (nnz > a->cap) {
        int64_t c = nnz > 2 * a->cap ? nnz : 2 * a->cap;
        int32_t *i = realloc(a->idx, (size_t)c * sizeof(int32_t));
        if (i) a->idx = i;
        float *v = realloc(a->val, (size_t)c * sizeof(float));
        if (v) a->val = v;
        if (!i || !v) return -1;
        a->cap = c;
    }
    return 0;
}

// ---- one row ----
typedef struct {
    float *a;     // (n_top) z-scores of the top features' conditional firing probabilities
    int32_t *idx; // (G) active features
    float *val;   // (G)
} row_scratch;

// One candidate's magnitude: max(0, mean + std * N(0, 1)).
static float magnitude(const cterp_synth *s, int f, rng_t *rng) {
    float v = s->mag_mean[f];
    if (s->mag_std[f] > 0) v += s->mag_std[f] * rng_normal(rng);
    return v > 0 ? v : 0.0f;
}

// Draws row r: returns the number of active features written to idx/val, ascending.
// Given the R copula factors eps, features fire independently with q_i = Phi(a_i),
// a_i = (F_i . eps - t_i) / s_i (without correlation q_i = p_i). A child counts only when its
// parent is active, so children are drawn only under active parents: the same distribution
// as drawing all and gating (SAELens), at the cost of the active features alone.
static int draw_row(const cterp_synth *s, uint64_t r, row_scratch *w) {
    const int nt = s->n_top, R = s->R;
    rng_t rng = rng_split(&s->stream, r);
    float eps[1024];
    int n = 0;
    if (R > 0) {
        for (int q = 0; q < R; q++) eps[q] = rng_normal(&rng);
        float *a = w->a;
        memcpy(a, s->cTop, (size_t)nt * sizeof(float));
        for (int t0 = 0; t0 < nt; t0 += 1024) // a chunk of a stays in L1 over the R passes
            for (int q = 0; q < R; q++)
                axpy_f32(a + t0, eps[q], s->FtTop + (size_t)q * nt + t0,
                         nt - t0 < 1024 ? nt - t0 : 1024);
    }
    // top features by thinning: candidates at the block's bound Q by geometric skips, each
    // kept with q_i / Q
    for (int b0 = 0; b0 < nt; b0 += SYN_BLOCK) {
        const int b1 = b0 + SYN_BLOCK < nt ? b0 + SYN_BLOCK : nt;
        double Q;
        if (R > 0) {
            float amax = -INFINITY;
            for (int t = b0; t < b1; t++) amax = w->a[t] > amax ? w->a[t] : amax;
            Q = phi_cdf(amax);
        } else {
            Q = s->blk_pmax[b0 / SYN_BLOCK];
        }
        if (!(Q > 0)) continue;
        const double lq = Q < 1 ? log1p(-Q) : 0;
        int pos = b0 - 1;
        for (;;) {
            if (Q < 1) {
                double sk = floor(log1p(-rng_uniform_d(&rng)) / lq);
                if (sk >= (double)(b1 - 1 - pos)) break;
                pos += (int)sk + 1;
            } else if (++pos >= b1) {
                break;
            }
            const int f = s->top[pos];
            double q = R > 0 ? phi_cdf(w->a[pos]) : s->p[f];
            if (rng_uniform_d(&rng) * Q < q) {
                float v = magnitude(s, f, &rng);
                if (v > 0) w->idx[n] = f, w->val[n++] = v;
            }
        }
    }
    // children of active nodes, breadth first (the list grows as children join it)
    for (int j = 0; j < n; j++) {
        const int par = w->idx[j], c0 = s->child_first[par], nc = s->child_n[par];
        if (!nc) continue;
        const float pv = w->val[j];
        const int start = n;
        for (int c = c0; c < c0 + nc; c++) {
            double q = s->p[c];
            if (R > 0) {
                double m = 0;
                for (int k = 0; k < R; k++) m += (double)s->F[(size_t)c * R + k] * eps[k];
                q = phi_cdf((m - s->thr[c]) * s->inv_s[c]);
            }
            if (rng_uniform_d(&rng) < q) {
                float v = magnitude(s, c, &rng);
                if (v > 0) w->idx[n] = c, w->val[n++] = v;
            }
        }
        if (s->excl[c0] && n - start > 1) { // one winner, uniformly among the active siblings
            const int win = start + (int)rng_below(&rng, (uint64_t)(n - start));
            w->idx[start] = w->idx[win], w->val[start] = w->val[win];
            n = start + 1;
        }
        if (s->cfg.hier_scale_children)
            for (int q = start; q < n; q++) w->val[q] *= pv / s->mag_mean[par];
    }
    for (int j = 1; j < n; j++) { // ascending (insertion sort: a few dozen entries)
        const int32_t f = w->idx[j];
        const float v = w->val[j];
        int q = j - 1;
        while (q >= 0 && w->idx[q] > f) w->idx[q + 1] = w->idx[q], w->val[q + 1] = w->val[q], q--;
        w->idx[q + 1] = f, w->val[q + 1] = v;
    }
    return n;
}

cterp_status cterp_synth_sample(const cterp_synth *s, uint64_t row0, int64_t B, float *x,
                                cterp_synth_acts *acts) {
    const int G = s->G, d = s->d;
    if (B < 1)
        return cterp_error(CTERP_EINVAL, "synth sample: got batch %lld, expected >= 1",
                           (long long)B);
    if (s->toy) {
        if (row0 % (uint64_t)B)
            return cterp_error(CTERP_EINVAL,
                               "synth sample: the toy world draws whole batches: row %llu is not a "
                               "multiple of %lld",
                               (unsigned long long)row0, (long long)B);
        float *coef = NULL;
        if (acts) {
            coef = malloc((size_t)B * G * sizeof(float));
            if (!coef) return cterp_error(CTERP_ENOMEM, "synth sample: out of memory");
        }
        cterp_toy_sample(s->toy, row0 / (uint64_t)B, x, B, coef);
        if (acts) {
            int64_t nnz = 0;
            for (int64_t q = 0; q < B * G; q++) nnz += coef[q] > 0;
            if (acts_reserve(acts, B, nnz)) {
                free(coef);
                return cterp_error(CTERP_ENOMEM, "synth sample: out of memory");
            }
            int64_t k = 0;
            for (int64_t t = 0; t < B; t++) {
                acts->rowptr[t] = k;
                for (int i = 0; i < G; i++)
                    if (coef[t * G + i] > 0) acts->idx[k] = i, acts->val[k++] = coef[t * G + i];
            }
            acts->rowptr[B] = k;
        }
        free(coef);
        return CTERP_OK;
    }
    int nth = omp_get_max_threads();
    if (nth > B) nth = (int)B;
    if (nth < 1) nth = 1;
    // per thread: its rows' entries, concatenated in row order afterwards
    int32_t **tidx = calloc((size_t)nth, sizeof *tidx);
    float **tval = calloc((size_t)nth, sizeof *tval);
    int64_t *tn = calloc((size_t)nth, sizeof *tn);
    int32_t *rowcnt = acts ? malloc((size_t)B * sizeof(int32_t)) : NULL;
    int fail = !tidx || !tval || !tn || (acts && !rowcnt);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const int64_t r0 = B * t / T, r1 = B * (t + 1) / T;
        row_scratch w = {0};
        int64_t cap = 0, cnt = 0;
        int32_t *ai = NULL;
        float *av = NULL;
        int bad = 0;
#pragma omp atomic read
        bad = fail;
        if (!bad) {
            w.a = s->R ? malloc((size_t)(s->n_top ? s->n_top : 1) * sizeof(float)) : NULL;
            w.idx = malloc((size_t)G * sizeof(int32_t));
            w.val = malloc((size_t)G * sizeof(float));
            bad = (s->R && !w.a) || !w.idx || !w.val;
        }
        for (int64_t r = r0; r < r1 && !bad; r++) {
            int n = draw_row(s, row0 + (uint64_t)r, &w);
            float *xr = x + r * d;
            memcpy(xr, s->bias, (size_t)d * sizeof(float));
            for (int j = 0; j < n; j++)
                axpy_f32(xr, w.val[j], s->features + (size_t)w.idx[j] * d, d);
            if (acts) {
                rowcnt[r] = n;
                if (cnt + n > cap) {
                    int64_t nc = 2 * (cnt + n) + 64;
                    int32_t *ni = realloc(ai, (size_t)nc * sizeof(int32_t));
                    if (ni) ai = ni;
                    float *nv = realloc(av, (size_t)nc * sizeof(float));
                    if (nv) av = nv;
                    if (!ni || !nv) {
                        bad = 1;
                        break;
                    }
                    cap = nc;
                }
                if (n) { // (an empty row of a thread with no entries yet: ai is NULL)
                    memcpy(ai + cnt, w.idx, (size_t)n * sizeof(int32_t));
                    memcpy(av + cnt, w.val, (size_t)n * sizeof(float));
                    cnt += n;
                }
            }
        }
        free(w.a), free(w.idx), free(w.val);
        if (tidx && tval && tn)
            tidx[t] = ai, tval[t] = av, tn[t] = cnt;
        else
            free(ai), free(av);
        if (bad) {
#pragma omp atomic write
            fail = 1;
        }
    }
    cterp_status st = CTERP_OK;
    if (fail) {
        st = cterp_error(CTERP_ENOMEM, "synth sample: out of memory");
    } else if (acts) {
        int64_t nnz = 0;
        for (int t = 0; t < nth; t++) nnz += tn[t];
        if (acts_reserve(acts, B, nnz)) {
            st = cterp_error(CTERP_ENOMEM, "synth sample: out of memory");
        } else {
            int64_t k = 0;
            for (int64_t r = 0; r < B; r++) acts->rowptr[r] = k, k += rowcnt[r];
            acts->rowptr[B] = k;
            k = 0;
            for (int t = 0; t < nth; t++) {
                if (tn[t]) {
                    memcpy(acts->idx + k, tidx[t], (size_t)tn[t] * sizeof(int32_t));
                    memcpy(acts->val + k, tval[t], (size_t)tn[t] * sizeof(float));
                }
                k += tn[t];
            }
        }
    }
    for (int t = 0; tidx && tval && t < nth; t++) free(tidx[t]), free(tval[t]);
    free(tidx), free(tval), free(tn), free(rowcnt);
    return st;
}

// ---- the activation source ----
typedef struct {
    const cterp_synth *s;
    uint64_t row;
} synth_src;

static cterp_status src_next(void *ctx, float *x, int64_t B) {
    synth_src *c = ctx;
    cterp_status st = cterp_synth_sample(c->s, c->row, B, x, NULL);
    if (!st) c->row += (uint64_t)B;
    return st;
}

static int src_get_state(void *ctx, uint64_t *st, int cap) {
    if (cap < 1) return 0;
    st[0] = ((synth_src *)ctx)->row;
    return 1;
}

static cterp_status src_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    if (n != 1)
        return cterp_error(CTERP_EFORMAT, "synth source state: expected 1 word, found %d", n);
    if (max_rows < 0 || st[0] > (uint64_t)max_rows)
        return cterp_error(CTERP_EFORMAT,
                           "synth source state: row %llu, expected <= %lld (the rows taken)",
                           (unsigned long long)st[0], (long long)max_rows);
    ((synth_src *)ctx)->row = st[0];
    return CTERP_OK;
}

cterp_status cterp_synth_source(cterp_act_source *src, const cterp_synth *s) {
    if (s->toy) return cterp_toy_source(src, s->toy); // the demo's stream, batch by batch
    memset(src, 0, sizeof *src);
    synth_src *c = calloc(1, sizeof *c);
    if (!c) return cterp_error(CTERP_ENOMEM, "synth source: out of memory");
    c->s = s;
    src->d_in = s->d;
    src->ctx = c;
    src->next = src_next;
    src->get_state = src_get_state;
    src->set_state = src_set_state;
    src->free = free;
    snprintf(src->description, sizeof src->description, "%s", s->desc);
    return CTERP_OK;
}
