// The live explorer's request handlers (cterp_explore_*), without HTTP: the parsers on good and
// bad bodies (which field, what was expected, what was found), and on stories260K with a seeded
// random topk SAE the answers against references computed here another way: the activations
// against cterp_features_on_tokens (one full forward, all rows encoded at once; the handler runs
// a KV cache in chunks), the next-token loss and distribution against a full forward's logits
// in double, the steering loss change against a naive x + s W_dec[i] hook, the continuations
// against cterp_generate; the status codes of bad requests; and 4 threads at once giving the
// single-threaded answers byte for byte (the model work is serialised inside).
#include <cJSON.h>
#include <pthread.h>
#include <stdint.h>

#include "core/rng.h"
#include "cterp/explore.h"
#include "test.h"

static const char *HOOK = "blocks.2.hook_resid_post";

static int parse_err(cterp_status s, const char *want) {
    if (!s) {
        fprintf(stderr, "  parsed, expected an error with '%s'\n", want);
        return 0;
    }
    if (!strstr(cterp_last_error(), want)) {
        fprintf(stderr, "  error '%s' lacks '%s'\n", cterp_last_error(), want);
        return 0;
    }
    return 1;
}

static void test_parsers(void) {
    cterp_explore_act_req a;
    cterp_explore_steer_req r;
    int64_t lat = -1;
#define ACT(b) cterp_explore_parse_act(b, strlen(b), &a)
#define STEER(b) cterp_explore_parse_steer(b, strlen(b), 100, 64, &r)
    CHECK_OK(ACT("{\"prompt\": \"Tom had\"}"));
    CHECK(a.prompt && !strcmp(a.prompt, "Tom had") && a.top == 5 && a.next == 10);
    cterp_explore_act_req_free(&a);
    CHECK(a.prompt == NULL);
    CHECK_OK(ACT("{\"prompt\": \"\\u00e9\\n\", \"top\": 64, \"next\": 1}"));
    CHECK(a.prompt && !strcmp(a.prompt, "\xC3\xA9\n") && a.top == 64 && a.next == 1);
    cterp_explore_act_req_free(&a);
    // the body need not be NUL-terminated: only len bytes are read
    const char nt[] = "{\"prompt\": \"x\"}GARBAGE";
    CHECK_OK(cterp_explore_parse_act(nt, 15, &a));
    cterp_explore_act_req_free(&a);
    CHECK(parse_err(ACT("{\"prompt\": \"x\""), "bad JSON at byte"));
    CHECK(parse_err(ACT(""), "empty body"));
    CHECK(parse_err(ACT("[1, 2]"), "expected a JSON object, found an array"));
    CHECK(parse_err(ACT("{\"prompt\": \"x\"} 5"), "bad JSON"));
    CHECK(parse_err(ACT("{}"), "field 'prompt' is missing"));
    CHECK(parse_err(ACT("{\"prompt\": 5}"),
                    "field 'prompt': expected a string, found something else"));
    CHECK(parse_err(ACT("{\"prompt\": null}"), "expected a string, found null"));
    CHECK(parse_err(ACT("{\"prompt\": \"x\", \"top\": 0}"),
                    "field 'top': expected an integer in [1, 64], found 0"));
    CHECK(parse_err(ACT("{\"prompt\": \"x\", \"top\": 2.5}"), "found 2.5"));
    CHECK(parse_err(ACT("{\"prompt\": \"x\", \"top\": \"3\"}"), "found a string"));
    CHECK(parse_err(ACT("{\"prompt\": \"x\", \"next\": 1e300}"), "field 'next'"));
    CHECK(parse_err(ACT("{\"prompt\": \"x\", \"promt\": 1}"),
                    "unknown field 'promt' (fields: prompt, top, next)"));
    char *big = malloc(CTERP_EXPLORE_MAX_BODY + 2);
    memset(big, ' ', CTERP_EXPLORE_MAX_BODY + 1);
    big[CTERP_EXPLORE_MAX_BODY + 1] = 0;
    CHECK(parse_err(ACT(big), "the limit is 65536"));
    free(big);
    // nesting deeper than cJSON's limit: an error, not a stack overflow
    char *deep = malloc(200001);
    memset(deep, '[', 200000), deep[200000] = 0;
    CHECK(parse_err(ACT(deep), "the limit"));
    memset(deep, '[', 60000), deep[60000] = 0;
    CHECK(parse_err(ACT(deep), "bad JSON"));
    free(deep);

    CHECK_OK(STEER("{\"prompt\": \"p\", \"latent\": 99}"));
    CHECK(r.latent == 99 && r.mode == CTERP_STEER_ADD && r.strength == 8 && r.n == 20 &&
          r.temperature == 0 && r.seed == 0);
    cterp_explore_steer_req_free(&r);
    CHECK_OK(STEER("{\"prompt\": \"p\", \"latent\": 0, \"mode\": \"ablate\", \"n\": 64, "
                   "\"temperature\": 0.7, \"seed\": 12, \"strength\": -2.5}"));
    CHECK(r.mode == CTERP_STEER_ABLATE && r.n == 64 && r.seed == 12 && r.strength == -2.5f &&
          fabsf(r.temperature - 0.7f) < 1e-7f);
    cterp_explore_steer_req_free(&r);
    CHECK_OK(STEER("{\"prompt\": \"p\", \"latent\": 5, \"mode\": \"clamp\"}"));
    CHECK(r.mode == CTERP_STEER_CLAMP);
    cterp_explore_steer_req_free(&r);
    CHECK(parse_err(STEER("{\"prompt\": \"p\"}"),
                    "field 'latent' is missing (a latent index, 0..99)"));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": 100}"),
                    "field 'latent': expected an integer in [0, 99], found 100"));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": -1}"), "found -1"));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": 1, \"n\": 65}"),
                    "field 'n': expected an integer in [0, 64]"));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": 1, \"mode\": \"zap\"}"),
                    "field 'mode': expected \"add\", \"clamp\" or \"ablate\", found \"zap\""));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": 1, \"mode\": 3}"),
                    "found something else"));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": 1, \"temperature\": -1}"),
                    "field 'temperature'"));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": 1, \"strength\": 1e5}"),
                    "field 'strength'"));
    CHECK(parse_err(STEER("{\"prompt\": \"p\", \"latent\": 1, \"seed\": 1.5}"), "field 'seed'"));
    CHECK(parse_err(STEER("{\"latent\": 1}"), "field 'prompt' is missing"));
    CHECK(r.prompt == NULL);
    CHECK_OK(cterp_explore_parse_latent("{\"latent\": 7}", 13, 100, &lat));
    CHECK(lat == 7);
    CHECK(parse_err(cterp_explore_parse_latent("{\"latent\": 700}", 15, 100, &lat),
                    "[0, 99], found 700"));
    CHECK(parse_err(cterp_explore_parse_latent("{}", 2, 100, &lat), "field 'latent' is missing"));
}

// ---- on the model ---------------------------------------------------------------------------

static cJSON *call(cterp_explore *x, const char *method, const char *route, const char *body,
                   int want) {
    char *out = NULL;
    int code = cterp_explore_handle(x, method, route, body, body ? strlen(body) : 0, &out);
    CHECK_MSG(code == want, "%s /api/%s %s: %d, expected %d: %s", method, route, body ? body : "",
              code, want, out ? out : "(null)");
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    CHECK_MSG(j && cJSON_IsObject(j), "not a JSON object: %s", out ? out : "(null)");
    if (j && code != 200) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        CHECK(cJSON_IsString(e) && e->valuestring[0]);
    }
    free(out);
    return j;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *errmsg(const cJSON *j) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    return cJSON_IsString(e) ? e->valuestring : "";
}

// loss[t] = -log softmax(logits[t-1])[tok[t]] in double
static void ref_loss(const float *lg, const int32_t *tok, int T, int V, double *loss) {
    for (int t = 1; t < T; t++) {
        const float *l = lg + (int64_t)(t - 1) * V;
        double mx = l[0], z = 0;
        for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < V; v++) z += exp((double)l[v] - mx);
        loss[t] = mx + log(z) - (double)l[tok[t]];
    }
}

typedef struct {
    const cterp_sae *sae;
    int64_t i;
    float s;
} naive_add;

static cterp_status naive_hook(const char *name, float *act, const int64_t *shape, int ndim,
                               void *user) {
    naive_add *a = user;
    const int64_t D = a->sae->d_in;
    for (int64_t r = 0; r < shape[0] * shape[1]; r++)
        for (int64_t d = 0; d < D; d++) act[r * D + d] += a->s * a->sae->W_dec[a->i * D + d];
    return CTERP_OK;
}

static void check_activations(cterp_model *m, const cterp_sae *sae, cterp_explore *x) {
    const char *prompt = "Tom had a red ball. He liked to play with it.";
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\": \"%s\", \"top\": 4, \"next\": 6}", prompt);
    cJSON *j = call(x, "POST", "activations", body, 200);
    if (!j) return;
    const cterp_tokenizer *tk = cterp_model_tokenizer(m);
    int32_t *ids;
    size_t n;
    CHECK_OK(cterp_tokenize(tk, prompt, strlen(prompt), 1, 0, &ids, &n));
    const int T = (int)n, V = cterp_model_config_of(m)->n_vocab;
    const int64_t N = sae->d_sae;
    float *f = malloc((size_t)T * N * sizeof *f), *lg = malloc((size_t)T * V * sizeof *lg);
    double *loss = malloc((size_t)T * sizeof *loss);
    CHECK_OK(cterp_features_on_tokens(m, sae, HOOK, ids, T, f));
    cterp_forward_opts fo = {NULL, 0, 0, lg, 0};
    CHECK_OK(cterp_model_forward(m, ids, 1, T, &fo));
    ref_loss(lg, ids, T, V, loss);
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    CHECK(cJSON_GetArraySize(toks) == T);
    double worst_act = 0, worst_loss = 0;
    int bad_rank = 0, listed = 0;
    for (int t = 0; t < T && t < cJSON_GetArraySize(toks); t++) {
        const cJSON *o = cJSON_GetArrayItem(toks, t);
        CHECK(num(o, "id") == ids[t]);
        if (t == 0)
            CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "loss")));
        else
            worst_loss = fmax(worst_loss, fabs(num(o, "loss") - loss[t]));
        // the reference's 4 largest activations at t, against the listed ones
        float ref[4] = {0, 0, 0, 0};
        for (int64_t i = 0; i < N; i++) {
            float v = f[(int64_t)t * N + i];
            for (int k = 0; k < 4; k++)
                if (v > ref[k]) {
                    for (int q = 3; q > k; q--) ref[q] = ref[q - 1];
                    ref[k] = v;
                    break;
                }
        }
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(o, "latents");
        int nl = cJSON_GetArraySize(ls), nref = 0;
        for (int k = 0; k < 4; k++) nref += ref[k] > 0;
        CHECK_MSG(nl == nref, "token %d: %d latents listed, %d fire", t, nl, nref);
        for (int k = 0; k < nl; k++) {
            const cJSON *p = cJSON_GetArrayItem(ls, k);
            const int64_t i = (int64_t)num(p, "latent");
            const double a = num(p, "act");
            worst_act = fmax(worst_act, fabs(a - f[(int64_t)t * N + i]));
            bad_rank += fabs(a - ref[k]) > 1e-4;
            listed++;
        }
    }
    printf("activations: %d tokens, %d latents listed, |act - ref| <= %.2g, |loss - ref| <= %.2g\n",
           T, listed, worst_act, worst_loss);
    CHECK(listed > T);
    CHECK(worst_act < 1e-4 && worst_loss < 1e-4 && bad_rank == 0);
    // the ranking: latent r's max over the non-special tokens
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(j, "top_latents");
    CHECK(cJSON_GetArraySize(rank) > 0);
    for (int k = 0; k < cJSON_GetArraySize(rank); k++) {
        const cJSON *p = cJSON_GetArrayItem(rank, k);
        const int64_t i = (int64_t)num(p, "latent");
        float mx = 0;
        int fired = 0;
        for (int t = 1; t < T; t++)
            mx = fmaxf(mx, f[(int64_t)t * N + i]), fired += f[(int64_t)t * N + i] > 0;
        CHECK_CLOSE(num(p, "max"), mx, 1e-4, 0);
        CHECK(num(p, "fired") == fired);
        if (k) CHECK(num(p, "max") <= num(cJSON_GetArrayItem(rank, k - 1), "max"));
    }
    // the next-token distribution after the last token
    const float *last = lg + (int64_t)(T - 1) * V;
    double mx = last[0], z = 0;
    for (int v = 1; v < V; v++) mx = last[v] > mx ? last[v] : mx;
    for (int v = 0; v < V; v++) z += exp((double)last[v] - mx);
    const cJSON *nx = cJSON_GetObjectItemCaseSensitive(j, "next");
    CHECK(cJSON_GetArraySize(nx) == 6);
    double psum = 0;
    for (int k = 0; k < cJSON_GetArraySize(nx); k++) {
        const cJSON *p = cJSON_GetArrayItem(nx, k);
        const int id = (int)num(p, "id");
        int above = 0; // tokens the reference ranks clearly higher
        for (int v = 0; v < V; v++) above += last[v] > last[id] + 1e-4f;
        CHECK_MSG(above <= k, "next %d: token %d has %d tokens above it", k, id, above);
        CHECK_CLOSE(num(p, "p"), exp((double)last[id] - mx) / z, 1e-5, 1e-4);
        psum += num(p, "p");
    }
    CHECK(psum > 0 && psum <= 1.0001);
    free(ids), free(f), free(lg), free(loss);
    cJSON_Delete(j);
}

static void ids_of(const cJSON *o, int32_t *ids, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    *n = cJSON_GetArraySize(a);
    for (int k = 0; k < *n; k++) ids[k] = (int32_t)cJSON_GetArrayItem(a, k)->valuedouble;
}

static void check_steer(cterp_model *m, const cterp_sae *sae, cterp_explore *x) {
    const char *prompt = "Once upon a time";
    const cterp_tokenizer *tk = cterp_model_tokenizer(m);
    int32_t *ids;
    size_t np;
    CHECK_OK(cterp_tokenize(tk, prompt, strlen(prompt), 1, 0, &ids, &np));
    // the latent most active on the prompt's last token
    const int64_t N = sae->d_sae;
    float *f = malloc(np * N * sizeof *f);
    CHECK_OK(cterp_features_on_tokens(m, sae, HOOK, ids, (int)np, f));
    int64_t lat = 0;
    for (int64_t i = 0; i < N; i++)
        if (f[(np - 1) * N + i] > f[(np - 1) * N + lat]) lat = i;
    char body[256];
    snprintf(body, sizeof body,
             "{\"prompt\": \"%s\", \"latent\": %lld, \"strength\": 12, \"n\": 16}", prompt,
             (long long)lat);
    cJSON *j = call(x, "POST", "steer", body, 200);
    if (!j) return;
    CHECK(num(j, "n_prompt") == (double)np && num(j, "n") == 16 && num(j, "latent") == (double)lat);
    int32_t s0[64], s1[64], *g0 = NULL, *g1 = NULL;
    int n0, n1, m0 = 0, m1 = 0;
    ids_of(cJSON_GetObjectItemCaseSensitive(j, "original"), s0, &n0);
    ids_of(cJSON_GetObjectItemCaseSensitive(j, "steered"), s1, &n1);
    cterp_sampler_params sp = {0, 1, 0};
    cterp_steer st;
    CHECK_OK(cterp_steer_init(&st, sae, lat, CTERP_STEER_ADD, 12));
    cterp_hook hs = {HOOK, cterp_steer_hook, &st};
    cterp_forward_opts fs = {&hs, 1, 0, NULL, 0};
    CHECK_OK(cterp_generate(m, ids, (int)np, 16, &sp, NULL, NULL, NULL, &g0, &m0));
    CHECK_OK(cterp_generate(m, ids, (int)np, 16, &sp, &fs, NULL, NULL, &g1, &m1));
    cterp_steer_free(&st);
    CHECK(n0 == m0 && !memcmp(s0, g0, (size_t)n0 * sizeof *s0));
    CHECK(n1 == m1 && !memcmp(s1, g1, (size_t)n1 * sizeof *s1));
    CHECK(n0 != n1 || memcmp(s0, s1, (size_t)n0 * sizeof *s0) != 0); // the edit changed the text
    // the loss change over the original text against a naive hook and full forwards
    const int V = cterp_model_config_of(m)->n_vocab;
    float *lg = malloc((size_t)n0 * V * sizeof *lg);
    double *l0 = malloc((size_t)n0 * sizeof *l0), *l1 = malloc((size_t)n0 * sizeof *l1);
    float *fa = malloc((size_t)n0 * N * sizeof *fa);
    cterp_forward_opts fo = {NULL, 0, 0, lg, 0};
    CHECK_OK(cterp_model_forward(m, s0, 1, n0, &fo));
    ref_loss(lg, s0, n0, V, l0);
    naive_add na = {sae, lat, 12};
    cterp_hook hn = {HOOK, naive_hook, &na};
    cterp_forward_opts fn = {&hn, 1, 0, lg, 0};
    CHECK_OK(cterp_model_forward(m, s0, 1, n0, &fn));
    ref_loss(lg, s0, n0, V, l1);
    CHECK_OK(cterp_features_on_tokens(m, sae, HOOK, s0, n0, fa));
    const cJSON *ls = cJSON_GetObjectItemCaseSensitive(j, "loss");
    CHECK(cJSON_GetArraySize(ls) == n0);
    double worst = 0, moved = 0, dc = 0;
    for (int t = 0; t < n0 && t < cJSON_GetArraySize(ls); t++) {
        const cJSON *o = cJSON_GetArrayItem(ls, t);
        CHECK(num(o, "id") == s0[t]);
        worst = fmax(worst, fabs(num(o, "act") - fa[(int64_t)t * N + lat]));
        if (t == 0) {
            CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "delta")));
            continue;
        }
        worst = fmax(worst, fabs(num(o, "loss") - l0[t]));
        worst = fmax(worst, fabs(num(o, "steered_loss") - l1[t]));
        worst = fmax(worst, fabs(num(o, "delta") - (l1[t] - l0[t])));
        moved = fmax(moved, fabs(l1[t] - l0[t]));
        if (t >= (int)np) dc += l1[t] - l0[t];
    }
    printf("steer latent %lld (+12 W_dec): loss moves by up to %.3g; |reported - naive| <= %.2g\n",
           (long long)lat, moved, worst);
    CHECK(worst < 1e-4 && moved > 0.01);
    CHECK_CLOSE(num(j, "mean_delta_continuation"), dc / (n0 - (int)np), 1e-4, 0);
    cJSON_Delete(j);
    // ablating a latent that never fires on the text changes nothing: delta exactly 0
    int64_t dead = -1;
    for (int64_t i = 0; i < N && dead < 0; i++) {
        int fires = 0;
        for (int t = 0; t < n0; t++) fires |= fa[(int64_t)t * N + i] > 0;
        if (!fires) dead = i;
    }
    CHECK(dead >= 0);
    snprintf(body, sizeof body,
             "{\"prompt\": \"%s\", \"latent\": %lld, \"mode\": \"ablate\", \"n\": 16}", prompt,
             (long long)dead);
    j = call(x, "POST", "steer", body, 200);
    ls = cJSON_GetObjectItemCaseSensitive(j, "loss");
    int zero = 1;
    for (int t = 1; t < cJSON_GetArraySize(ls); t++)
        zero &= num(cJSON_GetArrayItem(ls, t), "delta") == 0;
    CHECK(zero && cJSON_GetArraySize(ls) == n0);
    cJSON_Delete(j);
    free(ids), free(f), free(g0), free(g1), free(lg), free(l0), free(l1), free(fa);
}

typedef struct {
    cterp_explore *x;
    const char *body, *route, *want;
    int same;
} job;

static void *worker(void *p) {
    job *jb = p;
    jb->same = 1;
    for (int k = 0; k < 4; k++) {
        char *out = NULL;
        int code = cterp_explore_handle(jb->x, "POST", jb->route, jb->body, strlen(jb->body), &out);
        jb->same &= code == 200 && out && !strcmp(out, jb->want);
        free(out);
    }
    return NULL;
}

static void check_threads(cterp_explore *x) {
    const char *bodies[2] = {"{\"prompt\": \"The cat sat on the mat.\"}",
                             "{\"prompt\": \"Lily saw a bird\", \"latent\": 3, \"n\": 8}"};
    const char *routes[2] = {"activations", "steer"};
    char *want[2];
    for (int k = 0; k < 2; k++)
        CHECK(cterp_explore_handle(x, "POST", routes[k], bodies[k], strlen(bodies[k]), &want[k]) ==
              200);
    pthread_t th[4];
    job jb[4];
    for (int k = 0; k < 4; k++) {
        jb[k] = (job){x, bodies[k % 2], routes[k % 2], want[k % 2], 0};
        CHECK(pthread_create(&th[k], NULL, worker, &jb[k]) == 0);
    }
    int same = 1;
    for (int k = 0; k < 4; k++) pthread_join(th[k], NULL), same &= jb[k].same;
    printf("4 threads x 4 requests: %s\n",
           same ? "every answer equals the single-threaded one" : "DIFFER");
    CHECK(same);
    free(want[0]), free(want[1]);
}

static void check_errors(cterp_model *m, cterp_explore *x) {
    cJSON *j;
    j = call(x, "GET", "nothing", NULL, 404);
    CHECK(strstr(errmsg(j), "no API route /api/nothing"));
    cJSON_Delete(j);
    j = call(x, "GET", "steer", NULL, 405);
    CHECK(strstr(errmsg(j), "takes POST"));
    cJSON_Delete(j);
    j = call(x, "POST", "info", "{}", 405);
    cJSON_Delete(j);
    j = call(x, "POST", "activations", "{\"prompt\": ", 400);
    CHECK(strstr(errmsg(j), "bad JSON"));
    cJSON_Delete(j);
    j = call(x, "POST", "steer", "{\"prompt\": \"x\", \"latent\": 128}", 400);
    CHECK(strstr(errmsg(j), "[0, 127], found 128"));
    cJSON_Delete(j);
    j = call(x, "POST", "latent", "{\"latent\": 1000000}", 400);
    cJSON_Delete(j);
    char body[2048] = "{\"prompt\": \"";
    for (int k = 0; k < 80; k++) strcat(body, "a b ");
    strcat(body, "\"}");
    j = call(x, "POST", "activations", body, 400);
    CHECK(strstr(errmsg(j), "longer than the context of 64 tokens"));
    cJSON_Delete(j);
    j = call(x, "POST", "steer", "{\"prompt\": \"\", \"latent\": 1, \"n\": 200}", 400);
    cJSON_Delete(j);
    char *big = malloc(CTERP_EXPLORE_MAX_BODY + 10);
    memset(big, 'x', CTERP_EXPLORE_MAX_BODY + 9);
    big[CTERP_EXPLORE_MAX_BODY + 9] = 0;
    j = call(x, "POST", "activations", big, 413);
    cJSON_Delete(j);
    free(big);
    // the continuation stops at the context: a 60-token prompt and n 20 generate 4
    char p60[1024] = "{\"prompt\": \"";
    for (int k = 0; k < 29; k++) strcat(p60, " a b");
    strcat(p60, "\", \"latent\": 2, \"n\": 20}");
    int32_t *ids;
    size_t n;
    CHECK_OK(cterp_tokenize(cterp_model_tokenizer(m), p60 + 12, 29 * 4, 1, 0, &ids, &n));
    j = call(x, "POST", "steer", p60, 200);
    CHECK_MSG(num(j, "n") == 64 - (double)n, "n %g for a prompt of %zu tokens", num(j, "n"), n);
    free(ids);
    cJSON_Delete(j);
    // the latent route: the live logit effects' top token
    j = call(x, "POST", "latent", "{\"latent\": 5}", 200);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "stats")));
    const cJSON *top =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "logits"), "top");
    CHECK(cJSON_GetArraySize(top) == 10);
    cJSON_Delete(j);
    j = call(x, "GET", "info", NULL, 200);
    CHECK(num(j, "d_sae") == 128 && num(j, "context") == 64 &&
          !strcmp(cJSON_GetObjectItemCaseSensitive(j, "hook")->valuestring, HOOK));
    cJSON_Delete(j);
}

int main(void) {
    test_parsers();
    const char *data = test_data_dir();
    if (!data) {
        printf("skip: shared test data not found (set CTERP_TESTDATA): parsers only\n");
        return test_done();
    }
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K.gguf", data);
    cterp_model *m = NULL;
    cterp_sae *sae = NULL, *narrow = NULL;
    CHECK_OK(cterp_model_open(&m, mp));
    CHECK_OK(cterp_sae_create(&sae, CTERP_ARCH_TOPK, 64, 128, 6));
    if (!m || !sae) return test_done();
    rng_t r;
    rng_seed(&r, 11);
    for (int64_t q = 0; q < 128 * 64; q++) sae->W_enc[q] = 0.25f * rng_normal(&r);
    for (int64_t q = 0; q < 128 * 64; q++) sae->W_dec[q] = 0.25f * rng_normal(&r);
    snprintf(sae->meta.hook_name, sizeof sae->meta.hook_name, "%s", HOOK);
    sae->meta.context_size = 64;
    // a hook of another width, an unknown hook: clear errors at creation
    cterp_explore *x = NULL;
    CHECK_OK(cterp_sae_create(&narrow, CTERP_ARCH_TOPK, 32, 64, 4));
    snprintf(narrow->meta.hook_name, sizeof narrow->meta.hook_name, "%s", HOOK);
    CHECK(cterp_explore_create(&x, m, narrow, NULL) == CTERP_EINVAL && !x);
    CHECK(strstr(cterp_last_error(),
                 "blocks.2.hook_resid_post has 64 values per token, the SAE's d_in is 32"));
    cterp_explore_opts o = {"blocks.9.hook_nothing", 0, 0, NULL};
    CHECK(cterp_explore_create(&x, m, sae, &o) != CTERP_OK && !x);
    o = (cterp_explore_opts){NULL, 100000, 0, NULL};
    CHECK(cterp_explore_create(&x, m, sae, &o) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "n_ctx"));
    o = (cterp_explore_opts){NULL, 0, 64, NULL};
    CHECK_OK(cterp_explore_create(&x, m, sae, &o));
    if (x) {
        CHECK(cterp_explore_context(x) == 64);
        check_activations(m, sae, x);
        check_steer(m, sae, x);
        check_errors(m, x);
        check_threads(x);
    }
    cterp_explore_free(x);
    cterp_explore_free(NULL);
    cterp_sae_free(sae), cterp_sae_free(narrow);
    cterp_model_free(m);
    return test_done();
}
