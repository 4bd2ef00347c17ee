#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

// ---- type tables --------------------------------------------------------------------------

typedef struct {
    const char *name;
    int64_t block, size;
} type_info;

static const type_info TYPES[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"F32", 1, 4},         [GGML_TYPE_F16] = {"F16", 1, 2},
    [GGML_TYPE_Q4_0] = {"Q4_0", 32, 18},     [GGML_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [GGML_TYPE_Q5_0] = {"Q5_0", 32, 22},     [GGML_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"Q8_0", 32, 34},     [GGML_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"Q2_K", 256, 84},    [GGML_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [GGML_TYPE_Q4_K] = {"Q4_K", 256, 144},   [GGML_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [GGML_TYPE_Q6_K] = {"Q6_K", 256, 210},   [GGML_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [GGML_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18}, [GGML_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GGML_TYPE_I8] = {"I8", 1, 1},           [GGML_TYPE_I16] = {"I16", 1, 2},
    [GGML_TYPE_I32] = {"I32", 1, 4},         [GGML_TYPE_I64] = {"I64", 1, 8},
    [GGML_TYPE_F64] = {"F64", 1, 8},         [GGML_TYPE_BF16] = {"BF16", 1, 2},
    // ggml's block sizes (ggml-common.h), so files mixing them open and name what they hold
    [GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [GGML_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [GGML_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [GGML_TYPE_IQ3_S] = {"IQ3_S", 256, 110},    [GGML_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [GGML_TYPE_IQ1_M] = {"IQ1_M", 256, 56},     [GGML_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [GGML_TYPE_TQ2_0] = {"TQ2_0", 256, 66},     [GGML_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

int64_t gguf_type_block(uint32_t type) {
    return type < GGML_TYPE_COUNT ? TYPES[type].block : 0;
}
int64_t gguf_type_size(uint32_t type) {
    return type < GGML_TYPE_COUNT ? TYPES[type].size : 0;
}

const char *gguf_type_name(uint32_t type) {
    static _Thread_local char buf[32];
    if (type < GGML_TYPE_COUNT && TYPES[type].name) return TYPES[type].name;
    snprintf(buf, sizeof buf, "type#%u", type);
    return buf;
}

static const char *VTYPE_NAMES[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
static const uint8_t VTYPE_SIZE[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(uint32_t type) {
    static _Thread_local char buf[32];
    if (type < GGUF_TYPE_COUNT) return VTYPE_NAMES[type];
    snprintf(buf, sizeof buf, "type#%u", type);
    return buf;
}

// ---- parsing ------------------------------------------------------------------------------

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *path;
} cursor;

static cterp_status need(cursor *c, uint64_t n, const char *field) {
    if (n > c->size - c->pos)
        return cterp_error(CTERP_EFORMAT,
                           "%s: truncated at byte %zu reading %s: need %llu bytes, %zu left",
                           c->path, c->pos, field, (unsigned long long)n, c->size - c->pos);
    return CTERP_OK;
}

static cterp_status rd(cursor *c, void *dst, size_t n, const char *field) {
    cterp_status s = need(c, n, field);
    if (s) return s;
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return CTERP_OK;
}

static cterp_status rd_str(cursor *c, gguf_str *out, const char *field) {
    uint64_t len;
    cterp_status s = rd(c, &len, 8, field);
    if (s) return s;
    if (len > c->size - c->pos)
        return cterp_error(CTERP_EFORMAT,
                           "%s: %s: string length %llu at byte %zu runs past the end of the file "
                           "(%zu bytes left)",
                           c->path, field, (unsigned long long)len, c->pos - 8, c->size - c->pos);
    out->s = (const char *)c->p + c->pos;
    out->len = len;
    c->pos += len;
    return CTERP_OK;
}

// qsort context for sorting indices by name (C11 has no qsort_r everywhere: use a static
// pointer guarded by being only called under gguf parsing of a single file per thread).
static _Thread_local const char *const *sort_names;
static int cmp_idx(const void *a, const void *b) {
    return strcmp(sort_names[*(const uint32_t *)a], sort_names[*(const uint32_t *)b]);
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    free(g->by_name);
    free(g->arena);
    if (g->owns_map) {
        file_map m = {g->map, g->size};
        file_map_close(&m);
    }
    free(g->path);
    free(g);
}

static cterp_status parse(gguf_file *g) {
    cursor c = {g->map, g->size, 0, g->path};
    cursor *cp = &c;
    cterp_status s;
    char magic[4];
    if ((s = rd(cp, magic, 4, "magic"))) return s;
    if (memcmp(magic, "GGUF", 4) != 0)
        return cterp_error(
            CTERP_EFORMAT,
            "%s: not a GGUF file: magic: expected \"GGUF\", found %02x %02x %02x %02x", g->path,
            (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
    if ((s = rd(cp, &g->version, 4, "version"))) return s;
    if (g->version != 2 && g->version != 3)
        return cterp_error(CTERP_EFORMAT, "%s: version: expected 2 or 3, found %u", g->path,
                           g->version);
    if ((s = rd(cp, &g->n_tensors, 8, "tensor_count"))) return s;
    if ((s = rd(cp, &g->n_kv, 8, "kv_count"))) return s;
    // Each kv needs at least 8 (key len) + 4 (type) + 1 bytes, each tensor info 8+4+8+4+8:
    // bounding the counts by the file size keeps the allocations below sane.
    size_t left = c.size - c.pos;
    if (g->n_kv > left / 13)
        return cterp_error(CTERP_EFORMAT,
                           "%s: kv_count: %llu cannot fit in the %zu bytes left in the file",
                           g->path, (unsigned long long)g->n_kv, left);
    if (g->n_tensors > left / 32 || g->n_tensors > UINT32_MAX)
        return cterp_error(CTERP_EFORMAT,
                           "%s: tensor_count: %llu cannot fit in the %zu bytes left in the file",
                           g->path, (unsigned long long)g->n_tensors, left);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->by_name = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->by_name);
    if (!g->kv || !g->tensors || !g->by_name)
        return cterp_error(CTERP_ENOMEM, "%s: out of memory for %llu kv / %llu tensors", g->path,
                           (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);

    // Keys and names are copied NUL-terminated into one arena; its size is bounded by the file.
    gguf_str *keys = calloc(g->n_kv ? g->n_kv : 1, sizeof *keys);
    gguf_str *names = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *names);
    if (!keys || !names) {
        free(keys);
        free(names);
        return cterp_error(CTERP_ENOMEM, "%s: out of memory", g->path);
    }
    size_t arena_size = 0;
    char field[160];

    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        snprintf(field, sizeof field, "key of kv %llu", (unsigned long long)i);
        if ((s = rd_str(cp, &keys[i], field))) goto out;
        arena_size += keys[i].len + 1;
        int klen = keys[i].len > 100 ? 100 : (int)keys[i].len;
        snprintf(field, sizeof field, "type of key '%.*s'", klen, keys[i].s);
        if ((s = rd(cp, &kv->type, 4, field))) goto out;
        kv->n = 1;
        uint32_t et = kv->type;
        if (kv->type == GGUF_TYPE_ARRAY) {
            snprintf(field, sizeof field, "array header of key '%.*s'", klen, keys[i].s);
            if ((s = rd(cp, &kv->arr_type, 4, field))) goto out;
            if ((s = rd(cp, &kv->n, 8, field))) goto out;
            et = kv->arr_type;
            if (et == GGUF_TYPE_ARRAY || et >= GGUF_TYPE_COUNT) {
                s = cterp_error(CTERP_EFORMAT,
                                "%s: key '%.*s': array element type: expected a scalar or string "
                                "type (0..12 except 9), found %u",
                                g->path, klen, keys[i].s, et);
                goto out;
            }
        } else if (kv->type >= GGUF_TYPE_COUNT) {
            s = cterp_error(CTERP_EFORMAT, "%s: key '%.*s': value type: expected 0..12, found %u",
                            g->path, klen, keys[i].s, kv->type);
            goto out;
        }
        snprintf(field, sizeof field, "value of key '%.*s'", klen, keys[i].s);
        kv->val = c.p + c.pos;
        if (et == GGUF_TYPE_STRING) {
            // each string takes at least its 8-byte length
            if (kv->n > (c.size - c.pos) / 8) {
                s = cterp_error(
                    CTERP_EFORMAT, "%s: key '%.*s': %llu strings cannot fit in the %zu bytes left",
                    g->path, klen, keys[i].s, (unsigned long long)kv->n, c.size - c.pos);
                goto out;
            }
            kv->strs = malloc((kv->n ? kv->n : 1) * sizeof *kv->strs);
            if (!kv->strs) {
                s = cterp_error(CTERP_ENOMEM, "%s: out of memory", g->path);
                goto out;
            }
            for (uint64_t j = 0; j < kv->n; j++)
                if ((s = rd_str(cp, &kv->strs[j], field))) goto out;
        } else {
            uint64_t es = VTYPE_SIZE[et];
            if (kv->n > (c.size - c.pos) / es) {
                s = cterp_error(CTERP_EFORMAT,
                                "%s: key '%.*s': %llu elements of %s cannot fit in the %zu bytes "
                                "left",
                                g->path, klen, keys[i].s, (unsigned long long)kv->n,
                                VTYPE_NAMES[et], c.size - c.pos);
                goto out;
            }
            c.pos += kv->n * es;
        }
    }

    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        snprintf(field, sizeof field, "name of tensor %llu", (unsigned long long)i);
        if ((s = rd_str(cp, &names[i], field))) goto out;
        arena_size += names[i].len + 1;
        int nlen = names[i].len > 100 ? 100 : (int)names[i].len;
        snprintf(field, sizeof field, "info of tensor '%.*s'", nlen, names[i].s);
        if ((s = rd(cp, &t->n_dims, 4, field))) goto out;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
            s = cterp_error(CTERP_EFORMAT, "%s: tensor '%.*s': n_dims: expected 1..4, found %u",
                            g->path, nlen, names[i].s, t->n_dims);
            goto out;
        }
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        uint64_t ne[GGUF_MAX_DIMS];
        if ((s = rd(cp, ne, 8 * (size_t)t->n_dims, field))) goto out;
        if ((s = rd(cp, &t->type, 4, field))) goto out;
        if ((s = rd(cp, &t->offset, 8, field))) goto out;
        int64_t blk = gguf_type_block(t->type), tsz = gguf_type_size(t->type);
        if (!blk) {
            s = cterp_error(CTERP_EFORMAT, "%s: tensor '%.*s': type: unknown ggml type %u", g->path,
                            nlen, names[i].s, t->type);
            goto out;
        }
        int64_t nel = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (ne[d] > (uint64_t)INT64_MAX || (nel && ne[d] && (int64_t)ne[d] > INT64_MAX / nel)) {
                s = cterp_error(CTERP_EFORMAT,
                                "%s: tensor '%.*s': ne[%u] = %llu overflows the element count",
                                g->path, nlen, names[i].s, d, (unsigned long long)ne[d]);
                goto out;
            }
            t->ne[d] = (int64_t)ne[d];
            nel *= t->ne[d];
        }
        if (t->ne[0] % blk != 0) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tensor '%.*s': ne[0]: expected a multiple of the %s block size "
                            "%lld, found %lld",
                            g->path, nlen, names[i].s, gguf_type_name(t->type), (long long)blk,
                            (long long)t->ne[0]);
            goto out;
        }
        t->n_elements = nel;
        // nel/blk*tsz: nel <= file size * blk / tsz for any valid tensor; check before multiply
        if (nel / blk > (int64_t)(g->size / (size_t)tsz) + 1) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tensor '%.*s': %lld elements of %s cannot fit in a %zu-byte file",
                            g->path, nlen, names[i].s, (long long)nel, gguf_type_name(t->type),
                            g->size);
            goto out;
        }
        t->n_bytes = (size_t)(nel / blk) * (size_t)tsz;
    }

    // alignment
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        static const char AK[] = "general.alignment";
        if (keys[i].len == sizeof AK - 1 && !memcmp(keys[i].s, AK, sizeof AK - 1)) {
            uint32_t a = 0;
            if (g->kv[i].type != GGUF_TYPE_U32) {
                s = cterp_error(CTERP_EFORMAT, "%s: general.alignment: expected u32, found %s",
                                g->path, gguf_vtype_name(g->kv[i].type));
                goto out;
            }
            memcpy(&a, g->kv[i].val, 4);
            if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
                s = cterp_error(CTERP_EFORMAT,
                                "%s: general.alignment: expected a power of two <= 2^20, found %u",
                                g->path, a);
                goto out;
            }
            g->alignment = a;
        }
    }
    size_t data = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data > c.size) data = c.size; // no tensor data at all is fine if there are no tensors
    g->data_offset = data;
    size_t data_size = c.size - data;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        int nlen = names[i].len > 100 ? 100 : (int)names[i].len;
        if (t->offset % g->alignment) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tensor '%.*s': offset: expected a multiple of the alignment %u, "
                            "found %llu",
                            g->path, nlen, names[i].s, g->alignment, (unsigned long long)t->offset);
            goto out;
        }
        if (t->offset > data_size || t->n_bytes > data_size - t->offset) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tensor '%.*s': data [%llu, +%zu) runs past the end of the data "
                            "section (%zu bytes at file offset %zu)",
                            g->path, nlen, names[i].s, (unsigned long long)t->offset, t->n_bytes,
                            data_size, data);
            goto out;
        }
        t->data = c.p + data + t->offset;
    }

    // copy keys and names, NUL-terminated (embedded NULs would make lookups ambiguous)
    g->arena = malloc(arena_size ? arena_size : 1);
    if (!g->arena) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", g->path);
        goto out;
    }
    char *a = g->arena;
    for (uint64_t i = 0; i < g->n_kv + g->n_tensors; i++) {
        gguf_str *src = i < g->n_kv ? &keys[i] : &names[i - g->n_kv];
        if (memchr(src->s, 0, src->len)) {
            s = cterp_error(CTERP_EFORMAT, "%s: %s %llu contains a NUL byte", g->path,
                            i < g->n_kv ? "key" : "tensor name",
                            (unsigned long long)(i < g->n_kv ? i : i - g->n_kv));
            goto out;
        }
        memcpy(a, src->s, src->len);
        a[src->len] = 0;
        if (i < g->n_kv)
            g->kv[i].key = a;
        else
            g->tensors[i - g->n_kv].name = a;
        a += src->len + 1;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].type == GGUF_TYPE_STRING && !g->kv[i].strs) {
            // scalar strings: keep a 1-entry table so every string is served the same way
            cursor c2 = {g->map, g->size, (size_t)(g->kv[i].val - g->map), g->path};
            g->kv[i].strs = malloc(sizeof(gguf_str));
            if (!g->kv[i].strs) {
                s = cterp_error(CTERP_ENOMEM, "%s: out of memory", g->path);
                goto out;
            }
            if ((s = rd_str(&c2, g->kv[i].strs, "string"))) goto out;
        }

    // duplicates: sort indices by name and compare neighbours (O(n log n) for hostile counts)
    {
        uint64_t n = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors;
        uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
        const char **nm = malloc((n ? n : 1) * sizeof *nm);
        if (!idx || !nm) {
            free(idx);
            free(nm);
            s = cterp_error(CTERP_ENOMEM, "%s: out of memory", g->path);
            goto out;
        }
        for (uint64_t i = 0; i < g->n_kv; i++) idx[i] = (uint32_t)i, nm[i] = g->kv[i].key;
        sort_names = nm;
        qsort(idx, g->n_kv, sizeof *idx, cmp_idx);
        for (uint64_t i = 1; i < g->n_kv && !s; i++)
            if (!strcmp(nm[idx[i]], nm[idx[i - 1]]))
                s = cterp_error(CTERP_EFORMAT, "%s: duplicate key '%.100s'", g->path, nm[idx[i]]);
        for (uint64_t i = 0; i < g->n_tensors; i++)
            g->by_name[i] = (uint32_t)i, nm[i] = g->tensors[i].name;
        qsort(g->by_name, g->n_tensors, sizeof *g->by_name, cmp_idx);
        for (uint64_t i = 1; i < g->n_tensors && !s; i++)
            if (!strcmp(nm[g->by_name[i]], nm[g->by_name[i - 1]]))
                s = cterp_error(CTERP_EFORMAT, "%s: duplicate tensor name '%.100s'", g->path,
                                nm[g->by_name[i]]);
        sort_names = NULL;
        free(idx);
        free(nm);
    }
out:
    free(keys);
    free(names);
    return s;
}

static cterp_status open_common(gguf_file **out, const uint8_t *map, size_t size, int owns,
                                const char *name) {
    *out = NULL;
    gguf_file *g = calloc(1, sizeof *g);
    char *path = strdup(name ? name : "(buffer)");
    if (!g || !path) {
        free(g);
        free(path);
        if (owns) {
            file_map m = {map, size};
            file_map_close(&m);
        }
        return cterp_error(CTERP_ENOMEM, "%s: out of memory", name);
    }
    g->path = path;
    g->map = map;
    g->size = size;
    g->owns_map = owns;
    cterp_status s = parse(g);
    if (s) {
        gguf_close(g);
        return s;
    }
    *out = g;
    return CTERP_OK;
}

cterp_status gguf_open(gguf_file **out, const char *path) {
    *out = NULL;
    file_map m;
    cterp_status s = file_map_open(&m, path);
    if (s) return s;
    return open_common(out, m.data, m.size, 1, path);
}

cterp_status gguf_open_huge(gguf_file **out, const char *path, int *huge) {
    *out = NULL;
    file_map m;
    cterp_status s = file_map_open_huge(&m, path, huge);
    if (s) return s;
    return open_common(out, m.data, m.size, 1, path);
}

cterp_status gguf_open_buffer(gguf_file **out, const void *buf, size_t size, const char *name) {
    return open_common(out, buf, size, 0, name);
}

// ---- lookups ------------------------------------------------------------------------------

int64_t gguf_find_key(const gguf_file *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return (int64_t)i;
    return -1;
}

static cterp_status find(const gguf_file *g, const char *key, const gguf_kv **kv) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return cterp_error(CTERP_ENOTFOUND, "%s: key '%s' not found", g->path, key);
    *kv = &g->kv[i];
    return CTERP_OK;
}

static int64_t scalar_i64(uint32_t type, const uint8_t *p, int *ok) {
    *ok = 1;
    switch (type) {
    case GGUF_TYPE_U8:
        return p[0];
    case GGUF_TYPE_I8:
        return (int8_t)p[0];
    case GGUF_TYPE_BOOL:
        return p[0] != 0;
    case GGUF_TYPE_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case GGUF_TYPE_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case GGUF_TYPE_U32: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case GGUF_TYPE_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case GGUF_TYPE_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > INT64_MAX) *ok = 0;
        return (int64_t)v;
    }
    case GGUF_TYPE_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
    *ok = 0;
    return 0;
}

static double scalar_f64(uint32_t type, const uint8_t *p) {
    if (type == GGUF_TYPE_F32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    if (type == GGUF_TYPE_F64) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    int ok;
    return (double)scalar_i64(type, p, &ok);
}

cterp_status gguf_get_i64(const gguf_file *g, const char *key, int64_t *out) {
    const gguf_kv *kv;
    cterp_status s = find(g, key, &kv);
    if (s) return s;
    int ok = 0;
    if (kv->type != GGUF_TYPE_BOOL) *out = scalar_i64(kv->type, kv->val, &ok);
    if (!ok)
        return cterp_error(CTERP_EFORMAT, "%s: key '%s': expected an integer, found %s", g->path,
                           key, gguf_vtype_name(kv->type));
    return CTERP_OK;
}

cterp_status gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out) {
    int64_t v;
    cterp_status s = gguf_get_i64(g, key, &v);
    if (s) return s;
    if (v < 0 || v > UINT32_MAX)
        return cterp_error(CTERP_EFORMAT, "%s: key '%s': expected a u32 value, found %lld", g->path,
                           key, (long long)v);
    *out = (uint32_t)v;
    return CTERP_OK;
}

cterp_status gguf_get_f32(const gguf_file *g, const char *key, float *out) {
    const gguf_kv *kv;
    cterp_status s = find(g, key, &kv);
    if (s) return s;
    if (kv->type != GGUF_TYPE_F32 && kv->type != GGUF_TYPE_F64)
        return cterp_error(CTERP_EFORMAT, "%s: key '%s': expected f32, found %s", g->path, key,
                           gguf_vtype_name(kv->type));
    *out = (float)scalar_f64(kv->type, kv->val);
    return CTERP_OK;
}

cterp_status gguf_get_bool(const gguf_file *g, const char *key, int *out) {
    const gguf_kv *kv;
    cterp_status s = find(g, key, &kv);
    if (s) return s;
    if (kv->type != GGUF_TYPE_BOOL)
        return cterp_error(CTERP_EFORMAT, "%s: key '%s': expected bool, found %s", g->path, key,
                           gguf_vtype_name(kv->type));
    *out = kv->val[0] != 0;
    return CTERP_OK;
}

cterp_status gguf_get_str(const gguf_file *g, const char *key, gguf_str *out) {
    const gguf_kv *kv;
    cterp_status s = find(g, key, &kv);
    if (s) return s;
    if (kv->type != GGUF_TYPE_STRING)
        return cterp_error(CTERP_EFORMAT, "%s: key '%s': expected string, found %s", g->path, key,
                           gguf_vtype_name(kv->type));
    *out = kv->strs[0];
    return CTERP_OK;
}

cterp_status gguf_get_arr(const gguf_file *g, const char *key, int elem_type, const gguf_kv **out) {
    const gguf_kv *kv;
    cterp_status s = find(g, key, &kv);
    if (s) return s;
    if (kv->type != GGUF_TYPE_ARRAY)
        return cterp_error(CTERP_EFORMAT, "%s: key '%s': expected array, found %s", g->path, key,
                           gguf_vtype_name(kv->type));
    if (elem_type >= 0 && kv->arr_type != (uint32_t)elem_type)
        return cterp_error(CTERP_EFORMAT, "%s: key '%s': expected array of %s, found array of %s",
                           g->path, key, gguf_vtype_name((uint32_t)elem_type),
                           gguf_vtype_name(kv->arr_type));
    *out = kv;
    return CTERP_OK;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i) {
    return scalar_f64(kv->arr_type, kv->val + i * VTYPE_SIZE[kv->arr_type]);
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i) {
    int ok;
    if (kv->arr_type == GGUF_TYPE_F32 || kv->arr_type == GGUF_TYPE_F64) {
        // saturated: casting a NaN or a float outside the int64 range is undefined behaviour
        double d = gguf_arr_f64(kv, i);
        if (d != d) return 0;
        if (d <= -9223372036854775808.0) return INT64_MIN;
        if (d >= 9223372036854775808.0) return INT64_MAX;
        return (int64_t)d;
    }
    return scalar_i64(kv->arr_type, kv->val + i * VTYPE_SIZE[kv->arr_type], &ok);
}

const char *gguf_str_copy(gguf_str s, char *buf, size_t cap) {
    if (!cap) return buf;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.s, n);
    buf[n] = 0;
    return buf;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    size_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = &g->tensors[g->by_name[mid]];
        int r = strcmp(t->name, name);
        if (!r) return t;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

// ---- writer -------------------------------------------------------------------------------

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

struct gguf_writer {
    bytes kv, ti, data;
    uint64_t n_kv, n_tensors;
    uint32_t alignment;
    int oom;
};

static void put(gguf_writer *w, bytes *b, const void *src, size_t n) {
    if (w->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            w->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(gguf_writer *w, bytes *b, uint32_t v) {
    put(w, b, &v, 4);
}
static void put_u64(gguf_writer *w, bytes *b, uint64_t v) {
    put(w, b, &v, 8);
}
static void put_str(gguf_writer *w, bytes *b, const char *s) {
    put_u64(w, b, strlen(s));
    put(w, b, s, strlen(s));
}

gguf_writer *gguf_writer_new(uint32_t alignment) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
    if (w && w->alignment != GGUF_DEFAULT_ALIGNMENT)
        gguf_writer_u32(w, "general.alignment", w->alignment);
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    free(w->kv.p);
    free(w->ti.p);
    free(w->data.p);
    free(w);
}

static void kv_head(gguf_writer *w, const char *key, uint32_t type) {
    put_str(w, &w->kv, key);
    put_u32(w, &w->kv, type);
    w->n_kv++;
}

void gguf_writer_u32(gguf_writer *w, const char *key, uint32_t v) {
    kv_head(w, key, GGUF_TYPE_U32);
    put_u32(w, &w->kv, v);
}
void gguf_writer_i32(gguf_writer *w, const char *key, int32_t v) {
    kv_head(w, key, GGUF_TYPE_I32);
    put(w, &w->kv, &v, 4);
}
void gguf_writer_f32(gguf_writer *w, const char *key, float v) {
    kv_head(w, key, GGUF_TYPE_F32);
    put(w, &w->kv, &v, 4);
}
void gguf_writer_bool(gguf_writer *w, const char *key, int v) {
    kv_head(w, key, GGUF_TYPE_BOOL);
    uint8_t b = v != 0;
    put(w, &w->kv, &b, 1);
}
void gguf_writer_str(gguf_writer *w, const char *key, const char *v) {
    kv_head(w, key, GGUF_TYPE_STRING);
    put_str(w, &w->kv, v);
}
void gguf_writer_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data,
                     uint64_t n) {
    kv_head(w, key, GGUF_TYPE_ARRAY);
    put_u32(w, &w->kv, elem_type);
    put_u64(w, &w->kv, n);
    put(w, &w->kv, data, (size_t)n * (elem_type < GGUF_TYPE_COUNT ? VTYPE_SIZE[elem_type] : 0));
}
void gguf_writer_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    kv_head(w, key, GGUF_TYPE_ARRAY);
    put_u32(w, &w->kv, GGUF_TYPE_STRING);
    put_u64(w, &w->kv, n);
    for (uint64_t i = 0; i < n; i++) put_str(w, &w->kv, v[i]);
}

void gguf_writer_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims,
                        const int64_t *ne, const void *data) {
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) nel *= ne[d];
    size_t nbytes = (size_t)(nel / gguf_type_block(type) * gguf_type_size(type));
    static const uint8_t zeros[64] = {0};
    while (w->data.n % w->alignment) {
        size_t pad = w->alignment - w->data.n % w->alignment;
        put(w, &w->data, zeros, pad < 64 ? pad : 64);
        if (w->oom) return;
    }
    put_str(w, &w->ti, name);
    put_u32(w, &w->ti, (uint32_t)n_dims);
    for (int d = 0; d < n_dims; d++) put_u64(w, &w->ti, (uint64_t)ne[d]);
    put_u32(w, &w->ti, type);
    put_u64(w, &w->ti, w->data.n);
    put(w, &w->data, data, nbytes);
    w->n_tensors++;
}

cterp_status gguf_writer_buffer(gguf_writer *w, uint8_t **buf, size_t *size) {
    *buf = NULL;
    *size = 0;
    if (w->oom) return cterp_error(CTERP_ENOMEM, "gguf writer: out of memory");
    size_t head = 24 + w->kv.n + w->ti.n;
    size_t pad = (w->alignment - head % w->alignment) % w->alignment;
    size_t total = head + pad + w->data.n;
    uint8_t *p = calloc(1, total ? total : 1);
    if (!p) return cterp_error(CTERP_ENOMEM, "gguf writer: out of memory (%zu bytes)", total);
    uint32_t v = 3;
    memcpy(p, "GGUF", 4);
    memcpy(p + 4, &v, 4);
    memcpy(p + 8, &w->n_tensors, 8);
    memcpy(p + 16, &w->n_kv, 8);
    if (w->kv.n) memcpy(p + 24, w->kv.p, w->kv.n);
    if (w->ti.n) memcpy(p + 24 + w->kv.n, w->ti.p, w->ti.n);
    if (w->data.n) memcpy(p + head + pad, w->data.p, w->data.n);
    *buf = p;
    *size = total;
    return CTERP_OK;
}

cterp_status gguf_writer_write(gguf_writer *w, const char *path) {
    uint8_t *buf;
    size_t n;
    cterp_status s = gguf_writer_buffer(w, &buf, &n);
    if (s) return s;
    s = file_write_all(path, buf, n);
    free(buf);
    return s;
}
