// The kernel variants: each one this CPU runs against the generic one (the same bits: the
// templates fix the order of every sum and nothing contracts to FMA) and against naive twins;
// forcing a variant the CPU lacks is refused by name; the toy trained under every variant gives
// the same SAE, bit for bit.
#include <stdint.h>

#include "core/platform.h"
#include "core/rng.h"
#include "cterp/isa.h"
#include "cterp/toy.h"
#include "cterp/train.h"
#include "kern/kern.h"
#include "model/quant.h"
#include "sae/kernels.h"
#include "test.h"
#include "xq_rows.h"

static float *randn(uint64_t seed, int64_t n, float scale) {
    float *x = malloc((size_t)n * sizeof(float));
    rng_t r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = scale * rng_normal(&r);
    return x;
}

static const kern_variant *variant(const char *name) {
    int n;
    const kern_variant *v = kern_variants(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, name)) return &v[i];
    return NULL;
}

static int same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

// MLP activations: each variant equal to generic bit for bit, and within 1e-6 relative (plus a
// tiny absolute floor) of the libm formula in double, over the whole range incl. the exp clamps
static void test_act(const kern_variant *v, const kern_variant *g) {
    const int64_t n = 4099;
    float *x = randn(91, n, 4.0f), *gt = randn(92, n, 1.0f);
    for (int64_t i = 0; i < 40; i++) x[i] = -100.0f + 5.0f * (float)i; // -100 .. 95: the clamps
    x[40] = 0.0f, x[41] = -0.0f, x[42] = 1e-30f, x[43] = -1e-30f;
    float *a1 = malloc(n * 4), *a0 = malloc(n * 4), *b1 = malloc(n * 4), *b0 = malloc(n * 4);
    double worst_s = 0, worst_g = 0;
    for (int pass = 0; pass < 3; pass++) {
        memcpy(a1, x, n * 4), memcpy(a0, x, n * 4);
        const float *gg = pass == 2 ? NULL : gt;
        if (pass == 0) v->vec->silu_mul(a1, gg, n), g->vec->silu_mul(a0, gg, n);
        else v->vec->gelu_mul(a1, gg, n), g->vec->gelu_mul(a0, gg, n);
        CHECK_MSG(same_bits(a1, a0, n * 4), "%s %s pass %d", v->name, pass ? "gelu" : "silu", pass);
        for (int64_t i = 0; i < n; i++) {
            double xi = x[i], mul = gg ? gg[i] : 1.0;
            double ref = pass == 0 ? xi / (1.0 + exp(-xi)) * mul
                                   : 0.5 * xi * (1.0 + tanh(0.7978845608028654 * (xi + 0.044715 * xi * xi * xi))) * mul;
            double err = fabs(a1[i] - ref) / (fabs(ref) + 1e-30 + 1e-6 * fabs(mul));
            if (pass == 0 && err > worst_s) worst_s = err;
            if (pass > 0 && err > worst_g) worst_g = err;
        }
    }
    CHECK_MSG(worst_s < 2e-6 && worst_g < 2e-6, "%s activations: silu rel err %.3g, gelu %.3g", v->name, worst_s, worst_g);
    memcpy(b1, x, n * 4), memcpy(b0, x, n * 4);
    free(x), free(gt), free(a1), free(a0), free(b1), free(b0);
}

// vector primitives: every length class (tails of 1..31, the 8-wide and 32-wide bodies)
static void test_vec(const kern_variant *v, const kern_variant *g) {
    static const int64_t lens[] = {0, 1, 7, 8, 15, 16, 31, 32, 33, 100, 768, 2049};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        float *a = randn(1 + n, n + 1, 1.0f), *b = randn(2 + n, n + 1, 0.5f);
        double ref = 0, rsq = 0, rdist = 0;
        for (int64_t i = 0; i < n; i++)
            ref += (double)a[i] * b[i], rsq += (double)a[i] * a[i], rdist += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        const float d1 = v->vec->dot(a, b, n), d0 = g->vec->dot(a, b, n);
        CHECK_MSG(same_bits(&d1, &d0, 4), "%s dot n=%lld: %.9g vs generic %.9g", v->name, (long long)n, d1, d0);
        CHECK_CLOSE(d1, ref, 1e-5 * (1 + sqrt(rsq)), 1e-5);
        const double s1 = v->vec->sumsq(a, n), s0 = g->vec->sumsq(a, n);
        CHECK_MSG(same_bits(&s1, &s0, 8), "%s sumsq n=%lld", v->name, (long long)n);
        CHECK_CLOSE(s1, rsq, 1e-9, 1e-12);
        const double q1 = v->vec->sqdist(a, b, n), q0 = g->vec->sqdist(a, b, n);
        CHECK_MSG(same_bits(&q1, &q0, 8), "%s sqdist n=%lld", v->name, (long long)n);
        CHECK_CLOSE(q1, rdist, 1e-9, 1e-12);
        float *y1 = randn(3 + n, n + 1, 1.0f), *y0 = randn(3 + n, n + 1, 1.0f);
        v->vec->axpy(y1, 0.37f, a, n);
        g->vec->axpy(y0, 0.37f, a, n);
        CHECK_MSG(same_bits(y1, y0, (size_t)n * 4), "%s axpy n=%lld", v->name, (long long)n);
        // Adam: parameters and both moments
        float *p1 = randn(4 + n, n + 1, 1.0f), *p0 = randn(4 + n, n + 1, 1.0f);
        float *m1 = randn(5 + n, n + 1, 0.1f), *m0 = randn(5 + n, n + 1, 0.1f);
        float *w1 = randn(6 + n, n + 1, 0.1f), *w0 = randn(6 + n, n + 1, 0.1f);
        for (int64_t i = 0; i < n; i++) w1[i] = w0[i] = w0[i] * w0[i];
        const adam_coef c = {0.9f, 0.999f, 1e-8f, 1e-3f / 0.1f, 1.0f / 0.001f, 0.5f};
        v->vec->adam(p1, a, m1, w1, (size_t)n, &c);
        g->vec->adam(p0, a, m0, w0, (size_t)n, &c);
        CHECK_MSG(same_bits(p1, p0, (size_t)n * 4) && same_bits(m1, m0, (size_t)n * 4) &&
                      same_bits(w1, w0, (size_t)n * 4), "%s adam n=%lld", v->name, (long long)n);
        free(a), free(b), free(y1), free(y0), free(p1), free(p0), free(m1), free(m0), free(w1), free(w0);
    }
    test_act(v, g);
}

// top-k: against the naive twin (ties included: values rounded to a few levels)
static void test_topk(const kern_variant *v) {
    static const int shapes[][2] = {{10, 3}, {2048, 16}, {24576, 32}, {16384, 64}, {3000, 300}, {100000, 8}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int N = shapes[si][0], K = shapes[si][1];
        for (int ties = 0; ties < 2; ties++) {
            float *z = randn(77 + si + 10 * ties, N, 1.0f);
            if (ties)
                for (int i = 0; i < N; i++) z[i] = roundf(z[i] * 4) / 4;
            int32_t *i1 = malloc((size_t)K * 4), *i0 = malloc((size_t)K * 4);
            float *v1 = malloc((size_t)K * 4), *v0 = malloc((size_t)K * 4), *scr = malloc((size_t)N * 4);
            const int c1 = v->topk->select(i1, v1, z, N, K, 0.0f), c0 = topk_row_naive(i0, v0, z, N, K);
            CHECK_MSG(c1 == c0 && same_bits(i1, i0, (size_t)c0 * 4) && same_bits(v1, v0, (size_t)c0 * 4),
                      "%s topk N=%d K=%d ties=%d", v->name, N, K, ties);
            // unsorted: the same set as select(-inf), in index order
            const int u = v->topk->select_unsorted(i1, v1, z, N, K, scr);
            const int s = v->topk->select(i0, v0, z, N, K, -INFINITY);
            int ok = u == s;
            for (int j = 0; ok && j < u; j++) { // every unsorted pick is among the sorted ones
                int found = 0;
                for (int q = 0; q < s && !found; q++) found = i0[q] == i1[j];
                ok = found && (j == 0 || i1[j] > i1[j - 1]);
            }
            CHECK_MSG(ok, "%s topk unsorted N=%d K=%d ties=%d", v->name, N, K, ties);
            free(z), free(i1), free(i0), free(v1), free(v0), free(scr);
        }
    }
}

// quantized rows: dequantization and dots, the same bits as generic for every type
static void test_quant(const kern_variant *v, const kern_variant *g) {
    static const uint32_t types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,    GGML_TYPE_BF16,
                                     GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,   GGML_TYPE_Q4_1,
                                     GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,   GGML_TYPE_Q2_K,
                                     GGML_TYPE_Q3_K, GGML_TYPE_Q4_K,   GGML_TYPE_Q5_K,
                                     GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};
    const int64_t n = 1024;
    float *x = randn(9, n, 1.0f), *y = randn(10, n, 1.0f), *d1 = malloc(n * 4), *d0 = malloc(n * 4);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        uint8_t *row = malloc(quant_row_bytes(t, n));
        quant_quantize_row(t, x, row, n);
        v->quant->dequant_row(t, row, d1, n);
        g->quant->dequant_row(t, row, d0, n);
        CHECK_MSG(same_bits(d1, d0, (size_t)n * 4), "%s dequant type %u", v->name, t);
        double ref = 0;
        for (int64_t i = 0; i < n; i++) ref += (double)d0[i] * y[i];
        const float p1 = v->quant->dot_row(t, row, y, n), p0 = g->quant->dot_row(t, row, y, n);
        CHECK_MSG(same_bits(&p1, &p0, 4), "%s dot type %u: %.9g vs %.9g", v->name, t, p1, p0);
        CHECK_CLOSE(p1, ref, 1e-3, 1e-4);
        free(row);
    }
    free(x), free(y), free(d1), free(d0);
    // the integer dots: x prepared (every array) and the dot of random rows, the same bits as
    // generic for every length class (the kernels' 2-, 4- and 8-block steps and their tails)
    enum { NMAX = 256 * 12 };
    float *xv = randn(11, NMAX, 1.0f);
    for (int i = 64; i < 96; i++) xv[i] *= 1e-3f;
    for (int i = 128; i < 160; i++) xv[i] = 0.0f;
    xv[200] = -40.0f; // an outlier (and about 0.4% of xl round to ±128, clamped to ±127)
    size_t bytes = quant_xq_bytes(NMAX);
    uint8_t *b1 = malloc(bytes), *b0 = malloc(bytes), *row = malloc(quant_row_bytes(GGML_TYPE_Q8_0, NMAX));
    for (size_t ti = 0; ti < sizeof XQ_TYPES / sizeof XQ_TYPES[0]; ti++) {
        const uint32_t t = XQ_TYPES[ti];
        int64_t ns[16];
        const int nc = xq_lengths(t, ns);
        for (int c = 0; c < nc; c++) {
            const int64_t n = ns[c];
            quant_xq q1, q0;
            quant_xq_prepare(&q1, b1, xv, n), quant_xq_prepare(&q0, b0, xv, n); // the layout
            v->quant->prepare_x(&q1), g->quant->prepare_x(&q0);
            CHECK_MSG(same_bits(q1.xh, q0.xh, n) && same_bits(q1.xl, q0.xl, n) &&
                          same_bits(q1.xs4, q0.xs4, n) && same_bits(q1.sx, q0.sx, n / 8) &&
                          same_bits(q1.xsum, q0.xsum, n / 8),
                      "%s prepare_x n=%lld", v->name, (long long)n);
            xq_random_row(t, row, n, 7 * ti + (uint64_t)c);
            const float p1 = v->quant->dot_xq(t, row, &q1), p0 = g->quant->dot_xq(t, row, &q0);
            CHECK_MSG(same_bits(&p1, &p0, 4), "%s dot_xq %s n=%lld: %.9g vs %.9g", v->name,
                      gguf_type_name(t), (long long)n, p1, p0);
        }
    }
    // the matvec: 7 rows (each kernel's runs of rows and a tail) at an odd stride, short rows
    // (under 1 KB: 4 or 2 at a time) and long (4 or 2), and F16's and BF16's
    free(xv), free(b1), free(b0);
    xv = randn(12, 8192, 1.0f);
    b1 = malloc(quant_xq_bytes(8192)), b0 = malloc(quant_xq_bytes(8192));
    for (size_t ti = 0; ti <= 2 * (sizeof XQ_TYPES / sizeof XQ_TYPES[0]) + 1; ti++) {
        const size_t nx = 2 * (sizeof XQ_TYPES / sizeof XQ_TYPES[0]);
        const int f16 = ti >= nx; // F16, then BF16: the f32 dot of the exact weights
        const uint32_t t = !f16 ? XQ_TYPES[ti / 2] : ti == nx ? GGML_TYPE_F16 : GGML_TYPE_BF16;
        // F16: the 32-, 8- and 1-wide tails; long rows: 2 KB or more (Q3_K's 4096 are 1760 bytes)
        const int64_t n = f16           ? 1000 + 37
                          : ti % 2 == 0 ? 512
                          : quant_row_bytes(t, 4096) >= 2048 ? 4096 : 8192;
        const size_t rb = quant_row_bytes(t, n) + 3;
        uint8_t *W = malloc(7 * rb);
        for (int i = 0; i < 7; i++)
            if (f16)
                quant_quantize_row(t, xv + 1024 + 100 * i, W + i * rb, n);
            else
                xq_random_row(t, W + i * rb, n, 50 + 7 * ti + (uint64_t)i);
        if (!f16) CHECK(quant_row_bytes(t, n) >= 2048 || ti % 2 == 0);
        quant_xq q1, q0;
        quant_xq_prepare(&q1, b1, xv, f16 ? 1024 : n), quant_xq_prepare(&q0, b0, xv, f16 ? 1024 : n);
        if (f16) q1.x = q0.x = xv + 7, q1.n = q0.n = n, q1.xh = q0.xh = NULL; // the f32 dot only
        for (int group = QUANT_MV_AUTO; group <= QUANT_MV_SIDE; group++) { // every way of reading
            float y1[7], y0[7];
            v->quant->matvec_xq(y1, t, W, rb, 7, &q1, group);
            g->quant->matvec_xq(y0, t, W, rb, 7, &q0, QUANT_MV_AUTO);
            CHECK_MSG(same_bits(y1, y0, sizeof y1), "%s matvec_xq %s group %d", v->name,
                      gguf_type_name(t), group);
        }
        free(W);
    }
    free(xv), free(b1), free(b0), free(row);
}

static void test_forcing(void) {
    // an unknown name: refused, naming what this build has; the variant in use stays
    const char *before = cterp_isa_name();
    CHECK(cterp_isa_set("sse9") == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "CTERP_ISA=sse9") && strstr(cterp_last_error(), "generic"), "%s",
              cterp_last_error());
    CHECK(!strcmp(cterp_isa_name(), before));
    // a variant this CPU lacks: pretend the CPU has only the baseline (no x86-64-v3 / dotprod)
    int n;
    const kern_variant *v = kern_variants(&n);
    kern_feature_mask = CPU_X86_64_V2 | CPU_NEON;
    CHECK_OK(cterp_isa_set("generic"));
    for (int i = 0; i < n; i++) {
        if (!strcmp(v[i].name, "generic")) continue;
        CHECK(!v[i].runs_here());
        CHECK(cterp_isa_set(v[i].name) == CTERP_EINVAL);
        CHECK_MSG(strstr(cterp_last_error(), "cannot run") && strstr(cterp_last_error(), v[i].what), "%s",
                  cterp_last_error());
        CHECK(!strcmp(cterp_isa_name(), "generic"));
    }
    CHECK_OK(cterp_isa_set("auto"));
    CHECK(!strcmp(cterp_isa_name(), "generic")); // auto: the best of what the CPU "has"
    kern_feature_mask = UINT32_MAX;
    CHECK_OK(cterp_isa_set("auto"));
    CHECK(!strcmp(cterp_isa_name(), v[0].runs_here() ? v[0].name : cterp_isa_name()));
    // the real CPU: every variant it cannot run is refused
    for (int i = 0; i < n; i++)
        CHECK(v[i].runs_here() ? cterp_isa_set(v[i].name) == CTERP_OK : cterp_isa_set(v[i].name) == CTERP_EINVAL);
    CHECK_OK(cterp_isa_set("auto"));
    printf("cpu: %s; variants:", cterp_cpu_name());
    for (int i = 0; i < n; i++) printf(" %s%s", v[i].name, v[i].runs_here() ? "" : " (not here)");
    printf("; auto: %s\n", cterp_isa_name());
}

// under ASan+UBSan (~10x slower) or qemu-user (the aarch64 cross build: ~50x): fewer steps
static int slow_run(void) { return getenv("CTERP_SANITIZED") || getenv("CTERP_EMULATED"); }

// the toy trained under a variant: the SAE's parameters and the final metrics
typedef struct {
    float *params;
    size_t n;
    double mmcs, ev, l0;
} toy_result;

static toy_result train_toy(cterp_arch arch, int bf16) {
    toy_result r = {0};
    cterp_toy_config tc;
    cterp_toy_config_default(&tc);
    tc.n_features = 64, tc.d = 32, tc.avg_active = 3, tc.decay = 0.98, tc.mag_min = 0.5f, tc.mag_max = 1.5f, tc.seed = 5;
    cterp_toy *toy;
    cterp_act_source src;
    if (cterp_toy_create(&toy, &tc) || cterp_toy_source(&src, toy)) return r;
    cterp_train_config c;
    cterp_train_config_default(&c);
    c.architecture = arch, c.d_sae = 128, c.k = 4, c.batch_size = 512;
    c.training_steps = slow_run() ? 100 : 300;
    c.log_every = 100, c.dead_feature_window = 50, c.encoder_bf16 = bf16;
    cterp_trainer *t;
    if (cterp_trainer_create(&t, &c, &src) == CTERP_OK && cterp_trainer_run(t, c.training_steps) == CTERP_OK) {
        const cterp_sae *sae = cterp_trainer_sae(t);
        r.n = (size_t)(2 * sae->d_sae * sae->d_in + sae->d_sae + sae->d_in);
        r.params = malloc(r.n * sizeof(float));
        memcpy(r.params, sae->W_enc, (size_t)(sae->d_sae * sae->d_in) * 4);
        memcpy(r.params + sae->d_sae * sae->d_in, sae->W_dec, (size_t)(sae->d_sae * sae->d_in) * 4);
        memcpy(r.params + 2 * sae->d_sae * sae->d_in, sae->b_enc, (size_t)sae->d_sae * 4);
        memcpy(r.params + 2 * sae->d_sae * sae->d_in + sae->d_sae, sae->b_dec, (size_t)sae->d_in * 4);
        r.mmcs = cterp_mmcs(cterp_toy_features(toy), tc.n_features, sae->W_dec, sae->d_sae, tc.d, NULL);
        const cterp_train_metrics *m = cterp_trainer_last_metrics(t);
        r.ev = m->explained_variance, r.l0 = m->l0;
        cterp_trainer_free(t);
    } else {
        fprintf(stderr, "toy training failed: %s\n", cterp_last_error());
    }
    cterp_act_source_free(&src);
    cterp_toy_free(toy);
    return r;
}

static void test_toy_across_variants(void) {
    static const cterp_arch archs[] = {CTERP_ARCH_TOPK, CTERP_ARCH_STANDARD, CTERP_ARCH_JUMPRELU, CTERP_ARCH_BATCHTOPK};
    int n;
    const kern_variant *v = kern_variants(&n);
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        CHECK_OK(cterp_isa_set("generic"));
        toy_result ref = train_toy(archs[a], 0);
        CHECK(ref.params != NULL && ref.mmcs > (archs[a] == CTERP_ARCH_JUMPRELU || slow_run() ? 0.5 : 0.9)); // 300 steps
        for (int i = 0; i < n; i++) {
            if (!v[i].runs_here() || !strcmp(v[i].name, "generic")) continue;
            CHECK_OK(cterp_isa_set(v[i].name));
            toy_result r = train_toy(archs[a], 0);
            CHECK_MSG(r.params && r.n == ref.n && same_bits(r.params, ref.params, r.n * 4),
                      "%s %s: SAE differs from generic's (mmcs %.4f vs %.4f)", v[i].name,
                      cterp_arch_name(archs[a]), r.mmcs, ref.mmcs);
            CHECK(r.mmcs == ref.mmcs && r.ev == ref.ev && r.l0 == ref.l0);
            printf("toy %-9s %-10s mmcs %.4f ev %.4f l0 %.2f\n", cterp_arch_name(archs[a]), v[i].name, r.mmcs, r.ev, r.l0);
            free(r.params);
        }
        printf("toy %-9s %-10s mmcs %.4f ev %.4f l0 %.2f\n", cterp_arch_name(archs[a]), "generic", ref.mmcs, ref.ev, ref.l0);
        free(ref.params);
    }
    // the bf16 encoder where a variant has it: chooses on other values, so only close
    for (int i = 0; i < n; i++) {
        if (!v[i].runs_here() || !v[i].bf16) continue;
        CHECK_OK(cterp_isa_set(v[i].name));
        toy_result r = train_toy(CTERP_ARCH_TOPK, 1), f = train_toy(CTERP_ARCH_TOPK, 0);
        CHECK_MSG(r.params && fabs(r.mmcs - f.mmcs) < 0.02 && fabs(r.ev - f.ev) < 0.02, "%s bf16: mmcs %.4f vs f32 %.4f, ev %.4f vs %.4f",
                  v[i].name, r.mmcs, f.mmcs, r.ev, f.ev);
        printf("toy topk      %-10s bf16 encoder: mmcs %.4f ev %.4f (f32 %.4f %.4f)\n", v[i].name, r.mmcs, r.ev, f.mmcs, f.ev);
        free(r.params), free(f.params);
    }
    CHECK_OK(cterp_isa_set("auto"));
}

int main(void) {
    CHECK_OK(cterp_isa_init());
    const kern_variant *g = variant("generic");
    CHECK(g != NULL);
    int n;
    const kern_variant *v = kern_variants(&n);
    for (int i = 0; i < n; i++) {
        if (!v[i].runs_here()) {
            printf("skip %s: this CPU cannot run it (compiled, not run)\n", v[i].name);
            continue;
        }
        test_vec(&v[i], g);
        test_topk(&v[i]);
        test_quant(&v[i], g);
    }
    test_forcing();
    // CTERP_TEST_QUICK: the kernels only (CI also runs this binary on emulated older CPUs,
    // qemu-x86_64 -cpu Haswell / Nehalem, where training the toy would take many minutes)
    if (!getenv("CTERP_TEST_QUICK")) test_toy_across_variants();
    return test_done();
}
