// cterp explore: the live explorer's requests, JSON in -> JSON out, apart from any HTTP library
// (cterp serve puts them behind libmicrohttpd; tests and the fuzzer call them directly).
//
// Routes (docs/features.md, "Live explorer"):
//   GET  info         model, hook, d_sae, context, whether corpus statistics are loaded
//   POST activations  {"prompt", "top"?, "next"?} -> the prompt's tokens with each token's top
//                     latents and next-token loss, the latents ranked over the prompt, and the
//                     next-token distribution after it
//   POST steer        {"prompt", "latent", "strength"?, "mode"?, "n"?, "temperature"?, "seed"?}
//                     -> the continuation without and with the edit (cterp_steer_hook) and, over
//                     the original text, each token's next-token loss without and with the edit
//   POST latent       {"latent"} -> its logit effects and corpus statistics (when loaded)
// Every answer is one JSON object; an error is {"error": "message"} with a 4xx status.
// The model is not thread-safe: cterp_explore_handle serialises the model work of concurrent
// calls with a mutex, so any number of threads may call it on one cterp_explore.
#ifndef CTERP_EXPLORE_H
#define CTERP_EXPLORE_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"
#include "cterp/features.h"
#include "cterp/model.h"
#include "cterp/sae.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CTERP_EXPLORE_MAX_BODY 65536 // bytes of a request body (more: 413 at the HTTP layer)
#define CTERP_EXPLORE_MAX_TOP 64     // "top": latents listed per token (default 5)
#define CTERP_EXPLORE_MAX_NEXT 100   // "next": next-token candidates (default 10)

typedef struct {
    const char *hook;               // NULL: the SAE's metadata hook_name
    int context;                    // tokens a prompt (+ continuation) may have; 0: the SAE's
                                    // context_size, else the model's n_ctx, capped at 1024
    int max_new;                    // largest "n" of a steer request (128)
    const cterp_features *features; // corpus statistics for "latent" and "info" (may be NULL)
} cterp_explore_opts;

typedef struct cterp_explore cterp_explore;

// Checks the hook against the model and the SAE (width d_in) and the context against n_ctx.
// m, sae and opts->features must outlive the explorer. o may be NULL.
cterp_status cterp_explore_create(cterp_explore **out, cterp_model *m, const cterp_sae *sae,
                                  const cterp_explore_opts *o);
void cterp_explore_free(cterp_explore *x); // NULL is a no-op
int cterp_explore_context(const cterp_explore *x);

// One API request: method ("GET"/"POST"), route (the path after /api/), body (len bytes, need
// not be NUL-terminated; ignored for GET). Returns the HTTP status (200; 400 bad request, 404
// unknown route, 405 wrong method, 413 body over CTERP_EXPLORE_MAX_BODY, 500 model failure) and
// *out, a malloc'd NUL-terminated JSON object (NULL only when out of memory). Never exits,
// never prints.
int cterp_explore_handle(cterp_explore *x, const char *method, const char *route, const char *body,
                         size_t len, char **out);

// ---- request parsers (what cterp_explore_handle runs first; public for tests and fuzzing) ----

typedef struct {
    char *prompt; // malloc'd
    int top;      // latents per token (1..CTERP_EXPLORE_MAX_TOP, default 5)
    int next;     // next-token candidates (1..CTERP_EXPLORE_MAX_NEXT, default 10)
} cterp_explore_act_req;

typedef struct {
    char *prompt; // malloc'd
    int64_t latent;
    cterp_steer_mode mode; // "add" (default), "clamp", "ablate"
    float strength;        // add: the multiple of W_dec[latent]; clamp: the value (default 8)
    int n;                 // tokens to generate (0..max_new, default 20)
    float temperature;     // 0 (greedy, default) .. 10
    uint64_t seed;         // sampler seed (0)
} cterp_explore_steer_req;

// Parse and check a body; on error return CTERP_EINVAL with the message (which field, what was
// expected, what was found) and leave nothing allocated. d_sae bounds "latent", max_new "n".
cterp_status cterp_explore_parse_act(const char *body, size_t len, cterp_explore_act_req *r);
cterp_status cterp_explore_parse_steer(const char *body, size_t len, int64_t d_sae, int max_new,
                                       cterp_explore_steer_req *r);
cterp_status cterp_explore_parse_latent(const char *body, size_t len, int64_t d_sae,
                                        int64_t *latent);
void cterp_explore_act_req_free(cterp_explore_act_req *r);     // NULL fields are fine
void cterp_explore_steer_req_free(cterp_explore_steer_req *r); // NULL fields are fine

#ifdef __cplusplus
}
#endif
#endif
