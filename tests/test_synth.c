// The synthetic benchmark: the matching against brute force, the metrics on hand-built SAEs
// whose answers are known, and the generator's statistics against its configuration.
#include <omp.h>

#include "core/rng.h"
#include "cterp/synth.h"
#include "test.h"

// ---- the assignment against brute force ----
static double brute_best;
static void brute(const float *w, int n, int m, int i, unsigned used, double acc) {
    if (i == n) {
        if (acc > brute_best) brute_best = acc;
        return;
    }
    for (int j = 0; j < m; j++)
        if (!(used >> j & 1)) brute(w, n, m, i + 1, used | 1u << j, acc + w[i * m + j]);
}

static void test_assignment(void) {
    rng_t r;
    rng_seed(&r, 11);
    int bad_total = 0, bad_match = 0;
    for (int trial = 0; trial < 300; trial++) {
        const int n = 1 + (int)rng_below(&r, 7), m = 1 + (int)rng_below(&r, 7);
        float w[49], wt[49];
        for (int q = 0; q < n * m; q++) w[q] = rng_uniform(&r);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++) wt[j * n + i] = w[i * m + j];
        brute_best = -1;
        if (n <= m)
            brute(w, n, m, 0, 0, 0);
        else
            brute(wt, m, n, 0, 0, 0);
        int64_t match[7];
        double got = cterp_assignment_max(w, n, m, match);
        if (fabs(got - brute_best) > 1e-5) bad_total++;
        // the matching is one-to-one, of min(n, m) pairs, and its weight is what it returned
        unsigned cols = 0;
        int pairs = 0;
        double sum = 0;
        for (int i = 0; i < n; i++) {
            if (match[i] < 0) continue;
            if (match[i] >= m || (cols >> match[i] & 1)) bad_match++;
            cols |= 1u << match[i];
            pairs++;
            sum += w[i * m + match[i]];
        }
        if (pairs != (n < m ? n : m) || fabs(sum - got) > 1e-5) bad_match++;
    }
    CHECK_MSG(bad_total == 0,
              "%d of 300 random matrices: the matching's weight is not the brute-force optimum",
              bad_total);
    CHECK_MSG(bad_match == 0, "%d matchings not one-to-one or not of min(n, m) pairs", bad_match);
    // a case a greedy choice gets wrong: row 0 prefers column 0, but the optimum gives it to row 1
    const float w2[] = {0.9f, 0.8f, 0.85f, 0.1f};
    int64_t mt[2];
    CHECK_CLOSE(cterp_assignment_max(w2, 2, 2, mt), 1.65, 1e-6, 0);
    CHECK(mt[0] == 1 && mt[1] == 0);
}

// ---- MCC on dictionaries with known answers ----
static void random_rows(float *W, int n, int d, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (int q = 0; q < n * d; q++) W[q] = rng_normal(&r);
}

static void test_mcc(void) {
    enum { G = 40, D = 64 };
    float F[G * D], W[G * D];
    random_rows(F, G, D, 3);
    for (int i = 0; i < G; i++) { // unit rows
        double n2 = 0;
        for (int j = 0; j < D; j++) n2 += F[i * D + j] * F[i * D + j];
        for (int j = 0; j < D; j++) F[i * D + j] /= (float)sqrt(n2);
    }
    float *C = cterp_synth_cosines(F, G, F, G, D);
    CHECK_CLOSE(cterp_synth_mcc(C, G, G), 1.0, 1e-5, 0);
    free(C);
    // permuted, sign-flipped and scaled rows: the same features
    for (int i = 0; i < G; i++) {
        const int src = (i * 7 + 3) % G;
        const float sc = (i % 2 ? -1.0f : 1.0f) * (0.2f + 0.1f * (float)i);
        for (int j = 0; j < D; j++) W[i * D + j] = sc * F[src * D + j];
    }
    C = cterp_synth_cosines(F, G, W, G, D);
    CHECK_CLOSE(cterp_synth_mcc(C, G, G), 1.0, 1e-5, 0);
    free(C);
    // a random dictionary: about the best |cos| of random directions in 64 dims
    random_rows(W, G, D, 99);
    C = cterp_synth_cosines(F, G, W, G, D);
    double mr = cterp_synth_mcc(C, G, G);
    CHECK_MSG(mr < 0.3, "random dictionary mcc %.3f, expected < 0.3", mr);
    free(C);
    // rectangular: a dictionary twice as wide holding every feature (and random rows), and
    // one half as wide holding half of them, both match perfectly (min(N, G) pairs)
    float W2[2 * G * D];
    random_rows(W2, 2 * G, D, 97);
    for (int i = 0; i < G; i++)
        memcpy(W2 + (size_t)(2 * i + 1) * D, F + (size_t)(G - 1 - i) * D, D * sizeof(float));
    C = cterp_synth_cosines(F, G, W2, 2 * G, D);
    CHECK_CLOSE(cterp_synth_mcc(C, 2 * G, G), 1.0, 1e-5, 0);
    free(C);
    C = cterp_synth_cosines(F, G, F + (G / 2) * D, G / 2, D);
    CHECK_CLOSE(cterp_synth_mcc(C, G / 2, G), 1.0, 1e-5, 0);
    free(C);
    // half the features found exactly, half random: in between
    random_rows(W, G, D, 98);
    memcpy(W, F, (size_t)(G / 2) * D * sizeof(float));
    C = cterp_synth_cosines(F, G, W, G, D);
    double mh = cterp_synth_mcc(C, G, G);
    CHECK_MSG(mh > 0.5 + 0.5 * mr - 0.05 && mh < 0.5 + 0.5 * 0.35, "half-found mcc %.3f", mh);
    free(C);
}

// ---- the metrics of hand-built SAEs on an orthogonal world (G <= d) ----
static void ortho_config(cterp_synth_config *c) {
    memset(c, 0, sizeof *c);
    c->n_features = 24, c->d = 32;
    c->zipf_exponent = 0.7, c->p_max = 0.3, c->p_min = 0.02;
    c->hier_roots = 3, c->hier_branching = 2, c->hier_depth = 2;
    c->hier_exclusive = 1, c->hier_compensate = 1;
    c->corr_rank = 3, c->corr_scale = 0.3;
    c->mag_mean_start = 2.0, c->mag_mean_end = 1.0, c->mag_std_mean = 0.1, c->mag_std_std = 0.05;
    c->bias_norm = 0.4, c->orthogonal = 1, c->seed = 5;
}

// A jumprelu SAE whose latent j reads and writes feature perm[j] scaled by sc[j] (> 0).
static cterp_sae *oracle_sae(const cterp_synth *s, const int *perm, const float *sc) {
    const int G = cterp_synth_n_features(s), D = cterp_synth_d(s);
    cterp_sae *sae;
    if (cterp_sae_create(&sae, CTERP_ARCH_JUMPRELU, D, G, 1)) return NULL;
    const float *F = cterp_synth_features(s);
    for (int j = 0; j < G; j++) {
        const float *f = F + (size_t)perm[j] * D;
        for (int k = 0; k < D; k++)
            sae->W_enc[j * D + k] = f[k] / sc[j], sae->W_dec[j * D + k] = sc[j] * f[k];
        sae->b_enc[j] = 0, sae->threshold[j] = 1e-3f;
    }
    memcpy(sae->b_dec, cterp_synth_bias(s), (size_t)D * sizeof(float));
    return sae;
}

static void test_eval_known(void) {
    cterp_synth_config c;
    ortho_config(&c);
    cterp_synth *s;
    CHECK_OK(cterp_synth_create(&s, &c));
    const int G = c.n_features, D = c.d;
    int perm[24];
    float sc[24];
    for (int j = 0; j < G; j++) perm[j] = j, sc[j] = 1;
    cterp_sae *sae = oracle_sae(s, perm, sc);
    cterp_synth_metrics m;
    CHECK_OK(cterp_synth_eval(s, sae, 6000, 1 << 20, 512, &m));
    CHECK_CLOSE(m.f1, 1.0, 1e-9, 0);
    CHECK_CLOSE(m.precision, 1.0, 1e-9, 0);
    CHECK_CLOSE(m.recall, 1.0, 1e-9, 0);
    CHECK_CLOSE(m.mcc, 1.0, 1e-5, 0);
    CHECK_CLOSE(m.mmcs, 1.0, 1e-5, 0);
    CHECK_CLOSE(m.mmcs_reverse, 1.0, 1e-5, 0);
    CHECK_CLOSE(m.uniqueness, 1.0, 1e-9, 0);
    CHECK_CLOSE(m.ev, 1.0, 1e-5, 0);
    CHECK_CLOSE(m.l0, m.true_l0, 1e-9, 0);
    CHECK(m.true_l0 > 1 && m.samples == 6000 && m.dead == 0);
    CHECK_CLOSE(m.shrinkage, 1.0, 1e-4, 0);
    cterp_sae_free(sae);
    // the same dictionary permuted and rescaled
    for (int j = 0; j < G; j++) perm[j] = (5 * j + 2) % G, sc[j] = 0.3f + 0.17f * (float)j;
    sae = oracle_sae(s, perm, sc);
    cterp_synth_metrics m2;
    CHECK_OK(cterp_synth_eval(s, sae, 6000, 1 << 20, 700, &m2));
    CHECK_CLOSE(m2.f1, 1.0, 1e-9, 0);
    CHECK_CLOSE(m2.mcc, 1.0, 1e-5, 0);
    CHECK_CLOSE(m2.uniqueness, 1.0, 1e-9, 0);
    CHECK_CLOSE(m2.ev, 1.0, 1e-5, 0);
    CHECK_CLOSE(m2.l0, m.l0, 1e-9, 0); // the same samples, whatever the batching
    // two latents on one feature: uniqueness and mcc (G-1)/G (one feature is left unmatched,
    // at cosine 0); f1 stays 1, each latent judged against its own best feature (SAELens)
    memcpy(sae->W_dec + (size_t)1 * D, sae->W_dec, (size_t)D * sizeof(float));
    memcpy(sae->W_enc + (size_t)1 * D, sae->W_enc, (size_t)D * sizeof(float));
    CHECK_OK(cterp_synth_eval(s, sae, 2000, 1 << 20, 512, &m2));
    CHECK_CLOSE(m2.uniqueness, (double)(G - 1) / G, 1e-9, 0);
    CHECK_CLOSE(m2.mcc, (double)(G - 1) / G, 1e-5, 0);
    CHECK_CLOSE(m2.f1, 1.0, 1e-9, 0);
    cterp_sae_free(sae);
    // a random SAE: near 0
    cterp_sae *rs;
    CHECK_OK(cterp_sae_create(&rs, CTERP_ARCH_STANDARD, D, G, 1));
    random_rows(rs->W_enc, G, D, 21);
    random_rows(rs->W_dec, G, D, 22);
    for (int q = 0; q < G * D; q++) rs->W_dec[q] *= 0.2f;
    CHECK_OK(cterp_synth_eval(s, rs, 4000, 1 << 20, 512, &m2));
    CHECK_MSG(m2.f1 < 0.3 && m2.mcc < 0.45 && m2.ev < 0.5, "random SAE: f1 %.3f mcc %.3f ev %.3f",
              m2.f1, m2.mcc, m2.ev);
    // wrong width is refused naming both
    cterp_sae *ws;
    CHECK_OK(cterp_sae_create(&ws, CTERP_ARCH_STANDARD, D + 1, G, 1));
    CHECK(cterp_synth_eval(s, ws, 10, 0, 10, &m2) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "d_in is 33"));
    cterp_sae_free(ws);
    // a transcoder reads the world's d but writes another width: its W_dec is not comparable
    CHECK_OK(cterp_sae_create_transcoder(&ws, CTERP_ARCH_TRANSCODER, D, D - 2, G));
    CHECK(cterp_synth_eval(s, ws, 10, 0, 10, &m2) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "transcoder writing d_out 30"));
    cterp_sae_free(ws);
    cterp_sae_free(rs);
    cterp_synth_free(s);
}

// ---- the generator ----
// Firing counts of n rows from row0.
static void count_firing(const cterp_synth *s, int64_t n, int64_t *cnt, double *valsum) {
    const int G = cterp_synth_n_features(s), D = cterp_synth_d(s);
    const int64_t B = 2000;
    float *x = malloc((size_t)B * D * sizeof(float));
    cterp_synth_acts a = {0};
    memset(cnt, 0, (size_t)G * sizeof(int64_t));
    if (valsum) memset(valsum, 0, (size_t)G * sizeof(double));
    for (int64_t r = 0; r < n; r += B) {
        const int64_t b = n - r < B ? n - r : B;
        CHECK_OK(cterp_synth_sample(s, (uint64_t)r, b, x, &a));
        for (int64_t q = 0; q < a.rowptr[b]; q++) {
            cnt[a.idx[q]]++;
            if (valsum) valsum[a.idx[q]] += a.val[q];
        }
    }
    free(x);
    cterp_synth_acts_free(&a);
}

// max over features of |freq - p| / sigma
static double max_z(const cterp_synth *s, const int64_t *cnt, int64_t n, int only_top) {
    double mz = 0;
    for (int i = 0; i < cterp_synth_n_features(s); i++) {
        if (only_top && cterp_synth_parent(s, i) >= 0) continue;
        const double p = cterp_synth_probs(s)[i], sd = sqrt(p * (1 - p) / (double)n);
        const double z = fabs((double)cnt[i] / (double)n - p) / (sd > 0 ? sd : 1e-12);
        if (z > mz) mz = z;
    }
    return mz;
}

static void flat_config(cterp_synth_config *c) {
    memset(c, 0, sizeof *c);
    c->n_features = 64, c->d = 16;
    c->zipf_exponent = 1.0, c->p_max = 0.3, c->p_min = 0.02;
    c->mag_mean_start = 1.0, c->mag_mean_end = 1.0, c->mag_std_mean = 0.1;
    c->seed = 1;
}

static void test_frequencies(void) {
    const int64_t n = test_sanitized() ? 20000 : 60000;
    int64_t cnt[64];
    double vs[64];
    cterp_synth_config c;
    flat_config(&c);
    cterp_synth *s;
    CHECK_OK(cterp_synth_create(&s, &c));
    CHECK_CLOSE(cterp_synth_probs(s)[0], 0.3, 1e-12, 0);
    CHECK_CLOSE(cterp_synth_probs(s)[63], 0.02, 1e-12, 0);
    CHECK(cterp_synth_probs(s)[1] < cterp_synth_probs(s)[0] &&
          cterp_synth_probs(s)[1] > 0.15); // Zipf 1/2
    count_firing(s, n, cnt, vs);
    double z = max_z(s, cnt, n, 0);
    CHECK_MSG(z < 5, "independent firing: a frequency %.1f sigma from its probability", z);
    CHECK_CLOSE(vs[0] / (double)cnt[0], 1.0, 0.005, 0); // mean magnitude (std 0.1)
    cterp_synth_free(s);
    // the copula keeps the marginals and correlates the firing as F F^T says
    c.corr_rank = 1, c.corr_scale = 0.8;
    CHECK_OK(cterp_synth_create(&s, &c));
    count_firing(s, n, cnt, NULL);
    z = max_z(s, cnt, n, 0);
    CHECK_MSG(z < 5, "correlated firing: a marginal frequency %.1f sigma from its probability", z);
    int R;
    const float *F = cterp_synth_corr_factor(s, &R);
    CHECK(F && R == 1);
    // mean over pairs of sign(F_i F_j) * corr(fire_i, fire_j): positive here, ~0 independent
    double signed_corr[2];
    for (int world = 0; world < 2; world++) {
        cterp_synth_config cw = c;
        if (world) cw.corr_rank = 0;
        cterp_synth *sw;
        CHECK_OK(cterp_synth_create(&sw, &cw));
        const int64_t B = 20000;
        float *x = malloc((size_t)B * 16 * sizeof(float));
        cterp_synth_acts a = {0};
        CHECK_OK(cterp_synth_sample(sw, 0, B, x, &a));
        static char on[20000][64];
        memset(on, 0, sizeof on);
        for (int64_t t = 0; t < B; t++)
            for (int64_t q = a.rowptr[t]; q < a.rowptr[t + 1]; q++) on[t][a.idx[q]] = 1;
        double acc = 0;
        int pairs = 0;
        for (int i = 0; i < 16; i++)
            for (int j = i + 1; j < 16; j++) {
                double pi = 0, pj = 0, pij = 0;
                for (int64_t t = 0; t < B; t++)
                    pi += on[t][i], pj += on[t][j], pij += on[t][i] & on[t][j];
                pi /= B, pj /= B, pij /= B;
                const double cov = pij - pi * pj, sd = sqrt(pi * (1 - pi) * pj * (1 - pj));
                acc += (F[i] * F[j] > 0 ? 1 : -1) * cov / sd;
                pairs++;
            }
        signed_corr[world] = acc / pairs;
        free(x);
        cterp_synth_acts_free(&a);
        cterp_synth_free(sw);
    }
    // (the standard error of the mean over 120 pairs of 20000 rows is about 0.001)
    CHECK_MSG(signed_corr[0] > 0.02 && fabs(signed_corr[1]) < 0.01,
              "signed firing correlation: %.4f correlated, %.4f independent", signed_corr[0],
              signed_corr[1]);
    cterp_synth_free(s);
}

static void hier_config(cterp_synth_config *c, int exclusive) {
    memset(c, 0, sizeof *c);
    c->n_features = 60, c->d = 24;
    c->zipf_exponent = 0.5, c->p_max = 0.4, c->p_min = 0.05;
    c->hier_roots = 4, c->hier_branching = 3, c->hier_depth = 2, c->hier_exclusive = exclusive;
    c->hier_compensate = 1;
    c->corr_rank = 2, c->corr_scale = 0.2;
    c->mag_mean_start = 1.0, c->mag_mean_end = 0.5, c->mag_std_mean = 0.3, c->mag_std_std = 0.1;
    c->seed = 3;
}

static void test_hierarchy(void) {
    for (int exclusive = 1; exclusive >= 0; exclusive--) {
        cterp_synth_config c;
        hier_config(&c, exclusive);
        cterp_synth *s;
        CHECK_OK(cterp_synth_create(&s, &c));
        // breadth first: roots 0..3, their children 4..15, grandchildren 16..51, the rest free
        CHECK(cterp_synth_parent(s, 3) == -1 && cterp_synth_parent(s, 4) == 0 &&
              cterp_synth_parent(s, 7) == 1);
        CHECK(cterp_synth_parent(s, 16) == 4 && cterp_synth_parent(s, 51) == 15 &&
              cterp_synth_parent(s, 52) == -1);
        CHECK(cterp_synth_exclusive(s, 5) == exclusive && cterp_synth_exclusive(s, 0) == 0);
        const int64_t B = test_sanitized() ? 5000 : 20000;
        float *x = malloc((size_t)B * c.d * sizeof(float));
        cterp_synth_acts a = {0};
        CHECK_OK(cterp_synth_sample(s, 0, B, x, &a));
        int64_t orphans = 0, clashes = 0, child_fires = 0, sib_pairs = 0, unsorted = 0;
        for (int64_t t = 0; t < B; t++) {
            char on[60] = {0};
            for (int64_t q = a.rowptr[t]; q < a.rowptr[t + 1]; q++) {
                on[a.idx[q]] = 1;
                if (q > a.rowptr[t] && a.idx[q] <= a.idx[q - 1]) unsorted++;
            }
            int per_parent[60] = {0};
            for (int i = 0; i < 60; i++) {
                if (!on[i] || cterp_synth_parent(s, i) < 0) continue;
                child_fires++;
                orphans += !on[cterp_synth_parent(s, i)];
                per_parent[cterp_synth_parent(s, i)]++;
            }
            for (int i = 0; i < 60; i++) {
                clashes += per_parent[i] > 1 && exclusive;
                sib_pairs += per_parent[i] > 1;
            }
        }
        CHECK_MSG(orphans == 0, "%lld children active without their parent", (long long)orphans);
        CHECK_MSG(clashes == 0, "%lld rows with two exclusive siblings active", (long long)clashes);
        CHECK(unsorted == 0);
        CHECK_MSG(child_fires > B / 10, "only %lld child firings", (long long)child_fires);
        if (!exclusive)
            CHECK_MSG(sib_pairs > 50, "non-exclusive siblings co-fired only %lld times",
                      (long long)sib_pairs);
        // the roots and free features are untouched by the hierarchy: their own probabilities
        int64_t cnt[60];
        count_firing(s, B, cnt, NULL);
        double z = max_z(s, cnt, B, 1);
        CHECK_MSG(z < 5, "a top-level frequency %.1f sigma from its probability", z);
        // compensation: a child's drawn probability is raised by 1/p(parent) (and the exclusion)
        CHECK(cterp_synth_probs(s)[4] > 0.3);
        free(x);
        cterp_synth_acts_free(&a);
        cterp_synth_free(s);
    }
}

// ---- the fast sampler against a naive one (SAELens's procedure: every feature drawn through
// the copula, then children gated by their parents and exclusive siblings reduced to one) ----
static double ref_phi_inv(double p) { // bisection on erfc: slow, independent of synth.c's
    double lo = -40, hi = 40;
    for (int it = 0; it < 200; it++) {
        const double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

static void test_against_naive(void) {
    cterp_synth_config c;
    hier_config(&c, 1);
    c.corr_scale = 0.6;
    c.hier_compensate = 0; // (compensated children of this world fire with p 1: nothing to see)
    c.mag_std_mean = 0, c.mag_std_std = 0; // every drawn feature has a positive value
    cterp_synth *s;
    CHECK_OK(cterp_synth_create(&s, &c));
    enum { G = 60 };
    int R;
    const float *F = cterp_synth_corr_factor(s, &R);
    const double *p = cterp_synth_probs(s);
    double thr[G], sd[G];
    for (int i = 0; i < G; i++) {
        double f2 = 0;
        for (int q = 0; q < R; q++) f2 += (double)F[i * R + q] * F[i * R + q];
        sd[i] = sqrt(1 - f2);
        thr[i] = p[i] >= 1 ? -INFINITY : ref_phi_inv(1 - p[i]);
    }
    const int64_t n = test_sanitized() ? 8000 : 30000;
    int64_t fast[G], naive[G] = {0};
    double l0_fast = 0, l0_naive = 0;
    count_firing(s, n, fast, NULL);
    rng_t r;
    rng_seed(&r, 77);
    for (int64_t t = 0; t < n; t++) {
        double eps[8];
        char on[G];
        for (int q = 0; q < R; q++) eps[q] = rng_normal(&r);
        for (int i = 0; i < G; i++) {
            double z = sd[i] * rng_normal(&r);
            for (int q = 0; q < R; q++) z += F[i * R + q] * eps[q];
            on[i] = z > thr[i];
        }
        for (int i = 0; i < G;) { // ascending: parents (lower indices) are final before children
            const int par = cterp_synth_parent(s, i);
            if (par < 0) {
                i++;
                continue;
            }
            int e = i, act[G], na = 0;
            while (e < G && cterp_synth_parent(s, e) == par) e++;
            for (int j = i; j < e; j++) {
                if (!on[par]) on[j] = 0;
                if (on[j]) act[na++] = j;
            }
            if (cterp_synth_exclusive(s, i) && na > 1) {
                const int win = act[rng_below(&r, (uint64_t)na)];
                for (int k = 0; k < na; k++) on[act[k]] = act[k] == win;
            }
            i = e;
        }
        for (int i = 0; i < G; i++) naive[i] += on[i];
    }
    double mz = 0;
    int worst = -1;
    for (int i = 0; i < G; i++) {
        const double pf = (double)fast[i] / n, pn = (double)naive[i] / n, pool = 0.5 * (pf + pn);
        const double z =
            pool > 0 && pool < 1 ? fabs(pf - pn) / sqrt(pool * (1 - pool) * 2.0 / n) : 0;
        if (z > mz) mz = z, worst = i;
        l0_fast += pf, l0_naive += pn;
    }
    CHECK_MSG(mz < 5, "feature %d fires at %.4f (fast) vs %.4f (naive): %.1f sigma", worst,
              worst >= 0 ? (double)fast[worst] / n : 0, worst >= 0 ? (double)naive[worst] / n : 0,
              mz);
    CHECK_CLOSE(l0_fast, l0_naive, 0.03 * l0_naive, 0);
    CHECK(fast[20] > 0 && naive[20] > 0); // a grandchild fires in both
    cterp_synth_free(s);
}

// hier_scale_children: a child's value follows its parent's (value / mean magnitude)
static void test_scale_children(void) {
    double corr[2];
    for (int scale = 0; scale < 2; scale++) {
        cterp_synth_config c;
        hier_config(&c, 0);
        c.hier_scale_children = scale;
        c.mag_std_mean = 0.3, c.mag_std_std = 0;
        cterp_synth *s;
        CHECK_OK(cterp_synth_create(&s, &c));
        const int64_t B = 20000;
        float *x = malloc((size_t)B * c.d * sizeof(float));
        cterp_synth_acts a = {0};
        CHECK_OK(cterp_synth_sample(s, 0, B, x, &a));
        double sp = 0, sc = 0, spp = 0, scc = 0, spc = 0;
        int64_t n = 0;
        for (int64_t t = 0; t < B; t++) { // rows where root 0 and its first child 4 are active
            double pv = 0, cv = 0;
            for (int64_t q = a.rowptr[t]; q < a.rowptr[t + 1]; q++) {
                if (a.idx[q] == 0) pv = a.val[q];
                if (a.idx[q] == 4) cv = a.val[q];
            }
            if (pv > 0 && cv > 0)
                sp += pv, sc += cv, spp += pv * pv, scc += cv * cv, spc += pv * cv, n++;
        }
        const double cov = spc / n - (sp / n) * (sc / n);
        corr[scale] = cov / sqrt((spp / n - (sp / n) * (sp / n)) * (scc / n - (sc / n) * (sc / n)));
        CHECK_MSG(n > 1000, "root 0 and child 4 together in only %lld rows", (long long)n);
        free(x);
        cterp_synth_acts_free(&a);
        cterp_synth_free(s);
    }
    CHECK_MSG(fabs(corr[0]) < 0.05 && corr[1] > 0.5,
              "parent-child value correlation: %.3f unscaled, %.3f scaled", corr[0], corr[1]);
}

static void test_determinism(void) {
    cterp_synth_config c;
    hier_config(&c, 1);
    cterp_synth *s1, *s2;
    CHECK_OK(cterp_synth_create(&s1, &c));
    CHECK_OK(cterp_synth_create(&s2, &c));
    const int D = c.d, n = 300;
    float *a = malloc((size_t)n * D * sizeof(float)), *b = malloc((size_t)n * D * sizeof(float));
    CHECK_OK(cterp_synth_sample(s1, 1000, n, a, NULL));
    CHECK_OK(cterp_synth_sample(s2, 1000, 7, b, NULL)); // any batching, another world object
    CHECK_OK(cterp_synth_sample(s2, 1007, 100, b + 7 * D, NULL));
    CHECK_OK(cterp_synth_sample(s2, 1107, 193, b + 107 * D, NULL));
    CHECK(!memcmp(a, b, (size_t)n * D * sizeof(float)));
    const int nt = omp_get_max_threads();
    omp_set_num_threads(nt > 1 ? 1 : 2); // any thread count
    CHECK_OK(cterp_synth_sample(s2, 1000, n, b, NULL));
    omp_set_num_threads(nt);
    CHECK(!memcmp(a, b, (size_t)n * D * sizeof(float)));
    // the source: its batches are the stream's rows; its state resumes it
    cterp_act_source src;
    CHECK_OK(cterp_synth_source(&src, s1));
    CHECK(src.d_in == D);
    CHECK_OK(cterp_synth_sample(s1, 0, 128, a, NULL));
    CHECK_OK(src.next(src.ctx, b, 64));
    CHECK_OK(src.next(src.ctx, b + 64 * D, 64));
    CHECK(!memcmp(a, b, (size_t)128 * D * sizeof(float)));
    uint64_t st[4];
    CHECK(src.get_state(src.ctx, st, 4) == 1 && st[0] == 128);
    CHECK(src.set_state(src.ctx, st, 1, 100) == CTERP_EFORMAT); // more rows than were taken
    st[0] = 64;
    CHECK_OK(src.set_state(src.ctx, st, 1, 128));
    CHECK_OK(src.next(src.ctx, b, 64));
    CHECK(!memcmp(a + 64 * D, b, (size_t)64 * D * sizeof(float)));
    cterp_act_source_free(&src);
    // another seed, another world
    c.seed++;
    cterp_synth *s3;
    CHECK_OK(cterp_synth_create(&s3, &c));
    CHECK_OK(cterp_synth_sample(s3, 0, 128, b, NULL));
    CHECK(memcmp(a, b, (size_t)128 * D * sizeof(float)) != 0);
    cterp_synth_free(s3);
    cterp_synth_free(s1);
    cterp_synth_free(s2);
    free(a), free(b);
}

static void test_toy_and_presets(void) {
    // the toy preset is toy.c's world and stream
    cterp_toy_config tc;
    cterp_toy_config_default(&tc);
    tc.n_features = 50, tc.d = 20;
    cterp_synth *s;
    cterp_toy *t;
    CHECK_OK(cterp_synth_create_toy(&s, &tc));
    CHECK_OK(cterp_toy_create(&t, &tc));
    CHECK(!memcmp(cterp_synth_features(s), cterp_toy_features(t), 50 * 20 * sizeof(float)));
    float xa[64 * 20], xb[64 * 20], coef[64 * 50];
    cterp_synth_acts a = {0};
    CHECK_OK(cterp_synth_sample(s, 128, 64, xa, &a)); // batch 2
    cterp_toy_sample(t, 2, xb, 64, coef);
    CHECK(!memcmp(xa, xb, sizeof xa));
    int ok = 1;
    for (int r = 0; r < 64; r++) {
        int64_t q = a.rowptr[r];
        for (int i = 0; i < 50; i++)
            if (coef[r * 50 + i] > 0)
                ok &= q < a.rowptr[r + 1] && a.idx[q] == i && a.val[q] == coef[r * 50 + i], q++;
        ok &= q == a.rowptr[r + 1];
    }
    CHECK(ok);
    CHECK(cterp_synth_sample(s, 100, 64, xa, NULL) == CTERP_EINVAL);
    cterp_synth_acts_free(&a);
    cterp_toy_free(t);
    cterp_synth_free(s);
    // presets and bad input
    cterp_synth_config c;
    cterp_train_config tr;
    int toy;
    cterp_train_config_default(&tr);
    CHECK_OK(cterp_synth_preset("synth16k", &c, &toy, &tr));
    CHECK(!toy && c.n_features == 16384 && c.d == 768 && tr.d_sae == 4096 && tr.k == 25);
    CHECK(cterp_synth_preset("synth17k", &c, &toy, &tr) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "'synth17k'"));
    if (!test_sanitized()) { // SynthSAEBench-16k: about 34 true features a sample, 25 of the first
                             // 4096
        CHECK_OK(cterp_synth_preset("synth16k", &c, &toy, &tr));
        CHECK_OK(cterp_synth_create(&s, &c));
        float *x = malloc((size_t)2000 * 768 * sizeof(float));
        CHECK_OK(cterp_synth_sample(s, 0, 2000, x, &a));
        int64_t first = 0;
        for (int64_t q = 0; q < a.rowptr[2000]; q++) first += a.idx[q] < 4096;
        const double l0 = a.rowptr[2000] / 2000.0, l0f = first / 2000.0;
        CHECK_MSG(l0 > 32 && l0 < 37 && l0f > 23.5 && l0f < 26.5,
                  "synth16k true l0 %.2f (first 4096: %.2f)", l0, l0f);
        free(x);
        cterp_synth_acts_free(&a);
        cterp_synth_free(s);
    }
    CHECK_OK(cterp_synth_preset("tiny", &c, &toy, &tr));
    c.n_features = 0;
    CHECK(cterp_synth_create(&s, &c) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "n_features: got 0"));
    CHECK_OK(cterp_synth_preset("tiny", &c, &toy, &tr));
    c.p_min = 0.5, c.p_max = 0.1;
    CHECK(cterp_synth_create(&s, &c) == CTERP_EINVAL && strstr(cterp_last_error(), "p_min"));
    CHECK_OK(cterp_synth_preset("tiny", &c, &toy, &tr));
    c.corr_rank = -1;
    CHECK(cterp_synth_create(&s, &c) == CTERP_EINVAL && strstr(cterp_last_error(), "corr_rank"));
}

int main(void) {
    test_assignment();
    test_mcc();
    test_eval_known();
    test_frequencies();
    test_hierarchy();
    test_against_naive();
    test_scale_children();
    test_determinism();
    test_toy_and_presets();
    return test_done();
}
