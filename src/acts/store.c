// The activation store: a cterp_act_source running the model over a dataset (acts_impl.h's row
// stream) into a mixing buffer of rows (buffer_rows x D floats), served in shuffled order.
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acts/acts_impl.h"
#include "core/dist.h"
#include "core/file.h"
#include "core/hash.h"

typedef struct {
    act_stream st;
    mixer mx;
    acts_fingerprint fp;
    float *buf; // (cap, D) rows by slot
    int64_t D;
    void (*progress)(int64_t rows, int64_t total, double seconds, void *user);
    void *progress_user;
    // overlap: the producer thread computes the next refill's rows (half of the buffer, in stream
    // order) into stage while the consumer serves; a refill then copies them into its slots.
    // Only the producer touches st while it runs (joined before anything else reads st).
    int overlap, running, producer_threads;
    int64_t run_rows; // rows the run takes (0: unknown): no prefetch of a refill it will not reach
    _Atomic int64_t prod_rows; // rows of the running job done so far (for the consumer's progress)
    _Atomic int prod_done;
    double prod_t0;
    pthread_t th;
    float *stage;      // (mx.half, D)
    int64_t staged;    // rows the running or finished job makes
    // what decides whether overlapping pays: the model's rows/s with every thread (the last fill
    // made on demand), and the trainer's rows/s between two fills (served rows over the time
    // from one fill's return to the next fill's call)
    double model_rate, train_rate, t_ready;
    int64_t served_ready;
    cterp_status stage_err;
    char stage_msg[512];
} store;

// n rows of the stream into dst (n x D), in order, reporting progress.
static cterp_status produce(store *s, float *dst, const int64_t *slots, int64_t n, int report) {
    const double t0 = time_now();
    double next_report = t0 + 1.0;
    if (report) s->progress(0, n, 0.0, s->progress_user);
    for (int64_t i = 0; i < n; i++) {
        const float *row;
        int eof;
        cterp_status e = stream_next(&s->st, &row, NULL, 0, &eof);
        if (e) return e;
        memcpy(dst + (slots ? slots[i] : i) * s->D, row, (size_t)s->D * sizeof(float));
        atomic_store_explicit(&s->prod_rows, i + 1, memory_order_relaxed);
        if (report && (i & 63) == 63) {
            const double now = time_now();
            if (now >= next_report) s->progress(i + 1, n, now - t0, s->progress_user), next_report = now + 1.0;
        }
    }
    if (report) s->progress(n, n, time_now() - t0, s->progress_user);
    return CTERP_OK;
}

static void *producer(void *ctx) {
    store *s = ctx;
    omp_set_num_threads(s->producer_threads); // this thread's own teams (and OpenBLAS's calls from it)
    s->stage_err = produce(s, s->stage, NULL, s->staged, 0);
    if (s->stage_err) snprintf(s->stage_msg, sizeof s->stage_msg, "%s", cterp_last_error());
    atomic_store(&s->prod_done, 1);
    return NULL;
}

// Waits for the running job. A wait of over a second reports the job's progress (on this thread:
// the callback never runs on the producer's).
static void wait_producer(store *s) {
    if (!s->running) return;
    const double w0 = time_now();
    int reported = 0;
    for (double next = w0 + 1.0; s->progress && !atomic_load(&s->prod_done);) {
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
        const double now = time_now();
        if (now >= next) {
            s->progress(atomic_load_explicit(&s->prod_rows, memory_order_relaxed), s->staged, now - s->prod_t0,
                        s->progress_user);
            reported = 1, next = now + 1.0;
        }
    }
    pthread_join(s->th, NULL);
    s->running = 0;
    if (reported) s->progress(s->staged, s->staged, time_now() - s->prod_t0, s->progress_user);
}

// Starts computing the next refill (a half), unless the run ends before it (the buffer served
// whole, or the half now in the buffer covers the rest), or the trainer takes rows faster than
// the model makes them with every thread: then a producer on half the threads only slows the
// model (measured, Llama-3.2-1B shape: 73 vs 153 tokens/s end to end) and the refill is made on
// demand with all of them. Both rates are measured on the fills before (made on demand), so the
// first refill is never overlapped. Without a thread a refill is computed when it comes; either
// way the rows and their order are the same.
static void start_producer(store *s) {
    if (!s->overlap || s->mx.half == s->mx.cap) return;
    if (s->run_rows > 0 && s->mx.served + s->mx.half >= s->run_rows) return;
    if (s->overlap == 1 && (!(s->model_rate > 0 && s->train_rate > 0) || s->train_rate > s->model_rate))
        return;
    if (!s->stage && !(s->stage = malloc((size_t)(s->mx.half * s->D) * sizeof(float)))) return;
    s->staged = s->mx.half, s->stage_err = CTERP_OK;
    atomic_store(&s->prod_rows, 0), atomic_store(&s->prod_done, 0);
    s->prod_t0 = time_now();
    s->running = pthread_create(&s->th, NULL, producer, s) == 0;
    if (!s->running) s->staged = 0;
}

// The model runs here, a forward of model_batch windows whenever the stream's rows run out: on a
// large model filling the buffer takes minutes, so it says how far it is. With overlap, a refill
// takes the rows the producer computed meanwhile (the same rows: the stream's next ones).
static cterp_status store_fill(void *ctx, const int64_t *slots, int64_t n) {
    store *s = ctx;
    cterp_status e;
    double now = time_now();
    if (s->t_ready > 0 && now > s->t_ready && !s->running)
        s->train_rate = (double)(s->mx.served - s->served_ready) / (now - s->t_ready);
    wait_producer(s);
    if (s->stage_err) { // the producer's error, now this thread's
        e = cterp_error(s->stage_err, "%s", s->stage_msg);
        s->stage_err = CTERP_OK, s->staged = 0;
        return e;
    }
    // the staged rows are the stream's next ones: they take the first slots, the rest (the
    // second, whole-buffer fill of a warm start is larger than a stage) come from the model now
    const int64_t k = s->staged < n ? s->staged : n;
    for (int64_t i = 0; i < k; i++)
        memcpy(s->buf + slots[i] * s->D, s->stage + i * s->D, (size_t)s->D * sizeof(float));
    if (k < n) {
        const double t0 = time_now();
        if ((e = produce(s, s->buf, slots + k, n - k, s->progress != NULL))) return e;
        const double dt = time_now() - t0;
        if (n - k >= s->mx.half / 2 && dt > 0) s->model_rate = (double)(n - k) / dt;
    }
    s->staged = 0;
    start_producer(s);
    s->t_ready = time_now(), s->served_ready = s->mx.served;
    return CTERP_OK;
}

// Serves B rows, writing rows [lo, hi) of them into x (a data-parallel rank's part; all of them
// for next). Under MPI every rank's buffer holds the same rows (stream.c), so the parts tile the
// batch a single process serves.
static cterp_status store_next_part(void *ctx, float *x, int64_t B, int64_t lo, int64_t hi) {
    store *s = ctx;
    for (int64_t b = 0; b < B; b++) {
        int64_t slot;
        cterp_status e = mixer_next(&s->mx, &slot, store_fill, s);
        if (e) return e;
        if (b >= lo && b < hi) memcpy(x + (b - lo) * s->D, s->buf + slot * s->D, (size_t)s->D * sizeof(float));
    }
    return CTERP_OK;
}

static cterp_status store_next(void *ctx, float *x, int64_t B) { return store_next_part(ctx, x, B, 0, B); }

static int store_get_state(void *ctx, uint64_t *st, int cap) {
    store *s = ctx;
    return acts_get_state(&s->mx, &s->fp, st, cap);
}

// Replays: rewind the dataset and the buffer, then serve (and drop) the rows served before.
static cterp_status store_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    store *s = ctx;
    uint64_t served;
    cterp_status ce =
        acts_check_state(&s->mx, &s->fp, st, n, max_rows, "activation store", &served);
    if (ce) return ce;
    wait_producer(s); // its rows (or error) belonged to the state being replaced
    s->staged = 0, s->stage_err = CTERP_OK;
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
    wait_producer(s);
    free(s->stage);
    stream_close(&s->st);
    mixer_free(&s->mx);
    free(s->buf);
    free(s);
}

// What defines the row stream, for the resume check: computed here, once, so that reading the
// files can fail with an error (get_state cannot).
static cterp_status store_fingerprint(store *s, cterp_model *m, const cterp_store_config *c) {
    acts_fingerprint *fp = &s->fp;
    cterp_dataset *d = cterp_windows_dataset(s->st.w);
    int64_t data_bytes, model_bytes;
    cterp_status e = cterp_dataset_fingerprint(d, &fp->data_hash, &data_bytes);
    if (e) return e;
    fp->kind = ACTS_LIVE;
    fp->data_bytes = (uint64_t)data_bytes;
    fp->model_hash = cterp_model_fingerprint(m, &model_bytes);
    fp->model_bytes = (uint64_t)model_bytes;
    fp->hook_hash = hash_str(0, s->st.hook);
    const cterp_window_config *w = &c->windows;
    fp->context_size = (uint64_t)w->context_size;
    fp->flags = (uint64_t)(w->prepend_bos != 0) | (uint64_t)(w->concat != 0) << 1 |
                (uint64_t)(w->exclude_special != 0) << 2;
    // the resolved id: --separator bos and --separator <BOS id> give the same rows; without
    // concatenation no separator is used, whatever it is set to
    fp->separator = w->concat ? (uint64_t)(int64_t)cterp_windows_separator(s->st.w) : (uint64_t)(int64_t)-1;
    fp->model_batch = (uint64_t)c->model_batch;
    fp->data_path = cterp_dataset_path(d);
    fp->model_path = cterp_model_path(m);
    fp->hook = s->st.hook;
    return CTERP_OK;
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
    if ((e = stream_distribute(&s->st, 1))) { // under MPI: each rank runs 1/P of the forwards
        stream_close(&s->st);
        free(s);
        return e;
    }
    s->D = s->st.D;
    if ((e = store_fingerprint(s, m, c))) {
        store_free(s);
        return e;
    }
    if ((e = mixer_init(&s->mx, cap, c->seed))) {
        store_free(s);
        return e;
    }
    mixer_serve_whole_if_run_fits(&s->mx, c);
    s->progress = c->fill_progress, s->progress_user = c->fill_progress_user;
    s->overlap = c->overlap, s->run_rows = c->run_rows;
    // under MPI the model's forward is a collective of every rank (stream.c): it stays on the
    // thread that calls the other collectives, in the same order on every rank
    if (dist_size() > 1) s->overlap = 0;
    // half the threads (at least one) for the model beside the trainer's own: measured on 2 cores,
    // 1 + 2 threads gave 5.2-5.4 s against 5.6-6.0 s without overlap, 2 + 2 gave 21-24 s
    // (docs/pipeline.md)
    s->producer_threads = omp_get_max_threads() / 2 > 1 ? omp_get_max_threads() / 2 : 1;
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
    src->next_part = store_next_part;
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
    store *s = src->ctx;
    wait_producer(s); // st is the producer's while it runs (an error of its comes with the next refill)
    st->rows_produced = s->st.produced;
    st->rows_served = s->mx.served;
    st->windows = s->st.windows;
    st->positions = s->st.windows * s->st.T;
    st->epochs = s->st.epochs;
    st->buffer_rows = s->mx.cap;
    return CTERP_OK;
}
