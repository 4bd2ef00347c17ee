// .npy reader/writer: see npy.h. The header is a tiny subset of Python literal syntax.
#include "io/npy.h"

#include "core/half.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cterp's npy reader assumes a little-endian host"
#endif

void npy_close(npy_file *f) {
    if (!f) return;
    file_map_close(&f->map);
    free(f->path);
    memset(f, 0, sizeof *f);
}

// Cursor over the header dict text [p, end).
typedef struct {
    const char *p, *end;
} cur;

static void skip_ws(cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(cur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

// A quoted string ('...' or "...") without escapes, copied into out (cap bytes).
static int parse_str(cur *c, char *out, size_t cap) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap) return 0;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return 0;
    c->p++;
    out[n] = 0;
    return 1;
}

static int parse_word(cur *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, w, n)) {
        c->p += n;
        return 1;
    }
    return 0;
}

// "(3, 4)", "(3,)", "()" -> dims; 0 on a syntax error or an overflowing integer.
static int parse_tuple(cur *c, int64_t *dims, int cap, int *nd) {
    *nd = 0;
    if (!eat(c, '(')) return 0;
    for (;;) {
        if (eat(c, ')')) return 1;
        skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            int dgt = *c->p++ - '0';
            if (v > (INT64_MAX - dgt) / 10) return 0;
            v = v * 10 + dgt;
        }
        if (c->p < c->end && *c->p == 'L') c->p++; // Python 2 long
        if (*nd < cap) dims[*nd] = v;
        (*nd)++;
        if (eat(c, ')')) return 1;
        if (!eat(c, ',')) return 0;
    }
}

static cterp_status parse_npy(npy_file *f) {
    const char *P = f->path;
    const uint8_t *m = f->map.data;
    size_t size = f->map.size;
    if (size < 10 || memcmp(m, "\x93NUMPY", 6) != 0)
        return cterp_error(CTERP_EFORMAT, "%s: not a .npy file (missing the \\x93NUMPY magic)", P);
    int major = m[6], minor = m[7];
    size_t pre, hlen;
    if (major == 1) {
        pre = 10;
        hlen = (size_t)m[8] | (size_t)m[9] << 8;
    } else if (major == 2 || major == 3) {
        if (size < 12) return cterp_error(CTERP_EFORMAT, "%s: truncated header", P);
        pre = 12;
        hlen = (size_t)m[8] | (size_t)m[9] << 8 | (size_t)m[10] << 16 | (size_t)m[11] << 24;
    } else {
        return cterp_error(CTERP_EFORMAT, "%s: .npy version %d.%d, expected 1.0, 2.0 or 3.0", P,
                           major, minor);
    }
    if (hlen > size - pre)
        return cterp_error(CTERP_EFORMAT,
                           "%s: header length %zu is larger than the file (%zu bytes)", P, hlen,
                           size);
    cur c = {(const char *)m + pre, (const char *)m + pre + hlen};
    char descr[32] = "", key[64];
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0, nd = 0;
    int64_t dims[8];
    if (!eat(&c, '{')) return cterp_error(CTERP_EFORMAT, "%s: header is not a dict", P);
    for (;;) {
        if (eat(&c, '}')) break;
        if (!parse_str(&c, key, sizeof key) || !eat(&c, ':'))
            return cterp_error(CTERP_EFORMAT, "%s: header dict: expected a quoted key", P);
        if (!strcmp(key, "descr")) {
            if (!parse_str(&c, descr, sizeof descr))
                return cterp_error(CTERP_EFORMAT,
                                   "%s: descr: expected a dtype string such as '<f4' "
                                   "(structured dtypes are not supported)",
                                   P);
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            if (parse_word(&c, "True"))
                fortran = 1;
            else if (parse_word(&c, "False"))
                fortran = 0;
            else
                return cterp_error(CTERP_EFORMAT, "%s: fortran_order: expected True or False", P);
            have_order = 1;
        } else if (!strcmp(key, "shape")) {
            if (!parse_tuple(&c, dims, 8, &nd))
                return cterp_error(CTERP_EFORMAT, "%s: shape: expected a tuple of integers", P);
            have_shape = 1;
        } else {
            return cterp_error(CTERP_EFORMAT, "%s: header: unexpected key '%s'", P, key);
        }
        if (!eat(&c, ',')) {
            if (eat(&c, '}')) break;
            return cterp_error(CTERP_EFORMAT, "%s: header dict: expected ',' or '}'", P);
        }
    }
    if (!have_descr || !have_order || !have_shape)
        return cterp_error(CTERP_EFORMAT, "%s: header: missing key '%s'", P,
                           !have_descr   ? "descr"
                           : !have_order ? "fortran_order"
                                         : "shape");
    if (fortran)
        return cterp_error(CTERP_EFORMAT,
                           "%s: fortran_order is True; expected C order (save with "
                           "np.ascontiguousarray)",
                           P);
    if (!strcmp(descr, "<f4"))
        f->elem_size = 4;
    else if (!strcmp(descr, "<f2"))
        f->elem_size = 2;
    else if (!strcmp(descr, "<f8"))
        f->elem_size = 8;
    else
        return cterp_error(CTERP_EFORMAT, "%s: descr '%s': expected '<f4' (or '<f2', '<f8')", P,
                           descr);
    memcpy(f->descr, descr, 4);
    if (nd != 2)
        return cterp_error(CTERP_EFORMAT, "%s: shape has %d dimensions, expected 2 (rows, cols)", P,
                           nd);
    f->rows = dims[0];
    f->cols = dims[1];
    if (f->cols != 0 && f->rows > INT64_MAX / f->cols)
        return cterp_error(CTERP_EFORMAT, "%s: shape (%" PRId64 ", %" PRId64 ") overflows", P,
                           f->rows, f->cols);
    uint64_t nelem = (uint64_t)(f->rows * f->cols);
    if (nelem > SIZE_MAX / f->elem_size)
        return cterp_error(CTERP_EFORMAT, "%s: data size overflows", P);
    size_t need = (size_t)nelem * f->elem_size, have = size - pre - hlen;
    if (have != need)
        return cterp_error(CTERP_EFORMAT,
                           "%s: shape (%" PRId64 ", %" PRId64 ") of %s needs %zu data bytes, "
                           "found %zu%s",
                           P, f->rows, f->cols, descr, need, have,
                           have < need ? " (truncated)" : "");
    f->data = m + pre + hlen;
    return CTERP_OK;
}

cterp_status npy_open(npy_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    size_t n = strlen(path) + 1;
    f->path = malloc(n);
    if (!f->path) return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    memcpy(f->path, path, n);
    cterp_status s = file_map_open(&f->map, path);
    if (!s) s = parse_npy(f);
    if (s) npy_close(f);
    return s;
}

cterp_status npy_read_rows(const npy_file *f, int64_t r0, int64_t n, float *out) {
    if (r0 < 0 || n < 0 || r0 > f->rows || n > f->rows - r0)
        return cterp_error(CTERP_EINVAL,
                           "%s: rows [%" PRId64 ", %" PRId64 ") out of range (%" PRId64 " rows)",
                           f->path, r0, r0 + n, f->rows);
    size_t count = (size_t)n * (size_t)f->cols, first = (size_t)r0 * (size_t)f->cols;
    const uint8_t *p = f->data + first * f->elem_size;
    if (f->elem_size == 4) {
        if (count) memcpy(out, p, count * 4);
    } else if (f->elem_size == 2) {
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = f16_to_f32(h);
        }
    } else {
        for (size_t i = 0; i < count; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
    }
    return CTERP_OK;
}

const float *npy_f32_data(const npy_file *f) {
    if (f->elem_size != 4 || !f->data || ((uintptr_t)f->data & 3)) return NULL;
    return (const float *)f->data;
}

cterp_status npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols) {
    if (rows < 0 || cols < 0 || (cols && rows > INT64_MAX / cols) ||
        (uint64_t)(rows * cols) > SIZE_MAX / 4)
        return cterp_error(CTERP_EINVAL, "%s: bad shape (%" PRId64 ", %" PRId64 ")", path, rows,
                           cols);
    char hdr[128];
    int n =
        snprintf(hdr, sizeof hdr,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (%" PRId64 ", %" PRId64 "), }",
                 rows, cols);
    // pad so magic + header ends on a multiple of 64 (as numpy does), '\n' last
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    char full[256];
    memcpy(full, "\x93NUMPY\x01\x00", 8);
    size_t hl = (size_t)n + pad + 1;
    full[8] = (char)(hl & 0xff);
    full[9] = (char)(hl >> 8);
    memcpy(full + 10, hdr, (size_t)n);
    memset(full + 10 + n, ' ', pad);
    full[10 + n + pad] = '\n';
    file_atomic w;
    cterp_status s = file_atomic_open(&w, path);
    if (s) return s;
    s = file_atomic_write(&w, full, 10 + hl);
    if (!s) s = file_atomic_write(&w, data, (size_t)(rows * cols) * 4);
    if (s) {
        file_atomic_abort(&w);
        return s;
    }
    return file_atomic_commit(&w);
}
