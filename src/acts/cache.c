// Activation cache files: the writer runs the store's row stream into activations.bin (4096-byte
// header + rows) and tokens.bin (int32 per row); the reader is a source that mmaps the rows and
// serves them through the same mixing buffer as the live store. activations.bin is written last
// (its header last of all), so a directory without it is an interrupted run, never a cache.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acts/acts_impl.h"
#include "core/file.h"
#include "core/half.h"
#include "core/hash.h"

#define CACHE_MAGIC "CTRPACTS"
#define CACHE_VERSION 1u
#define CACHE_HEADER 4096 // rows start page-aligned

_Static_assert(64 + 256 + 256 + 1024 <= CACHE_HEADER, "cache header fields fit the header");

static size_t dtype_size(cterp_dtype t) { return t == CTERP_DTYPE_F32 ? 4 : 2; }

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); } // files are little-endian, as the hosts
static void put_i64(uint8_t *p, int64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static int64_t get_i64(const uint8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void encode_header(uint8_t *h, const cterp_cache_info *in) {
    memset(h, 0, CACHE_HEADER);
    memcpy(h, CACHE_MAGIC, 8);
    put_u32(h + 8, CACHE_VERSION);
    put_u32(h + 12, (uint32_t)in->dtype);
    put_i64(h + 16, in->d_in);
    put_i64(h + 24, in->count);
    put_i64(h + 32, in->windows);
    put_u32(h + 40, (uint32_t)in->context_size);
    put_u32(h + 44, (uint32_t)in->prepend_bos);
    put_u32(h + 48, (uint32_t)in->separator);
    put_u32(h + 52, (uint32_t)in->concat);
    put_u32(h + 56, (uint32_t)in->exclude_special);
    put_u32(h + 60, (uint32_t)in->complete_epoch);
    memcpy(h + 64, in->model, 255);
    memcpy(h + 320, in->hook, 255);
    memcpy(h + 576, in->dataset, 1023);
}

// Checks a header against the file size; the message names the file and the field.
static cterp_status decode_header(const char *path, const uint8_t *h, size_t size, cterp_cache_info *o) {
    memset(o, 0, sizeof *o);
    if (size < CACHE_HEADER || memcmp(h, CACHE_MAGIC, 8)) {
        char found[40] = "", *f = found; // the first bytes, printable or \xNN
        for (size_t i = 0; i < 8 && i < size; i++)
            f += h[i] >= 32 && h[i] < 127 && h[i] != '"' && h[i] != '\\' ? sprintf(f, "%c", h[i]) : sprintf(f, "\\x%02x", h[i]);
        if (size >= 8 && !memcmp(h, CACHE_MAGIC, 8))
            return cterp_error(CTERP_EFORMAT, "%s: size %zu bytes, shorter than the %d-byte header", path, size,
                               CACHE_HEADER);
        return cterp_error(CTERP_EFORMAT, "%s: not a cterp activation cache: magic: expected \"%s\", found \"%s\"",
                           path, CACHE_MAGIC, found);
    }
    o->version = get_u32(h + 8);
    if (o->version != CACHE_VERSION)
        return cterp_error(CTERP_EFORMAT, "%s: version: expected %u, found %u", path, CACHE_VERSION, o->version);
    uint32_t dt = get_u32(h + 12);
    if (dt > CTERP_DTYPE_BF16)
        return cterp_error(CTERP_EFORMAT, "%s: dtype: expected 0 (f32), 1 (f16) or 2 (bf16), found %u", path, dt);
    o->dtype = (cterp_dtype)dt;
    o->d_in = get_i64(h + 16), o->count = get_i64(h + 24), o->windows = get_i64(h + 32);
    o->context_size = (int)get_u32(h + 40), o->prepend_bos = (int)get_u32(h + 44);
    o->separator = (int)get_u32(h + 48), o->concat = (int)get_u32(h + 52);
    o->exclude_special = (int)get_u32(h + 56), o->complete_epoch = (int)get_u32(h + 60);
    memcpy(o->model, h + 64, 255), memcpy(o->hook, h + 320, 255), memcpy(o->dataset, h + 576, 1023);
    if (o->d_in < 1 || o->d_in > (1 << 24) || o->count < 1)
        return cterp_error(CTERP_EFORMAT, "%s: d_in %lld / count %lld: expected d_in in 1..2^24 and count >= 1",
                           path, (long long)o->d_in, (long long)o->count);
    size_t row = (size_t)o->d_in * dtype_size(o->dtype);
    if ((uint64_t)o->count > (SIZE_MAX - CACHE_HEADER) / row ||
        CACHE_HEADER + (size_t)o->count * row != size)
        return cterp_error(CTERP_EFORMAT, "%s: size %zu bytes, expected the header (%d) + count %lld x d_in "
                           "%lld x %zu bytes", path, size, CACHE_HEADER, (long long)o->count,
                           (long long)o->d_in, dtype_size(o->dtype));
    return CTERP_OK;
}

// tokens.bin holds one int32 per row; training does not read it, but when present its size must
// match the header's count (a cache whose two files disagree is damaged).
static cterp_status check_tokens(const char *dir, const cterp_cache_info *info) {
    char *p = file_join(dir, "tokens.bin");
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    struct stat sb;
    cterp_status s = CTERP_OK;
    if (stat(p, &sb) == 0 && (uint64_t)sb.st_size != (uint64_t)info->count * 4)
        s = cterp_error(CTERP_EFORMAT, "%s: size %lld bytes, expected count %lld (from activations.bin) x 4 bytes",
                        p, (long long)sb.st_size, (long long)info->count);
    free(p);
    return s;
}

// activations.bin missing: an interrupted writer's leftovers say so.
static cterp_status check_complete(const char *dir, const char *apath) {
    if (file_exists(apath) || !file_is_dir(dir)) return CTERP_OK; // the open says what is wrong
    int partial = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        partial |=
            !strcmp(e->d_name, "tokens.bin") || !strncmp(e->d_name, "activations.bin.tmp.", 20);
    if (d) closedir(d);
    if (!partial) return CTERP_OK;
    return cterp_error(
        CTERP_EFORMAT,
        "%s: an incomplete activation cache: activations.bin, written last, is "
        "missing (a cterp cache run was interrupted or is still running; run it again)",
        dir);
}

// Before a run writes: the old activations.bin goes first (a cache half rewritten is not a
// cache), and the temporaries of killed runs (named <file>.tmp.<pid>) with it.
static cterp_status clear_cache_dir(const char *dir, const char *apath) {
    if (unlink(apath) != 0 && errno != ENOENT)
        return cterp_error(CTERP_EIO, "%s: cannot remove the previous cache: %s", apath,
                           strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return cterp_error(CTERP_EIO, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "activations.bin.tmp.", 20) ||
            !strncmp(e->d_name, "tokens.bin.tmp.", 15)) {
            char *p = file_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    closedir(d);
    return file_fsync_dir(dir);
}

cterp_status cterp_act_cache_info_read(const char *dir, cterp_cache_info *info) {
    char *p = file_join(dir, "activations.bin");
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    file_map fm = {0};
    cterp_status s = check_complete(dir, p);
    if (!s) s = file_map_open(&fm, p);
    if (!s) s = decode_header(p, fm.data, fm.size, info);
    if (!s) s = check_tokens(dir, info);
    file_map_close(&fm);
    free(p);
    return s;
}

cterp_status cterp_act_cache_write(cterp_model *m, const char *model_name, const char *hook,
                                   const char *dataset, const cterp_store_config *c,
                                   int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                   cterp_cache_progress_fn progress, void *user,
                                   cterp_cache_info *info) {
    cterp_store_config cd;
    if (!c) cterp_store_config_default(&cd), c = &cd;
    if (max_tokens < 1) return cterp_error(CTERP_EINVAL, "tokens: expected >= 1, got %lld", (long long)max_tokens);
    if (dtype > CTERP_DTYPE_BF16) return cterp_error(CTERP_EINVAL, "dtype: expected f32, f16 or bf16");
    cterp_status s = file_mkdirs(out_dir);
    if (s) return s;
    int lock;
    if ((s = file_lock_dir(out_dir, "cache writer", &lock))) return s;
    char *pa = file_join(out_dir, "activations.bin"), *pt = file_join(out_dir, "tokens.bin");
    if (!pa || !pt) {
        free(pa), free(pt), file_unlock_dir(lock);
        return cterp_error(CTERP_ENOMEM, "cache: out of memory");
    }
    act_stream st;
    if ((s = clear_cache_dir(out_dir, pa)) || (s = stream_open(&st, m, hook, dataset, c))) {
        free(pa), free(pt), file_unlock_dir(lock);
        return s;
    }
    uint8_t *hdr = calloc(1, CACHE_HEADER), *conv = malloc((size_t)st.D * 4);
    file_atomic wa = {0}, wt = {0};
    int oa = 0, ot = 0;
    if (!hdr || !conv) {
        s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
        goto done;
    }
    if ((s = file_atomic_open(&wa, pa))) goto done;
    oa = 1;
    if ((s = file_atomic_open(&wt, pt))) goto done;
    ot = 1;
    if ((s = file_atomic_write(&wa, hdr, CACHE_HEADER))) goto done; // the real header comes last
    cterp_cache_info in;
    memset(&in, 0, sizeof in);
    in.version = CACHE_VERSION, in.dtype = dtype, in.d_in = st.D;
    in.context_size = c->windows.context_size, in.prepend_bos = c->windows.prepend_bos;
    in.separator = c->windows.separator, in.concat = c->windows.concat;
    in.exclude_special = c->windows.exclude_special;
    snprintf(in.model, sizeof in.model, "%s", model_name ? model_name : "");
    snprintf(in.hook, sizeof in.hook, "%s", hook);
    snprintf(in.dataset, sizeof in.dataset, "%s", dataset);
    while (in.count < max_tokens) {
        const float *row;
        int32_t tok;
        int eof = 0;
        if ((s = stream_next(&st, &row, &tok, 1, &eof))) goto done;
        if (eof) {
            in.complete_epoch = 1;
            break;
        }
        const void *out = row;
        if (dtype != CTERP_DTYPE_F32) {
            uint16_t *h = (uint16_t *)conv;
            for (int64_t d = 0; d < st.D; d++) h[d] = dtype == CTERP_DTYPE_F16 ? f32_to_f16(row[d]) : f32_to_bf16(row[d]);
            out = conv;
        }
        if ((s = file_atomic_write(&wa, out, (size_t)st.D * dtype_size(dtype)))) goto done;
        if ((s = file_atomic_write(&wt, &tok, 4))) goto done;
        in.count++;
        if (progress && in.count % 4096 == 0) progress(in.count, max_tokens, user);
    }
    int64_t windows = st.windows;
    if (!in.complete_epoch && in.count > 0) { // max_tokens reached: was that exactly the whole dataset?
        const float *row;
        int eof = 0;
        if ((s = stream_next(&st, &row, NULL, 1, &eof))) goto done;
        in.complete_epoch = eof;
    }
    if (in.count == 0) {
        s = cterp_error(CTERP_EFORMAT, "%s: no activations: no complete window of %d tokens", dataset,
                        c->windows.context_size);
        goto done;
    }
    in.windows = windows;
    encode_header(hdr, &in);
    FILE *f = wa.fp;
    if (fseek(f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, CACHE_HEADER, f) != CACHE_HEADER) {
        s = cterp_error(CTERP_EIO, "%s: cannot write the header", pa);
        goto done;
    }
    if ((s = file_atomic_commit(&wt))) goto done;
    ot = 0;
    file_test_point("cache-tokens"); // tokens.bin in place, activations.bin not yet
    s = file_atomic_commit(&wa);
    oa = 0;
    if (!s && progress) progress(in.count, max_tokens, user);
    if (!s && info) *info = in;
done:
    if (oa) file_atomic_abort(&wa);
    if (ot) file_atomic_abort(&wt);
    stream_close(&st);
    free(pa), free(pt), free(hdr), free(conv);
    file_unlock_dir(lock);
    return s;
}

// ---- reader source ------------------------------------------------------------------------

typedef struct {
    file_map fm;
    cterp_cache_info info;
    const uint8_t *rows;
    mixer mx;
    acts_fingerprint fp;
    char *dir;
    int64_t *slot_row; // (cap) cache row held by each slot
    int64_t next_row, epochs, produced;
} cache_src;

static cterp_status cache_fill(void *ctx, const int64_t *slots, int64_t n) {
    cache_src *s = ctx;
    for (int64_t i = 0; i < n; i++) {
        s->slot_row[slots[i]] = s->next_row++;
        s->produced++;
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
        int64_t r = s->slot_row[slot];
        float *o = x + (b - lo) * D;
        if (s->info.dtype == CTERP_DTYPE_F32) {
            memcpy(o, s->rows + (size_t)r * D * 4, (size_t)D * 4);
        } else {
            const uint8_t *p = s->rows + (size_t)r * D * 2;
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

// Replays the mixing buffer over row indices only: no activation is read.
static cterp_status cache_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    cache_src *s = ctx;
    uint64_t served;
    cterp_status ce =
        acts_check_state(&s->mx, &s->fp, st, n, max_rows, "activation cache", &served);
    if (ce) return ce;
    mixer_reset(&s->mx);
    s->next_row = s->epochs = s->produced = 0;
    for (uint64_t i = 0; i < served; i++) {
        int64_t slot;
        cterp_status e = mixer_next(&s->mx, &slot, cache_fill, s);
        if (e) return e;
    }
    return CTERP_OK;
}

static void cache_free(void *ctx) {
    cache_src *s = ctx;
    file_map_close(&s->fm);
    mixer_free(&s->mx);
    free(s->slot_row);
    free(s->dir);
    free(s);
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
    e = check_complete(dir, p);
    if (!e) e = file_map_open(&s->fm, p);
    if (!e) e = decode_header(p, s->fm.data, s->fm.size, &s->info);
    free(p);
    if (!e) e = check_tokens(dir, &s->info);
    if (!e) e = mixer_init(&s->mx, cap, c->seed);
    if (!e) mixer_serve_whole_if_run_fits(&s->mx, c);
    if (!e && !(s->dir = strdup(dir))) e = cterp_error(CTERP_ENOMEM, "out of memory");
    if (!e && !(s->slot_row = malloc((size_t)cap * sizeof *s->slot_row)))
        e = cterp_error(CTERP_ENOMEM, "activation cache: out of memory (%lld rows)", (long long)cap);
    if (e) {
        cache_free(s);
        return e;
    }
    s->rows = s->fm.data + CACHE_HEADER;
    // the rows alone define what is served: not the header's names, so a copy matches
    acts_fingerprint *fp = &s->fp;
    fp->kind = ACTS_CACHE;
    fp->data_bytes = (uint64_t)s->info.count;
    fp->data_hash =
        hash_u64(hash_u64(0x63616368ULL, (uint64_t)s->info.d_in), (uint64_t)s->info.dtype);
    fp->data_hash = hash_sampled(fp->data_hash, s->rows, s->fm.size - CACHE_HEADER);
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
