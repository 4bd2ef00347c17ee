// The live explorer's requests (include/cterp/explore.h): JSON bodies parsed and checked with
// cJSON, the model run on a KV cache in chunks (memory O(chunk x V), never T x V), answers built
// as cJSON trees. No HTTP here: cterp serve (src/cli/cmd_serve.c) puts these behind
// libmicrohttpd.
#include <cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cterp/explore.h"

struct cterp_explore {
    cterp_model *m;
    const cterp_sae *sae;
    const cterp_features *F;
    const cterp_tokenizer *tok;
    char hook[256];
    int context, max_new, logit_ok;
    int64_t V, N, D;
    pthread_mutex_t mu; // the model's scratch and KV caches are not thread-safe
};

// ---- parsing --------------------------------------------------------------------------------

static const char *kind_of(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "something else";
}

// The body as a JSON object whose keys are all in `allowed` (NULL-terminated).
static cterp_status parse_object(const char *body, size_t len, const char *const *allowed,
                                 cJSON **out) {
    *out = NULL;
    if (len > CTERP_EXPLORE_MAX_BODY)
        return cterp_error(CTERP_EINVAL, "request body of %zu bytes: the limit is %d", len,
                           CTERP_EXPLORE_MAX_BODY);
    if (!body || len == 0) return cterp_error(CTERP_EINVAL, "empty body: expected a JSON object");
    const char *end = NULL;
    // not cJSON_GetErrorPtr: a global, shared by concurrent requests; return_parse_end is ours
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!j) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        return cterp_error(CTERP_EINVAL, "bad JSON at byte %zu of %zu", at, len);
    }
    while (j && end && end < body + len &&
           (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (j && end != body + len) { // something after the value
        cJSON_Delete(j);
        return cterp_error(CTERP_EINVAL, "bad JSON at byte %zu of %zu: more after the object",
                           (size_t)(end - body), len);
    }
    if (!cJSON_IsObject(j)) {
        cterp_status s = cterp_error(CTERP_EINVAL, "expected a JSON object, found %s", kind_of(j));
        cJSON_Delete(j);
        return s;
    }
    for (const cJSON *c = j->child; c; c = c->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = c->string && !strcmp(c->string, *a);
        if (!ok) {
            char keys[256] = "";
            for (const char *const *a = allowed; *a; a++)
                snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s",
                         a == allowed ? "" : ", ", *a);
            cterp_status s = cterp_error(CTERP_EINVAL, "unknown field '%.64s' (fields: %s)",
                                         c->string ? c->string : "", keys);
            cJSON_Delete(j);
            return s;
        }
    }
    *out = j;
    return CTERP_OK;
}

static cterp_status get_num(const cJSON *j, const char *key, double lo, double hi, int integer,
                            double def, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) {
        *out = def;
        return CTERP_OK;
    }
    const double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (x >= lo && x <= hi && (!integer || x == floor(x))) {
        *out = x;
        return CTERP_OK;
    }
    char found[64];
    if (cJSON_IsNumber(v))
        snprintf(found, sizeof found, "%.17g", x);
    else
        snprintf(found, sizeof found, "%s", kind_of(v));
    return cterp_error(CTERP_EINVAL, "field '%s': expected %s in [%.17g, %.17g], found %s", key,
                       integer ? "an integer" : "a number", lo, hi, found);
}

static cterp_status get_prompt(const cJSON *j, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    if (!v) return cterp_error(CTERP_EINVAL, "field 'prompt' is missing (a string)");
    if (!cJSON_IsString(v) || !v->valuestring)
        return cterp_error(CTERP_EINVAL, "field 'prompt': expected a string, found %s", kind_of(v));
    *out = strdup(v->valuestring);
    return *out ? CTERP_OK : cterp_error(CTERP_ENOMEM, "out of memory");
}

cterp_status cterp_explore_parse_act(const char *body, size_t len, cterp_explore_act_req *r) {
    static const char *const keys[] = {"prompt", "top", "next", NULL};
    memset(r, 0, sizeof *r);
    cJSON *j;
    double top, next;
    cterp_status s = parse_object(body, len, keys, &j);
    if (s) return s;
    if (!(s = get_num(j, "top", 1, CTERP_EXPLORE_MAX_TOP, 1, 5, &top)) &&
        !(s = get_num(j, "next", 1, CTERP_EXPLORE_MAX_NEXT, 1, 10, &next)) &&
        !(s = get_prompt(j, &r->prompt)))
        r->top = (int)top, r->next = (int)next;
    cJSON_Delete(j);
    return s;
}

cterp_status cterp_explore_parse_steer(const char *body, size_t len, int64_t d_sae, int max_new,
                                       cterp_explore_steer_req *r) {
    static const char *const keys[] = {"prompt", "latent",      "strength", "mode",
                                       "n",      "temperature", "seed",     NULL};
    memset(r, 0, sizeof *r);
    cJSON *j;
    double lat, str, n, temp, seed;
    cterp_status s = parse_object(body, len, keys, &j);
    if (s) return s;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
    r->mode = CTERP_STEER_ADD;
    if (mode) {
        const char *m = cJSON_IsString(mode) ? mode->valuestring : NULL;
        if (m && !strcmp(m, "add"))
            r->mode = CTERP_STEER_ADD;
        else if (m && !strcmp(m, "clamp"))
            r->mode = CTERP_STEER_CLAMP;
        else if (m && !strcmp(m, "ablate"))
            r->mode = CTERP_STEER_ABLATE;
        else
            s = cterp_error(CTERP_EINVAL,
                            "field 'mode': expected \"add\", \"clamp\" or \"ablate\"%s%.32s%s",
                            m ? ", found \"" : ", found ", m ? m : kind_of(mode), m ? "\"" : "");
    }
    if (!s && !cJSON_GetObjectItemCaseSensitive(j, "latent"))
        s = cterp_error(CTERP_EINVAL, "field 'latent' is missing (a latent index, 0..%lld)",
                        (long long)d_sae - 1);
    if (!s && !(s = get_num(j, "latent", 0, (double)(d_sae - 1), 1, 0, &lat)) &&
        !(s = get_num(j, "strength", -1e4, 1e4, 0, 8, &str)) &&
        !(s = get_num(j, "n", 0, max_new, 1, max_new < 20 ? max_new : 20, &n)) &&
        !(s = get_num(j, "temperature", 0, 10, 0, 0, &temp)) &&
        !(s = get_num(j, "seed", 0, 9007199254740992.0, 1, 0, &seed)) &&
        !(s = get_prompt(j, &r->prompt))) {
        r->latent = (int64_t)lat, r->strength = (float)str, r->n = (int)n;
        r->temperature = (float)temp, r->seed = (uint64_t)seed;
    }
    cJSON_Delete(j);
    if (s) cterp_explore_steer_req_free(r);
    return s;
}

cterp_status cterp_explore_parse_latent(const char *body, size_t len, int64_t d_sae,
                                        int64_t *latent) {
    static const char *const keys[] = {"latent", NULL};
    cJSON *j;
    double lat;
    cterp_status s = parse_object(body, len, keys, &j);
    if (s) return s;
    if (!cJSON_GetObjectItemCaseSensitive(j, "latent"))
        s = cterp_error(CTERP_EINVAL, "field 'latent' is missing (a latent index, 0..%lld)",
                        (long long)d_sae - 1);
    if (!s && !(s = get_num(j, "latent", 0, (double)(d_sae - 1), 1, 0, &lat)))
        *latent = (int64_t)lat;
    cJSON_Delete(j);
    return s;
}

void cterp_explore_act_req_free(cterp_explore_act_req *r) {
    if (r) free(r->prompt), r->prompt = NULL;
}
void cterp_explore_steer_req_free(cterp_explore_steer_req *r) {
    if (r) free(r->prompt), r->prompt = NULL;
}

// ---- the explorer -----------------------------------------------------------------------------

static cterp_status width_hook(const char *name, float *act, const int64_t *shape, int ndim,
                               void *user) {
    int64_t w = 1;
    for (int k = 2; k < ndim; k++) w *= shape[k];
    *(int64_t *)user = ndim < 3 ? 0 : w;
    return CTERP_OK;
}

cterp_status cterp_explore_create(cterp_explore **out, cterp_model *m, const cterp_sae *sae,
                                  const cterp_explore_opts *o) {
    *out = NULL;
    cterp_explore_opts d = {0};
    if (!o) o = &d;
    const cterp_model_config *mc = cterp_model_config_of(m);
    const char *hook = o->hook ? o->hook : sae->meta.hook_name;
    if (!hook || !hook[0])
        return cterp_error(CTERP_EINVAL, "explore: no hook (the SAE's metadata has no hook_name)");
    if (strlen(hook) >= sizeof((cterp_explore *)0)->hook)
        return cterp_error(CTERP_EINVAL, "explore: hook name too long");
    int layer, dim;
    cterp_status s = cterp_model_hook_info(m, hook, &layer, &dim);
    if (s) return s;
    // the hook's width per token, seen on one token (q/k/v/z are heads x head_dim)
    int64_t width = 0;
    const int32_t probe = 0;
    cterp_hook ph = {hook, width_hook, &width};
    cterp_forward_opts pf = {&ph, 1, 0, NULL, 0};
    if ((s = cterp_model_forward(m, &probe, 1, 1, &pf))) return s;
    if (strstr(hook, "hook_pattern") || width != sae->d_in)
        return cterp_error(CTERP_EINVAL,
                           "explore: hook %s has %lld values per token, the SAE's d_in is %lld",
                           hook, (long long)width, (long long)sae->d_in);
    if (sae->arch == CTERP_ARCH_BATCHTOPK || sae->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK)
        return cterp_error(CTERP_EINVAL, "explore: %s is a training architecture; load the "
                                         "saved (jumprelu) SAE", cterp_arch_name(sae->arch));
    if (cterp_sae_is_transcoder(sae)) // its decoder writes another hook (of width d_out)
        return cterp_error(CTERP_EINVAL, "explore: a %s is not supported", cterp_arch_name(sae->arch));
    if (!cterp_model_tokenizer(m))
        return cterp_error(CTERP_EINVAL, "explore: %s has no tokenizer", cterp_model_path(m));
    int ctx = o->context;
    if (ctx < 0 || ctx > mc->n_ctx)
        return cterp_error(CTERP_EINVAL, "explore: context %d outside [1, the model's n_ctx %d]",
                           ctx, mc->n_ctx);
    if (!ctx) ctx = sae->meta.context_size > 0 ? sae->meta.context_size : mc->n_ctx;
    if (!o->context && ctx > 1024) ctx = 1024;
    if (ctx > mc->n_ctx) ctx = mc->n_ctx;
    if (ctx < 2) return cterp_error(CTERP_EINVAL, "explore: context %d: need at least 2", ctx);
    if (o->max_new < 0) return cterp_error(CTERP_EINVAL, "explore: max_new %d < 0", o->max_new);
    if (o->features && o->features->d_sae != sae->d_sae)
        return cterp_error(CTERP_EINVAL, "explore: the features have %lld latents, the SAE %lld",
                           (long long)o->features->d_sae, (long long)sae->d_sae);
    cterp_explore *x = calloc(1, sizeof *x);
    if (!x) return cterp_error(CTERP_ENOMEM, "explore: out of memory");
    x->m = m, x->sae = sae, x->F = o->features, x->tok = cterp_model_tokenizer(m);
    snprintf(x->hook, sizeof x->hook, "%s", hook);
    x->context = ctx, x->max_new = o->max_new ? o->max_new : 128;
    x->V = mc->n_vocab, x->N = sae->d_sae, x->D = sae->d_in;
    // logit effects need a residual-stream-shaped direction (as the features pass)
    x->logit_ok = sae->d_in == mc->d_model && !strstr(hook, ".attn.hook_");
    if (pthread_mutex_init(&x->mu, NULL)) {
        free(x);
        return cterp_error(CTERP_ENOMEM, "explore: cannot make a mutex");
    }
    *out = x;
    return CTERP_OK;
}

void cterp_explore_free(cterp_explore *x) {
    if (!x) return;
    pthread_mutex_destroy(&x->mu);
    free(x);
}

int cterp_explore_context(const cterp_explore *x) {
    return x->context;
}

// ---- running a sequence -----------------------------------------------------------------------

// At the SAE's hook, per chunk of new positions: encodes them and keeps, per token, its top
// latents (tops, (T, top)), the ranking over non-special tokens (mx/pos/fired, (N)), or one
// latent's activation (col_act, (T)). Any of them may be off (NULL / top 0).
typedef struct {
    const cterp_explore *x;
    const int32_t *tok;
    int t0;         // position of the chunk's first row
    float *f;       // (chunk, N) scratch
    int top;        // latents kept per token
    int32_t *top_i; // (T, top), -1 where fewer fired
    float *top_a;   // (T, top)
    float *mx;      // (N) largest activation on a non-special token
    int32_t *pos;   // (N) where
    int32_t *fired; // (N) non-special tokens with f > 0
    int64_t col;    // latent recorded in col_act (-1: none)
    float *col_act; // (T)
} enc_state;

static cterp_status enc_hook(const char *name, float *act, const int64_t *shape, int ndim,
                             void *user) {
    enc_state *e = user;
    const cterp_explore *x = e->x;
    const int64_t N = x->N, R = shape[0] * (ndim > 1 ? shape[1] : 1);
    cterp_status s = cterp_sae_encode(x->sae, act, R, e->f);
    if (s) return s;
    for (int64_t r = 0; r < R; r++) {
        const int t = e->t0 + (int)r;
        const float *f = e->f + r * N;
        if (e->col >= 0) e->col_act[t] = f[e->col];
        if (e->top > 0) { // insertion into a short sorted list; ties: lower latent first
            int32_t *ti = e->top_i + (int64_t)t * e->top;
            float *ta = e->top_a + (int64_t)t * e->top;
            int n = 0;
            for (int64_t i = 0; i < N; i++) {
                const float a = f[i];
                if (!(a > 0) || (n == e->top && !(a > ta[n - 1]))) continue;
                int j = n < e->top ? n++ : n - 1;
                while (j > 0 && a > ta[j - 1]) ti[j] = ti[j - 1], ta[j] = ta[j - 1], j--;
                ti[j] = (int32_t)i, ta[j] = a;
            }
            for (int j = n; j < e->top; j++) ti[j] = -1, ta[j] = 0;
        }
        if (e->mx && !cterp_tokenizer_is_special(x->tok, e->tok[t]))
            for (int64_t i = 0; i < N; i++) {
                const float a = f[i];
                e->fired[i] += a > 0;
                if (a > e->mx[i]) e->mx[i] = a, e->pos[i] = t;
            }
    }
    return CTERP_OK;
}

// Rows of logits per model call: bounded memory whatever the vocabulary and the SAE's width.
static int chunk_rows(const cterp_explore *x, int T) {
    int64_t c = ((int64_t)1 << 22) / (x->V > x->N ? x->V : x->N);
    if (c < 1) c = 1;
    return c < T ? (int)c : T;
}

// Runs tok (T) on a fresh KV cache in chunks with `hook` (may be NULL; an enc_state's t0 is kept
// current when enc is not NULL). loss[t] (t >= 1) = -log p(tok[t] | tok[<t]), loss[0] = NAN;
// last (V, may be NULL): the logits after the last token.
static cterp_status run_seq(cterp_explore *x, const int32_t *tok, int T, const cterp_hook *hook,
                            enc_state *enc, float *loss, float *last) {
    const int C = chunk_rows(x, T);
    const int64_t V = x->V;
    cterp_kv_cache *kc = NULL;
    float *lg = malloc((size_t)C * (size_t)V * sizeof *lg);
    cterp_status s = lg ? cterp_kv_cache_create(&kc, x->m, T)
                        : cterp_error(CTERP_ENOMEM, "explore: out of memory");
    if (loss) loss[0] = NAN;
    for (int t0 = 0; !s && t0 < T; t0 += C) {
        const int n = T - t0 < C ? T - t0 : C;
        if (enc) enc->t0 = t0;
        cterp_forward_opts fo = {hook, hook ? 1 : 0, 0, lg, 0};
        if ((s = cterp_model_decode(x->m, kc, tok + t0, n, &fo))) break;
        for (int r = 0; r < n && loss; r++) {
            const int t = t0 + r + 1;
            if (t >= T) break;
            const float *l = lg + (int64_t)r * V;
            double mx = l[0], z = 0;
            for (int64_t v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int64_t v = 0; v < V; v++) z += exp((double)l[v] - mx);
            loss[t] = (float)(mx + log(z) - (double)l[tok[t]]);
        }
        if (last && t0 + n == T) memcpy(last, lg + (int64_t)(n - 1) * V, (size_t)V * sizeof *lg);
    }
    cterp_kv_cache_free(kc);
    free(lg);
    return s;
}

// ---- answers ----------------------------------------------------------------------------------

// A float as the shortest-looking double that reads back to it (9 significant digits round-trip
// every float; cJSON then prints "4.83033466", not the 17 digits of the widened float).
static double fl(float v) {
    char b[32];
    snprintf(b, sizeof b, "%.9g", (double)v);
    return strtod(b, NULL);
}

static cJSON *token_json(const cterp_explore *x, int32_t id) {
    char buf[256];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "text", cterp_token_display(x->tok, id, buf, sizeof buf));
    return o;
}

static cJSON *ids_json(const int32_t *ids, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < n; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[k]));
    return a;
}

// A prompt's tokens (BOS added), at most the context.
static int tokenize_prompt(cterp_explore *x, const char *prompt, int32_t **ids, int *n, char *msg,
                           size_t cap) {
    size_t len = 0;
    *ids = NULL;
    if (cterp_tokenize(x->tok, prompt, strlen(prompt), 1, 0, ids, &len)) {
        snprintf(msg, cap, "cannot tokenize the prompt: %s", cterp_last_error());
        return 400;
    }
    if (len == 0) {
        snprintf(msg, cap, "the prompt gave no tokens");
        return 400;
    }
    if (len > (size_t)x->context) {
        snprintf(msg, cap, "the prompt is %zu tokens, longer than the context of %d tokens", len,
                 x->context);
        free(*ids), *ids = NULL;
        return 400;
    }
    *n = (int)len;
    return 200;
}

typedef struct {
    int64_t i;
    float max;
    int pos, fired;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    const ranked *p = a, *q = b;
    if (p->max != q->max) return p->max > q->max ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

static int do_activations(cterp_explore *x, const cterp_explore_act_req *rq, cJSON *res, char *msg,
                          size_t cap) {
    int32_t *ids = NULL;
    int T = 0;
    int code = tokenize_prompt(x, rq->prompt, &ids, &T, msg, cap);
    if (code != 200) return code;
    const int64_t N = x->N, V = x->V;
    enc_state e = {x, ids, 0, NULL, rq->top, NULL, NULL, NULL, NULL, NULL, -1, NULL};
    e.f = malloc((size_t)chunk_rows(x, T) * (size_t)N * sizeof(float));
    e.top_i = malloc((size_t)T * (size_t)rq->top * sizeof(int32_t));
    e.top_a = malloc((size_t)T * (size_t)rq->top * sizeof(float));
    e.mx = calloc((size_t)N, sizeof(float));
    e.pos = calloc((size_t)N, sizeof(int32_t));
    e.fired = calloc((size_t)N, sizeof(int32_t));
    float *loss = malloc((size_t)T * sizeof(float)), *last = malloc((size_t)V * sizeof(float));
    ranked *rk = malloc((size_t)N * sizeof *rk);
    if (!e.f || !e.top_i || !e.top_a || !e.mx || !e.pos || !e.fired || !loss || !last || !rk) {
        snprintf(msg, cap, "out of memory");
        code = 500;
        goto done;
    }
    cterp_hook h = {x->hook, enc_hook, &e};
    if (run_seq(x, ids, T, &h, &e, loss, last)) {
        snprintf(msg, cap, "the model failed: %s", cterp_last_error());
        code = 500;
        goto done;
    }
    cJSON_AddStringToObject(res, "hook", x->hook);
    cJSON_AddNumberToObject(res, "context", x->context);
    cJSON *toks = cJSON_AddArrayToObject(res, "tokens");
    for (int t = 0; t < T; t++) {
        cJSON *o = token_json(x, ids[t]);
        cJSON_AddBoolToObject(o, "special", cterp_tokenizer_is_special(x->tok, ids[t]));
        cJSON_AddItemToObject(o, "loss", t ? cJSON_CreateNumber(fl(loss[t])) : cJSON_CreateNull());
        cJSON *l = cJSON_AddArrayToObject(o, "latents");
        for (int k = 0; k < rq->top && e.top_i[(int64_t)t * rq->top + k] >= 0; k++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddNumberToObject(p, "latent", e.top_i[(int64_t)t * rq->top + k]);
            cJSON_AddNumberToObject(p, "act", fl(e.top_a[(int64_t)t * rq->top + k]));
            cJSON_AddItemToArray(l, p);
        }
        cJSON_AddItemToArray(toks, o);
    }
    for (int64_t i = 0; i < N; i++) rk[i] = (ranked){i, e.mx[i], e.pos[i], e.fired[i]};
    qsort(rk, (size_t)N, sizeof *rk, cmp_ranked);
    cJSON *rank = cJSON_AddArrayToObject(res, "top_latents");
    for (int64_t k = 0; k < N && k < 20 && rk[k].max > 0; k++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "latent", (double)rk[k].i);
        cJSON_AddNumberToObject(p, "max", fl(rk[k].max));
        cJSON_AddNumberToObject(p, "pos", rk[k].pos);
        cJSON_AddNumberToObject(p, "fired", rk[k].fired);
        cJSON_AddItemToArray(rank, p);
    }
    // the next-token distribution: softmax in double, the `next` most likely (ties: lower id)
    double mx = last[0], z = 0;
    for (int64_t v = 1; v < V; v++) mx = last[v] > mx ? last[v] : mx;
    for (int64_t v = 0; v < V; v++) z += exp((double)last[v] - mx);
    const int K = rq->next < V ? rq->next : (int)V;
    int32_t best[CTERP_EXPLORE_MAX_NEXT];
    int nb = 0;
    for (int64_t v = 0; v < V; v++) {
        if (nb == K && !(last[v] > last[best[nb - 1]])) continue;
        int j = nb < K ? nb++ : nb - 1;
        while (j > 0 && last[v] > last[best[j - 1]]) best[j] = best[j - 1], j--;
        best[j] = (int32_t)v;
    }
    cJSON *nx = cJSON_AddArrayToObject(res, "next");
    for (int k = 0; k < nb; k++) {
        cJSON *o = token_json(x, best[k]);
        cJSON_AddNumberToObject(o, "p", fl((float)(exp((double)last[best[k]] - mx) / z)));
        cJSON_AddNumberToObject(o, "logit", fl(last[best[k]]));
        cJSON_AddItemToArray(nx, o);
    }
done:
    free(ids), free(e.f), free(e.top_i), free(e.top_a), free(e.mx), free(e.pos), free(e.fired);
    free(loss), free(last), free(rk);
    return code;
}

static int generate(cterp_explore *x, const int32_t *ids, int n, int n_new,
                    const cterp_explore_steer_req *rq, const cterp_hook *h, int32_t **out,
                    int *n_out) {
    cterp_sampler_params sp = {rq->temperature, 1.0f, rq->seed};
    cterp_forward_opts fo = {h, h ? 1 : 0, 0, NULL, 0};
    return cterp_generate(x->m, ids, n, n_new, &sp, h ? &fo : NULL, NULL, NULL, out, n_out) != 0;
}

static cJSON *text_json(const cterp_explore *x, const int32_t *ids, int n, int n_prompt) {
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    size_t len = 0;
    // the continuation alone: what the edit changed
    if (!cterp_detokenize(x->tok, ids + n_prompt, (size_t)(n - n_prompt), 0, &text, &len))
        cJSON_AddStringToObject(o, "continuation", text);
    else
        cJSON_AddNullToObject(o, "continuation");
    free(text);
    cJSON_AddItemToObject(o, "tokens", ids_json(ids, n));
    return o;
}

static int do_steer(cterp_explore *x, const cterp_explore_steer_req *rq, cJSON *res, char *msg,
                    size_t cap) {
    int32_t *ids = NULL, *s0 = NULL, *s1 = NULL;
    int T = 0, n0 = 0, n1 = 0;
    int code = tokenize_prompt(x, rq->prompt, &ids, &T, msg, cap);
    if (code != 200) return code;
    // generation stops at the context, as cterp_generate stops at the model's
    const int n_new = rq->n < x->context - T ? rq->n : x->context - T;
    cterp_steer st;
    float *l0 = NULL, *l1 = NULL, *act = NULL, *f = NULL;
    if (cterp_steer_init(&st, x->sae, rq->latent, rq->mode, rq->strength)) {
        snprintf(msg, cap, "%s", cterp_last_error());
        free(ids);
        return 400;
    }
    cterp_hook hs = {x->hook, cterp_steer_hook, &st};
    if (generate(x, ids, T, n_new, rq, NULL, &s0, &n0) ||
        generate(x, ids, T, n_new, rq, &hs, &s1, &n1)) {
        snprintf(msg, cap, "generation failed: %s", cterp_last_error());
        code = 500;
        goto done;
    }
    l0 = malloc((size_t)n0 * sizeof *l0), l1 = malloc((size_t)n0 * sizeof *l1);
    act = malloc((size_t)n0 * sizeof *act);
    f = malloc((size_t)chunk_rows(x, n0) * (size_t)x->N * sizeof *f);
    if (!l0 || !l1 || !act || !f) {
        snprintf(msg, cap, "out of memory");
        code = 500;
        goto done;
    }
    // the original text, without and with the edit: the per-token change in next-token loss
    enc_state e = {x, s0, 0, f, 0, NULL, NULL, NULL, NULL, NULL, rq->latent, act};
    cterp_hook he = {x->hook, enc_hook, &e};
    if (run_seq(x, s0, n0, &he, &e, l0, NULL) || run_seq(x, s0, n0, &hs, NULL, l1, NULL)) {
        snprintf(msg, cap, "the model failed: %s", cterp_last_error());
        code = 500;
        goto done;
    }
    static const char *const modes[] = {"add", "clamp", "ablate"};
    cJSON_AddNumberToObject(res, "latent", (double)rq->latent);
    cJSON_AddStringToObject(res, "mode", modes[rq->mode]);
    cJSON_AddNumberToObject(res, "strength", rq->mode == CTERP_STEER_ABLATE ? 0 : fl(rq->strength));
    cJSON_AddNumberToObject(res, "n_prompt", T);
    cJSON_AddNumberToObject(res, "n", n_new); // n, or less where the context ends first
    cJSON_AddItemToObject(res, "original", text_json(x, s0, n0, T));
    cJSON_AddItemToObject(res, "steered", text_json(x, s1, n1, T));
    cJSON *toks = cJSON_AddArrayToObject(res, "loss");
    double dp = 0, dc = 0;
    for (int t = 0; t < n0; t++) {
        cJSON *o = token_json(x, s0[t]);
        cJSON_AddNumberToObject(o, "act", fl(act[t]));
        if (t == 0) {
            cJSON_AddNullToObject(o, "loss"), cJSON_AddNullToObject(o, "steered_loss");
            cJSON_AddNullToObject(o, "delta");
        } else {
            cJSON_AddNumberToObject(o, "loss", fl(l0[t]));
            cJSON_AddNumberToObject(o, "steered_loss", fl(l1[t]));
            cJSON_AddNumberToObject(o, "delta", fl(l1[t] - l0[t]));
            *(t < T ? &dp : &dc) += (double)l1[t] - (double)l0[t];
        }
        cJSON_AddItemToArray(toks, o);
    }
    cJSON_AddNumberToObject(res, "mean_delta_prompt", fl(T > 1 ? (float)(dp / (T - 1)) : 0));
    cJSON_AddNumberToObject(res, "mean_delta_continuation",
                            fl(n0 > T ? (float)(dc / (n0 - T)) : 0));
done:
    cterp_steer_free(&st);
    free(ids), free(s0), free(s1), free(l0), free(l1), free(act), free(f);
    return code;
}

static int do_latent(cterp_explore *x, int64_t i, cJSON *res, char *msg, size_t cap) {
    cJSON_AddNumberToObject(res, "latent", (double)i);
    const cterp_feature *ft = x->F ? &x->F->f[i] : NULL;
    if (ft) {
        cJSON *st = cJSON_AddObjectToObject(res, "stats");
        cJSON_AddNumberToObject(st, "fired", (double)ft->fired);
        cJSON_AddNumberToObject(st, "frequency", ft->frequency);
        cJSON_AddNumberToObject(st, "mean_act", ft->mean_act);
        cJSON_AddNumberToObject(st, "max_act", fl(ft->max_act));
    } else {
        cJSON_AddNullToObject(res, "stats");
    }
    if (!x->logit_ok) {
        cJSON_AddNullToObject(res, "logits");
        return 200;
    }
    const int64_t V = x->V;
    float *l = malloc((size_t)V * sizeof *l);
    if (!l) {
        snprintf(msg, cap, "out of memory");
        return 500;
    }
    if (cterp_logit_effects(x->m, x->sae, i, 1, l)) {
        snprintf(msg, cap, "logit effects failed: %s", cterp_last_error());
        free(l);
        return 500;
    }
    enum { K = 10 };
    int32_t top[K], bot[K];
    int nt = 0, nb = 0;
    for (int64_t v = 0; v < V; v++) { // ties: lower id first, as the features pass
        if (nt < K || l[v] > l[top[nt - 1]]) {
            int j = nt < K ? nt++ : K - 1;
            while (j > 0 && l[v] > l[top[j - 1]]) top[j] = top[j - 1], j--;
            top[j] = (int32_t)v;
        }
        if (nb < K || l[v] < l[bot[nb - 1]]) {
            int j = nb < K ? nb++ : K - 1;
            while (j > 0 && l[v] < l[bot[j - 1]]) bot[j] = bot[j - 1], j--;
            bot[j] = (int32_t)v;
        }
    }
    cJSON *lo = cJSON_AddObjectToObject(res, "logits");
    cJSON *a = cJSON_AddArrayToObject(lo, "top"), *b = cJSON_AddArrayToObject(lo, "bottom");
    for (int k = 0; k < nt; k++) {
        cJSON *o = token_json(x, top[k]);
        cJSON_AddNumberToObject(o, "logit", fl(l[top[k]]));
        cJSON_AddItemToArray(a, o);
    }
    for (int k = 0; k < nb; k++) {
        cJSON *o = token_json(x, bot[k]);
        cJSON_AddNumberToObject(o, "logit", fl(l[bot[k]]));
        cJSON_AddItemToArray(b, o);
    }
    free(l);
    return 200;
}

static void do_info(const cterp_explore *x, cJSON *res) {
    const cterp_model_config *mc = cterp_model_config_of(x->m);
    cJSON_AddStringToObject(res, "model", cterp_model_path(x->m));
    cJSON_AddStringToObject(res, "arch", mc->arch);
    cJSON_AddStringToObject(res, "hook", x->hook);
    cJSON_AddStringToObject(res, "sae_arch", cterp_arch_name(x->sae->arch));
    cJSON_AddNumberToObject(res, "d_in", (double)x->D);
    cJSON_AddNumberToObject(res, "d_sae", (double)x->N);
    cJSON_AddNumberToObject(res, "n_vocab", (double)x->V);
    cJSON_AddNumberToObject(res, "context", x->context);
    cJSON_AddNumberToObject(res, "max_new", x->max_new);
    cJSON_AddBoolToObject(res, "features", x->F != NULL);
    if (x->F) cJSON_AddNumberToObject(res, "corpus_tokens", (double)x->F->n_tokens);
}

static char *error_json(const char *msg) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int cterp_explore_handle(cterp_explore *x, const char *method, const char *route, const char *body,
                         size_t len, char **out) {
    static const char *const routes[] = {"info", "activations", "steer", "latent"};
    char msg[1200] = "";
    int r = -1, code = 200;
    *out = NULL;
    for (int k = 0; k < 4; k++)
        if (!strcmp(route, routes[k])) r = k;
    if (r < 0) {
        snprintf(msg, sizeof msg,
                 "no API route /api/%.200s (routes: info, activations, steer, latent)", route);
        *out = error_json(msg);
        return 404;
    }
    const char *want = r == 0 ? "GET" : "POST";
    if (strcmp(method, want)) {
        snprintf(msg, sizeof msg, "/api/%s takes %s, not %.16s", route, want, method);
        *out = error_json(msg);
        return 405;
    }
    if (r > 0 && len > CTERP_EXPLORE_MAX_BODY) {
        snprintf(msg, sizeof msg, "request body of %zu bytes: the limit is %d", len,
                 CTERP_EXPLORE_MAX_BODY);
        *out = error_json(msg);
        return 413;
    }
    cterp_explore_act_req ar = {0};
    cterp_explore_steer_req sr = {0};
    int64_t latent = 0;
    cterp_status s = r == 1   ? cterp_explore_parse_act(body, len, &ar)
                     : r == 2 ? cterp_explore_parse_steer(body, len, x->N, x->max_new, &sr)
                     : r == 3 ? cterp_explore_parse_latent(body, len, x->N, &latent)
                              : CTERP_OK;
    if (s) {
        snprintf(msg, sizeof msg, "%s", cterp_last_error());
        *out = error_json(msg);
        return s == CTERP_ENOMEM ? 500 : 400;
    }
    cJSON *res = cJSON_CreateObject();
    if (!res) {
        cterp_explore_act_req_free(&ar), cterp_explore_steer_req_free(&sr);
        return 500;
    }
    pthread_mutex_lock(&x->mu);
    if (r == 0) do_info(x, res);
    if (r == 1) code = do_activations(x, &ar, res, msg, sizeof msg);
    if (r == 2) code = do_steer(x, &sr, res, msg, sizeof msg);
    if (r == 3) code = do_latent(x, latent, res, msg, sizeof msg);
    pthread_mutex_unlock(&x->mu);
    cterp_explore_act_req_free(&ar), cterp_explore_steer_req_free(&sr);
    *out = code == 200 ? cJSON_PrintUnformatted(res) : error_json(msg);
    cJSON_Delete(res);
    return *out ? code : 500;
}
