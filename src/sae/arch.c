// Training forward/backward (see arch.h).
#include "sae/arch.h"

#include <math.h>
#include <stdlib.h>
#include <omp.h>
#include <string.h>

#include "core/blas.h"
#include "core/file.h"
#include "sae/bf16.h"
#include "sae/kernels.h"

cterp_status arch_work_init(arch_work *w, int64_t B, int64_t D, int64_t N) {
    return arch_work_init_out(w, B, D, D, N);
}

cterp_status arch_work_init_out(arch_work *w, int64_t B, int64_t D, int64_t DO, int64_t N) {
    memset(w, 0, sizeof *w);
    w->B = B, w->D = D, w->N = N, w->DO = DO;
    w->xc = malloc((size_t)B * D * sizeof(float));
    w->xhat = malloc((size_t)B * DO * sizeof(float));
    w->g = malloc((size_t)B * DO * sizeof(float));
    w->nrm = malloc((size_t)N * sizeof(float));
    w->row = malloc((size_t)(B + 1) * sizeof(int64_t));
    w->lrow = malloc((size_t)(N + 1) * sizeof(int64_t));
    w->brow = malloc((size_t)(B + 1) * sizeof(int64_t));
    w->blrow = malloc((size_t)(N + 1) * sizeof(int64_t));
    w->er = malloc((size_t)N * sizeof(float));
    if (!w->xc || !w->xhat || !w->g || !w->nrm || !w->row || !w->lrow || !w->brow ||
        !w->blrow || !w->er) {
        arch_work_free(w);
        return cterp_error(CTERP_ENOMEM, "SAE work buffers (B=%lld, N=%lld): out of memory",
                           (long long)B, (long long)N);
    }
    return CTERP_OK;
}

void arch_work_free(arch_work *w) {
    free(w->xc), free(w->z), free(w->xhat), free(w->g), free(w->nrm);
    free(w->row), free(w->lat), free(w->a), free(w->f), free(w->tok), free(w->lrow), free(w->lpair);
    free(w->brow), free(w->blat), free(w->btok), free(w->blrow), free(w->blpair), free(w->zsub);
    free(w->xpk), free(w->wpk), free(w->wsub);
    free(w->pg), free(w->xm), free(w->xaux), free(w->er);
    memset(w, 0, sizeof *w);
}

static cterp_status reserve_pairs(arch_work *w, int64_t n) {
    if (n <= w->cap) return CTERP_OK;
    int64_t cap = n + n / 4 + 1024;
    int32_t *lat = realloc(w->lat, (size_t)cap * sizeof(int32_t));
    if (lat) w->lat = lat;
    float *a = realloc(w->a, (size_t)cap * sizeof(float));
    if (a) w->a = a;
    float *f = realloc(w->f, (size_t)cap * sizeof(float));
    if (f) w->f = f;
    int32_t *tok = realloc(w->tok, (size_t)cap * sizeof(int32_t));
    if (tok) w->tok = tok;
    int64_t *lp = realloc(w->lpair, (size_t)cap * sizeof(int64_t));
    if (lp) w->lpair = lp;
    float *pg = realloc(w->pg, (size_t)cap * sizeof(float));
    if (pg) w->pg = pg;
    if (!lat || !a || !f || !tok || !lp || !pg)
        return cterp_error(CTERP_ENOMEM, "SAE pairs: cannot grow to %lld", (long long)cap);
    w->cap = cap;
    return CTERP_OK;
}

static cterp_status reserve_band(arch_work *w, int64_t n) {
    if (n <= w->bcap) return CTERP_OK;
    int64_t cap = n + n / 4 + 1024;
    int32_t *lat = realloc(w->blat, (size_t)cap * sizeof(int32_t));
    if (lat) w->blat = lat;
    int32_t *tok = realloc(w->btok, (size_t)cap * sizeof(int32_t));
    if (tok) w->btok = tok;
    int64_t *lp = realloc(w->blpair, (size_t)cap * sizeof(int64_t));
    if (lp) w->blpair = lp;
    if (!lat || !tok || !lp) return cterp_error(CTERP_ENOMEM, "SAE band pairs: out of memory");
    w->bcap = cap;
    return CTERP_OK;
}

// Counting sort of pairs by latent, token order kept (pairs are already in token order).
static void group_by_latent(int64_t *lrow, int64_t *lpair, const int32_t *lat, int64_t nnz,
                            int64_t N) {
    memset(lrow, 0, (size_t)(N + 1) * sizeof(int64_t));
    for (int64_t p = 0; p < nnz; p++) lrow[lat[p] + 1]++;
    for (int64_t i = 0; i < N; i++) lrow[i + 1] += lrow[i];
    for (int64_t p = 0; p < nnz; p++) lpair[lrow[lat[p]]++] = p; // lrow[i] moves to latent i's end
    for (int64_t i = N; i > 0; i--) lrow[i] = lrow[i - 1];
    lrow[0] = 0;
}

// nrm[i] = sum over the L blocks of D/L of ||W_i^l|| (L = 1: the row's norm; crosscoders: L layers)
static void row_norms(float *nrm, const float *W, int64_t N, int64_t D, int64_t L) {
    const int64_t DL = D / L;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        double n = 0;
        for (int64_t l = 0; l < L; l++) {
            double s = 0;
            const float *w = W + i * D + l * DL;
            for (int64_t d = 0; d < DL; d++) s += (double)w[d] * w[d];
            n += sqrt(s);
        }
        nrm[i] = (float)n;
    }
}

static int64_t n_blocks(const cterp_sae *sae) { // decoder blocks the sparsity norm sums over
    return sae->arch == CTERP_ARCH_CROSSCODER && sae->n_layers > 1 ? sae->n_layers : 1;
}

// z (B, N) = (x - b_dec) W_enc^T + b_enc; with fused (bf16 TopK) only the centring and packing
static cterp_status encode_dense(arch_work *w, const cterp_sae *sae, const float *x, int bf16, int fused) {
    const int64_t B = w->B, D = w->D, N = w->N;
    // a transcoder's b_dec is an output; a crosscoder's encoder reads x itself
    const int center = !cterp_sae_is_transcoder(sae) && sae->arch != CTERP_ARCH_CROSSCODER;
    #pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B; t++)
        for (int64_t d = 0; d < D; d++) w->xc[t * D + d] = x[t * D + d] - (center ? sae->b_dec[d] : 0.0f);
    w->bf16 = bf16;
    if (bf16) { // W_enc changed since the last step: pack it again (~3 ms at 768/24576)
        if (!w->xpk) w->xpk = malloc((size_t)bf16_packed_x_words(B, D) * sizeof(uint32_t));
        if (!w->wpk) w->wpk = malloc((size_t)bf16_packed_w_words(N, D) * sizeof(uint32_t));
        if (!w->xpk || !w->wpk) return cterp_error(CTERP_ENOMEM, "encoder_bf16: out of memory for the packed operands");
        bf16_pack_x(w->xpk, w->xc, B, D);
        bf16_pack_w(w->wpk, sae->W_enc, N, D);
        if (fused) return CTERP_OK; // the GEMM runs with the selection (select_fused)
    }
    // z on first use: the fused bf16 TopK never needs it (403 MB at 4096 x 24576)
    if (!w->z && !(w->z = aligned_alloc(64, ((size_t)B * N * sizeof(float) + 63) / 64 * 64))) // 64: streaming stores
        return cterp_error(CTERP_ENOMEM, "SAE work: out of memory for the %lld x %lld pre-activations",
                           (long long)B, (long long)N);
    if (bf16) {
        bf16_gemm(w->z, w->xpk, w->wpk, sae->b_enc, B, N, D);
        return CTERP_OK;
    }
    #pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B; t++) memcpy(w->z + t * N, sae->b_enc, (size_t)N * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)N, (int)D, 1.0f, w->xc,
                (int)D, sae->W_enc, (int)D, 1.0f, w->z, (int)N);
    return CTERP_OK;
}

float arch_preact(const arch_work *w, const cterp_sae *sae, int64_t t, int64_t i) {
    return sae->b_enc[i] + dot_f32(w->xc + t * w->D, sae->W_enc + i * w->D, w->D);
}

// After choosing on bf16 pre-activations: each chosen pair's z again in f32, its reported
// activation from it; a pair whose f32 activation is not positive leaves (the ReLU of TopK).
static void exact_pairs(arch_work *w, const cterp_sae *sae, const arch_opts *o) {
    const int64_t B = w->B;
    // by latent within blocks of tokens (lrow/lpair are free until the backward): each W_enc row
    // is read once a block, not once per token that chose it, and the block's token rows (~6 MB)
    // stay in cache while its latents pass. Select at 2304/16384/64: 106-144 ms unblocked, 51 in
    // blocks of 1024 tokens; at 768/24576/32: 20-28 -> 15 in blocks of 2048.
    const int64_t TB = (6 << 20) / (4 * w->D) > 256 ? (6 << 20) / (4 * w->D) : 256;
    for (int64_t t0 = 0; t0 < B; t0 += TB) {
        const int64_t t1 = t0 + TB < B ? t0 + TB : B, pa = w->row[t0], pb = w->row[t1];
        group_by_latent(w->lrow, w->lpair, w->lat + pa, pb - pa, w->N);
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < w->N; i++)
            for (int64_t q = w->lrow[i]; q < w->lrow[i + 1]; q++) {
                const int64_t p = pa + w->lpair[q];
                const float z = arch_preact(w, sae, w->tok[p], i);
                w->a[p] = z, w->f[p] = z * (o->rescale ? w->nrm[i] : 1.0f);
            }
    }
    int64_t q = 0;
    for (int64_t t = 0; t < B; t++) {
        const int64_t p0 = w->row[t], p1 = w->row[t + 1];
        w->row[t] = q;
        for (int64_t p = p0; p < p1; p++)
            if (w->f[p] > 0) w->lat[q] = w->lat[p], w->tok[q] = w->tok[p], w->a[q] = w->a[p], w->f[q] = w->f[p], q++;
    }
    w->row[B] = w->nnz = q;
}

// bf16: the pre-activations of the sub list (AuxK's dead latents) in f32, one SGEMM over their
// W_enc rows: AuxK then chooses and trains on exact values (its 1.57 M chosen pairs recomputed
// one dot product each cost ~100 ms a step at 768/24576 with 10% dead, this ~45 ms).
static cterp_status exact_sub(arch_work *w, const cterp_sae *sae) {
    const int64_t B = w->B, D = w->D, n = w->n_sub;
    enum { CHUNK = 2048 }; // dead rows per SGEMM: the copy stays small however many are dead
    const int64_t rows = n < CHUNK ? n : CHUNK;
    if (rows * D > w->wsub_cap) {
        float *p = realloc(w->wsub, (size_t)(rows * D) * sizeof(float));
        if (!p) return cterp_error(CTERP_ENOMEM, "encoder_bf16: out of memory for %lld dead rows", (long long)rows);
        w->wsub = p, w->wsub_cap = rows * D;
    }
    #pragma omp parallel for schedule(static) // the biases, row by row (the SGEMMs add to them)
    for (int64_t t = 0; t < B; t++)
        for (int64_t j = 0; j < n; j++) w->zsub[t * n + j] = sae->b_enc[w->sub[j]];
    for (int64_t j0 = 0; j0 < n; j0 += CHUNK) {
        const int64_t m = n - j0 < CHUNK ? n - j0 : CHUNK;
        #pragma omp parallel for schedule(static)
        for (int64_t j = j0; j < j0 + m; j++)
            memcpy(w->wsub + (j - j0) * D, sae->W_enc + (int64_t)w->sub[j] * D, (size_t)D * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)m, (int)D, 1.0f, w->xc, (int)D,
                    w->wsub, (int)D, 1.0f, w->zsub + j0, (int)n);
    }
    return CTERP_OK;
}

// batchtopk: value of the (k*B)-th largest of the positive activations, with ties resolved by
// the lowest flat index. Returns the number kept; *vcut and *icut describe the cut: an entry
// (v, flat) is kept iff v > vcut or (v == vcut and flat <= icut).
typedef struct {
    float v;
    int64_t i;
} vi_pair;

static int vi_beats(const vi_pair *a, const vi_pair *b) {
    return a->v > b->v || (a->v == b->v && a->i < b->i);
}

// quickselect: after it, e[0..m) are the m best (unordered)
static void select_best(vi_pair *e, int64_t n, int64_t m) {
    int64_t lo = 0, hi = n - 1;
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    while (lo < hi) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        vi_pair piv = e[lo + (int64_t)(s % (uint64_t)(hi - lo + 1))];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (vi_beats(&e[i], &piv)) i++;
            while (vi_beats(&piv, &e[j])) j--;
            if (i <= j) {
                vi_pair t = e[i];
                e[i] = e[j], e[j] = t;
                i++, j--;
            }
        }
        if (m - 1 <= j) hi = j;
        else if (m - 1 >= i) lo = i;
        else break;
    }
}

// The fused kernel spends per candidate (a value above its row's running cutoff: about
// k (1 + ln(N / k)) a row, the cutoff rising as it goes) what the GEMM spends per d_in x latent.
// Measured on 2 Zen 5 cores (docs/measurements.md): even at 768/24576/32 (k (1 + ln(N/k)) / (N D)
// = 1.2e-5; 384 MB less) and at 512/16384/64 (5e-5), ahead at 2304/16384/64 (1.1e-5), 20%
// slower at 64/2048/16 (1.3e-3). So: fused up to 1.5e-5, and when its candidate buffers
// (4 k + 16 per row and thread) stay well under z's N a row.
int arch_bf16_fuses(int64_t N, int64_t D, int k) {
    if (k < 1 || N < 1 || (int64_t)16 * k * omp_get_max_threads() > N) return 0;
    return (double)k * (1.0 + log((double)N / k)) <= 1.5e-5 * (double)N * (double)D;
}

static cterp_status set_sub(arch_work *w, const arch_opts *o) {
    w->n_sub = 0;
    if (o->sub && o->n_sub > 0) {
        if (w->B * o->n_sub > w->zsub_cap) {
            float *zs = realloc(w->zsub, (size_t)(w->B * o->n_sub) * sizeof(float));
            if (!zs) return cterp_error(CTERP_ENOMEM, "SAE work: out of memory for %lld x %lld pre-activations",
                                        (long long)w->B, (long long)o->n_sub);
            w->zsub = zs, w->zsub_cap = w->B * o->n_sub;
        }
        w->n_sub = o->n_sub, w->sub = o->sub;
    }
    return CTERP_OK;
}

// bf16 TopK: the pairs straight from the fused GEMM (values there are bf16 ones: exact_pairs
// replaces them).
static cterp_status select_fused(arch_work *w, const cterp_sae *sae, const arch_opts *o) {
    const int64_t B = w->B, K = o->k;
    int32_t *idx = malloc((size_t)(B * K) * sizeof(int32_t));
    float *val = malloc((size_t)(B * K) * sizeof(float));
    int *cnt = malloc((size_t)B * sizeof(int));
    cterp_status s = CTERP_OK;
    if (!idx || !val || !cnt ||
        bf16_gemm_topk(idx, val, cnt, w->xpk, w->wpk, sae->b_enc, o->rescale ? w->nrm : NULL, B, w->N, w->D, o->k))
        s = cterp_error(CTERP_ENOMEM, "encoder_bf16: out of memory for the top-k of %lld rows", (long long)B);
    if (!s) {
        w->row[0] = 0;
        for (int64_t t = 0; t < B; t++) w->row[t + 1] = w->row[t] + cnt[t];
        w->nnz = w->row[B];
        s = reserve_pairs(w, w->nnz);
    }
    if (!s) s = set_sub(w, o);
    if (!s) {
        #pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < B; t++)
            for (int j = 0; j < cnt[t]; j++) {
                const int64_t p = w->row[t] + j;
                w->lat[p] = idx[t * K + j], w->tok[p] = (int32_t)t, w->a[p] = w->f[p] = val[t * K + j];
            }
    }
    free(idx), free(val), free(cnt);
    return s;
}

// batchtopk over a part of the batch (arch_work.cut): this part's best candidates, at most the
// whole batch's keep (its best keep lie among the parts' best keep), to the caller's cut.
static cterp_status part_cut(arch_work *w, const arch_opts *o, int64_t npos, float *cut_v,
                             int64_t *cut_i) {
    const int64_t B = w->B, N = w->N, keep = w->cut_keep;
    vi_pair *e = malloc((size_t)(npos > 0 ? npos : 1) * sizeof(vi_pair));
    if (!e) return cterp_error(CTERP_ENOMEM, "batchtopk: out of memory");
    int64_t n = 0;
    for (int64_t q = 0; q < B * N; q++) {
        float h = w->z[q] * (o->rescale ? w->nrm[q % N] : 1.0f);
        if (h > 0) e[n].v = h, e[n].i = q, n++;
    }
    if (n > keep) select_best(e, n, keep), n = keep;
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int64_t *fl = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    cterp_status s = CTERP_OK;
    if (!v || !fl) s = cterp_error(CTERP_ENOMEM, "batchtopk: out of memory");
    for (int64_t q = 0; q < n && !s; q++) v[q] = e[q].v, fl[q] = e[q].i;
    free(e);
    if (!s) s = w->cut(w->cut_user, v, fl, n, keep, cut_v, cut_i);
    free(v), free(fl);
    return s;
}

cterp_status arch_forward(arch_work *w, const cterp_sae *sae, const arch_opts *o, const float *theta,
                          const float *x) {
    const int64_t B = w->B, D = w->D, N = w->N, DO = w->DO;
    const int topk = o->arch == CTERP_ARCH_TOPK;
    const int btopk = o->arch == CTERP_ARCH_BATCHTOPK || o->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK;
    const int jump = o->arch == CTERP_ARCH_JUMPRELU, gated = o->arch == CTERP_ARCH_GATED;
    const int matry = o->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK;
    const int tc = o->arch == CTERP_ARCH_TRANSCODER || o->arch == CTERP_ARCH_SKIP_TRANSCODER;
    const int cc = o->arch == CTERP_ARCH_CROSSCODER;
    const int l1 = o->arch == CTERP_ARCH_STANDARD || tc || cc; // ReLU + L1 weighted by decoder norms
    const float *y = o->target ? o->target : x;          // what x_hat reconstructs
    cterp_status s;
    double t0 = time_now();
    if (sae->d_in != D || sae->d_out != DO || sae->d_sae != N || (tc && !o->target) ||
        (!tc && (o->target || DO != D)) || cc != (sae->arch == CTERP_ARCH_CROSSCODER) ||
        (cc && (sae->n_layers < 2 || D % sae->n_layers)))
        return cterp_error(CTERP_EINVAL, "SAE forward: the work buffers (d_in %lld, d_out %lld, d_sae %lld) or "
                           "the target do not fit the %s (%lld, %lld, %lld)", (long long)D, (long long)DO,
                           (long long)N, cterp_arch_name(o->arch), (long long)sae->d_in, (long long)sae->d_out,
                           (long long)sae->d_sae);
    if (o->rescale || l1 || gated) row_norms(w->nrm, sae->W_dec, N, DO, n_blocks(sae));
    if (gated)
        for (int64_t i = 0; i < N; i++) w->er[i] = expf(sae->r_mag[i]);
    w->n_levels = 1;
    if (matry) { // the inner levels' reconstructions (the last level is x_hat itself)
        if (!o->widths || o->n_widths < 1 || o->widths[o->n_widths - 1] != N)
            return cterp_error(CTERP_EINVAL, "matryoshka_batchtopk: the prefix widths must end at d_sae (%lld)",
                               (long long)N);
        const int64_t need = (int64_t)(o->n_widths - 1) * B * D;
        if (need > w->xm_cap) {
            float *xm = realloc(w->xm, (size_t)need * sizeof(float));
            if (!xm) return cterp_error(CTERP_ENOMEM, "matryoshka: out of memory for %d prefix reconstructions",
                                        o->n_widths - 1);
            w->xm = xm, w->xm_cap = need;
        }
        w->n_levels = o->n_widths;
    }
    if (gated && !w->xaux && !(w->xaux = malloc((size_t)(B * D) * sizeof(float))))
        return cterp_error(CTERP_ENOMEM, "gated: out of memory for the gate reconstruction");
    const int bf16 = o->bf16 && (topk || btopk);
    // bf16 TopK: the GEMM and the per-row top-k in one pass, z never written (it is not needed:
    // the chosen pairs and the dead latents get their values in f32 below)
    const int fused = bf16 && topk && o->bf16_fuse >= 0 &&
                      (o->bf16_fuse > 0 || arch_bf16_fuses(N, D, o->k));
    if ((s = encode_dense(w, sae, x, bf16, fused))) return s;
    if (fused && (s = select_fused(w, sae, o))) return s;
    double t1 = time_now();
    w->t_encode += t1 - t0;
    if (fused) goto chosen;

    // --- selection: pairs in token order ---
    float cut_v = 0;
    int64_t cut_i = -1;
    if (btopk) { // global cut over the flattened (B, N) matrix of ReLU(z * n)
        int64_t npos = 0;
        for (int64_t q = 0; q < B * N; q++) {
            float h = w->z[q] * (o->rescale ? w->nrm[q % N] : 1.0f);
            npos += h > 0;
        }
        int64_t keep = (int64_t)o->k * B;
        if (w->cut) { // one part of a larger batch: its best keep go to the whole batch's cut
            if ((s = part_cut(w, o, npos, &cut_v, &cut_i))) return s;
        } else if (npos > keep) {
            vi_pair *e = malloc((size_t)npos * sizeof(vi_pair));
            if (!e) return cterp_error(CTERP_ENOMEM, "batchtopk: out of memory");
            int64_t n = 0;
            for (int64_t q = 0; q < B * N; q++) {
                float h = w->z[q] * (o->rescale ? w->nrm[q % N] : 1.0f);
                if (h > 0) e[n].v = h, e[n].i = q, n++;
            }
            select_best(e, n, keep);
            vi_pair worst = e[0];
            for (int64_t q = 1; q < keep; q++)
                if (vi_beats(&worst, &e[q])) worst = e[q];
            cut_v = worst.v, cut_i = worst.i;
            free(e);
        } else {
            cut_v = 0, cut_i = B * N; // keep every positive
        }
    }
    // count per token
    w->row[0] = 0;
    #pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B; t++) {
        const float *zt = w->z + t * N;
        int64_t c = 0;
        if (topk) {
            for (int64_t i = 0; i < N && c < o->k; i++) c += zt[i] * (o->rescale ? w->nrm[i] : 1.0f) > 0;
            if (c >= o->k) c = o->k;
        } else if (btopk) {
            for (int64_t i = 0; i < N; i++) {
                float h = zt[i] * (o->rescale ? w->nrm[i] : 1.0f);
                c += h > 0 && (h > cut_v || (h == cut_v && t * N + i <= cut_i));
            }
        } else if (jump) {
            for (int64_t i = 0; i < N; i++) c += zt[i] > theta[i];
        } else { // standard: z > 0; gated: the gate pi > 0 (its magnitude may still be 0)
            for (int64_t i = 0; i < N; i++) c += zt[i] > 0;
        }
        w->row[t + 1] = c;
    }
    for (int64_t t = 0; t < B; t++) w->row[t + 1] += w->row[t];
    w->nnz = w->row[B];
    if ((s = reserve_pairs(w, w->nnz))) return s;
    if ((s = set_sub(w, o))) return s;
    // fill
    #pragma omp parallel
    {
        int32_t *idx = topk ? malloc((size_t)o->k * sizeof(int32_t)) : NULL;
        float *val = topk ? malloc((size_t)o->k * sizeof(float)) : NULL;
        float *h = topk && o->rescale ? malloc((size_t)N * sizeof(float)) : NULL;
        #pragma omp for schedule(static)
        for (int64_t t = 0; t < B; t++) {
            const float *zt = w->z + t * N;
            int64_t p = w->row[t];
            if (topk) {
                const float *src = zt;
                if (o->rescale) {
                    for (int64_t i = 0; i < N; i++) h[i] = zt[i] * w->nrm[i];
                    src = h;
                }
                int c = topk_row(idx, val, src, (int)N, o->k);
                for (int j = 0; j < c; j++, p++) {
                    w->lat[p] = idx[j], w->tok[p] = (int32_t)t;
                    w->a[p] = zt[idx[j]], w->f[p] = val[j];
                }
            } else {
                for (int64_t i = 0; i < N; i++) {
                    float zi = zt[i], hv = zi;
                    int on;
                    if (btopk) {
                        hv = zi * (o->rescale ? w->nrm[i] : 1.0f);
                        on = hv > 0 && (hv > cut_v || (hv == cut_v && t * N + i <= cut_i));
                    } else if (jump) {
                        on = zi > theta[i];
                    } else {
                        on = zi > 0;
                    }
                    if (on) {
                        w->lat[p] = (int32_t)i, w->tok[p] = (int32_t)t;
                        if (gated) { // zi is pi; the magnitude path shares W_enc's dot product
                            const float m = w->er[i] * (zi - sae->b_enc[i]) + sae->b_mag[i];
                            w->pg[p] = zi;
                            hv = zi = m > 0 ? m : 0;
                        }
                        w->a[p] = zi, w->f[p] = hv;
                        p++;
                    }
                }
            }
            if (w->n_sub && !bf16) { // the row is in cache now
                float *dst = w->zsub + t * w->n_sub;
                for (int64_t j = 0; j < w->n_sub; j++) dst[j] = zt[o->sub[j]];
            }
        }
        free(idx), free(val), free(h);
    }
    // jumprelu band pairs |z - theta| < eps/2 (the STE's threshold gradient)
    w->bnnz = 0;
    if (jump) {
        const float half = 0.5f * o->bandwidth;
        w->brow[0] = 0;
        #pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < B; t++) {
            int64_t c = 0;
            for (int64_t i = 0; i < N; i++) c += fabsf(w->z[t * N + i] - theta[i]) < half;
            w->brow[t + 1] = c;
        }
        for (int64_t t = 0; t < B; t++) w->brow[t + 1] += w->brow[t];
        w->bnnz = w->brow[B];
        if ((s = reserve_band(w, w->bnnz))) return s;
        #pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < B; t++) {
            int64_t p = w->brow[t];
            for (int64_t i = 0; i < N; i++)
                if (fabsf(w->z[t * N + i] - theta[i]) < half)
                    w->blat[p] = (int32_t)i, w->btok[p] = (int32_t)t, p++;
        }
    }

chosen:
    if (bf16) exact_pairs(w, sae, o);
    if (bf16 && w->n_sub && (s = exact_sub(w, sae))) return s;
    double t2 = time_now();
    w->t_select += t2 - t1;
    // --- sparse decode: x_hat_t = b_dec + sum a W_dec_i ---
    // matryoshka: a token's pairs are in latent order, so prefix m's reconstruction is x_hat
    // as it stands before the first pair with latent >= m. gated: the gate's reconstruction
    // from the same pairs with pi as coefficient.
    const int nin = w->n_levels - 1;
    if (sae->W_skip) { // skip_transcoder: x_hat starts at b_dec + x W_skip^T (one GEMM)
        #pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < B; t++) memcpy(w->xhat + t * DO, sae->b_dec, (size_t)DO * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)DO, (int)D, 1.0f, x, (int)D,
                    sae->W_skip, (int)D, 1.0f, w->xhat, (int)DO);
    }
    double sse = 0, l1sum = 0, sparse = 0, aux = 0;
    #pragma omp parallel for schedule(static) reduction(+ : sse, l1sum, sparse, aux)
    for (int64_t t = 0; t < B; t++) {
        float *xh = w->xhat + t * DO, *xa = gated ? w->xaux + t * D : NULL;
        if (!sae->W_skip) memcpy(xh, sae->b_dec, (size_t)DO * sizeof(float));
        if (xa) memcpy(xa, sae->b_dec, (size_t)D * sizeof(float));
        int lev = 0;
        for (int64_t p = w->row[t]; p < w->row[t + 1]; p++) {
            const int64_t i = w->lat[p];
            const float *wd = sae->W_dec + i * DO;
            for (; lev < nin && i >= o->widths[lev]; lev++)
                memcpy(w->xm + ((int64_t)lev * B + t) * D, xh, (size_t)D * sizeof(float));
            float a = w->a[p];
            if (a != 0) axpy_f32(xh, a, wd, DO);
            l1sum += w->f[p];
            if (l1) sparse += (double)w->f[p] * w->nrm[i];
            if (xa) {
                axpy_f32(xa, w->pg[p], wd, D);
                sparse += (double)w->pg[p] * w->nrm[i];
            }
        }
        for (; lev < nin; lev++) memcpy(w->xm + ((int64_t)lev * B + t) * D, xh, (size_t)D * sizeof(float));
        sse += sqdist_f64(xh, y + t * DO, DO);
        for (int j = 0; j < nin; j++) aux += sqdist_f64(w->xm + ((int64_t)j * B + t) * D, x + t * D, D);
        if (xa) aux += sqdist_f64(xa, x + t * D, D);
    }
    if (jump) sparse = (double)w->nnz;
    // total variance of the target around its batch mean (explained variance), f64
    double sst = 0;
    {
        double *mean = calloc((size_t)DO, sizeof(double));
        float *meanf = malloc((size_t)DO * sizeof(float));
        if (!mean || !meanf) {
            free(mean), free(meanf);
            return cterp_error(CTERP_ENOMEM, "out of memory");
        }
        for (int64_t t = 0; t < B; t++)
            for (int64_t d = 0; d < DO; d++) mean[d] += y[t * DO + d];
        // a float mean moves sst only by B * (rounding)^2: sum_t (y_t - mean) is zero
        for (int64_t d = 0; d < DO; d++) meanf[d] = (float)(mean[d] / (double)B);
        #pragma omp parallel for schedule(static) reduction(+ : sst)
        for (int64_t t = 0; t < B; t++) sst += sqdist_f64(y + t * DO, meanf, DO);
        free(mean), free(meanf);
    }
    w->sse = sse, w->sst = sst;
    w->mse_loss = sse / (double)B;
    w->l1_magnitude = l1sum / (double)B;
    w->sparsity_loss = (l1 || jump || gated) ? o->coef * sparse / (double)B : 0;
    w->aux_loss = aux / (double)B;
    w->min_kept = INFINITY;
    if (btopk)
        for (int64_t p = 0; p < w->nnz; p++) w->min_kept = fminf(w->min_kept, w->f[p]);
    w->t_decode += time_now() - t2;
    return CTERP_OK;
}

void arch_backward_prepare(arch_work *w, const arch_opts *o, const float *x, float *db_dec) {
    const int64_t B = w->B, D = w->D, N = w->N, DO = w->DO;
    const float invB = 1.0f / (float)B;
    const float *y = o->target ? o->target : x;
    // dL/dx_hat = 2 (x_hat - y) / B; db_dec (decoder part) = sum_t of it
    #pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < B * DO; q++) w->g[q] = 2.0f * invB * (w->xhat[q] - y[q]);
    if (o->arch == CTERP_ARCH_SKIP_TRANSCODER) // dW_skip (DO, D) = g^T x, after db_dec in grads
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)DO, (int)D, (int)B, 1.0f, w->g, (int)DO, x,
                    (int)D, 0.0f, db_dec + DO, (int)D);
    // matryoshka: level j's latents reach every level >= j, so their upstream gradient is the
    // suffix sum S_j = g_j + S_{j+1} (S of the last level: g); b_dec reaches every level: S_0
    const int nin = o->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK ? w->n_levels - 1 : 0;
    for (int j = nin - 1; j >= 0; j--) {
        float *gj = w->xm + (int64_t)j * B * D;
        const float *nx = j + 1 < nin ? gj + B * D : w->g;
        #pragma omp parallel for schedule(static)
        for (int64_t q = 0; q < B * D; q++) gj[q] = 2.0f * invB * (gj[q] - x[q]) + nx[q];
    }
    const float *gsum = nin > 0 ? w->xm : w->g;
    for (int64_t d = 0; d < DO; d++) db_dec[d] = 0;
    for (int64_t t = 0; t < B; t++)
        for (int64_t d = 0; d < DO; d++) db_dec[d] += gsum[t * DO + d];
    if (o->arch == CTERP_ARCH_GATED) { // the gate's reconstruction: its own dL/dx_aux
        #pragma omp parallel for schedule(static)
        for (int64_t q = 0; q < B * D; q++) w->xaux[q] = 2.0f * invB * (w->xaux[q] - x[q]);
        if (!o->detach_aux_dec)
            for (int64_t t = 0; t < B; t++)
                for (int64_t d = 0; d < D; d++) db_dec[d] += w->xaux[t * D + d];
    }
    group_by_latent(w->lrow, w->lpair, w->lat, w->nnz, N);
    if (o->arch == CTERP_ARCH_JUMPRELU) group_by_latent(w->blrow, w->blpair, w->blat, w->bnnz, N);
}

// Gated: latent i's pairs. a = ReLU(m), m = e (pi - b_gate) + b_mag with e = exp(r_mag): dm
// reaches W_enc_i through e xc, r_mag through m - b_mag and b_mag directly; dpi (the gate's
// reconstruction and the L1 on ReLU(pi)) reaches W_enc_i and b_gate. The step 1[pi > 0] has no
// gradient (SAELens).
static float gated_latent_grad(const arch_work *w, const cterp_sae *sae, const arch_opts *o, int64_t i,
                               float *gWe, float *gWd, float *gx) {
    const int64_t D = w->D;
    const float invB = 1.0f / (float)w->B, lam = o->coef, e = w->er[i], n = w->nrm[i];
    const float *wd = sae->W_dec + i * D;
    double gbg = 0, gbm = 0, gr = 0, pisum = 0;
    memset(gWd, 0, (size_t)D * sizeof(float));
    memset(gWe, 0, (size_t)D * sizeof(float));
    for (int64_t q = w->lrow[i]; q < w->lrow[i + 1]; q++) {
        const int64_t p = w->lpair[q];
        const float *gt = w->g + (int64_t)w->tok[p] * D, *ht = w->xaux + (int64_t)w->tok[p] * D;
        const float *xt = w->xc + (int64_t)w->tok[p] * D;
        const float a = w->a[p], pi = w->pg[p];
        const float dm = a > 0 ? dot_f32(gt, wd, D) : 0.0f;
        const float dpi = dot_f32(ht, wd, D) + lam * n * invB;
        if (a > 0) axpy_f32(gWd, a, gt, D);
        if (!o->detach_aux_dec) axpy_f32(gWd, pi, ht, D);
        axpy_f32(gWe, dm * e + dpi, xt, D);
        gbg += dpi, gbm += dm, gr += (double)dm * (a - sae->b_mag[i]);
        pisum += pi;
    }
    if (n > 0) axpy_f32(gWd, (float)(lam * invB * pisum / n), wd, D); // d/dW_dec_i of the L1's ||W_dec_i||
    if (gx) gx[i] = (float)gr, gx[w->N + i] = (float)gbm;
    return (float)gbg;
}

// matryoshka: the level whose prefix first includes latent i
static int level_of(const arch_opts *o, int64_t i) {
    int j = 0;
    while (j + 1 < o->n_widths && i >= o->widths[j]) j++;
    return j;
}

float arch_latent_grad(const arch_work *w, const cterp_sae *sae, const arch_opts *o,
                       const float *theta, int64_t i, float *gWe, float *gWd, float *dtheta_i,
                       float *gx) {
    if (o->arch == CTERP_ARCH_GATED) return gated_latent_grad(w, sae, o, i, gWe, gWd, gx);
    const int64_t D = w->D, DO = w->DO; // W_enc rows D, W_dec rows DO (transcoders differ)
    const float invB = 1.0f / (float)w->B, lam = o->coef;
    const int standard = o->arch == CTERP_ARCH_STANDARD || o->arch == CTERP_ARCH_TRANSCODER ||
                         o->arch == CTERP_ARCH_SKIP_TRANSCODER ||
                         o->arch == CTERP_ARCH_CROSSCODER; // ReLU + L1 weighted by ||W_dec_i||
    const int jump = o->arch == CTERP_ARCH_JUMPRELU;
    const float *wd = sae->W_dec + i * DO;
    // matryoshka: the suffix sum of the levels this latent reaches (arch_backward_prepare)
    const int lev = o->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK ? level_of(o, i) : w->n_levels - 1;
    const float *G = lev < w->n_levels - 1 ? w->xm + (int64_t)lev * w->B * D : w->g;
    double gb = 0, fsum = 0;
    memset(gWd, 0, (size_t)DO * sizeof(float));
    memset(gWe, 0, (size_t)D * sizeof(float));
    for (int64_t q = w->lrow[i]; q < w->lrow[i + 1]; q++) {
        int64_t p = w->lpair[q];
        const float *gt = G + (int64_t)w->tok[p] * DO;
        const float *xt = w->xc + (int64_t)w->tok[p] * D;
        float a = w->a[p], ga = dot_f32(gt, wd, DO);
        axpy_f32(gWd, a, gt, DO);
        float dz = ga;
        if (standard) dz += lam * w->nrm[i] * invB;
        axpy_f32(gWe, dz, xt, D);
        gb += dz;
        fsum += w->f[p];
    }
    if (standard && w->nrm[i] > 0) { // d/dW_dec_i of coef/B * sum_t f_ti sum_l ||W_dec_i^l||
        const int64_t L = n_blocks(sae), DL = DO / L;
        for (int64_t l = 0; l < L; l++) { // per block: c W_dec_i^l / ||W_dec_i^l||
            const float n = L == 1 ? w->nrm[i] : sqrtf(dot_f32(wd + l * DL, wd + l * DL, DL));
            if (n > 0) axpy_f32(gWd + l * DL, (float)(lam * invB * fsum / n), wd + l * DL, DL);
        }
    }
    if (jump && dtheta_i) { // STE: df/dtheta = -(theta/eps) K, dH/dtheta = -(1/eps) K
        double gt_sum = 0;
        for (int64_t q = w->blrow[i]; q < w->blrow[i + 1]; q++) {
            int64_t p = w->blpair[q];
            const float *gt = w->g + (int64_t)w->btok[p] * DO;
            float ga = dot_f32(gt, wd, DO);
            gt_sum += -(theta[i] / o->bandwidth) * ga - lam * invB / o->bandwidth;
        }
        *dtheta_i = (float)gt_sum;
    }
    return (float)gb;
}

void arch_backward(arch_work *w, const cterp_sae *sae, const arch_opts *o, const float *theta,
                   const float *x, float *grads, float *dtheta) {
    const int64_t D = w->D, N = w->N, DO = w->DO;
    float *dW_enc = grads, *db_enc = grads + N * D, *dW_dec = db_enc + N, *db_dec = dW_dec + N * DO;
    float *gx = o->arch == CTERP_ARCH_GATED ? db_dec + D : NULL;
    double t0 = time_now();
    arch_backward_prepare(w, o, x, db_dec);
    #pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < N; i++)
        db_enc[i] = arch_latent_grad(w, sae, o, theta, i, dW_enc + i * D, dW_dec + i * DO,
                                     dtheta ? dtheta + i : NULL, gx);
    w->t_backward += time_now() - t0;
}

// Tiles of the pairs backward: a chunk of PB_LAT latents (their W_dec, dW_dec, dW_enc rows) is
// walked against tiles of PB_TOK tokens (rows of G and xc), so both stay in L2 and each row is
// fetched once per (chunk, tile) rather than once per pair. Every latent still accumulates its
// pairs in token order: the result is the same, bit for bit, as the untiled loop.
enum { PB_LAT = 64, PB_TOK = 64 };

void arch_backward_pairs(arch_work *w, const cterp_sae *sae, const float *G, int64_t npairs,
                         const int32_t *tok, const int32_t *lat, const float *a, float *grads) {
    const int64_t B = w->B, D = w->D, N = w->N;
    float *dW_enc = grads, *db_enc = grads + N * D, *dW_dec = db_enc + N;
    int64_t *lrow = malloc((size_t)(N + 1) * sizeof(int64_t));
    int64_t *lpair = malloc((size_t)(npairs ? npairs : 1) * sizeof(int64_t));
    int32_t *act = malloc((size_t)(N ? N : 1) * sizeof(int32_t));
    if (!lrow || !lpair || !act) { // callers check sizes up front; degrade to nothing rather than crash
        free(lrow), free(lpair), free(act);
        return;
    }
    group_by_latent(lrow, lpair, lat, npairs, N);
    int64_t na = 0; // latents with pairs
    for (int64_t i = 0; i < N; i++)
        if (lrow[i + 1] > lrow[i]) act[na++] = (int32_t)i;
    const int64_t nchunk = (na + PB_LAT - 1) / PB_LAT;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < nchunk; c++) {
        const int64_t j0 = c * PB_LAT, j1 = j0 + PB_LAT < na ? j0 + PB_LAT : na;
        int64_t cur[PB_LAT];
        double gb[PB_LAT];
        for (int64_t j = j0; j < j1; j++) cur[j - j0] = lrow[act[j]], gb[j - j0] = 0;
        for (int64_t t1 = PB_TOK;; t1 += PB_TOK) {
            for (int64_t j = j0; j < j1; j++) {
                const int64_t i = act[j], e = lrow[i + 1];
                const float *wd = sae->W_dec + i * D;
                float *gWd = dW_dec + i * D, *gWe = dW_enc + i * D;
                int64_t q = cur[j - j0];
                for (; q < e && tok[lpair[q]] < t1; q++) {
                    int64_t p = lpair[q];
                    const float *gt = G + (int64_t)tok[p] * D, *xt = w->xc + (int64_t)tok[p] * D;
                    const float ap = a[p], dz = dot_f32(gt, wd, D);
                    axpy_f32(gWd, ap, gt, D);
                    axpy_f32(gWe, dz, xt, D);
                    gb[j - j0] += dz;
                }
                cur[j - j0] = q;
            }
            if (t1 >= B) break;
        }
        for (int64_t j = j0; j < j1; j++) db_enc[act[j]] += (float)gb[j - j0];
    }
    free(lrow), free(lpair), free(act);
}

void arch_bdec_from_benc(const cterp_sae *sae, const float *db_enc, const float *db_mag,
                         float *db_dec) {
    const int64_t D = sae->d_in, N = sae->d_sae;
    if (cterp_sae_is_transcoder(sae) || sae->arch == CTERP_ARCH_CROSSCODER)
        return; // the input is not centred: b_dec is an output
    if (sae->arch == CTERP_ARCH_GATED && db_mag) { // both paths read xc through W_enc
        for (int64_t i = 0; i < N; i++)
            axpy_f32(db_dec, -(db_enc[i] + expf(sae->r_mag[i]) * db_mag[i]), sae->W_enc + i * D, D);
        return;
    }
    // db_dec (1, D) -= db_enc (1, N) . W_enc (N, D)
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)N, (int)D, -1.0f, sae->W_enc, (int)D, db_enc, 1,
                1.0f, db_dec, 1);
}

void arch_forward_naive(float *f, const cterp_sae *sae, const arch_opts *o, const float *theta,
                        const float *x, int64_t B) {
    const int64_t D = sae->d_in, N = sae->d_sae, DO = sae->d_out;
    const int tc = cterp_sae_is_transcoder(sae) || sae->arch == CTERP_ARCH_CROSSCODER; // no centring
    float *h = malloc((size_t)B * N * sizeof(float));
    for (int64_t t = 0; t < B; t++)
        for (int64_t i = 0; i < N; i++) {
            double z = sae->b_enc[i];
            for (int64_t d = 0; d < D; d++)
                z += (double)sae->W_enc[i * D + d] * (x[t * D + d] - (tc ? 0.0f : sae->b_dec[d]));
            double n = 0;
            for (int64_t d = 0; d < DO; d++) n += (double)sae->W_dec[i * DO + d] * sae->W_dec[i * DO + d];
            f[t * N + i] = (float)z;
            h[t * N + i] = (float)(o->rescale ? z * sqrt(n) : z);
        }
    if (o->arch == CTERP_ARCH_GATED) { // f = 1[pi > 0] ReLU(sum_d W_enc exp(r_mag) xc + b_mag)
        for (int64_t q = 0; q < B * N; q++) {
            const int64_t i = q % N;
            double m = sae->b_mag[i];
            for (int64_t d = 0; d < D; d++)
                m += (double)sae->W_enc[i * D + d] * exp(sae->r_mag[i]) * (x[q / N * D + d] - sae->b_dec[d]);
            f[q] = f[q] > 0 && m > 0 ? (float)m : 0;
        }
    } else if (o->arch == CTERP_ARCH_STANDARD || o->arch == CTERP_ARCH_JUMPRELU || tc) { // tc: + crosscoder
        for (int64_t q = 0; q < B * N; q++) {
            float lim = o->arch == CTERP_ARCH_JUMPRELU ? theta[q % N] : 0.0f;
            if (!(f[q] > lim)) f[q] = 0;
        }
    } else if (o->arch == CTERP_ARCH_TOPK) { // reported activation h on the kept set
        int32_t *idx = malloc((size_t)o->k * sizeof(int32_t));
        float *val = malloc((size_t)o->k * sizeof(float));
        for (int64_t t = 0; t < B; t++) {
            int c = topk_row_naive(idx, val, h + t * N, (int)N, o->k);
            memset(f + t * N, 0, (size_t)N * sizeof(float));
            for (int j = 0; j < c; j++) f[t * N + idx[j]] = val[j];
        }
        free(idx), free(val);
    } else { // batchtopk, matryoshka: the k*B largest positive h, ties by lowest flat index
        int64_t keep = (int64_t)o->k * B;
        char *taken = calloc((size_t)(B * N), 1);
        for (int64_t n = 0; n < keep; n++) {
            int64_t best = -1;
            for (int64_t q = 0; q < B * N; q++)
                if (!taken[q] && h[q] > 0 && (best < 0 || h[q] > h[best])) best = q;
            if (best < 0) break;
            taken[best] = 1;
        }
        for (int64_t q = 0; q < B * N; q++) f[q] = taken[q] ? h[q] : 0;
        free(taken);
    }
    free(h);
}
