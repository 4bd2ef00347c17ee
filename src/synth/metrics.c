// Scores of an SAE against the synthetic world's true features (include/cterp/synth.h),
// defined as SAELens's sae_lens/synthetic/evals.py defines them.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "cterp/synth.h"

float *cterp_synth_cosines(const float *features, int64_t G, const float *W, int64_t N, int64_t d) {
    float *Fn = malloc((size_t)(G * d) * sizeof(float)),
          *Wn = malloc((size_t)(N * d) * sizeof(float));
    float *C = malloc((size_t)(N * G) * sizeof(float));
    if (!Fn || !Wn || !C) {
        free(Fn), free(Wn), free(C);
        cterp_error(CTERP_ENOMEM, "synth cosines: out of memory for %lld x %lld", (long long)N,
                    (long long)G);
        return NULL;
    }
    for (int pass = 0; pass < 2; pass++) {
        const float *src = pass ? W : features;
        float *dst = pass ? Wn : Fn;
        const int64_t rows = pass ? N : G;
        for (int64_t i = 0; i < rows; i++) {
            double n2 = 0;
            for (int64_t j = 0; j < d; j++) n2 += (double)src[i * d + j] * src[i * d + j];
            const float inv = n2 > 0 ? (float)(1.0 / sqrt(n2)) : 0.0f; // a zero row: cosines 0
            for (int64_t j = 0; j < d; j++) dst[i * d + j] = src[i * d + j] * inv;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)G, (int)d, 1.0f, Wn, (int)d,
                Fn, (int)d, 0.0f, C, (int)G);
    free(Fn), free(Wn);
    return C;
}

// Minimum-cost assignment of every row to a distinct column, n <= m (the shortest augmenting
// path form of the Hungarian algorithm with potentials, as in Jonker-Volgenant and
// e-maxx.ru's O(n^2 m)). cost(i, j) = -w[i*ld + j] (or -w[j*ld + i] when transposed; of
// |w| with absval: MCC's |cos| without a second N x G matrix).
// Rows and columns 1-based inside; p[j] = row on column j.
static double assign(const float *w, int64_t n, int64_t m, int64_t ld, int trans, int absval,
                     int64_t *row_col) {
    double *u = calloc((size_t)n + 1, sizeof(double)), *v = calloc((size_t)m + 1, sizeof(double));
    double *minv = malloc(((size_t)m + 1) * sizeof(double));
    int64_t *p = calloc((size_t)m + 1, sizeof(int64_t)),
            *way = calloc((size_t)m + 1, sizeof(int64_t));
    char *used = malloc((size_t)m + 1);
    double total = NAN;
    if (!u || !v || !minv || !p || !way || !used) goto done;
    for (int64_t i = 1; i <= n; i++) {
        p[0] = i;
        int64_t j0 = 0;
        for (int64_t j = 0; j <= m; j++) minv[j] = INFINITY, used[j] = 0;
        do {
            used[j0] = 1;
            const int64_t i0 = p[j0];
            double delta = INFINITY;
            int64_t j1 = 0;
            for (int64_t j = 1; j <= m; j++) {
                if (used[j]) continue;
                float wij = trans ? w[(j - 1) * ld + (i0 - 1)] : w[(i0 - 1) * ld + (j - 1)];
                if (absval) wij = fabsf(wij);
                const double cur = -(double)wij - u[i0] - v[j];
                if (cur < minv[j]) minv[j] = cur, way[j] = j0;
                if (minv[j] < delta) delta = minv[j], j1 = j;
            }
            for (int64_t j = 0; j <= m; j++) {
                if (used[j])
                    u[p[j]] += delta, v[j] -= delta;
                else
                    minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            const int64_t j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    total = 0;
    for (int64_t j = 1; j <= m; j++)
        if (p[j]) {
            row_col[p[j] - 1] = j - 1;
            const float wij = trans ? w[(j - 1) * ld + (p[j] - 1)] : w[(p[j] - 1) * ld + (j - 1)];
            total += absval ? fabsf(wij) : wij;
        }
done:
    free(u), free(v), free(minv), free(p), free(way), free(used);
    if (isnan(total))
        cterp_error(CTERP_ENOMEM, "assignment: out of memory for %lld x %lld", (long long)n,
                    (long long)m);
    return total;
}

static double assignment(const float *w, int64_t n, int64_t m, int absval, int64_t *match) {
    if (n <= 0 || m <= 0) return 0;
    if (n <= m) return assign(w, n, m, m, 0, absval, match);
    // more rows than columns: assign the columns (rows of w^T) and invert
    int64_t *col_row = malloc((size_t)m * sizeof(int64_t));
    if (!col_row) {
        cterp_error(CTERP_ENOMEM, "assignment: out of memory");
        return NAN;
    }
    double t = assign(w, m, n, m, 1, absval, col_row);
    if (!isnan(t)) {
        for (int64_t i = 0; i < n; i++) match[i] = -1;
        for (int64_t j = 0; j < m; j++) match[col_row[j]] = j;
    }
    free(col_row);
    return t;
}

double cterp_assignment_max(const float *w, int64_t n, int64_t m, int64_t *match) {
    return assignment(w, n, m, 0, match);
}

double cterp_synth_mcc(const float *C, int64_t N, int64_t G) {
    int64_t *match = malloc((size_t)N * sizeof(int64_t));
    double r = NAN;
    if (match)
        r = assignment(C, N, G, 1, match) / (double)(N < G ? N : G);
    else
        cterp_error(CTERP_ENOMEM, "mcc: out of memory");
    free(match);
    return r;
}

cterp_status cterp_synth_eval(const cterp_synth *s, const cterp_sae *sae, int64_t n,
                              uint64_t eval_row0, int64_t batch, cterp_synth_metrics *m) {
    memset(m, 0, sizeof *m);
    const int64_t G = cterp_synth_n_features(s), D = cterp_synth_d(s), N = sae->d_sae;
    if (sae->d_in != D)
        return cterp_error(CTERP_EINVAL,
                           "synth eval: the SAE's d_in is %lld, the world's d is %lld",
                           (long long)sae->d_in, (long long)D);
    if (sae->d_out != D) // its W_dec rows are compared with the world's features
        return cterp_error(CTERP_EINVAL, "synth eval: a %s writing d_out %lld, not the world's d %lld",
                           cterp_arch_name(sae->arch), (long long)sae->d_out, (long long)D);
    if (n < 1 || batch < 1)
        return cterp_error(CTERP_EINVAL,
                           "synth eval: got %lld samples in batches of %lld, expected >= 1",
                           (long long)n, (long long)batch);
    float *C = cterp_synth_cosines(cterp_synth_features(s), G, sae->W_dec, N, D);
    if (!C) return CTERP_ENOMEM;
    // decoder-only metrics
    m->mcc = cterp_synth_mcc(C, N, G);
    int64_t *best = malloc((size_t)N * sizeof(int64_t));
    int64_t *stamp = malloc((size_t)G * sizeof(int64_t));
    char *seen = calloc((size_t)G, 1), *fired = calloc((size_t)N, 1);
    int64_t *tp = calloc((size_t)N, sizeof(int64_t)), *fp = calloc((size_t)N, sizeof(int64_t));
    int64_t *fn = calloc((size_t)N, sizeof(int64_t));
    double *sumx = calloc((size_t)D, sizeof(double));
    float *x = malloc((size_t)(batch * D) * sizeof(float)),
          *xh = malloc((size_t)(batch * D) * sizeof(float));
    float *f = malloc((size_t)(batch * N) * sizeof(float));
    cterp_synth_acts acts = {0};
    cterp_status st = CTERP_OK;
    if (isnan(m->mcc) || !best || !stamp || !seen || !fired || !tp || !fp || !fn || !sumx || !x ||
        !xh || !f) {
        st = cterp_error(CTERP_ENOMEM, "synth eval: out of memory");
        goto done;
    }
    double rev = 0, fwd = 0;
    int64_t alive = 0, uniq = 0;
    for (int64_t j = 0; j < N; j++) { // best feature by |cos| (ties: lowest index), as SAELens
        const float *c = C + j * G;
        int64_t b = 0;
        float bv = -1, smax = 0;
        int nonzero = 0;
        for (int64_t g = 0; g < G; g++) {
            if (fabsf(c[g]) > bv) bv = fabsf(c[g]), b = g;
            smax = fmaxf(smax, c[g]);
            nonzero |= c[g] != 0;
        }
        best[j] = b;
        if (!seen[b]) seen[b] = 1, uniq++;
        if (nonzero) rev += smax, alive++;
    }
    for (int64_t g = 0; g < G; g++) {
        float bv = 0;
        for (int64_t j = 0; j < N; j++) bv = fmaxf(bv, C[j * G + g]);
        fwd += bv;
    }
    m->mmcs = fwd / (double)G;
    m->mmcs_reverse = alive ? rev / (double)alive : 0;
    m->uniqueness = (double)uniq / (double)N;
    free(C);
    C = NULL;
    // firing against the truth, reconstruction
    for (int64_t g = 0; g < G; g++) stamp[g] = -1;
    double sq = 0, sse = 0, shrink = 0, l0 = 0, tl0 = 0;
    int64_t nshrink = 0;
    for (int64_t done_ = 0; done_ < n;) {
        const int64_t B = n - done_ < batch ? n - done_ : batch;
        // whole batches (the toy draws by batch), of which the first B rows are used
        if ((st = cterp_synth_sample(s, eval_row0 + (uint64_t)done_, batch, x, &acts))) goto done;
        if ((st = cterp_sae_encode(sae, x, B, f)) || (st = cterp_sae_decode(sae, f, B, xh)))
            goto done;
        for (int64_t t = 0; t < B; t++) {
            const int64_t id = done_ + t;
            for (int64_t q = acts.rowptr[t]; q < acts.rowptr[t + 1]; q++) stamp[acts.idx[q]] = id;
            tl0 += (double)(acts.rowptr[t + 1] - acts.rowptr[t]);
            const float *ft = f + t * N;
            int64_t act = 0;
            for (int64_t j = 0; j < N; j++) {
                const int on = ft[j] > 0, truth = stamp[best[j]] == id;
                act += on;
                fired[j] |= (char)on;
                tp[j] += on & truth;
                fp[j] += on & (truth ^ 1);
                fn[j] += (on ^ 1) & truth;
            }
            l0 += (double)act;
            double nx = 0, nh = 0;
            for (int64_t k = 0; k < D; k++) {
                const double xv = x[t * D + k], r = xv - xh[t * D + k];
                sumx[k] += xv;
                nx += xv * xv;
                nh += (double)xh[t * D + k] * xh[t * D + k];
                sse += r * r;
            }
            sq += nx;
            if (sqrt(nx) > 1e-6) shrink += sqrt(nh) / sqrt(nx), nshrink++;
        }
        done_ += B;
    }
    double mean2 = 0;
    for (int64_t k = 0; k < D; k++) mean2 += (sumx[k] / (double)n) * (sumx[k] / (double)n);
    const double var = sq / (double)n - mean2;
    m->ev = var < 1e-10 ? (sse < 1e-10 ? 1.0 : 0.0) : 1.0 - (sse / (double)n) / var;
    m->l0 = l0 / (double)n;
    m->true_l0 = tl0 / (double)n;
    m->shrinkage = nshrink ? shrink / (double)nshrink : 0;
    double P = 0, R = 0, F = 0;
    for (int64_t j = 0; j < N; j++) {
        const double pj = tp[j] + fp[j] > 0 ? (double)tp[j] / (double)(tp[j] + fp[j]) : 0;
        const double rj = tp[j] + fn[j] > 0 ? (double)tp[j] / (double)(tp[j] + fn[j]) : 0;
        P += pj, R += rj, F += pj + rj > 0 ? 2 * pj * rj / (pj + rj) : 0;
        m->dead += !fired[j];
    }
    m->precision = P / (double)N, m->recall = R / (double)N, m->f1 = F / (double)N;
    m->samples = n;
done:
    free(C), free(best), free(stamp), free(seen), free(fired), free(tp), free(fp), free(fn);
    free(sumx), free(x), free(xh), free(f);
    cterp_synth_acts_free(&acts);
    return st;
}
