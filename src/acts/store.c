// The activation store: a cterp_act_source running the model over a dataset (acts_impl.h's row
// stream) into a mixing buffer of rows (buffer_rows x D floats), served in shuffled order.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acts/acts_impl.h"

typedef struct {
    act_stream st;
    mixer mx;
    float *buf; // (cap, D) rows by slot
    int64_t D;
} store;

static cterp_status store_fill(void *ctx, const int64_t *slots, int64_t n) {
    store *s = ctx;
    for (int64_t i = 0; i < n; i++) {
        const float *row;
        int eof;
        cterp_status e = stream_next(&s->st, &row, NULL, 0, &eof);
        if (e) return e;
        memcpy(s->buf + slots[i] * s->D, row, (size_t)s->D * sizeof(float));
    }
    return CTERP_OK;
}

static cterp_status store_next(void *ctx, float *x, int64_t B) {
    store *s = ctx;
    for (int64_t b = 0; b < B; b++) {
        int64_t slot;
        cterp_status e = mixer_next(&s->mx, &slot, store_fill, s);
        if (e) return e;
        memcpy(x + b * s->D, s->buf + slot * s->D, (size_t)s->D * sizeof(float));
    }
    return CTERP_OK;
}

static int store_get_state(void *ctx, uint64_t *st, int cap) {
    return mixer_get_state(&((store *)ctx)->mx, st, cap);
}

// Replays: rewind the dataset and the buffer, then serve (and drop) the rows served before.
static cterp_status store_set_state(void *ctx, const uint64_t *st, int n) {
    store *s = ctx;
    uint64_t served;
    cterp_status ce = mixer_check_state(&s->mx, st, n, "activation store", &served);
    if (ce) return ce;
    cterp_status e = stream_rewind(&s->st);
    if (e) return e;
    mixer_reset(&s->mx);
    for (uint64_t i = 0; i < served; i++) {
        int64_t slot;
        if ((e = mixer_next(&s->mx, &slot, store_fill, s))) return e;
    }
    return CTERP_OK;
}

static void store_free(void *ctx) {
    store *s = ctx;
    stream_close(&s->st);
    mixer_free(&s->mx);
    free(s->buf);
    free(s);
}

cterp_status cterp_act_store(cterp_act_source *src, cterp_model *m, const char *hook,
                             const char *dataset, const cterp_store_config *c, int64_t train_batch) {
    memset(src, 0, sizeof *src);
    cterp_store_config cd;
    if (!c) cterp_store_config_default(&cd), c = &cd;
    int64_t cap;
    cterp_status e = cterp_store_buffer_rows(c, train_batch, &cap);
    if (e) return e;
    store *s = calloc(1, sizeof *s);
    if (!s) return cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    if ((e = stream_open(&s->st, m, hook, dataset, c))) {
        free(s);
        return e;
    }
    s->D = s->st.D;
    if ((e = mixer_init(&s->mx, cap, c->seed))) {
        store_free(s);
        return e;
    }
    if ((uint64_t)cap > SIZE_MAX / sizeof(float) / (uint64_t)s->D ||
        !(s->buf = malloc((size_t)cap * (size_t)s->D * sizeof(float)))) {
        long long D = (long long)s->D;
        store_free(s);
        return cterp_error(CTERP_ENOMEM, "activation store: cannot allocate the mixing buffer of %lld "
                           "rows x %lld (lower buffer_rows)", (long long)cap, D);
    }
    src->d_in = s->D;
    src->ctx = s;
    src->next = store_next;
    src->get_state = store_get_state;
    src->set_state = store_set_state;
    src->free = store_free;
    snprintf(src->description, sizeof src->description, "%s over %s (context %d, buffer %lld rows)",
             hook, dataset, c->windows.context_size, (long long)cap);
    return CTERP_OK;
}

// The cache reader registers its own functions; stats dispatch on them (cache.c).
cterp_status cache_source_stats(const cterp_act_source *src, cterp_store_stats *st);

cterp_status cterp_act_source_stats(const cterp_act_source *src, cterp_store_stats *st) {
    memset(st, 0, sizeof *st);
    if (src->next != store_next) return cache_source_stats(src, st);
    const store *s = src->ctx;
    st->rows_produced = s->st.produced;
    st->rows_served = s->mx.served;
    st->windows = s->st.windows;
    st->positions = s->st.windows * s->st.T;
    st->epochs = s->st.epochs;
    st->buffer_rows = s->mx.cap;
    return CTERP_OK;
}
