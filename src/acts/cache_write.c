// The activation cache's writers (cache_impl.h): one process writing each hook's rows in chunks
// with a progress record to resume from, and the sharded writer under MPI (a shard per rank).
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acts/acts_impl.h"
#include "acts/cache_impl.h"
#include "core/dist.h"
#include "core/file.h"
#include "core/half.h"
#include "core/hash.h"

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
    char *pa = cache_shard_path(out_dir, "activations", rank), *pt = cache_shard_path(out_dir, "tokens", rank);
    char *pa0 = cache_shard_path(out_dir, "activations", 0), *pc = file_join(out_dir, "shards.bin");
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
    const int64_t rb = st.D[0] * (int64_t)cache_dtype_size(dtype);
    if (at.rows == 0) { // start over: rank 0 clears the directory, then every rank opens its files
        if (rank == 0) s = cache_clear_dir(out_dir, pa0);
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
    cache_encode_header(hdr, &in, rank, shard_rows, n_chunks);
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
        if (!count) s = cache_clear_dir(dirs[h], o[h].pa);
    if (s) goto done;
    int64_t Dmax = 0, row_bytes = 0;
    for (int h = 0; h < n; h++) {
        Dmax = st.D[h] > Dmax ? st.D[h] : Dmax;
        row_bytes += st.D[h] * (int64_t)cache_dtype_size(dtype);
    }
    hdr = calloc(1, CACHE_HEADER), conv = malloc((size_t)Dmax * 4);
    if (!hdr || !conv) {
        s = cterp_error(CTERP_ENOMEM, "cache: out of memory");
        goto done;
    }
    for (int h = 0; h < n; h++) {
        cache_out *q = &o[h];
        const int64_t rb = st.D[h] * (int64_t)cache_dtype_size(dtype);
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
            if ((s = part_write(o[h].fa, o[h].qa, out, (size_t)D * cache_dtype_size(dtype)))) goto done;
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
        cache_encode_header(hdr, &q->in, 0, count, 0);
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

