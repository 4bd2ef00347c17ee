// Fuzz target: safetensors bytes -> st_open (header length, JSON, dtypes, shapes, offsets,
// metadata), every tensor read through the typed readers (f32, f64, i64, u64, raw), then the
// writer's round trip: what st_write writes from the parsed file opens to the same tensors.
#include "fuzz.h"
#include "io/safetensors.h"

static char *in_path, *back_path;

// A file with one tensor of each common dtype and a metadata entry, from the library's writer.
static void seed_files(void) {
    char *p = fuzz_path("seed.safetensors");
    float f32[6] = {1, -2, 0.5f, 3e38f, -0.0f, 1e-40f};
    double f64[2] = {1.5, -1e300};
    int64_t i64[3] = {-1, 0, INT64_MAX};
    uint64_t u64[2] = {0, UINT64_MAX};
    uint16_t f16[4] = {0x3c00, 0x7bff, 0x8001, 0x7c00}, bf16[2] = {0x3f80, 0xff80};
    uint8_t u8[3] = {0, 1, 255};
    int32_t i32[2] = {INT32_MIN, 7};
    int64_t s23[2] = {2, 3}, s2 = 2, s3 = 3, s4 = 4, s1 = 1;
    st_writer w;
    st_writer_init(&w);
    st_writer_add(&w, "f64", ST_F64, 1, &s2, f64);
    st_writer_add(&w, "i64", ST_I64, 1, &s3, i64);
    st_writer_add(&w, "u64", ST_U64, 1, &s2, u64);
    st_writer_add(&w, "W", ST_F32, 2, s23, f32);
    st_writer_add(&w, "i32", ST_I32, 1, &s2, i32);
    st_writer_add(&w, "f16", ST_F16, 1, &s4, f16);
    st_writer_add(&w, "bf16", ST_BF16, 1, &s2, bf16);
    st_writer_add(&w, "u8", ST_U8, 1, &s3, u8);
    st_writer_add(&w, "scalar", ST_F32, 0, NULL, f32);
    st_writer_add(&w, "empty", ST_F32, 2, (int64_t[]){0, 4}, f32);
    st_writer_add(&w, "one", ST_BOOL, 1, &s1, u8 + 1);
    st_writer_meta(&w, "format", "pt");
    if (st_write(&w, p)) abort();
    st_writer_free(&w);
    fuzz_seed_file("dtypes.safetensors", p);
    // the smallest valid file, and a handwritten one with unaligned data and no padding
    static const char empty[] = "\x02\0\0\0\0\0\0\0{}";
    fuzz_seed("empty.safetensors", empty, sizeof empty - 1);
    static const char hand[] = "\x3c\0\0\0\0\0\0\0{\"x\":{\"dtype\":\"F16\",\"shape\":[1,1],"
                               "\"data_offsets\":[0,2]}}\x00\x3c";
    fuzz_seed("unaligned.safetensors", hand, sizeof hand - 1);
    free(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    in_path = fuzz_path("in.safetensors");
    back_path = fuzz_path("back.safetensors");
    if (fuzz_seed_dir()) seed_files();
    return 0;
}

static void read_all_ways(const st_file *f, const st_tensor *t, void *buf) {
    st_read_f32(f, t->name, buf, t->ndim, t->shape);
    st_read_f64(f, t->name, buf, t->ndim, t->shape);
    st_read_i64(f, t->name, buf, t->ndim, t->shape);
    st_read_u64(f, t->name, buf, t->ndim, t->shape);
    st_read_raw(f, t->name, t->dtype, buf, t->ndim, t->shape);
    int64_t wrong = t->nelem + 1; // a shape mismatch is an error before any copy
    st_read_f32(f, t->name, buf, 1, &wrong);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write(in_path, data, size);
    st_file f;
    if (st_open(&f, in_path)) return 0;
    st_meta_get(&f, "format");
    st_find(&f, "nope");
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        if (st_find(&f, t->name) != t) abort(); // names are unique
        void *buf = malloc((size_t)t->nelem * 8 + 8);
        if (!buf) abort();
        read_all_ways(&f, t, buf);
        free(buf);
        if (st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data)) abort();
    }
    for (int i = 0; i < f.n_meta; i++)
        if (st_writer_meta(&w, f.meta_keys[i], f.meta_vals[i])) abort();
    if (st_write(&w, back_path)) {
        fprintf(stderr, "safetensors: cannot write back a file it read: %s\n", cterp_last_error());
        abort();
    }
    st_writer_free(&w);
    st_file b;
    if (st_open(&b, back_path)) {
        fprintf(stderr, "safetensors: what it wrote does not open: %s\n", cterp_last_error());
        abort();
    }
    int same = b.n_tensors == f.n_tensors;
    for (int i = 0; same && i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i], *u = st_find(&b, t->name);
        same = u && u->dtype == t->dtype && u->ndim == t->ndim && u->nbytes == t->nbytes &&
               !memcmp(u->shape, t->shape, sizeof t->shape) &&
               (!t->nbytes || !memcmp(u->data, t->data, t->nbytes));
    }
    if (!same) {
        fprintf(stderr, "safetensors: the round trip changed a tensor\n");
        abort();
    }
    st_close(&b);
    st_close(&f);
    return 0;
}
