// Fuzz target: request bodies of cterp serve's JSON API -> the parsers (cterp_explore_parse_act,
// _steer, _latent) and, with the shared test data, the whole handler (cterp_explore_handle) on
// stories260K with a seeded random topk SAE. Byte 0 picks the route and method, the rest is the
// body. Checked: a parse that succeeds gives fields in their documented ranges; every answer is
// a JSON object (with "error" exactly when the status is not 200) and its status one of those
// documented; nothing leaks (ASan) whatever the body.
#include <cJSON.h>
#include <math.h>

#include "core/rng.h"
#include "cterp/explore.h"
#include "fuzz.h"

static cterp_model *model;
static cterp_sae *sae;
static cterp_explore *ex;
static const char *const ROUTES[] = {"activations", "steer", "latent", "info"};
enum { D_SAE = 64, MAX_NEW = 8 };

static void seed(const char *name, int route, const char *body) {
    char buf[512];
    size_t n = strlen(body);
    if (n + 1 > sizeof buf) abort();
    buf[0] = (char)route;
    memcpy(buf + 1, body, n);
    fuzz_seed(name, buf, n + 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    const char *data = fuzz_testdata();
    if (data) { // the handler on a real model: tokenizer, forward, steering, JSON out
        char *mp = file_join(data, "models/stories260K.gguf");
        if (!mp || cterp_model_open(&model, mp) ||
            cterp_sae_create(&sae, CTERP_ARCH_TOPK, 64, D_SAE, 4))
            abort();
        free(mp);
        rng_t r;
        rng_seed(&r, 5);
        for (int64_t q = 0; q < 64 * D_SAE; q++) sae->W_enc[q] = 0.25f * rng_normal(&r);
        for (int64_t q = 0; q < 64 * D_SAE; q++) sae->W_dec[q] = 0.25f * rng_normal(&r);
        snprintf(sae->meta.hook_name, sizeof sae->meta.hook_name, "blocks.1.hook_resid_post");
        cterp_explore_opts o = {NULL, 48, MAX_NEW, NULL};
        if (cterp_explore_create(&ex, model, sae, &o)) {
            fprintf(stderr, "fuzz_explore: %s\n", cterp_last_error());
            abort();
        }
    }
    // byte 0: route (0 activations, 1 steer, 2 latent, 3 info) + 4 for the wrong method
    seed("act_min", 0, "{\"prompt\": \"Tom had a red ball.\"}");
    seed("act_all", 0, "{\"prompt\": \"Once upon a time\\n\\u00e9\", \"top\": 3, \"next\": 20}");
    seed("act_bad", 0, "{\"prompt\": 5, \"top\": 2.5}");
    seed("steer_add", 1, "{\"prompt\": \"Lily saw\", \"latent\": 3, \"strength\": 8, \"n\": 4}");
    seed("steer_ablate", 1,
         "{\"prompt\": \"The dog\", \"latent\": 63, \"mode\": \"ablate\", \"n\": 8, "
         "\"temperature\": 0.8, \"seed\": 7}");
    seed("steer_clamp", 1,
         "{\"prompt\": \"\", \"latent\": 0, \"mode\": \"clamp\", \"strength\": -3}");
    seed("latent", 2, "{\"latent\": 12}");
    seed("info", 3, "");
    seed("wrong_method", 4 + 1, "{\"prompt\": \"x\", \"latent\": 1}");
    return 0;
}

static void check_answer(int code, char *out) {
    if (!out) {
        fprintf(stderr, "fuzz_explore: no answer (status %d)\n", code);
        abort();
    }
    cJSON *j = cJSON_Parse(out);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const int known = code == 200 || code == 400 || code == 404 || code == 405 || code == 413;
    if (!cJSON_IsObject(j) || !known || (code == 200) != (e == NULL) ||
        (e && !(cJSON_IsString(e) && e->valuestring[0]))) {
        fprintf(stderr, "fuzz_explore: status %d with %.300s\n", code, out);
        abort();
    }
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int sel = data[0] & 7;
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;
    cterp_explore_act_req a;
    cterp_explore_steer_req s;
    int64_t lat = -1;
    if (!cterp_explore_parse_act(body, len, &a)) {
        if (!a.prompt || a.top < 1 || a.top > CTERP_EXPLORE_MAX_TOP || a.next < 1 ||
            a.next > CTERP_EXPLORE_MAX_NEXT)
            abort();
        cterp_explore_act_req_free(&a);
    } else if (a.prompt) {
        abort(); // an error leaves nothing allocated
    }
    if (!cterp_explore_parse_steer(body, len, D_SAE, MAX_NEW, &s)) {
        if (!s.prompt || s.latent < 0 || s.latent >= D_SAE || s.n < 0 || s.n > MAX_NEW ||
            !(s.temperature >= 0 && s.temperature <= 10) || !(fabsf(s.strength) <= 1e4f))
            abort();
        cterp_explore_steer_req_free(&s);
    } else if (s.prompt) {
        abort();
    }
    if (!cterp_explore_parse_latent(body, len, D_SAE, &lat) && (lat < 0 || lat >= D_SAE)) abort();
    if (ex) {
        const char *route = ROUTES[sel & 3];
        const char *method =
            (sel & 3) == 3 ? (sel & 4 ? "POST" : "GET") : (sel & 4 ? "GET" : "POST");
        char *out = NULL;
        int code = cterp_explore_handle(ex, method, route, body, len, &out);
        fuzz_note(route, code != 200);
        check_answer(code, out);
        free(out);
    }
    return 0;
}
