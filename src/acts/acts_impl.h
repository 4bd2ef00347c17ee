// Internals shared by the activation store and the cache: the row stream (windows -> model ->
// rows of non-special positions, in order) and the index-level mixing buffer.
#ifndef CTERP_ACTS_IMPL_H
#define CTERP_ACTS_IMPL_H

#include "core/rng.h"
#include "cterp/acts.h"

// ---- row stream: windows through the model, rows of the unmasked positions in order ----------
// One forward per batch of windows feeds every hook: row i of each hook is the same token.
typedef struct {
    cterp_model *m;
    int n_hooks;
    char (*hook)[256]; // (n_hooks) names
    int64_t *D;        // (n_hooks) row width at each hook
    float **rows;      // (n_hooks) (mb * T, D[h]) rows of the last forward (unmasked positions)
    cterp_windows *w;
    int T, mb;       // context size, windows per forward
    int32_t *tok;    // (mb, T) windows of the current forward
    uint8_t *mask;   // (mb, T)
    int32_t *row_tok; // (mb * T) their token ids
    int64_t n_rows, next_row; // rows in the pending batch, next one to hand out
    int64_t produced, windows, epochs, forwards;
    int at_eof;      // the last forward ended the dataset (stream_next then wraps, unless stop_at_eof)
    // MPI (core/dist.h, P > 1): a forward is a round of P batches of mb windows, batch j run by
    // rank j (every rank reads all the windows; the batches are those of one process, so are the
    // rows, bit for bit). gather: every rank gets every rank's rows, in batch order (the store);
    // else each keeps its own and round_rows says how many each rank made (the cache's shards).
    int P, rank, gather;
    int round_windows[64];  // windows of batch j of the last round (j < P)
    int64_t *round_rows;    // (P) rows of batch j of the last round
    float **mine;           // (n_hooks) (mb * T, D[h]) this rank's rows of a round (gather)
    int32_t *mine_tok;      // (mb * T)
} act_stream;

// hooks: n_hooks distinct TransformerLens names (an unknown or repeated one is an error naming it).
cterp_status stream_open(act_stream *s, cterp_model *m, const char *const *hooks, int n_hooks,
                         const char *dataset, const cterp_store_config *c);
// Under MPI with P > 1 ranks: rounds of P forward batches, one per rank; gather as above. Call
// right after stream_open, on every rank. At most 64 ranks.
cterp_status stream_distribute(act_stream *s, int gather);
// Without gather: runs the next round; this rank's rows are rows[0 .. n_rows), round_rows[j] and
// round_windows[j] say what batch j (rank j) made. *eof when the dataset had no window left.
cterp_status stream_round(act_stream *s, int *eof);
void stream_close(act_stream *s);
// Next row of every hook (row[h]: D[h] floats) and its token. With stop_at_eof, *eof = 1 once
// the dataset is exhausted; otherwise the dataset is rewound (a new epoch).
cterp_status stream_next(act_stream *s, const float **row, int32_t *tok, int stop_at_eof, int *eof);
cterp_status stream_rewind(act_stream *s);

// ---- mixing buffer over slot indices -----------------------------------------------------
// fill(ctx, slots, n): put the next n rows of the producer into those slots, in that order.
typedef cterp_status (*mixer_fill_fn)(void *ctx, const int64_t *slots, int64_t n);

typedef struct {
    int64_t cap, half;
    int64_t *order; // (cap) slots in serving order; order[pos..half) still to serve
    int64_t pos, served;
    int filled;     // 0: empty; 1: warm (its first half only, served first); 2: full
    uint64_t seed;
    rng_t rng;
} mixer;

cterp_status mixer_init(mixer *x, int64_t cap, uint64_t seed);
// A run that fits in the buffer (default size capped at run_rows): serve all of it, shuffled,
// before refilling (its rows are all the run takes); else half of it between refills.
void mixer_serve_whole_if_run_fits(mixer *x, const cterp_store_config *c);
void mixer_reset(mixer *x);
void mixer_free(mixer *x);
// The slot of the next row to serve (filling/refilling through fill first when needed).
cterp_status mixer_next(mixer *x, int64_t *slot, mixer_fill_fn fill, void *ctx);

// ---- resume state shared by the store and the cache reader ----------------------------------
// Words: tag, rows served, seed, buffer rows, then the fingerprint of what defines the row
// stream: a replay against other data would serve other rows without a word, so it is refused.
// "CTRPACT": the layout of cterp before the fingerprint, 4 words (refused with its own message)
#define ACTS_STATE_TAG_V1 0x43545250414354ULL
#define ACTS_STATE_TAG 0x43545250414332ULL // "CTRPAC2"
#define ACTS_STATE_WORDS 14
_Static_assert(ACTS_STATE_WORDS <= 16, "a checkpoint keeps up to 16 source state words (source.h)");

enum { ACTS_LIVE = 1, ACTS_CACHE = 2 };

typedef struct {
    uint64_t kind;                    // ACTS_LIVE (a model over a dataset) | ACTS_CACHE
    uint64_t data_bytes, data_hash;   // live: cterp_dataset_fingerprint; cache: rows, their hash
    uint64_t model_bytes, model_hash; // live: cterp_model_fingerprint (0 for a cache)
    uint64_t hook_hash;               // live: the hook's name
    uint64_t context_size;            // live: the window settings (cterp_window_config)
    uint64_t flags;                   // prepend_bos | concat << 1 | exclude_special << 2
    uint64_t separator;               // the resolved id (-1: none), as int64
    uint64_t model_batch;             // the forward is not batch-invariant: it changes the bits
    // what this run reads, for the messages (not saved)
    const char *data_path, *model_path, *hook;
} acts_fingerprint;

int acts_get_state(const mixer *x, const acts_fingerprint *fp, uint64_t *st, int cap);
// Checks a saved state against this mixer and fingerprint (what = "activation store" |
// "activation cache"); the error names the field that differs, the saved and the current value.
// On success *served is the number of rows to replay.
// max_rows bounds the rows served (source.h): a larger count is refused before any replay.
cterp_status acts_check_state(const mixer *x, const acts_fingerprint *fp, const uint64_t *st, int n,
                              int64_t max_rows, const char *what, uint64_t *served);

#endif
