// safetensors: see safetensors.h. The reader trusts nothing in the file until it is checked.
#include "io/safetensors.h"

#include "core/half.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Element bytes are copied as they lie in the file; the file is little-endian.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cterp's safetensors reader assumes a little-endian host"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1},       [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},
    [ST_I32] = {"I32", 4},         [ST_U32] = {"U32", 4},         [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},         [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_N_DTYPES ? dtypes[t].name : "unknown";
}

size_t st_dtype_size(st_dtype t) {
    return (unsigned)t < ST_N_DTYPES ? dtypes[t].size : 0;
}

cterp_status st_dtype_parse(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (name && !strcmp(name, dtypes[i].name)) {
            *out = (st_dtype)i;
            return CTERP_OK;
        }
    return cterp_error(CTERP_EINVAL,
                       "dtype '%s' is unknown (expected F32, F16, BF16, F64, I64, I32, I16, I8, "
                       "U64, U32, U16, U8, BOOL, F8_E4M3 or F8_E5M2)",
                       name ? name : "(null)");
}

// "[768, 24576]"
static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// ---------------------------------------------------------------------------------------------
// reader

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void st_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    file_map_close(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

// A JSON number that is an integer in [0, 2^53] (beyond that a double is no longer exact).
static int json_u53(const cJSON *j, int64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != (double)(int64_t)v) return 0;
    *out = (int64_t)v;
    return 1;
}

static cterp_status parse_metadata(st_file *f, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return cterp_error(CTERP_EFORMAT, "%s: __metadata__: expected an object of strings",
                           f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_vals = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals)
        return cterp_error(CTERP_ENOMEM, "%s: out of memory", f->path);
    const cJSON *e;
    cJSON_ArrayForEach(e, meta) {
        if (!cJSON_IsString(e))
            return cterp_error(CTERP_EFORMAT, "%s: __metadata__ key '%s': expected a string value",
                               f->path, e->string);
        char *k = xstrdup(e->string), *v = xstrdup(e->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return cterp_error(CTERP_ENOMEM, "%s: out of memory", f->path);
        }
        f->meta_keys[f->n_meta] = k;
        f->meta_vals[f->n_meta++] = v;
    }
    return CTERP_OK;
}

static cterp_status parse_tensor(st_file *f, const cJSON *j, const uint8_t *data, size_t data_size,
                                 st_tensor *t) {
    const char *P = f->path, *name = j->string;
    if (!cJSON_IsObject(j))
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': expected an object", P, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(jd))
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': missing or non-string 'dtype'", P,
                           name);
    if (st_dtype_parse(jd->valuestring, &t->dtype) != CTERP_OK)
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", P, name,
                           jd->valuestring);
    if (!cJSON_IsArray(js))
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': missing or non-array 'shape'", P, name);
    int nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS)
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': %d dimensions, at most %d supported", P,
                           name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    int64_t nelem = 1;
    for (int i = 0; i < nd; i++) {
        int64_t d;
        if (!json_u53(cJSON_GetArrayItem(js, i), &d))
            return cterp_error(CTERP_EFORMAT,
                               "%s: tensor '%s': shape[%d] is not a non-negative integer", P, name,
                               i);
        t->shape[i] = d;
        if (d != 0 && nelem > INT64_MAX / d)
            return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': shape overflows 64 bits", P, name);
        nelem *= d;
    }
    size_t es = st_dtype_size(t->dtype);
    if ((uint64_t)nelem > SIZE_MAX / es || (uint64_t)nelem > (uint64_t)INT64_MAX / es)
        return cterp_error(CTERP_EFORMAT, "%s: tensor '%s': byte size overflows", P, name);
    t->nelem = nelem;
    t->nbytes = (size_t)nelem * es;
    int64_t b, e;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 ||
        !json_u53(cJSON_GetArrayItem(jo, 0), &b) || !json_u53(cJSON_GetArrayItem(jo, 1), &e))
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor '%s': 'data_offsets' must be [begin, end] non-negative "
                           "integers",
                           P, name);
    if (b > e)
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64
                           "] has begin > end",
                           P, name, b, e);
    if ((uint64_t)e > data_size)
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor '%s': data_offsets end %" PRId64
                           " is past the end of the data (%zu bytes; file truncated?)",
                           P, name, e, data_size);
    if ((uint64_t)(e - b) != t->nbytes) {
        char sh[200];
        fmt_shape(sh, sizeof sh, t->ndim, t->shape);
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor '%s': data_offsets span %" PRId64
                           " bytes, but %s shape %s needs %zu",
                           P, name, e - b, st_dtype_name(t->dtype), sh, t->nbytes);
    }
    t->data = data + b;
    t->name = xstrdup(name);
    if (!t->name) return cterp_error(CTERP_ENOMEM, "%s: out of memory", P);
    return CTERP_OK;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

// No name twice: sorted, neighbours compared. Comparing each name with all before it took 22 s
// for a 6 MB header of 100000 tensors.
static cterp_status check_unique(const st_file *f) {
    if (f->n_tensors < 2) return CTERP_OK;
    const st_tensor **by = malloc((size_t)f->n_tensors * sizeof *by);
    if (!by) return cterp_error(CTERP_ENOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n_tensors; i++) by[i] = &f->tensors[i];
    qsort(by, (size_t)f->n_tensors, sizeof *by, cmp_tensor_name);
    cterp_status s = CTERP_OK;
    for (int i = 1; i < f->n_tensors && !s; i++)
        if (!strcmp(by[i]->name, by[i - 1]->name))
            s = cterp_error(CTERP_EFORMAT, "%s: tensor '%s' appears twice", f->path, by[i]->name);
    free(by);
    return s;
}

static cterp_status parse_header(st_file *f) {
    const char *P = f->path;
    const uint8_t *m = f->map.data;
    size_t size = f->map.size;
    if (size < 8)
        return cterp_error(CTERP_EFORMAT,
                           "%s: %zu bytes, too short for a safetensors file (8-byte header length)",
                           P, size);
    uint64_t H = 0;
    for (int i = 7; i >= 0; i--) H = (H << 8) | m[i];
    if (H > size - 8)
        return cterp_error(CTERP_EFORMAT,
                           "%s: header length %" PRIu64 " is larger than the rest of the file "
                           "(%zu bytes; truncated or not safetensors)",
                           P, H, size - 8);
    if (H > ST_MAX_HEADER)
        return cterp_error(CTERP_EFORMAT, "%s: header length %" PRIu64 " exceeds %" PRIu64 " bytes",
                           P, H, ST_MAX_HEADER);
    // parsed from a NUL-terminated copy: the mapping may end right after the header
    char *hdr = malloc((size_t)H + 1);
    if (!hdr)
        return cterp_error(CTERP_ENOMEM, "%s: cannot allocate the %" PRIu64 "-byte header", P, H);
    memcpy(hdr, m + 8, (size_t)H);
    hdr[H] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)H, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        free(hdr);
        return cterp_error(CTERP_EFORMAT,
                           "%s: header is not valid JSON (near byte %zu of %" PRIu64 ")", P, at, H);
    }
    // the writer pads the header with spaces; anything else after the JSON is corruption
    for (const char *c = end; c < hdr + H; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
            size_t at = (size_t)(c - hdr);
            cJSON_Delete(root);
            free(hdr);
            return cterp_error(CTERP_EFORMAT,
                               "%s: unexpected bytes after the header JSON (byte %zu)", P, at);
        }
    cterp_status s = CTERP_OK;
    if (!cJSON_IsObject(root)) {
        s = cterp_error(CTERP_EFORMAT, "%s: header is not a JSON object", P);
        goto done;
    }
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n + 1, sizeof(st_tensor));
    if (!f->tensors) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", P);
        goto done;
    }
    const uint8_t *data = m + 8 + H;
    size_t data_size = size - 8 - (size_t)H;
    const cJSON *j;
    cJSON_ArrayForEach(j, root) {
        if (!strcmp(j->string, "__metadata__")) {
            if (f->meta_keys) {
                s = cterp_error(CTERP_EFORMAT, "%s: __metadata__ appears twice", P);
                goto done;
            }
            if ((s = parse_metadata(f, j))) goto done;
            continue;
        }
        if ((s = parse_tensor(f, j, data, data_size, &f->tensors[f->n_tensors]))) goto done;
        f->n_tensors++;
    }
    s = check_unique(f);
done:
    cJSON_Delete(root);
    free(hdr);
    return s;
}

cterp_status st_open(st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(path);
    if (!f->path) return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    cterp_status s = file_map_open(&f->map, path);
    if (!s) s = parse_header(f);
    if (s) st_close(f);
    return s;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *st_meta_get(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

// The tensor `name` with exactly the expected shape, or an error saying what was found.
static cterp_status find_shaped(const st_file *f, const char *name, int ndim, const int64_t *shape,
                                const st_tensor **out) {
    const st_tensor *t = st_find(f, name);
    *out = NULL;
    if (!t) return cterp_error(CTERP_ENOTFOUND, "%s: tensor %s: not found", f->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[200], got[200];
        fmt_shape(want, sizeof want, ndim, shape);
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        return cterp_error(CTERP_EFORMAT, "%s: tensor %s: expected shape %s, found %s", f->path,
                           name, want, got);
    }
    *out = t;
    return CTERP_OK;
}

static cterp_status bad_dtype(const st_file *f, const st_tensor *t, const char *want) {
    return cterp_error(CTERP_EFORMAT, "%s: tensor %s: dtype %s cannot be read as %s", f->path,
                       t->name, st_dtype_name(t->dtype), want);
}

// Element i of a float tensor as a double (memcpy: the data may be unaligned).
static inline double load_float(const st_tensor *t, int64_t i) {
    const uint8_t *p = t->data + (size_t)i * dtypes[t->dtype].size;
    switch (t->dtype) {
    case ST_F32: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    case ST_F64: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    case ST_F16: {
        uint16_t h;
        memcpy(&h, p, 2);
        return f16_to_f32(h);
    }
    default: { // ST_BF16
        uint16_t h;
        memcpy(&h, p, 2);
        return bf16_to_f32(h);
    }
    }
}

static int is_float(st_dtype d) {
    return d == ST_F32 || d == ST_F64 || d == ST_F16 || d == ST_BF16;
}

cterp_status st_read_f32(const st_file *f, const char *name, float *out, int ndim,
                         const int64_t *shape) {
    const st_tensor *t;
    cterp_status s = find_shaped(f, name, ndim, shape, &t);
    if (s) return s;
    if (!is_float(t->dtype)) return bad_dtype(f, t, "f32 (expected F32, F16, BF16 or F64)");
    if (t->dtype == ST_F32) {
        if (t->nbytes) memcpy(out, t->data, t->nbytes);
        return CTERP_OK;
    }
    for (int64_t i = 0; i < t->nelem; i++) out[i] = (float)load_float(t, i);
    return CTERP_OK;
}

cterp_status st_read_f64(const st_file *f, const char *name, double *out, int ndim,
                         const int64_t *shape) {
    const st_tensor *t;
    cterp_status s = find_shaped(f, name, ndim, shape, &t);
    if (s) return s;
    if (!is_float(t->dtype)) return bad_dtype(f, t, "f64 (expected F64, F32, F16 or BF16)");
    for (int64_t i = 0; i < t->nelem; i++) out[i] = load_float(t, i);
    return CTERP_OK;
}

// Element i of an integer tensor: *neg set when the value is negative, *u its magnitude bits.
static int load_int(const st_tensor *t, int64_t i, int64_t *sv, uint64_t *uv) {
    const uint8_t *p = t->data + (size_t)i * dtypes[t->dtype].size;
    union {
        int8_t i8;
        uint8_t u8;
        int16_t i16;
        uint16_t u16;
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
    } v;
    memcpy(&v, p, dtypes[t->dtype].size);
    switch (t->dtype) {
    case ST_BOOL:
        *uv = v.u8 != 0;
        *sv = (int64_t)*uv;
        return 1;
    case ST_U8:
        *uv = v.u8;
        *sv = v.u8;
        return 1;
    case ST_U16:
        *uv = v.u16;
        *sv = v.u16;
        return 1;
    case ST_U32:
        *uv = v.u32;
        *sv = v.u32;
        return 1;
    case ST_U64:
        *uv = v.u64;
        *sv = (int64_t)v.u64;
        return v.u64 <= (uint64_t)INT64_MAX ? 1 : 2;
    case ST_I8:
        *sv = v.i8;
        break;
    case ST_I16:
        *sv = v.i16;
        break;
    case ST_I32:
        *sv = v.i32;
        break;
    default:
        *sv = v.i64;
        break; // ST_I64
    }
    *uv = (uint64_t)*sv;
    return *sv >= 0 ? 1 : 3; // 3: negative
}

static int is_int(st_dtype d) {
    return !is_float(d) && d != ST_F8_E4M3 && d != ST_F8_E5M2;
}

cterp_status st_read_i64(const st_file *f, const char *name, int64_t *out, int ndim,
                         const int64_t *shape) {
    const st_tensor *t;
    cterp_status s = find_shaped(f, name, ndim, shape, &t);
    if (s) return s;
    if (!is_int(t->dtype)) return bad_dtype(f, t, "i64 (expected an integer dtype)");
    for (int64_t i = 0; i < t->nelem; i++) {
        uint64_t u;
        if (load_int(t, i, &out[i], &u) == 2)
            return cterp_error(CTERP_EFORMAT,
                               "%s: tensor %s: element %" PRId64 " (%" PRIu64
                               ") does not fit in i64",
                               f->path, name, i, u);
    }
    return CTERP_OK;
}

cterp_status st_read_u64(const st_file *f, const char *name, uint64_t *out, int ndim,
                         const int64_t *shape) {
    const st_tensor *t;
    cterp_status s = find_shaped(f, name, ndim, shape, &t);
    if (s) return s;
    if (!is_int(t->dtype)) return bad_dtype(f, t, "u64 (expected an integer dtype)");
    for (int64_t i = 0; i < t->nelem; i++) {
        int64_t sv;
        if (load_int(t, i, &sv, &out[i]) == 3)
            return cterp_error(CTERP_EFORMAT,
                               "%s: tensor %s: element %" PRId64 " is negative (%" PRId64 ")",
                               f->path, name, i, sv);
    }
    return CTERP_OK;
}

cterp_status st_read_raw(const st_file *f, const char *name, st_dtype dtype, void *out, int ndim,
                         const int64_t *shape) {
    const st_tensor *t;
    cterp_status s = find_shaped(f, name, ndim, shape, &t);
    if (s) return s;
    if (t->dtype != dtype) return bad_dtype(f, t, st_dtype_name(dtype));
    if (t->nbytes) memcpy(out, t->data, t->nbytes);
    return CTERP_OK;
}

// ---------------------------------------------------------------------------------------------
// writer

void st_writer_init(st_writer *w) {
    memset(w, 0, sizeof *w);
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->entries[i].name);
    free(w->entries);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_vals[i]);
    }
    free(w->meta_keys);
    free(w->meta_vals);
    memset(w, 0, sizeof *w);
}

cterp_status st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                           const int64_t *shape, const void *data) {
    if ((unsigned)dtype >= ST_N_DTYPES)
        return cterp_error(CTERP_EINVAL, "safetensors: tensor %s: bad dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return cterp_error(CTERP_EINVAL, "safetensors: tensor %s: %d dimensions (0..%d allowed)",
                           name, ndim, ST_MAX_DIMS);
    if (!strcmp(name, "__metadata__"))
        return cterp_error(CTERP_EINVAL, "safetensors: '__metadata__' is not a tensor name");
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->entries[i].name, name))
            return cterp_error(CTERP_EINVAL, "safetensors: tensor %s added twice", name);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return cterp_error(CTERP_EINVAL, "safetensors: tensor %s: negative dimension", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 8;
        st_entry *e = realloc(w->entries, (size_t)cap * sizeof *e);
        if (!e) return cterp_error(CTERP_ENOMEM, "safetensors: out of memory");
        w->entries = e;
        w->cap = cap;
    }
    st_entry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    if (!e->name) return cterp_error(CTERP_ENOMEM, "safetensors: out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    w->n++;
    return CTERP_OK;
}

cterp_status st_writer_meta(st_writer *w, const char *key, const char *value) {
    char *v = xstrdup(value);
    if (!v) return cterp_error(CTERP_ENOMEM, "safetensors: out of memory");
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_keys[i], key)) {
            free(w->meta_vals[i]);
            w->meta_vals[i] = v;
            return CTERP_OK;
        }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = realloc(w->meta_keys, (size_t)cap * sizeof *k);
        if (k) w->meta_keys = k;
        char **vv = k ? realloc(w->meta_vals, (size_t)cap * sizeof *vv) : NULL;
        if (vv) w->meta_vals = vv;
        if (!k || !vv) {
            free(v);
            return cterp_error(CTERP_ENOMEM, "safetensors: out of memory");
        }
        w->cap_meta = cap;
    }
    char *k = xstrdup(key);
    if (!k) {
        free(v);
        return cterp_error(CTERP_ENOMEM, "safetensors: out of memory");
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_vals[w->n_meta++] = v;
    return CTERP_OK;
}

// Growable string for the header; `failed` latches an allocation failure.
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_put(sbuf *b, const char *p, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

// A JSON string literal; bytes >= 0x80 (UTF-8) pass through unchanged.
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            sb_put(b, esc, 2);
        } else if (*c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

// Integers are printed by hand: cJSON prints doubles and could write 1e+17.
static void sb_i64(sbuf *b, int64_t v) {
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, v);
    sb_str(b, num);
}

cterp_status st_write(const st_writer *w, const char *path) {
    sbuf h = {0};
    cterp_status s = CTERP_OK;
    size_t *nbytes = calloc((size_t)w->n + 1, sizeof(size_t));
    if (!nbytes) return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    sb_str(&h, "{");
    int first = 1;
    if (w->n_meta) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_str(&h, w->meta_keys[i]);
            sb_str(&h, ":");
            sb_json_str(&h, w->meta_vals[i]);
        }
        sb_str(&h, "}");
        first = 0;
    }
    int64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->entries[i];
        int64_t nelem = 1;
        int64_t es = (int64_t)st_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] != 0 && nelem > INT64_MAX / e->shape[d]) {
                s = cterp_error(CTERP_EINVAL, "%s: tensor %s: shape overflows", path, e->name);
                goto fail;
            }
            nelem *= e->shape[d];
        }
        if (nelem > INT64_MAX / es || nelem * es > INT64_MAX - off ||
            (uint64_t)(nelem * es) > SIZE_MAX) {
            s = cterp_error(CTERP_EINVAL, "%s: tensor %s: size overflows", path, e->name);
            goto fail;
        }
        nbytes[i] = (size_t)(nelem * es);
        if (nbytes[i] && !e->data) {
            s = cterp_error(CTERP_EINVAL, "%s: tensor %s: data is NULL", path, e->name);
            goto fail;
        }
        if (!first) sb_str(&h, ",");
        first = 0;
        sb_json_str(&h, e->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, st_dtype_name(e->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d) sb_str(&h, ",");
            sb_i64(&h, e->shape[d]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_i64(&h, off);
        sb_str(&h, ",");
        sb_i64(&h, off + (int64_t)nbytes[i]);
        sb_str(&h, "]}");
        off += (int64_t)nbytes[i];
    }
    sb_str(&h, "}");
    // pad with spaces so the data start (8 + header) falls on a multiple of 8
    while (!h.failed && h.len % 8) sb_str(&h, " ");
    if (h.failed) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    file_atomic fa;
    if ((s = file_atomic_open(&fa, path))) goto fail;
    s = file_atomic_write(&fa, len8, 8);
    if (!s) s = file_atomic_write(&fa, h.s, h.len);
    for (int i = 0; !s && i < w->n; i++) s = file_atomic_write(&fa, w->entries[i].data, nbytes[i]);
    if (s)
        file_atomic_abort(&fa);
    else
        s = file_atomic_commit(&fa);
fail:
    free(h.s);
    free(nbytes);
    return s;
}
