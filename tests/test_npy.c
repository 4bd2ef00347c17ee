// .npy: our writer's bytes against what np.save writes, hand-built v1/v2/v3 files in f2/f4/f8,
// row ranges, and every kind of bad file failing with a message naming the file.
#include "core/half.h"
#include "io/npy.h"
#include "test.h"

static char dir[512];

static void path_of(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_bytes(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (n) fwrite(buf, 1, n, f);
    fclose(f);
}

// magic + version + header length (2 bytes for v1, 4 otherwise) + header + data
static size_t build(uint8_t *out, int major, const char *hdr, const void *data, size_t n) {
    size_t h = strlen(hdr), k = 0;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t)major;
    out[7] = 0;
    k = 8;
    int lb = major == 1 ? 2 : 4;
    for (int i = 0; i < lb; i++) out[k++] = (uint8_t)(h >> (8 * i));
    memcpy(out + k, hdr, h);
    k += h;
    if (n) memcpy(out + k, data, n);
    return k + n;
}

static void expect_fail(const char *path, const char *want) {
    npy_file f;
    cterp_status s = npy_open(&f, path);
    CHECK_MSG(s != CTERP_OK, "%s opened; expected '%s'", path, want);
    CHECK_MSG(strstr(cterp_last_error(), path) != NULL, "message '%s' does not name the file",
              cterp_last_error());
    CHECK_MSG(strstr(cterp_last_error(), want) != NULL, "message '%s' lacks '%s'",
              cterp_last_error(), want);
    CHECK(f.path == NULL && f.data == NULL);
    npy_close(&f);
}

static void test_write_read(void) {
    char path[600];
    path_of(path, sizeof path, "a.npy");
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i * 0.5f - 2.0f;
    x[5] = -0.0f;
    CHECK_OK(npy_write_f32(path, x, 3, 4));
    // np.save(np.zeros((3, 4), np.float32)) starts with exactly these 64 bytes
    const char *ref = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (3, 4), }";
    char *buf = NULL;
    size_t n = 0;
    CHECK_OK(file_read_all(path, &buf, &n));
    CHECK(n == 128 + 48);
    size_t rl = 10 + strlen(ref + 10);
    CHECK(buf && !memcmp(buf, ref, rl));
    int spaces = 1;
    for (size_t i = rl; i < 127; i++) spaces &= buf[i] == ' ';
    CHECK(spaces && buf[127] == '\n');
    free(buf);

    npy_file f;
    CHECK_OK(npy_open(&f, path));
    CHECK(f.rows == 3 && f.cols == 4 && f.elem_size == 4 && !strcmp(f.descr, "<f4"));
    const float *p = npy_f32_data(&f);
    CHECK(p && !memcmp(p, x, sizeof x));
    float out[12];
    CHECK_OK(npy_read_rows(&f, 1, 2, out));
    CHECK(!memcmp(out, x + 4, 8 * sizeof(float)));
    CHECK_OK(npy_read_rows(&f, 3, 0, out)); // empty range at the end
    CHECK(npy_read_rows(&f, 2, 2, out) == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), "out of range") && strstr(cterp_last_error(), path));
    CHECK(npy_read_rows(&f, -1, 1, out) == CTERP_EINVAL);
    npy_close(&f);
    npy_close(&f);
    npy_close(NULL);

    path_of(path, sizeof path, "empty.npy");
    CHECK_OK(npy_write_f32(path, NULL, 0, 7));
    CHECK_OK(npy_open(&f, path));
    CHECK(f.rows == 0 && f.cols == 7);
    npy_close(&f);
}

static void test_versions_dtypes(void) {
    char path[600];
    uint8_t file[512];
    // v2.0, '<f2', keys in another order, double quotes, no trailing comma
    path_of(path, sizeof path, "v2.npy");
    uint16_t h[4] = {f32_to_f16(1.0f), f32_to_f16(-0.5f), f32_to_f16(65504.0f),
                     f32_to_f16(0.0009765625f)};
    size_t n = build(file, 2, "{\"shape\": (2, 2), \"fortran_order\": False, \"descr\": \"<f2\"}\n",
                     h, sizeof h);
    write_bytes(path, file, n);
    npy_file f;
    float out[4];
    CHECK_OK(npy_open(&f, path));
    CHECK(f.rows == 2 && f.cols == 2 && f.elem_size == 2);
    CHECK(npy_f32_data(&f) == NULL); // not f32: must be converted
    CHECK_OK(npy_read_rows(&f, 0, 2, out));
    CHECK(out[0] == 1.0f && out[1] == -0.5f && out[2] == 65504.0f && out[3] == 0.0009765625f);
    npy_close(&f);
    // v3.0, '<f8', Python 2 longs, odd header length so the data are unaligned
    path_of(path, sizeof path, "v3.npy");
    double d[3] = {0.1, -3.0, 1e10};
    n = build(file, 3, "{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 1L), } \n", d,
              sizeof d);
    write_bytes(path, file, n);
    CHECK_OK(npy_open(&f, path));
    CHECK(f.rows == 3 && f.cols == 1);
    CHECK_OK(npy_read_rows(&f, 1, 2, out));
    CHECK(out[0] == -3.0f && out[1] == 1e10f);
    npy_close(&f);
    // v1.0 '<f4' with data at an odd offset: no in-place view, but rows still read
    path_of(path, sizeof path, "odd.npy");
    float x[2] = {3.25f, -7.0f};
    n = build(file, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }\n", x,
              sizeof x);
    write_bytes(path, file, n);
    CHECK_OK(npy_open(&f, path));
    CHECK(((uintptr_t)f.data & 3) == 0 || npy_f32_data(&f) == NULL);
    CHECK_OK(npy_read_rows(&f, 0, 1, out));
    CHECK(out[0] == 3.25f && out[1] == -7.0f);
    npy_close(&f);
}

static void test_bad(void) {
    char path[600];
    uint8_t file[512];
    float x[8] = {0};
    path_of(path, sizeof path, "bad.npy");
    struct {
        const char *hdr;
        size_t ndata;
        const char *want;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16, "fortran_order"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }\n", 16, "descr '>f4'"},
        {"{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }\n", 16, "descr '<i4'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n", 8, "descr"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n", 16, "2 (rows, cols)"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }\n", 16, "dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", 12, "truncated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", 20, "found 20"},
        {"{'descr': '<f4', 'fortran_order': False}\n", 16, "missing key 'shape'"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 2), }\n", 16, "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }\n", 16, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }\n", 16,
         "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n", 16,
         "overflow"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'extra': 1}\n", 16,
         "unexpected key 'extra'"},
        {"['descr']\n", 0, "not a dict"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = build(file, 1, cases[i].hdr, x, cases[i].ndata);
        write_bytes(path, file, n);
        expect_fail(path, cases[i].want);
    }
    size_t n = build(file, 4, "{}\n", x, 0);
    write_bytes(path, file, n);
    expect_fail(path, "version 4.0");
    write_bytes(path, "PK\x03\x04 not numpy", 15);
    expect_fail(path, "magic");
    path_of(path, sizeof path, "none.npy");
    expect_fail(path, "cannot open");
    // every proper prefix of a good file is an error
    path_of(path, sizeof path, "good.npy");
    float y[6] = {1, 2, 3, 4, 5, 6};
    CHECK_OK(npy_write_f32(path, y, 2, 3));
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(file_read_all(path, &buf, &len));
    path_of(path, sizeof path, "cut.npy");
    int all = 1;
    for (size_t k = 0; k < len; k++) {
        write_bytes(path, buf, k);
        npy_file f;
        all &= npy_open(&f, path) != CTERP_OK && strstr(cterp_last_error(), path) != NULL;
        npy_close(&f);
    }
    CHECK(all);
    free(buf);
}

int main(void) {
    const char *d = test_tmpdir("npy");
    if (!d) return 1;
    snprintf(dir, sizeof dir, "%s", d);
    test_write_read();
    test_versions_dtypes();
    test_bad();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return test_done();
}
