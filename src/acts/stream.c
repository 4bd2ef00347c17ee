// The row stream: windows of a dataset run through the model in batches up to the hook (the
// forward stops after the hook's layer); the rows of the unmasked positions come out in window
// order. Also the index-level mixing buffer both sources share.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acts/acts_impl.h"
#include "core/dist.h"

void cterp_store_config_default(cterp_store_config *c) {
    memset(c, 0, sizeof *c);
    cterp_window_config_default(&c->windows);
    cterp_dataset_opts_default(&c->data);
    c->model_batch = 8;
    c->buffer_rows = 0;
    c->seed = 42;
    c->overlap = 1;
}

cterp_status cterp_store_buffer_rows(const cterp_store_config *c, int64_t train_batch, int64_t *rows) {
    if (train_batch < 1)
        return cterp_error(CTERP_EINVAL, "batch_size: expected >= 1, got %lld", (long long)train_batch);
    int64_t r = c->buffer_rows;
    if (r == 0) r = train_batch > INT64_MAX / 8 ? INT64_MAX : 4 * train_batch;
    if (c->buffer_rows == 0 && r < 32768) r = 32768;
    if (c->buffer_rows == 0 && c->run_rows > 0 && c->run_rows < r) // the run needs fewer rows
        r = c->run_rows > 2 * train_batch ? c->run_rows : 2 * train_batch;
    if (r < 0)
        return cterp_error(CTERP_EINVAL, "buffer_rows: expected >= 0, got %lld", (long long)r);
    r += r & 1; // half of it is served between refills
    if (r < 2 * train_batch)
        return cterp_error(CTERP_EINVAL,
                           "buffer_rows: %lld rows cannot mix batches of %lld: the buffer serves half "
                           "of itself between refills, so it needs at least 2 x batch_size = %lld "
                           "rows (raise buffer_rows or lower batch_size)",
                           (long long)c->buffer_rows, (long long)train_batch, (long long)(2 * train_batch));
    *rows = r;
    return CTERP_OK;
}

// Captures one hook's activations of the unmasked positions of windows tok/mask (B, T): the
// same positions for every hook, so every hook's capture writes the same rtok and n.
typedef struct {
    act_stream *s;
    int B, h;
    const int32_t *tok;  // (B, T) the windows
    const uint8_t *mask; // (B, T)
    float *rows;         // out: this hook's rows of the unmasked positions
    int32_t *rtok;       // out: their tokens
    int64_t n;           // out: how many
} capture;

static cterp_status capture_hook(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    capture *c = user;
    act_stream *s = c->s;
    const int64_t D = s->D[c->h];
    int64_t w = 1;
    for (int i = 2; i < ndim; i++) w *= shape[i];
    if (ndim < 3 || shape[0] != c->B || shape[1] != s->T || w != D)
        return cterp_error(CTERP_EINVAL, "hook %s: unexpected activation shape (expected [%d, %d, %lld])",
                           name, c->B, s->T, (long long)D);
    int64_t n = 0;
    for (int64_t p = 0; p < (int64_t)c->B * s->T; p++) {
        if (c->mask[p]) continue;
        memcpy(c->rows + n * D, act + p * D, (size_t)D * sizeof(float));
        c->rtok[n++] = c->tok[p]; // the same positions for every hook
    }
    c->n = n;
    return CTERP_OK;
}

// One forward of B windows (tok, mask) feeding every hook: hook h's rows into rows[h], their
// tokens into rtok, *n of them. No logits: the forward stops after the last hook's layer.
static cterp_status run_forward(act_stream *s, int B, const int32_t *tok, const uint8_t *mask,
                                float *const *rows, int32_t *rtok, int64_t *n) {
    capture *c = malloc((size_t)s->n_hooks * sizeof *c);
    cterp_hook *h = malloc((size_t)s->n_hooks * sizeof *h);
    if (!c || !h) {
        free(c), free(h);
        return cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    }
    for (int i = 0; i < s->n_hooks; i++)
        c[i] = (capture){s, B, i, tok, mask, rows[i], rtok, 0}, h[i] = (cterp_hook){s->hook[i], capture_hook, &c[i]};
    cterp_forward_opts o = {h, s->n_hooks, 0, NULL, 0};
    cterp_status st = cterp_model_forward(s->m, tok, B, s->T, &o);
    *n = st ? 0 : c[0].n;
    free(c), free(h);
    return st;
}

typedef struct {
    int64_t D;
} probe;

static cterp_status probe_hook(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    (void)act;
    probe *p = user;
    if (ndim < 3 || !strcmp(name + (strlen(name) > 12 ? strlen(name) - 12 : 0), "hook_pattern"))
        return cterp_error(CTERP_EINVAL, "hook %s: attention patterns are not activations an SAE can "
                           "train on (pick a [B, T, ...] hook)", name);
    p->D = 1;
    for (int i = 2; i < ndim; i++) p->D *= shape[i];
    return CTERP_OK;
}

// Row width of each hook: one forward of a single token (works for [B,T,D] and [B,T,H,hd]).
static cterp_status probe_widths(act_stream *s) {
    probe *p = calloc((size_t)s->n_hooks, sizeof *p);
    cterp_hook *h = calloc((size_t)s->n_hooks, sizeof *h);
    cterp_status st = CTERP_OK;
    if (!p || !h) st = cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    for (int i = 0; !st && i < s->n_hooks; i++) h[i] = (cterp_hook){s->hook[i], probe_hook, &p[i]};
    if (!st) {
        cterp_forward_opts o = {h, s->n_hooks, 0, NULL, 0};
        int32_t tok = 0;
        const cterp_tokenizer *tk = cterp_model_tokenizer(s->m);
        if (tk && cterp_tokenizer_bos(tk) >= 0) tok = cterp_tokenizer_bos(tk);
        st = cterp_model_forward(s->m, &tok, 1, 1, &o);
    }
    for (int i = 0; !st && i < s->n_hooks; i++) s->D[i] = p[i].D;
    free(p), free(h);
    return st;
}

cterp_status stream_open(act_stream *s, cterp_model *m, const char *const *hooks, int n_hooks,
                         const char *dataset, const cterp_store_config *c) {
    memset(s, 0, sizeof *s);
    if (n_hooks < 1 || n_hooks > 4096)
        return cterp_error(CTERP_EINVAL, "hooks: expected 1..4096 hook names, got %d", n_hooks);
    for (int i = 0; i < n_hooks; i++) {
        if (!hooks[i] || strlen(hooks[i]) >= sizeof s->hook[0])
            return cterp_error(CTERP_EINVAL, "hook name too long: %s", hooks[i] ? hooks[i] : "(null)");
        for (int j = 0; j < i; j++)
            if (!strcmp(hooks[i], hooks[j]))
                return cterp_error(CTERP_EINVAL, "hooks: %s is given twice (hooks %d and %d)", hooks[i], j, i);
    }
    if (c->model_batch < 1 || c->model_batch > 4096)
        return cterp_error(CTERP_EINVAL, "model_batch: expected 1..4096, got %d", c->model_batch);
    for (int i = 0; i < n_hooks; i++) {
        int layer, dim;
        cterp_status st = cterp_model_hook_info(m, hooks[i], &layer, &dim);
        if (st) return st;
    }
    s->n_hooks = n_hooks, s->m = m;
    s->hook = calloc((size_t)n_hooks, sizeof *s->hook);
    s->D = calloc((size_t)n_hooks, sizeof *s->D);
    s->rows = calloc((size_t)n_hooks, sizeof *s->rows);
    if (!s->hook || !s->D || !s->rows) {
        stream_close(s);
        return cterp_error(CTERP_ENOMEM, "activation store: out of memory");
    }
    for (int i = 0; i < n_hooks; i++) strcpy(s->hook[i], hooks[i]);
    cterp_status st = probe_widths(s);
    if (st) {
        stream_close(s);
        return st;
    }
    s->mb = c->model_batch, s->T = c->windows.context_size;
    if ((st = cterp_windows_open(&s->w, dataset, &c->data, cterp_model_tokenizer(m), &c->windows))) {
        stream_close(s);
        return st;
    }
    const cterp_model_config *mc = cterp_model_config_of(m);
    if (s->T > mc->n_ctx) {
        stream_close(s);
        return cterp_error(CTERP_EINVAL, "context_size: %d exceeds the model's context of %d tokens (%s.context_length)",
                           s->T, mc->n_ctx, mc->arch);
    }
    size_t P = (size_t)s->mb * (size_t)s->T;
    s->tok = malloc(P * sizeof *s->tok);
    s->mask = malloc(P);
    s->row_tok = malloc(P * sizeof *s->row_tok);
    int ok = s->tok && s->mask && s->row_tok;
    for (int i = 0; ok && i < n_hooks; i++) ok = (s->rows[i] = malloc(P * (size_t)s->D[i] * sizeof(float))) != NULL;
    if (!ok) {
        stream_close(s);
        return cterp_error(CTERP_ENOMEM, "activation store: out of memory (%zu positions x %d hooks)", P, n_hooks);
    }
    return CTERP_OK;
}

cterp_status stream_distribute(act_stream *s, int gather) {
    const int P = dist_size();
    if (P <= 1) return CTERP_OK;
    if (P > 64) return cterp_error(CTERP_EINVAL, "activations over MPI: at most 64 ranks, got %d", P);
    const size_t pos = (size_t)s->mb * (size_t)s->T;
    // a round's windows (P batches) on every rank, and its rows when they are gathered
    int32_t *tok = realloc(s->tok, P * pos * sizeof *s->tok);
    if (tok) s->tok = tok;
    uint8_t *mask = realloc(s->mask, P * pos);
    if (mask) s->mask = mask;
    s->round_rows = calloc((size_t)P, sizeof *s->round_rows);
    if (!tok || !mask || !s->round_rows) return cterp_error(CTERP_ENOMEM, "activations over MPI: out of memory");
    if (gather) {
        int32_t *rt = realloc(s->row_tok, P * pos * sizeof *s->row_tok);
        if (rt) s->row_tok = rt;
        s->mine = calloc((size_t)s->n_hooks, sizeof *s->mine);
        s->mine_tok = malloc(pos * sizeof *s->mine_tok);
        int ok = rt && s->mine && s->mine_tok;
        for (int h = 0; ok && h < s->n_hooks; h++) {
            const size_t D = (size_t)s->D[h];
            float *rows = realloc(s->rows[h], P * pos * D * sizeof(float));
            if (rows) s->rows[h] = rows;
            ok = rows && (s->mine[h] = malloc(pos * D * sizeof(float)));
        }
        if (!ok)
            return cterp_error(CTERP_ENOMEM, "activations over MPI: out of memory (%d x %zu rows x %d hooks)", P,
                               pos, s->n_hooks);
    }
    s->P = P, s->rank = dist_rank(), s->gather = gather;
    return CTERP_OK;
}

void stream_close(act_stream *s) {
    cterp_windows_close(s->w);
    for (int i = 0; s->rows && i < s->n_hooks; i++) free(s->rows[i]);
    for (int i = 0; s->mine && i < s->n_hooks; i++) free(s->mine[i]);
    free(s->hook), free(s->D), free(s->rows);
    free(s->tok), free(s->mask), free(s->row_tok);
    free(s->round_rows), free(s->mine), free(s->mine_tok);
    memset(s, 0, sizeof *s);
}

cterp_status stream_rewind(act_stream *s) {
    s->n_rows = s->next_row = 0;
    s->produced = s->windows = s->epochs = s->forwards = 0;
    s->at_eof = 0;
    return cterp_windows_rewind(s->w);
}

// One round under MPI: up to P x mb windows read (by every rank), batch j of them run by rank j,
// then every rank's rows gathered in batch order (gather) or only their counts.
static cterp_status forward_round(act_stream *s, int *eof) {
    const int P = s->P, mb = s->mb, T = s->T;
    int W = 0;
    *eof = 0;
    while (W < P * mb) {
        int e = 0;
        cterp_status st = cterp_windows_next(s->w, s->tok + (size_t)W * T, s->mask + (size_t)W * T, &e);
        if (st) return st;
        if (e) break;
        W++;
    }
    if (W < P * mb) s->at_eof = 1;
    if (W == 0) {
        *eof = 1;
        return CTERP_OK;
    }
    for (int j = 0; j < P; j++) s->round_windows[j] = W - j * mb < 0 ? 0 : W - j * mb > mb ? mb : W - j * mb;
    const int B = s->round_windows[s->rank];
    const size_t off = (size_t)s->rank * mb * T;
    cterp_status st = CTERP_OK;
    int64_t n = 0;
    // a rank whose forward failed still takes part, with no rows: the caller aborts the job
    if (B > 0)
        st = run_forward(s, B, s->tok + off, s->mask + off, s->gather ? s->mine : s->rows,
                         s->gather ? s->mine_tok : s->row_tok, &n);
    cterp_status g = dist_allgather(s->round_rows, &n, sizeof n);
    if (st) return st;
    if (g) return g;
    if (s->gather) { // every hook's rows, then the tokens, in batch (rank) order
        const size_t pos = (size_t)P * mb * T;
        size_t got = 0;
        for (int h = 0; h < s->n_hooks; h++) {
            const size_t D = (size_t)s->D[h];
            if ((g = dist_allgatherv(s->rows[h], pos * D * sizeof(float), s->mine[h], (size_t)n * D * sizeof(float),
                                     &got)))
                return g;
        }
        if ((g = dist_allgatherv(s->row_tok, pos * sizeof(int32_t), s->mine_tok, (size_t)n * sizeof(int32_t), &got)))
            return g;
        s->n_rows = (int64_t)(got / sizeof(int32_t));
    } else {
        s->n_rows = n;
    }
    s->forwards++;
    s->next_row = 0;
    s->windows += W;
    return CTERP_OK;
}

// One forward of up to mb windows; *eof when the dataset ended before any window.
static cterp_status forward_batch(act_stream *s, int *eof) {
    if (s->P > 1) return forward_round(s, eof);
    int B = 0;
    *eof = 0;
    while (B < s->mb) {
        int e = 0;
        cterp_status st = cterp_windows_next(s->w, s->tok + (size_t)B * s->T, s->mask + (size_t)B * s->T, &e);
        if (st) return st;
        if (e) break;
        B++;
    }
    if (B < s->mb) s->at_eof = 1;
    if (B == 0) {
        *eof = 1;
        return CTERP_OK;
    }
    // one forward feeds every hook
    cterp_status st = run_forward(s, B, s->tok, s->mask, s->rows, s->row_tok, &s->n_rows);
    if (st) return st;
    s->forwards++;
    s->next_row = 0;
    s->windows += B;
    return CTERP_OK;
}

cterp_status stream_round(act_stream *s, int *eof) {
    if (s->P <= 1 || s->gather)
        return cterp_error(CTERP_EINVAL, "stream_round: only for a stream of P > 1 ranks without gather");
    return forward_round(s, eof);
}

cterp_status stream_next(act_stream *s, const float **row, int32_t *tok, int stop_at_eof, int *eof) {
    *eof = 0;
    int wrapped = 0;
    while (s->next_row >= s->n_rows) {
        s->n_rows = s->next_row = 0;
        int e = 0;
        cterp_status st = s->at_eof ? CTERP_OK : forward_batch(s, &e);
        if (st) return st;
        if (s->at_eof && s->n_rows == 0) e = 1;
        if (!e) continue;
        if (stop_at_eof) {
            *eof = 1;
            return CTERP_OK;
        }
        if (wrapped || (s->produced == 0 && s->windows == 0))
            return cterp_error(CTERP_EFORMAT, "%s: no complete window of %d tokens with a non-special "
                               "position (the dataset is too small for context_size)",
                               cterp_dataset_path(cterp_windows_dataset(s->w)), s->T);
        wrapped = 1; // a new epoch, the same windows again
        s->epochs++;
        s->at_eof = 0;
        if ((st = cterp_windows_rewind(s->w))) return st;
    }
    for (int i = 0; i < s->n_hooks; i++) row[i] = s->rows[i] + s->next_row * s->D[i];
    if (tok) *tok = s->row_tok[s->next_row];
    s->next_row++;
    s->produced++;
    return CTERP_OK;
}

// ---- mixer ----------------------------------------------------------------------------------

cterp_status mixer_init(mixer *x, int64_t cap, uint64_t seed) {
    memset(x, 0, sizeof *x);
    if (cap < 2 || cap % 2) return cterp_error(CTERP_EINVAL, "buffer_rows: expected an even number >= 2, got %lld", (long long)cap);
    x->order = malloc((size_t)cap * sizeof *x->order);
    if (!x->order) return cterp_error(CTERP_ENOMEM, "mixing buffer: out of memory (%lld rows)", (long long)cap);
    x->cap = cap, x->half = cap / 2, x->seed = seed;
    mixer_reset(x);
    return CTERP_OK;
}

void mixer_serve_whole_if_run_fits(mixer *x, const cterp_store_config *c) {
    if (c->buffer_rows == 0 && c->run_rows > 0 && x->cap >= c->run_rows) x->half = x->cap;
}

void mixer_reset(mixer *x) {
    x->pos = x->served = 0;
    x->filled = 0;
    rng_seed(&x->rng, x->seed ^ 0x6d6978657220ULL);
}

int acts_get_state(const mixer *x, const acts_fingerprint *fp, uint64_t *st, int cap) {
    if (cap < ACTS_STATE_WORDS) return 0;
    const uint64_t w[ACTS_STATE_WORDS] = {
        ACTS_STATE_TAG,   (uint64_t)x->served, x->seed,         (uint64_t)x->cap, fp->kind,
        fp->data_bytes,   fp->data_hash,       fp->model_bytes, fp->model_hash,   fp->hook_hash,
        fp->context_size, fp->flags,           fp->separator,   fp->model_batch};
    memcpy(st, w, sizeof w);
    return ACTS_STATE_WORDS;
}

static const char *kind_name(uint64_t k) {
    return k == ACTS_LIVE ? "a live activation store (--model, --data)"
                          : "an activation cache (--acts DIR)";
}

// The live store's settings, saved (fp words 6..9) or current, as the values users give.
static void live_settings(int64_t v[6], uint64_t context_size, uint64_t flags, uint64_t separator,
                          uint64_t model_batch) {
    v[0] = (int64_t)context_size, v[1] = flags & 1, v[2] = flags >> 1 & 1, v[3] = flags >> 2 & 1;
    v[4] = (int64_t)separator, v[5] = (int64_t)model_batch;
}

static cterp_status check_live(const acts_fingerprint *fp, const uint64_t *w) {
    if (w[3] != fp->model_bytes || w[4] != fp->model_hash)
        return cterp_error(
            CTERP_EINVAL,
            "model: the checkpoint's rows came from a model file of %llu bytes "
            "(fingerprint 0x%016llx), this run runs '%s' (%llu bytes, fingerprint 0x%016llx); "
            "resume with the same --model, or start a new run",
            (unsigned long long)w[3], (unsigned long long)w[4], fp->model_path,
            (unsigned long long)fp->model_bytes, (unsigned long long)fp->model_hash);
    if (w[5] != fp->hook_hash)
        return cterp_error(
            CTERP_EINVAL,
            "hook: the checkpoint's rows came from another hook (name hash "
            "0x%016llx), this run reads %s (0x%016llx); resume with the same --hook (or "
            "--layer and --component), or start a new run",
            (unsigned long long)w[5], fp->hook, (unsigned long long)fp->hook_hash);
    if (w[1] != fp->data_bytes || w[2] != fp->data_hash)
        return cterp_error(
            CTERP_EINVAL,
            "data: the checkpoint's rows came from a dataset of %llu bytes "
            "(fingerprint 0x%016llx), this run reads '%s' (%llu bytes, fingerprint 0x%016llx%s); "
            "resume with the same --data, or start a new run",
            (unsigned long long)w[1], (unsigned long long)w[2], fp->data_path,
            (unsigned long long)fp->data_bytes, (unsigned long long)fp->data_hash,
            w[1] == fp->data_bytes ? ": the same size, another content, file kind or text_field"
                                   : "");
    static const char *const name[6] = {"context_size",    "prepend_bos", "concat",
                                        "exclude_special", "separator",   "model_batch"};
    static const char *const flag[6] = {"--context-size",    "--prepend-bos", "--concat",
                                        "--exclude-special", "--separator",   "--model-batch"};
    int64_t was[6], now[6];
    live_settings(was, w[6], w[7], w[8], w[9]);
    live_settings(now, fp->context_size, fp->flags, fp->separator, fp->model_batch);
    for (int i = 0; i < 6; i++) {
        if (was[i] == now[i]) continue;
        char v[32]; // what to pass to the flag: the separator's "none" is -1
        if (i == 4 && was[i] < 0)
            snprintf(v, sizeof v, "none");
        else
            snprintf(v, sizeof v, "%lld", (long long)was[i]);
        return cterp_error(CTERP_EINVAL,
                           "%s: the checkpoint was saved with %lld, this run has %lld%s; "
                           "resume with %s %s, or start a new run",
                           name[i], (long long)was[i], (long long)now[i],
                           i == 4 ? " (a token id; -1: none)"
                           : i == 5
                               ? " (the forward is not batch-invariant: the replayed rows would "
                                 "differ in their last bits)"
                               : "",
                           flag[i], v);
    }
    return CTERP_OK;
}

cterp_status acts_check_state(const mixer *x, const acts_fingerprint *fp, const uint64_t *st, int n,
                              int64_t max_rows, const char *what, uint64_t *served) {
    if (n == 4 && st[0] == ACTS_STATE_TAG_V1)
        return cterp_error(
            CTERP_EFORMAT,
            "%s state: saved by an older cterp, without the fingerprint of "
            "the data, model and settings, so this run cannot be checked to replay the same "
            "rows; resume with the cterp that wrote it, or start a new run",
            what);
    if (n != ACTS_STATE_WORDS || st[0] != ACTS_STATE_TAG ||
        (st[4] != ACTS_LIVE && st[4] != ACTS_CACHE))
        return cterp_error(CTERP_EFORMAT, "%s state: expected %d words tagged 0x%016llx (an activation "
                           "store/cache position) of kind %d or %d, found %d words tagged 0x%016llx%s",
                           what, ACTS_STATE_WORDS, (unsigned long long)ACTS_STATE_TAG, ACTS_LIVE, ACTS_CACHE, n,
                           n > 0 ? (unsigned long long)st[0] : 0ULL,
                           n == ACTS_STATE_WORDS && st[0] == ACTS_STATE_TAG ? " with another kind" : "");
    const uint64_t *w = st + 4; // the saved fingerprint, in acts_fingerprint's order
    if (w[0] != fp->kind)
        return cterp_error(CTERP_EINVAL,
                           "source: the checkpoint's rows came from %s, this run reads %s; "
                           "resume from the same source, or start a new run",
                           kind_name(w[0]), kind_name(fp->kind));
    cterp_status e = CTERP_OK;
    if (fp->kind == ACTS_LIVE)
        e = check_live(fp, w);
    else if (w[1] != fp->data_bytes || w[2] != fp->data_hash)
        e = cterp_error(
            CTERP_EINVAL,
            "cache: the checkpoint's rows came from a cache of %llu rows "
            "(fingerprint 0x%016llx), this run reads '%s' (%llu rows, fingerprint 0x%016llx); "
            "resume with the same --acts DIR, or start a new run",
            (unsigned long long)w[1], (unsigned long long)w[2], fp->data_path,
            (unsigned long long)fp->data_bytes, (unsigned long long)fp->data_hash);
    if (e) return e;
    if (st[2] != x->seed || st[3] != (uint64_t)x->cap)
        return cterp_error(CTERP_EINVAL, "%s state: saved with seed %llu and buffer_rows %llu, this "
                           "source has seed %llu and buffer_rows %lld: resume with the same settings",
                           what, (unsigned long long)st[2], (unsigned long long)st[3],
                           (unsigned long long)x->seed, (long long)x->cap);
    if (max_rows < 0 || st[1] > (uint64_t)max_rows) // the replay below loops st[1] times
        return cterp_error(CTERP_EFORMAT,
                           "%s state: %llu rows served, expected at most %lld (the rows "
                           "taken before the checkpoint)",
                           what, (unsigned long long)st[1], (long long)max_rows);
    *served = st[1];
    return CTERP_OK;
}

void mixer_free(mixer *x) {
    free(x->order);
    x->order = NULL;
}

static void shuffle(mixer *x, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) { // Fisher-Yates over the first n slots of the order
        int64_t j = (int64_t)rng_below(&x->rng, (uint64_t)i + 1);
        int64_t t = x->order[i];
        x->order[i] = x->order[j], x->order[j] = t;
    }
}

cterp_status mixer_next(mixer *x, int64_t *slot, mixer_fill_fn fill, void *ctx) {
    cterp_status s;
    if (!x->filled) {
        // The first fill: a buffer served whole is filled whole; one served by halves starts
        // warm, with its first half only (training starts after half the rows, mixed among
        // themselves), and the second fill then takes the whole buffer: the half just served and
        // the half never filled. After that every fill replaces the half just served.
        const int64_t n = x->half == x->cap ? x->cap : x->half;
        for (int64_t i = 0; i < x->cap; i++) x->order[i] = i;
        if ((s = fill(ctx, x->order, n))) return s;
        shuffle(x, n);
        x->filled = n == x->cap ? 2 : 1, x->pos = 0;
    } else if (x->pos == x->half) { // half served: new rows into those slots, mix everything again
        const int64_t n = x->filled == 1 ? x->cap : x->half;
        if ((s = fill(ctx, x->order, n))) return s;
        shuffle(x, x->cap);
        x->filled = 2, x->pos = 0;
    }
    *slot = x->order[x->pos++];
    x->served++;
    return CTERP_OK;
}
