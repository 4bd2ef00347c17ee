// Dataset readers: .txt (document per line), a folder of .txt (document per file), .jsonl
// ("text" field, via cJSON), and pretokenized .bin streams. Streaming: one line, file or chunk
// in memory at a time.
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/hash.h"
#include "cterp/data.h"

enum { DS_LINES, DS_JSONL, DS_DIR, DS_BIN };

#define BIN_CHUNK 65536 // tokens per pretokenized "document" (a slice of the stream)

struct cterp_dataset {
    int kind;
    char *path;
    cterp_dataset_opts o;
    FILE *f;
    char *line; // getline buffer
    size_t line_cap;
    int64_t line_no, skipped;
    char *text; // current document (jsonl text copy, or a whole file of a folder)
    char **files; // DS_DIR: sorted *.txt paths
    size_t n_files, file_i;
    int32_t *tok; // DS_BIN chunk
    uint8_t *raw;
    int64_t bin_pos, bin_n; // tokens read, tokens in the file
    int token_bytes;
};

void cterp_dataset_opts_default(cterp_dataset_opts *o) {
    o->text_field = "text";
    o->skip_malformed = 0;
    o->token_bits = 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static cterp_status list_dir(cterp_dataset *d) {
    DIR *dir = opendir(d->path);
    if (!dir) return cterp_error(CTERP_EIO, "%s: cannot open folder: %s", d->path, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".txt")) continue;
        if (d->n_files == cap) {
            cap = cap ? 2 * cap : 64;
            char **nf = realloc(d->files, cap * sizeof *nf);
            if (!nf) {
                closedir(dir);
                return cterp_error(CTERP_ENOMEM, "%s: out of memory listing files", d->path);
            }
            d->files = nf;
        }
        if (!(d->files[d->n_files] = file_join(d->path, e->d_name))) {
            closedir(dir);
            return cterp_error(CTERP_ENOMEM, "%s: out of memory listing files", d->path);
        }
        d->n_files++;
    }
    closedir(dir);
    if (!d->n_files) return cterp_error(CTERP_EFORMAT, "%s: folder holds no *.txt files", d->path);
    qsort(d->files, d->n_files, sizeof *d->files, cmp_str); // a fixed order, for determinism
    return CTERP_OK;
}

void cterp_dataset_close(cterp_dataset *d) {
    if (!d) return;
    if (d->f) fclose(d->f);
    for (size_t i = 0; i < d->n_files; i++) free(d->files[i]);
    free(d->files), free(d->line), free(d->text), free(d->tok), free(d->raw), free(d->path);
    free(d);
}

cterp_status cterp_dataset_open(cterp_dataset **out, const char *path, const cterp_dataset_opts *o) {
    *out = NULL;
    cterp_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    }
    if (o) d->o = *o;
    else cterp_dataset_opts_default(&d->o);
    if (!d->o.text_field) d->o.text_field = "text";
    cterp_status s = CTERP_OK;
    struct stat st;
    if (stat(path, &st) != 0) {
        s = cterp_error(CTERP_EIO, "%s: cannot open dataset: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        d->kind = DS_DIR;
        s = list_dir(d);
    } else {
        d->kind = ends_with(path, ".jsonl") ? DS_JSONL : ends_with(path, ".bin") ? DS_BIN : DS_LINES;
        if (!(d->f = fopen(path, "rb")))
            s = cterp_error(CTERP_EIO, "%s: cannot open dataset: %s", path, strerror(errno));
    }
    if (!s && d->kind == DS_BIN) {
        int bits = d->o.token_bits ? d->o.token_bits : ends_with(path, ".u32.bin") ? 32 : 16;
        if (bits != 16 && bits != 32) {
            s = cterp_error(CTERP_EINVAL, "%s: token_bits: expected 16 or 32, got %d", path, bits);
        } else {
            d->token_bytes = bits / 8;
            if ((int64_t)st.st_size % d->token_bytes)
                s = cterp_error(CTERP_EFORMAT, "%s: size %lld bytes is not a multiple of %d-byte token ids",
                                path, (long long)st.st_size, d->token_bytes);
            d->bin_n = (int64_t)st.st_size / d->token_bytes;
            d->tok = malloc(BIN_CHUNK * sizeof(int32_t));
            d->raw = malloc((size_t)BIN_CHUNK * d->token_bytes);
            if (!s && (!d->tok || !d->raw)) s = cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
        }
    }
    if (s) {
        cterp_dataset_close(d);
        return s;
    }
    *out = d;
    return CTERP_OK;
}

cterp_status cterp_dataset_rewind(cterp_dataset *d) {
    d->line_no = 0, d->file_i = 0, d->bin_pos = 0;
    if (d->f && fseek(d->f, 0, SEEK_SET) != 0)
        return cterp_error(CTERP_EIO, "%s: cannot rewind: %s", d->path, strerror(errno));
    return CTERP_OK;
}

// Next line without its newline (and a '\r' before it); 0 at the end of the file.
static int next_line(cterp_dataset *d, size_t *len) {
    ssize_t n = getline(&d->line, &d->line_cap, d->f);
    if (n < 0) return 0;
    d->line_no++;
    while (n > 0 && (d->line[n - 1] == '\n' || d->line[n - 1] == '\r')) d->line[--n] = 0;
    *len = (size_t)n;
    return 1;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return 0;
    return 1;
}

// One jsonl line -> d->text; 1 ok, 0 malformed (message recorded), -1 out of memory.
static int parse_jsonl(cterp_dataset *d, const char *line, size_t len, size_t *out_len) {
    cJSON *j = cJSON_ParseWithLength(line, len);
    if (!j) {
        cterp_error(CTERP_EFORMAT, "%s:%lld: malformed JSON near byte %ld", d->path,
                    (long long)d->line_no, (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - line : 0));
        return 0;
    }
    const cJSON *t = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, d->o.text_field) : NULL;
    if (!cJSON_IsString(t)) {
        cterp_error(CTERP_EFORMAT, "%s:%lld: expected an object with a string \"%s\" field, found %s",
                    d->path, (long long)d->line_no, d->o.text_field,
                    !cJSON_IsObject(j) ? "no object" : t ? "another type" : "no such field");
        cJSON_Delete(j);
        return 0;
    }
    size_t n = strlen(t->valuestring);
    free(d->text);
    d->text = malloc(n + 1);
    if (!d->text) {
        cJSON_Delete(j);
        return -1;
    }
    memcpy(d->text, t->valuestring, n + 1);
    cJSON_Delete(j);
    *out_len = n;
    return 1;
}

cterp_status cterp_dataset_next(cterp_dataset *d, cterp_document *doc, int *eof) {
    memset(doc, 0, sizeof *doc);
    *eof = 0;
    size_t len;
    switch (d->kind) {
    case DS_LINES:
        while (next_line(d, &len)) {
            if (blank(d->line, len)) continue;
            doc->text = d->line, doc->len = len, doc->offset = d->line_no;
            return CTERP_OK;
        }
        break;
    case DS_JSONL:
        while (next_line(d, &len)) {
            if (blank(d->line, len)) continue;
            size_t n = 0;
            int r = parse_jsonl(d, d->line, len, &n);
            if (r < 0) return cterp_error(CTERP_ENOMEM, "%s:%lld: out of memory", d->path, (long long)d->line_no);
            if (r == 0) {
                if (!d->o.skip_malformed) return CTERP_EFORMAT; // message recorded by parse_jsonl
                d->skipped++;
                continue;
            }
            doc->text = d->text, doc->len = n, doc->offset = d->line_no;
            return CTERP_OK;
        }
        break;
    case DS_DIR:
        while (d->file_i < d->n_files) {
            const char *p = d->files[d->file_i++];
            free(d->text);
            d->text = NULL;
            cterp_status s = file_read_all(p, &d->text, &len);
            if (s) return s;
            if (blank(d->text, len)) continue;
            doc->text = d->text, doc->len = len;
            return CTERP_OK;
        }
        break;
    case DS_BIN: {
        int64_t n = d->bin_n - d->bin_pos < BIN_CHUNK ? d->bin_n - d->bin_pos : BIN_CHUNK;
        if (n <= 0) break;
        if (fread(d->raw, (size_t)d->token_bytes, (size_t)n, d->f) != (size_t)n)
            return cterp_error(CTERP_EIO, "%s: short read at token %lld", d->path, (long long)d->bin_pos);
        for (int64_t i = 0; i < n; i++) {
            if (d->token_bytes == 2) {
                uint16_t v;
                memcpy(&v, d->raw + 2 * i, 2);
                d->tok[i] = v;
            } else {
                uint32_t v;
                memcpy(&v, d->raw + 4 * i, 4);
                if (v > INT32_MAX)
                    return cterp_error(CTERP_EFORMAT, "%s: token %lld: id %u out of range", d->path,
                                       (long long)(d->bin_pos + i), v);
                d->tok[i] = (int32_t)v;
            }
        }
        doc->tokens = d->tok, doc->n_tokens = (size_t)n, doc->continues = d->bin_pos > 0;
        doc->offset = d->bin_pos;
        d->bin_pos += n;
        return CTERP_OK;
    }
    }
    *eof = 1;
    return CTERP_OK;
}

int cterp_dataset_pretokenized(const cterp_dataset *d) { return d->kind == DS_BIN; }
int64_t cterp_dataset_skipped(const cterp_dataset *d) { return d->skipped; }
const char *cterp_dataset_path(const cterp_dataset *d) { return d->path; }

cterp_status cterp_dataset_fingerprint(const cterp_dataset *d, uint64_t *hash, int64_t *bytes) {
    // the kind: a .jsonl and a .txt of the same bytes are other documents
    uint64_t h = hash_u64(0x64617461ULL, (uint64_t)d->kind);
    if (d->kind == DS_JSONL) h = hash_str(h, d->o.text_field);
    if (d->kind == DS_BIN) h = hash_u64(h, (uint64_t)d->token_bytes);
    // skip_malformed is left out: it decides whether a bad line stops the run, not which rows come
    int64_t total = 0;
    size_t n = d->kind == DS_DIR ? d->n_files : 1;
    for (size_t i = 0; i < n; i++) {
        const char *p = d->kind == DS_DIR ? d->files[i] : d->path;
        const char *base = strrchr(p, '/');
        if (d->kind == DS_DIR) h = hash_str(h, base ? base + 1 : p); // the names fix the order
        file_map fm = {0};
        struct stat st;
        if (stat(p, &st) == 0 && !S_ISREG(st.st_mode))
            return cterp_error(CTERP_EINVAL, "%s: not a regular file (a pipe?): the activation store "
                               "reads its data again each epoch and fingerprints it for resume; "
                               "save it to a file first", p);
        cterp_status s = file_map_open(&fm, p);
        if (s) return s;
        h = hash_sampled(h, fm.data, fm.size);
        total += (int64_t)fm.size;
        file_map_close(&fm);
    }
    *hash = h, *bytes = total;
    return CTERP_OK;
}
