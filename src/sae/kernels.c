#include "sae/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"

// The selections themselves are kernels (src/kern/topk.inc, one compile per ISA).
int topk_select(int32_t *idx, float *val, const float *z, int N, int K, float floor) {
    return kern->topk->select(idx, val, z, N, K, floor);
}

int topk_select_unsorted(int32_t *idx, float *val, const float *z, int N, int K, float *scratch) {
    return kern->topk->select_unsorted(idx, val, z, N, K, scratch);
}

int topk_row(int32_t *idx, float *val, const float *z, int N, int K) {
    return topk_select(idx, val, z, N, K, 0.0f);
}

int topk_row_naive(int32_t *idx, float *val, const float *z, int N, int K) {
    int n = 0;
    char *taken = calloc((size_t)N, 1);
    for (; n < K; n++) {
        int best = -1;
        for (int i = 0; i < N; i++)
            if (!taken[i] && z[i] > 0 && (best < 0 || z[i] > z[best])) best = i;
        if (best < 0) break;
        taken[best] = 1;
        idx[n] = best, val[n] = z[best];
    }
    free(taken);
    return n;
}
