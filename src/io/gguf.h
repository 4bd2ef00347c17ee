// GGUF v2/v3 reader (and a small writer for tests and tools).
//
// The reader maps the file read-only, checks every count, length and offset against the file
// before trusting it (hostile files give an error naming the file, the field, what was expected
// and what was found), and then serves metadata values and tensor data straight from the map.
// Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, kv[n_kv],
// tensor_info[n_tensors], zero padding to the alignment, tensor data.
#ifndef CTERP_IO_GGUF_H
#define CTERP_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"

// Metadata value types.
typedef enum {
    GGUF_TYPE_U8 = 0,
    GGUF_TYPE_I8 = 1,
    GGUF_TYPE_U16 = 2,
    GGUF_TYPE_I16 = 3,
    GGUF_TYPE_U32 = 4,
    GGUF_TYPE_I32 = 5,
    GGUF_TYPE_F32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_U64 = 10,
    GGUF_TYPE_I64 = 11,
    GGUF_TYPE_F64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

// Tensor element types (ggml numbering).
typedef enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16, // the types from here to MXFP4 are known by size (a file holding them
    GGML_TYPE_IQ2_XS = 17,  // opens; the model loader names them as not supported)
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40
} ggml_type;

// Elements per block and bytes per block of a tensor type; 0 for a type this reader does not
// know (the file is then rejected).
int64_t gguf_type_block(uint32_t type);
int64_t gguf_type_size(uint32_t type);
const char *gguf_type_name(uint32_t type);  // "Q8_0", or "type#N" (static buffer per thread)
const char *gguf_vtype_name(uint32_t type); // "u32", "string", "array", ...

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    const char *s; // into the map, NOT NUL-terminated
    uint64_t len;
} gguf_str;

typedef struct {
    char *key;          // NUL-terminated copy
    uint32_t type;      // gguf_type
    uint32_t arr_type;  // element type when type == GGUF_TYPE_ARRAY
    uint64_t n;         // elements for arrays, 1 otherwise
    const uint8_t *val; // scalar value or first array element (unaligned, inside the map)
    gguf_str *strs;     // string arrays and strings: n entries
} gguf_kv;

typedef struct {
    char *name;                // NUL-terminated copy
    uint32_t n_dims;           // 1..4
    int64_t ne[GGUF_MAX_DIMS]; // elements per dim, ne[0] contiguous; unused dims are 1
    uint32_t type;             // ggml_type
    uint64_t offset;           // from the start of the data section
    int64_t n_elements;
    size_t n_bytes;
    const void *data; // inside the map (aligned to the file's alignment)
} gguf_tensor;

typedef struct gguf_file {
    char *path;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;          // (n_kv)
    gguf_tensor *tensors; // (n_tensors)
    uint32_t *by_name;    // (n_tensors) tensor indices sorted by name, for lookup
    size_t data_offset;   // file offset of the data section
    const uint8_t *map;   // the whole file
    size_t size;
    int owns_map; // 1: map from gguf_open (unmapped by close); 0: caller's buffer
    char *arena;  // keys and names
} gguf_file;

// Opens and validates `path`. On failure *out is NULL and the error names the file and field.
cterp_status gguf_open(gguf_file **out, const char *path);
// Same, the file read into memory for streaming (file_map_open_huge: 2 MiB pages where the
// system has them); *huge says whether it was. For a model's weights.
cterp_status gguf_open_huge(gguf_file **out, const char *path, int *huge);
// Same over a caller-owned buffer (kept alive by the caller until gguf_close); `name` is used
// in error messages.
cterp_status gguf_open_buffer(gguf_file **out, const void *buf, size_t size, const char *name);
void gguf_close(gguf_file *g); // NULL is a no-op

// Index of `key`, or -1.
int64_t gguf_find_key(const gguf_file *g, const char *key);
static inline int gguf_has_key(const gguf_file *g, const char *key) {
    return gguf_find_key(g, key) >= 0;
}
// Typed getters. CTERP_ENOTFOUND when the key is absent; CTERP_EFORMAT (message naming the
// key, expected and found types) when present with a type that cannot represent the value.
// Integer getters accept any integer type whose value fits.
cterp_status gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out);
cterp_status gguf_get_i64(const gguf_file *g, const char *key, int64_t *out);
cterp_status gguf_get_f32(const gguf_file *g, const char *key, float *out); // f32 or f64
cterp_status gguf_get_bool(const gguf_file *g, const char *key, int *out);
// String value (not NUL-terminated, points into the map).
cterp_status gguf_get_str(const gguf_file *g, const char *key, gguf_str *out);
// Array: element type and count; `elem_type` < 0 accepts any element type.
cterp_status gguf_get_arr(const gguf_file *g, const char *key, int elem_type, const gguf_kv **out);
// Element i of a numeric array converted to double / int64 (caller checks i < n); a float
// element outside the int64 range saturates, NaN gives 0.
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);
// Non-NUL-terminated string of a STRING kv as a NUL-terminated value in buf (truncated).
const char *gguf_str_copy(gguf_str s, char *buf, size_t cap);

// Tensor by name, or NULL.
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

// ---- writer -------------------------------------------------------------------------------
// Builds a GGUF v3 file in memory and writes it atomically. Values are copied.
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(uint32_t alignment); // 0 -> default 32; NULL on OOM
void gguf_writer_free(gguf_writer *w);
void gguf_writer_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_bool(gguf_writer *w, const char *key, int v);
void gguf_writer_str(gguf_writer *w, const char *key, const char *v);
// Numeric array of `n` elements of `elem_type` (raw little-endian bytes).
void gguf_writer_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data,
                     uint64_t n);
void gguf_writer_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
// Tensor with ne[0..n_dims-1] of `type`; `data` holds the encoded bytes (size from the type).
void gguf_writer_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims,
                        const int64_t *ne, const void *data);
// Serialises to a malloc'd buffer / to a file (atomically). Reports an earlier OOM.
cterp_status gguf_writer_buffer(gguf_writer *w, uint8_t **buf, size_t *size);
cterp_status gguf_writer_write(gguf_writer *w, const char *path);

#endif
