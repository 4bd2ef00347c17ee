// Activation store and cache on stories260K: rows equal the hook's activations at the unmasked
// positions (checked against a direct forward), no special-token rows, determinism per seed,
// buffer-size validation, cache round trip (f32 exact, f16 close), cache == live store for the
// same seed (across an epoch wrap), resume (get/set state) giving the same batches, bf16 rows
// within 2^-8, damaged cache files rejected with the file and the field named, and resume
// against other data, settings, hook, model or cache refused with the field named.
#include <stdint.h>

#include "acts/acts_impl.h"
#include "core/file.h"
#include "cterp/acts.h"
#include "stories.h"
#include "test.h"

static char corpus[600], cache_dir[600], cache16[600];
static const char *HOOK = "blocks.2.hook_resid_post";

static cterp_store_config store_cfg(uint64_t seed) {
    cterp_store_config c;
    cterp_store_config_default(&c);
    c.windows.context_size = 32;
    c.model_batch = 4;
    c.buffer_rows = 512;
    c.seed = seed;
    return c;
}

static int same_batches(cterp_act_source *a, cterp_act_source *b, int n, int64_t B) {
    int64_t D = a->d_in;
    float *x = malloc((size_t)(B * D) * 4), *y = malloc((size_t)(B * D) * 4);
    int same = a->d_in == b->d_in;
    for (int i = 0; i < n && same; i++) {
        if (a->next(a->ctx, x, B) || b->next(b->ctx, y, B)) same = 0;
        else same = !memcmp(x, y, (size_t)(B * D) * 4);
    }
    free(x), free(y);
    return same;
}

// Rows of a cache equal a direct forward of the windows at their unmasked positions.
typedef struct {
    float *out;
} grab;
static cterp_status grab_hook(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    grab *g = user;
    memcpy(g->out, act, (size_t)(shape[0] * shape[1] * shape[2]) * 4);
    return CTERP_OK;
}

static void test_rows(cterp_model *m) {
    cterp_store_config c = store_cfg(1);
    cterp_cache_info info;
    CHECK_OK(cterp_act_cache_write(m, "stories260K", HOOK, corpus, &c, 1 << 30, CTERP_DTYPE_F32, cache_dir,
                                   NULL, NULL, &info));
    CHECK(info.complete_epoch == 1 && info.d_in == 64 && info.context_size == 32);
    // independent count: windows and unmasked positions from the windows API
    cterp_windows *w;
    CHECK_OK(cterp_windows_open(&w, corpus, NULL, cterp_model_tokenizer(m), &c.windows));
    int32_t tok[32];
    uint8_t mask[32];
    int eof = 0;
    int64_t nw = 0, nrows = 0, first_sep = -1;
    int32_t *all_tok = malloc(sizeof(int32_t) * 32 * 4096);
    uint8_t *all_mask = malloc(32 * 4096);
    while (!cterp_windows_next(w, tok, mask, &eof) && !eof && nw < 4096) {
        memcpy(all_tok + nw * 32, tok, sizeof tok), memcpy(all_mask + nw * 32, mask, 32);
        for (int i = 0; i < 32; i++) {
            nrows += !mask[i];
            if (mask[i] && i > 0 && first_sep < 0) first_sep = nw * 32 + i;
        }
        nw++;
    }
    cterp_windows_close(w);
    CHECK_MSG(info.windows == nw && info.count == nrows, "cache %lld windows %lld rows, expected %lld, %lld",
              (long long)info.windows, (long long)info.count, (long long)nw, (long long)nrows);
    CHECK(first_sep > 0); // documents were concatenated with separators, which are masked
    printf("corpus: %lld windows of 32, %lld activation rows\n", (long long)nw, (long long)nrows);

    // the cache's rows and tokens against a forward of the first 3 windows
    char p[700];
    snprintf(p, sizeof p, "%s/activations.bin", cache_dir);
    FILE *f = fopen(p, "rb");
    snprintf(p, sizeof p, "%s/tokens.bin", cache_dir);
    FILE *ft = fopen(p, "rb");
    CHECK(f && ft);
    if (!f || !ft) return;
    float *ref = malloc(4 * 32 * 64 * 4), *row = malloc(64 * 4);
    grab g = {ref};
    cterp_hook h = {HOOK, grab_hook, &g};
    cterp_forward_opts o = {&h, 1, 0, NULL, 0};
    CHECK_OK(cterp_model_forward(m, all_tok, 4, 32, &o)); // the store's first batch (4 windows): the
    // forward is not batch-invariant (B = 3 differs by ~3e-6), so compare the same batch
    fseek(f, 4096, SEEK_SET);
    int ok = 1, special = 0;
    double maxd = 0;
    for (int q = 0; q < 3 * 32; q++) {
        if (all_mask[q]) continue;
        int32_t t;
        ok &= fread(row, 4, 64, f) == 64 && fread(&t, 4, 1, ft) == 1;
        ok &= t == all_tok[q];
        // max by comparison, not fmax: GCC 12 for aarch64 crashes vectorising an fmax reduction
        for (int d = 0; d < 64; d++) { double e_ = fabs(row[d] - ref[q * 64 + d]); maxd = e_ > maxd ? e_ : maxd; }
    }
    ok &= maxd == 0;
    CHECK_MSG(ok, "cache rows differ from a direct forward");
    // no row of the whole cache holds a special token
    fseek(ft, 0, SEEK_SET);
    int32_t t;
    const cterp_tokenizer *tk = cterp_model_tokenizer(m);
    while (fread(&t, 4, 1, ft) == 1) special += cterp_tokenizer_is_special(tk, t) || t == 1 || t == 2;
    CHECK(special == 0);
    fclose(f), fclose(ft);
    free(ref), free(row), free(all_tok), free(all_mask);

    cterp_cache_info r;
    CHECK_OK(cterp_act_cache_info_read(cache_dir, &r));
    CHECK(r.count == info.count && !strcmp(r.hook, HOOK) && !strcmp(r.model, "stories260K") &&
          !strcmp(r.dataset, corpus) && r.dtype == CTERP_DTYPE_F32);
}

// A run that fits in the buffer: a buffer of its rows, filled once (with progress from the first
// row), every row produced is served (a permutation of the stream's first rows), and the cache
// reader with the same run_rows serves the same rows in the same order.
typedef struct {
    int calls, started, ended;
    int64_t total;
} fill_seen;
static void fill_cb(int64_t rows, int64_t total, double sec, void *user) {
    fill_seen *f = user;
    f->calls++, f->total = total;
    f->started |= rows == 0 && f->calls == 1;
    f->ended |= rows == total;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_run_sized_buffer(cterp_model *m) {
    const int64_t B = 16, steps = 5, R = B * steps;
    cterp_store_config c = store_cfg(3);
    c.buffer_rows = 0, c.run_rows = R;
    int64_t cap;
    CHECK_OK(cterp_store_buffer_rows(&c, B, &cap));
    CHECK(cap == R);
    c.run_rows = B; // less than two batches: still two batches
    CHECK_OK(cterp_store_buffer_rows(&c, B, &cap));
    CHECK(cap == 2 * B);
    c.run_rows = 1 << 20; // more than the default: the default
    CHECK_OK(cterp_store_buffer_rows(&c, B, &cap));
    CHECK(cap == 32768);
    c.run_rows = R;
    fill_seen seen = {0};
    c.fill_progress = fill_cb, c.fill_progress_user = &seen;
    cterp_act_source a, e, plain;
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &c, B));
    float *x = malloc((size_t)(R * a.d_in) * 4), *y = malloc((size_t)(R * a.d_in) * 4);
    CHECK_OK(a.next(a.ctx, x, B)); // the first batch: the whole fill ran, with progress
    CHECK(seen.started && seen.ended && seen.total == R);
    for (int64_t s = 1; s < steps; s++) CHECK_OK(a.next(a.ctx, x + s * B * a.d_in, B));
    cterp_store_stats st;
    CHECK_OK(cterp_act_source_stats(&a, &st));
    CHECK_MSG(st.rows_produced == R && st.buffer_rows == R && st.rows_served == R,
              "produced %lld, buffer %lld, served %lld for a run of %lld rows", (long long)st.rows_produced,
              (long long)st.buffer_rows, (long long)st.rows_served, (long long)R);
    // the same rows as the stream's first R, in another order: compare the sorted first columns
    cterp_store_config cp = store_cfg(3);
    cp.buffer_rows = R; // one fill of R rows, unshuffled order not needed: sort both
    CHECK_OK(cterp_act_store(&plain, m, HOOK, corpus, &cp, B));
    for (int64_t s = 0; s < steps / 2; s++) CHECK_OK(plain.next(plain.ctx, y + s * B * a.d_in, B));
    float *c0 = malloc((size_t)R * 4), *c1 = malloc((size_t)R * 4);
    for (int64_t r = 0; r < R; r++) c0[r] = x[r * a.d_in];
    int64_t half = (steps / 2) * B; // plain serves half of its buffer between refills: compare what it served
    for (int64_t r = 0; r < half; r++) c1[r] = y[r * a.d_in];
    qsort(c0, (size_t)R, 4, cmp_float), qsort(c1, (size_t)half, 4, cmp_float);
    int all_in = 1; // every row plain served is among the run's rows
    for (int64_t r = 0; r < half && all_in; r++) all_in = bsearch(&c1[r], c0, (size_t)R, 4, cmp_float) != NULL;
    CHECK(all_in);
    // the cache reader sized the same way serves the same batches
    c.fill_progress = NULL;
    CHECK_OK(cterp_act_source_cache(&e, cache_dir, &c, B));
    cterp_act_source_free(&a);
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &c, B));
    CHECK(same_batches(&a, &e, (int)steps, B));
    free(x), free(y), free(c0), free(c1);
    cterp_act_source_free(&a), cterp_act_source_free(&e), cterp_act_source_free(&plain);
}

// Warm start: a buffer served by halves trains after its first half is filled (those rows, mixed
// among themselves, are served first); the second fill takes the whole buffer; then halves. Rows
// produced after each phase: cap/2, then 3 cap/2, then + cap/2 per refill.
static void test_warm_start(cterp_model *m) {
    const int64_t B = 64, cap = 512;
    cterp_store_config c = store_cfg(5);
    c.overlap = 0;
    cterp_act_source a;
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &c, B));
    float *x = malloc((size_t)(B * a.d_in) * 4);
    cterp_store_stats st;
    CHECK_OK(a.next(a.ctx, x, B));
    CHECK_OK(cterp_act_source_stats(&a, &st));
    CHECK_MSG(st.rows_produced == cap / 2, "first batch after %lld rows, expected %lld", (long long)st.rows_produced,
              (long long)cap / 2);
    for (int64_t i = 1; i < cap / 2 / B; i++) CHECK_OK(a.next(a.ctx, x, B)); // the warm half served
    CHECK_OK(cterp_act_source_stats(&a, &st));
    CHECK(st.rows_produced == cap / 2 && st.rows_served == cap / 2);
    CHECK_OK(a.next(a.ctx, x, B)); // the second fill: the whole buffer
    CHECK_OK(cterp_act_source_stats(&a, &st));
    CHECK_MSG(st.rows_produced == cap / 2 + cap, "after the second fill %lld rows", (long long)st.rows_produced);
    for (int64_t i = 1; i < cap / 2 / B; i++) CHECK_OK(a.next(a.ctx, x, B));
    CHECK_OK(a.next(a.ctx, x, B)); // a regular refill: half
    CHECK_OK(cterp_act_source_stats(&a, &st));
    CHECK(st.rows_produced == 2 * cap);
    free(x);
    cterp_act_source_free(&a);
}

// The producer thread (overlap) changes nothing but timing: the same batches as refills on demand,
// across many refills and an epoch's wrap, and after a resume in the middle of a prefetch.
static void test_overlap(cterp_model *m) {
    const int64_t B = 64;
    cterp_store_config on = store_cfg(11), off = store_cfg(11);
    on.overlap = 2, off.overlap = 0; // 2: always (auto would not prefetch for a trainer this fast)
    cterp_act_source a, b, r;
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &on, B));
    CHECK_OK(cterp_act_store(&b, m, HOOK, corpus, &off, B));
    cterp_cache_info info;
    CHECK_OK(cterp_act_cache_info_read(cache_dir, &info));
    const int n = (int)(2 * info.count / B) + 6; // past the end of the dataset
    CHECK_MSG(same_batches(&a, &b, n, B), "overlapped store differs within %d batches", n);
    uint64_t state[16];
    int k = a.get_state(a.ctx, state, 16); // a prefetch is running now
    CHECK_OK(cterp_act_store(&r, m, HOOK, corpus, &on, B));
    CHECK_OK(r.set_state(r.ctx, state, k, (int64_t)n * B));
    CHECK(same_batches(&a, &r, 8, B));
    cterp_store_stats sa, sb;
    CHECK_OK(cterp_act_source_stats(&a, &sa));
    CHECK_OK(cterp_act_source_stats(&b, &sb));
    CHECK(sa.rows_served == (int64_t)(n + 8) * B && sb.rows_served == (int64_t)n * B);
    cterp_act_source_free(&a), cterp_act_source_free(&b), cterp_act_source_free(&r);
    // a run of 12 batches with refills every 4: overlap produces no more rows than on demand (no
    // prefetch of a refill past the run's end)
    on.run_rows = off.run_rows = 12 * B;
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &on, B));
    CHECK_OK(cterp_act_store(&b, m, HOOK, corpus, &off, B));
    CHECK(same_batches(&a, &b, 12, B));
    CHECK_OK(cterp_act_source_stats(&a, &sa));
    CHECK_OK(cterp_act_source_stats(&b, &sb));
    CHECK_MSG(sa.rows_produced == sb.rows_produced && sb.rows_produced == 512 + 2 * 256,
              "overlap produced %lld rows, on demand %lld", (long long)sa.rows_produced,
              (long long)sb.rows_produced);
    cterp_act_source_free(&a), cterp_act_source_free(&b);
}

static void test_store(cterp_model *m) {
    const int64_t B = 64;
    cterp_store_config c1 = store_cfg(7), c2 = store_cfg(8);
    cterp_act_source a, b, d, e;
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &c1, B));
    CHECK_OK(cterp_act_store(&b, m, HOOK, corpus, &c1, B));
    CHECK_OK(cterp_act_store(&d, m, HOOK, corpus, &c2, B));
    CHECK(a.d_in == 64);
    CHECK(same_batches(&a, &b, 10, B));  // same seed, same batches
    CHECK(!same_batches(&a, &d, 1, B)); // another seed mixes differently
    cterp_store_stats st;
    CHECK_OK(cterp_act_source_stats(&a, &st));
    CHECK(st.rows_served == 11 * B && st.buffer_rows == 512 && st.rows_produced >= 512 && st.windows > 0);

    // the cache serves the same rows in the same order, past the end of the epoch (wrap)
    cterp_cache_info info;
    CHECK_OK(cterp_act_cache_info_read(cache_dir, &info));
    int n_wrap = (int)(2 * info.count / B) + 2;
    CHECK_OK(cterp_act_source_cache(&e, cache_dir, &c1, B));
    cterp_act_source_free(&a);
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &c1, B));
    CHECK_MSG(same_batches(&a, &e, n_wrap, B), "cache and store differ within %d batches", n_wrap);
    CHECK_OK(cterp_act_source_stats(&a, &st));
    CHECK(st.epochs >= 1);
    CHECK_OK(cterp_act_source_stats(&e, &st));
    CHECK(st.epochs >= 1 && st.rows_served == (int64_t)n_wrap * B);

    // resume: the state after k batches, restored in a fresh source, continues identically
    cterp_act_source srcs[2] = {a, e};
    for (int k = 0; k < 2; k++) {
        uint64_t state[16];
        int n = srcs[k].get_state(srcs[k].ctx, state, 16);
        cterp_act_source fresh;
        if (k == 0) CHECK_OK(cterp_act_store(&fresh, m, HOOK, corpus, &c1, B));
        else CHECK_OK(cterp_act_source_cache(&fresh, cache_dir, &c1, B));
        const int64_t taken = (int64_t)n_wrap * B;
        // more rows served than the consumer took: refused before the replay loops over them
        CHECK(fresh.set_state(fresh.ctx, state, n, taken - 1) == CTERP_EFORMAT);
        CHECK_MSG(strstr(cterp_last_error(), "rows served, expected at most"), "%s",
                  cterp_last_error());
        CHECK_OK(fresh.set_state(fresh.ctx, state, n, taken));
        CHECK_MSG(same_batches(&srcs[k], &fresh, 5, B), "%s resume", k ? "cache" : "store");
        uint64_t bad[16];
        memcpy(bad, state, (size_t)n * sizeof *bad);
        bad[2]++; // the seed word
        CHECK(fresh.set_state(fresh.ctx, bad, n, taken) == CTERP_EINVAL &&
              strstr(cterp_last_error(), "seed"));
        cterp_act_source_free(&fresh);
    }
    cterp_act_source_free(&a), cterp_act_source_free(&b), cterp_act_source_free(&d), cterp_act_source_free(&e);

    // f16 cache: same rows to f16 precision
    cterp_store_config c = store_cfg(7);
    CHECK_OK(cterp_act_cache_write(m, "stories260K", HOOK, corpus, &c, 1000, CTERP_DTYPE_F16, cache16, NULL,
                                   NULL, &info));
    CHECK(info.count == 1000 && info.complete_epoch == 0 && info.dtype == CTERP_DTYPE_F16);
    c.buffer_rows = 128;
    CHECK_OK(cterp_act_source_cache(&a, cache_dir, &c, 32));
    CHECK_OK(cterp_act_source_cache(&b, cache16, &c, 32));
    float x[32 * 64], y[32 * 64];
    double maxrel = 0;
    for (int i = 0; i < 3; i++) { // first 3 batches come from the first 128 + 64 rows: common to both
        CHECK_OK(a.next(a.ctx, x, 32));
        CHECK_OK(b.next(b.ctx, y, 32));
        for (int q = 0; q < 32 * 64; q++) {
            double r = fabs(x[q] - y[q]) / (fabs(x[q]) + 1e-3);
            if (r > maxrel) maxrel = r;
        }
    }
    CHECK_MSG(maxrel < 1e-3, "f16 cache relative error %g", maxrel);
    cterp_act_source_free(&a), cterp_act_source_free(&b);

    // bf16 cache: 8 significant bits, round to nearest even (relative error <= 2^-8)
    c.buffer_rows = 512;
    CHECK_OK(cterp_act_cache_write(m, "stories260K", HOOK, corpus, &c, 1000, CTERP_DTYPE_BF16, cache16, NULL,
                                   NULL, &info));
    CHECK(info.count == 1000 && info.dtype == CTERP_DTYPE_BF16);
    c.buffer_rows = 128;
    CHECK_OK(cterp_act_source_cache(&a, cache_dir, &c, 32));
    CHECK_OK(cterp_act_source_cache(&b, cache16, &c, 32));
    maxrel = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(a.next(a.ctx, x, 32));
        CHECK_OK(b.next(b.ctx, y, 32));
        for (int q = 0; q < 32 * 64; q++) {
            double r = fabs(x[q] - y[q]) / fmax(fabs(x[q]), 1e-30);
            if (x[q] != 0 && r > maxrel) maxrel = r;
        }
    }
    CHECK_MSG(maxrel <= 1.0 / 256 && maxrel > 0, "bf16 cache relative error %g", maxrel);
    cterp_act_source_free(&a), cterp_act_source_free(&b);
}

// Copies src to dst, with byte `at` (from the end when negative) xor-ed with `flip`.
static void copy_file(const char *src, const char *dst, int64_t at, int flip) {
    char *d;
    size_t n;
    CHECK_OK(file_read_all(src, &d, &n));
    if (flip) d[at < 0 ? (int64_t)n + at : at] ^= (char)flip;
    CHECK_OK(file_write_all(dst, d, n));
    free(d);
}

// Restores `state` in a source over other inputs: must fail with CTERP_EINVAL naming `field`
// and every string of want (NULL-terminated). Frees the source.
static void check_refused(const char *what, cterp_act_source *src, const uint64_t *state, int n,
                          const char *field, const char *const *want) {
    cterp_status e = src->set_state(src->ctx, state, n, INT64_MAX); // the fingerprint is the point
    const char *msg = cterp_last_error();
    int ok = e == CTERP_EINVAL && !strncmp(msg, field, strlen(field));
    for (int i = 0; want[i]; i++) ok &= strstr(msg, want[i]) != NULL;
    CHECK_MSG(ok, "%s: status %d, message '%s' should start with '%s'", what, e, msg, field);
    printf("%s: %s\n", what, msg);
    cterp_act_source_free(src);
}

// Resume checks what defines the row stream: a copy of the data (other path, same bytes) resumes
// identically; other data, context size, hook, model or cache is refused, naming the field, the
// saved value and this run's; a state of the older 4-word layout is refused as such.
static void test_resume_fingerprint(cterp_model *m, const char *model_path) {
    const int64_t B = 64;
    cterp_store_config c = store_cfg(7);
    cterp_act_source a, f;
    uint64_t st[16];
    CHECK_OK(cterp_act_store(&a, m, HOOK, corpus, &c, B));
    float *x = malloc((size_t)(B * 64) * 4);
    for (int i = 0; i < 3; i++) CHECK_OK(a.next(a.ctx, x, B));
    int n = a.get_state(a.ctx, st, 16);
    CHECK(n == 14);

    char copy[700], edited[700], shorter[700], model2[700];
    snprintf(copy, sizeof copy, "%s.copy.txt", corpus);
    snprintf(edited, sizeof edited, "%s.edited.txt", corpus);
    snprintf(shorter, sizeof shorter, "%s.shorter.txt", corpus);
    snprintf(model2, sizeof model2, "%s.model2.gguf", corpus);
    copy_file(corpus, copy, 0, 0);
    copy_file(corpus, edited, 0, 1); // one character: the same size
    char *d;
    size_t len;
    CHECK_OK(file_read_all(corpus, &d, &len));
    CHECK_OK(file_write_all(shorter, d, len / 2));
    free(d);
    CHECK_OK(cterp_act_store(&f, m, HOOK, copy, &c, B)); // content, not path
    CHECK_OK(f.set_state(f.ctx, st, n, 3 * B));
    CHECK_MSG(same_batches(&a, &f, 3, B), "a copy of the data at another path resumes differently");
    cterp_act_source_free(&f);

    char size_now[800], size_was[64];
    snprintf(size_was, sizeof size_was, "a dataset of %zu bytes", len);
    snprintf(size_now, sizeof size_now, "'%s' (%zu bytes", shorter, len / 2);
    CHECK_OK(cterp_act_store(&f, m, HOOK, shorter, &c, B));
    check_refused("other data", &f, st, n,
                  "data: ", (const char *[]){size_was, size_now, "--data", NULL});
    CHECK_OK(cterp_act_store(&f, m, HOOK, edited, &c, B));
    check_refused("edited data", &f, st, n,
                  "data: ", (const char *[]){edited, "the same size", NULL});
    cterp_store_config c64 = c;
    c64.windows.context_size = 64;
    CHECK_OK(cterp_act_store(&f, m, HOOK, corpus, &c64, B));
    check_refused("other context size", &f, st, n, "context_size: ",
                  (const char *[]){"saved with 32, this run has 64; resume with --context-size 32", NULL});
    cterp_store_config nobos = c;
    nobos.windows.prepend_bos = 0;
    CHECK_OK(cterp_act_store(&f, m, HOOK, corpus, &nobos, B));
    check_refused("prepend_bos", &f, st, n,
                  "prepend_bos: ", (const char *[]){"saved with 1, this run has 0", NULL});
    CHECK_OK(cterp_act_store(&f, m, "blocks.1.hook_resid_post", corpus, &c, B));
    check_refused("other hook", &f, st, n,
                  "hook: ", (const char *[]){"blocks.1.hook_resid_post", NULL});
    copy_file(model_path, model2, -4, 1); // one bit of the last weight
    cterp_model *m2;
    CHECK_OK(cterp_model_open(&m2, model2));
    CHECK_OK(cterp_act_store(&f, m2, HOOK, corpus, &c, B));
    check_refused("other model", &f, st, n, "model: ", (const char *[]){model2, NULL});
    cterp_model_free(m2);

    // a cache: its rows define the stream; another cache, or a live store's state, is refused
    CHECK_OK(cterp_act_source_cache(&f, cache_dir, &c, B));
    check_refused("a store's state in a cache", &f, st, n, "source: ",
                  (const char *[]){"a live activation store", "an activation cache", NULL});
    cterp_act_source_free(&a);
    CHECK_OK(cterp_act_source_cache(&a, cache_dir, &c, B));
    CHECK_OK(cterp_act_source_cache(&f, cache16, &c, B));
    uint64_t cst[16];
    for (int i = 0; i < 3; i++) CHECK_OK(a.next(a.ctx, x, B));
    int cn = a.get_state(a.ctx, cst, 16);
    check_refused("other cache", &f, cst, cn,
                  "cache: ", (const char *[]){cache16, "1000 rows", NULL});

    // the layout before the fingerprint: refused, saying why
    uint64_t v1[4] = {ACTS_STATE_TAG_V1, st[1], st[2], st[3]};
    CHECK_OK(cterp_act_store(&f, m, HOOK, corpus, &c, B));
    cterp_status e = f.set_state(f.ctx, v1, 4, 3 * B);
    CHECK_MSG(e == CTERP_EFORMAT && strstr(cterp_last_error(), "older cterp"), "v1 state: %d %s", e,
              cterp_last_error());
    cterp_act_source_free(&f);
    cterp_act_source_free(&a);
    free(x);
}

// A damaged copy of the f32 cache: activations.bin with `len` bytes of `patch` at `at` and its
// size cut to `size` (-1: unchanged), tokens.bin cut to tok_size (-1: unchanged). Then the
// reader (info and source) must fail with CTERP_EFORMAT naming `file` and `field`.
static void check_damaged(const char *what, int64_t at, const void *patch, size_t len, int64_t size,
                          int64_t tok_size, const char *file, const char *field) {
    char src[800], dst[800], dir[700];
    snprintf(dir, sizeof dir, "%s.damaged", cache_dir);
    CHECK_OK(file_mkdirs(dir));
    const char *names[2] = {"activations.bin", "tokens.bin"};
    for (int k = 0; k < 2; k++) {
        snprintf(src, sizeof src, "%s/%s", cache_dir, names[k]);
        snprintf(dst, sizeof dst, "%s/%s", dir, names[k]);
        char *d;
        size_t n;
        CHECK_OK(file_read_all(src, &d, &n));
        if (k == 0 && patch) memcpy(d + at, patch, len);
        int64_t cut = k == 0 ? size : tok_size;
        if (cut >= 0 && (size_t)cut < n) n = (size_t)cut;
        CHECK_OK(file_write_all(dst, d, n));
        free(d);
    }
    cterp_cache_info info;
    cterp_act_source s;
    cterp_status e1 = cterp_act_cache_info_read(dir, &info);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cterp_last_error());
    cterp_status e2 = cterp_act_source_cache(&s, dir, NULL, 64);
    CHECK_MSG(e1 == CTERP_EFORMAT && e2 == CTERP_EFORMAT && strstr(msg, file) && strstr(msg, field) &&
                  !strcmp(msg, cterp_last_error()),
              "%s: status %d/%d, message '%s' should name %s and %s", what, e1, e2, msg, file, field);
    printf("%s: %s\n", what, msg);
}

static void test_damaged(void) {
    cterp_cache_info info;
    CHECK_OK(cterp_act_cache_info_read(cache_dir, &info));
    const int64_t full = 4096 + info.count * 64 * 4;
    int64_t count1 = info.count + 1, d_in = 65;
    uint32_t version = 2, dtype = 7;
    check_damaged("truncated", 0, NULL, 0, full - 100, -1, "activations.bin", "count");
    check_damaged("header cut", 0, NULL, 0, 100, -1, "activations.bin", "header");
    check_damaged("wrong magic", 0, "CTRPACTX", 8, -1, -1, "activations.bin", "magic");
    check_damaged("count mismatch", 24, &count1, 8, -1, -1, "activations.bin", "count");
    check_damaged("d_in mismatch", 16, &d_in, 8, -1, -1, "activations.bin", "d_in");
    check_damaged("version", 8, &version, 4, -1, -1, "activations.bin", "version");
    check_damaged("dtype", 12, &dtype, 4, -1, -1, "activations.bin", "dtype");
    check_damaged("tokens.bin short", 0, NULL, 0, -1, info.count * 4 - 4, "tokens.bin", "count");
}

static void test_errors(cterp_model *m) {
    cterp_store_config c;
    cterp_store_config_default(&c);
    int64_t rows;
    CHECK_OK(cterp_store_buffer_rows(&c, 4096, &rows)); // the defaults never trip the check
    CHECK(rows == 32768);
    CHECK_OK(cterp_store_buffer_rows(&c, 1 << 20, &rows));
    CHECK(rows == 4 << 20);
    c.buffer_rows = 1000;
    CHECK(cterp_store_buffer_rows(&c, 4096, &rows) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "buffer_rows") && strstr(cterp_last_error(), "8192"), "%s",
              cterp_last_error());
    cterp_act_source s;
    CHECK(cterp_act_store(&s, m, "blocks.9.hook_resid_post", corpus, NULL, 64) == CTERP_ENOTFOUND);
    CHECK(cterp_act_store(&s, m, "blocks.0.attn.hook_pattern", corpus, NULL, 64) == CTERP_EINVAL);
    CHECK(cterp_act_store(&s, m, HOOK, "/nonexistent.txt", NULL, 64) == CTERP_EIO);
    // a dataset with no complete window: the first batch says so
    cterp_store_config sc = store_cfg(1);
    sc.windows.context_size = 512;
    char tiny[700];
    snprintf(tiny, sizeof tiny, "%s.tiny.txt", corpus);
    FILE *f = fopen(tiny, "w");
    fprintf(f, "One short story.\n");
    fclose(f);
    CHECK_OK(cterp_act_store(&s, m, HOOK, tiny, &sc, 64));
    float x[64 * 64];
    CHECK(s.next(s.ctx, x, 64) == CTERP_EFORMAT && strstr(cterp_last_error(), "no complete window"));
    cterp_act_source_free(&s);
    // a cache file that is not one
    char bad[700];
    snprintf(bad, sizeof bad, "%s.bad", cache_dir);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && printf 'garbage' > '%s/activations.bin'", bad, bad);
    CHECK(system(cmd) == 0);
    CHECK(cterp_act_source_cache(&s, bad, NULL, 64) == CTERP_EFORMAT && strstr(cterp_last_error(), "magic"));
}

int main(void) {
    const char *data = test_data_dir();
    if (!data) {
        printf("skip: shared test data not found (set CTERP_TESTDATA)\n");
        return test_done();
    }
    const char *tmp = test_tmpdir("acts");
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K.gguf", data);
    snprintf(corpus, sizeof corpus, "%s/stories.txt", tmp);
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", tmp);
    snprintf(cache16, sizeof cache16, "%s/cache16", tmp);
    cterp_model *m;
    CHECK_OK(cterp_model_open(&m, mp));
    if (!m) return test_done();
    CHECK(write_story_corpus(m, corpus, 16, 100, 1) == 0);
    test_rows(m);
    test_store(m);
    test_run_sized_buffer(m);
    test_warm_start(m);
    test_overlap(m);
    test_errors(m);
    test_damaged();
    test_resume_fingerprint(m, mp);
    cterp_model_free(m);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) return 1;
    return test_done();
}
