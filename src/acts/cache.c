// Activation cache files: the writer runs the store's row stream into activations.bin (4096-byte
// header + rows) and tokens.bin (int32 per row); the reader is a source that mmaps the rows and
// serves them through the same mixing buffer as the live store. activations.bin is written last
// (its header last of all), so a directory without it is an interrupted run, never a cache.
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acts/acts_impl.h"
#include "core/dist.h"
#include "core/file.h"
#include "core/half.h"
#include "core/hash.h"

#define CACHE_MAGIC "CTRPACTS"
#define CACHE_VERSION 1u
#define CACHE_VERSION_SHARDED 2u // written by P MPI ranks: the rows in P shard files
#define CACHE_HEADER 4096 // rows start page-aligned
#define CACHE_SHARD_FIELDS 1600 // version 2: u32 shards, u32 shard index, i64 shard rows, i64 chunks
#define CACHE_MAX_SHARDS 64

_Static_assert(64 + 256 + 256 + 1024 <= CACHE_SHARD_FIELDS, "cache header fields fit before the shard fields");
_Static_assert(CACHE_SHARD_FIELDS + 24 <= CACHE_HEADER, "cache header fields fit the header");

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

// shard: this file's index (0: activations.bin) and rows; n_chunks: shards.bin's entries
static void encode_header(uint8_t *h, const cterp_cache_info *in, int shard, int64_t shard_rows,
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
static cterp_status decode_header(const char *path, const uint8_t *h, size_t size, cterp_cache_info *o,
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
    size_t row = (size_t)o->d_in * dtype_size(o->dtype);
    if ((uint64_t)o->shard_rows > (SIZE_MAX - CACHE_HEADER) / row ||
        CACHE_HEADER + (size_t)o->shard_rows * row != size)
        return cterp_error(CTERP_EFORMAT, "%s: size %zu bytes, expected the header (%d) + %s %lld x d_in "
                           "%lld x %zu bytes", path, size, CACHE_HEADER,
                           o->shards > 1 ? "shard rows" : "count", (long long)o->shard_rows,
                           (long long)o->d_in, dtype_size(o->dtype));
    return CTERP_OK;
}

// tokens.bin holds one int32 per row; training does not read it, but when present its size must
// match the header's count (a cache whose two files disagree is damaged).
// The files of shard k: activations.bin and tokens.bin for shard 0 (and an unsharded cache),
// activations.K.bin and tokens.K.bin for the others. Caller frees.
static char *shard_path(const char *dir, const char *what, int k) {
    char name[64];
    if (k == 0) snprintf(name, sizeof name, "%s.bin", what);
    else snprintf(name, sizeof name, "%s.%d.bin", what, k);
    return file_join(dir, name);
}

static cterp_status check_tokens_shard(const char *dir, const cterp_cache_info *info, int k) {
    char *p = shard_path(dir, "tokens", k);
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

static cterp_status check_tokens(const char *dir, const cterp_cache_info *info) {
    return check_tokens_shard(dir, info, 0);
}

// activations.bin missing: an interrupted writer's leftovers say so.
static cterp_status check_complete(const char *dir, const char *apath) {
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
static cterp_status clear_cache_dir(const char *dir, const char *apath) {
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

// A cache file opened for reading: its fd, size and first CACHE_HEADER bytes (zeros past a
// shorter file). No mapping: a cache may be larger than the address space a process may use.
typedef struct {
    int fd;
    uint64_t size;
    uint8_t hdr[CACHE_HEADER];
} cache_file;

static cterp_status cache_file_open(cache_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) return cterp_error(CTERP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return cterp_error(CTERP_EIO, "%s: not a regular file", path);
    f->size = (uint64_t)sb.st_size;
    return file_pread_all(f->fd, f->hdr, f->size < CACHE_HEADER ? (size_t)f->size : CACHE_HEADER, 0, path);
}

static void cache_file_close(cache_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
}

cterp_status cterp_act_cache_info_read(const char *dir, cterp_cache_info *info) {
    char *p = file_join(dir, "activations.bin");
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    cache_file f = {.fd = -1};
    cterp_status s = check_complete(dir, p);
    if (!s) s = cache_file_open(&f, p);
    if (!s) s = decode_header(p, f.hdr, (size_t)f.size, info, NULL, NULL);
    if (!s) s = check_tokens(dir, info);
    cache_file_close(&f);
    free(p);
    return s;
}

// ---- the single-process writer: chunks, a progress record, resume ---------------------------
// Each hook's rows go to DIR/activations.bin.partial (a zero header, then the rows) and its
// tokens to DIR/tokens.bin.partial. After every chunk of forward batches (64 MiB of rows, or
// CTERP_TEST_CACHE_CHUNK_ROWS rows) both are fsynced, then DIR/cache.progress is rewritten
// atomically: the rows and windows behind the synced bytes, and the options that made them. A
// resumed run truncates the partials to the record, skips its windows without running the model
// and goes on: forward batches of the same windows, so the same bytes. At the end the header is
// written and synced, the records say done, and each hook's files take their names (tokens.bin,
// then activations.bin), the record removed last.

#define CACHE_CHUNK_BYTES ((int64_t)64 << 20)
#define CACHE_PROGRESS_FORMAT "cterp cache progress 1"

// One hook's output files while the writer runs.
typedef struct {
    char *dir;
    char *pa, *pt, *qa, *qt, *pp; // activations.bin, tokens.bin, their .partial, cache.progress
    int lock;
    FILE *fa, *ft; // the partials, open for writing
    cterp_cache_info in;
} cache_out;

static void cache_out_close(cache_out *o) {
    if (o->fa) fclose(o->fa);
    if (o->ft) fclose(o->ft);
    free(o->pa), free(o->pt), free(o->qa), free(o->qt), free(o->pp);
    file_unlock_dir(o->lock);
    o->pa = o->pt = o->qa = o->qt = o->pp = NULL, o->fa = o->ft = NULL, o->lock = -1;
}

// Opens a partial file for appending: new and empty (keep < 0) or cut to its first keep bytes
// (a resume: bytes after the last progress record were not vouched for).
static cterp_status part_open(FILE **f, const char *path, int64_t keep) {
    *f = fopen(path, keep < 0 ? "w+b" : "r+b");
    if (!*f) return cterp_error(CTERP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (keep >= 0 && (fstat(fileno(*f), &sb) != 0 || sb.st_size < keep))
        return cterp_error(CTERP_EFORMAT,
                           "%s: %lld bytes, expected at least %lld (the rows its cache.progress "
                           "records): cannot resume; run again without --resume",
                           path, (long long)sb.st_size, (long long)keep);
    if (keep >= 0 && (ftruncate(fileno(*f), keep) != 0 || fseek(*f, 0, SEEK_END) != 0))
        return cterp_error(CTERP_EIO, "%s: cannot cut to %lld bytes: %s", path, (long long)keep,
                           strerror(errno));
    return CTERP_OK;
}

static cterp_status part_write(FILE *f, const char *path, const void *p, size_t n) {
    if (fwrite(p, 1, n, f) != n)
        return cterp_error(CTERP_EIO, "%s: write failed: %s", path, strerror(errno));
    file_test_point("write");
    return CTERP_OK;
}

static cterp_status part_sync(FILE *f, const char *path) {
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        return cterp_error(CTERP_EIO, "%s: cannot write to disk: %s", path, strerror(errno));
    return CTERP_OK;
}

// The options that decide a cache's bytes, as (name, value) text: a resume compares them.
typedef struct {
    char name[24], value[1040];
} cache_opt;
enum { CACHE_N_OPTS = 17 };

static cterp_status cache_options(cache_opt *o, const act_stream *st, cterp_model *m,
                                  const char *model_name, const char *const *hooks, int n, int h,
                                  const char *dataset, const cterp_store_config *c,
                                  int64_t max_tokens, cterp_dtype dtype) {
    uint64_t dh;
    int64_t db, mb;
    cterp_status s = cterp_dataset_fingerprint(cterp_windows_dataset(st->w), &dh, &db);
    if (s) return s;
    const uint64_t mh = cterp_model_fingerprint(m, &mb);
    uint64_t hh = 0; // every hook of the run, in order: a resume with another list is another run
    for (int i = 0; i < n; i++) hh = hash_str(hash_u64(hh, (uint64_t)i), hooks[i]);
    const cterp_window_config *w = &c->windows;
    int k = 0;
#define OPT(nm, ...)                                                                               \
    (snprintf(o[k].name, sizeof o[k].name, "%s", nm),                                              \
     snprintf(o[k].value, sizeof o[k].value, __VA_ARGS__), k++)
    OPT("model", "%s", model_name ? model_name : "");
    OPT("model_bytes", "%lld", (long long)mb);
    OPT("model_fingerprint", "0x%016llx", (unsigned long long)mh);
    OPT("hook", "%s", hooks[h]);
    OPT("hooks", "%d hooks, hash 0x%016llx", n, (unsigned long long)hh);
    OPT("dataset", "%s", dataset);
    OPT("data_bytes", "%lld", (long long)db);
    OPT("data_fingerprint", "0x%016llx", (unsigned long long)dh);
    OPT("skip_malformed", "%d", c->data.skip_malformed != 0);
    OPT("context_size", "%d", w->context_size);
    OPT("prepend_bos", "%d", w->prepend_bos != 0);
    OPT("separator", "%d", w->concat ? (int)cterp_windows_separator(st->w) : -1);
    OPT("concat", "%d", w->concat != 0);
    OPT("exclude_special", "%d", w->exclude_special != 0);
    OPT("model_batch", "%d", c->model_batch);
    OPT("dtype", "%s",
        dtype == CTERP_DTYPE_F32   ? "f32"
        : dtype == CTERP_DTYPE_F16 ? "f16"
                                   : "bf16");
    OPT("tokens", "%lld", (long long)max_tokens);
#undef OPT
    return CTERP_OK;
}
_Static_assert(CACHE_N_OPTS == 17, "cache_options writes 17 options");

// Writes DIR/cache.progress (durably, atomically): rows and windows behind the synced partials.
static cterp_status progress_write(const cache_out *q, const cache_opt *opt, int64_t rows,
                                   int64_t windows, int done, int complete) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_CreateObject();
    char *text = NULL;
    cterp_status s = CTERP_OK;
    if (root && o) {
        cJSON_AddStringToObject(root, "format", CACHE_PROGRESS_FORMAT);
        cJSON_AddNumberToObject(root, "rows", (double)rows);
        cJSON_AddNumberToObject(root, "windows", (double)windows);
        cJSON_AddBoolToObject(root, "done", done);
        cJSON_AddBoolToObject(root, "complete_epoch", complete);
        for (int i = 0; i < CACHE_N_OPTS; i++)
            cJSON_AddStringToObject(o, opt[i].name, opt[i].value);
        cJSON_AddItemToObject(root, "options", o), o = NULL;
        text = cJSON_Print(root);
    }
    if (!text)
        s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    else
        s = file_write_all(q->pp, text, strlen(text));
    free(text);
    cJSON_Delete(root), cJSON_Delete(o);
    return s;
}

typedef struct {
    int present, done, complete;
    int64_t rows, windows;
} cache_progress;

// Reads DIR/cache.progress (absent: present = 0) and checks its options against this run's; a
// difference is refused naming the option, the recorded value and this run's.
// A progress record's JSON: *present 0 when the file is not there; *root cJSON_Parse's NULL for
// text that is not JSON, which the callers' checks then refuse.
static cterp_status record_load(const char *path, cJSON **root, int *present) {
    *root = NULL;
    if (!(*present = file_exists(path))) return CTERP_OK;
    char *text = NULL;
    size_t len;
    cterp_status s = file_read_all(path, &text, &len);
    if (s) return s;
    *root = cJSON_Parse(text);
    free(text);
    return CTERP_OK;
}

// The record's options (o) against this run's, the first difference refused naming it.
static cterp_status record_options(const char *path, const cJSON *o, const cache_opt *opt) {
    for (int i = 0; i < CACHE_N_OPTS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, opt[i].name);
        const char *was = cJSON_IsString(v) ? v->valuestring : "(missing)";
        if (strcmp(was, opt[i].value))
            return cterp_error(CTERP_EINVAL,
                               "%s: options.%s: the interrupted run had %s, this run has %s; resume "
                               "with the same options, or run without --resume to start over",
                               path, opt[i].name, was, opt[i].value);
    }
    return CTERP_OK;
}

static cterp_status progress_read(const cache_out *q, const cache_opt *opt, cache_progress *p) {
    memset(p, 0, sizeof *p);
    cJSON *root;
    int present;
    cterp_status s = record_load(q->pp, &root, &present);
    if (s || !present) return s;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "rows");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(root, "windows");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "done");
    const cJSON *ce = cJSON_GetObjectItemCaseSensitive(root, "complete_epoch");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "options");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, CACHE_PROGRESS_FORMAT) || !cJSON_IsNumber(r) ||
        !cJSON_IsNumber(w) || r->valuedouble < 0 || r->valuedouble > 9e15 || w->valuedouble < 0 ||
        w->valuedouble > 9e15 || !cJSON_IsBool(d) || !cJSON_IsBool(ce) || !cJSON_IsObject(o)) {
        cJSON_Delete(root);
        return cterp_error(
            CTERP_EFORMAT,
            "%s: expected a JSON object with format \"%s\", rows and windows "
            "(integers >= 0), done, complete_epoch and options: not a progress record this cterp "
            "wrote; run again without --resume",
            q->pp, CACHE_PROGRESS_FORMAT);
    }
    s = record_options(q->pp, o, opt);
    p->present = 1, p->done = cJSON_IsTrue(d), p->complete = cJSON_IsTrue(ce);
    p->rows = (int64_t)r->valuedouble, p->windows = (int64_t)w->valuedouble;
    cJSON_Delete(root);
    return s;
}

// The last step of a write: hook h's partials (header written and synced, the records done)
// take their names, tokens.bin first; the record goes last. A resume of a done run repeats it.
static cterp_status cache_out_commit(cache_out *q) {
    if (file_exists(q->qt) && rename(q->qt, q->pt) != 0)
        return cterp_error(CTERP_EIO, "%s: cannot rename into place: %s", q->pt, strerror(errno));
    cterp_status s = file_fsync_dir(q->dir);
    if (s) return s;
    file_test_point("cache-tokens"); // tokens.bin in place, activations.bin not yet
    if (file_exists(q->qa) && rename(q->qa, q->pa) != 0)
        return cterp_error(CTERP_EIO, "%s: cannot rename into place: %s", q->pa, strerror(errno));
    if ((s = file_fsync_dir(q->dir))) return s;
    if (unlink(q->pp) != 0 && errno != ENOENT)
        return cterp_error(CTERP_EIO, "%s: cannot remove: %s", q->pp, strerror(errno));
    return file_fsync_dir(q->dir);
}

static int64_t chunk_rows_env(void) {
    const char *e = getenv("CTERP_TEST_CACHE_CHUNK_ROWS"); // test hook (docs/reliability.md)
    return e && atoll(e) > 0 ? atoll(e) : 0;
}

// ---- the sharded writer (under MPI): shards, a progress record per rank, resume --------------
// Rank k runs batch k of every round of P forward batches (stream.c) and writes its rows to
// shard k; the batches are those of one process, cut at the same row, so the shards in chunk
// order (chunk c = batch c of the run, in shard c % P; its rows in shards.bin) are the cache one
// process writes. Shard k's rows go to activations.K.bin.partial (activations.bin.partial for
// k = 0) after a zero header, its tokens to tokens.K.bin.partial, and rank 0 appends each round's
// chunk sizes to shards.bin.partial. After the round that passes a chunk of rows (P x 64 MiB, or
// CTERP_TEST_CACHE_CHUNK_ROWS rows over the ranks) every rank syncs its files and rewrites its
// record cache.progress.K atomically: the rows, windows, chunks and shard rows behind the synced
// bytes (and those of its previous record), with the options that made them. A rank writes a
// record only after every rank passed the round's collective, so the records of a killed job are
// at most one apart: a resume takes the least of them (the previous record of a rank ahead),
// cuts every file to it and goes on with the same rounds, so the same bytes. At the end each rank
// writes its header, records done, and (every rank done) the shards, their tokens and shards.bin
// take their names; rank 0 renames activations.bin last, the mark of a complete cache, and the
// records go. A job that dies leaves no activations.bin: an incomplete cache the reader refuses.

#define SHARD_PROGRESS_FORMAT "cterp sharded cache progress 1"

typedef struct {
    int64_t rows, windows, chunks,
        shard_rows; // the cache's rows and windows, shards.bin's entries, this shard's rows
} shard_point;

typedef struct {
    int present, done, complete, shards, shard;
    shard_point at, prev; // this record's point and the one before it (zeros: the start)
} shard_record;

// DIR/cache.progress.K: the record of rank K of a sharded run. Caller frees.
static char *shard_record_path(const char *dir, int k) {
    char name[48];
    snprintf(name, sizeof name, "cache.progress.%d", k);
    return file_join(dir, name);
}

static cJSON *point_json(const shard_point *p) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "rows", (double)p->rows);
    cJSON_AddNumberToObject(o, "windows", (double)p->windows);
    cJSON_AddNumberToObject(o, "chunks", (double)p->chunks);
    cJSON_AddNumberToObject(o, "shard_rows", (double)p->shard_rows);
    return o;
}

static cterp_status shard_record_write(const char *path, const cache_opt *opt,
                                       const shard_record *r) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_CreateObject(), *at = point_json(&r->at),
          *prev = point_json(&r->prev);
    char *text = NULL;
    if (root && o && at && prev) {
        cJSON_AddStringToObject(root, "format", SHARD_PROGRESS_FORMAT);
        cJSON_AddNumberToObject(root, "shards", r->shards);
        cJSON_AddNumberToObject(root, "shard", r->shard);
        cJSON_AddBoolToObject(root, "done", r->done);
        cJSON_AddBoolToObject(root, "complete_epoch", r->complete);
        cJSON_AddItemToObject(root, "at", at), at = NULL;
        cJSON_AddItemToObject(root, "prev", prev), prev = NULL;
        for (int i = 0; i < CACHE_N_OPTS; i++)
            cJSON_AddStringToObject(o, opt[i].name, opt[i].value);
        cJSON_AddItemToObject(root, "options", o), o = NULL;
        text = cJSON_Print(root);
    }
    cterp_status s = text ? file_write_all(path, text, strlen(text))
                          : cterp_error(CTERP_ENOMEM, "cache: out of memory");
    free(text);
    cJSON_Delete(root), cJSON_Delete(o), cJSON_Delete(at), cJSON_Delete(prev);
    return s;
}

static int json_count(const cJSON *o, const char *name, int64_t *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9e15 ||
        x->valuedouble != (double)(int64_t)x->valuedouble)
        return 0;
    *v = (int64_t)x->valuedouble;
    return 1;
}

static int point_read(const cJSON *root, const char *name, shard_point *p) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, name);
    return cJSON_IsObject(o) && json_count(o, "rows", &p->rows) &&
           json_count(o, "windows", &p->windows) && json_count(o, "chunks", &p->chunks) &&
           json_count(o, "shard_rows", &p->shard_rows) && p->shard_rows <= p->rows;
}

// Reads a sharded run's record (absent: present = 0). opt: this run's options, each compared
// with the record's (a difference is refused naming it); NULL: not compared.
static cterp_status shard_record_read(const char *path, const cache_opt *opt, shard_record *r) {
    memset(r, 0, sizeof *r);
    cJSON *root;
    int present;
    cterp_status s = record_load(path, &root, &present);
    if (s || !present) return s;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "done");
    const cJSON *ce = cJSON_GetObjectItemCaseSensitive(root, "complete_epoch");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "options");
    int64_t P = 0, k = 0;
    if (!cJSON_IsString(f) || strcmp(f->valuestring, SHARD_PROGRESS_FORMAT) ||
        !json_count(root, "shards", &P) || !json_count(root, "shard", &k) || P < 2 ||
        P > CACHE_MAX_SHARDS || k >= P || !cJSON_IsBool(d) || !cJSON_IsBool(ce) ||
        !cJSON_IsObject(o) || !point_read(root, "at", &r->at) ||
        !point_read(root, "prev", &r->prev) || r->prev.rows > r->at.rows) {
        cJSON_Delete(root);
        return cterp_error(
            CTERP_EFORMAT,
            "%s: expected a JSON object with format \"%s\", shards (2..%d), shard (below "
            "shards), done, complete_epoch, at and prev (rows, windows, chunks and shard_rows: "
            "integers >= 0, prev's rows at most at's) and options: not a progress record this "
            "cterp wrote; run again without --resume",
            path, SHARD_PROGRESS_FORMAT, CACHE_MAX_SHARDS);
    }
    r->present = 1, r->done = cJSON_IsTrue(d), r->complete = cJSON_IsTrue(ce), r->shards = (int)P,
    r->shard = (int)k;
    if (opt) s = record_options(path, o, opt);
    cJSON_Delete(root);
    return s;
}

// Every rank learns whether every rank got here without an error; one that did not ends them
// all with an error (its own message, or for the others one pointing to it).
static cterp_status dist_agree(cterp_status s, const char *dir) {
    int64_t bad = s != CTERP_OK;
    cterp_status g = dist_sum_i64(&bad, 1);
    if (s) return s;
    if (g) return g;
    if (bad)
        return cterp_error(
            CTERP_EIO, "%s: cache: another MPI rank failed (its error is above); stopping", dir);
    return CTERP_OK;
}

static cterp_status rename_if_there(const char *from, const char *to) {
    if (file_exists(from) && rename(from, to) != 0)
        return cterp_error(CTERP_EIO, "%s: cannot rename into place: %s", to, strerror(errno));
    if (!file_exists(to))
        return cterp_error(CTERP_EFORMAT,
                           "%s: missing (and no %s to take its name): run again without --resume",
                           to, from);
    return CTERP_OK;
}

// The last steps of a sharded write, every rank's record done: each rank's shard (rank 0: its
// tokens and shards.bin) takes its name; then rank 0 renames activations.bin; then the records
// go. A resume of a job killed in here repeats it.
static cterp_status shard_commit(const char *dir, int rank, const char *qa, const char *pa,
                                 const char *qt, const char *pt, const char *qc, const char *pc,
                                 const char *pp) {
    cterp_status s = rename_if_there(qt, pt);
    if (!s && rank != 0) s = rename_if_there(qa, pa);
    if (!s && rank == 0) s = rename_if_there(qc, pc);
    if (!s) s = file_fsync_dir(dir);
    if ((s = dist_agree(s, dir))) return s; // every shard in place before activations.bin
    if (rank == 0) {
        file_test_point("cache-tokens");
        if (!(s = rename_if_there(qa, pa))) s = file_fsync_dir(dir);
    }
    if ((s = dist_agree(s, dir))) return s;
    if (unlink(pp) != 0 && errno != ENOENT)
        return cterp_error(CTERP_EIO, "%s: cannot remove: %s", pp, strerror(errno));
    return file_fsync_dir(dir);
}

static cterp_status cache_write_sharded(cterp_model *m, const char *model_name, const char *hook,
                                        const char *dataset, const cterp_store_config *c,
                                        int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                        int resume, int64_t *resumed_from,
                                        cterp_cache_progress_fn progress, void *user,
                                        cterp_cache_info *info) {
    const int P = dist_size(), rank = dist_rank();
    cterp_status s = CTERP_OK;
    int lock = -1, open = 0;
    char *pa = shard_path(out_dir, "activations", rank), *pt = shard_path(out_dir, "tokens", rank);
    char *pa0 = shard_path(out_dir, "activations", 0), *pc = file_join(out_dir, "shards.bin");
    char *pp = shard_record_path(out_dir, rank), *p1 = file_join(out_dir, "cache.progress");
    char *qa = NULL, *qt = NULL, *qc = NULL, *qa0 = NULL;
    if (pa && pt && pc && pa0) {
        qa = malloc(strlen(pa) + 9), qt = malloc(strlen(pt) + 9), qc = malloc(strlen(pc) + 9);
        qa0 = malloc(strlen(pa0) + 9);
    }
    if (!qa || !qt || !qc || !qa0 || !pp || !p1)
        s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    else {
        sprintf(qa, "%s.partial", pa), sprintf(qt, "%s.partial", pt), sprintf(qc, "%s.partial", pc);
        sprintf(qa0, "%s.partial", pa0);
    }
    if (P > CACHE_MAX_SHARDS && !s)
        s = cterp_error(CTERP_EINVAL, "cache: at most %d MPI ranks (shards), got %d",
                        CACHE_MAX_SHARDS, P);
    if (!s && rank == 0 && !(s = file_mkdirs(out_dir)))
        s = file_lock_dir(out_dir, "cache writer", &lock);
    // every rank learns whether rank 0 got the directory: none writes into one it does not hold
    s = dist_agree(s, out_dir);
    act_stream st;
    memset(&st, 0, sizeof st);
    cache_opt opt[CACHE_N_OPTS];
    shard_record rec, last;
    memset(&rec, 0, sizeof rec), memset(&last, 0, sizeof last);
    FILE *fa = NULL, *ft = NULL, *fc = NULL;
    uint8_t *hdr = calloc(1, CACHE_HEADER), *conv = NULL;
    cterp_cache_info in;
    memset(&in, 0, sizeof in);
    if (resumed_from) *resumed_from = 0;
    if (!s && !hdr) s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    // the hook and the data are checked before any previous cache is removed
    if (!s && !(s = stream_open(&st, m, &hook, 1, dataset, c))) open = 1;
    if (!s) s = stream_distribute(&st, 0);
    if (!s && !(conv = malloc((size_t)st.D[0] * 4)))
        s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    if (!s) s = cache_options(opt, &st, m, model_name, &hook, 1, 0, dataset, c, max_tokens, dtype);
    if (!s && resume) s = shard_record_read(pp, opt, &rec);
    if (!s && rec.present && (rec.shards != P || rec.shard != rank))
        s = cterp_error(CTERP_EINVAL,
                        "%s: shards: the interrupted run had %d MPI ranks (this is shard %d's "
                        "record), this run "
                        "has %d; resume under mpirun -np %d, or run without --resume to start over",
                        pp, rec.shards, rec.shard, P, rec.shards);
    if (!s && resume && rank == 0 && file_exists(p1))
        s = cterp_error(CTERP_EINVAL,
                        "%s: the record of an interrupted cterp cache in one process, not of a "
                        "sharded run of %d "
                        "MPI ranks: resume it with cterp cache --resume in one process, or run "
                        "without --resume "
                        "to start over",
                        p1, P);
    if ((s = dist_agree(s, out_dir))) goto done;
    // where to go on from: every rank's record, gathered
    shard_point at = {0};
    if (resume) {
        int64_t mine[5] = {rec.present, rec.done, rec.at.rows, rec.prev.rows,
                           rank == 0 && file_exists(pa0) && !file_exists(qa0)},
                all[5 * CACHE_MAX_SHARDS];
        if ((s = dist_allgather(all, mine, sizeof mine))) goto done;
        int any = 0, unfinished = 0;
        int64_t R = INT64_MAX;
        for (int j = 0; j < P; j++) {
            const int64_t *a = all + 5 * j;
            any |= a[0] != 0, unfinished |= a[0] && !a[1];
            const int64_t r = !a[0] ? 0 : a[1] ? a[3] : a[2];
            R = r < R ? r : R;
        }
        const int whole = all[4] != 0;
        if (!any && whole) {
            s = cterp_error(
                CTERP_EINVAL,
                "%s: holds a complete cache, nothing to resume (run without --resume to write it "
                "again)",
                out_dir);
            goto done;
        }
        if (any && !unfinished) { // every record done: killed while the files took their names
            s = shard_commit(out_dir, rank, qa, pa, qt, pt, qc, pc, pp);
            if (!s) s = cterp_act_cache_info_read(out_dir, &in);
            if (!s && resumed_from) *resumed_from = in.count;
            if (!s && info) *info = in;
            goto done;
        }
        if (unfinished && whole) {
            s = cterp_error(
                CTERP_EFORMAT,
                "%s: holds activations.bin and the record of an unfinished run: not a state cterp "
                "leaves; run again without --resume",
                out_dir);
            goto done;
        }
        // the least record; a rank ahead takes its previous one (records are at most one apart)
        if (R > 0) {
            if (!rec.done && rec.at.rows == R)
                at = rec.at;
            else if (rec.prev.rows == R)
                at = rec.prev;
            else
                s = cterp_error(
                    CTERP_EFORMAT,
                    "%s: records rows %lld and before them %lld; another rank's record is at %lld: "
                    "the records disagree (not a state cterp leaves); run again without --resume",
                    pp, (long long)rec.at.rows, (long long)rec.prev.rows, (long long)R);
        }
        if ((s = dist_agree(s, out_dir))) goto done;
    }
    const int64_t rb = st.D[0] * (int64_t)dtype_size(dtype);
    if (at.rows == 0) { // start over: rank 0 clears the directory, then every rank opens its files
        if (rank == 0) s = clear_cache_dir(out_dir, pa0);
        if ((s = dist_agree(s, out_dir))) goto done;
        if (!(s = part_open(&fa, qa, -1)) && !(s = part_open(&ft, qt, -1)) && rank == 0)
            s = part_open(&fc, qc, -1);
        if (!s) s = part_write(fa, qa, hdr, CACHE_HEADER); // the real header comes last
    } else { // every file cut to the point, the bytes after it not vouched for
        if (!(s = part_open(&fa, qa, CACHE_HEADER + at.shard_rows * rb)) &&
            !(s = part_open(&ft, qt, at.shard_rows * 4)) && rank == 0)
            s = part_open(&fc, qc, at.chunks * 8);
    }
    if ((s = dist_agree(s, out_dir))) goto done;
    in.version = CACHE_VERSION_SHARDED, in.dtype = dtype, in.d_in = st.D[0], in.shards = P;
    in.context_size = c->windows.context_size, in.prepend_bos = c->windows.prepend_bos;
    in.separator = c->windows.separator, in.concat = c->windows.concat;
    in.exclude_special = c->windows.exclude_special;
    snprintf(in.model, sizeof in.model, "%s", model_name ? model_name : "");
    snprintf(in.hook, sizeof in.hook, "%s", hook);
    snprintf(in.dataset, sizeof in.dataset, "%s", dataset);
    int64_t n_chunks = at.chunks, shard_rows = at.shard_rows;
    in.count = at.rows, in.windows = at.windows;
    if (at.rows > 0) { // the windows behind the point, cut again (by every rank) but not run
        for (int64_t i = 0; i < at.windows; i++) {
            int eof = 0;
            if ((s = cterp_windows_next(st.w, st.tok, st.mask, &eof))) goto done;
            if (eof) {
                s = cterp_error(
                    CTERP_EFORMAT,
                    "%s: records %lld windows, %s has %lld: the dataset changed; run again without "
                    "--resume",
                    pp, (long long)at.windows, dataset, (long long)i);
                goto done;
            }
        }
        st.windows = at.windows;
        if (resumed_from) *resumed_from = at.rows;
    }
    last = rec, last.present = 1, last.shards = P, last.shard = rank, last.done = 0,
    last.complete = 0;
    last.at = at;
    const int64_t chunk_env = chunk_rows_env();
    const int64_t chunk = chunk_env ? chunk_env : P * ((CACHE_CHUNK_BYTES + rb - 1) / rb);
    int64_t committed = in.count;
    int64_t left = 0; // rows the rounds made beyond max_tokens
    while (in.count < max_tokens) {
        int eof = 0;
        if ((s = stream_round(&st, &eof))) goto done;
        if (eof) {
            in.complete_epoch = 1;
            break;
        }
        for (int j = 0; j < P; j++) {
            if (in.count >= max_tokens) { // this batch's rows are beyond the cache
                left += st.round_rows[j];
                continue;
            }
            const int64_t take =
                st.round_rows[j] < max_tokens - in.count ? st.round_rows[j] : max_tokens - in.count;
            left += st.round_rows[j] - take;
            in.windows += st.round_windows[j], in.count += take, n_chunks++;
            if (rank == 0 && (s = part_write(fc, qc, &take, sizeof take)))
                goto done; // the chunk table
            if (j != rank) continue;
            shard_rows += take;
            for (int64_t r = 0; r < take && !s; r++) {
                const float *row = st.rows[0] + r * st.D[0];
                const void *out = row;
                if (dtype != CTERP_DTYPE_F32) {
                    uint16_t *h = (uint16_t *)conv;
                    for (int64_t d = 0; d < st.D[0]; d++)
                        h[d] = dtype == CTERP_DTYPE_F16 ? f32_to_f16(row[d]) : f32_to_bf16(row[d]);
                    out = conv;
                }
                if (!(s = part_write(fa, qa, out, (size_t)rb)))
                    s = part_write(ft, qt, st.row_tok + r, 4);
            }
            if (s) goto done;
        }
        if (progress) progress(in.count, max_tokens, user);
        // a round done on every rank (its collective passed): a point to resume from
        if (in.count < max_tokens && in.count - committed >= chunk) {
            if (!(s = part_sync(fa, qa)) && !(s = part_sync(ft, qt)) && rank == 0)
                s = part_sync(fc, qc);
            if (s) goto done;
            last.prev = last.at;
            last.at = (shard_point){in.count, in.windows, n_chunks, shard_rows};
            if ((s = shard_record_write(pp, opt, &last))) goto done;
            committed = in.count;
            file_test_point("cache-chunk");
        }
    }
    // max_tokens reached: was that exactly the whole dataset? (one process asks the stream for a
    // row more: the rest of this round, then rounds until a row or the end)
    while (!in.complete_epoch && in.count > 0 && left == 0) {
        int eof = 0;
        if ((s = stream_round(&st, &eof))) goto done;
        if (eof) in.complete_epoch = 1;
        for (int j = 0; j < P && !eof; j++) left += st.round_rows[j];
    }
    if (in.count == 0) {
        s = cterp_error(CTERP_EFORMAT, "%s: no activations: no complete window of %d tokens",
                        dataset, c->windows.context_size);
        goto done;
    }
    encode_header(hdr, &in, rank, shard_rows, n_chunks);
    if (fseek(fa, 0, SEEK_SET) != 0 || fwrite(hdr, 1, CACHE_HEADER, fa) != CACHE_HEADER) {
        s = cterp_error(CTERP_EIO, "%s: cannot write the header", qa);
        goto done;
    }
    if (!(s = part_sync(fa, qa)) && !(s = part_sync(ft, qt)) && rank == 0) s = part_sync(fc, qc);
    // every rank's last record written before any is marked done (the last round that ended
    // the data had no collective), so a done record's previous point is every other rank's
    if ((s = dist_agree(s, out_dir))) goto done;
    last.prev = last.at, last.done = 1, last.complete = in.complete_epoch;
    last.at = (shard_point){in.count, in.windows, n_chunks, shard_rows};
    s = shard_record_write(pp, opt, &last);
    if ((s = dist_agree(s, out_dir))) goto done; // every record done before a file takes its name
    fclose(fa), fclose(ft), fa = ft = NULL;
    if (fc) fclose(fc), fc = NULL;
    if ((s = shard_commit(out_dir, rank, qa, pa, qt, pt, qc, pc, pp))) goto done;
    in.shard_rows = shard_rows;
    if (progress) progress(in.count, max_tokens, user);
    if (info) *info = in;
done:
    if (fa) fclose(fa);
    if (ft) fclose(ft);
    if (fc) fclose(fc);
    if (open) stream_close(&st);
    free(pa), free(pt), free(pa0), free(pc), free(pp), free(p1), free(qa), free(qt), free(qc),
        free(qa0);
    free(hdr), free(conv);
    file_unlock_dir(lock);
    return s;
}

// A one-process resume of a directory holding a sharded run's records (cache.progress.K) is
// refused: its rows are in P shards, written in rounds of P batches.
static cterp_status refuse_sharded_partial(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char name[300] = "";
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "cache.progress.", 15) && strlen(e->d_name) < sizeof name)
            strcpy(name, e->d_name);
    if (d) closedir(d);
    if (!*name) return CTERP_OK;
    char *p = file_join(dir, name);
    shard_record r;
    cterp_status s =
        p ? shard_record_read(p, NULL, &r) : cterp_error(CTERP_ENOMEM, "cache: out of memory");
    if (!s)
        s = cterp_error(
            CTERP_EINVAL,
            "%s: the record of an interrupted sharded cache of %d MPI ranks, not of one process: "
            "resume it under mpirun -np %d, or run without --resume to start over",
            p, r.shards, r.shards);
    free(p);
    return s;
}

// Writes the caches of n hooks, hook h into dirs[h], from one run of the model; resume: go on
// from the last progress record (*resumed_from: its rows, 0 when there was none).
static cterp_status cache_write(cterp_model *m, const char *model_name, const char *const *hooks,
                                int n, const char *dataset, const cterp_store_config *c,
                                int64_t max_tokens, cterp_dtype dtype, const char *const *dirs,
                                int resume, int64_t *resumed_from, cterp_cache_progress_fn progress,
                                void *user, cterp_cache_info *info) {
    cterp_store_config cd;
    if (!c) cterp_store_config_default(&cd), c = &cd;
    if (resumed_from) *resumed_from = 0;
    if (max_tokens < 1) return cterp_error(CTERP_EINVAL, "tokens: expected >= 1, got %lld", (long long)max_tokens);
    if (dtype > CTERP_DTYPE_BF16) return cterp_error(CTERP_EINVAL, "dtype: expected f32, f16 or bf16");
    if (n < 1 || n > 4096) return cterp_error(CTERP_EINVAL, "hooks: expected 1..4096 hook names, got %d", n);
    if (dist_size() > 1 && n > 1) // one forward for every hook and rank k's rows into shard k of each: not yet
        return cterp_error(CTERP_EINVAL, "cache: %d hooks under %d MPI ranks: a sharded cache holds one hook; "
                           "run mpirun -np P cterp cache once per hook, or cterp cache --hooks in one process "
                           "(docs/scaling.md)", n, dist_size());
    if (dist_size() > 1)
        return cache_write_sharded(m, model_name, hooks[0], dataset, c, max_tokens, dtype, dirs[0], resume,
                                   resumed_from, progress, user, info);
    for (int h = 0; h < n; h++)
        for (int j = 0; j < h; j++)
            if (!strcmp(dirs[h], dirs[j]))
                return cterp_error(CTERP_EINVAL, "cache: %s and %s would both be written to %s", hooks[j],
                                   hooks[h], dirs[h]);
    cache_out *o = calloc((size_t)n, sizeof *o);
    const float **row = malloc((size_t)n * sizeof *row);
    cache_opt *opt = calloc((size_t)n * CACHE_N_OPTS, sizeof *opt);
    cache_progress *pr = calloc((size_t)n, sizeof *pr);
    if (!o || !row || !opt || !pr) {
        free(o), free(row), free(opt), free(pr);
        return cterp_error(CTERP_ENOMEM, "cache: out of memory");
    }
    for (int h = 0; h < n; h++) o[h].lock = -1;
    act_stream st = {0};
    uint8_t *hdr = NULL, *conv = NULL;
    cterp_status s = CTERP_OK;
    int64_t count = 0, from_windows = 0;
    // the hooks and the data are checked before any previous cache is removed
    if ((s = stream_open(&st, m, hooks, n, dataset, c))) goto done;
    for (int h = 0; h < n && !s; h++) {
        cache_out *q = &o[h];
        if ((s = file_mkdirs(dirs[h])) || (s = file_lock_dir(dirs[h], "cache writer", &q->lock)))
            break;
        q->dir = (char *)dirs[h];
        q->pa = file_join(dirs[h], "activations.bin"), q->pt = file_join(dirs[h], "tokens.bin");
        q->qa = file_join(dirs[h], "activations.bin.partial"),
        q->qt = file_join(dirs[h], "tokens.bin.partial");
        q->pp = file_join(dirs[h], "cache.progress");
        if (!q->pa || !q->pt || !q->qa || !q->qt || !q->pp)
            s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
        if (!s)
            s = cache_options(opt + h * CACHE_N_OPTS, &st, m, model_name, hooks, n, h, dataset, c,
                              max_tokens, dtype);
        if (!s && resume) s = progress_read(q, opt + h * CACHE_N_OPTS, &pr[h]);
        if (!s && resume) s = refuse_sharded_partial(dirs[h]);
    }
    if (s) goto done;
    if (resume) {
        int any = 0, any_done = 0, whole = 0;
        for (int h = 0; h < n; h++) {
            any |= pr[h].present, any_done |= pr[h].done;
            whole += file_exists(o[h].pa) && !file_exists(o[h].qa);
        }
        if (any_done) { // killed while the files took their names: finish that
            for (int h = 0; h < n && !s; h++) {
                if (!pr[h].present && !file_exists(o[h].pa))
                    s = cterp_error(
                        CTERP_EFORMAT,
                        "%s: neither a cache nor a progress record, while another hook's "
                        "record says the run was done: run again without --resume",
                        dirs[h]);
                if (!s && pr[h].present) s = cache_out_commit(&o[h]);
                if (!s && info) s = cterp_act_cache_info_read(dirs[h], &info[h]);
            }
            if (!s && resumed_from) *resumed_from = info ? info[0].count : pr[0].rows;
            goto done;
        }
        if (!any && whole == n) {
            s = cterp_error(CTERP_EINVAL,
                            "%s: holds a complete cache, nothing to resume (run without --resume "
                            "to write it again)",
                            n > 1 ? dirs[0] : dirs[0]);
            goto done;
        }
        // hooks are recorded one after another: the least of them is synced in every hook
        int at = -1;
        for (int h = 0; h < n; h++)
            if (!pr[h].present)
                at = -2;
            else if (at == -1 || (at >= 0 && pr[h].rows < pr[at].rows))
                at = h;
        if (at >= 0 && pr[at].rows > 0) count = pr[at].rows, from_windows = pr[at].windows;
    }
    for (int h = 0; h < n && !s; h++)
        if (!count) s = clear_cache_dir(dirs[h], o[h].pa);
    if (s) goto done;
    int64_t Dmax = 0, row_bytes = 0;
    for (int h = 0; h < n; h++) {
        Dmax = st.D[h] > Dmax ? st.D[h] : Dmax;
        row_bytes += st.D[h] * (int64_t)dtype_size(dtype);
    }
    hdr = calloc(1, CACHE_HEADER), conv = malloc((size_t)Dmax * 4);
    if (!hdr || !conv) {
        s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
        goto done;
    }
    for (int h = 0; h < n; h++) {
        cache_out *q = &o[h];
        const int64_t rb = st.D[h] * (int64_t)dtype_size(dtype);
        if ((s = part_open(&q->fa, q->qa, count ? CACHE_HEADER + count * rb : -1))) goto done;
        if ((s = part_open(&q->ft, q->qt, count ? count * 4 : -1))) goto done;
        if (!count && (s = part_write(q->fa, q->qa, hdr, CACHE_HEADER)))
            goto done; // the real header comes last
        cterp_cache_info *in = &q->in;
        memset(in, 0, sizeof *in);
        in->version = CACHE_VERSION, in->dtype = dtype, in->d_in = st.D[h];
        in->context_size = c->windows.context_size, in->prepend_bos = c->windows.prepend_bos;
        in->separator = c->windows.separator, in->concat = c->windows.concat;
        in->exclude_special = c->windows.exclude_special;
        snprintf(in->model, sizeof in->model, "%s", model_name ? model_name : "");
        snprintf(in->hook, sizeof in->hook, "%s", hooks[h]);
        snprintf(in->dataset, sizeof in->dataset, "%s", dataset);
    }
    if (count) { // the windows behind the recorded rows, cut again but not run
        for (int64_t i = 0; i < from_windows; i++) {
            int eof = 0;
            if ((s = cterp_windows_next(st.w, st.tok, st.mask, &eof))) goto done;
            if (eof) {
                s = cterp_error(CTERP_EFORMAT,
                                "%s: cache.progress records %lld windows, %s has %lld: the dataset "
                                "changed; run again without --resume",
                                o[0].dir, (long long)from_windows, dataset, (long long)i);
                goto done;
            }
        }
        st.windows = from_windows, st.produced = count;
        if (resumed_from) *resumed_from = count;
    }
    const int64_t chunk_env = chunk_rows_env();
    const int64_t chunk = chunk_env ? chunk_env : (CACHE_CHUNK_BYTES + row_bytes - 1) / row_bytes;
    int64_t committed = count;
    int complete = 0;
    while (count < max_tokens) {
        int32_t tok;
        int eof = 0;
        if ((s = stream_next(&st, row, &tok, 1, &eof))) goto done;
        if (eof) {
            complete = 1;
            break;
        }
        for (int h = 0; h < n; h++) {
            const void *out = row[h];
            const int64_t D = st.D[h];
            if (dtype != CTERP_DTYPE_F32) {
                uint16_t *hv = (uint16_t *)conv;
                for (int64_t d = 0; d < D; d++)
                    hv[d] = dtype == CTERP_DTYPE_F16 ? f32_to_f16(row[h][d]) : f32_to_bf16(row[h][d]);
                out = conv;
            }
            if ((s = part_write(o[h].fa, o[h].qa, out, (size_t)D * dtype_size(dtype)))) goto done;
            if ((s = part_write(o[h].ft, o[h].qt, &tok, 4))) goto done;
        }
        count++;
        if (progress && count % 4096 == 0) progress(count, max_tokens, user);
        // a forward batch used up: its windows and rows are a point to resume from
        if (st.next_row == st.n_rows && count < max_tokens && count - committed >= chunk) {
            for (int h = 0; h < n && !s; h++)
                if (!(s = part_sync(o[h].fa, o[h].qa))) s = part_sync(o[h].ft, o[h].qt);
            for (int h = 0; h < n && !s; h++)
                s = progress_write(&o[h], opt + h * CACHE_N_OPTS, count, st.windows, 0, 0);
            if (s) goto done;
            committed = count;
            file_test_point("cache-chunk");
        }
    }
    int64_t windows = st.windows;
    if (!complete && count > 0) { // max_tokens reached: was that exactly the whole dataset?
        int eof = 0;
        if ((s = stream_next(&st, row, NULL, 1, &eof))) goto done;
        complete = eof;
    }
    if (count == 0) {
        s = cterp_error(CTERP_EFORMAT, "%s: no activations: no complete window of %d tokens", dataset,
                        c->windows.context_size);
        goto done;
    }
    for (int h = 0; h < n; h++) {
        cache_out *q = &o[h];
        q->in.count = count, q->in.windows = windows, q->in.complete_epoch = complete;
        q->in.shards = 1, q->in.shard_rows = count;
        encode_header(hdr, &q->in, 0, count, 0);
        if (fseek(q->fa, 0, SEEK_SET) != 0 || fwrite(hdr, 1, CACHE_HEADER, q->fa) != CACHE_HEADER) {
            s = cterp_error(CTERP_EIO, "%s: cannot write the header", q->qa);
            goto done;
        }
        if ((s = part_sync(q->fa, q->qa)) || (s = part_sync(q->ft, q->qt))) goto done;
        fclose(q->fa), fclose(q->ft);
        q->fa = q->ft = NULL;
    }
    for (int h = 0; h < n && !s; h++)
        s = progress_write(&o[h], opt + h * CACHE_N_OPTS, count, windows, 1, complete);
    for (int h = 0; h < n && !s; h++) s = cache_out_commit(&o[h]);
    if (s) goto done;
    for (int h = 0; h < n && info; h++) info[h] = o[h].in;
    if (progress) progress(count, max_tokens, user);
done:
    for (int h = 0; h < n; h++) cache_out_close(&o[h]);
    stream_close(&st);
    free(o), free(row), free(hdr), free(conv), free(opt), free(pr);
    return s;
}

cterp_status cterp_act_cache_write(cterp_model *m, const char *model_name, const char *hook,
                                   const char *dataset, const cterp_store_config *c,
                                   int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                   cterp_cache_progress_fn progress, void *user,
                                   cterp_cache_info *info) {
    return cache_write(m, model_name, &hook, 1, dataset, c, max_tokens, dtype, &out_dir, 0, NULL,
                       progress, user, info);
}

// The directories of --hooks: out_dir/<hook>. Caller frees with free_dirs.
static cterp_status hook_dirs(const char *out_dir, const char *const *hooks, int n_hooks,
                              char ***out) {
    if (n_hooks < 1 || n_hooks > 4096)
        return cterp_error(CTERP_EINVAL, "hooks: expected 1..4096 hook names, got %d", n_hooks);
    char **dirs = calloc((size_t)n_hooks, sizeof *dirs);
    cterp_status s = dirs ? CTERP_OK : cterp_error(CTERP_ENOMEM, "cache: out of memory");
    for (int h = 0; !s && h < n_hooks; h++) {
        if (!hooks[h] || !*hooks[h] || strchr(hooks[h], '/') || hooks[h][0] == '.')
            s = cterp_error(CTERP_EINVAL, "hooks: '%s' cannot name a directory", hooks[h] ? hooks[h] : "(null)");
        else if (!(dirs[h] = file_join(out_dir, hooks[h])))
            s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    }
    *out = dirs;
    return s;
}

static void free_dirs(char **dirs, int n) {
    for (int h = 0; dirs && h < n; h++) free(dirs[h]);
    free(dirs);
}

cterp_status cterp_act_cache_write_hooks(cterp_model *m, const char *model_name,
                                         const char *const *hooks, int n_hooks, const char *dataset,
                                         const cterp_store_config *c, int64_t max_tokens,
                                         cterp_dtype dtype, const char *out_dir,
                                         cterp_cache_progress_fn progress, void *user,
                                         cterp_cache_info *info) {
    char **dirs = NULL;
    cterp_status s = hook_dirs(out_dir, hooks, n_hooks, &dirs);
    if (!s)
        s = cache_write(m, model_name, hooks, n_hooks, dataset, c, max_tokens, dtype,
                        (const char *const *)dirs, 0, NULL, progress, user, info);
    free_dirs(dirs, n_hooks);
    return s;
}

cterp_status cterp_act_cache_resume(cterp_model *m, const char *model_name,
                                    const char *const *hooks, int n_hooks, int per_hook_dirs,
                                    const char *dataset, const cterp_store_config *c,
                                    int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                    cterp_cache_progress_fn progress, void *user,
                                    cterp_cache_info *info, int64_t *resumed_from) {
    if (!per_hook_dirs && n_hooks != 1)
        return cterp_error(CTERP_EINVAL,
                           "cache resume: %d hooks into one directory: expected 1 (or a "
                           "directory per hook)",
                           n_hooks);
    char **dirs = NULL;
    cterp_status s = per_hook_dirs ? hook_dirs(out_dir, hooks, n_hooks, &dirs) : CTERP_OK;
    if (!s)
        s = cache_write(m, model_name, hooks, n_hooks, dataset, c, max_tokens, dtype,
                        per_hook_dirs ? (const char *const *)dirs : &out_dir, 1, resumed_from,
                        progress, user, info);
    free_dirs(dirs, per_hook_dirs ? n_hooks : 0);
    return s;
}

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
        char *p = shard_path(dir, "activations", k);
        cterp_cache_info ik;
        int idx = -1;
        int64_t nc = 0;
        if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
        e = cache_file_open(&s->f[k], p);
        if (!e) e = decode_header(p, s->f[k].hdr, (size_t)s->f[k].size, &ik, &idx, &nc);
        if (!e && (ik.shards != P || idx != k || ik.dtype != i0->dtype || ik.d_in != i0->d_in ||
                   ik.count != i0->count || nc != s->n_chunks))
            e = cterp_error(CTERP_EFORMAT, "%s: shard %d of %d, dtype %d, d_in %lld, count %lld, chunks %lld: "
                            "expected shard %d of %d, dtype %d, d_in %lld, count %lld, chunks %lld (from "
                            "activations.bin): a shard of another cache", p, idx, ik.shards, (int)ik.dtype,
                            (long long)ik.d_in, (long long)ik.count, (long long)nc, k, P, (int)i0->dtype,
                            (long long)i0->d_in, (long long)i0->count, (long long)s->n_chunks);
        if (!e) e = check_tokens_shard(dir, &ik, k);
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
    e = check_complete(dir, p);
    if (!e) e = cache_file_open(&s->f[0], p);
    if (!e) e = decode_header(p, s->f[0].hdr, (size_t)s->f[0].size, &s->info, NULL, &s->n_chunks);
    free(p);
    if (!e) e = check_tokens(dir, &s->info);
    if (!e && s->info.shards > 1) e = open_shards(s, dir);
    if (!e) e = mixer_init(&s->mx, cap, c->seed);
    if (!e) mixer_serve_whole_if_run_fits(&s->mx, c);
    if (!e && !(s->dir = strdup(dir))) e = cterp_error(CTERP_ENOMEM, "out of memory");
    if (e) {
        cache_free(s);
        return e;
    }
    s->row_bytes = (size_t)s->info.d_in * dtype_size(s->info.dtype);
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
