// The activation store: the model run over a dataset (acts_impl.h's row stream, one forward for
// every hook) into a mixing buffer of rows (buffer_rows x D floats per hook), served in shuffled
// order: whole (cterp_act_store's source, cterp_multi_store_next: every hook, the same tokens)
// or through one source per hook (cterp_multi_store_source), each in the single-hook order.
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

// A view: one hook's rows for its own consumer (a trainer), in the order of the shared mixing
// buffer. The mixer serves one sequence of slots; the view at the front draws the next slot and
// copies that row of every other open view's hook into the view's queue, so a view behind takes
// exactly the rows it would have drawn itself (the sequence of a single-hook store).
typedef struct {
    int open;
    int64_t pos;  // rows this view has taken (its rows_served); queue length = mx.served - pos
    float *q;     // (qcap, D) ring of rows drawn by views ahead, not yet taken by this one
    int64_t qcap, qhead, qlen;
} view;

struct cterp_multi_store {
    act_stream st;
    mixer mx;
    acts_fingerprint *fp; // (n_hooks): the same but for the hook's name
    float **buf;          // (n_hooks) (cap, D[h]) rows by slot
    int n;                // hooks
    int mode;             // 0: nothing served yet; 1: served whole (next, all hooks); 2: by views
    view *views;          // (n)
    int replay;           // a view's set_state is pending: rewind and redraw before serving
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
    float **stage;     // (n_hooks) (mx.half, D[h])
    int64_t staged;    // rows the running or finished job makes
    // what decides whether overlapping pays: the model's rows/s with every thread (the last fill
    // made on demand), and the trainer's rows/s between two fills (served rows over the time
    // from one fill's return to the next fill's call)
    double model_rate, train_rate, t_ready;
    int64_t served_ready;
    cterp_status stage_err;
    char stage_msg[512];
    char desc[160]; // "over DATASET (context T, buffer R rows)", for the sources' descriptions
};
typedef struct cterp_multi_store store;

// n rows of the stream into dst[h] (n x D[h]) at slots (or in order), reporting progress.
static cterp_status produce(store *s, float **dst, const int64_t *slots, int64_t n, int report) {
    const double t0 = time_now();
    double next_report = t0 + 1.0;
    if (report) s->progress(0, n, 0.0, s->progress_user);
    const float *row1, **row = s->n == 1 ? &row1 : malloc((size_t)s->n * sizeof *row);
    if (!row) return cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    cterp_status e = CTERP_OK;
    for (int64_t i = 0; i < n; i++) {
        int eof;
        if ((e = stream_next(&s->st, row, NULL, 0, &eof))) break;
        const int64_t at = slots ? slots[i] : i;
        for (int h = 0; h < s->n; h++)
            memcpy(dst[h] + at * s->st.D[h], row[h], (size_t)s->st.D[h] * sizeof(float));
        atomic_store_explicit(&s->prod_rows, i + 1, memory_order_relaxed);
        if (report && (i & 63) == 63) {
            const double now = time_now();
            if (now >= next_report) s->progress(i + 1, n, now - t0, s->progress_user), next_report = now + 1.0;
        }
    }
    if (row != &row1) free(row);
    if (!e && report) s->progress(n, n, time_now() - t0, s->progress_user);
    return e;
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
    if (!s->stage) {
        if (!(s->stage = calloc((size_t)s->n, sizeof *s->stage))) return;
        for (int h = 0; h < s->n; h++)
            if (!(s->stage[h] = malloc((size_t)(s->mx.half * s->st.D[h]) * sizeof(float)))) {
                for (int j = 0; j <= h; j++) free(s->stage[j]);
                free(s->stage), s->stage = NULL;
                return;
            }
    }
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
    for (int h = 0; h < s->n && k > 0; h++) {
        const int64_t D = s->st.D[h];
        for (int64_t i = 0; i < k; i++)
            memcpy(s->buf[h] + slots[i] * D, s->stage[h] + i * D, (size_t)D * sizeof(float));
    }
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

// B rows of every hook for the same tokens, writing rows [lo, hi) of them: x[h] is (hi - lo,
// D[h]) (a data-parallel rank's part; all of them, lo 0 and hi B, in one process). Under MPI
// every rank's buffer holds the same rows (stream.c), so the parts tile the batch a single
// process serves.
static cterp_status draw_all(store *s, float *const *x, int64_t B, int64_t lo, int64_t hi) {
    for (int64_t b = 0; b < B; b++) {
        int64_t slot;
        cterp_status e = mixer_next(&s->mx, &slot, store_fill, s);
        if (e) return e;
        if (b < lo || b >= hi) continue;
        for (int h = 0; h < s->n; h++)
            memcpy(x[h] + (b - lo) * s->st.D[h], s->buf[h] + slot * s->st.D[h], (size_t)s->st.D[h] * sizeof(float));
    }
    return CTERP_OK;
}

static cterp_status store_next_part(void *ctx, float *x, int64_t B, int64_t lo, int64_t hi) {
    store *s = ctx;
    s->mode = 1;
    return draw_all(s, &x, B, lo, hi);
}

static cterp_status store_next(void *ctx, float *x, int64_t B) { return store_next_part(ctx, x, B, 0, B); }

static int store_get_state(void *ctx, uint64_t *st, int cap) {
    store *s = ctx;
    return acts_get_state(&s->mx, &s->fp[0], st, cap);
}

// Rewinds the dataset and the buffer (the producer's rows, or error, belonged to what is replaced).
static cterp_status store_rewind(store *s) {
    wait_producer(s);
    s->staged = 0, s->stage_err = CTERP_OK;
    cterp_status e = stream_rewind(&s->st);
    if (e) return e;
    mixer_reset(&s->mx);
    return CTERP_OK;
}

// Replays: rewind the dataset and the buffer, then serve (and drop) the rows served before.
static cterp_status store_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    store *s = ctx;
    uint64_t served;
    cterp_status e = acts_check_state(&s->mx, &s->fp[0], st, n, max_rows, "activation store", &served);
    if (e || (e = store_rewind(s))) return e;
    for (uint64_t i = 0; i < served; i++) {
        int64_t slot;
        if ((e = mixer_next(&s->mx, &slot, store_fill, s))) return e;
    }
    return CTERP_OK;
}

static void store_free(void *ctx) {
    store *s = ctx;
    if (!s) return;
    wait_producer(s);
    for (int h = 0; h < s->n; h++) {
        if (s->stage) free(s->stage[h]);
        if (s->buf) free(s->buf[h]);
        if (s->views) free(s->views[h].q);
    }
    free(s->stage), free(s->buf), free(s->views), free(s->fp);
    stream_close(&s->st);
    mixer_free(&s->mx);
    free(s);
}

// What defines the row stream, for the resume check: computed here, once, so that reading the
// files can fail with an error (get_state cannot). One per hook: they differ in the hook's name.
static cterp_status store_fingerprint(store *s, cterp_model *m, const cterp_store_config *c) {
    acts_fingerprint fp = {0};
    cterp_dataset *d = cterp_windows_dataset(s->st.w);
    int64_t data_bytes, model_bytes;
    cterp_status e = cterp_dataset_fingerprint(d, &fp.data_hash, &data_bytes);
    if (e) return e;
    fp.kind = ACTS_LIVE;
    fp.data_bytes = (uint64_t)data_bytes;
    fp.model_hash = cterp_model_fingerprint(m, &model_bytes);
    fp.model_bytes = (uint64_t)model_bytes;
    const cterp_window_config *w = &c->windows;
    fp.context_size = (uint64_t)w->context_size;
    fp.flags = (uint64_t)(w->prepend_bos != 0) | (uint64_t)(w->concat != 0) << 1 |
               (uint64_t)(w->exclude_special != 0) << 2;
    // the resolved id: --separator bos and --separator <BOS id> give the same rows; without
    // concatenation no separator is used, whatever it is set to
    fp.separator = w->concat ? (uint64_t)(int64_t)cterp_windows_separator(s->st.w) : (uint64_t)(int64_t)-1;
    fp.model_batch = (uint64_t)c->model_batch;
    fp.data_path = cterp_dataset_path(d);
    fp.model_path = cterp_model_path(m);
    for (int h = 0; h < s->n; h++) {
        s->fp[h] = fp;
        s->fp[h].hook_hash = hash_str(0, s->st.hook[h]);
        s->fp[h].hook = s->st.hook[h];
    }
    return CTERP_OK;
}

cterp_status cterp_multi_store_open(cterp_multi_store **out, cterp_model *m, const char *const *hooks,
                                    int n_hooks, const char *dataset, const cterp_store_config *c,
                                    int64_t train_batch) {
    *out = NULL;
    cterp_store_config cd;
    if (!c) cterp_store_config_default(&cd), c = &cd;
    int64_t cap;
    cterp_status e = cterp_store_buffer_rows(c, train_batch, &cap);
    if (e) return e;
    store *s = calloc(1, sizeof *s);
    if (!s) return cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    if ((e = stream_open(&s->st, m, hooks, n_hooks, dataset, c))) {
        free(s);
        return e;
    }
    // under MPI: each rank runs 1/P of the forwards, every rank gets all the rows
    if ((e = stream_distribute(&s->st, 1))) {
        stream_close(&s->st);
        free(s);
        return e;
    }
    s->n = n_hooks;
    s->fp = calloc((size_t)s->n, sizeof *s->fp);
    s->buf = calloc((size_t)s->n, sizeof *s->buf);
    s->views = calloc((size_t)s->n, sizeof *s->views);
    if (!s->fp || !s->buf || !s->views) e = cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    if (!e) e = store_fingerprint(s, m, c);
    if (!e) e = mixer_init(&s->mx, cap, c->seed);
    if (e) {
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
    for (int h = 0; h < s->n; h++) {
        const int64_t D = s->st.D[h];
        if ((uint64_t)cap > SIZE_MAX / sizeof(float) / (uint64_t)D ||
            !(s->buf[h] = malloc((size_t)cap * (size_t)D * sizeof(float)))) {
            char hk[256];
            snprintf(hk, sizeof hk, "%s", s->st.hook[h]);
            store_free(s);
            return cterp_error(CTERP_ENOMEM, "activation store: cannot allocate the mixing buffer of %lld "
                               "rows x %lld for %s (lower buffer_rows)", (long long)cap, (long long)D, hk);
        }
    }
    snprintf(s->desc, sizeof s->desc, "over %.100s (context %d, buffer %lld rows)", dataset,
             c->windows.context_size, (long long)cap);
    *out = s;
    return CTERP_OK;
}

void cterp_multi_store_free(cterp_multi_store *s) { store_free(s); }

int cterp_multi_store_n_hooks(const cterp_multi_store *s) { return s->n; }
const char *cterp_multi_store_hook(const cterp_multi_store *s, int h) {
    return h >= 0 && h < s->n ? s->st.hook[h] : NULL;
}
int64_t cterp_multi_store_d_in(const cterp_multi_store *s, int h) {
    return h >= 0 && h < s->n ? s->st.D[h] : 0;
}

cterp_status cterp_multi_store_next(cterp_multi_store *s, float *const *x, int64_t B) {
    if (s->mode == 2)
        return cterp_error(CTERP_EINVAL, "activation store: cterp_multi_store_next on a store read "
                           "through per-hook sources (use one or the other)");
    s->mode = 1;
    return draw_all(s, x, B, 0, B);
}

// ---- per-hook views --------------------------------------------------------------------------

typedef struct {
    store *s;
    int h;
} view_ctx;

// Appends row (D floats) to view v's queue, growing the ring.
static cterp_status queue_push(view *v, const float *row, int64_t D) {
    if (v->qlen == v->qcap) {
        int64_t nc = v->qcap ? 2 * v->qcap : 256;
        if ((uint64_t)nc > SIZE_MAX / sizeof(float) / (uint64_t)D)
            return cterp_error(CTERP_ENOMEM, "activation store: a view's queue overflows");
        float *q = malloc((size_t)nc * (size_t)D * sizeof(float));
        if (!q)
            return cterp_error(CTERP_ENOMEM, "activation store: out of memory queueing %lld rows for a "
                               "hook read behind the others (read the per-hook sources in step)",
                               (long long)nc);
        for (int64_t i = 0; i < v->qlen; i++) // unwrap the ring
            memcpy(q + i * D, v->q + ((v->qhead + i) % v->qcap) * D, (size_t)D * sizeof(float));
        free(v->q);
        v->q = q, v->qcap = nc, v->qhead = 0;
    }
    memcpy(v->q + ((v->qhead + v->qlen) % v->qcap) * D, row, (size_t)D * sizeof(float));
    v->qlen++;
    return CTERP_OK;
}

// Redraws the shared sequence up to the furthest view after a set_state: every open view's queue
// then holds the rows from its own position on (a view's position is what it restored, or has
// taken since).
static cterp_status views_replay(store *s) {
    cterp_status e = store_rewind(s);
    if (e) return e;
    int64_t G = 0;
    for (int h = 0; h < s->n; h++) {
        s->views[h].qlen = s->views[h].qhead = 0;
        if (s->views[h].open && s->views[h].pos > G) G = s->views[h].pos;
    }
    for (int64_t i = 0; i < G; i++) {
        int64_t slot;
        if ((e = mixer_next(&s->mx, &slot, store_fill, s))) return e;
        for (int h = 0; h < s->n; h++)
            if (s->views[h].open && i >= s->views[h].pos &&
                (e = queue_push(&s->views[h], s->buf[h] + slot * s->st.D[h], s->st.D[h])))
                return e;
    }
    s->replay = 0;
    return CTERP_OK;
}

// Serves B rows, writing rows [lo, hi) of them into x (a data-parallel rank's part, as
// store_next_part; all of them for next). The queues hold whole rows: every rank's are the same.
static cterp_status view_next_part(void *ctx, float *x, int64_t B, int64_t lo, int64_t hi) {
    view_ctx *c = ctx;
    store *s = c->s;
    view *v = &s->views[c->h];
    const int64_t D = s->st.D[c->h];
    cterp_status e;
    if (s->replay && (e = views_replay(s))) return e;
    for (int64_t b = 0; b < B; b++) {
        if (v->qlen > 0) { // drawn by a view ahead
            if (b >= lo && b < hi) memcpy(x + (b - lo) * D, v->q + v->qhead * D, (size_t)D * sizeof(float));
            v->qhead = (v->qhead + 1) % v->qcap, v->qlen--;
        } else { // this view is at the front: draw, and queue the row for every other open view
            int64_t slot;
            if ((e = mixer_next(&s->mx, &slot, store_fill, s))) return e;
            if (b >= lo && b < hi) memcpy(x + (b - lo) * D, s->buf[c->h] + slot * D, (size_t)D * sizeof(float));
            for (int h = 0; h < s->n; h++)
                if (h != c->h && s->views[h].open &&
                    (e = queue_push(&s->views[h], s->buf[h] + slot * s->st.D[h], s->st.D[h])))
                    return e;
        }
        v->pos++;
    }
    return CTERP_OK;
}

static cterp_status view_next(void *ctx, float *x, int64_t B) { return view_next_part(ctx, x, B, 0, B); }

static int view_get_state(void *ctx, uint64_t *st, int cap) {
    view_ctx *c = ctx;
    mixer x = c->s->mx; // the shared mixer at this view's position
    x.served = c->s->views[c->h].pos;
    return acts_get_state(&x, &c->s->fp[c->h], st, cap);
}

// The same state as a single-hook store's: a checkpoint of either resumes with either. The replay
// waits for the next read, so that restoring every view costs one replay.
static cterp_status view_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    view_ctx *c = ctx;
    uint64_t served;
    cterp_status e = acts_check_state(&c->s->mx, &c->s->fp[c->h], st, n, max_rows, "activation store", &served);
    if (e) return e;
    c->s->views[c->h].pos = (int64_t)served;
    c->s->replay = 1;
    return CTERP_OK;
}

static void view_free(void *ctx) {
    view_ctx *c = ctx;
    view *v = &c->s->views[c->h];
    free(v->q);
    memset(v, 0, sizeof *v);
    free(c);
}

cterp_status cterp_multi_store_source(cterp_multi_store *s, int h, cterp_act_source *src) {
    memset(src, 0, sizeof *src);
    if (h < 0 || h >= s->n)
        return cterp_error(CTERP_EINVAL, "activation store: hook index %d outside [0, %d)", h, s->n);
    if (s->views[h].open)
        return cterp_error(CTERP_EINVAL, "activation store: %s already has a source", s->st.hook[h]);
    if (s->mode == 1 || s->mx.served > 0)
        return cterp_error(CTERP_EINVAL, "activation store: open every per-hook source before reading "
                           "rows (%lld rows already served)", (long long)s->mx.served);
    view_ctx *c = malloc(sizeof *c);
    if (!c) return cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    *c = (view_ctx){s, h};
    s->mode = 2;
    s->views[h] = (view){.open = 1};
    src->d_in = s->st.D[h];
    src->ctx = c;
    src->next = view_next;
    src->next_part = view_next_part;
    src->get_state = view_get_state;
    src->set_state = view_set_state;
    src->free = view_free;
    snprintf(src->description, sizeof src->description, "%.80s %.130s, one forward for %d hooks",
             s->st.hook[h], s->desc, s->n);
    return CTERP_OK;
}

cterp_status cterp_act_store(cterp_act_source *src, cterp_model *m, const char *hook,
                             const char *dataset, const cterp_store_config *c, int64_t train_batch) {
    memset(src, 0, sizeof *src);
    store *s;
    cterp_status e = cterp_multi_store_open(&s, m, &hook, 1, dataset, c, train_batch);
    if (e) return e;
    src->d_in = s->st.D[0];
    src->ctx = s;
    src->next = store_next;
    src->next_part = store_next_part;
    src->get_state = store_get_state;
    src->set_state = store_set_state;
    src->free = store_free;
    snprintf(src->description, sizeof src->description, "%.90s %.150s", hook, s->desc);
    return CTERP_OK;
}

static void fill_stats(store *s, cterp_store_stats *st) {
    wait_producer(s); // st is the producer's while it runs (an error of its comes with the next refill)
    st->rows_produced = s->st.produced;
    st->rows_served = s->mx.served;
    st->windows = s->st.windows;
    st->positions = s->st.windows * s->st.T;
    st->epochs = s->st.epochs;
    st->buffer_rows = s->mx.cap;
    st->forwards = s->st.forwards;
}

cterp_status cterp_multi_store_stats(cterp_multi_store *s, cterp_store_stats *st) {
    memset(st, 0, sizeof *st);
    fill_stats(s, st);
    return CTERP_OK;
}

// The cache reader registers its own functions; stats dispatch on them (cache_read.c).
cterp_status cache_source_stats(const cterp_act_source *src, cterp_store_stats *st);

static cterp_status pair_next_target(void *ctx, float *x, float *y, int64_t B);
static cterp_status concat_next(void *ctx, float *x, int64_t B);

cterp_status cterp_act_source_stats(const cterp_act_source *src, cterp_store_stats *st) {
    memset(st, 0, sizeof *st);
    if (src->next == view_next) { // a per-hook source: the shared store's counters, its own rows
        const view_ctx *c = src->ctx;
        fill_stats(c->s, st);
        st->rows_served = c->s->views[c->h].pos;
        return CTERP_OK;
    }
    if (src->next == concat_next) { // the crosscoder's rows: its store's counters
        fill_stats(*(store **)src->ctx, st);
        return CTERP_OK;
    }
    if (src->next != store_next && src->next_target != pair_next_target)
        return cache_source_stats(src, st);
    fill_stats(src->ctx, st);
    return CTERP_OK;
}

// ---- (input, target) pairs -------------------------------------------------------------------

static cterp_status pair_next(void *ctx, float *x, int64_t B) {
    (void)ctx, (void)x, (void)B;
    return cterp_error(CTERP_EINVAL, "activation store: a pair source serves (input, target) rows "
                       "for a transcoder: read it with next_target");
}

static cterp_status pair_next_target(void *ctx, float *x, float *y, int64_t B) {
    store *s = ctx;
    float *xy[2] = {x, y};
    s->mode = 1;
    return draw_all(s, xy, B, 0, B);
}

cterp_status cterp_act_pair_store(cterp_act_source *src, cterp_model *m, const char *hook_in,
                                  const char *hook_out, const char *dataset,
                                  const cterp_store_config *c, int64_t train_batch) {
    memset(src, 0, sizeof *src);
    const char *hooks[2] = {hook_in, hook_out};
    store *s;
    cterp_status e = cterp_multi_store_open(&s, m, hooks, 2, dataset, c, train_batch);
    if (e) return e;
    // the resume state carries fp[0]: make it name both hooks, so another pair is refused
    s->fp[0].hook_hash = s->fp[0].hook_hash * 0x9E3779B97F4A7C15ULL ^ s->fp[1].hook_hash;
    src->d_in = s->st.D[0];
    src->d_out = s->st.D[1];
    src->ctx = s;
    src->next = pair_next;
    src->next_target = pair_next_target;
    src->get_state = store_get_state;
    src->set_state = store_set_state;
    src->free = store_free;
    snprintf(src->description, sizeof src->description, "%.60s -> %.60s %.120s", hook_in, hook_out,
             s->desc);
    return CTERP_OK;
}

// ---- several hooks side by side (crosscoders) ----------------------------------------------

typedef struct {
    store *s; // first: cterp_act_source_stats reads it through the context pointer
    float *buf; // (L, B, D_h) one batch of every hook, before interleaving
    int64_t cap;
} concat_ctx;

static cterp_status concat_next(void *ctx, float *x, int64_t B) {
    concat_ctx *c = ctx;
    const int L = c->s->st.n_hooks;
    int64_t W = 0; // the row width, sum of the hooks' widths
    for (int h = 0; h < L; h++) W += c->s->st.D[h];
    if (B * W > c->cap) {
        float *nb = realloc(c->buf, (size_t)(B * W) * sizeof(float));
        if (!nb) return cterp_error(CTERP_ENOMEM, "activation store: out of memory for %lld concatenated rows",
                                    (long long)B);
        c->buf = nb, c->cap = B * W;
    }
    float *xs[4096];
    int64_t off = 0;
    for (int h = 0; h < L; off += B * c->s->st.D[h], h++) xs[h] = c->buf + off;
    c->s->mode = 1;
    cterp_status e = draw_all(c->s, xs, B, 0, B);
    if (e) return e;
    for (int64_t t = 0; t < B; t++) // row t: hook 0's row, then hook 1's, ...
        for (int64_t h = 0, o = 0; h < L; o += c->s->st.D[h], h++)
            memcpy(x + t * W + o, xs[h] + t * c->s->st.D[h], (size_t)c->s->st.D[h] * sizeof(float));
    return CTERP_OK;
}

static int concat_get_state(void *ctx, uint64_t *st, int cap) {
    return store_get_state(((concat_ctx *)ctx)->s, st, cap);
}

static cterp_status concat_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    return store_set_state(((concat_ctx *)ctx)->s, st, n, max_rows);
}

static void concat_free(void *ctx) {
    concat_ctx *c = ctx;
    if (!c) return;
    store_free(c->s);
    free(c->buf);
    free(c);
}

cterp_status cterp_act_concat_store(cterp_act_source *src, cterp_model *m, const char *const *hooks, int n_hooks,
                                    const char *dataset, const cterp_store_config *c, int64_t train_batch) {
    memset(src, 0, sizeof *src);
    if (n_hooks < 2 || n_hooks > 4096)
        return cterp_error(CTERP_EINVAL, "activation store: a concatenation of %d hooks (expected 2..4096; "
                           "one hook is cterp_act_store)", n_hooks);
    concat_ctx *cc = calloc(1, sizeof *cc);
    if (!cc) return cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    cterp_status e = cterp_multi_store_open(&cc->s, m, hooks, n_hooks, dataset, c, train_batch);
    if (e) {
        free(cc);
        return e;
    }
    store *s = cc->s;
    int64_t W = 0;
    for (int h = 0; h < n_hooks; h++) {
        if (s->st.D[h] != s->st.D[0]) {
            e = cterp_error(CTERP_EINVAL, "activation store: hooks %s (width %lld) and %s (width %lld) differ "
                            "in width; a crosscoder reads layers of one width", hooks[0], (long long)s->st.D[0],
                            hooks[h], (long long)s->st.D[h]);
            concat_free(cc);
            return e;
        }
        W += s->st.D[h];
        // the resume state carries fp[0]: make it name every hook in order
        if (h) s->fp[0].hook_hash = s->fp[0].hook_hash * 0x9E3779B97F4A7C15ULL ^ s->fp[h].hook_hash;
    }
    src->d_in = W;
    src->n_layers = n_hooks;
    src->ctx = cc;
    src->next = concat_next;
    src->get_state = concat_get_state;
    src->set_state = concat_set_state;
    src->free = concat_free;
    snprintf(src->description, sizeof src->description, "%.60s .. %.60s (%d hooks side by side) %.100s", hooks[0],
             hooks[n_hooks - 1], n_hooks, s->desc);
    return CTERP_OK;
}
