// Internals shared by the activation store and the cache: the row stream (windows -> model ->
// rows of non-special positions, in order) and the index-level mixing buffer.
#ifndef CTERP_ACTS_IMPL_H
#define CTERP_ACTS_IMPL_H

#include "core/rng.h"
#include "cterp/acts.h"

// ---- row stream: windows through the model, rows of the unmasked positions in order ----------
typedef struct {
    cterp_model *m;
    char hook[256];
    cterp_windows *w;
    int T, mb;       // context size, windows per forward
    int64_t D;       // row width at the hook
    int32_t *tok;    // (mb, T) windows of the current forward
    uint8_t *mask;   // (mb, T)
    float *rows;     // (mb * T, D) rows of the last forward (unmasked positions)
    int32_t *row_tok; // (mb * T) their token ids
    int64_t n_rows, next_row; // rows in the pending batch, next one to hand out
    int64_t produced, windows, epochs;
    int at_eof;      // the last forward ended the dataset (stream_next then wraps, unless stop_at_eof)
} act_stream;

cterp_status stream_open(act_stream *s, cterp_model *m, const char *hook, const char *dataset,
                         const cterp_store_config *c);
void stream_close(act_stream *s);
// Next row (D floats) and its token. With stop_at_eof, *eof = 1 once the dataset is exhausted;
// otherwise the dataset is rewound (a new epoch).
cterp_status stream_next(act_stream *s, const float **row, int32_t *tok, int stop_at_eof, int *eof);
cterp_status stream_rewind(act_stream *s);

// ---- mixing buffer over slot indices -----------------------------------------------------
// fill(ctx, slots, n): put the next n rows of the producer into those slots, in that order.
typedef cterp_status (*mixer_fill_fn)(void *ctx, const int64_t *slots, int64_t n);

typedef struct {
    int64_t cap, half;
    int64_t *order; // (cap) slots in serving order; order[pos..half) still to serve
    int64_t pos, served;
    int filled;
    uint64_t seed;
    rng_t rng;
} mixer;

cterp_status mixer_init(mixer *x, int64_t cap, uint64_t seed);
void mixer_reset(mixer *x);
void mixer_free(mixer *x);
// The slot of the next row to serve (filling/refilling through fill first when needed).
cterp_status mixer_next(mixer *x, int64_t *slot, mixer_fill_fn fill, void *ctx);

// source state layout shared by the store and the cache reader: tag, rows served, seed, buffer
#define ACTS_STATE_TAG 0x43545250414354ULL // "CTRPACT"
#define ACTS_STATE_WORDS 4
int mixer_get_state(const mixer *x, uint64_t *st, int cap);
// Checks a saved state against this mixer (what = "activation store" | "activation cache" for
// the errors); on success *served is the number of rows to replay.
cterp_status mixer_check_state(const mixer *x, const uint64_t *st, int n, const char *what, uint64_t *served);

#endif
