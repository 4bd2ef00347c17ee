#include "sae/kernels.h"

#include <math.h>
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

// K-th largest of a[0..n) (n >= K), by a min-heap of K values.
static float kth_largest(const float *a, int n, int K, float *heap) {
    int m = 0;
    heap[0] = -INFINITY; // n >= K >= 1 always; this only keeps the compiler's flow analysis quiet
    for (int i = 0; i < n; i++) {
        float v = a[i];
        if (m < K) { // sift up
            int j = m++;
            heap[j] = v;
            while (j > 0 && heap[(j - 1) / 2] > heap[j]) {
                float t = heap[j];
                heap[j] = heap[(j - 1) / 2], heap[(j - 1) / 2] = t;
                j = (j - 1) / 2;
            }
        } else if (v > heap[0]) { // sift down
            heap[0] = v;
            for (int j = 0;;) {
                int l = 2 * j + 1, r = l + 1, c = j;
                if (l < K && heap[l] < heap[c]) c = l;
                if (r < K && heap[r] < heap[c]) c = r;
                if (c == j) break;
                float t = heap[j];
                heap[j] = heap[c], heap[c] = t;
                j = c;
            }
        }
    }
    return heap[0];
}

static inline void heap_offer(int32_t *idx, float *val, int *n, int K, int i, float v) {
    if (*n < K) {
        idx[*n] = i, val[*n] = v;
        heap_sift_up(idx, val, (*n)++);
    } else if (beats(v, i, val[0], idx[0])) { // offers may come in any index order
        idx[0] = i, val[0] = v;
        heap_sift_down(idx, val, *n, 0);
    }
}

enum { TK_BLK = 16, TK_MAXB = 4096 };

int topk_select(int32_t *idx, float *val, const float *z, int N, int K, float floor) {
    int n = 0;
    if (K <= 0) return 0;
    const int nb = N / TK_BLK;
    if (nb < K || nb > TK_MAXB || K > 256) { // small rows or large K: plain heap scan
        for (int i = 0; i < N; i++)
            if (z[i] > floor) heap_offer(idx, val, &n, K, i, z[i]);
        goto sort;
    }
    // Block maxima bound the answer: the K-th largest block maximum tau is an element, and at
    // least K elements (one per block) are >= tau, so every one of the top K is >= tau. Only
    // blocks whose maximum reaches tau are scanned. Block b holds the strided elements
    // b, b + nb, b + 2 nb, ... so that the maxima are a vertical max (vectorised), and the heap
    // breaks ties by index whatever the order of the offers.
    float bm[TK_MAXB], heap[256];
    memcpy(bm, z, (size_t)nb * sizeof(float));
    for (int j = 1; j < TK_BLK; j++) {
        const float *zj = z + j * nb;
        for (int b = 0; b < nb; b++) bm[b] = zj[b] > bm[b] ? zj[b] : bm[b];
    }
    // With enough blocks, a second level (strided maxima of groups of g block maxima, g up to 16,
    // at least 2K groups) gives a looser bound of the same kind for a fraction of the cost: the
    // K-th largest of nb/g values rather than of nb (at 24576/32: ~38 candidates instead of ~32,
    // and the heap pass 16x shorter).
    int g = TK_BLK;
    while (g > 1 && nb / g < 2 * K) g /= 2;
    const int nb2 = nb / g;
    float tau;
    if (g >= 4) {
        float bm2[TK_MAXB / 4];
        memcpy(bm2, bm, (size_t)nb2 * sizeof(float));
        for (int j = 1; j < g; j++) {
            const float *bj = bm + j * nb2;
            for (int b = 0; b < nb2; b++) bm2[b] = bj[b] > bm2[b] ? bj[b] : bm2[b];
        }
        tau = kth_largest(bm2, nb2, K, heap);
    } else {
        tau = kth_largest(bm, nb, K, heap);
    }
    for (int b = 0; b < nb; b++) {
        if (!(bm[b] >= tau) || !(bm[b] > floor)) continue;
        for (int j = 0; j < TK_BLK; j++) {
            float v = z[b + j * nb];
            if (v >= tau && v > floor) heap_offer(idx, val, &n, K, b + j * nb, v);
        }
    }
    for (int i = nb * TK_BLK; i < N; i++)
        if (z[i] >= tau && z[i] > floor) heap_offer(idx, val, &n, K, i, z[i]);
sort:
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

// float -> uint32 with the same order (NaN is handled by the caller)
static inline uint32_t ordered_key(float f) {
    if (f == 0) f = 0.0f; // -0 ties with +0
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

int topk_select_unsorted(int32_t *idx, float *val, const float *z, int N, int K, float *scratch) {
    // The K-th largest key T by binary search on the key's bits: the largest T with at least K
    // keys >= T. Each probe is one vectorised counting pass over the row (no branches, no
    // histograms: at N = 2458, K = 384 it is ~10x faster than a radix select), and the range
    // starts at [min key, max key]. NaN gets key 0, below every number, and is never taken.
    uint32_t *key = (uint32_t *)scratch;
    int n = 0;
    uint32_t lo = UINT32_MAX, hi = 1;
    for (int i = 0; i < N; i++) {
        const int num = z[i] == z[i];
        const uint32_t k = num ? ordered_key(z[i]) : 0;
        key[i] = k, n += num;
        if (num) lo = k < lo ? k : lo, hi = k > hi ? k : hi;
    }
    if (K <= 0 || n == 0) return 0;
    if (K > n) K = n;
    while (lo < hi) { // invariant: count(key >= lo) >= K, count(key > hi) < K
        const uint32_t mid = lo + (hi - lo) / 2 + 1;
        int c = 0;
        for (int i = 0; i < N; i++) c += key[i] >= mid;
        if (c >= K) lo = mid;
        else hi = mid - 1;
    }
    int above = 0; // take every key above T and the lowest-index ties
    for (int i = 0; i < N; i++) above += key[i] > lo;
    int need = K - above, c = 0;
    for (int i = 0; i < N; i++)
        if (key[i] > lo || (key[i] == lo && need-- > 0)) idx[c] = i, val[c] = z[i], c++;
    return c;
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
