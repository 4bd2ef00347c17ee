// cterp activations: the activation store (a model run over a dataset, up to a hook, special
// positions dropped, rows mixed in a shuffling buffer) and the on-disk activation cache.
//
// Both are cterp_act_sources for the trainer and both serve rows through the same mixing
// buffer (SAELens-style): fill `buffer_rows` rows, shuffle, serve half, refill the served half
// with the next rows, shuffle again. For the same seed and buffer size a cache holding a whole
// dataset epoch serves exactly the rows, in exactly the order, the live store serves, so the
// trainer produces the same SAE from either.
//
// Resume (get_state/set_state) is a deterministic replay: the state is the number of rows
// served, plus what must match for the replay to serve the same rows (the seed, buffer size and
// a fingerprint of the data, model, hook and window settings, or of a cache's rows), checked
// with an error naming the field that differs; set_state rewinds and replays the mixing
// buffer. From a cache the replay touches only row indices (cheap); the live store re-runs the
// model over the windows consumed so far (forward only), which costs a fraction of the original
// run and gives bit-identical batches afterwards.
#ifndef CTERP_ACTS_H
#define CTERP_ACTS_H

#include <stdint.h>

#include "cterp/data.h"
#include "cterp/error.h"
#include "cterp/model.h"
#include "cterp/source.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    cterp_window_config windows; // context size, BOS, separator, concat, special-token mask
    cterp_dataset_opts data;
    int model_batch;     // sequences per model forward (8)
    int64_t buffer_rows; // mixing buffer capacity in rows (0: max(32768, 4 x train batch), but
                         // never more than run_rows)
    uint64_t seed;       // shuffling
    int64_t run_rows;    // rows the run will take (0: unknown; cterp_train_rows_needed). With the
                         // default buffer_rows, a run that fits in the buffer gets a buffer of
                         // exactly its rows, filled once and served whole (a full shuffle of the
                         // run, no row produced and not used)
    // called while the buffer fills: at its start (rows 0), about once a second, and at its end
    // (rows == total), with the seconds since the fill began (NULL: silent)
    void (*fill_progress)(int64_t rows, int64_t total, double seconds, void *user);
    void *fill_progress_user;
    int overlap; // 1 (default, auto): after the first refill, when the trainer takes rows slower
                 // than the model makes them, the model computes the next refill's rows on its
                 // own thread (half the threads) while the trainer takes the rows already mixed;
                 // 2: always so; 0: never (the refill runs when the trainer asks). The same rows
                 // in the same order whatever the value.
} cterp_store_config;

void cterp_store_config_default(cterp_store_config *c);
// The buffer capacity used for a training batch of train_batch rows (resolves 0, caps it at
// run_rows, rounds to even). Error when it is smaller than 2 x train_batch: half the buffer is
// served per refill.
cterp_status cterp_store_buffer_rows(const cterp_store_config *c, int64_t train_batch, int64_t *rows);

// Creates a store source: activations of `hook` (a TransformerLens name) over the windows of
// `dataset`. The model is borrowed (it must outlive the source); it is run in batches of
// model_batch windows, stopping after the hook's layer. Nothing runs before the first next();
// creating it reads the dataset and model files once (up to 64 MiB of each file) for the resume
// fingerprint.
cterp_status cterp_act_store(cterp_act_source *src, cterp_model *m, const char *hook,
                             const char *dataset, const cterp_store_config *c, int64_t train_batch);

// A source of (input, target) pairs for a transcoder: hook_in's rows (d_in) and hook_out's rows
// (d_out) of the same tokens from one forward (a cterp_multi_store of the two hooks, read with
// cterp_multi_store_next), served through next_target; next is an error. Its rows are exactly
// those the multi-hook store serves for the pair (and, row for row, the tokens a single-hook
// store of hook_in serves). Resume as cterp_act_store (the state names both hooks). Distinct
// hooks only: a transcoder from a hook to itself is an SAE.
cterp_status cterp_act_pair_store(cterp_act_source *src, cterp_model *m, const char *hook_in,
                                  const char *hook_out, const char *dataset,
                                  const cterp_store_config *c, int64_t train_batch);

// A crosscoder's source: the rows of n_hooks (2..4096) hooks of one width D for the same tokens
// (one forward, a cterp_multi_store read with cterp_multi_store_next) side by side, hook order:
// d_in = n_hooks * D, n_layers = n_hooks. Resume as cterp_act_store (the state names every hook).
cterp_status cterp_act_concat_store(cterp_act_source *src, cterp_model *m, const char *const *hooks, int n_hooks,
                                    const char *dataset, const cterp_store_config *c, int64_t train_batch);

typedef struct {
    int64_t rows_produced;   // activation rows taken from the model (special positions dropped)
    int64_t rows_served;     // rows handed to the trainer
    int64_t windows;         // windows run through the model
    int64_t positions;       // token positions run (windows x context_size)
    int64_t epochs;          // completed passes over the dataset
    int64_t buffer_rows;
    int64_t forwards;        // model forwards run (one per batch of windows, for every hook)
} cterp_store_stats;

// Counters of a store, pair or cache source; CTERP_EINVAL for another kind of source.
cterp_status cterp_act_source_stats(const cterp_act_source *src, cterp_store_stats *st);

// ---- several hooks, one forward -------------------------------------------------------------
// A store over several hooks of one model: each batch of windows is run once, up to the last
// hook's layer, and every hook's rows are kept (row i of every hook is the same token). One
// mixing buffer of slots (buffer_rows, seed), one row buffer per hook. Read it either way:
//  - cterp_multi_store_next: B rows of every hook for the same B tokens, in the same order (the
//    pairs a transcoder trains on: an input hook and an output hook from the same forward);
//  - cterp_multi_store_source: one cterp_act_source per hook, each serving exactly the rows, in
//    exactly the order, a single-hook cterp_act_store with the same config serves (so one SAE per
//    hook trains to the same weights as alone). Sources may run ahead of each other: the one in
//    front draws from the mixer and queues the row of every other open source's hook, so read
//    them in step (a trainer step each) to keep the queues at a batch. Their get_state/set_state
//    are the single-hook store's (a checkpoint resumes with either); after set_state the store
//    replays once, at the next read, up to the furthest source.
typedef struct cterp_multi_store cterp_multi_store;

// hooks: n_hooks distinct names (1..4096); unknown or repeated names are errors naming them.
// The model is borrowed. train_batch sizes the default buffer as cterp_act_store does.
cterp_status cterp_multi_store_open(cterp_multi_store **out, cterp_model *m, const char *const *hooks,
                                    int n_hooks, const char *dataset, const cterp_store_config *c,
                                    int64_t train_batch);
// Frees the store; its per-hook sources must be freed first. NULL is a no-op.
void cterp_multi_store_free(cterp_multi_store *s);
int cterp_multi_store_n_hooks(const cterp_multi_store *s);
const char *cterp_multi_store_hook(const cterp_multi_store *s, int h); // NULL outside [0, n)
int64_t cterp_multi_store_d_in(const cterp_multi_store *s, int h);     // row width of hook h
// B rows of every hook for the same tokens: x[h] is (B, d_in(h)). Not with per-hook sources.
cterp_status cterp_multi_store_next(cterp_multi_store *s, float *const *x, int64_t B);
// A source over hook h's rows (borrows the store; cterp_act_source_free releases the source
// only). Open every source before the first read; one source per hook.
cterp_status cterp_multi_store_source(cterp_multi_store *s, int h, cterp_act_source *src);
// Counters of the shared stream (rows_served: rows drawn from the mixing buffer).
cterp_status cterp_multi_store_stats(cterp_multi_store *s, cterp_store_stats *st);

// ---- activation cache ----------------------------------------------------------------------
// A directory: activations.bin = a 4096-byte header then `count` rows of d_in values (dtype),
// in the order the store produces them (before mixing); tokens.bin = count int32 token ids,
// the token at each row. docs/pipeline.md gives the header layout.

typedef enum { CTERP_DTYPE_F32 = 0, CTERP_DTYPE_F16 = 1, CTERP_DTYPE_BF16 = 2 } cterp_dtype;

typedef struct {
    uint32_t version;
    cterp_dtype dtype;
    int64_t d_in;     // D
    int64_t count;    // rows
    int64_t windows;  // windows the rows came from
    int context_size, prepend_bos, separator, concat, exclude_special;
    int complete_epoch; // 1: the rows are the whole dataset (the store would wrap here too)
    char model[256], hook[256], dataset[1024];
    // written by P MPI ranks (version 2): the rows lie in P shard files (docs/pipeline.md);
    // count is their total, shard_rows the rows of activations.bin (shard 0). 1 otherwise.
    int shards;
    int64_t shard_rows;
} cterp_cache_info;

// Progress callback of the writer: rows written so far of max_rows.
typedef void (*cterp_cache_progress_fn)(int64_t rows, int64_t max_rows, void *user);

// Runs the model over the dataset and writes max_tokens rows (or fewer when the dataset ends
// first: one epoch at most) to out_dir. Rows go to .partial files, synced in chunks with a
// progress record (cterp_act_cache_resume continues from it); they take their names at the end.
// Under MPI (P > 1 ranks, every rank calls it): each rank runs 1/P of the forward batches and
// writes their rows to its own shard; the shards together hold exactly the rows, in the order,
// one process writes, and the reader serves them as one cache.
cterp_status cterp_act_cache_write(cterp_model *m, const char *model_name, const char *hook,
                                   const char *dataset, const cterp_store_config *c,
                                   int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                   cterp_cache_progress_fn progress, void *user,
                                   cterp_cache_info *info);
// The caches of several hooks from one run of the model: hook H into out_dir/H (a directory
// named after the hook, as SAELens names SAEs), each exactly the cache cterp_act_cache_write
// writes for H alone. info (if not NULL) receives n_hooks headers.
cterp_status cterp_act_cache_write_hooks(cterp_model *m, const char *model_name, const char *const *hooks,
                                         int n_hooks, const char *dataset, const cterp_store_config *c,
                                         int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                         cterp_cache_progress_fn progress, void *user,
                                         cterp_cache_info *info);
// Continues the write a killed run of the same options left in out_dir (per_hook_dirs: the
// caches of cterp_act_cache_write_hooks, out_dir/<hook>; else one hook into out_dir). The writer
// syncs its rows in chunks and records after each, in DIR/cache.progress, the rows and windows
// synced and the options that made them; this resumes from that record (options that differ are
// refused naming the first one) and ends with the cache an uninterrupted run writes, byte for
// byte. With no record it starts over; a complete cache without one is refused (nothing to
// resume). *resumed_from: the rows kept. Under MPI (one hook) it resumes a sharded cache killed
// under the same number of ranks, from the least of the ranks' records (DIR/cache.progress.K).
cterp_status cterp_act_cache_resume(cterp_model *m, const char *model_name,
                                    const char *const *hooks, int n_hooks, int per_hook_dirs,
                                    const char *dataset, const cterp_store_config *c,
                                    int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                    cterp_cache_progress_fn progress, void *user,
                                    cterp_cache_info *info, int64_t *resumed_from);
// Reads and checks the header of a cache directory.
cterp_status cterp_act_cache_info_read(const char *dir, cterp_cache_info *info);
// A source over a cache: the mixing buffer of `c` (buffer_rows, seed) over the rows, wrapping at
// the end. Only buffer_rows and seed of c are used. The rows are read (pread, never mapped) into
// the buffer as it refills: memory is buffer_rows rows, whatever the cache's size. Opening it
// reads the rows once (up to 64 MiB, sampled above) for the resume fingerprint.
cterp_status cterp_act_source_cache(cterp_act_source *src, const char *dir,
                                    const cterp_store_config *c, int64_t train_batch);

// A source of (input, target) pairs for a transcoder from two caches of one run (cterp cache
// --hooks IN,OUT, or cterp_act_cache_write_hooks): dir_in's rows (d_in) and dir_out's (d_out),
// each mixed as cterp_act_source_cache mixes it with c's buffer_rows and seed, so row i of both
// is the same token. The caches must hold the same tokens (tokens.bin byte for byte), rows,
// windows, context size, dataset and model, and differ in hook: an error names the field
// otherwise. Resume: dir_in's state plus a word naming dir_out's hook and width (an other
// target cache is refused); the target replays from its start to the same row.
cterp_status cterp_act_pair_cache(cterp_act_source *src, const char *dir_in, const char *dir_out,
                                  const cterp_store_config *c, int64_t train_batch);

#ifdef __cplusplus
}
#endif
#endif
