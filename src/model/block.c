// The transformer block every family runs, built from shared parts: pre-norm, attention (GQA,
// RoPE of either layout, qk-norm, sliding windows, soft-capping), optional post-norms, and the
// MLP (GELU, or a GELU/SiLU gate, separate or fused). Batched matmuls run single-threaded SGEMMs
// on runs of MATMUL_COLS weight rows (dequantized into f32 first where quantized), the runs split
// over the threads; a single token uses quant_matvec_xq on runs of rows.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "kern/kern.h"
#include "model/quant.h"

// ---- kernels ------------------------------------------------------------------------------

// The batched matmul's split: y's columns (W's rows) in runs of MATMUL_COLS, and where that
// makes fewer than MATMUL_TASKS runs its rows (x's) in blocks of MATMUL_ROWS too; each piece one
// single-threaded SGEMM inside the parallel loop (OpenBLAS runs on one thread in a parallel
// region), on W's rows as stored (F32) or dequantized into the thread's own tile. The pieces
// depend on the shapes alone, never on the thread count, so neither do the results: OpenBLAS's
// own threading gave other last bits for 1 and 2 threads with its Haswell/Zen kernels (a fifth
// of the outputs; not with its SkylakeX ones), and a forward on half the threads (the activation
// store's producer) then differed from one on all of them. Measured against one threaded SGEMM
// on the 768-wide and 1B models' shapes (M 512, Zen 5, 2 threads): runs of 128 columns 97-105%
// of its speed where N >= 2048, with blocks of 256 rows 95-97% where N < 2048 (runs of 256
// without: 76-80% there, three runs on two threads).
#define MATMUL_COLS 128
#define MATMUL_ROWS 256
#define MATMUL_TASKS 16

size_t model_tile_floats(int64_t cols) {
    return (size_t)omp_get_max_threads() * MATMUL_COLS * (size_t)cols;
}

// How the decode reads a set of matrices' rows (quant_matvec_xq's group). Which is faster, rows one
// at a time or side by side, depends on the CPU and the row length (src/kern/quant.inc: Intel VMs
// and a Zen 5 VM disagree by 15-20% either way), and the bits do not, so the decode measures it:
// the first 2·TUNE_TRIALS passes over a set of the same shapes (the matrices' types, row lengths
// and rows, and M) alternate QUANT_MV_ONE and QUANT_MV_SIDE, timed; after them the one with the
// smaller median stays. Layers repeat their shapes, so a model's sets are decided within its first
// one or two tokens (the output layer's, a set of its own, in its first 2·TUNE_TRIALS tokens).
// CTERP_DECODE_ROWS=one, side or auto (the thresholds of quant.inc) fixes the choice instead.
enum { TUNE_SETS = 64, TUNE_TRIALS = 8 };
typedef struct {
    uint64_t key; // 0: a free slot
    int n[2];     // timed passes: one at a time, side by side
    double t[2][TUNE_TRIALS];
    int group; // QUANT_MV_* once decided, else -1
} tune_set;
static tune_set tune_tab[TUNE_SETS];
static pthread_mutex_t tune_mu = PTHREAD_MUTEX_INITIALIZER;

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int tune_fixed = -1; // -1: measure; else CTERP_DECODE_ROWS's group

cterp_status model_decode_rows_env(void) {
    const char *e = getenv("CTERP_DECODE_ROWS");
    int g = -1;
    if (e && *e) {
        if (!strcmp(e, "one"))
            g = QUANT_MV_ONE;
        else if (!strcmp(e, "side"))
            g = QUANT_MV_SIDE;
        else if (!strcmp(e, "auto"))
            g = QUANT_MV_AUTO;
        else
            return cterp_error(CTERP_EINVAL,
                               "CTERP_DECODE_ROWS=%s: expected one, side, auto, or unset (measure)",
                               e);
    }
    pthread_mutex_lock(&tune_mu);
    tune_fixed = g;
    pthread_mutex_unlock(&tune_mu);
    return CTERP_OK;
}

// The group for the set `key`; *slot and *trial say which timing to record (trial -1: none).
static int tune_group(uint64_t key, int *slot, int *trial) {
    *trial = -1;
    pthread_mutex_lock(&tune_mu);
    const int fixed = tune_fixed;
    int group = fixed >= 0 ? fixed : QUANT_MV_AUTO;
    if (fixed < 0) {
        int s = (int)(key % TUNE_SETS), k = 0;
        while (k < TUNE_SETS && tune_tab[s].key && tune_tab[s].key != key)
            s = (s + 1) % TUNE_SETS, k++;
        if (k < TUNE_SETS) { // else the table is full: the thresholds
            tune_set *e = &tune_tab[s];
            if (!e->key) e->key = key, e->group = -1;
            if (e->group >= 0) {
                group = e->group;
            } else {
                *slot = s, *trial = e->n[0] > e->n[1]; // alternate, one at a time first
                group = *trial ? QUANT_MV_SIDE : QUANT_MV_ONE;
            }
        }
    }
    pthread_mutex_unlock(&tune_mu);
    return group;
}

static void tune_record(int slot, int trial, double dt) {
    pthread_mutex_lock(&tune_mu);
    tune_set *e = &tune_tab[slot];
    if (e->group < 0 && e->n[trial] < TUNE_TRIALS) e->t[trial][e->n[trial]++] = dt;
    if (e->group < 0 && e->n[0] == TUNE_TRIALS && e->n[1] == TUNE_TRIALS) {
        qsort(e->t[0], TUNE_TRIALS, sizeof(double), cmp_dbl);
        qsort(e->t[1], TUNE_TRIALS, sizeof(double), cmp_dbl);
        const int side = e->t[1][TUNE_TRIALS / 2] < e->t[0][TUNE_TRIALS / 2];
        e->group = side ? QUANT_MV_SIDE : QUANT_MV_ONE;
    }
    pthread_mutex_unlock(&tune_mu);
}

// The single-token decode (M < 4) of n matrices that read one x (M, K): x prepared once, then
// one parallel pass over all their rows, RUN rows a call (the kernels take a few at a time,
// sharing x), split evenly over the threads, read as tune_group says; each y_j (M, N_j) the same
// bits as alone.
static void decode_matmul(float *const y[], const float *x, const wmat *const W[],
                          const float *const bias[], int n, int64_t M, float *tile) {
    enum { RUN = 16 };
    const int64_t K = W[0]->cols;
    quant_xq xq[3];
    int prep = 0; // F32, F16 and the rest dot x itself
    for (int j = 0; j < n; j++) prep |= quant_has_xq(W[j]->type);
    for (int64_t mi = 0; mi < M; mi++)
        quant_xq_prepare(&xq[mi], prep ? (char *)tile + (size_t)mi * quant_xq_bytes(K) : NULL,
                         x + mi * K, K);
    int64_t first[MODEL_MATMUL_MAX + 1], rows = 0; // matrix j's runs: first[j] .. first[j+1]-1
    first[0] = 0;
    uint64_t key = 1469598103934665603u ^ (uint64_t)M; // FNV-1a over the shapes
    int sides = 0;                                     // a type whose rows can be read side by side
    for (int j = 0; j < n; j++) {
        first[j + 1] = first[j] + (W[j]->rows + RUN - 1) / RUN;
        rows += W[j]->rows;
        const uint64_t v[3] = {W[j]->type, W[j]->row_bytes, (uint64_t)W[j]->rows};
        for (int i = 0; i < 3; i++) key = (key ^ v[i]) * 1099511628211u;
        sides |= quant_side_rows(W[j]->type);
    }
    int slot = 0, trial = -1;
    const int group = sides && prep ? tune_group(key | 1, &slot, &trial) : QUANT_MV_AUTO;
    const double t0 = trial >= 0 ? omp_get_wtime() : 0;
#pragma omp parallel for schedule(static) if (M * rows * K > PAR_MIN)
    for (int64_t c = 0; c < first[n]; c++) {
        int j = 0;
        while (c >= first[j + 1]) j++;
        const int64_t N = W[j]->rows, r0 = (c - first[j]) * RUN;
        const uint8_t *w = (const uint8_t *)W[j]->data + (size_t)r0 * W[j]->row_bytes;
        for (int64_t mi = 0; mi < M; mi++)
            quant_matvec_xq(y[j] + mi * N + r0, W[j]->type, w, W[j]->row_bytes,
                            N - r0 < RUN ? N - r0 : RUN, &xq[mi], group);
    }
    if (trial >= 0) tune_record(slot, trial, omp_get_wtime() - t0);
    for (int j = 0; j < n; j++)
        if (bias[j])
            for (int64_t mi = 0; mi < M; mi++)
                for (int64_t r = 0; r < W[j]->rows; r++) y[j][mi * W[j]->rows + r] += bias[j][r];
}

// y (M, N) = x (M, K) · W^T (+ bias (N)); W (N, K) in any supported type. tile: scratch of
// model_tile_floats(K) floats, sized on the calling thread (also holds up to 3 prepared x of
// quant_xq_bytes(K) for M < 4). The same bits for any thread count.
void model_matmul(float *y, const float *x, const wmat *W, const float *bias, int64_t M,
                  float *tile) {
    int64_t N = W->rows, K = W->cols;
    // single-token decode: x prepared once, then the integer dot reads each weight once
    if (M < 4) {
        decode_matmul(&y, x, &W, &bias, 1, M, tile);
        return;
    }
    const int64_t runs = (N + MATMUL_COLS - 1) / MATMUL_COLS;
    const int64_t mb = runs < MATMUL_TASKS ? MATMUL_ROWS : M, blocks = (M + mb - 1) / mb;
    // below PAR_MIN one thread runs them all (OpenBLAS too keeps such small products on one)
#pragma omp parallel for schedule(dynamic, 1)                                                      \
    num_threads(omp_get_max_threads()) if (M * N * K > PAR_MIN)
    for (int64_t c = 0; c < runs * blocks; c++) {
        const int64_t n0 = c / blocks * MATMUL_COLS,
                      nr = N - n0 < MATMUL_COLS ? N - n0 : MATMUL_COLS;
        const int64_t m0 = c % blocks * mb, mr = M - m0 < mb ? M - m0 : mb;
        const float *w = (const float *)W->data + n0 * K;
        if (W->type != GGML_TYPE_F32) {
            float *t = tile + (size_t)omp_get_thread_num() * MATMUL_COLS * (size_t)K;
            for (int64_t r = 0; r < nr; r++)
                quant_dequant_row(W->type,
                                  (const uint8_t *)W->data + (size_t)(n0 + r) * W->row_bytes,
                                  t + r * K, K);
            w = t;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mr, (int)nr, (int)K, 1.0f,
                    x + m0 * K, (int)K, w, (int)K, 0.0f, y + m0 * N + n0, (int)N);
    }
    if (bias)
#pragma omp parallel for schedule(static) if (M * N > PAR_MIN)
        for (int64_t mi = 0; mi < M; mi++)
            for (int64_t n = 0; n < N; n++) y[mi * N + n] += bias[n];
}

void model_matmul_n(float *const y[], const float *x, const wmat *const W[], const float *const bias[],
                    int n, int64_t M, float *tile) {
    if (M < 4) {
        decode_matmul(y, x, W, bias, n, M, tile);
        return;
    }
    for (int j = 0; j < n; j++) model_matmul(y[j], x, W[j], bias[j], M, tile);
}

// out (M, D) = normalized x (before weight/bias): x/RMS, or centred LayerNorm. out may be x.
void model_normalize(float *out, const float *x, int64_t M, int64_t D, float eps, int layer_norm) {
#pragma omp parallel for schedule(static) if (M * D > PAR_MIN)
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * D;
        float *o = out + i * D;
        if (!layer_norm) { // the sum of squares in f64 (the dispatched kernel), the scaling in f32
            const float inv = (float)(1.0 / sqrt(kern->vec->sumsq(xi, D) / (double)D + eps));
            for (int64_t j = 0; j < D; j++) o[j] = xi[j] * inv;
            continue;
        }
        double mean = 0, ss = 0;
        for (int64_t j = 0; j < D; j++) mean += xi[j];
        mean /= (double)D;
        for (int64_t j = 0; j < D; j++) ss += ((double)xi[j] - mean) * ((double)xi[j] - mean);
        float inv = (float)(1.0 / sqrt(ss / (double)D + eps));
        for (int64_t j = 0; j < D; j++) o[j] = (float)((double)xi[j] - mean) * inv;
    }
}

void model_scale_shift(float *x, const float *w, const float *b, int64_t M, int64_t D) {
#pragma omp parallel for schedule(static) if (M * D > PAR_MIN)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < D; j++) x[i * D + j] = x[i * D + j] * w[j] + (b ? b[j] : 0.0f);
}

// RoPE on (M, heads, hd) rows whose positions are given by the tables (T rows, M = B*T handled
// by the caller per sequence): ROPE_NORM rotates (x[2j], x[2j+1]) (GGUF's llama layout), ROPE_NEOX
// rotates (x[j], x[j + n_rot/2]); dims past n_rot pass through.
static void rope(float *x, int64_t M, int heads, int hd, int n_rot, int neox, const float *cs,
                 const float *sn) {
    const int half = n_rot / 2, step = neox ? 1 : 2, off = neox ? half : 1;
#pragma omp parallel for schedule(static) if (M * heads * n_rot > PAR_MIN)
    for (int64_t i = 0; i < M; i++)
        for (int h = 0; h < heads; h++) {
            float *v = x + (i * heads + h) * hd;
            for (int j = 0; j < half; j++) {
                float c = cs[i * half + j], s = sn[i * half + j];
                float *p = v + j * step;
                float a = p[0], b = p[off];
                p[0] = a * c - b * s;
                p[off] = a * s + b * c;
            }
        }
}

// h = act(h) (* g): the dispatched vector kernels, in chunks over the threads
static void activate(int mlp, float *h, const float *g, size_t n) {
    const int64_t CH = 4096;
    const int64_t nc = ((int64_t)n + CH - 1) / CH;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int64_t c = 0; c < nc; c++) {
        int64_t i0 = c * CH, len = (int64_t)n - i0 < CH ? (int64_t)n - i0 : CH;
        if (mlp == MLP_SILU_GATED)
            kern->vec->silu_mul(h + i0, g + i0, len);
        else
            kern->vec->gelu_mul(h + i0, g ? g + i0 : NULL, len);
    }
}

cterp_status model_hook(const hooks_ctx *hc, int layer, int kind, float *act, int ndim, int64_t d0,
                        int64_t d1, int64_t d2, int64_t d3) {
    const int64_t shape[4] = {d0, d1, d2, d3};
    for (int i = 0; i < hc->o->n_hooks; i++)
        if (hc->layer[i] == layer && hc->kind[i] == kind) {
            cterp_status s = hc->o->hooks[i].fn(hc->o->hooks[i].name, act, shape, ndim,
                                                hc->o->hooks[i].user);
            if (s) return s;
        }
    return CTERP_OK;
}

static int hooked(const hooks_ctx *hc, int layer, int kind) {
    for (int i = 0; i < hc->o->n_hooks; i++)
        if (hc->layer[i] == layer && hc->kind[i] == kind) return 1;
    return 0;
}

// ---- block parts ----------------------------------------------------------------------------

#define HOOK(kind, act, nd, d0, d1, d2, d3)                                                        \
    do {                                                                                           \
        cterp_status s_ = model_hook(b->hc, l, kind, act, nd, d0, d1, d2, d3);                     \
        if (s_) return s_;                                                                         \
    } while (0)

// xn <- norm(x) with the hook on the normalized values, then weight and bias.
static cterp_status pre_norm(block_ctx *b, int l, int kind, float *xn, const float *x,
                             const float *w, const float *bias) {
    const cterp_model *m = b->m;
    const int64_t BT = (int64_t)b->B * b->T, D = m->cfg.d_model;
    model_normalize(xn, x, BT, D, m->cfg.norm_eps, m->norm == NORM_LAYER);
    HOOK(kind, xn, 3, b->B, b->T, D, 0);
    model_scale_shift(xn, w, bias, BT, D);
    return CTERP_OK;
}

// cos/sin tables for positions pos0..pos0+T-1 at the layer's base and scale (Llama 3.1's
// rope_freqs divide each frequency).
static void rope_tables(block_ctx *b, const layer_w *w) {
    const cterp_model *m = b->m;
    if (b->rope_base == w->rope_base && b->rope_scale == w->rope_scale) return;
    const int n_rot = m->cfg.n_rot, half = n_rot / 2;
    for (int t = 0; t < b->T; t++)
        for (int j = 0; j < half; j++) {
            double theta = pow((double)w->rope_base, -2.0 * j / (double)n_rot);
            if (m->rope_freqs) theta /= (double)m->rope_freqs[j];
            double a = (double)(b->pos0 + t) * (double)w->rope_scale * theta;
            b->rc[t * half + j] = (float)cos(a);
            b->rs[t * half + j] = (float)sin(a);
        }
    b->rope_base = w->rope_base;
    b->rope_scale = w->rope_scale;
}

// RMS norm of each head vector (hd) with weight w: qk-norm.
static void head_norm(float *x, int64_t rows, int64_t hd, const float *w, float eps) {
    model_normalize(x, x, rows, hd, eps, 0);
    model_scale_shift(x, w, NULL, rows, hd);
}

// One query's row of scores p[0, S): keys [0, n_keys) were computed (q·k), the rest are set 0.
// Scaled, soft-capped (cap > 0), masked to the last `window` keys (window > 0: llama.cpp masks
// keys at distance >= window), softmax.
static void softmax_row(float *p, int64_t n_keys, int64_t S, int64_t window, float scale,
                        float cap) {
    int64_t j0 = window && n_keys > window ? n_keys - window : 0;
    float mx = -INFINITY;
    for (int64_t j = j0; j < n_keys; j++) {
        float sc = p[j] * scale;
        if (cap > 0) sc = cap * tanhf(sc / cap);
        p[j] = sc;
        if (sc > mx) mx = sc;
    }
    float sum = 0;
    for (int64_t j = j0; j < n_keys; j++) sum += (p[j] = expf(p[j] - mx));
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < j0; j++) p[j] = 0;
    for (int64_t j = j0; j < n_keys; j++) p[j] *= inv;
    for (int64_t j = n_keys; j < S; j++) p[j] = 0;
}

// ao (BT, D) <- attention of the layer on xn (the ln1 output).
static cterp_status attention(block_ctx *b, int l) {
    const cterp_model *m = b->m;
    const cterp_model_config *c = &m->cfg;
    const layer_w *w = &m->layers[l];
    const int B = b->B, T = b->T, pos0 = b->pos0;
    const int64_t BT = (int64_t)B * T, H = c->n_heads, Hkv = c->n_kv_heads,
                  hd = c->head_dim, qd = H * hd, kvd = Hkv * hd, S = pos0 + T;
    float *q = b->q, *k = b->k, *v = b->v, *z = b->z;
    if (w->wqkv.data) {
        const int64_t n3 = qd + 2 * kvd;
        model_matmul(b->qkv, b->xn, &w->wqkv, w->bqkv, BT, b->tile);
#pragma omp parallel for schedule(static) if (BT * n3 > PAR_MIN)
        for (int64_t i = 0; i < BT; i++) {
            const float *r = b->qkv + i * n3;
            memcpy(q + i * qd, r, (size_t)qd * 4);
            memcpy(k + i * kvd, r + qd, (size_t)kvd * 4);
            memcpy(v + i * kvd, r + qd + kvd, (size_t)kvd * 4);
            if (w->bq)
                for (int64_t j = 0; j < qd; j++) q[i * qd + j] += w->bq[j];
            if (w->bk)
                for (int64_t j = 0; j < kvd; j++) k[i * kvd + j] += w->bk[j];
            if (w->bv)
                for (int64_t j = 0; j < kvd; j++) v[i * kvd + j] += w->bv[j];
        }
    } else {
        float *const y[3] = {q, k, v};
        const wmat *const W[3] = {&w->wq, &w->wk, &w->wv};
        const float *const bias[3] = {w->bq, w->bk, w->bv};
        model_matmul_n(y, b->xn, W, bias, 3, BT, b->tile);
    }
    HOOK(HK_Q, q, 4, B, T, H, hd);
    HOOK(HK_K, k, 4, B, T, Hkv, hd);
    HOOK(HK_V, v, 4, B, T, Hkv, hd);
    if (w->q_norm) {
        head_norm(q, BT * H, hd, w->q_norm, c->norm_eps);
        head_norm(k, BT * Hkv, hd, w->k_norm, c->norm_eps);
    }
    if (m->rope != ROPE_NONE) {
        rope_tables(b, w);
        // positions repeat per sequence: the tables are per t, so apply per batch row
        for (int bi = 0; bi < B; bi++) {
            rope(q + (int64_t)bi * T * qd, T, (int)H, (int)hd, c->n_rot, m->rope == ROPE_NEOX,
                 b->rc, b->rs);
            rope(k + (int64_t)bi * T * kvd, T, (int)Hkv, (int)hd, c->n_rot, m->rope == ROPE_NEOX,
                 b->rc, b->rs);
        }
    }
    const float *kbase = k, *vbase = v;
    cterp_kv_cache *kc = b->kc;
    if (kc) {
        float *ck = kc->k + ((size_t)l * kc->max + (size_t)pos0) * kvd;
        float *cv = kc->v + ((size_t)l * kc->max + (size_t)pos0) * kvd;
        memcpy(ck, k, (size_t)BT * kvd * 4);
        memcpy(cv, v, (size_t)BT * kvd * 4);
        kbase = kc->k + (size_t)l * kc->max * kvd;
        vbase = kc->v + (size_t)l * kc->max * kvd;
    }
    const int hook_pat = b->any_pattern && hooked(b->hc, l, HK_PATTERN);
    const int64_t grp = H / Hkv, QB = ATTN_QBLOCK;
    const int64_t n_qb = (T + QB - 1) / QB;
    // For each (sequence, head, block of QB queries): scores = Q K^T by SGEMM, then per row the
    // scale, soft-cap, causal and sliding-window mask and softmax, then z = P V by SGEMM (SGEMV
    // for a block of one query, as in the decode). They run single-threaded inside the parallel
    // loop (OpenBLAS does so in a parallel region).
    // With a pattern hook the rows go to the (B, H, T, S) pattern, the hook runs, then z.
    for (int pass = 0; pass < (hook_pat ? 2 : 1); pass++) {
#pragma omp parallel for schedule(dynamic, 1) if (B * H * T * S * hd > PAR_MIN)
        for (int64_t r = 0; r < (int64_t)B * H * n_qb; r++) {
            const int64_t bi = r / (H * n_qb), h = (r / n_qb) % H, t0 = (r % n_qb) * QB;
            const int64_t nt = T - t0 < QB ? T - t0 : QB, kvh = h / grp;
            const int64_t n_keys = pos0 + t0 + nt; // keys the last query of the block sees
            const float *kb = kbase + (kc ? 0 : bi * T * kvd) + kvh * hd;
            const float *vb = vbase + (kc ? 0 : bi * T * kvd) + kvh * hd;
            float *qr = q + ((bi * T + t0) * H + h) * hd;
            float *zr = z + ((bi * T + t0) * H + h) * hd;
            float *p = hook_pat ? b->pat + ((bi * H + h) * T + t0) * S
                                : b->scr + (size_t)omp_get_thread_num() * (size_t)(QB * S);
            const int64_t ldp = S;
            if (pass == 0) {
                if (nt == 1) // one query (the decode): SGEMV, where SGEMM would pack all the keys
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n_keys, (int)hd, 1.0f, kb,
                                (int)kvd, qr, 1, 0.0f, p, 1);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)n_keys,
                                (int)hd, 1.0f, qr, (int)qd, kb, (int)kvd, 0.0f, p, (int)ldp);
                for (int64_t i = 0; i < nt; i++)
                    softmax_row(p + i * ldp, pos0 + t0 + i + 1, S, w->window, m->attn_scale,
                                c->attn_softcap);
                if (hook_pat) continue;
            }
            if (nt == 1)
                cblas_sgemv(CblasRowMajor, CblasTrans, (int)n_keys, (int)hd, 1.0f, vb, (int)kvd, p,
                            1, 0.0f, zr, 1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nt, (int)hd,
                            (int)n_keys, 1.0f, p, (int)ldp, vb, (int)kvd, 0.0f, zr, (int)qd);
        }
        if (pass == 0 && hook_pat) HOOK(HK_PATTERN, b->pat, 4, B, H, T, S);
    }
    HOOK(HK_Z, z, 4, B, T, H, hd);
    model_matmul(b->ao, z, &w->wo, w->bo, BT, b->tile);
    return CTERP_OK;
}

// out (BT, D) <- the layer's MLP on xn (the ln2 output).
static cterp_status mlp(block_ctx *b, int l, float *out) {
    const cterp_model *m = b->m;
    const layer_w *w = &m->layers[l];
    const int B = b->B, T = b->T;
    const int64_t BT = (int64_t)B * T, F = m->cfg.d_ff;
    const size_t n_f = (size_t)BT * (size_t)F;
    float *h1 = b->h1, *h2 = b->h2;
    if (m->mlp == MLP_GELU) {
        model_matmul(h1, b->xn, &w->up, w->bup, BT, b->tile);
        HOOK(HK_MLP_PRE, h1, 3, B, T, F, 0);
        activate(m->mlp, h1, NULL, n_f);
    } else {
        if (w->gate.data) {
            float *const y[2] = {h1, h2};
            const wmat *const W[2] = {&w->gate, &w->up};
            const float *const bias[2] = {w->bgate, w->bup};
            model_matmul_n(y, b->xn, W, bias, 2, BT, b->tile); // up reads xn, not the hook's h1
            HOOK(HK_MLP_PRE, h1, 3, B, T, F, 0);
        } else { // fused (2F, D): gate rows then up rows
            model_matmul(b->qkv, b->xn, &w->up, NULL, BT, b->tile);
#pragma omp parallel for schedule(static) if (n_f > PAR_MIN)
            for (int64_t i = 0; i < BT; i++) {
                memcpy(h1 + i * F, b->qkv + i * 2 * F, (size_t)F * 4);
                memcpy(h2 + i * F, b->qkv + i * 2 * F + F, (size_t)F * 4);
            }
            HOOK(HK_MLP_PRE, h1, 3, B, T, F, 0);
        }
        HOOK(HK_MLP_PRE_LINEAR, h2, 3, B, T, F, 0);
        activate(m->mlp, h1, h2, n_f);
    }
    HOOK(HK_MLP_POST, h1, 3, B, T, F, 0);
    model_matmul(out, h1, &w->down, w->bdown, BT, b->tile);
    return CTERP_OK;
}

// a <- norm(a) * w: gemma2/3's post-attention and post-MLP norms, hooked before the weight.
static cterp_status post_norm(block_ctx *b, int l, int kind, float *a, const float *w) {
    const cterp_model *m = b->m;
    const int64_t BT = (int64_t)b->B * b->T, D = m->cfg.d_model;
    model_normalize(a, a, BT, D, m->cfg.norm_eps, m->norm == NORM_LAYER);
    HOOK(kind, a, 3, b->B, b->T, D, 0);
    model_scale_shift(a, w, NULL, BT, D);
    return CTERP_OK;
}

static void add(float *x, const float *a, size_t n) {
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] += a[i];
}

// ---- blocks -----------------------------------------------------------------------------------

cterp_status block_sequential(block_ctx *b, int l) {
    const cterp_model *m = b->m;
    const layer_w *w = &m->layers[l];
    const int B = b->B, T = b->T;
    const int64_t D = m->cfg.d_model;
    const size_t n_x = (size_t)B * T * D;
    cterp_status s;
    HOOK(HK_RESID_PRE, b->x, 3, B, T, D, 0);
    if ((s = pre_norm(b, l, HK_LN1, b->xn, b->x, w->attn_norm, w->attn_norm_b))) return s;
    if ((s = attention(b, l))) return s;
    if (w->attn_post_norm && (s = post_norm(b, l, HK_LN1_POST, b->ao, w->attn_post_norm)))
        return s;
    HOOK(HK_ATTN_OUT, b->ao, 3, B, T, D, 0);
    add(b->x, b->ao, n_x);
    HOOK(HK_RESID_MID, b->x, 3, B, T, D, 0);
    if ((s = pre_norm(b, l, HK_LN2, b->xn, b->x, w->ffn_norm, w->ffn_norm_b))) return s;
    if ((s = mlp(b, l, b->ao))) return s;
    if (w->ffn_post_norm && (s = post_norm(b, l, HK_LN2_POST, b->ao, w->ffn_post_norm)))
        return s;
    HOOK(HK_MLP_OUT, b->ao, 3, B, T, D, 0);
    add(b->x, b->ao, n_x);
    HOOK(HK_RESID_POST, b->x, 3, B, T, D, 0);
    return CTERP_OK;
}

cterp_status block_parallel(block_ctx *b, int l) {
    const cterp_model *m = b->m;
    const layer_w *w = &m->layers[l];
    const int B = b->B, T = b->T;
    const int64_t D = m->cfg.d_model;
    const size_t n_x = (size_t)B * T * D;
    cterp_status s;
    HOOK(HK_RESID_PRE, b->x, 3, B, T, D, 0);
    if ((s = pre_norm(b, l, HK_LN1, b->xn, b->x, w->attn_norm, w->attn_norm_b))) return s;
    if ((s = attention(b, l))) return s;
    HOOK(HK_ATTN_OUT, b->ao, 3, B, T, D, 0);
    if ((s = pre_norm(b, l, HK_LN2, b->xn, b->x, w->ffn_norm, w->ffn_norm_b))) return s;
    if ((s = mlp(b, l, b->x2))) return s;
    HOOK(HK_MLP_OUT, b->x2, 3, B, T, D, 0);
    add(b->x, b->x2, n_x); // llama.cpp's order: (mlp_out + resid_pre) + attn_out
    add(b->x, b->ao, n_x);
    HOOK(HK_RESID_POST, b->x, 3, B, T, D, 0);
    return CTERP_OK;
}
