#include "train/revive.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "sae/kernels.h"

enum { AUX_TOK = 64 }; // token tile of the pairs path

// The forward's copy of the dead latents' pre-activations (B, nd) when it made one for this list
// (the trainer always passes it), else NULL.
static const float *dead_copy(const arch_work *w, const int32_t *dl, int64_t nd) {
    return w->n_sub == nd && !memcmp(w->sub, dl, (size_t)nd * sizeof(int32_t)) ? w->zsub : NULL;
}

// Dead latent j's pre-activation for token t: the copy, else z, else (no z under encoder_bf16)
// recomputed in f32.
static inline float dead_preact(const arch_work *w, const cterp_sae *sae, const float *zs, const int32_t *dl,
                                int64_t nd, int64_t t, int64_t j) {
    if (zs) return zs[t * nd + j];
    return w->bf16 || !w->z ? arch_preact(w, sae, t, dl[j]) : w->z[t * w->N + dl[j]];
}

// The backward shared by AuxK's dense form and ghost grads, over the nd dead columns dl:
// C (B, nd) holds each token's coefficient of the dead decoder rows Wd (nd, D) in the
// reconstruction, G (B, D) the gradient with respect to that reconstruction. Adds
// dW_dec_dead = C^T G, dz = gate(G Wd^T), dW_enc_dead = dz^T xc and db_enc_dead = sum_t dz,
// where gate keeps dz where C != 0 (AuxK: the selection) or multiplies it by C (ghost grads:
// d exp(z)/dz = exp(z)). P (B, nd) and dW (nd, D) are scratch.
static void dead_dense_backward(arch_work *w, const float *C, const float *G, const float *Wd,
                                int64_t nd, const int32_t *dl, int gate_by_c, float *P, float *dW,
                                float *grads) {
    const int64_t B = w->B, D = w->D, N = w->N;
    float *dW_enc = grads, *db_enc = grads + N * D, *dW_dec = db_enc + N;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nd, (int)D, (int)B, 1.0f, C, (int)nd, G,
                (int)D, 0.0f, dW, (int)D);
    for (int64_t j = 0; j < nd; j++) {
        float *dst = dW_dec + (int64_t)dl[j] * D;
        for (int64_t d = 0; d < D; d++) dst[d] += dW[j * D + d];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)nd, (int)D, 1.0f, G, (int)D, Wd,
                (int)D, 0.0f, P, (int)nd);
    if (gate_by_c)
        for (int64_t q = 0; q < B * nd; q++) P[q] *= C[q];
    else
        for (int64_t q = 0; q < B * nd; q++) P[q] = C[q] != 0 ? P[q] : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nd, (int)D, (int)B, 1.0f, P, (int)nd,
                w->xc, (int)D, 0.0f, dW, (int)D);
    for (int64_t j = 0; j < nd; j++) {
        float *dst = dW_enc + (int64_t)dl[j] * D;
        for (int64_t d = 0; d < D; d++) dst[d] += dW[j * D + d];
        double sb = 0;
        for (int64_t t = 0; t < B; t++) sb += P[t * nd + j];
        db_enc[dl[j]] += (float)sb;
    }
}

double revive_auxk(arch_work *w, const cterp_sae *sae, const float *x, const uint8_t *dead,
                   int64_t n_dead, int k_aux, float coef, int rescale, float *grads, int mode) {
    const int64_t B = w->B, D = w->D, N = w->N;
    int kk = (int)(k_aux < n_dead ? k_aux : n_dead);
    double scale = (double)n_dead / k_aux;
    if (scale > 1) scale = 1;
    int32_t *dl = calloc((size_t)n_dead, sizeof(int32_t)); // (calloc: GCC -O1 cannot see the fill below)
    int32_t *tok = malloc((size_t)B * kk * sizeof(int32_t));
    int32_t *lat = malloc((size_t)B * kk * sizeof(int32_t));
    float *a = malloc((size_t)B * kk * sizeof(float));
    float *G = malloc((size_t)B * D * sizeof(float));
    int64_t *cnt = malloc((size_t)B * sizeof(int64_t));
    float *A = NULL, *Wd = NULL;
    int32_t *col = NULL;
    double loss = 0;
    if (!dl || !tok || !lat || !a || !G || !cnt) goto done;
    int64_t nd = 0;
    for (int64_t i = 0; i < N; i++)
        if (dead[i]) dl[nd++] = (int32_t)i;
    // dense GEMMs cost ~8 B nd D flops at GEMM speed, the tiled pairs ~8 B kk D at about a
    // quarter of it (measured at 768/24576 with 10% dead: 470 vs 330 ms/step at nd = 6.4 kk)
    if (mode < 0) mode = nd <= 4 * (int64_t)kk;
    // selection: per token the kk largest pre-activations among the dead, not passed through ReLU
    const float *zs = dead_copy(w, dl, nd);
    const int nt = omp_get_max_threads();
    float *fs = malloc((size_t)(nt * (3 * nd + kk)) * sizeof(float)); // per thread: z, h, keys, values
    int32_t *is = malloc((size_t)(nt * kk) * sizeof(int32_t));
    if (!fs || !is) {
        free(fs), free(is);
        goto done;
    }
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < B; t++) {
        const int me = omp_get_thread_num();
        float *zr = fs + me * (3 * nd + kk), *h = zr + nd, *scratch = h + nd, *val = scratch + nd;
        int32_t *idx = is + me * kk;
        for (int64_t j = 0; j < nd; j++) {
            zr[j] = dead_preact(w, sae, zs, dl, nd, t, j);
            h[j] = zr[j] * (rescale ? w->nrm[dl[j]] : 1.0f);
        }
        int c = topk_select_unsorted(idx, val, h, (int)nd, kk, scratch); // order is irrelevant
        for (int j = 0; j < c; j++) {
            int64_t p = t * kk + j;
            tok[p] = (int32_t)t, lat[p] = dl[idx[j]], a[p] = zr[idx[j]];
        }
        cnt[t] = c;
    }
    free(fs), free(is);
    // G = e_hat - e, e = x - x_hat
    if (mode == 1) {
        A = calloc((size_t)(B * nd), sizeof(float));
        Wd = malloc((size_t)(nd * D) * sizeof(float));
        col = malloc((size_t)N * sizeof(int32_t));
        if (!A || !Wd || !col) goto done;
        for (int64_t j = 0; j < nd; j++) {
            col[dl[j]] = (int32_t)j;
            memcpy(Wd + j * D, sae->W_dec + (int64_t)dl[j] * D, (size_t)D * sizeof(float));
        }
        for (int64_t t = 0; t < B; t++)
            for (int64_t j = 0; j < cnt[t]; j++) A[t * nd + col[lat[t * kk + j]]] = a[t * kk + j];
        for (int64_t q = 0; q < B * D; q++) G[q] = w->xhat[q] - x[q];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)D, (int)nd, 1.0f, A, (int)nd, Wd,
                    (int)D, 1.0f, G, (int)D);
    } else { // tiles of AUX_TOK tokens; a tile's pairs bucketed by latent, so each dead decoder
             // row is read once per tile (G_t gets its terms in latent order)
        col = malloc((size_t)N * sizeof(int32_t));
        if (!col) goto done;
        for (int64_t j = 0; j < nd; j++) col[dl[j]] = (int32_t)j;
        const int64_t ntile = (B + AUX_TOK - 1) / AUX_TOK;
        #pragma omp parallel
        {
            int32_t *bstart = malloc((size_t)(nd + 1) * sizeof(int32_t));
            int32_t *order = malloc((size_t)AUX_TOK * kk * sizeof(int32_t));
            #pragma omp for schedule(static)
            for (int64_t tile = 0; tile < ntile; tile++) {
                const int64_t t0 = tile * AUX_TOK, t1 = t0 + AUX_TOK < B ? t0 + AUX_TOK : B;
                if (!bstart || !order) { // no scratch: token by token
                    for (int64_t t = t0; t < t1; t++) {
                        float *Gt = G + t * D;
                        for (int64_t d = 0; d < D; d++) Gt[d] = w->xhat[t * D + d] - x[t * D + d];
                        for (int64_t j = 0; j < cnt[t]; j++) {
                            const float *wd = sae->W_dec + (int64_t)lat[t * kk + j] * D;
                            axpy_f32(Gt, a[t * kk + j], wd, D);
                        }
                    }
                    continue;
                }
                memset(bstart, 0, (size_t)(nd + 1) * sizeof(int32_t));
                for (int64_t t = t0; t < t1; t++) {
                    for (int64_t d = 0; d < D; d++) G[t * D + d] = w->xhat[t * D + d] - x[t * D + d];
                    for (int64_t j = 0; j < cnt[t]; j++) bstart[col[lat[t * kk + j]] + 1]++;
                }
                for (int64_t j = 0; j < nd; j++) bstart[j + 1] += bstart[j];
                for (int64_t t = t0; t < t1; t++)
                    for (int64_t j = 0; j < cnt[t]; j++) {
                        int64_t p = t * kk + j;
                        order[bstart[col[lat[p]]]++] = (int32_t)p;
                    }
                for (int64_t q = 0, e = bstart[nd - 1]; q < e; q++) { // bstart[j] is now bucket j's end
                    int64_t p = order[q];
                    const float *wd = sae->W_dec + (int64_t)lat[p] * D;
                    float *Gt = G + (int64_t)tok[p] * D, c = a[p];
                    axpy_f32(Gt, c, wd, D);
                }
            }
            free(bstart), free(order);
        }
    }
    double sum = 0;
    for (int64_t t = 0; t < B; t++) sum += dot_f32(G + t * D, G + t * D, D);
    loss = coef * scale * sum / (double)B;
    if (!isfinite(loss)) { // guard as Gao et al.: a non-finite aux loss contributes nothing
        loss = 0;
        goto done;
    }
    const float gs = (float)(2.0 * coef * scale / (double)B);
    for (int64_t q = 0; q < B * D; q++) G[q] *= gs;
    if (mode == 1) {
        float *P = malloc((size_t)(B * nd) * sizeof(float)), *dW = malloc((size_t)(nd * D) * sizeof(float));
        if (P && dW) dead_dense_backward(w, A, G, Wd, nd, dl, 0, P, dW, grads);
        free(P), free(dW);
    } else {
        int64_t np = 0; // compact the pairs (tokens may have fewer than kk)
        for (int64_t t = 0; t < B; t++)
            for (int64_t j = 0; j < cnt[t]; j++) {
                int64_t p = t * kk + j;
                tok[np] = tok[p], lat[np] = lat[p], a[np] = a[p];
                np++;
            }
        arch_backward_pairs(w, sae, G, np, tok, lat, a, grads);
    }
done:
    free(dl), free(tok), free(lat), free(a), free(G), free(cnt), free(A), free(Wd), free(col);
    return loss;
}

double revive_ghost(arch_work *w, const cterp_sae *sae, const float *x, const uint8_t *dead,
                    int64_t n_dead, float *grads) {
    const int64_t B = w->B, D = w->D, N = w->N;
    int32_t *dl = calloc((size_t)n_dead, sizeof(int32_t)); // (calloc: GCC -O1 cannot see the fill below)
    float *E = malloc((size_t)B * n_dead * sizeof(float));    // (B, nd) exp(z_dead)
    float *P = malloc((size_t)B * n_dead * sizeof(float));    // (B, nd)
    float *Wd = malloc((size_t)n_dead * D * sizeof(float));   // (nd, D)
    float *g = malloc((size_t)B * D * sizeof(float));         // (B, D)
    float *dW = malloc((size_t)n_dead * D * sizeof(float));   // (nd, D)
    double loss = 0;
    if (!dl || !E || !P || !Wd || !g || !dW) goto done;
    int64_t nd = 0;
    for (int64_t i = 0; i < N; i++)
        if (dead[i]) dl[nd++] = (int32_t)i;
    const float *zs = dead_copy(w, dl, nd);
    #pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B; t++)
        for (int64_t j = 0; j < nd; j++) {
            float z = dead_preact(w, sae, zs, dl, nd, t, j);
            E[t * nd + j] = expf(z < 30.0f ? z : 30.0f); // guard: exp must stay finite
        }
    for (int64_t j = 0; j < nd; j++) memcpy(Wd + j * D, sae->W_dec + (int64_t)dl[j] * D, (size_t)D * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)D, (int)nd, 1.0f, E, (int)nd,
                Wd, (int)D, 0.0f, g, (int)D);
    // per token: scale s_t, then the loss and its gradient with respect to g (overwrites g)
    const double inv = 1.0 / ((double)B * D);
    double sum = 0;
    #pragma omp parallel for schedule(static) reduction(+ : sum)
    for (int64_t t = 0; t < B; t++) {
        float *gt = g + t * D;
        double rn = 0, gn = 0;
        for (int64_t d = 0; d < D; d++) {
            double r = (double)x[t * D + d] - w->xhat[t * D + d];
            rn += r * r;
            gn += (double)gt[d] * gt[d];
        }
        float s = (float)(sqrt(rn) / (1e-6 + 2 * sqrt(gn)));
        for (int64_t d = 0; d < D; d++) {
            float r = x[t * D + d] - w->xhat[t * D + d];
            float diff = gt[d] * s - r;
            float ghost = diff * diff, mse = r * r;
            float c = mse / (ghost + 1e-6f);
            sum += (double)c * ghost;
            gt[d] = (float)(s * c * 2.0 * diff * inv); // dL/dg
        }
    }
    loss = sum * inv;
    if (!isfinite(loss)) {
        loss = 0;
        goto done;
    }
    dead_dense_backward(w, E, g, Wd, nd, dl, 1, P, dW, grads); // dz_dead = E .* (Q Wd^T)
done:
    free(dl), free(E), free(P), free(Wd), free(g), free(dW);
    return loss;
}
