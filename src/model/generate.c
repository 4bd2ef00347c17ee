// Sampling (greedy, temperature, top-p) and generation with a KV cache.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "cterp/model.h"

void cterp_sampler_seed(uint64_t state[4], uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    memcpy(state, r.s, sizeof r.s);
}

typedef struct {
    float p;
    int32_t id;
} prob_id;

static int cmp_prob(const void *a, const void *b) {
    const prob_id *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id; // ties by id: deterministic
}

static int32_t argmax(const float *v, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int32_t cterp_sample(const float *logits, int V, const cterp_sampler_params *p, uint64_t state[4]) {
    if (!p || p->temperature <= 0) return argmax(logits, V);
    rng_t r;
    memcpy(r.s, state, sizeof r.s);
    float u = rng_uniform(&r);
    memcpy(state, r.s, sizeof r.s);
    prob_id *pi = malloc((size_t)V * sizeof *pi);
    if (!pi) return argmax(logits, V); // no memory: fall back to greedy rather than fail
    float mx = logits[argmax(logits, V)];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        pi[i].p = expf((logits[i] - mx) / p->temperature);
        pi[i].id = i;
        sum += pi[i].p;
    }
    int n = V;
    if (p->top_p > 0 && p->top_p < 1) {
        qsort(pi, (size_t)V, sizeof *pi, cmp_prob);
        double cum = 0;
        for (n = 0; n < V; n++) {
            cum += pi[n].p / sum;
            if (cum >= p->top_p) {
                n++;
                break;
            }
        }
        if (n > V) n = V;
        sum = 0;
        for (int i = 0; i < n; i++) sum += pi[i].p;
    }
    double target = u * sum, cum = 0;
    int32_t out = pi[n - 1].id;
    for (int i = 0; i < n; i++) {
        cum += pi[i].p;
        if (cum > target) {
            out = pi[i].id;
            break;
        }
    }
    free(pi);
    return out;
}

cterp_status cterp_generate(cterp_model *m, const int32_t *prompt, int n_prompt, int n_new,
                            const cterp_sampler_params *p, const cterp_forward_opts *opts,
                            cterp_token_fn on_token, void *user, int32_t **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (n_prompt < 1) return cterp_error(CTERP_EINVAL, "generate: empty prompt (add BOS)");
    if (n_new < 0) n_new = 0;
    const cterp_model_config *c = cterp_model_config_of(m);
    int max = n_prompt + n_new;
    if (max > c->n_ctx) max = c->n_ctx; // never past the trained context (callers say so)
    if (n_prompt > max)
        return cterp_error(CTERP_EINVAL, "generate: prompt of %d tokens exceeds the context %d",
                           n_prompt, max);
    int32_t *ids = malloc((size_t)max * sizeof *ids);
    float *logits = malloc((size_t)c->n_vocab * sizeof *logits);
    cterp_kv_cache *kc = NULL;
    cterp_status s = cterp_kv_cache_create(&kc, m, max);
    if (!s && (!ids || !logits)) s = cterp_error(CTERP_ENOMEM, "generate: out of memory");
    if (s) goto fail;
    memcpy(ids, prompt, (size_t)n_prompt * sizeof *ids);
    int n = n_prompt;
    cterp_forward_opts fo = opts ? *opts : (cterp_forward_opts){0};
    fo.logits = logits;
    fo.last_only = 1;
    fo.stop_at_layer = 0;
    uint64_t st[4];
    cterp_sampler_seed(st, p ? p->seed : 0);
    const cterp_tokenizer *tok = cterp_model_tokenizer(m);
    int32_t eos = tok ? cterp_tokenizer_eos(tok) : -1;
    if ((s = cterp_model_decode(m, kc, ids, n_prompt, &fo))) goto fail;
    while (n < max) {
        int32_t t = cterp_sample(logits, c->n_vocab, p, st);
        ids[n++] = t;
        if (on_token && on_token(t, user)) break;
        if (t == eos || n == max) break;
        if ((s = cterp_model_decode(m, kc, &t, 1, &fo))) goto fail;
    }
    cterp_kv_cache_free(kc);
    free(logits);
    *out = ids;
    *n_out = n;
    return CTERP_OK;
fail:
    cterp_kv_cache_free(kc);
    free(logits);
    free(ids);
    return s;
}
