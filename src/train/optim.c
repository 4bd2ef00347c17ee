#include "train/optim.h"

#include <math.h>

adam_coef adam_coefs(float lr, float b1, float b2, float eps, int64_t t, float gscale) {
    const float c1 = (float)(1.0 - pow(b1, (double)t)), c2 = (float)(1.0 - pow(b2, (double)t));
    adam_coef c = {b1, b2, eps, lr / c1, 1.0f / c2, gscale};
    return c;
}

void adam_update(float *p, const float *g, float gscale, float *m, float *v, size_t n, float lr,
                 float b1, float b2, float eps, int64_t t) {
    const adam_coef c = adam_coefs(lr, b1, b2, eps, t, gscale);
    enum { CH = 4096 };
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += CH) adam_apply(p + i, g + i, m + i, v + i, n - i < CH ? n - i : CH, &c);
}

double sched_lr(const cterp_train_config *c, int64_t step, int64_t total) {
    const double lr = c->lr, end = c->lr_end;
    const int64_t W = c->lr_warm_up_steps;
    if (step < W) return lr * (double)(step + 1) / (double)W;
    if (c->lr_scheduler == CTERP_LR_CONSTANT) return lr;
    int64_t Dn = c->lr_decay_steps >= 0 ? c->lr_decay_steps : total - W;
    if (Dn <= 0) return end;
    double p = (double)(step - W) / (double)Dn;
    if (p >= 1) return end;
    if (c->lr_scheduler == CTERP_LR_COSINE) return end + (lr - end) * 0.5 * (1 + cos(M_PI * p));
    return lr + (end - lr) * p;
}

double sched_sparsity(const cterp_train_config *c, int64_t step, int64_t total) {
    int64_t W = c->sparsity_warm_up_steps >= 0 ? c->sparsity_warm_up_steps : total;
    if (W <= 0 || step >= W) return 1.0;
    return (double)step / (double)W;
}

double sumsq_det(const float *x, size_t n) {
    enum { CH = 1 << 16, MAXCH = 4096 };
    size_t nch = (n + CH - 1) / CH;
    if (nch > MAXCH) { // huge arrays: serial, still deterministic
        double s = 0;
        for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
        return s;
    }
    double part[MAXCH];
    // partial sums per fixed chunk, added in chunk order: same result for any thread count
    #pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nch; c++) {
        double s = 0;
        size_t hi = (c + 1) * CH < n ? (c + 1) * CH : n;
        for (size_t i = c * CH; i < hi; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double total = 0;
    for (size_t c = 0; c < nch; c++) total += part[c];
    return total;
}
