// Fuzz target: .npy bytes -> npy_open (magic, version, header dict, shape, data size), rows read
// back as f32, then the same file as a training source (cterp_act_source_file: shape checks, the
// row permutation, a few batches across an epoch, its resume state).
#include "cterp/train.h"
#include "fuzz.h"
#include "io/npy.h"

static char *npy_path;

static void seed_npy(const char *name, const void *hdr, size_t hlen, const void *data, size_t n) {
    uint8_t buf[4096];
    if (hlen + n > sizeof buf) abort();
    memcpy(buf, hdr, hlen);
    memcpy(buf + hlen, data, n);
    fuzz_seed(name, buf, hlen + n);
}

// A v1 header for descr and shape, padded as numpy pads it (to 64 bytes).
static size_t npy_header(char *out, int major, const char *descr, const char *shape) {
    char dict[128];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    size_t pre = major == 1 ? 10 : 12, total = pre + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64, hl = (size_t)n + pad + 1;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (char)major, out[7] = 0;
    out[8] = (char)(hl & 0xff), out[9] = (char)(hl >> 8);
    if (major != 1) out[10] = out[11] = 0;
    memcpy(out + pre, dict, (size_t)n);
    memset(out + pre + n, ' ', pad);
    out[pre + hl - 1] = '\n';
    return pre + hl;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    npy_path = fuzz_path("acts.npy");
    if (fuzz_seed_dir()) {
        float v[6 * 4];
        for (int i = 0; i < 24; i++) v[i] = (float)i * 0.25f - 2.0f;
        char *p = fuzz_path("seed.npy"); // the library's own writer
        if (npy_write_f32(p, v, 6, 4)) abort();
        fuzz_seed_file("f32_6x4.npy", p);
        free(p);
        char h[256];
        uint16_t h16[12];
        for (int i = 0; i < 12; i++) h16[i] = (uint16_t)(0x3c00 + 64 * i); // f16 values
        size_t n = npy_header(h, 1, "<f2", "(3, 4)");
        seed_npy("f16_3x4.npy", h, n, h16, sizeof h16);
        double d[6] = {1, -2, 3.5, 1e300, -0.0, 7};
        n = npy_header(h, 2, "<f8", "(2, 3)");
        seed_npy("f8_2x3_v2.npy", h, n, d, sizeof d);
        n = npy_header(h, 3, "<f4", "(3,)");
        seed_npy("f4_1d_v3.npy", h, n, v, 12);
        n = npy_header(h, 1, "<f4", "(0, 4)");
        seed_npy("f4_empty.npy", h, n, v, 0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write(npy_path, data, size);
    npy_file f;
    if (npy_open(&f, npy_path)) return 0;
    float *row = malloc(((size_t)f.cols + 1) * sizeof(float));
    if (!row) abort();
    if (f.rows > 0) {
        npy_read_rows(&f, 0, 1, row);
        npy_read_rows(&f, f.rows - 1, 1, row);
    }
    npy_read_rows(&f, f.rows, 1, row); // out of range: an error, not a read
    npy_f32_data(&f);
    npy_close(&f);
    free(row);

    cterp_act_source src;
    if (cterp_act_source_file(&src, npy_path, 0, 7)) return 0;
    const int64_t B = 5; // rows a batch: small files wrap into the next epoch
    float *x = malloc((size_t)(B * src.d_in) * sizeof(float));
    if (!x) abort();
    uint64_t st[16];
    for (int i = 0; i < 3; i++)
        if (src.next(src.ctx, x, B)) break;
    int n = src.get_state(src.ctx, st, 16);
    if (n > 0 && src.set_state(src.ctx, st, n, 3 * B)) {
        fprintf(stderr, "npy source: its own state is refused: %s\n", cterp_last_error());
        abort();
    }
    src.next(src.ctx, x, B);
    free(x);
    cterp_act_source_free(&src);
    return 0;
}
