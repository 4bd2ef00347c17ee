// NumPy .npy files of activations: 2-D (rows, cols), little-endian float, C order.
//
// Layout: "\x93NUMPY", major, minor, header length (u16 LE for v1, u32 LE for v2/v3), a Python
// dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (rows, cols), } padded with
// spaces and ended by '\n', then rows*cols elements. Read: '<f4', '<f2', '<f8' (converted to
// f32); anything else (big-endian, ints, fortran_order True, not 2-D) is an error naming it.
#ifndef CTERP_IO_NPY_H
#define CTERP_IO_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "cterp/error.h"

typedef struct {
    char *path;
    file_map map;
    int64_t rows, cols;  // shape (rows, cols)
    char descr[8];       // "<f4", "<f2" or "<f8"
    size_t elem_size;    // 4, 2 or 8
    const uint8_t *data; // (rows, cols) elements inside the mapping
} npy_file;

// Maps `path` and validates magic, version, header and that the data fill the rest of the file.
// On failure *f is zeroed (npy_close is still safe) and the message names the file and field.
cterp_status npy_open(npy_file *f, const char *path);
void npy_close(npy_file *f); // zeroed or already closed: no-op

// Copies rows [r0, r0 + n) into out (n, cols) as f32; CTERP_EINVAL if out of range.
cterp_status npy_read_rows(const npy_file *f, int64_t r0, int64_t n, float *out);

// The data as f32 in place (rows, cols) when they are '<f4' and 4-byte aligned (numpy aligns the
// data to 64 bytes), else NULL: then use npy_read_rows.
const float *npy_f32_data(const npy_file *f);

// Writes a version 1.0 '<f4' file of data (rows, cols), atomically (temporary + rename).
cterp_status npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols);

#endif
