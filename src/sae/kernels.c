#include "sae/kernels.h"

#include <stdlib.h>
#include <string.h>

// a beats b: larger value, or the same value at a lower index
static inline int beats(float va, int32_t ia, float vb, int32_t ib) {
    return va > vb || (va == vb && ia < ib);
}

// min-heap on "beats" order: the root is the weakest kept entry
static void heap_sift_down(int32_t *idx, float *val, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && beats(val[m], idx[m], val[l], idx[l])) m = l;
        if (r < n && beats(val[m], idx[m], val[r], idx[r])) m = r;
        if (m == i) return;
        float tv = val[i];
        int32_t ti = idx[i];
        val[i] = val[m], idx[i] = idx[m];
        val[m] = tv, idx[m] = ti;
        i = m;
    }
}

static void heap_sift_up(int32_t *idx, float *val, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!beats(val[p], idx[p], val[i], idx[i])) return;
        float tv = val[i];
        int32_t ti = idx[i];
        val[i] = val[p], idx[i] = idx[p];
        val[p] = tv, idx[p] = ti;
        i = p;
    }
}

int topk_row(int32_t *idx, float *val, const float *z, int N, int K) {
    return topk_select(idx, val, z, N, K, 0.0f);
}

int topk_select(int32_t *idx, float *val, const float *z, int N, int K, float floor) {
    int n = 0, i = 0;
    if (K <= 0) return 0;
    for (; i < N && n < K; i++) { // fill the heap with the first K qualifying entries
        float v = z[i];
        if (!(v > floor)) continue;
        idx[n] = i, val[n] = v;
        heap_sift_up(idx, val, n++);
    }
    // The root only ever rises, so it stays > floor; equal values never beat it (it has a
    // lower index). Blocks of 16 whose maximum does not beat the root are skipped without a
    // branch per element: that branch would be mispredicted half the time.
    for (; i < N && (i & 15); i++)
        if (z[i] > val[0]) {
            idx[0] = i, val[0] = z[i];
            heap_sift_down(idx, val, n, 0);
        }
    for (; i + 16 <= N; i += 16) {
        float m = z[i];
        for (int j = 1; j < 16; j++) m = z[i + j] > m ? z[i + j] : m;
        if (!(m > val[0])) continue;
        for (int j = 0; j < 16; j++)
            if (z[i + j] > val[0]) {
                idx[0] = i + j, val[0] = z[i + j];
                heap_sift_down(idx, val, n, 0);
            }
    }
    for (; i < N; i++)
        if (z[i] > val[0]) {
            idx[0] = i, val[0] = z[i];
            heap_sift_down(idx, val, n, 0);
        }
    // heap sort into descending order: repeatedly move the weakest to the end
    for (int m = n - 1; m > 0; m--) {
        float tv = val[0];
        int32_t ti = idx[0];
        val[0] = val[m], idx[0] = idx[m];
        val[m] = tv, idx[m] = ti;
        heap_sift_down(idx, val, m, 0);
    }
    return n;
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
