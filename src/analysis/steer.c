// Steering and ablation of one SAE latent at the SAE's hook, at every position the hook sees:
// ADD adds strength x W_dec[i]; CLAMP and ABLATE edit f_i inside the SAE and keep the error term,
// x' = dec(f') + (x - dec(f)), so nothing but latent i changes (a no-op edit returns x).
#include <stdlib.h>
#include <string.h>

#include "cterp/features.h"

cterp_status cterp_steer_init(cterp_steer *s, const cterp_sae *sae, int64_t feature,
                              cterp_steer_mode mode, float value) {
    memset(s, 0, sizeof *s);
    if (cterp_sae_is_transcoder(sae)) // its decoder writes at another hook than it reads
        return cterp_error(CTERP_EINVAL, "steer: a %s is not supported", cterp_arch_name(sae->arch));
    if (feature < 0 || feature >= sae->d_sae)
        return cterp_error(CTERP_EINVAL,
                           "steer: feature %lld out of range: the SAE has d_sae %lld latents "
                           "(0..%lld)",
                           (long long)feature, (long long)sae->d_sae, (long long)sae->d_sae - 1);
    if (mode != CTERP_STEER_ADD && mode != CTERP_STEER_CLAMP && mode != CTERP_STEER_ABLATE)
        return cterp_error(CTERP_EINVAL, "steer: unknown mode %d", (int)mode);
    if (sae->arch == CTERP_ARCH_BATCHTOPK && mode != CTERP_STEER_ADD)
        return cterp_error(
            CTERP_EINVAL,
            "steer: batchtopk is a training architecture; load the saved (jumprelu) SAE");
    s->sae = sae, s->feature = feature, s->mode = mode;
    s->value = mode == CTERP_STEER_ABLATE ? 0.0f : value;
    return CTERP_OK;
}

void cterp_steer_free(cterp_steer *s) {
    if (!s) return;
    free(s->f), free(s->f_edit), free(s->buf);
    s->f = s->f_edit = s->buf = NULL, s->cap_rows = 0;
}

static cterp_status grow(cterp_steer *s, int64_t R) {
    if (R <= s->cap_rows) return CTERP_OK;
    const int64_t N = s->sae->d_sae, D = s->sae->d_in;
    free(s->f), free(s->f_edit), free(s->buf);
    s->f = malloc((size_t)(R * N) * sizeof(float));
    s->f_edit = malloc((size_t)(R * N) * sizeof(float));
    s->buf = malloc((size_t)(2 * R * D) * sizeof(float));
    if (!s->f || !s->f_edit || !s->buf) {
        cterp_steer_free(s);
        return cterp_error(CTERP_ENOMEM, "steer: out of memory (%lld rows)", (long long)R);
    }
    s->cap_rows = R;
    return CTERP_OK;
}

cterp_status cterp_steer_hook(const char *name, float *act, const int64_t *shape, int ndim,
                              void *user) {
    cterp_steer *s = user;
    const cterp_sae *sae = s->sae;
    const int64_t D = sae->d_in, N = sae->d_sae, i = s->feature;
    int64_t w = 1;
    for (int k = 2; k < ndim; k++) w *= shape[k];
    if (ndim < 3 || w != D || strstr(name, "hook_pattern"))
        return cterp_error(CTERP_EINVAL,
                           "steer: hook %s has %lld values per token, the SAE's d_in is %lld", name,
                           (long long)(ndim < 3 ? 0 : w), (long long)D);
    const int64_t R = shape[0] * shape[1];
    const float *wd = sae->W_dec + i * D;
    if (s->mode == CTERP_STEER_ADD) {
        for (int64_t r = 0; r < R; r++)
            for (int64_t d = 0; d < D; d++) act[r * D + d] += s->value * wd[d];
        s->n_rows += R, s->rows = 0;
        return CTERP_OK;
    }
    cterp_status st = grow(s, R);
    if (st) return st;
    if ((st = cterp_sae_encode(sae, act, R, s->f))) return st;
    memcpy(s->f_edit, s->f, (size_t)(R * N) * sizeof(float));
    for (int64_t r = 0; r < R; r++)
        s->sum_before += s->f[r * N + i], s->f_edit[r * N + i] = s->value;
    // x' = dec(f') + (x - dec(f)) = x + (dec(f') - dec(f)): the error term kept, b_dec cancels,
    // and a no-op edit adds exactly 0
    float *y1 = s->buf, *y0 = s->buf + R * D;
    if ((st = cterp_sae_decode(sae, s->f_edit, R, y1)) || (st = cterp_sae_decode(sae, s->f, R, y0)))
        return st;
    for (int64_t q = 0; q < R * D; q++) act[q] += y1[q] - y0[q];
    s->n_rows += R, s->rows = R;
    return CTERP_OK;
}
