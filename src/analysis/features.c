// Feature statistics of an SAE over a corpus in one streaming pass: frequency, mean/max
// activation, an exact mergeable histogram, top-N examples (a min-heap per latent) and
// quantile-interval samples (bottom-k of a seeded hash), then a replay of only the forward
// batches that hold an example to cut their contexts; logit effects through the unembedding.
// Definitions: include/cterp/features.h and docs/features.md.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/features_impl.h"
#include "core/blas.h"
#include "core/file.h"

void cterp_features_config_default(cterp_features_config *c) {
    memset(c, 0, sizeof *c);
    cterp_window_config_default(&c->windows);
    cterp_dataset_opts_default(&c->data);
    c->batch = 8;
    c->n_windows = 0;
    c->hook = NULL;
    c->top_n = 20;
    c->quantile_k = 5;
    c->ctx_left = 5, c->ctx_right = 5;
    c->n_logits = 10;
    c->seed = 0;
    c->n_neighbours = 5;
    c->cofire_max_latents = 4096;
    c->loss_windows = 0;
    c->loss_top = 5;
    c->view_windows = 4;
}

// ---- token display ------------------------------------------------------------------------

// Copies src (n bytes) into buf as valid UTF-8 (invalid bytes -> U+FFFD), NUL-terminated.
static void utf8_sanitize(char *buf, size_t cap, const char *src, size_t n) {
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < n && o + 4 < cap;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n && !(len == 2 && c < 0xC2);
        for (size_t k = 1; ok && k < len; k++) ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && len == 3)
            ok = !(c == 0xE0 && s[i + 1] < 0xA0) && !(c == 0xED && s[i + 1] >= 0xA0);
        if (ok && len == 4)
            ok = !(c == 0xF0 && s[i + 1] < 0x90) && !(c == 0xF4 && s[i + 1] >= 0x90) && c <= 0xF4;
        if (ok && c != 0) {
            memcpy(buf + o, s + i, len), o += len, i += len;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3), o += 3, i++;
        }
    }
    buf[o] = 0;
}

char *cterp_token_display(const cterp_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    char tmp[512];
    size_t n = 0;
    if (!tok || id < 0 || id >= cterp_tokenizer_n_vocab(tok)) {
        snprintf(buf, cap, "<%d>", (int)id);
        return buf;
    }
    const char *s = cterp_tokenizer_token(tok, id);
    if (!strcmp(cterp_tokenizer_kind(tok), "gpt2") && !cterp_tokenizer_is_special(tok, id)) {
        char *text = NULL;
        size_t len = 0;
        if (cterp_detokenize(tok, &id, 1, 1, &text, &len) == CTERP_OK) {
            utf8_sanitize(buf, cap, text, len);
            free(text);
            return buf;
        }
        free(text);
    }
    unsigned b;
    if (strlen(s) == 6 && sscanf(s, "<0x%2X>", &b) == 1) { // SentencePiece byte fallback
        if (b == '\n' || b == '\t' || (b >= 0x20 && b < 0x7f))
            tmp[n++] = (char)b;
        else
            n = (size_t)snprintf(tmp, sizeof tmp, "%s", s);
    } else {
        for (size_t i = 0; s[i] && n + 4 < sizeof tmp;) {
            if (!strncmp(s + i, "\xE2\x96\x81", 3))
                tmp[n++] = ' ', i += 3; // "▁"
            else
                tmp[n++] = s[i++];
        }
    }
    utf8_sanitize(buf, cap, tmp, n);
    return buf;
}

// ---- per-latent collector -----------------------------------------------------------------

typedef struct {
    float act;
    int64_t g; // token index: window * T + pos
} top_ent;

typedef struct {
    uint64_t key;
    int64_t g;
    float act;
} q_ent;

enum { HB = CTERP_FEAT_HIST_BINS, NG = CTERP_FEAT_GROUPS, BPG = HB / NG };

typedef struct {
    int64_t N, topn, K;
    uint64_t seed;
    int64_t *fired;  // (N)
    double *sum;     // (N)
    float *max, *hi; // (N); hi: power-of-two range of the histogram (0: never fired)
    int64_t *hist;   // (N, HB)
    int64_t *qcount; // (N, NG)
    int *qn;         // (N, NG)
    q_ent *q;        // (N, NG, K)
    int *ntop;       // (N)
    top_ent *top;    // (N, topn) min-heap: the root is the weakest kept
    int bad;         // a non-finite activation was seen
    uint32_t *co;    // (N, N) co-firing counts, or NULL (d_sae > cofire_max_latents)
    int64_t *csr;    // (R + 1) row offsets of the active latents of the batch being added
    int32_t *act;    // active latents of that batch
    int64_t csr_cap, act_cap;
} collector;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t sample_key(uint64_t seed, int64_t i, int64_t g) {
    return mix64(mix64(seed + 0x9e3779b97f4a7c15ULL) ^
                 mix64((uint64_t)i * 0xd1b54a32d192ed03ULL + (uint64_t)g));
}

// a is weaker than b: lower activation, or the same and a later token
static int top_weaker(const top_ent *a, const top_ent *b) {
    return a->act < b->act || (a->act == b->act && a->g > b->g);
}

static int q_less(const q_ent *a, const q_ent *b) {
    return a->key < b->key || (a->key == b->key && a->g < b->g);
}

static void heap_push(top_ent *h, int *n, int cap, top_ent e) {
    if (*n < cap) {
        int j = (*n)++;
        while (j > 0 && top_weaker(&e, &h[(j - 1) / 2])) h[j] = h[(j - 1) / 2], j = (j - 1) / 2;
        h[j] = e;
        return;
    }
    if (!top_weaker(&h[0], &e)) return;
    int j = 0;
    for (;;) { // sift the new root down
        int l = 2 * j + 1, r = l + 1, m = j;
        const top_ent *mv = &e;
        if (l < cap && top_weaker(&h[l], mv)) m = l, mv = &h[l];
        if (r < cap && top_weaker(&h[r], mv)) m = r;
        if (m == j) break;
        h[j] = h[m], j = m;
    }
    h[j] = e;
}

// bottom-k insert: keep the K smallest keys
static void q_insert(q_ent *q, int *n, int K, q_ent e) {
    if (*n < K) {
        q[(*n)++] = e;
        return;
    }
    int w = 0;
    for (int j = 1; j < K; j++)
        if (q_less(&q[w], &q[j])) w = j;
    if (q_less(&e, &q[w])) q[w] = e;
}

// hi doubles: histogram bins and quantile groups merge pairwise (exact: counts add, bottom-k
// of a union is the bottom-k of the two bottom-k samples)
static void grow(collector *c, int64_t i) {
    int64_t *h = c->hist + i * HB, *qc = c->qcount + i * NG;
    int *qn = c->qn + i * NG;
    q_ent *q = c->q + i * NG * c->K, tmp[64];
    for (int j = 0; j < HB / 2; j++) h[j] = h[2 * j] + h[2 * j + 1];
    memset(h + HB / 2, 0, sizeof(int64_t) * HB / 2);
    for (int j = 0; j < NG / 2; j++) {
        int n = 0;
        for (int s = 2 * j; s <= 2 * j + 1; s++)
            for (int k = 0; k < qn[s]; k++) q_insert(tmp, &n, (int)c->K, q[s * c->K + k]);
        memcpy(q + j * c->K, tmp, (size_t)n * sizeof *tmp);
        qc[j] = qc[2 * j] + qc[2 * j + 1], qn[j] = n;
    }
    for (int j = NG / 2; j < NG; j++) qc[j] = 0, qn[j] = 0;
    c->hi[i] *= 2;
}

static void update(collector *c, int64_t i, float a, int64_t g) {
    if (!isfinite(a)) {
#pragma omp atomic write
        c->bad = 1;
        return;
    }
    c->fired[i]++, c->sum[i] += a;
    if (a > c->max[i]) c->max[i] = a;
    if (c->hi[i] == 0) {
        int e;
        frexpf(a, &e); // a < 2^e
        c->hi[i] = ldexpf(1.0f, e);
    }
    while (a >= c->hi[i]) grow(c, i);
    int b = (int)(a / c->hi[i] * HB); // hi is a power of two: the bin edges are exact
    b = b < 0 ? 0 : b >= HB ? HB - 1 : b;
    c->hist[i * HB + b]++;
    int gr = b / BPG;
    c->qcount[i * NG + gr]++;
    q_ent e = {sample_key(c->seed, i, g), g, a};
    q_insert(c->q + (i * NG + gr) * c->K, &c->qn[i * NG + gr], (int)c->K, e);
    top_ent t = {a, g};
    heap_push(c->top + i * c->topn, &c->ntop[i], (int)c->topn, t);
}

static void collector_free(collector *c) {
    free(c->fired), free(c->sum), free(c->max), free(c->hi), free(c->hist), free(c->qcount);
    free(c->qn), free(c->q), free(c->ntop), free(c->top);
    free(c->co), free(c->csr), free(c->act);
}

static cterp_status collector_init(collector *c, int64_t N, int topn, int K, uint64_t seed,
                                   int cofire) {
    memset(c, 0, sizeof *c);
    c->N = N, c->topn = topn, c->K = K, c->seed = seed;
    c->fired = calloc((size_t)N, sizeof(int64_t));
    c->sum = calloc((size_t)N, sizeof(double));
    c->max = calloc((size_t)N, sizeof(float));
    c->hi = calloc((size_t)N, sizeof(float));
    c->hist = calloc((size_t)(N * HB), sizeof(int64_t));
    c->qcount = calloc((size_t)(N * NG), sizeof(int64_t));
    c->qn = calloc((size_t)(N * NG), sizeof(int));
    c->q = calloc((size_t)(N * NG * K), sizeof(q_ent));
    c->ntop = calloc((size_t)N, sizeof(int));
    c->top = calloc((size_t)(N * topn), sizeof(top_ent));
    if (cofire && !(c->co = calloc((size_t)N * (size_t)N, sizeof(uint32_t)))) {
        collector_free(c);
        return cterp_error(CTERP_ENOMEM,
                           "features: out of memory for the co-firing table (%lld x %lld; lower "
                           "cofire_max_latents)",
                           (long long)N, (long long)N);
    }
    if (!c->fired || !c->sum || !c->max || !c->hi || !c->hist || !c->qcount || !c->qn || !c->q ||
        !c->ntop || !c->top) {
        collector_free(c);
        return cterp_error(CTERP_ENOMEM, "features: out of memory for %lld latents", (long long)N);
    }
    return CTERP_OK;
}

// ---- the pass ------------------------------------------------------------------------------

typedef struct {
    float *x; // (B*T, D) captured
    int64_t D;
} capture;

// Per-token rows of width D: [B,T,D] or [B,T,H,hd] flattened.
static cterp_status hook_width(const char *name, const int64_t *shape, int ndim, int64_t D,
                               const char *who) {
    int64_t w = 1;
    for (int k = 2; k < ndim; k++) w *= shape[k];
    if (ndim < 3 || w != D ||
        strstr(name, "hook_pattern")) // the pattern is per head, not per token
        return cterp_error(CTERP_EINVAL,
                           "%s: hook %s has %lld values per token, the SAE's d_in is %lld", who,
                           name, (long long)(ndim < 3 ? 0 : w), (long long)D);
    return CTERP_OK;
}

static cterp_status capture_hook(const char *name, float *act, const int64_t *shape, int ndim,
                                 void *user) {
    capture *cp = user;
    cterp_status s = hook_width(name, shape, ndim, cp->D, "features");
    if (s) return s;
    memcpy(cp->x, act, (size_t)(shape[0] * shape[1] * cp->D) * sizeof(float));
    return CTERP_OK;
}

typedef struct {
    int64_t g;   // token index of the example
    int64_t lat; // latent
    cterp_feature_example *ex;
} ex_ref;

static int cmp_ref(const void *a, const void *b) {
    const ex_ref *x = a, *y = b;
    if (x->g != y->g) return x->g < y->g ? -1 : 1;
    if (x->lat != y->lat) return x->lat < y->lat ? -1 : 1;
    return x->ex < y->ex ? -1 : x->ex > y->ex;
}

static int cmp_top_desc(const void *a, const void *b) {
    const top_ent *x = a, *y = b;
    return top_weaker(y, x) ? -1 : top_weaker(x, y) ? 1 : 0;
}

static int cmp_q_desc(const void *a, const void *b) {
    const q_ent *x = a, *y = b;
    if (x->act != y->act) return x->act > y->act ? -1 : 1;
    return x->g < y->g ? -1 : x->g > y->g;
}

void cterp_features_free(cterp_features *f) {
    if (!f) return;
    if (f->ex_mem)
        for (int64_t i = 0; i < f->d_sae; i++) free(((void **)f->ex_mem)[i]);
    free(f->ex_mem), free(f->str_mem), free(f->mem), free(f->view_mem);
    free(f);
}

// The struct, the feature array, loss slots (8-byte aligned, first), logit and neighbour arrays
// per latent and vocab pointers in one block; per-latent example blocks in ex_mem.
cterp_status features_alloc(cterp_features **out, int64_t N, int n_logits, int n_neigh, int n_loss,
                            int64_t V) {
    cterp_features *f = calloc(1, sizeof *f);
    n_logits = n_logits > 0 ? n_logits : 0, n_neigh = n_neigh > 0 ? n_neigh : 0;
    n_loss = n_loss > 0 ? n_loss : 0;
    size_t per = (size_t)n_logits * 2 * (sizeof(int32_t) + sizeof(float)) +
                 (size_t)n_neigh * 2 * (sizeof(int32_t) + sizeof(float));
    size_t bytes = (size_t)N * sizeof(cterp_feature) + (size_t)V * sizeof(char *) +
                   (size_t)N * (size_t)n_loss * sizeof(cterp_feature_loss) + (size_t)N * per;
    if (f) f->mem = calloc(1, bytes), f->ex_mem = calloc((size_t)N, sizeof(void *));
    if (!f || !f->mem || !f->ex_mem) {
        if (f) free(f->mem), free(f->ex_mem), free(f);
        return cterp_error(CTERP_ENOMEM, "features: out of memory for %lld latents", (long long)N);
    }
    f->d_sae = N, f->n_vocab = V;
    f->f = f->mem;
    char *p = (char *)(f->f + N);
    f->vocab = (char **)p, p += (size_t)V * sizeof(char *);
    cterp_feature_loss *ls = (cterp_feature_loss *)p;
    p += (size_t)N * (size_t)n_loss * sizeof(cterp_feature_loss);
    for (int64_t i = 0; i < N; i++) {
        cterp_feature *ft = &f->f[i];
        ft->n_logits = n_logits;
        ft->loss_top = ls + i * n_loss;
        ft->logit_top_ids = (int32_t *)p, p += (size_t)n_logits * sizeof(int32_t);
        ft->logit_bot_ids = (int32_t *)p, p += (size_t)n_logits * sizeof(int32_t);
        ft->cofire_ids = (int32_t *)p, p += (size_t)n_neigh * sizeof(int32_t);
        ft->dec_ids = (int32_t *)p, p += (size_t)n_neigh * sizeof(int32_t);
        ft->logit_top = (float *)p, p += (size_t)n_logits * sizeof(float);
        ft->logit_bot = (float *)p, p += (size_t)n_logits * sizeof(float);
        ft->cofire_jaccard = (float *)p, p += (size_t)n_neigh * sizeof(float);
        ft->dec_cos = (float *)p, p += (size_t)n_neigh * sizeof(float);
    }
    *out = f;
    return CTERP_OK;
}

cterp_status features_view_alloc(cterp_features *f, int n, int64_t T) {
    const size_t nt = (size_t)n * (size_t)T, K = CTERP_FEAT_VIEW_K;
    free(f->view_mem), f->view_mem = NULL, f->view_n = 0;
    if (n <= 0) return CTERP_OK;
    char *p = calloc(1, (size_t)n * sizeof(int64_t) + nt * (sizeof(int32_t) + 1) +
                            nt * K * (sizeof(int32_t) + sizeof(float)));
    if (!p) return cterp_error(CTERP_ENOMEM, "features: out of memory (token view)");
    f->view_mem = p, f->view_n = n;
    f->view_window = (int64_t *)p, p += (size_t)n * sizeof(int64_t);
    f->view_ids = (int32_t *)p, p += nt * K * sizeof(int32_t);
    f->view_acts = (float *)p, p += nt * K * sizeof(float);
    f->view_tokens = (int32_t *)p, p += nt * sizeof(int32_t);
    f->view_mask = (uint8_t *)p;
    return CTERP_OK;
}

// Keeps the k largest of v[0..n) except `self` in ids/val, best first; ties: lower index.
static int top_k_of(const float *v, int64_t n, int64_t self, int k, int32_t *ids, float *val,
                    float min_excl) {
    int m = 0;
    if (k <= 0) return 0;
    for (int64_t j = 0; j < n; j++) {
        float x = v[j];
        if (j == self || !(x > min_excl) || (m == k && !(x > val[m - 1]))) continue;
        int q = m < k ? m++ : k - 1;
        while (q > 0 && x > val[q - 1]) val[q] = val[q - 1], ids[q] = ids[q - 1], q--;
        val[q] = x, ids[q] = (int32_t)j;
    }
    return m;
}

cterp_status cterp_decoder_neighbours(const float *W, int64_t N, int64_t D, int k, int32_t *ids,
                                      float *cos) {
    if (N < 2 || D < 1 || k < 1 || k >= N)
        return cterp_error(CTERP_EINVAL,
                           "decoder neighbours: need 1 <= k < N and D >= 1 (got k %d, N %lld, D "
                           "%lld)",
                           k, (long long)N, (long long)D);
    const int64_t C = 256;
    float *Wn = malloc((size_t)(N * D) * sizeof(float));
    float *S = malloc((size_t)(C * N) * sizeof(float));
    if (!Wn || !S) {
        free(Wn), free(S);
        return cterp_error(CTERP_ENOMEM, "decoder neighbours: out of memory (%lld x %lld)",
                           (long long)N, (long long)D);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        double nn = 0;
        for (int64_t d = 0; d < D; d++) nn += (double)W[i * D + d] * W[i * D + d];
        float s = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0.0f;
        for (int64_t d = 0; d < D; d++) Wn[i * D + d] = W[i * D + d] * s;
    }
    for (int64_t i0 = 0; i0 < N; i0 += C) {
        const int64_t n = N - i0 < C ? N - i0 : C;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)N, (int)D, 1.0f,
                    Wn + i0 * D, (int)D, Wn, (int)D, 0.0f, S, (int)N);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < n; r++) {
            int32_t *id = ids + (i0 + r) * k;
            float *cv = cos + (i0 + r) * k;
            int m = top_k_of(S + r * N, N, i0 + r, k, id, cv, -INFINITY);
            for (; m < k; m++) id[m] = -1, cv[m] = 0; // only with NaN cosines
        }
    }
    free(Wn), free(S);
    return CTERP_OK;
}

// One block for latent i: n_ex examples with room for `ctx` tokens each.
cterp_feature_example *examples_alloc(cterp_features *f, int64_t i, int64_t n_ex, int64_t ctx) {
    if (n_ex == 0) return NULL;
    size_t bytes = (size_t)n_ex * (sizeof(cterp_feature_example) +
                                   (size_t)ctx * (sizeof(int32_t) + sizeof(float)));
    char *p = calloc(1, bytes);
    if (!p) return NULL;
    ((void **)f->ex_mem)[i] = p;
    cterp_feature_example *ex = (cterp_feature_example *)p;
    int32_t *tk = (int32_t *)(ex + n_ex);
    float *ac = (float *)(tk + n_ex * ctx);
    for (int64_t k = 0; k < n_ex; k++) ex[k].tokens = tk + k * ctx, ex[k].acts = ac + k * ctx;
    return ex;
}

static cterp_status fill_vocab(cterp_features *f, const cterp_tokenizer *tok) {
    size_t total = 0;
    char buf[512];
    for (int64_t v = 0; v < f->n_vocab; v++)
        total += strlen(cterp_token_display(tok, (int32_t)v, buf, sizeof buf)) + 1;
    char *p = f->str_mem = malloc(total ? total : 1);
    if (!p) return cterp_error(CTERP_ENOMEM, "features: out of memory for the vocabulary");
    for (int64_t v = 0; v < f->n_vocab; v++) {
        size_t n = strlen(cterp_token_display(tok, (int32_t)v, buf, sizeof buf)) + 1;
        memcpy(p, buf, n);
        f->vocab[v] = p, p += n;
    }
    return CTERP_OK;
}

cterp_status cterp_logit_effects(cterp_model *m, const cterp_sae *sae, int64_t i0, int64_t n,
                                 float *out) {
    const cterp_model_config *mc = cterp_model_config_of(m);
    if (sae->d_out != sae->d_in)
        return cterp_error(CTERP_EINVAL, "logit effects: the %s writes d_out %lld, not its d_in %lld",
                           cterp_arch_name(sae->arch), (long long)sae->d_out, (long long)sae->d_in);
    if (sae->d_in != mc->d_model)
        return cterp_error(CTERP_EINVAL,
                           "logit effects: the SAE's d_in %lld is not the model's d_model %d (the "
                           "hook is not in the residual stream)",
                           (long long)sae->d_in, mc->d_model);
    if (i0 < 0 || n < 0 || i0 + n > sae->d_sae)
        return cterp_error(CTERP_EINVAL, "logit effects: latents [%lld, %lld) outside [0, %lld)",
                           (long long)i0, (long long)(i0 + n), (long long)sae->d_sae);
    return cterp_model_unembed(m, sae->W_dec + i0 * sae->d_in, n, out);
}

static void logit_summary(cterp_feature *ft, const float *l, int64_t V) {
    const int n = ft->n_logits < V ? ft->n_logits : (int)V;
    int nt = 0, nb = 0;
    float lo = l[0], hi = l[0];
    for (int64_t v = 0; v < V; v++) {
        float x = l[v];
        lo = x < lo ? x : lo, hi = x > hi ? x : hi;
        // insertion into the sorted top (desc) and bottom (asc) lists; ties: lower id first
        if (nt < n || x > ft->logit_top[nt - 1]) {
            int j = nt < n ? nt++ : n - 1;
            while (j > 0 && x > ft->logit_top[j - 1])
                ft->logit_top[j] = ft->logit_top[j - 1],
                ft->logit_top_ids[j] = ft->logit_top_ids[j - 1], j--;
            ft->logit_top[j] = x, ft->logit_top_ids[j] = (int32_t)v;
        }
        if (nb < n || x < ft->logit_bot[nb - 1]) {
            int j = nb < n ? nb++ : n - 1;
            while (j > 0 && x < ft->logit_bot[j - 1])
                ft->logit_bot[j] = ft->logit_bot[j - 1],
                ft->logit_bot_ids[j] = ft->logit_bot_ids[j - 1], j--;
            ft->logit_bot[j] = x, ft->logit_bot_ids[j] = (int32_t)v;
        }
    }
    ft->n_logits = n;
    ft->logit_lo = lo, ft->logit_hi = hi;
    memset(ft->logit_hist, 0, sizeof ft->logit_hist);
    for (int64_t v = 0; v < V; v++) {
        int b = hi > lo ? (int)((l[v] - lo) / (hi - lo) * CTERP_FEAT_LOGIT_BINS) : 0;
        ft->logit_hist[b < 0 ? 0 : b >= CTERP_FEAT_LOGIT_BINS ? CTERP_FEAT_LOGIT_BINS - 1 : b]++;
    }
}

// Reads up to Bm windows of the next batch; *B windows read (0 at the end).
static cterp_status next_batch(cterp_windows *w, int32_t *tok, uint8_t *mask, int Bm, int64_t T,
                               int64_t left, int *B) {
    int eof = 0;
    *B = 0;
    while (*B < Bm && *B < left) {
        cterp_status s = cterp_windows_next(w, tok + *B * T, mask + *B * T, &eof);
        if (s) return s;
        if (eof) break;
        (*B)++;
    }
    return CTERP_OK;
}

// ---- accumulator ---------------------------------------------------------------------------

struct cterp_feature_acc {
    collector col;
    cterp_features_config cfg;
    int64_t n_tokens;
};

static cterp_status check_config(const cterp_features_config *c) {
    if (c->n_neighbours < 0 || c->n_neighbours > 64 || c->cofire_max_latents < 0 ||
        c->loss_windows < 0 || c->loss_top < 0 || c->loss_top > 64 || c->view_windows < 0 ||
        c->view_windows > 4096)
        return cterp_error(CTERP_EINVAL,
                           "features: need 0 <= n_neighbours <= 64, cofire_max_latents >= 0, "
                           "loss_windows >= 0, 0 <= loss_top <= 64, 0 <= view_windows <= 4096 "
                           "(got %d, %lld, %lld, %d, %d)",
                           c->n_neighbours, (long long)c->cofire_max_latents,
                           (long long)c->loss_windows, c->loss_top, c->view_windows);
    if (c->batch < 1 || c->top_n < 1 || c->quantile_k < 1 || c->quantile_k > 32 ||
        c->ctx_left < 0 || c->ctx_right < 0 || c->n_logits < 0 || c->n_windows < 0 ||
        c->windows.context_size < 1)
        return cterp_error(
            CTERP_EINVAL,
            "features: need batch >= 1, top_n >= 1, 1 <= quantile_k <= 32, context "
            "sizes >= 0, n_logits >= 0 (got batch %d, top_n %d, quantile_k %d, ctx %d/%d, "
            "n_logits %d, context_size %d)",
            c->batch, c->top_n, c->quantile_k, c->ctx_left, c->ctx_right, c->n_logits,
            c->windows.context_size);
    return CTERP_OK;
}

cterp_status cterp_feature_acc_create(cterp_feature_acc **out, int64_t d_sae,
                                      const cterp_features_config *c) {
    *out = NULL;
    cterp_features_config cd;
    if (!c) cterp_features_config_default(&cd), c = &cd;
    cterp_status s = check_config(c);
    if (s) return s;
    if (d_sae < 1) return cterp_error(CTERP_EINVAL, "features: d_sae %lld < 1", (long long)d_sae);
    cterp_feature_acc *a = calloc(1, sizeof *a);
    if (!a) return cterp_error(CTERP_ENOMEM, "features: out of memory");
    const int cofire = c->n_neighbours > 0 && d_sae > 1 && d_sae <= c->cofire_max_latents;
    if ((s = collector_init(&a->col, d_sae, c->top_n, c->quantile_k, c->seed, cofire))) {
        free(a);
        return s;
    }
    a->cfg = *c;
    *out = a;
    return CTERP_OK;
}

void cterp_feature_acc_free(cterp_feature_acc *a) {
    if (!a) return;
    collector_free(&a->col);
    free(a);
}

// Co-firing counts: the active latents of each row (CSR), then co[a][b]++ for every pair of
// active latents of a row; each thread owns a range of rows a of the table.
static cterp_status cofire_add(collector *col, const float *f, int64_t R, const uint8_t *mask) {
    const int64_t N = col->N;
    int64_t nnz = 0;
    for (int64_t r = 0; r < R; r++)
        if (!mask || !mask[r])
            for (int64_t i = 0; i < N; i++) nnz += f[r * N + i] > 0;
    if (col->csr_cap < R + 1) {
        free(col->csr), col->csr = malloc((size_t)(R + 1) * sizeof(int64_t));
        col->csr_cap = col->csr ? R + 1 : 0;
    }
    if (col->act_cap < nnz) {
        free(col->act), col->act = malloc((size_t)(nnz ? nnz : 1) * sizeof(int32_t));
        col->act_cap = col->act ? nnz : 0;
    }
    if (!col->csr || !col->act)
        return cterp_error(CTERP_ENOMEM, "features: out of memory (co-firing, %lld active)",
                           (long long)nnz);
    int64_t q = 0;
    for (int64_t r = 0; r < R; r++) {
        col->csr[r] = q;
        if (!mask || !mask[r])
            for (int64_t i = 0; i < N; i++)
                if (f[r * N + i] > 0) col->act[q++] = (int32_t)i;
    }
    col->csr[R] = q;
    const int64_t *csr = col->csr;
    const int32_t *act = col->act;
    uint32_t *co = col->co;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t a0 = 0; a0 < N; a0 += 64) {
        const int64_t a1 = a0 + 64 < N ? a0 + 64 : N;
        for (int64_t r = 0; r < R; r++)
            for (int64_t x = csr[r]; x < csr[r + 1]; x++) {
                if (act[x] < a0 || act[x] >= a1) continue;
                uint32_t *row = co + (int64_t)act[x] * N;
                for (int64_t y = csr[r]; y < csr[r + 1]; y++) row[act[y]]++;
            }
    }
    return CTERP_OK;
}

cterp_status cterp_feature_acc_add(cterp_feature_acc *a, const float *f, int64_t R, int64_t g0,
                                   const uint8_t *mask) {
    collector *col = &a->col;
    const int64_t N = col->N;
    for (int64_t r = 0; r < R; r++) a->n_tokens += !mask || !mask[r];
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i0 = 0; i0 < N;
         i0 += 64) { // each thread owns a range of latents: rows stay in order
        int64_t i1 = i0 + 64 < N ? i0 + 64 : N;
        for (int64_t r = 0; r < R; r++) {
            if (mask && mask[r]) continue;
            const float *fr = f + r * N;
            for (int64_t i = i0; i < i1; i++)
                if (fr[i] > 0 || !isfinite(fr[i])) update(col, i, fr[i], g0 + r);
        }
    }
    if (col->bad)
        return cterp_error(CTERP_ENAN,
                           "features: a non-finite SAE activation among tokens %lld..%lld",
                           (long long)g0, (long long)(g0 + R - 1));
    if (col->co && a->n_tokens > (int64_t)UINT32_MAX) { // counts would wrap: stop counting
        free(col->co), col->co = NULL;
    }
    if (col->co) return cofire_add(col, f, R, mask);
    return CTERP_OK;
}

int64_t cterp_feature_acc_tokens(const cterp_feature_acc *a) {
    return a->n_tokens;
}

// The result so far: statistics and example slots (window = g / T, pos = g % T, no context yet,
// room for ctx_left + ctx_right + 1 tokens each).
static cterp_status acc_build(cterp_feature_acc *a, int64_t T, int n_logits, int64_t V,
                              cterp_features **out) {
    *out = NULL;
    collector *col = &a->col;
    const cterp_features_config *c = &a->cfg;
    const int64_t N = col->N, ntok = a->n_tokens, ctx = c->ctx_left + c->ctx_right + 1;
    if (T < 1)
        return cterp_error(CTERP_EINVAL, "features: tokens per window %lld < 1", (long long)T);
    cterp_features *F;
    top_ent *tbuf = malloc((size_t)col->topn * sizeof *tbuf);
    const int n_loss = c->loss_windows > 0 ? c->loss_top : 0;
    cterp_status st = tbuf ? features_alloc(&F, N, n_logits, c->n_neighbours, n_loss, V)
                           : cterp_error(CTERP_ENOMEM, "features: out of memory");
    if (st) {
        free(tbuf);
        return st;
    }
    F->n_tokens = ntok, F->context_size = (int)T, F->cfg = *c, F->cfg.hook = NULL;
    if (col->co) { // Jaccard over firing positions: |A n B| / (|A| + |B| - |A n B|)
        F->cofire_done = 1;
        float *jac = malloc((size_t)N * sizeof(float));
        if (!jac) {
            cterp_features_free(F), free(tbuf);
            return cterp_error(CTERP_ENOMEM, "features: out of memory");
        }
        for (int64_t i = 0; i < N; i++) {
            if (!col->fired[i]) continue;
            const uint32_t *row = col->co + i * N;
            for (int64_t j = 0; j < N; j++)
                jac[j] = row[j] ? (float)((double)row[j] /
                                          (double)(col->fired[i] + col->fired[j] - (int64_t)row[j]))
                                : 0.0f;
            F->f[i].n_cofire = top_k_of(jac, N, i, c->n_neighbours, F->f[i].cofire_ids,
                                        F->f[i].cofire_jaccard, 0.0f);
        }
        free(jac);
    }
    for (int64_t i = 0; i < N; i++) {
        cterp_feature *ft = &F->f[i];
        ft->fired = col->fired[i];
        ft->frequency = ntok ? (double)col->fired[i] / (double)ntok : 0;
        ft->mean_act = col->fired[i] ? col->sum[i] / (double)col->fired[i] : 0;
        ft->max_act = col->max[i];
        if (!col->fired[i]) continue;
        const float hi = col->hi[i];
        int bmax = (int)(col->max[i] / hi * HB);
        bmax = bmax >= HB ? HB - 1 : bmax;
        ft->bin_width = hi / HB, ft->n_bins = bmax + 1;
        memcpy(ft->hist, col->hist + i * HB, sizeof ft->hist);
        ft->n_groups = bmax / BPG + 1;
        int64_t n_ex = col->ntop[i];
        for (int gr = 0; gr < ft->n_groups; gr++) n_ex += col->qn[i * NG + gr];
        cterp_feature_example *ex = examples_alloc(F, i, n_ex, ctx);
        if (!ex) {
            cterp_features_free(F);
            free(tbuf);
            return cterp_error(CTERP_ENOMEM, "features: out of memory (examples of latent %lld)",
                               (long long)i);
        }
        top_ent *tp = tbuf; // sorted copy: the heap stays valid for more rows
        memcpy(tp, col->top + i * col->topn, (size_t)col->ntop[i] * sizeof *tp);
        qsort(tp, (size_t)col->ntop[i], sizeof *tp, cmp_top_desc);
        ft->top = ex, ft->n_top = col->ntop[i];
        for (int k = 0; k < col->ntop[i]; k++, ex++)
            ex->act = tp[k].act, ex->window = tp[k].g / T, ex->pos = (int)(tp[k].g % T);
        for (int gr = 0; gr < ft->n_groups; gr++) {
            cterp_feature_group *G = &ft->groups[gr];
            q_ent q[32];
            G->lo = hi / NG * (float)gr, G->hi = hi / NG * (float)(gr + 1);
            G->count = col->qcount[i * NG + gr], G->n = col->qn[i * NG + gr],
            G->ex = G->n ? ex : NULL;
            memcpy(q, col->q + (i * NG + gr) * col->K, (size_t)G->n * sizeof *q);
            qsort(q, (size_t)G->n, sizeof *q, cmp_q_desc);
            for (int k = 0; k < G->n; k++, ex++)
                ex->act = q[k].act, ex->window = q[k].g / T, ex->pos = (int)(q[k].g % T);
        }
    }
    free(tbuf);
    *out = F;
    return CTERP_OK;
}

cterp_status cterp_feature_acc_result(cterp_feature_acc *a, int64_t T, cterp_features **out) {
    return acc_build(a, T, 0, 0, out);
}

// ---- ablation effects on the next-token loss --------------------------------------------

typedef struct {
    float dloss;
    int64_t g; // token index of the position
    int32_t next;
} loss_ent;

// a is weaker than b: smaller dloss, or the same and a later position
static int loss_weaker(const loss_ent *a, const loss_ent *b) {
    return a->dloss < b->dloss || (a->dloss == b->dloss && a->g > b->g);
}

static void loss_push(loss_ent *h, int *n, int cap, loss_ent e) {
    if (cap < 1) return;
    if (*n < cap) {
        int j = (*n)++;
        while (j > 0 && loss_weaker(&e, &h[(j - 1) / 2])) h[j] = h[(j - 1) / 2], j = (j - 1) / 2;
        h[j] = e;
        return;
    }
    if (!loss_weaker(&h[0], &e)) return;
    int j = 0;
    for (;;) {
        int l = 2 * j + 1, r = l + 1, m = j;
        const loss_ent *mv = &e;
        if (l < cap && loss_weaker(&h[l], mv)) m = l, mv = &h[l];
        if (r < cap && loss_weaker(&h[r], mv)) m = r;
        if (m == j) break;
        h[j] = h[m], j = m;
    }
    h[j] = e;
}

static int cmp_loss_desc(const void *a, const void *b) {
    const loss_ent *x = a, *y = b;
    return loss_weaker(y, x) ? -1 : loss_weaker(x, y) ? 1 : 0;
}

// Per latent: dloss sum and count over its firing positions, and a min-heap of the largest.
typedef struct {
    int64_t N;
    int top;
    double *sum;   // (N)
    int64_t *n;    // (N)
    int *nh;       // (N)
    loss_ent *h;   // (N, top)
    uint8_t *seen; // (N) scratch: latent fires in the window
    // one ablation batch: row b runs window win[b] of the statistics batch with latent lat[b]
    int64_t *lat;
    int *win;
    int32_t *tok;  // (Bm, T)
    uint8_t *mask; // (Bm, T)
    float *f;      // (Bm*T, N) the hook's encode
    float *fi;     // (Bm*T) f_lat at each position (0 at special positions)
    double *ce0;   // (Bm*T) clean CE of the statistics batch
    double *ce1;   // (Bm*T) CE of the ablation batch
    float *logits; // (Bm*T, V)
    const cterp_sae *sae;
} loss_acc;

static void loss_free(loss_acc *L) {
    free(L->sum), free(L->n), free(L->nh), free(L->h), free(L->seen), free(L->lat), free(L->win);
    free(L->tok), free(L->mask), free(L->f), free(L->fi), free(L->ce0), free(L->ce1);
    free(L->logits);
}

static cterp_status loss_init(loss_acc *L, const cterp_sae *sae, int top, int Bm, int64_t T,
                              int64_t V) {
    const int64_t N = sae->d_sae, P = Bm * T;
    memset(L, 0, sizeof *L);
    L->N = N, L->top = top, L->sae = sae;
    L->sum = calloc((size_t)N, sizeof(double));
    L->n = calloc((size_t)N, sizeof(int64_t));
    L->nh = calloc((size_t)N, sizeof(int));
    L->h = calloc((size_t)N * (size_t)(top > 0 ? top : 1), sizeof(loss_ent));
    L->seen = calloc((size_t)N, 1);
    L->lat = malloc((size_t)Bm * sizeof(int64_t));
    L->win = malloc((size_t)Bm * sizeof(int));
    L->tok = malloc((size_t)P * sizeof(int32_t));
    L->mask = malloc((size_t)P);
    L->f = malloc((size_t)(P * N) * sizeof(float));
    L->fi = malloc((size_t)P * sizeof(float));
    L->ce0 = malloc((size_t)P * sizeof(double));
    L->ce1 = malloc((size_t)P * sizeof(double));
    L->logits = malloc((size_t)(P * V) * sizeof(float));
    if (!L->sum || !L->n || !L->nh || !L->h || !L->seen || !L->lat || !L->win || !L->tok ||
        !L->mask || !L->f || !L->fi || !L->ce0 || !L->ce1 || !L->logits) {
        loss_free(L);
        return cterp_error(CTERP_ENOMEM,
                           "features: out of memory for ablation effects (batch %d x %lld "
                           "positions, vocab %lld; lower the batch or set loss_windows 0)",
                           Bm, (long long)T, (long long)V);
    }
    return CTERP_OK;
}

// Next-token CE at every position t < T-1 (f64 log-sum-exp); 0 at t = T-1.
static void next_token_ce(const float *logits, const int32_t *tok, int64_t R, int64_t T, int64_t V,
                          double *ce) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        if (r % T == T - 1) {
            ce[r] = 0;
            continue;
        }
        const float *x = logits + r * V;
        double mx = x[0], z = 0;
        for (int64_t v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        for (int64_t v = 0; v < V; v++) z += exp((double)x[v] - mx);
        ce[r] = mx + log(z) - (double)x[tok[r + 1]];
    }
}

// The hook of an ablation batch: row b loses latent lat[b] where it fires, x' = x - f W_dec[lat].
static cterp_status loss_hook(const char *name, float *act, const int64_t *shape, int ndim,
                              void *user) {
    loss_acc *L = user;
    const cterp_sae *sae = L->sae;
    const int64_t D = sae->d_in, N = sae->d_sae;
    cterp_status s = hook_width(name, shape, ndim, D, "features");
    if (s) return s;
    const int64_t T = shape[1], R = shape[0] * T;
    if ((s = cterp_sae_encode(sae, act, R, L->f))) return s;
    for (int64_t r = 0; r < R; r++) {
        const int64_t i = L->lat[r / T];
        const float a = L->mask[r] ? 0.0f : L->f[r * N + i];
        L->fi[r] = a > 0 ? a : 0.0f;
        if (a > 0)
            for (int64_t d = 0; d < D; d++) act[r * D + d] -= a * sae->W_dec[i * D + d];
    }
    return CTERP_OK;
}

// Runs the ablation forwards for one statistics batch (B windows from window w0, tokens tok,
// clean CE in L->ce0, activations fa) and accumulates dloss per latent.
static cterp_status loss_batch(loss_acc *L, cterp_model *m, const char *hook, const int32_t *tok,
                               const uint8_t *mask, const float *fa, int B, int Bm, int64_t T,
                               int64_t V, int64_t w0) {
    const int64_t N = L->N;
    cterp_hook h = {hook, loss_hook, L};
    cterp_forward_opts fo = {&h, 1, 0, L->logits, 0};
    int nb = 0;
    for (int b = 0; b <= B; b++) {
        if (b < B) { // the latents that fire in window b, by index
            memset(L->seen, 0, (size_t)N);
            for (int64_t t = 0; t < T; t++) {
                const int64_t r = b * T + t;
                if (mask[r]) continue;
                for (int64_t i = 0; i < N; i++) L->seen[i] |= fa[r * N + i] > 0;
            }
        }
        for (int64_t i = 0; b == B || i < N; i++) {
            if (b < B && !L->seen[i]) continue;
            if (b < B) {
                memcpy(L->tok + nb * T, tok + b * T, (size_t)T * sizeof(int32_t));
                memcpy(L->mask + nb * T, mask + b * T, (size_t)T);
                L->lat[nb] = i, L->win[nb] = b, nb++;
            }
            if (nb == Bm || (b == B && nb > 0)) {
                cterp_status s = cterp_model_forward(m, L->tok, nb, (int)T, &fo);
                if (s) return s;
                next_token_ce(L->logits, L->tok, nb * T, T, V, L->ce1);
                for (int k = 0; k < nb; k++) {
                    const int64_t lat = L->lat[k];
                    for (int64_t t = 0; t < T - 1; t++) {
                        const int64_t r = k * T + t, rc = L->win[k] * T + t;
                        if (!(L->fi[r] > 0)) continue;
                        double d = L->ce1[r] - L->ce0[rc];
                        L->sum[lat] += d, L->n[lat]++;
                        loss_ent e = {(float)d, (w0 + L->win[k]) * T + t, tok[rc + 1]};
                        loss_push(L->h + lat * L->top, &L->nh[lat], L->top, e);
                    }
                }
                nb = 0;
            }
            if (b == B) break;
        }
    }
    return CTERP_OK;
}

// ---- the pass over a corpus ----------------------------------------------------------------

cterp_status cterp_features_collect(cterp_model *m, const cterp_sae *sae, const char *dataset,
                                    const cterp_features_config *c, const char *model_name,
                                    const char *sae_dir, cterp_features **out) {
    *out = NULL;
    cterp_features_config cd;
    if (!c) cterp_features_config_default(&cd), c = &cd;
    const char *hook = c->hook ? c->hook : sae->meta.hook_name;
    if (!hook || !*hook)
        return cterp_error(CTERP_EINVAL,
                           "features: no hook (the SAE's metadata has no hook_name; give one)");
    cterp_status st = check_config(c);
    if (st) return st;
    if (cterp_sae_is_transcoder(sae) && c->loss_windows > 0) // x - f W_dec[i] is at the input hook
        return cterp_error(CTERP_EINVAL, "features: ablation effects (loss_windows %lld) of a %s are "
                           "not supported (its decoder writes %s, not the hook it reads); set 0",
                           (long long)c->loss_windows, cterp_arch_name(sae->arch),
                           sae->meta.hook_name_out[0] ? sae->meta.hook_name_out : "another hook");
    int layer, dim;
    if ((st = cterp_model_hook_info(m, hook, &layer, &dim))) return st;
    const cterp_model_config *mc = cterp_model_config_of(m);
    const int64_t T = c->windows.context_size, D = sae->d_in, N = sae->d_sae, V = mc->n_vocab;
    const int Bm = c->batch;
    const int64_t limit = c->n_windows > 0 ? c->n_windows : INT64_MAX;
    // logit effects need a residual-stream hook: [B,T,d_model], not z or q with H*hd == d_model
    const int logits = D == mc->d_model && dim == mc->d_model && c->n_logits > 0;
    cterp_windows *w = NULL;
    cterp_feature_acc *acc = NULL;
    cterp_features *F = NULL, view = {0};
    ex_ref *refs = NULL;
    loss_acc L = {0};
    const int64_t LW = c->loss_windows;
    int32_t *nb_ids = NULL;
    float *nb_cos = NULL;
    int32_t *tok = malloc((size_t)(Bm * T) * sizeof *tok);
    uint8_t *mask = malloc((size_t)(Bm * T));
    float *fa = malloc((size_t)(Bm * T * N) * sizeof(float));
    capture cp = {malloc((size_t)(Bm * T * D) * sizeof(float)), D};
    float *lg = NULL;
    if (!tok || !mask || !fa || !cp.x) {
        st = cterp_error(CTERP_ENOMEM,
                         "features: out of memory (batch %d x %lld positions, d_sae %lld)", Bm,
                         (long long)T, (long long)N);
        goto done;
    }
    if ((st = cterp_feature_acc_create(&acc, N, c))) goto done;
    // ablation batches: more rows than a statistics batch where memory allows (64 MiB of logits),
    // since each row is a whole-model forward of one window
    int64_t La = (int64_t)(1 << 24) / (T * (V > N ? V : N));
    La = La > 64 ? 64 : La < Bm ? Bm : La;
    if (LW > 0 && (st = loss_init(&L, sae, c->loss_top, (int)La, T, V))) goto done;
    if ((st = features_view_alloc(&view, c->view_windows, T))) goto done;
    if ((st = cterp_windows_open(&w, dataset, &c->data, cterp_model_tokenizer(m), &c->windows)))
        goto done;
    cterp_hook h = {hook, capture_hook, &cp};
    cterp_forward_opts fo = {&h, 1, 0, NULL, 0};
    int64_t nw = 0;
    const int64_t total1 = c->n_windows > 0 ? c->n_windows : 0;
    double t1 = time_now();
    if (c->progress) c->progress("features: statistics", 0, total1, "windows", 0, c->progress_user);
    for (;;) { // pass 1: statistics
        int B;
        if ((st = next_batch(w, tok, mask, Bm, T, limit - nw, &B))) goto done;
        if (B == 0) break;
        const int Bl = nw < LW ? (int)(LW - nw < B ? LW - nw : B) : 0; // windows for dloss
        fo.logits = Bl ? L.logits : NULL;
        if ((st = cterp_model_forward(m, tok, B, (int)T, &fo))) goto done;
        if ((st = cterp_sae_encode(sae, cp.x, B * T, fa))) goto done;
        for (int b = 0; b < B && nw + b < view.view_n; b++) { // token view
            const int64_t v = nw + b;
            view.view_window[v] = v;
            memcpy(view.view_tokens + v * T, tok + b * T, (size_t)T * sizeof(int32_t));
            memcpy(view.view_mask + v * T, mask + b * T, (size_t)T);
            for (int64_t t = 0; t < T; t++) {
                int32_t *id = view.view_ids + (v * T + t) * CTERP_FEAT_VIEW_K;
                float *av = view.view_acts + (v * T + t) * CTERP_FEAT_VIEW_K;
                int k = mask[b * T + t] ? 0
                                        : top_k_of(fa + (b * T + t) * N, N, -1, CTERP_FEAT_VIEW_K,
                                                   id, av, 0.0f);
                for (; k < CTERP_FEAT_VIEW_K; k++) id[k] = -1, av[k] = 0;
            }
        }
        if (Bl) { // ablation effects: clean CE of this batch, then one forward per firing latent
            next_token_ce(L.logits, tok, B * T, T, V, L.ce0);
            if ((st = loss_batch(&L, m, hook, tok, mask, fa, Bl, (int)La, T, V, nw))) goto done;
        }
        if ((st = cterp_feature_acc_add(acc, fa, B * T, nw * T, mask))) {
            st =
                cterp_error(st, "features: a non-finite SAE activation in windows %lld..%lld of %s",
                            (long long)nw, (long long)(nw + B - 1), dataset);
            goto done;
        }
        nw += B;
        if (c->progress) c->progress("features: statistics", nw, total1 > nw ? total1 : 0, "windows", time_now() - t1, c->progress_user);
    }
    if (c->progress) c->progress("features: statistics", nw, nw, "windows", time_now() - t1, c->progress_user);
    if (acc->n_tokens == 0) {
        st = cterp_error(CTERP_EFORMAT,
                         "features: %s has no complete window of %lld tokens with a non-special "
                         "position",
                         dataset, (long long)T);
        goto done;
    }
    if ((st = acc_build(acc, T, logits ? c->n_logits : 0, V, &F))) goto done;
    F->d_in = D, F->n_windows = nw;
    F->view_mem = view.view_mem, view.view_mem = NULL; // the token view moves into F
    F->view_n = view.view_n < nw ? view.view_n : (int)nw;
    F->view_window = view.view_window, F->view_tokens = view.view_tokens;
    F->view_mask = view.view_mask, F->view_ids = view.view_ids, F->view_acts = view.view_acts;
    if (F->view_n == 0) free(F->view_mem), F->view_mem = NULL;
    for (int64_t i = 0; LW > 0 && i < N; i++) { // ablation effects, largest dloss first
        cterp_feature *ft = &F->f[i];
        loss_ent *h = L.h + i * L.top;
        qsort(h, (size_t)L.nh[i], sizeof *h, cmp_loss_desc);
        ft->loss_n = L.n[i], ft->loss_mean = L.n[i] ? L.sum[i] / (double)L.n[i] : 0;
        ft->n_loss = L.nh[i];
        for (int k = 0; k < L.nh[i]; k++)
            ft->loss_top[k] =
                (cterp_feature_loss){h[k].g / T, (int)(h[k].g % T), h[k].next, h[k].dloss};
    }
    F->cfg.loss_windows = LW < nw ? LW : nw;
    const int K = c->n_neighbours;
    if (K > 0 && N > K) { // decoder-cosine neighbours
        nb_ids = malloc((size_t)(N * K) * sizeof *nb_ids);
        nb_cos = malloc((size_t)(N * K) * sizeof *nb_cos);
        if (!nb_ids || !nb_cos) {
            st = cterp_error(CTERP_ENOMEM, "features: out of memory (decoder neighbours)");
            goto done;
        }
        if ((st = cterp_decoder_neighbours(sae->W_dec, N, D, K, nb_ids, nb_cos))) goto done;
        for (int64_t i = 0; i < N; i++) {
            cterp_feature *ft = &F->f[i];
            ft->n_dec = K;
            memcpy(ft->dec_ids, nb_ids + i * K, (size_t)K * sizeof *nb_ids);
            memcpy(ft->dec_cos, nb_cos + i * K, (size_t)K * sizeof *nb_cos);
        }
    }
    snprintf(F->model, sizeof F->model, "%s", model_name ? model_name : "");
    snprintf(F->hook, sizeof F->hook, "%s", hook);
    snprintf(F->dataset, sizeof F->dataset, "%s", dataset);
    snprintf(F->sae, sizeof F->sae, "%s", sae_dir ? sae_dir : "");
    F->cfg.hook = F->hook;
    if (cterp_model_tokenizer(m)) {
        if ((st = fill_vocab(F, cterp_model_tokenizer(m)))) goto done;
    } else {
        F->n_vocab = 0;
    }

    // pass 2: the same batches again, only those holding an example: contexts
    int64_t nr = 0;
    for (int64_t i = 0; i < N; i++) {
        nr += F->f[i].n_top;
        for (int gr = 0; gr < F->f[i].n_groups; gr++) nr += F->f[i].groups[gr].n;
    }
    refs = malloc((size_t)(nr ? nr : 1) * sizeof *refs);
    if (!refs) {
        st = cterp_error(CTERP_ENOMEM, "features: out of memory (%lld examples)", (long long)nr);
        goto done;
    }
    nr = 0;
    for (int64_t i = 0; i < N; i++) {
        cterp_feature *ft = &F->f[i];
        for (int k = 0; k < ft->n_top; k++)
            refs[nr++] = (ex_ref){ft->top[k].window * T + ft->top[k].pos, i, &ft->top[k]};
        for (int gr = 0; gr < ft->n_groups; gr++)
            for (int k = 0; k < ft->groups[gr].n; k++) {
                cterp_feature_example *e = &ft->groups[gr].ex[k];
                refs[nr++] = (ex_ref){e->window * T + e->pos, i, e};
            }
    }
    qsort(refs, (size_t)nr, sizeof *refs, cmp_ref);
    if (nr > 0 && (st = cterp_windows_rewind(w))) goto done;
    fo.logits = NULL; // the blocks up to the hook compute the same bits with or without logits
    int64_t next = 0;
    t1 = time_now();
    if (c->progress) c->progress("features: examples", 0, nr, "examples", 0, c->progress_user);
    for (int64_t w0 = 0; next < nr; w0 += Bm) {
        int B;
        if ((st = next_batch(w, tok, mask, Bm, T, nw - w0, &B))) goto done;
        if (B == 0) {
            st = cterp_error(CTERP_EFORMAT,
                             "features: %s changed during the pass (fewer windows the second "
                             "time)",
                             dataset);
            goto done;
        }
        const int64_t gend = (w0 + B) * T;
        if (refs[next].g >= gend) continue;
        if ((st = cterp_model_forward(m, tok, B, (int)T, &fo))) goto done;
        if ((st = cterp_sae_encode(sae, cp.x, B * T, fa))) goto done;
        for (; next < nr && refs[next].g < gend; next++) {
            cterp_feature_example *ex = refs[next].ex;
            const int64_t wl = ex->window - w0, i = refs[next].lat;
            int a = ex->pos - c->ctx_left, b = ex->pos + c->ctx_right + 1;
            a = a < 0 ? 0 : a, b = b > T ? (int)T : b;
            ex->start = a, ex->n_ctx = b - a;
            for (int t = a; t < b; t++) {
                int64_t r = wl * T + t;
                ex->tokens[t - a] = tok[r];
                ex->acts[t - a] = mask[r] ? 0.0f : fa[r * N + i];
            }
        }
        if (c->progress) c->progress("features: examples", next, nr, "examples", time_now() - t1, c->progress_user);
    }

    if (logits) { // logit effects in chunks of latents
        int64_t chunk = (1 << 22) / (V > 0 ? V : 1);
        chunk = chunk < 1 ? 1 : chunk > N ? N : chunk;
        lg = malloc((size_t)(chunk * V) * sizeof(float));
        if (!lg) {
            st = cterp_error(CTERP_ENOMEM, "features: out of memory (logit effects)");
            goto done;
        }
        for (int64_t i0 = 0; i0 < N; i0 += chunk) {
            int64_t n = N - i0 < chunk ? N - i0 : chunk;
            if ((st = cterp_logit_effects(m, sae, i0, n, lg))) goto done;
            for (int64_t k = 0; k < n; k++) logit_summary(&F->f[i0 + k], lg + k * V, V);
        }
    }
    *out = F, F = NULL;
done:
    cterp_windows_close(w);
    cterp_feature_acc_free(acc);
    cterp_features_free(F);
    loss_free(&L);
    free(view.view_mem), free(nb_ids), free(nb_cos);
    free(refs), free(tok), free(mask), free(fa), free(cp.x), free(lg);
    return st;
}

cterp_status cterp_features_on_tokens(cterp_model *m, const cterp_sae *sae, const char *hook,
                                      const int32_t *tokens, int T, float *f) {
    if (!hook) hook = sae->meta.hook_name;
    if (!hook || !*hook)
        return cterp_error(CTERP_EINVAL, "features: no hook (the SAE's metadata has no hook_name)");
    if (T < 1) return cterp_error(CTERP_EINVAL, "features: no tokens");
    capture cp = {malloc((size_t)T * (size_t)sae->d_in * sizeof(float)), sae->d_in};
    if (!cp.x) return cterp_error(CTERP_ENOMEM, "features: out of memory");
    cterp_hook h = {hook, capture_hook, &cp};
    cterp_forward_opts fo = {&h, 1, 0, NULL, 0};
    cterp_status s = cterp_model_forward(m, tokens, 1, T, &fo);
    if (!s) s = cterp_sae_encode(sae, cp.x, T, f);
    free(cp.x);
    return s;
}
