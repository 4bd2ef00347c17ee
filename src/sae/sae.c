// SAE parameters and dense inference (the trainer's fast paths live in src/sae/kernels.c).
#include "cterp/sae.h"

#include "core/blas.h"
#include "sae/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *arch_names[CTERP_N_ARCHS] = {"standard", "topk",  "batchtopk", "jumprelu",
                                                  "matryoshka_batchtopk", "gated", "transcoder",
                                                  "skip_transcoder", "crosscoder"};

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
                       "jumprelu, matryoshka_batchtopk, gated, transcoder, skip_transcoder, crosscoder",
                       name ? name : "(null)");
}

size_t cterp_sae_n_params_out(cterp_arch arch, int64_t d_in, int64_t d_out, int64_t d_sae) {
    size_t D = (size_t)d_in, DO = (size_t)d_out, N = (size_t)d_sae;
    return N * D + N + N * DO + DO + (arch == CTERP_ARCH_JUMPRELU ? N : 0) +
           (arch == CTERP_ARCH_GATED ? 2 * N : 0) + (arch == CTERP_ARCH_SKIP_TRANSCODER ? DO * D : 0);
}

size_t cterp_sae_n_params(cterp_arch arch, int64_t d_in, int64_t d_sae) {
    return cterp_sae_n_params_out(arch, d_in, d_in, d_sae);
}

int cterp_sae_is_transcoder(const cterp_sae *sae) {
    return sae->arch == CTERP_ARCH_TRANSCODER || sae->arch == CTERP_ARCH_SKIP_TRANSCODER;
}

static cterp_status sae_create(cterp_sae **out, cterp_arch arch, int64_t d_in, int64_t d_out,
                               int64_t d_sae, int k) {
    *out = NULL;
    if ((unsigned)arch >= CTERP_N_ARCHS)
        return cterp_error(CTERP_EINVAL, "architecture: got %d, expected 0..%d", (int)arch,
                           CTERP_N_ARCHS - 1);
    if (d_in <= 0 || d_sae <= 0 || d_in > (1 << 24) || d_sae > (1 << 26))
        return cterp_error(CTERP_EINVAL, "d_in/d_sae: got %lld/%lld, expected 1..2^24 / 1..2^26",
                           (long long)d_in, (long long)d_sae);
    if (d_out <= 0 || d_out > (1 << 24))
        return cterp_error(CTERP_EINVAL, "d_out: got %lld, expected 1..2^24", (long long)d_out);
    if ((arch == CTERP_ARCH_TOPK || arch == CTERP_ARCH_BATCHTOPK ||
         arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK) &&
        (k <= 0 || k > d_sae))
        return cterp_error(CTERP_EINVAL, "k: got %d, expected 1..d_sae (%lld)", k, (long long)d_sae);
    cterp_sae *s = calloc(1, sizeof *s);
    if (!s) return cterp_error(CTERP_ENOMEM, "SAE: out of memory");
    s->arch = arch;
    s->d_in = d_in;
    s->d_sae = d_sae;
    s->d_out = d_out;
    s->k = k;
    s->n_layers = 1;
    // SAELens's transcoders refuse it: b_dec lives in the output space; the crosscoder's
    // encoder reads x itself (Lindsey et al.; dictionary_learning's CrossCoder)
    s->apply_b_dec_to_input = arch != CTERP_ARCH_TRANSCODER && arch != CTERP_ARCH_SKIP_TRANSCODER &&
                              arch != CTERP_ARCH_CROSSCODER;
    strcpy(s->normalize_activations, "none");
    s->meta.hook_head_index = -1;
    s->meta.prepend_bos = 1;
    strcpy(s->meta.sequence_separator_token, "bos");
    size_t D = (size_t)d_in, DO = (size_t)d_out, N = (size_t)d_sae;
    int has_thr = arch == CTERP_ARCH_JUMPRELU;
    s->n_params = cterp_sae_n_params_out(arch, d_in, d_out, d_sae);
    s->params = calloc(s->n_params, sizeof(float));
    if (!s->params) {
        size_t n = s->n_params;
        free(s);
        return cterp_error(CTERP_ENOMEM, "SAE: cannot allocate %zu parameters", n);
    }
    float *p = s->params;
    s->W_enc = p, p += N * D;
    s->b_enc = p, p += N;
    s->W_dec = p, p += N * DO;
    s->b_dec = p, p += DO;
    s->threshold = has_thr ? p : NULL;
    if (arch == CTERP_ARCH_GATED) s->r_mag = p, p += N, s->b_mag = p;
    if (arch == CTERP_ARCH_SKIP_TRANSCODER) s->W_skip = p;
    *out = s;
    return CTERP_OK;
}

cterp_status cterp_sae_create(cterp_sae **out, cterp_arch arch, int64_t d_in, int64_t d_sae, int k) {
    return sae_create(out, arch, d_in, d_in, d_sae, k);
}

cterp_status cterp_sae_create_transcoder(cterp_sae **out, cterp_arch arch, int64_t d_in, int64_t d_out,
                                         int64_t d_sae) {
    if (arch != CTERP_ARCH_TRANSCODER && arch != CTERP_ARCH_SKIP_TRANSCODER) {
        *out = NULL;
        return cterp_error(CTERP_EINVAL, "cterp_sae_create_transcoder: got architecture %s, expected "
                           "transcoder or skip_transcoder", cterp_arch_name(arch));
    }
    return sae_create(out, arch, d_in, d_out, d_sae, 0);
}

cterp_status cterp_sae_create_crosscoder(cterp_sae **out, int64_t n_layers, int64_t d_layer, int64_t d_sae) {
    *out = NULL;
    if (n_layers < 2 || n_layers > 4096 || d_layer <= 0 || d_layer > (1 << 24) / n_layers)
        return cterp_error(CTERP_EINVAL, "crosscoder: got %lld layers of width %lld, expected 2..4096 layers "
                           "and layers * width <= 2^24", (long long)n_layers, (long long)d_layer);
    cterp_status s = sae_create(out, CTERP_ARCH_CROSSCODER, n_layers * d_layer, n_layers * d_layer, d_sae, 0);
    if (s == CTERP_OK) (*out)->n_layers = n_layers;
    return s;
}

float cterp_sae_decoder_norm(const cterp_sae *sae, int64_t i) {
    const int64_t L = sae->n_layers > 1 ? sae->n_layers : 1, DL = sae->d_out / L;
    double n = 0;
    for (int64_t l = 0; l < L; l++) {
        const float *w = sae->W_dec + i * sae->d_out + l * DL;
        double s = 0;
        for (int64_t d = 0; d < DL; d++) s += (double)w[d] * w[d];
        n += sqrt(s);
    }
    return (float)n;
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
        for (int64_t i = 0; i < N; i++) nrm[i] = row_norm(sae->W_dec + i * sae->d_out, sae->d_out);
    // a transcoder's b_dec is an output (SAELens refuses apply_b_dec_to_input for them)
    const int center = sae->apply_b_dec_to_input && !cterp_sae_is_transcoder(sae);
    for (int64_t t0 = 0; t0 < B; t0 += T) {
        int64_t nt = B - t0 < T ? B - t0 : T;
        for (int64_t t = 0; t < nt; t++)
            for (int64_t d = 0; d < D; d++)
                xc[t * D + d] = x[(t0 + t) * D + d] - (center ? sae->b_dec[d] : 0);
        float *z = f + t0 * N;
        for (int64_t t = 0; t < nt; t++) memcpy(z + t * N, sae->b_enc, (size_t)N * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)N, (int)D, 1.0f, xc,
                    (int)D, sae->W_enc, (int)D, 1.0f, z, (int)N);
        for (int64_t t = 0; t < nt; t++) {
            float *ft = z + t * N;
            if (sae->arch == CTERP_ARCH_STANDARD || sae->arch == CTERP_ARCH_CROSSCODER ||
                cterp_sae_is_transcoder(sae)) {
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
    const int64_t D = sae->d_out, N = sae->d_sae;
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

cterp_status cterp_sae_forward(const cterp_sae *sae, const float *x, int64_t B, float *x_hat) {
    float *f = malloc((size_t)(B * sae->d_sae) * sizeof(float) + 1);
    if (!f) return cterp_error(CTERP_ENOMEM, "forward: out of memory for %lld x %lld activations",
                               (long long)B, (long long)sae->d_sae);
    cterp_status s = cterp_sae_encode(sae, x, B, f);
    if (!s) s = cterp_sae_decode(sae, f, B, x_hat);
    free(f);
    if (s || !sae->W_skip || B == 0) return s;
    // x_hat (B, DO) += x (B, D) W_skip^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)sae->d_out, (int)sae->d_in, 1.0f, x,
                (int)sae->d_in, sae->W_skip, (int)sae->d_in, 1.0f, x_hat, (int)sae->d_out);
    return CTERP_OK;
}
