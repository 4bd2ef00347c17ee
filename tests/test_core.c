// core: RNG determinism/statistics, f16/bf16 conversions, atomic file writes.
#include "core/file.h"
#include "core/half.h"
#include "core/rng.h"
#include "cterp/error.h"
#include "test.h"

static void test_rng(void) {
    rng_t a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= rng_u64(&a) == rng_u64(&b);
    CHECK(same);
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double x = rng_normal(&a);
        s += x;
        s2 += x * x;
    }
    CHECK_CLOSE(s / n, 0.0, 0.01, 0);
    CHECK_CLOSE(s2 / n, 1.0, 0.02, 0);
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) counts[rng_below(&a, 7)]++;
    int ok = 1;
    for (int i = 0; i < 7; i++) ok &= counts[i] > 9500 && counts[i] < 10500;
    CHECK(ok);
    float u = 0;
    for (int i = 0; i < 1000; i++) {
        u = rng_uniform(&a);
        if (u < 0 || u >= 1) break;
    }
    CHECK(u >= 0 && u < 1);
}

static void test_half(void) {
    // exact round trips of every f16 bit pattern that is not NaN
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (f != f) continue;
        if (f32_to_f16(f) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d f16 patterns do not round-trip", bad);
    CHECK(f16_to_f32(0x3c00) == 1.0f);
    CHECK(f16_to_f32(0xc000) == -2.0f);
    CHECK(f16_to_f32(0x0001) == 5.960464477539063e-08f); // smallest subnormal
    CHECK(f16_to_f32(0x7bff) == 65504.0f);
    CHECK(f32_to_f16(1.0f + 1.0f / 4096) == 0x3c00); // ties to even: rounds down
    CHECK(f32_to_f16(1e6f) == 0x7c00);
    CHECK(bf16_to_f32(0x3f80) == 1.0f);
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f32_to_bf16(-3.5f) == 0xc060);
    float nan = bf16_to_f32(f32_to_bf16(NAN));
    CHECK(nan != nan);
}

static void test_files(void) {
    const char *dir = test_tmpdir("core");
    CHECK(dir != NULL);
    char *p = file_join(dir, "a/b/c");
    CHECK_OK(file_mkdirs(p));
    CHECK(file_is_dir(p));
    char *f = file_join(p, "x.bin");
    CHECK_OK(file_write_all(f, "hello", 5));
    char *data;
    size_t n;
    CHECK_OK(file_read_all(f, &data, &n));
    CHECK(n == 5 && memcmp(data, "hello", 5) == 0);
    free(data);
    // an aborted rewrite leaves the old content in place and no temporary behind
    file_atomic w;
    CHECK_OK(file_atomic_open(&w, f));
    CHECK_OK(file_atomic_write(&w, "XX", 2));
    file_atomic_abort(&w);
    CHECK_OK(file_read_all(f, &data, &n));
    CHECK(n == 5 && memcmp(data, "hello", 5) == 0);
    free(data);
    file_map m;
    CHECK_OK(file_map_open(&m, f));
    CHECK(m.size == 5 && m.data[4] == 'o');
    file_map_close(&m);
    CHECK(file_read_all("/nonexistent/zzz", &data, &n) == CTERP_EIO);
    CHECK(strstr(cterp_last_error(), "/nonexistent/zzz") != NULL);
    // file_same in pieces of 3 bytes: equal files, a difference in the last (short) piece or the
    // first, another size; a missing file is an error naming it
    char *g = file_join(p, "y.bin");
    int same = -1;
    CHECK_OK(file_write_all(f, "0123456789", 10));
    CHECK_OK(file_write_all(g, "0123456789", 10));
    CHECK_OK(file_same(f, g, 3, &same));
    CHECK(same == 1);
    CHECK_OK(file_same(f, g, 0, &same));
    CHECK(same == 1);
    CHECK_OK(file_write_all(g, "012345678x", 10));
    CHECK_OK(file_same(f, g, 3, &same));
    CHECK(same == 0);
    CHECK_OK(file_write_all(g, "x123456789", 10));
    CHECK_OK(file_same(f, g, 3, &same));
    CHECK(same == 0);
    CHECK_OK(file_write_all(g, "012345678", 9));
    CHECK_OK(file_same(f, g, 3, &same));
    CHECK(same == 0);
    CHECK(file_same(f, "/nonexistent/zzz", 3, &same) == CTERP_EIO && same == 0);
    CHECK(strstr(cterp_last_error(), "/nonexistent/zzz: cannot open") != NULL);
    free(g);
    free(f);
    free(p);
}

// file_map_open_huge: the bytes file_map_open maps (a file over 2 MiB and not a multiple of
// 4 KiB, so the copy has a huge-page head and a partial tail), its data on a 2 MiB boundary when
// it copied; CTERP_HUGE_PAGES=0 maps; a missing file is an error naming it; an empty file maps.
static void test_map_huge(void) {
    const char *dir = test_tmpdir("core_huge");
    char *f = file_join(dir, "big.bin"), *e = file_join(dir, "empty.bin");
    const size_t n = ((size_t)5 << 20) + 123;
    uint8_t *buf = malloc(n);
    rng_t r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rng_u64(&r);
    CHECK_OK(file_write_all(f, buf, n));
    CHECK_OK(file_write_all(e, "", 0));
    for (int off = 0; off < 2; off++) {
        if (off) setenv("CTERP_HUGE_PAGES", "0", 1);
        file_map a, b;
        int huge = -1;
        CHECK_OK(file_map_open(&a, f));
        CHECK_OK(file_map_open_huge(&b, f, &huge));
        CHECK(a.size == n && b.size == n && !memcmp(a.data, buf, n) && !memcmp(b.data, buf, n));
        CHECK(huge == 0 || huge == 1);
        if (off) CHECK_MSG(huge == 0, "CTERP_HUGE_PAGES=0 copied the file");
        if (huge) CHECK(((uintptr_t)b.data & (((uintptr_t)2 << 20) - 1)) == 0);
        file_map_close(&a), file_map_close(&b);
        CHECK(b.data == NULL && b.size == 0);
        CHECK_OK(file_map_open_huge(&b, e, &huge));
        CHECK(b.size == 0 && b.data == NULL && huge == 0);
        file_map_close(&b);
    }
    unsetenv("CTERP_HUGE_PAGES");
    file_map m;
    CHECK(file_map_open_huge(&m, "/nonexistent/zzz", NULL) == CTERP_EIO);
    CHECK(strstr(cterp_last_error(), "/nonexistent/zzz: cannot open") != NULL);
    free(buf), free(f), free(e);
}

int main(void) {
    test_rng();
    test_half();
    test_files();
    test_map_huge();
    return test_done();
}
