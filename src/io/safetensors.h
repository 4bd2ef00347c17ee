// safetensors reader (mmap, every field checked before it is trusted) and writer (atomic).
//
// Layout: u64 LE header length H, H bytes of UTF-8 JSON
//   {"name": {"dtype": "F32", "shape": [out, in], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data; offsets are relative to the start of the data, tensors are row-major.
// Tensor data in a file may be unaligned: readers copy with memcpy, never cast.
#ifndef CTERP_IO_SAFETENSORS_H
#define CTERP_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "cterp/error.h"

typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E4M3, // known so that a file holding one still opens; not convertible
    ST_F8_E5M2,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_N_DTYPES
} st_dtype;

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t)100 << 20) // 100 MB: larger headers are corrupt, not big

const char *st_dtype_name(st_dtype t); // "F32", ...
size_t st_dtype_size(st_dtype t);      // bytes per element
// Parses "F32", ...; CTERP_EINVAL if unknown.
cterp_status st_dtype_parse(const char *name, st_dtype *out);

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t nelem;       // product of shape (1 for a scalar)
    const uint8_t *data; // inside the mapping; may be unaligned
    size_t nbytes;       // nelem * dtype size
} st_tensor;

typedef struct {
    char *path;
    file_map map;
    st_tensor *tensors; // (n_tensors) in header order
    int n_tensors;
    char **meta_keys, **meta_vals; // (n_meta) "__metadata__"
    int n_meta;
} st_file;

// Maps `path` and validates the header: length, JSON, dtypes, shapes (overflow-checked),
// offsets inside the data with end - begin == nelem * dtype size, names unique.
// On failure *f is left zeroed (st_close is still safe) and the message names the file.
cterp_status st_open(st_file *f, const char *path);
void st_close(st_file *f); // zeroed or already closed: no-op

// NULL when the file holds no tensor of that name.
const st_tensor *st_find(const st_file *f, const char *name);
// Value of a "__metadata__" key, NULL when absent.
const char *st_meta_get(const st_file *f, const char *key);

// Copies tensor `name` into out (nelem) as f32 from F32/F16/BF16/F64 after checking it exists
// and its shape equals shape[0..ndim) (a scalar has ndim 0; shape may then be NULL).
// Errors: CTERP_ENOTFOUND (missing), CTERP_EFORMAT (shape or dtype), message
// "<path>: tensor W_enc: expected shape [768, 24576], found [768, 1024]".
cterp_status st_read_f32(const st_file *f, const char *name, float *out, int ndim,
                         const int64_t *shape);
// The same into f64 (from F64/F32/F16/BF16).
cterp_status st_read_f64(const st_file *f, const char *name, double *out, int ndim,
                         const int64_t *shape);
// Integers: i64 from I64/I32/I16/I8/U32/U16/U8/BOOL (U64 values above INT64_MAX are an error);
// u64 from U64/U32/U16/U8/BOOL (and non-negative I64).
cterp_status st_read_i64(const st_file *f, const char *name, int64_t *out, int ndim,
                         const int64_t *shape);
cterp_status st_read_u64(const st_file *f, const char *name, uint64_t *out, int ndim,
                         const int64_t *shape);
// Raw bytes of a tensor whose dtype must be exactly `dtype` (out holds nelem * size bytes).
cterp_status st_read_raw(const st_file *f, const char *name, st_dtype dtype, void *out, int ndim,
                         const int64_t *shape);

// Writer: collects entries (names and metadata copied, tensor data borrowed: the caller keeps it
// alive until st_write returns). A zeroed st_writer is an empty writer.
typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; // (prod shape) elements of dtype, not owned
} st_entry;

typedef struct {
    st_entry *entries; // (n) in insertion order
    int n, cap;
    char **meta_keys, **meta_vals; // (n_meta)
    int n_meta, cap_meta;
} st_writer;

void st_writer_init(st_writer *w);
// Adds a tensor; CTERP_EINVAL for a duplicate name, ndim > ST_MAX_DIMS or a negative dim.
cterp_status st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                           const int64_t *shape, const void *data);
// Adds (or replaces) a "__metadata__" entry.
cterp_status st_writer_meta(st_writer *w, const char *key, const char *value);
// Writes the file atomically (temporary + rename): header padded with spaces so the data start
// on a multiple of 8, tensors contiguous in insertion order (no gaps: the reference reader
// rejects them; add 8-byte dtypes first to keep every tensor aligned to its element size).
cterp_status st_write(const st_writer *w, const char *path);
void st_writer_free(st_writer *w); // frees the writer's own copies only; NULL/zeroed: no-op

#endif
