// Fuzz target: activation cache bytes -> cterp_act_cache_info_read (activations.bin's header:
// magic, version, dtype, d_in, count against the file size; tokens.bin's size against the count)
// and the cache as a training source (cterp_act_source_cache: the mixing buffer over the rows,
// batches across an epoch, get_state / set_state replaying to the same rows). Byte 0 says what
// tokens.bin is (0: absent, 1: count x 4 bytes as the header says, else byte 1 x 4 bytes); the rest
// is activations.bin.
#include "cterp/acts.h"
#include "cterp/model.h"
#include "fuzz.h"

enum { B = 8, BATCHES = 5, MAX_D = 256 };
static char *dir, *acts, *toks;

static void put32(uint8_t *p, uint32_t v) {
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, int64_t v) {
    memcpy(p, &v, 8);
}

// A cache as cterp_act_cache_write lays it out (4096-byte header, rows), prefixed for the target.
static void seed_cache(const char *name, uint32_t dtype, int64_t d_in, int64_t count,
                       uint8_t tokens) {
    const size_t es = dtype == 0 ? 4 : 2, n = 2 + 4096 + (size_t)(d_in * count) * es;
    uint8_t *b = calloc(1, n);
    if (!b) abort();
    b[0] = tokens, b[1] = 3;
    uint8_t *h = b + 2;
    memcpy(h, "CTRPACTS", 8);
    put32(h + 8, 1), put32(h + 12, dtype);
    put64(h + 16, d_in), put64(h + 24, count), put64(h + 32, count / 4 + 1);
    put32(h + 40, 8), put32(h + 44, 1), put32(h + 56, 1), put32(h + 60, 1);
    snprintf((char *)h + 64, 255, "stories260K.gguf");
    snprintf((char *)h + 320, 255, "blocks.2.hook_resid_post");
    snprintf((char *)h + 576, 1023, "stories.txt");
    for (int64_t i = 0; i < d_in * count; i++) {
        float v = (float)((i * 7919) % 101) / 25.0f - 2.0f;
        uint32_t u;
        memcpy(&u, &v, 4);
        if (dtype == 0)
            memcpy(h + 4096 + 4 * i, &v, 4);
        else { // bf16: the top half of the f32; f16: a run of ordinary values
            uint16_t x = dtype == 2 ? (uint16_t)(u >> 16) : (uint16_t)(0x3c00 + (i % 512));
            memcpy(h + 4096 + 2 * i, &x, 2);
        }
    }
    fuzz_seed(name, b, n);
    free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    dir = fuzz_subdir("cache");
    acts = file_join(dir, "activations.bin");
    toks = file_join(dir, "tokens.bin");
    if (fuzz_seed_dir()) {
        seed_cache("f32_4x10.bin", 0, 4, 10, 1);
        seed_cache("f16_6x20_notokens.bin", 1, 6, 20, 0);
        seed_cache("bf16_3x33.bin", 2, 3, 33, 1);
        seed_cache("f32_16x9_badtokens.bin", 0, 16, 9, 2);
        // the writer's own output over stories260K, when the test data is there
        const char *td = fuzz_testdata();
        char *mp = td ? file_join(td, "models/stories260K.gguf") : NULL;
        cterp_model *m;
        if (mp && file_exists(mp) && !cterp_model_open(&m, mp)) {
            char *txt = fuzz_path("stories.txt"), *out = fuzz_subdir("written");
            const char story[] =
                "Once upon a time there was a little cat. The cat liked to play in the sun.\n"
                "One day a dog came to the park and they played all day.\n";
            fuzz_write(txt, story, sizeof story - 1);
            cterp_store_config sc;
            cterp_store_config_default(&sc);
            sc.windows.context_size = 8;
            for (int dt = 0; dt < 3; dt++) {
                if (cterp_act_cache_write(m, "stories260K.gguf", "blocks.2.hook_resid_post", txt,
                                          &sc, 24, (cterp_dtype)dt, out, NULL, NULL, NULL)) {
                    fprintf(stderr, "fuzz_cache: %s\n", cterp_last_error());
                    abort();
                }
                char *a = file_join(out, "activations.bin"), *d;
                size_t n;
                if (file_read_all(a, &d, &n)) abort();
                uint8_t *b = malloc(n + 2);
                if (!b) abort();
                b[0] = 1, b[1] = 0;
                memcpy(b + 2, d, n);
                char name[32];
                snprintf(name, sizeof name, "written_dtype%d.bin", dt);
                fuzz_seed(name, b, n + 2);
                free(b), free(d), free(a);
            }
            cterp_model_free(m);
            free(txt), free(out);
        }
        free(mp);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    fuzz_write(acts, data + 2, size - 2);
    int64_t count = 0;
    if (size >= 2 + 32) memcpy(&count, data + 2 + 24, 8);
    if (data[0] == 0) {
        unlink(toks);
    } else {
        size_t n = data[0] == 1 && count >= 0 && count < (1 << 20) ? (size_t)count * 4
                                                                   : (size_t)data[1] * 4;
        uint8_t *z = calloc(1, n ? n : 1);
        if (!z) abort();
        fuzz_write(toks, z, n);
        free(z);
    }
    cterp_cache_info info;
    cterp_status s = cterp_act_cache_info_read(dir, &info);
    fuzz_note("info", s);
    if (s) return 0;
    cterp_store_config sc;
    cterp_store_config_default(&sc);
    sc.buffer_rows = 32;
    sc.seed = data[1];
    cterp_act_source src;
    s = cterp_act_source_cache(&src, dir, &sc, B);
    fuzz_note("source", s);
    if (s) return 0;
    if (src.d_in != info.d_in) abort();
    if (src.d_in > MAX_D) { // rows wider than the target reads: the open is what counts
        cterp_act_source_free(&src);
        return 0;
    }
    static float x[BATCHES][B * MAX_D], y[B * MAX_D];
    uint64_t st[16];
    int nst = 0;
    for (int b = 0; b < BATCHES && !s; b++) {
        if (b == 2) nst = src.get_state(src.ctx, st, 16);
        s = src.next(src.ctx, x[b], B);
    }
    fuzz_note("next", s);
    // back to the state after two batches: the next batch is the third again
    if (!s && nst > 0 && !src.set_state(src.ctx, st, nst, 2 * B) && !src.next(src.ctx, y, B) &&
        memcmp(y, x[2], sizeof(float) * (size_t)(B * src.d_in))) {
        fprintf(stderr, "fuzz_cache: the batch after set_state differs from the one it replays\n");
        abort();
    }
    cterp_act_source_free(&src);
    return 0;
}
