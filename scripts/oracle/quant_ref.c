// ggml as the oracle for cterp's quantized types (scripts/oracle/quant_refs.sh builds and runs it).
//
//   quant_ref blocks DIR   writes DIR/<type>.bin for every quantized type cterp reads: random
//                          blocks (fixed seed; their f16 scales finite) and ggml's to_float of them
//   quant_ref rmse         prints the error of ggml's quantizers on test_quant's round-trip row
//
// <type>.bin, little-endian: "QREF", u32 ggml type, u32 blocks nb, u32 elements per block qk,
// then the nb blocks' bytes (nb · ggml_type_size), then ggml's nb·qk f32 values.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "quant_testdata.h"

typedef struct {
    const char *name;
    enum ggml_type type;
    int f16_at[2]; // byte offsets of the block's f16 fields (-1: none)
} qtype;

static const qtype TYPES[] = {
    {"Q4_0", GGML_TYPE_Q4_0, {0, -1}},     {"Q4_1", GGML_TYPE_Q4_1, {0, 2}},
    {"Q5_0", GGML_TYPE_Q5_0, {0, -1}},     {"Q5_1", GGML_TYPE_Q5_1, {0, 2}},
    {"Q8_0", GGML_TYPE_Q8_0, {0, -1}},     {"Q2_K", GGML_TYPE_Q2_K, {80, 82}},
    {"Q3_K", GGML_TYPE_Q3_K, {108, -1}},   {"Q4_K", GGML_TYPE_Q4_K, {0, 2}},
    {"Q5_K", GGML_TYPE_Q5_K, {0, 2}},      {"Q6_K", GGML_TYPE_Q6_K, {208, -1}},
    {"IQ4_NL", GGML_TYPE_IQ4_NL, {0, -1}}, {"IQ4_XS", GGML_TYPE_IQ4_XS, {0, -1}},
};
enum { N_TYPES = sizeof TYPES / sizeof TYPES[0], NB = 4 };

static uint64_t next(uint64_t *s) { // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// a finite f16: random sign and mantissa, exponent 2^-8..2^2; block 3's is subnormal
static uint16_t rand_f16(uint64_t *s, int block) {
    uint64_t r = next(s);
    uint16_t sign = (uint16_t)((r & 1) << 15), man = (uint16_t)((r >> 1) & 0x3ff);
    uint16_t exp = block == 3 ? 0 : (uint16_t)(7 + (r >> 11) % 11);
    if (block == 3 && !man) man = 1;
    return (uint16_t)(sign | (exp << 10) | man);
}

static int write_blocks(const char *dir) {
    for (int t = 0; t < N_TYPES; t++) {
        const qtype *q = &TYPES[t];
        const struct ggml_type_traits *tr = ggml_get_type_traits(q->type);
        size_t bs = tr->type_size;
        int64_t qk = tr->blck_size;
        uint8_t *blocks = malloc(NB * bs);
        float *y = malloc(sizeof(float) * NB * qk);
        uint64_t s = 1000 + (uint64_t)q->type;
        for (int b = 0; b < NB; b++) {
            uint8_t *p = blocks + b * bs;
            for (size_t i = 0; i < bs; i++) p[i] = (uint8_t)next(&s);
            for (int k = 0; k < 2; k++)
                if (q->f16_at[k] >= 0) {
                    uint16_t h = rand_f16(&s, b);
                    memcpy(p + q->f16_at[k], &h, 2);
                }
        }
        tr->to_float(blocks, y, NB * qk);
        for (int i = 0; i < NB * qk; i++)
            if (!isfinite(y[i])) {
                fprintf(stderr, "%s: value %d not finite\n", q->name, i);
                return 1;
            }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.bin", dir, q->name);
        FILE *f = fopen(path, "wb");
        if (!f) {
            perror(path);
            return 1;
        }
        uint32_t hdr[3] = {(uint32_t)q->type, NB, (uint32_t)qk};
        int ok = fwrite("QREF", 1, 4, f) == 4 && fwrite(hdr, 4, 3, f) == 3 &&
                 fwrite(blocks, 1, NB * bs, f) == NB * bs &&
                 fwrite(y, sizeof(float), NB * qk, f) == (size_t)(NB * qk);
        if (fclose(f) || !ok) {
            fprintf(stderr, "%s: write failed\n", path);
            return 1;
        }
        printf("%s: %d blocks of %lld, %zu bytes each\n", path, NB, (long long)qk, bs);
        free(blocks);
        free(y);
    }
    return 0;
}

// relative rms error (quant_testdata.h) of from_float_ref and of ggml_quantize_chunk without an
// importance matrix (what llama-quantize does without --imatrix)
static int rmse(void) {
    static float x[QUANT_RT_N], v[QUANT_RT_N], y[QUANT_RT_N];
    static uint8_t q[QUANT_RT_N * 4];
    quant_rt_data(x, v);
    printf("%-7s %10s %10s\n", "type", "ref", "chunk");
    for (int t = 0; t < N_TYPES; t++) {
        const struct ggml_type_traits *tr = ggml_get_type_traits(TYPES[t].type);
        tr->from_float_ref(x, q, QUANT_RT_N);
        tr->to_float(q, y, QUANT_RT_N);
        double e_ref = quant_rt_error(x, y);
        ggml_quantize_chunk(TYPES[t].type, x, q, 0, 1, QUANT_RT_N, NULL);
        tr->to_float(q, y, QUANT_RT_N);
        printf("%-7s %10.6f %10.6f\n", TYPES[t].name, e_ref, quant_rt_error(x, y));
    }
    ggml_quantize_free();
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "blocks")) return write_blocks(argv[2]);
    if (argc == 2 && !strcmp(argv[1], "rmse")) return rmse();
    fprintf(stderr, "usage: %s blocks DIR | rmse\n", argv[0]);
    return 2;
}
