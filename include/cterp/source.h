// cterp activation sources: the interface between whatever produces activation rows (a model
// run through the activation store, a cache, a .npy file, the toy) and the trainer that consumes
// them. Its own header so that producers (acts.h, toy.h) need not include the trainer's.
#ifndef CTERP_SOURCE_H
#define CTERP_SOURCE_H

#include <stdint.h>

#include "cterp/error.h"

#ifdef __cplusplus
extern "C" {
#endif

// A stream of activations (B, D). State (up to 16 words) lets a checkpoint resume the stream.
typedef struct cterp_act_source {
    int64_t d_in;
    void *ctx;
    cterp_status (*next)(void *ctx, float *x, int64_t B);
    int (*get_state)(void *ctx, uint64_t *state, int cap); // returns words written
    // Restores a get_state state. max_rows: the most rows the consumer can have taken before the
    // state was saved (the trainer: its steps times its batch); a state that claims more comes
    // from a damaged file and is refused (CTERP_EFORMAT) before it drives a replay.
    cterp_status (*set_state)(void *ctx, const uint64_t *state, int n, int64_t max_rows);
    void (*free)(void *ctx);
    char description[256];
    // Sources of (input, target) pairs, for transcoders: d_out > 0 is the width of the target
    // rows, and next_target fills x (B, d_in) and y (B, d_out) with the pairs of the same tokens
    // (e.g. an MLP's input and output hooks from one model forward). 0 / NULL for the others.
    int64_t d_out;
    cterp_status (*next_target)(void *ctx, float *x, float *y, int64_t B);
    // Optional (NULL: the trainer takes all B rows from next and keeps its part): serves the next
    // B rows exactly as next would, but writes only rows [lo, hi) of them into x ((hi - lo) x
    // d_in). Data-parallel ranks each take their part of the same batch: the stream (and the
    // state get_state saves) advances by B on every rank, whatever its part.
    cterp_status (*next_part)(void *ctx, float *x, int64_t B, int64_t lo, int64_t hi);
    // Crosscoder sources: each row is n_layers layers' rows of d_in / n_layers side by side (the
    // same token). 0 for the others.
    int64_t n_layers;
} cterp_act_source;

void cterp_act_source_free(cterp_act_source *s); // calls s->free; NULL is a no-op

#ifdef __cplusplus
}
#endif
#endif
