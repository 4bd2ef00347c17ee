// SAE parameters and dense inference (the trainer's fast paths live in src/sae/kernels.c).
#include "cterp/sae.h"

#include "core/blas.h"
#include "sae/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *arch_names[CTERP_N_ARCHS] = {"standard", "topk",  "batchtopk", "jumprelu",
                                                  "matryoshka_batchtopk", "gated"};

const char *cterp_arch_name(cterp_arch a) {
    return (unsigned)a < CTERP_N_ARCHS ? arch_names[a] : "unknown";
}

cterp_status cterp_arch_parse(const char *name, cterp_arch *out) {
    for (int i = 0; i < CTERP_N_ARCHS; i++)
        if (name && !strcmp(name, arch_names[i])) {
            *out = (cterp_arch)i;
            return CTERP_OK;
        }
    return cterp_error(CTERP_EINVAL,
                       "architecture: got '%s', expected one of standard, topk, batchtopk, "
                       "jumprelu, matryoshka_batchtopk, gated",
                       name ? name : "(null)");
}

size_t cterp_sae_n_params(cterp_arch arch, int64_t d_in, int64_t d_sae) {
    size_t D = (size_t)d_in, N = (size_t)d_sae;
    return 2 * N * D + N + D + (arch == CTERP_ARCH_JUMPRELU ? N : 0) +
           (arch == CTERP_ARCH_GATED ? 2 * N : 0);
}

cterp_status cterp_sae_create(cterp_sae **out, cterp_arch arch, int64_t d_in, int64_t d_sae, int k) {
    *out = NULL;
    if ((unsigned)arch >= CTERP_N_ARCHS)
        return cterp_error(CTERP_EINVAL, "architecture: got %d, expected 0..%d", (int)arch,
                           CTERP_N_ARCHS - 1);
    if (d_in <= 0 || d_sae <= 0 || d_in > (1 << 24) || d_sae > (1 << 26))
        return cterp_error(CTERP_EINVAL, "d_in/d_sae: got %lld/%lld, expected 1..2^24 / 1..2^26",
                           (long long)d_in, (long long)d_sae);
    if ((arch == CTERP_ARCH_TOPK || arch == CTERP_ARCH_BATCHTOPK ||
         arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK) &&
        (k <= 0 || k > d_sae))
        return cterp_error(CTERP_EINVAL, "k: got %d, expected 1..d_sae (%lld)", k, (long long)d_sae);
    cterp_sae *s = calloc(1, sizeof *s);
    if (!s) return cterp_error(CTERP_ENOMEM, "SAE: out of memory");
    s->arch = arch;
    s->d_in = d_in;
    s->d_sae = d_sae;
    s->k = k;
    s->apply_b_dec_to_input = 1;
    strcpy(s->normalize_activations, "none");
    s->meta.hook_head_index = -1;
    s->meta.prepend_bos = 1;
    strcpy(s->meta.sequence_separator_token, "bos");
    size_t D = (size_t)d_in, N = (size_t)d_sae;
    int has_thr = arch == CTERP_ARCH_JUMPRELU;
    s->n_params = cterp_sae_n_params(arch, d_in, d_sae);
    s->params = calloc(s->n_params, sizeof(float));
    if (!s->params) {
        size_t n = s->n_params;
        free(s);
        return cterp_error(CTERP_ENOMEM, "SAE: cannot allocate %zu parameters", n);
    }
    float *p = s->params;
    s->W_enc = p, p += N * D;
    s->b_enc = p, p += N;
    s->W_dec = p, p += N * D;
    s->b_dec = p, p += D;
    s->threshold = has_thr ? p : NULL;
    if (arch == CTERP_ARCH_GATED) s->r_mag = p, p += N, s->b_mag = p;
    *out = s;
    return CTERP_OK;
}

void cterp_sae_free(cterp_sae *sae) {
    if (!sae) return;
    free(sae->params);
    free(sae);
}

static float row_norm(const float *w, int64_t D) {
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += (double)w[d] * w[d];
    return (float)sqrt(s);
}

cterp_status cterp_sae_encode(const cterp_sae *sae, const float *x, int64_t B, float *f) {
    const int64_t D = sae->d_in, N = sae->d_sae;
    if (sae->arch == CTERP_ARCH_BATCHTOPK || sae->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK)
        return cterp_error(CTERP_EINVAL, "%s is a training architecture; saved SAEs are jumprelu",
                           cterp_arch_name(sae->arch));
    const int64_t T = 256; // rows per GEMM tile
    int topk = sae->arch == CTERP_ARCH_TOPK, rescale = topk && sae->rescale_acts_by_decoder_norm;
    float *xc = malloc((size_t)(T * D) * sizeof(float));
    float *nrm = rescale ? malloc((size_t)N * sizeof(float)) : NULL;
    int32_t *idx = malloc((size_t)(topk ? sae->k : 1) * sizeof(int32_t));
    float *val = malloc((size_t)(topk ? sae->k : 1) * sizeof(float));
    if (!xc || !idx || !val || (rescale && !nrm)) {
        free(xc), free(nrm), free(idx), free(val);
        return cterp_error(CTERP_ENOMEM, "encode: out of memory");
    }
    if (nrm)
        for (int64_t i = 0; i < N; i++) nrm[i] = row_norm(sae->W_dec + i * D, D);
    for (int64_t t0 = 0; t0 < B; t0 += T) {
        int64_t nt = B - t0 < T ? B - t0 : T;
        for (int64_t t = 0; t < nt; t++)
            for (int64_t d = 0; d < D; d++)
                xc[t * D + d] = x[(t0 + t) * D + d] - (sae->apply_b_dec_to_input ? sae->b_dec[d] : 0);
        float *z = f + t0 * N;
        for (int64_t t = 0; t < nt; t++) memcpy(z + t * N, sae->b_enc, (size_t)N * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)N, (int)D, 1.0f, xc,
                    (int)D, sae->W_enc, (int)D, 1.0f, z, (int)N);
        for (int64_t t = 0; t < nt; t++) {
            float *ft = z + t * N;
            if (sae->arch == CTERP_ARCH_STANDARD) {
                for (int64_t i = 0; i < N; i++) ft[i] = ft[i] > 0 ? ft[i] : 0;
            } else if (sae->arch == CTERP_ARCH_GATED) { // ft = pi (b_enc holds b_gate)
                for (int64_t i = 0; i < N; i++) {
                    float m = expf(sae->r_mag[i]) * (ft[i] - sae->b_enc[i]) + sae->b_mag[i];
                    ft[i] = ft[i] > 0 && m > 0 ? m : 0;
                }
            } else if (sae->arch == CTERP_ARCH_JUMPRELU) {
                for (int64_t i = 0; i < N; i++)
                    ft[i] = (ft[i] > sae->threshold[i] && ft[i] > 0) ? ft[i] : 0;
            } else { // topk: keep the k largest of ReLU(z * n), ties to the lowest index
                if (nrm)
                    for (int64_t i = 0; i < N; i++) ft[i] *= nrm[i];
                int cnt = topk_row(idx, val, ft, (int)N, sae->k);
                memset(ft, 0, (size_t)N * sizeof(float));
                for (int j = 0; j < cnt; j++) ft[idx[j]] = val[j];
            }
        }
    }
    free(xc), free(nrm), free(idx), free(val);
    return CTERP_OK;
}

cterp_status cterp_sae_decode(const cterp_sae *sae, const float *f, int64_t B, float *x_hat) {
    const int64_t D = sae->d_in, N = sae->d_sae;
    int rescale = sae->arch == CTERP_ARCH_TOPK && sae->rescale_acts_by_decoder_norm;
    for (int64_t t = 0; t < B; t++) {
        float *out = x_hat + t * D;
        for (int64_t d = 0; d < D; d++) out[d] = sae->b_dec[d];
        const float *ft = f + t * N;
        for (int64_t i = 0; i < N; i++) {
            if (ft[i] == 0) continue;
            const float *w = sae->W_dec + i * D;
            float a = ft[i];
            if (rescale) {
                float n = row_norm(w, D);
                a = n > 0 ? a / n : 0;
            }
            for (int64_t d = 0; d < D; d++) out[d] += a * w[d];
        }
    }
    return CTERP_OK;
}
