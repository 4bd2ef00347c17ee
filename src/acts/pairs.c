// A transcoder's (input, target) pairs from two caches of one run (cterp cache --hooks IN,OUT):
// two cache sources with the same mixing buffer and seed serve the same row indices in the same
// order, and caches written from one run hold the same tokens row for row, so reading both in
// step pairs each input row with its target. Built on the public cache source only.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/hash.h"
#include "cterp/acts.h"

typedef struct {
    cterp_act_source in, out;
    char *dir_out;
    cterp_store_config c;
    int64_t train_batch;
    uint64_t out_id; // d_out and the output hook's name, in the resume state beside in's
} pair_cache;

static cterp_status pc_next(void *ctx, float *x, int64_t B) {
    (void)ctx, (void)x, (void)B;
    return cterp_error(CTERP_EINVAL, "activation cache: a pair source serves (input, target) rows "
                       "for a transcoder: read it with next_target");
}

static cterp_status pc_next_target(void *ctx, float *x, float *y, int64_t B) {
    pair_cache *p = ctx;
    cterp_status s = p->in.next(p->in.ctx, x, B);
    return s ? s : p->out.next(p->out.ctx, y, B);
}

// The input cache's state (its fingerprint and the rows served) and one word naming the target.
static int pc_get_state(void *ctx, uint64_t *st, int cap) {
    pair_cache *p = ctx;
    if (cap < 2) return 0;
    int n = p->in.get_state(p->in.ctx, st, cap - 1);
    if (n <= 0) return n;
    st[n] = p->out_id;
    return n + 1;
}

// Restores the input's state, then the target's: its own state words (its fingerprint; the same
// seed and buffer as the input's) with the input's count of rows served, so the target source
// replays its mixing buffer over row indices and reads only the rows its slots hold, as the
// input does (not every row served so far).
static cterp_status pc_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    pair_cache *p = ctx;
    if (n < 2 || st[n - 1] != p->out_id)
        return cterp_error(CTERP_EINVAL, "activation cache pair: the checkpoint's targets came from "
                           "another output cache (hook or width); resume with the same --acts-out");
    cterp_status s = p->in.set_state(p->in.ctx, st, n - 1, max_rows);
    if (s) return s;
    uint64_t out_st[64];
    int no = p->out.get_state(p->out.ctx, out_st, 64);
    if (no != n - 1 || no < 2)
        return cterp_error(CTERP_EINVAL, "activation cache pair: the target cache's state has %d "
                           "words, the input's %d", no, n - 1);
    out_st[1] = st[1]; // rows served (acts_get_state's word 1)
    return p->out.set_state(p->out.ctx, out_st, no, max_rows);
}

static void pc_free(void *ctx) {
    pair_cache *p = ctx;
    if (!p) return;
    cterp_act_source_free(&p->in);
    cterp_act_source_free(&p->out);
    free(p->dir_out);
    free(p);
}

// *same = 1 when both caches' tokens.bin hold the same bytes, compared in 1 MiB pieces (4 bytes
// a row: a 1e9-row cache's would not fit in memory whole).
static cterp_status same_tokens(const char *dir_in, const char *dir_out, int *same) {
    char *a = file_join(dir_in, "tokens.bin"), *b = file_join(dir_out, "tokens.bin");
    cterp_status s = a && b ? file_same(a, b, 0, same) : cterp_error(CTERP_ENOMEM, "out of memory");
    free(a), free(b);
    return s;
}

cterp_status cterp_act_pair_cache(cterp_act_source *src, const char *dir_in, const char *dir_out,
                                  const cterp_store_config *c, int64_t train_batch) {
    memset(src, 0, sizeof *src);
    cterp_cache_info ii, io;
    cterp_status s = cterp_act_cache_info_read(dir_in, &ii);
    if (!s) s = cterp_act_cache_info_read(dir_out, &io);
    if (s) return s;
    if (!strcmp(ii.hook, io.hook))
        return cterp_error(CTERP_EINVAL, "activation cache pair: %s and %s are both caches of %s "
                           "(a transcoder maps one hook to another)", dir_in, dir_out, ii.hook);
    const char *diff = ii.count != io.count                   ? "row count"
                       : ii.windows != io.windows             ? "windows"
                       : ii.context_size != io.context_size   ? "context_size"
                       : strcmp(ii.dataset, io.dataset)       ? "dataset"
                       : strcmp(ii.model, io.model)           ? "model"
                                                              : NULL;
    int same = 0;
    if (!diff && (s = same_tokens(dir_in, dir_out, &same))) return s;
    if (!diff && !same) diff = "tokens (tokens.bin)";
    if (diff)
        return cterp_error(CTERP_EINVAL, "activation cache pair: %s (%s, %lld rows) and %s (%s, "
                           "%lld rows) differ in %s: the input and target caches must come from "
                           "one run (cterp cache --hooks IN,OUT) to hold the same tokens row for row",
                           dir_in, ii.hook, (long long)ii.count, dir_out, io.hook,
                           (long long)io.count, diff);
    pair_cache *p = calloc(1, sizeof *p);
    if (!p || !(p->dir_out = strdup(dir_out))) {
        free(p);
        return cterp_error(CTERP_ENOMEM, "out of memory");
    }
    p->c = *c, p->train_batch = train_batch;
    p->out_id = hash_str(hash_u64(0, (uint64_t)io.d_in), io.hook);
    if ((s = cterp_act_source_cache(&p->in, dir_in, c, train_batch)) ||
        (s = cterp_act_source_cache(&p->out, dir_out, c, train_batch))) {
        pc_free(p);
        return s;
    }
    src->d_in = p->in.d_in;
    src->d_out = p->out.d_in;
    src->ctx = p;
    src->next = pc_next;
    src->next_target = pc_next_target;
    src->get_state = pc_get_state;
    src->set_state = pc_set_state;
    src->free = pc_free;
    snprintf(src->description, sizeof src->description, "%.100s -> %.100s (caches)", ii.hook, io.hook);
    return CTERP_OK;
}
