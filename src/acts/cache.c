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
            !strcmp(e->d_name, "shards.bin") || !strcmp(e->d_name, "activations.1.bin");
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
        "missing (a cterp cache run was interrupted or is still running; run it again)",
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
            !strncmp(e->d_name, "tokens.bin.tmp.", 15) || is_shard_file(e->d_name)) {
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
    if (!s) s = decode_header(p, fm.data, fm.size, info, NULL, NULL);
    if (!s) s = check_tokens(dir, info);
    file_map_close(&fm);
    free(p);
    return s;
}

// Under MPI: rank k runs batch k of every round of P forward batches (stream.c) and writes its
// rows to shard k; the batches are those of one process, cut at the same row, so the shards in
// chunk order (chunk c = batch c of the run, in shard c % P; its rows in shards.bin) are the
// cache one process writes. Rank 0 clears and locks the directory first and commits
// activations.bin last, after every other shard is in place: a job that dies leaves no
// activations.bin, an incomplete cache the reader refuses.
static cterp_status cache_write_sharded(cterp_model *m, const char *model_name, const char *hook,
                                        const char *dataset, const cterp_store_config *c,
                                        int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                        cterp_cache_progress_fn progress, void *user,
                                        cterp_cache_info *info) {
    const int P = dist_size(), rank = dist_rank();
    cterp_status s = CTERP_OK, s2;
    int lock = -1;
    char *pa = shard_path(out_dir, "activations", rank), *pt = shard_path(out_dir, "tokens", rank);
    char *pa0 = shard_path(out_dir, "activations", 0), *pc = file_join(out_dir, "shards.bin");
    if (!pa || !pt || !pa0 || !pc) s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    if (P > CACHE_MAX_SHARDS && !s)
        s = cterp_error(CTERP_EINVAL, "cache: at most %d MPI ranks (shards), got %d", CACHE_MAX_SHARDS, P);
    if (!s && rank == 0 && !(s = file_mkdirs(out_dir)) && !(s = file_lock_dir(out_dir, "cache writer", &lock)))
        s = clear_cache_dir(out_dir, pa0);
    // every rank learns whether rank 0 got the directory: none writes into one it does not hold
    int64_t bad = s != CTERP_OK;
    if ((s2 = dist_sum_i64(&bad, 1)) && !s) s = s2;
    if (!s && bad) s = cterp_error(CTERP_EIO, "%s: rank 0 could not prepare the directory", out_dir);
    if (s) {
        free(pa), free(pt), free(pa0), free(pc);
        file_unlock_dir(lock);
        return s;
    }
    act_stream st;
    int open = 0;
    uint8_t *hdr = calloc(1, CACHE_HEADER), *conv = NULL;
    int64_t *chunks = NULL, n_chunks = 0, cap_chunks = 0, shard_rows[CACHE_MAX_SHARDS] = {0};
    file_atomic wa = {0}, wt = {0};
    int oa = 0, ot = 0;
    cterp_cache_info in;
    memset(&in, 0, sizeof in);
    if (!hdr) s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    if (!s && !(s = stream_open(&st, m, &hook, 1, dataset, c))) open = 1;
    if (!s) s = stream_distribute(&st, 0);
    if (!s && !(conv = malloc((size_t)st.D[0] * 4))) s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
    if (!s && !(s = file_atomic_open(&wa, pa))) oa = 1;
    if (!s && !(s = file_atomic_open(&wt, pt))) ot = 1;
    if (!s) s = file_atomic_write(&wa, hdr, CACHE_HEADER); // the real header comes last
    if (s) goto done;
    in.version = CACHE_VERSION_SHARDED, in.dtype = dtype, in.d_in = st.D[0], in.shards = P;
    in.context_size = c->windows.context_size, in.prepend_bos = c->windows.prepend_bos;
    in.separator = c->windows.separator, in.concat = c->windows.concat;
    in.exclude_special = c->windows.exclude_special;
    snprintf(in.model, sizeof in.model, "%s", model_name ? model_name : "");
    snprintf(in.hook, sizeof in.hook, "%s", hook);
    snprintf(in.dataset, sizeof in.dataset, "%s", dataset);
    int64_t left = 0; // rows the rounds made beyond max_tokens
    while (in.count < max_tokens) {
        int eof = 0;
        if ((s = stream_round(&st, &eof))) goto done;
        if (eof) {
            in.complete_epoch = 1;
            break;
        }
        if (n_chunks + P > cap_chunks) {
            cap_chunks = 2 * cap_chunks + P;
            int64_t *nc = realloc(chunks, (size_t)cap_chunks * sizeof *chunks);
            if (!nc) {
                s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
                goto done;
            }
            chunks = nc;
        }
        for (int j = 0; j < P; j++) {
            if (in.count >= max_tokens) { // this batch's rows are beyond the cache
                left += st.round_rows[j];
                continue;
            }
            const int64_t take = st.round_rows[j] < max_tokens - in.count ? st.round_rows[j] : max_tokens - in.count;
            left += st.round_rows[j] - take;
            in.windows += st.round_windows[j];
            chunks[n_chunks++] = take, shard_rows[j] += take, in.count += take;
            if (j != rank) continue;
            for (int64_t r = 0; r < take && !s; r++) {
                const float *row = st.rows[0] + r * st.D[0];
                const void *out = row;
                if (dtype != CTERP_DTYPE_F32) {
                    uint16_t *h = (uint16_t *)conv;
                    for (int64_t d = 0; d < st.D[0]; d++)
                        h[d] = dtype == CTERP_DTYPE_F16 ? f32_to_f16(row[d]) : f32_to_bf16(row[d]);
                    out = conv;
                }
                if (!(s = file_atomic_write(&wa, out, (size_t)st.D[0] * dtype_size(dtype))))
                    s = file_atomic_write(&wt, st.row_tok + r, 4);
            }
            if (s) goto done;
        }
        if (progress) progress(in.count, max_tokens, user);
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
        s = cterp_error(CTERP_EFORMAT, "%s: no activations: no complete window of %d tokens", dataset,
                        c->windows.context_size);
        goto done;
    }
    encode_header(hdr, &in, rank, shard_rows[rank], n_chunks);
    if (fseek(wa.fp, 0, SEEK_SET) != 0 || fwrite(hdr, 1, CACHE_HEADER, wa.fp) != CACHE_HEADER) {
        s = cterp_error(CTERP_EIO, "%s: cannot write the header", pa);
        goto done;
    }
    if ((s = file_atomic_commit(&wt))) goto done;
    ot = 0;
    if (rank != 0) {
        s = file_atomic_commit(&wa);
        oa = 0;
    } else { // the chunk table, for the reader to find row r
        file_atomic wc = {0};
        if (!(s = file_atomic_open(&wc, pc))) {
            if (!(s = file_atomic_write(&wc, chunks, (size_t)n_chunks * sizeof *chunks)))
                s = file_atomic_commit(&wc);
            else
                file_atomic_abort(&wc);
        }
    }
    if (s) goto done;
    // every shard in place before activations.bin, the mark of a complete cache
    if ((s = dist_barrier())) goto done;
    if (rank == 0) {
        file_test_point("cache-tokens");
        s = file_atomic_commit(&wa);
        oa = 0;
    }
    in.shard_rows = shard_rows[0];
    if (!s && progress) progress(in.count, max_tokens, user);
    if (!s && info) *info = in;
done:
    if (oa) file_atomic_abort(&wa);
    if (ot) file_atomic_abort(&wt);
    if (open) stream_close(&st);
    free(pa), free(pt), free(pa0), free(pc), free(hdr), free(conv), free(chunks);
    file_unlock_dir(lock);
    return s;
}

// One hook's output files while the writer runs.
typedef struct {
    char *pa, *pt; // activations.bin, tokens.bin
    int lock, oa, ot;
    file_atomic wa, wt;
    cterp_cache_info in;
} cache_out;

static void cache_out_close(cache_out *o) {
    if (o->oa) file_atomic_abort(&o->wa);
    if (o->ot) file_atomic_abort(&o->wt);
    free(o->pa), free(o->pt);
    file_unlock_dir(o->lock);
    o->pa = o->pt = NULL, o->oa = o->ot = 0, o->lock = -1;
}

// Writes the caches of n hooks, hook h into dirs[h], from one run of the model.
static cterp_status cache_write(cterp_model *m, const char *model_name, const char *const *hooks,
                                int n, const char *dataset, const cterp_store_config *c,
                                int64_t max_tokens, cterp_dtype dtype, const char *const *dirs,
                                cterp_cache_progress_fn progress, void *user, cterp_cache_info *info) {
    cterp_store_config cd;
    if (!c) cterp_store_config_default(&cd), c = &cd;
    if (max_tokens < 1) return cterp_error(CTERP_EINVAL, "tokens: expected >= 1, got %lld", (long long)max_tokens);
    if (dtype > CTERP_DTYPE_BF16) return cterp_error(CTERP_EINVAL, "dtype: expected f32, f16 or bf16");
    if (n < 1 || n > 4096) return cterp_error(CTERP_EINVAL, "hooks: expected 1..4096 hook names, got %d", n);
    if (dist_size() > 1 && n > 1) // one forward for every hook and rank k's rows into shard k of each: not yet
        return cterp_error(CTERP_EINVAL, "cache: %d hooks under %d MPI ranks: a sharded cache holds one hook; "
                           "run mpirun -np P cterp cache once per hook, or cterp cache --hooks in one process "
                           "(docs/scaling.md)", n, dist_size());
    if (dist_size() > 1)
        return cache_write_sharded(m, model_name, hooks[0], dataset, c, max_tokens, dtype, dirs[0], progress, user,
                                   info);
    for (int h = 0; h < n; h++)
        for (int j = 0; j < h; j++)
            if (!strcmp(dirs[h], dirs[j]))
                return cterp_error(CTERP_EINVAL, "cache: %s and %s would both be written to %s", hooks[j],
                                   hooks[h], dirs[h]);
    cache_out *o = calloc((size_t)n, sizeof *o);
    const float **row = malloc((size_t)n * sizeof *row);
    if (!o || !row) {
        free(o), free(row);
        return cterp_error(CTERP_ENOMEM, "cache: out of memory");
    }
    for (int h = 0; h < n; h++) o[h].lock = -1;
    act_stream st = {0};
    uint8_t *hdr = NULL, *conv = NULL;
    cterp_status s = CTERP_OK;
    // the hooks and the data are checked before any previous cache is removed
    if ((s = stream_open(&st, m, hooks, n, dataset, c))) goto done;
    for (int h = 0; h < n && !s; h++) {
        if ((s = file_mkdirs(dirs[h])) || (s = file_lock_dir(dirs[h], "cache writer", &o[h].lock))) break;
        o[h].pa = file_join(dirs[h], "activations.bin"), o[h].pt = file_join(dirs[h], "tokens.bin");
        if (!o[h].pa || !o[h].pt) s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
        if (!s) s = clear_cache_dir(dirs[h], o[h].pa);
    }
    if (s) goto done;
    int64_t Dmax = 0;
    for (int h = 0; h < n; h++) Dmax = st.D[h] > Dmax ? st.D[h] : Dmax;
    hdr = calloc(1, CACHE_HEADER), conv = malloc((size_t)Dmax * 4);
    if (!hdr || !conv) {
        s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
        goto done;
    }
    for (int h = 0; h < n; h++) {
        cache_out *q = &o[h];
        if ((s = file_atomic_open(&q->wa, q->pa))) goto done;
        q->oa = 1;
        if ((s = file_atomic_open(&q->wt, q->pt))) goto done;
        q->ot = 1;
        if ((s = file_atomic_write(&q->wa, hdr, CACHE_HEADER))) goto done; // the real header comes last
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
    int64_t count = 0;
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
            if ((s = file_atomic_write(&o[h].wa, out, (size_t)D * dtype_size(dtype)))) goto done;
            if ((s = file_atomic_write(&o[h].wt, &tok, 4))) goto done;
        }
        count++;
        if (progress && count % 4096 == 0) progress(count, max_tokens, user);
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
        FILE *f = q->wa.fp;
        if (fseek(f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, CACHE_HEADER, f) != CACHE_HEADER) {
            s = cterp_error(CTERP_EIO, "%s: cannot write the header", q->pa);
            goto done;
        }
        if ((s = file_atomic_commit(&q->wt))) goto done;
        q->ot = 0;
        file_test_point("cache-tokens"); // tokens.bin in place, activations.bin not yet
        s = file_atomic_commit(&q->wa);
        q->oa = 0;
        if (s) goto done;
        if (info) info[h] = q->in;
    }
    if (progress) progress(count, max_tokens, user);
done:
    for (int h = 0; h < n; h++) cache_out_close(&o[h]);
    stream_close(&st);
    free(o), free(row), free(hdr), free(conv);
    return s;
}

cterp_status cterp_act_cache_write(cterp_model *m, const char *model_name, const char *hook,
                                   const char *dataset, const cterp_store_config *c,
                                   int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                   cterp_cache_progress_fn progress, void *user,
                                   cterp_cache_info *info) {
    return cache_write(m, model_name, &hook, 1, dataset, c, max_tokens, dtype, &out_dir, progress,
                       user, info);
}

cterp_status cterp_act_cache_write_hooks(cterp_model *m, const char *model_name, const char *const *hooks,
                                         int n_hooks, const char *dataset, const cterp_store_config *c,
                                         int64_t max_tokens, cterp_dtype dtype, const char *out_dir,
                                         cterp_cache_progress_fn progress, void *user,
                                         cterp_cache_info *info) {
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
    if (!s)
        s = cache_write(m, model_name, hooks, n_hooks, dataset, c, max_tokens, dtype,
                        (const char *const *)dirs, progress, user, info);
    for (int h = 0; dirs && h < n_hooks; h++) free(dirs[h]);
    free(dirs);
    return s;
}

// ---- reader source ------------------------------------------------------------------------

typedef struct {
    file_map fm;
    cterp_cache_info info;
    const uint8_t *rows;
    // a sharded cache (version 2): the other shards' files and the chunk table: chunk c holds
    // rows chunk_start[c] .. chunk_start[c + 1) of the cache, in shard c % P from row chunk_off[c]
    file_map shard_fm[CACHE_MAX_SHARDS];
    const uint8_t *shard_rows[CACHE_MAX_SHARDS];
    int64_t n_chunks, *chunk_start, *chunk_off;
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

// Where cache row r lies: in one file, or in the shard of the last chunk starting at or before r.
static const uint8_t *row_at(const cache_src *s, int64_t r, size_t row_bytes) {
    if (s->info.shards <= 1) return s->rows + (size_t)r * row_bytes;
    int64_t lo = 0, hi = s->n_chunks - 1; // chunk_start[0] = 0 <= r
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        if (s->chunk_start[mid] <= r) lo = mid;
        else hi = mid - 1;
    }
    return s->shard_rows[lo % s->info.shards] + (size_t)(s->chunk_off[lo] + r - s->chunk_start[lo]) * row_bytes;
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
            memcpy(o, row_at(s, r, (size_t)D * 4), (size_t)D * 4);
        } else {
            const uint8_t *p = row_at(s, r, (size_t)D * 2);
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
    for (int k = 1; k < CACHE_MAX_SHARDS; k++) file_map_close(&s->shard_fm[k]);
    free(s->chunk_start), free(s->chunk_off);
    mixer_free(&s->mx);
    free(s->slot_row);
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
        e = file_map_open(&s->shard_fm[k], p);
        if (!e) e = decode_header(p, s->shard_fm[k].data, s->shard_fm[k].size, &ik, &idx, &nc);
        if (!e && (ik.shards != P || idx != k || ik.dtype != i0->dtype || ik.d_in != i0->d_in ||
                   ik.count != i0->count || nc != s->n_chunks))
            e = cterp_error(CTERP_EFORMAT, "%s: shard %d of %d, dtype %d, d_in %lld, count %lld, chunks %lld: "
                            "expected shard %d of %d, dtype %d, d_in %lld, count %lld, chunks %lld (from "
                            "activations.bin): a shard of another cache", p, idx, ik.shards, (int)ik.dtype,
                            (long long)ik.d_in, (long long)ik.count, (long long)nc, k, P, (int)i0->dtype,
                            (long long)i0->d_in, (long long)i0->count, (long long)s->n_chunks);
        if (!e) e = check_tokens_shard(dir, &ik, k);
        free(p);
        if (!e) s->shard_rows[k] = s->shard_fm[k].data + CACHE_HEADER, rows[k] = ik.shard_rows;
    }
    if (e) return e;
    char *pc = file_join(dir, "shards.bin");
    file_map cm = {0};
    if (!pc) return cterp_error(CTERP_ENOMEM, "out of memory");
    e = file_map_open(&cm, pc);
    if (!e && cm.size != (size_t)s->n_chunks * 8)
        e = cterp_error(CTERP_EFORMAT, "%s: size %zu bytes, expected chunks %lld (from activations.bin) x 8 bytes",
                        pc, cm.size, (long long)s->n_chunks);
    s->chunk_start = malloc((size_t)(s->n_chunks + 1) * sizeof(int64_t));
    s->chunk_off = malloc((size_t)s->n_chunks * sizeof(int64_t));
    if (!e && (!s->chunk_start || !s->chunk_off)) e = cterp_error(CTERP_ENOMEM, "out of memory");
    int64_t total = 0, in_shard[CACHE_MAX_SHARDS] = {0};
    for (int64_t c = 0; c < s->n_chunks && !e; c++) {
        int64_t n;
        memcpy(&n, cm.data + c * 8, 8);
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
    file_map_close(&cm);
    free(pc);
    return e;
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
    if (!e) e = decode_header(p, s->fm.data, s->fm.size, &s->info, NULL, &s->n_chunks);
    free(p);
    if (!e) e = check_tokens(dir, &s->info);
    if (!e && s->info.shards > 1) e = open_shards(s, dir);
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
    s->shard_rows[0] = s->rows;
    // the rows alone define what is served: not the header's names, so a copy matches
    acts_fingerprint *fp = &s->fp;
    fp->kind = ACTS_CACHE;
    fp->data_bytes = (uint64_t)s->info.count;
    fp->data_hash =
        hash_u64(hash_u64(0x63616368ULL, (uint64_t)s->info.d_in), (uint64_t)s->info.dtype);
    fp->data_hash = hash_sampled(fp->data_hash, s->rows, s->fm.size - CACHE_HEADER);
    for (int k = 1; k < s->info.shards; k++) // a sharded cache: every shard's rows, and their order
        fp->data_hash = hash_sampled(fp->data_hash, s->shard_rows[k], s->shard_fm[k].size - CACHE_HEADER);
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
