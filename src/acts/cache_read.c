// The activation cache's reader (cache_impl.h): a source (cterp_act_source) that reads the rows of
// every shard with pread and serves them through the live store's mixing buffer, with a resume
// state that names the cache (its rows and a hash of sampled bytes).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acts/acts_impl.h"
#include "acts/cache_impl.h"
#include "core/file.h"
#include "core/half.h"
#include "core/hash.h"

// ---- reader source ------------------------------------------------------------------------
// The rows are read with pread, not mapped: each refill of the mixing buffer reads its rows (in
// cache order, in runs of up to CACHE_READ_BYTES) into the slots they take, as the store computes
// them into its slots, so memory is the buffer's rows, whatever the size of the cache.

#define CACHE_READ_BYTES ((size_t)4 << 20)

typedef struct {
    cache_file f[CACHE_MAX_SHARDS]; // activations.bin (shard 0) and a sharded cache's others
    cterp_cache_info info;
    // a sharded cache (version 2): chunk c holds rows chunk_start[c] .. chunk_start[c + 1) of the
    // cache, in shard c % P from row chunk_off[c]
    int64_t n_chunks, *chunk_start, *chunk_off;
    mixer mx;
    acts_fingerprint fp;
    char *dir;
    size_t row_bytes;   // d_in x the dtype's size
    int64_t *slot_row;  // (cap) cache row held by each slot (-1: none yet)
    uint8_t *slot_data; // (cap, row_bytes) the rows themselves, as in the file
    uint8_t *stage;     // (stage_rows, row_bytes) a run of rows read at once
    int64_t stage_rows;
    int replaying; // set_state: move the indices only
    int64_t next_row, epochs, produced;
} cache_src;

// Where cache row r lies (shard and byte offset) and how many rows from it are contiguous there.
static void row_loc(const cache_src *s, int64_t r, int *k, uint64_t *off, int64_t *run) {
    if (s->info.shards <= 1) {
        *k = 0, *off = CACHE_HEADER + (uint64_t)r * s->row_bytes, *run = s->info.count - r;
        return;
    }
    int64_t lo = 0, hi = s->n_chunks - 1; // chunk_start[0] = 0 <= r
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        if (s->chunk_start[mid] <= r) lo = mid;
        else hi = mid - 1;
    }
    *k = (int)(lo % s->info.shards);
    *off = CACHE_HEADER + (uint64_t)(s->chunk_off[lo] + r - s->chunk_start[lo]) * s->row_bytes;
    *run = s->chunk_start[lo + 1] - r;
}

// Reads n rows from cache row r on (no wrap) into dst.
static cterp_status read_rows(cache_src *s, int64_t r, int64_t n, uint8_t *dst) {
    while (n > 0) {
        int k;
        uint64_t off;
        int64_t run;
        row_loc(s, r, &k, &off, &run);
        if (run > n) run = n;
        if (run < 1)
            return cterp_error(CTERP_EFORMAT, "%s: row %lld is in no chunk", s->dir, (long long)r);
        cterp_status e = file_pread_all(s->f[k].fd, dst, (size_t)run * s->row_bytes, off, s->dir);
        if (e) return e;
        r += run, n -= run, dst += (size_t)run * s->row_bytes;
    }
    return CTERP_OK;
}

// The next n rows of the cache (wrapping at its end) into the given slots.
static cterp_status cache_fill(void *ctx, const int64_t *slots, int64_t n) {
    cache_src *s = ctx;
    for (int64_t i = 0; i < n;) {
        const int64_t r0 = s->next_row;
        int64_t m = n - i < s->stage_rows ? n - i : s->stage_rows;
        if (m > s->info.count - r0) m = s->info.count - r0; // up to the end; the next run wraps
        if (!s->replaying) {
            cterp_status e = read_rows(s, r0, m, s->stage);
            if (e) return e;
        }
        for (int64_t j = 0; j < m; j++) {
            const int64_t slot = slots[i + j];
            s->slot_row[slot] = r0 + j;
            if (!s->replaying)
                memcpy(s->slot_data + (size_t)slot * s->row_bytes,
                       s->stage + (size_t)j * s->row_bytes, s->row_bytes);
        }
        s->produced += m, s->next_row += m, i += m;
        if (s->next_row == s->info.count) s->next_row = 0, s->epochs++; // wrap, as the store does
    }
    return CTERP_OK;
}

// Serves B rows, writing rows [lo, hi) of them into x (a data-parallel rank's part; all of
// them for next): the indices of every row move on, only the part's are read.
static cterp_status cache_next_part(void *ctx, float *x, int64_t B, int64_t lo, int64_t hi) {
    cache_src *s = ctx;
    const int64_t D = s->info.d_in;
    for (int64_t b = 0; b < B; b++) {
        int64_t slot;
        cterp_status e = mixer_next(&s->mx, &slot, cache_fill, s);
        if (e) return e;
        if (b < lo || b >= hi) continue;
        float *o = x + (b - lo) * D;
        const uint8_t *p = s->slot_data + (size_t)slot * s->row_bytes;
        if (s->info.dtype == CTERP_DTYPE_F32) {
            memcpy(o, p, (size_t)D * 4);
        } else {
            for (int64_t d = 0; d < D; d++) {
                uint16_t h;
                memcpy(&h, p + 2 * d, 2);
                o[d] = s->info.dtype == CTERP_DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
    }
    return CTERP_OK;
}

static cterp_status cache_next(void *ctx, float *x, int64_t B) { return cache_next_part(ctx, x, B, 0, B); }

static int cache_get_state(void *ctx, uint64_t *st, int cap) {
    cache_src *s = ctx;
    return acts_get_state(&s->mx, &s->fp, st, cap);
}

// Replays the mixing buffer over row indices only, then reads the rows the slots hold.
static cterp_status cache_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    cache_src *s = ctx;
    uint64_t served;
    cterp_status ce =
        acts_check_state(&s->mx, &s->fp, st, n, max_rows, "activation cache", &served);
    if (ce) return ce;
    mixer_reset(&s->mx);
    s->next_row = s->epochs = s->produced = 0;
    for (int64_t i = 0; i < s->mx.cap; i++) s->slot_row[i] = -1;
    s->replaying = 1;
    for (uint64_t i = 0; i < served && !ce; i++) {
        int64_t slot;
        ce = mixer_next(&s->mx, &slot, cache_fill, s);
    }
    s->replaying = 0;
    for (int64_t i = 0; i < s->mx.cap && !ce; i++)
        if (s->slot_row[i] >= 0)
            ce = read_rows(s, s->slot_row[i], 1, s->slot_data + (size_t)i * s->row_bytes);
    return ce;
}

static void cache_free(void *ctx) {
    cache_src *s = ctx;
    for (int k = 0; k < CACHE_MAX_SHARDS; k++) cache_file_close(&s->f[k]);
    free(s->chunk_start), free(s->chunk_off);
    mixer_free(&s->mx);
    free(s->slot_row), free(s->slot_data), free(s->stage);
    free(s->dir);
    free(s);
}

// A sharded cache: shards 1..P-1 (each a version 2 file agreeing with activations.bin) and the
// chunk table shards.bin, checked against every shard's row count before a row is looked up.
static cterp_status open_shards(cache_src *s, const char *dir) {
    const int P = s->info.shards;
    const cterp_cache_info *i0 = &s->info;
    int64_t rows[CACHE_MAX_SHARDS] = {0};
    rows[0] = i0->shard_rows;
    cterp_status e = CTERP_OK;
    for (int k = 1; k < P && !e; k++) {
        char *p = cache_shard_path(dir, "activations", k);
        cterp_cache_info ik;
        int idx = -1;
        int64_t nc = 0;
        if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
        e = cache_file_open(&s->f[k], p);
        if (!e) e = cache_decode_header(p, s->f[k].hdr, (size_t)s->f[k].size, &ik, &idx, &nc);
        if (!e && (ik.shards != P || idx != k || ik.dtype != i0->dtype || ik.d_in != i0->d_in ||
                   ik.count != i0->count || nc != s->n_chunks))
            e = cterp_error(CTERP_EFORMAT, "%s: shard %d of %d, dtype %d, d_in %lld, count %lld, chunks %lld: "
                            "expected shard %d of %d, dtype %d, d_in %lld, count %lld, chunks %lld (from "
                            "activations.bin): a shard of another cache", p, idx, ik.shards, (int)ik.dtype,
                            (long long)ik.d_in, (long long)ik.count, (long long)nc, k, P, (int)i0->dtype,
                            (long long)i0->d_in, (long long)i0->count, (long long)s->n_chunks);
        if (!e) e = cache_check_tokens_shard(dir, &ik, k);
        free(p);
        if (!e) rows[k] = ik.shard_rows;
    }
    if (e) return e;
    char *pc = file_join(dir, "shards.bin"), *cm = NULL;
    size_t cm_size = 0;
    if (!pc) return cterp_error(CTERP_ENOMEM, "out of memory");
    e = file_read_all(pc, &cm, &cm_size);
    if (!e && cm_size != (size_t)s->n_chunks * 8)
        e = cterp_error(CTERP_EFORMAT,
                        "%s: size %zu bytes, expected chunks %lld (from activations.bin) x 8 bytes",
                        pc, cm_size, (long long)s->n_chunks);
    s->chunk_start = malloc((size_t)(s->n_chunks + 1) * sizeof(int64_t));
    s->chunk_off = malloc((size_t)s->n_chunks * sizeof(int64_t));
    if (!e && (!s->chunk_start || !s->chunk_off)) e = cterp_error(CTERP_ENOMEM, "out of memory");
    int64_t total = 0, in_shard[CACHE_MAX_SHARDS] = {0};
    for (int64_t c = 0; c < s->n_chunks && !e; c++) {
        int64_t n;
        memcpy(&n, cm + c * 8, 8);
        if (n < 0 || n > rows[c % P] - in_shard[c % P]) {
            e = cterp_error(CTERP_EFORMAT, "%s: chunk %lld has %lld rows, shard %d holds %lld more", pc,
                            (long long)c, (long long)n, (int)(c % P), (long long)(rows[c % P] - in_shard[c % P]));
            break;
        }
        s->chunk_start[c] = total, s->chunk_off[c] = in_shard[c % P];
        total += n, in_shard[c % P] += n;
    }
    if (!e) s->chunk_start[s->n_chunks] = total;
    for (int k = 0; k < P && !e; k++)
        if (in_shard[k] != rows[k])
            e = cterp_error(CTERP_EFORMAT, "%s: its chunks give shard %d %lld rows, the shard holds %lld", pc, k,
                            (long long)in_shard[k], (long long)rows[k]);
    if (!e && total != s->info.count)
        e = cterp_error(CTERP_EFORMAT, "%s: its chunks hold %lld rows, activations.bin's count is %lld", pc,
                        (long long)total, (long long)s->info.count);
    free(cm);
    free(pc);
    return e;
}

// hash_sampled over n bytes of a file from off, read in pieces (the same value as over a map).
static cterp_status hash_sampled_file(uint64_t *h, const cache_file *f, uint64_t off, uint64_t n,
                                      const char *path, uint8_t *buf, size_t cap) {
    const uint64_t blk = (uint64_t)1 << 20, nb = HASH_SAMPLE_MAX / blk;
    const int whole = n <= HASH_SAMPLE_MAX;
    uint64_t v = hash_u64(*h, n);
    for (uint64_t b = 0; b < (whole ? 1 : nb); b++) {
        const uint64_t at = whole ? off : off + (n - blk) * b / (nb - 1), len = whole ? n : blk;
        hash_state hs;
        hash_begin(&hs, v);
        for (uint64_t done = 0; done < len;) {
            const size_t k = len - done < cap ? (size_t)(len - done) : cap; // cap: a multiple of 8
            cterp_status e = file_pread_all(f->fd, buf, k, at + done, path);
            if (e) return e;
            hash_feed(&hs, buf, k);
            done += k;
        }
        v = hash_end(&hs);
    }
    *h = v;
    return CTERP_OK;
}

// 0 or the test hook's rows per read (CTERP_TEST_CACHE_READ_ROWS, docs/reliability.md)
static int64_t read_rows_env(void) {
    const char *e = getenv("CTERP_TEST_CACHE_READ_ROWS");
    return e && atoll(e) > 0 ? atoll(e) : 0;
}

cterp_status cterp_act_source_cache(cterp_act_source *src, const char *dir,
                                    const cterp_store_config *c, int64_t train_batch) {
    memset(src, 0, sizeof *src);
    cterp_store_config cd;
    if (!c) cterp_store_config_default(&cd), c = &cd;
    int64_t cap;
    cterp_status e = cterp_store_buffer_rows(c, train_batch, &cap);
    if (e) return e;
    cache_src *s = calloc(1, sizeof *s);
    char *p = file_join(dir, "activations.bin");
    if (!s || !p) {
        free(s), free(p);
        return cterp_error(CTERP_ENOMEM, "out of memory");
    }
    for (int k = 0; k < CACHE_MAX_SHARDS; k++) s->f[k].fd = -1;
    e = cache_check_complete(dir, p);
    if (!e) e = cache_file_open(&s->f[0], p);
    if (!e) e = cache_decode_header(p, s->f[0].hdr, (size_t)s->f[0].size, &s->info, NULL, &s->n_chunks);
    free(p);
    if (!e) e = cache_check_tokens(dir, &s->info);
    if (!e && s->info.shards > 1) e = open_shards(s, dir);
    if (!e) e = mixer_init(&s->mx, cap, c->seed);
    if (!e) mixer_serve_whole_if_run_fits(&s->mx, c);
    if (!e && !(s->dir = strdup(dir))) e = cterp_error(CTERP_ENOMEM, "out of memory");
    if (e) {
        cache_free(s);
        return e;
    }
    s->row_bytes = (size_t)s->info.d_in * cache_dtype_size(s->info.dtype);
    const int64_t env = read_rows_env();
    s->stage_rows = env ? env : (int64_t)(CACHE_READ_BYTES / s->row_bytes) + 1;
    if (s->stage_rows > cap) s->stage_rows = cap;
    s->slot_row = malloc((size_t)cap * sizeof *s->slot_row);
    if ((uint64_t)cap <= SIZE_MAX / s->row_bytes) s->slot_data = malloc((size_t)cap * s->row_bytes);
    s->stage = malloc((size_t)s->stage_rows * s->row_bytes > CACHE_READ_BYTES
                          ? (size_t)s->stage_rows * s->row_bytes
                          : CACHE_READ_BYTES);
    if (!s->slot_row || !s->slot_data || !s->stage) {
        e = cterp_error(
            CTERP_ENOMEM,
            "activation cache: out of memory for the mixing buffer (%lld rows x %zu bytes: "
            "lower --buffer-rows)",
            (long long)cap, s->row_bytes);
        cache_free(s);
        return e;
    }
    for (int64_t i = 0; i < cap; i++) s->slot_row[i] = -1;
    // the rows alone define what is served: not the header's names, so a copy matches
    acts_fingerprint *fp = &s->fp;
    fp->kind = ACTS_CACHE;
    fp->data_bytes = (uint64_t)s->info.count;
    fp->data_hash =
        hash_u64(hash_u64(0x63616368ULL, (uint64_t)s->info.d_in), (uint64_t)s->info.dtype);
    for (int k = 0; k < s->info.shards && !e;
         k++) // a sharded cache: every shard's rows, and their order
        e = hash_sampled_file(&fp->data_hash, &s->f[k], CACHE_HEADER, s->f[k].size - CACHE_HEADER,
                              s->dir, s->stage, CACHE_READ_BYTES);
    if (e) {
        cache_free(s);
        return e;
    }
    if (s->info.shards > 1)
        fp->data_hash = hash_bytes(fp->data_hash, s->chunk_start, (size_t)(s->n_chunks + 1) * sizeof(int64_t));
    fp->data_path = s->dir;
    src->d_in = s->info.d_in;
    src->ctx = s;
    src->next = cache_next;
    src->next_part = cache_next_part;
    src->get_state = cache_get_state;
    src->set_state = cache_set_state;
    src->free = cache_free;
    snprintf(src->description, sizeof src->description, "cache %.80s (%.60s at %.60s, %lld rows, buffer %lld rows)",
             dir, s->info.model, s->info.hook, (long long)s->info.count, (long long)cap);
    return CTERP_OK;
}

cterp_status cache_source_stats(const cterp_act_source *src, cterp_store_stats *st);
cterp_status cache_source_stats(const cterp_act_source *src, cterp_store_stats *st) {
    if (src->next != cache_next)
        return cterp_error(CTERP_EINVAL, "stats: %s is not an activation store or cache", src->description);
    const cache_src *s = src->ctx;
    st->rows_produced = s->produced;
    st->rows_served = s->mx.served;
    st->epochs = s->epochs;
    st->buffer_rows = s->mx.cap;
    return CTERP_OK;
}
