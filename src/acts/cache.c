// Activation cache files (cache_impl.h): the header's layout, the checks of a directory's files,
// and cterp_act_cache_info_read. The writers are in cache_write.c, the reader in cache_read.c.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acts/acts_impl.h"
#include "acts/cache_impl.h"
#include "core/file.h"

size_t cache_dtype_size(cterp_dtype t) { return t == CTERP_DTYPE_F32 ? 4 : 2; }

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

// shard: this file's index (0: activations.bin) and rows; n_chunks: shards.bin's entries
void cache_encode_header(uint8_t *h, const cterp_cache_info *in, int shard, int64_t shard_rows,
                          int64_t n_chunks) {
    memset(h, 0, CACHE_HEADER);
    memcpy(h, CACHE_MAGIC, 8);
    put_u32(h + 8, in->shards > 1 ? CACHE_VERSION_SHARDED : CACHE_VERSION);
    if (in->shards > 1) {
        put_u32(h + CACHE_SHARD_FIELDS, (uint32_t)in->shards);
        put_u32(h + CACHE_SHARD_FIELDS + 4, (uint32_t)shard);
        put_i64(h + CACHE_SHARD_FIELDS + 8, shard_rows);
        put_i64(h + CACHE_SHARD_FIELDS + 16, n_chunks);
    }
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

// Checks a header against the file size; the message names the file and the field. A sharded
// one (version 2) gives its shard index and shards.bin's entries (NULL: not wanted).
cterp_status cache_decode_header(const char *path, const uint8_t *h, size_t size, cterp_cache_info *o,
                                  int *shard, int64_t *n_chunks) {
    memset(o, 0, sizeof *o);
    o->shards = 1;
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
    if (o->version != CACHE_VERSION && o->version != CACHE_VERSION_SHARDED)
        return cterp_error(CTERP_EFORMAT, "%s: version: expected %u (or %u, sharded), found %u", path,
                           CACHE_VERSION, CACHE_VERSION_SHARDED, o->version);
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
    o->shard_rows = o->count;
    int idx = 0;
    int64_t chunks = 0;
    if (o->version == CACHE_VERSION_SHARDED) {
        const uint32_t P = get_u32(h + CACHE_SHARD_FIELDS), k = get_u32(h + CACHE_SHARD_FIELDS + 4);
        o->shard_rows = get_i64(h + CACHE_SHARD_FIELDS + 8), chunks = get_i64(h + CACHE_SHARD_FIELDS + 16);
        if (P < 2 || P > CACHE_MAX_SHARDS || k >= P)
            return cterp_error(CTERP_EFORMAT, "%s: version %u (sharded) with shards %u, shard %u: expected "
                               "2..%d shards and a shard index below them", path, o->version, P, k, CACHE_MAX_SHARDS);
        if (o->shard_rows < 0 || o->shard_rows > o->count || chunks < 1 || chunks > o->count + (int64_t)P * (1 << 20))
            return cterp_error(CTERP_EFORMAT, "%s: version %u (sharded) with shard rows %lld, chunks %lld: "
                               "expected 0..count (%lld) rows and at least one chunk", path, o->version, (long long)o->shard_rows,
                               (long long)chunks, (long long)o->count);
        o->shards = (int)P, idx = (int)k;
    }
    if (shard) *shard = idx;
    if (n_chunks) *n_chunks = chunks;
    size_t row = (size_t)o->d_in * cache_dtype_size(o->dtype);
    if ((uint64_t)o->shard_rows > (SIZE_MAX - CACHE_HEADER) / row ||
        CACHE_HEADER + (size_t)o->shard_rows * row != size)
        return cterp_error(CTERP_EFORMAT, "%s: size %zu bytes, expected the header (%d) + %s %lld x d_in "
                           "%lld x %zu bytes", path, size, CACHE_HEADER,
                           o->shards > 1 ? "shard rows" : "count", (long long)o->shard_rows,
                           (long long)o->d_in, cache_dtype_size(o->dtype));
    return CTERP_OK;
}

// The files of shard k: activations.bin and tokens.bin for shard 0 (and an unsharded cache),
// activations.K.bin and tokens.K.bin for the others. Caller frees.
char *cache_shard_path(const char *dir, const char *what, int k) {
    char name[64];
    if (k == 0) snprintf(name, sizeof name, "%s.bin", what);
    else snprintf(name, sizeof name, "%s.%d.bin", what, k);
    return file_join(dir, name);
}

// tokens.bin holds one int32 per row; training does not read it, but when present its size must
// match the header's count (a cache whose two files disagree is damaged).
cterp_status cache_check_tokens_shard(const char *dir, const cterp_cache_info *info, int k) {
    char *p = cache_shard_path(dir, "tokens", k);
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    struct stat sb;
    cterp_status s = CTERP_OK;
    if (stat(p, &sb) == 0 && (uint64_t)sb.st_size != (uint64_t)info->shard_rows * 4)
        s = cterp_error(CTERP_EFORMAT, "%s: size %lld bytes, expected %s %lld (from its activations file) x 4 bytes",
                        p, (long long)sb.st_size, info->shards > 1 ? "shard rows" : "count",
                        (long long)info->shard_rows);
    free(p);
    return s;
}

cterp_status cache_check_tokens(const char *dir, const cterp_cache_info *info) {
    return cache_check_tokens_shard(dir, info, 0);
}

// activations.bin missing: an interrupted writer's leftovers say so.
cterp_status cache_check_complete(const char *dir, const char *apath) {
    if (file_exists(apath) || !file_is_dir(dir)) return CTERP_OK; // the open says what is wrong
    int partial = 0, hooks = 0;
    char names[512] = ""; // subdirectories holding a cache: cterp cache --hooks wrote DIR/<hook>
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        partial |=
            !strcmp(e->d_name, "tokens.bin") || !strncmp(e->d_name, "activations.bin.tmp.", 20) ||
            !strcmp(e->d_name, "shards.bin") || !strcmp(e->d_name, "activations.1.bin") ||
            !strcmp(e->d_name, "activations.bin.partial") || !strncmp(e->d_name, "cache.progress", 14);
        if (e->d_name[0] == '.') continue;
        char *sub = file_join(dir, e->d_name), *a = sub ? file_join(sub, "activations.bin") : NULL;
        if (a && file_exists(a)) {
            size_t len = strlen(names);
            if (len + strlen(e->d_name) + 8 < sizeof names)
                snprintf(names + len, sizeof names - len, "%s%s", hooks ? ", " : "", e->d_name);
            hooks++;
        }
        free(sub), free(a);
    }
    if (d) closedir(d);
    if (hooks && !partial)
        return cterp_error(CTERP_EINVAL,
                           "%s: holds the caches of %d hooks (cterp cache --hooks), not one: "
                           "give one of them, %s/<hook> (%s)",
                           dir, hooks, dir, names);
    if (!partial) return CTERP_OK;
    return cterp_error(
        CTERP_EFORMAT,
        "%s: an incomplete activation cache: activations.bin, written last, is "
        "missing (a cterp cache run was interrupted or is still running; run it again with "
        "--resume to go on from its last chunk, or without to start over)",
        dir);
}

// A sharded cache's other files (activations.K.bin, tokens.K.bin, shards.bin and their
// temporaries): a rewrite removes them with the old cache.
static int is_shard_file(const char *n) {
    if (!strncmp(n, "shards.bin", 10)) return 1;
    const char *p = !strncmp(n, "activations.", 12) ? n + 12 : !strncmp(n, "tokens.", 7) ? n + 7 : NULL;
    if (!p || *p < '1' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    return !strncmp(p, ".bin", 4);
}

// Before a run writes: the old activations.bin goes first (a cache half rewritten is not a
// cache), and the temporaries of killed runs (named <file>.tmp.<pid>) with it.
cterp_status cache_clear_dir(const char *dir, const char *apath) {
    if (unlink(apath) != 0 && errno != ENOENT)
        return cterp_error(CTERP_EIO, "%s: cannot remove the previous cache: %s", apath,
                           strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return cterp_error(CTERP_EIO, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "activations.bin.tmp.", 20) ||
            !strncmp(e->d_name, "tokens.bin.tmp.", 15) || is_shard_file(e->d_name) ||
            !strcmp(e->d_name, "activations.bin.partial") ||
            !strcmp(e->d_name, "tokens.bin.partial") || !strncmp(e->d_name, "cache.progress", 14)) {
            char *p = file_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    closedir(d);
    return file_fsync_dir(dir);
}


cterp_status cache_file_open(cache_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) return cterp_error(CTERP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return cterp_error(CTERP_EIO, "%s: not a regular file", path);
    f->size = (uint64_t)sb.st_size;
    return file_pread_all(f->fd, f->hdr, f->size < CACHE_HEADER ? (size_t)f->size : CACHE_HEADER, 0, path);
}

void cache_file_close(cache_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
}

cterp_status cterp_act_cache_info_read(const char *dir, cterp_cache_info *info) {
    char *p = file_join(dir, "activations.bin");
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    cache_file f = {.fd = -1};
    cterp_status s = cache_check_complete(dir, p);
    if (!s) s = cache_file_open(&f, p);
    if (!s) s = cache_decode_header(p, f.hdr, (size_t)f.size, info, NULL, NULL);
    if (!s) s = cache_check_tokens(dir, info);
    cache_file_close(&f);
    free(p);
    return s;
}

