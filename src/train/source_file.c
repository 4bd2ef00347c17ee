// Activations from a .npy (float32/16/64, [n, d_in]) or raw little-endian f32 file, served in a
// seeded random order: a fresh permutation of the rows each epoch; state = (epoch, position) and
// what must match for a resume to replay the same rows: the seed, the shape and a fingerprint of
// the values (core/hash.h: a copy of the file elsewhere matches, another file does not).
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/hash.h"
#include "core/rng.h"
#include "cterp/train.h"
#include "io/npy.h"

typedef struct {
    npy_file npy;     // .npy files
    file_map raw;     // raw f32 files
    int is_npy;
    int64_t rows, cols;
    uint64_t seed, epoch;
    int64_t pos;
    int64_t *perm;    // (rows) order of this epoch
    uint64_t hash;    // the values (and their dtype)
    char *path;       // for the messages
} file_src;

#define FILE_STATE_TAG 0x43545250524f5753ULL // "CTRPROWS"
enum { FILE_STATE_WORDS = 7 };

static void make_perm(file_src *s) {
    rng_t r;
    rng_seed(&r, s->seed ^ (0xa5a5a5a5ULL * (s->epoch + 1)));
    for (int64_t i = 0; i < s->rows; i++) s->perm[i] = i;
    for (int64_t i = s->rows - 1; i > 0; i--) { // Fisher-Yates
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = s->perm[i];
        s->perm[i] = s->perm[j], s->perm[j] = t;
    }
}

static cterp_status file_next(void *ctx, float *x, int64_t B) {
    file_src *s = ctx;
    for (int64_t b = 0; b < B; b++) {
        if (s->pos == s->rows) { // next epoch, new order
            s->epoch++, s->pos = 0;
            make_perm(s);
        }
        int64_t r = s->perm[s->pos++];
        if (s->is_npy) {
            cterp_status st = npy_read_rows(&s->npy, r, 1, x + b * s->cols);
            if (st) return st;
        } else {
            memcpy(x + b * s->cols, s->raw.data + (size_t)r * s->cols * 4, (size_t)s->cols * 4);
        }
    }
    return CTERP_OK;
}

static int file_get_state(void *ctx, uint64_t *st, int cap) {
    file_src *s = ctx;
    if (cap < FILE_STATE_WORDS) return 0;
    const uint64_t w[FILE_STATE_WORDS] = {FILE_STATE_TAG, s->epoch, (uint64_t)s->pos, s->seed,
                                          (uint64_t)s->rows, (uint64_t)s->cols, s->hash};
    memcpy(st, w, sizeof w);
    return FILE_STATE_WORDS;
}

// A 2-word state (epoch, position) is the layout before the fingerprint: it is taken as it is.
static cterp_status file_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    file_src *s = ctx;
    const int old = n == 2;
    if (!old && (n != FILE_STATE_WORDS || st[0] != FILE_STATE_TAG))
        return cterp_error(CTERP_EFORMAT, "activation file state: expected %d words tagged 0x%016llx "
                           "(a file position), found %d words tagged 0x%016llx", FILE_STATE_WORDS,
                           (unsigned long long)FILE_STATE_TAG, n, n > 0 ? (unsigned long long)st[0] : 0ULL);
    const uint64_t epoch = old ? st[0] : st[1], pos = old ? st[1] : st[2];
    if (!old && (st[4] != (uint64_t)s->rows || st[5] != (uint64_t)s->cols || st[6] != s->hash))
        return cterp_error(CTERP_EINVAL, "activations: the checkpoint's rows came from a file of shape "
                           "[%llu, %llu] (fingerprint 0x%016llx), this run reads '%s' [%lld, %lld] "
                           "(fingerprint 0x%016llx%s); resume with the same --acts file, or start a new run",
                           (unsigned long long)st[4], (unsigned long long)st[5], (unsigned long long)st[6],
                           s->path, (long long)s->rows, (long long)s->cols, (unsigned long long)s->hash,
                           st[4] == (uint64_t)s->rows && st[5] == (uint64_t)s->cols ? ": other values" : "");
    if (!old && st[3] != s->seed)
        return cterp_error(CTERP_EINVAL, "seed: the checkpoint's row order came from seed %llu, this run "
                           "has %llu; resume with the checkpoint's seed, or start a new run",
                           (unsigned long long)st[3], (unsigned long long)s->seed);
    if (pos > (uint64_t)s->rows)
        return cterp_error(CTERP_EFORMAT, "activation file position: row %llu of %lld",
                           (unsigned long long)pos, (long long)s->rows);
    // rows served = epoch * rows + pos (rows >= 1), without overflowing
    if (max_rows < 0 || epoch > (uint64_t)max_rows / (uint64_t)s->rows ||
        epoch * (uint64_t)s->rows + pos > (uint64_t)max_rows)
        return cterp_error(CTERP_EFORMAT,
                           "activation file position: epoch %llu, row %llu: more rows than "
                           "the %lld taken",
                           (unsigned long long)epoch, (unsigned long long)pos, (long long)max_rows);
    s->epoch = epoch, s->pos = (int64_t)pos;
    make_perm(s);
    return CTERP_OK;
}

static void file_free(void *ctx) {
    file_src *s = ctx;
    npy_close(&s->npy);
    file_map_close(&s->raw);
    free(s->perm);
    free(s->path);
    free(s);
}

cterp_status cterp_act_source_file(cterp_act_source *src, const char *path, int64_t d_in_raw,
                                   uint64_t seed) {
    memset(src, 0, sizeof *src);
    file_src *s = calloc(1, sizeof *s);
    if (!s) return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(path);
    cterp_status st;
    if (n >= 4 && !strcmp(path + n - 4, ".npy")) {
        if ((st = npy_open(&s->npy, path))) {
            free(s);
            return st;
        }
        s->is_npy = 1, s->rows = s->npy.rows, s->cols = s->npy.cols;
    } else {
        if (d_in_raw <= 0) {
            free(s);
            return cterp_error(CTERP_EINVAL, "%s: a raw f32 file needs --d-in (the row width); "
                               "or give a .npy file", path);
        }
        if ((st = file_map_open(&s->raw, path))) {
            free(s);
            return st;
        }
        if (s->raw.size == 0 || s->raw.size % ((size_t)d_in_raw * 4) != 0) {
            size_t sz = s->raw.size;
            file_map_close(&s->raw);
            free(s);
            return cterp_error(CTERP_EFORMAT, "%s: size %zu bytes is not a positive multiple of d_in "
                               "%lld x 4 bytes", path, sz, (long long)d_in_raw);
        }
        s->rows = (int64_t)(s->raw.size / ((size_t)d_in_raw * 4)), s->cols = d_in_raw;
    }
    if (s->rows <= 0 || s->cols <= 0) {
        long long r = (long long)s->rows, c = (long long)s->cols;
        file_free(s);
        return cterp_error(CTERP_EFORMAT, "%s: no activations (shape [%lld, %lld])", path, r, c);
    }
    s->perm = malloc((size_t)s->rows * sizeof(int64_t));
    if (!s->perm) {
        file_free(s);
        return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    }
    s->seed = seed;
    if (!(s->path = strdup(path))) {
        file_free(s);
        return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    }
    if (s->is_npy)
        s->hash = hash_sampled(hash_str(0, s->npy.descr), s->npy.data,
                               (size_t)(s->rows * s->cols) * s->npy.elem_size);
    else
        s->hash = hash_sampled(hash_str(0, "<f4"), s->raw.data, s->raw.size);
    make_perm(s);
    src->d_in = s->cols;
    src->ctx = s;
    src->next = file_next;
    src->get_state = file_get_state;
    src->set_state = file_set_state;
    src->free = file_free;
    snprintf(src->description, sizeof src->description, "%s [%lld, %lld]", path, (long long)s->rows,
             (long long)s->cols);
    return CTERP_OK;
}
