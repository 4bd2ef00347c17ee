// Dequantization per block against values computed by hand from the format description and
// against ggml's own output (bit for bit), the reference quantizers' round-trip error per type
// against ggml's quantizers' on the same row, and the fused dot against dequant + loop.
#include "core/half.h"
#include "core/rng.h"
#include "kern/kern.h"
#include "model/quant.h"
#include "quant_testdata.h"
#include "test.h"
#include "xq_rows.h"

static void test_hand_blocks(void) {
    float y[QK_K];
    { // Q8_0: d = 0.5; y = q·d
        block_q8_0 b = {0};
        b.d = 0x3800;
        b.qs[0] = 3;
        b.qs[31] = -128;
        quant_dequant_row(GGML_TYPE_Q8_0, &b, y, 32);
        CHECK(y[0] == 1.5f && y[31] == -64.0f && y[5] == 0.0f);
    }
    { // Q4_0: d = 2; low nibble -> j, high nibble -> j+16, both minus 8
        block_q4_0 b = {0};
        b.d = 0x4000;
        b.qs[0] = 0x1F;
        quant_dequant_row(GGML_TYPE_Q4_0, &b, y, 32);
        CHECK(y[0] == 14.0f && y[16] == -14.0f && y[1] == -16.0f);
    }
    { // Q4_K: d = 1, dmin = 0.5
        block_q4_K b = {0};
        b.d = 0x3C00;
        b.dmin = 0x3800;
        b.scales[0] = 2 | (1 << 6); // sc0 = 2; the top bits feed sc4's high bits (+16)
        b.scales[4] = 4;            // m0 = 4
        b.scales[1] = 3;            // sc1 = 3
        b.scales[5] = 1;            // m1 = 1
        b.scales[8] = 0x21;         // sc4 = 1 + 16 = 17, m4 = 2
        b.qs[0] = 0x35;             // y[0] low nibble 5 (sub-block 0), y[32] high nibble 3
        b.qs[64] = 0x07;            // chunk 2 low nibble -> y[128], sub-block 4
        quant_dequant_row(GGML_TYPE_Q4_K, &b, y, QK_K);
        CHECK(y[0] == 2.0f * 5 - 0.5f * 4);    // 8
        CHECK(y[32] == 3.0f * 3 - 0.5f * 1);   // 8.5
        CHECK(y[128] == 17.0f * 7 - 0.5f * 2); // 118
        CHECK(y[1] == -2.0f);                  // q = 0: -dmin·m0
    }
    { // Q6_K: d = 0.25, d stored last
        block_q6_K b = {0};
        b.d = 0x3400;
        b.scales[0] = 4;
        b.scales[2] = -2;
        b.scales[4] = 3;
        b.scales[8] = 1;
        b.ql[0] = 0x21;  // low nibbles: 1 -> y[0], 2 -> y[64]
        b.qh[0] = 0x0B;  // 2-bit highs: 3 -> y[0], 2 -> y[32], 0 -> y[64], 0 -> y[96]
        b.ql[32] = 0x0F; // 15 -> y[32]
        quant_dequant_row(GGML_TYPE_Q6_K, &b, y, QK_K);
        CHECK(y[0] == 0.25f * 4 * (49 - 32));   // 17
        CHECK(y[32] == 0.25f * -2 * (47 - 32)); // -7.5
        CHECK(y[64] == 0.25f * 3 * (2 - 32));   // -22.5
        CHECK(y[128] == 0.25f * 1 * -32);       // -8
        CHECK(y[96] == 0.0f);                   // scales[6] = 0
    }
    { // F16 / BF16 / F32
        uint16_t h[3] = {0x3C00, 0xC000, 0x0001};
        quant_dequant_row(GGML_TYPE_F16, h, y, 3);
        CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == ldexpf(1.0f, -24));
        uint16_t bf[2] = {0x3F80, 0xC040};
        quant_dequant_row(GGML_TYPE_BF16, bf, y, 2);
        CHECK(y[0] == 1.0f && y[1] == -3.0f);
    }
    { // every f16 bit pattern (fast path and tail) equals the portable conversion
        static uint16_t all[65536];
        static float out[65536];
        for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
        quant_dequant_row(GGML_TYPE_F16, all, out, 65535); // odd length: exercises the tail too
        int same = 1;
        for (int i = 0; i < 65535; i++) {
            float ref = f16_to_f32(all[i]);
            same &= (isnan(ref) && isnan(out[i])) || !memcmp(&ref, &out[i], 4);
        }
        CHECK(same);
    }
    CHECK(quant_supported(GGML_TYPE_Q4_K) && quant_supported(GGML_TYPE_Q5_K) &&
          !quant_supported(GGML_TYPE_Q8_1) && !quant_supported(GGML_TYPE_Q8_K));
    CHECK(quant_row_bytes(GGML_TYPE_Q6_K, 512) == 420 && quant_row_bytes(GGML_TYPE_Q8_0, 64) == 68);
    CHECK(quant_row_bytes(GGML_TYPE_Q2_K, 256) == 84 &&
          quant_row_bytes(GGML_TYPE_IQ4_XS, 512) == 272);
    CHECK(quant_row_bytes(GGML_TYPE_Q5_0, 64) == 44 && quant_row_bytes(GGML_TYPE_IQ4_NL, 64) == 36);
}

// The types added for K-quant mixes: bytes set by hand (a pattern over every field), each value
// checked against the format's formula written out per element index, plus a few values by hand.
// d, dmin and the sub-block scales are small powers of two and integers, so every value is exact.
static const int IQ4_LEVELS[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

static int all_equal(const float *y, const float *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        if (y[i] != want[i]) {
            fprintf(stderr, "%s: y[%d] = %.9g, expected %.9g\n", what, i, y[i], want[i]);
            return 0;
        }
    return 1;
}

static void test_hand_blocks_more(void) {
    float y[QK_K], want[QK_K];
    { // Q4_1: d = 0.5, m = -3; y = q·d + m, low nibbles first
        block_q4_1 b;
        b.d = 0x3800, b.m = 0xC200;
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j * 17 + 3);
        quant_dequant_row(GGML_TYPE_Q4_1, &b, y, 32);
        for (int i = 0; i < 32; i++) {
            int q = i < 16 ? b.qs[i] & 15 : b.qs[i - 16] >> 4;
            want[i] = (float)q * 0.5f - 3.0f;
        }
        CHECK(all_equal(y, want, 32, "Q4_1"));
        CHECK(y[0] == -1.5f && y[16] == -3.0f && y[1] == -1.0f && y[17] == -2.5f);
    }
    const uint8_t qh5[4] = {0xA5, 0x3C, 0x0F, 0xF0};
    { // Q5_0: d = -0.25; fifth bit of y[i] = bit i%8 of qh[i/8]; y = (q - 16)·d
        block_q5_0 b;
        b.d = 0xB400;
        memcpy(b.qh, qh5, 4);
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j * 29 + 7);
        quant_dequant_row(GGML_TYPE_Q5_0, &b, y, 32);
        for (int i = 0; i < 32; i++) {
            int nib = i < 16 ? b.qs[i] & 15 : b.qs[i - 16] >> 4, hb = (qh5[i / 8] >> (i % 8)) & 1;
            want[i] = (float)((nib | hb << 4) - 16) * -0.25f;
        }
        CHECK(all_equal(y, want, 32, "Q5_0"));
        CHECK(y[0] == -1.75f && y[31] == -2.75f); // q = 7+16, q = 11+16
    }
    { // Q5_1: d = 0.5, m = 1; y = q·d + m
        block_q5_1 b;
        b.d = 0x3800, b.m = 0x3C00;
        memcpy(b.qh, qh5, 4);
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j * 29 + 7);
        quant_dequant_row(GGML_TYPE_Q5_1, &b, y, 32);
        for (int i = 0; i < 32; i++) {
            int nib = i < 16 ? b.qs[i] & 15 : b.qs[i - 16] >> 4, hb = (qh5[i / 8] >> (i % 8)) & 1;
            want[i] = (float)(nib | hb << 4) * 0.5f + 1.0f;
        }
        CHECK(all_equal(y, want, 32, "Q5_1"));
        CHECK(y[0] == 12.5f && y[31] == 14.5f);
    }
    { // Q2_K: d = 0.5, dmin = 0.25; sub-block s = i/16 has scale scales[s]&15 and min scales[s]>>4;
      // weight i: byte 32·(i/128) + i%32, bits 2·((i%128)/32)
        block_q2_K b;
        b.d = 0x3800, b.dmin = 0x3400;
        for (int s = 0; s < 16; s++)
            b.scales[s] = (uint8_t)(((s + 3) & 15) | (((s * 7 + 1) & 15) << 4));
        for (int k = 0; k < 64; k++) b.qs[k] = (uint8_t)(k * 53 + 19);
        quant_dequant_row(GGML_TYPE_Q2_K, &b, y, QK_K);
        for (int i = 0; i < QK_K; i++) {
            int r = i % 128, q = (b.qs[32 * (i / 128) + r % 32] >> (2 * (r / 32))) & 3;
            int sc = b.scales[i / 16] & 15, m = b.scales[i / 16] >> 4;
            want[i] = 0.5f * (float)sc * (float)q - 0.25f * (float)m;
        }
        CHECK(all_equal(y, want, QK_K, "Q2_K"));
        CHECK(y[0] == 4.25f && y[16] == 4.0f && y[32] == -3.75f && y[161] == 11.25f);
    }
    { // Q3_K: d = 0.25; 6-bit scales packed by hand from sc6 (signed: sc6 - 32); weight i: low
      // 2 bits as Q2_K, high bit = bit i/32 of hmask[i%32], q = low - 4 when that bit is clear
        block_q3_K b;
        b.d = 0x3400;
        int sc6[16];
        memset(b.scales, 0, 12);
        for (int j = 0; j < 16; j++) {
            sc6[j] = (j * 11 + 5) % 64;
            if (j < 8)
                b.scales[j] |= (uint8_t)(sc6[j] & 15);
            else
                b.scales[j - 8] |= (uint8_t)((sc6[j] & 15) << 4);
            b.scales[8 + j % 4] |= (uint8_t)((sc6[j] >> 4) << (2 * (j / 4)));
        }
        for (int k = 0; k < 32; k++) b.hmask[k] = (uint8_t)(k * 41 + 3);
        for (int k = 0; k < 64; k++) b.qs[k] = (uint8_t)(k * 23 + 101);
        quant_dequant_row(GGML_TYPE_Q3_K, &b, y, QK_K);
        for (int i = 0; i < QK_K; i++) {
            int r = i % 128, lo = (b.qs[32 * (i / 128) + r % 32] >> (2 * (r / 32))) & 3;
            int hb = (b.hmask[i % 32] >> (i / 32)) & 1, q = lo - (hb ? 0 : 4);
            want[i] = 0.25f * (float)(sc6[i / 16] - 32) * (float)q;
        }
        CHECK(all_equal(y, want, QK_K, "Q3_K"));
        CHECK(y[0] == -6.75f && y[32] == -1.25f && y[64] == -8.5f);
    }
    { // Q5_K: d = 0.5, dmin = 0.25; 6-bit scales/mins packed by hand; weight i = 64c + 32h + l:
      // nibble h of qs[32c + l], fifth bit = bit 2c + h of qh[l]; sub-block i/32
        block_q5_K b;
        b.d = 0x3800, b.dmin = 0x3400;
        const int sc6[8] = {1, 63, 17, 32, 5, 48, 33, 60}, m6[8] = {0, 7, 63, 16, 40, 3, 21, 50};
        memset(b.scales, 0, 12);
        for (int j = 0; j < 8; j++) {
            if (j < 4) {
                b.scales[j] = (uint8_t)sc6[j];
                b.scales[j + 4] = (uint8_t)m6[j];
            } else {
                b.scales[j + 4] = (uint8_t)((sc6[j] & 15) | ((m6[j] & 15) << 4));
                b.scales[j - 4] |= (uint8_t)((sc6[j] >> 4) << 6);
                b.scales[j] |= (uint8_t)((m6[j] >> 4) << 6);
            }
        }
        for (int l = 0; l < 32; l++) b.qh[l] = (uint8_t)(l * 67 + 13);
        for (int k = 0; k < 128; k++) b.qs[k] = (uint8_t)(k * 31 + 9);
        quant_dequant_row(GGML_TYPE_Q5_K, &b, y, QK_K);
        for (int i = 0; i < QK_K; i++) {
            int c = i / 64, h = (i % 64) / 32, l = i % 32, s = i / 32;
            int nib = h ? b.qs[32 * c + l] >> 4 : b.qs[32 * c + l] & 15;
            int q = nib + 16 * ((b.qh[l] >> (2 * c + h)) & 1);
            want[i] = 0.5f * (float)sc6[s] * (float)q - 0.25f * (float)m6[s];
        }
        CHECK(all_equal(y, want, QK_K, "Q5_K"));
        CHECK(y[0] == 12.5f && y[32] == -1.75f && y[160] == 287.25f);
    }
    { // IQ4_NL: d = -0.5; low nibbles 15..0 and high nibbles 0..15 cover the table twice
        block_iq4_nl b;
        b.d = 0xB800;
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j * 16 + (15 - j));
        quant_dequant_row(GGML_TYPE_IQ4_NL, &b, y, 32);
        for (int i = 0; i < 16; i++) want[i] = -0.5f * (float)IQ4_LEVELS[15 - i];
        for (int i = 0; i < 16; i++) want[16 + i] = -0.5f * (float)IQ4_LEVELS[i];
        CHECK(all_equal(y, want, 32, "IQ4_NL"));
        CHECK(y[0] == -56.5f && y[16] == 63.5f && y[8] == 5.0f);
    }
    { // IQ4_XS: d = 0.25; 6-bit sub-block scales ls (y = d·(ls-32)·level) packed by hand
        block_iq4_xs b;
        b.d = 0x3400;
        const int ls6[8] = {0, 63, 32, 31, 33, 16, 47, 1};
        b.scales_h = 0;
        memset(b.scales_l, 0, 4);
        for (int s = 0; s < 8; s++) {
            b.scales_l[s / 2] |= (uint8_t)((ls6[s] & 15) << (4 * (s % 2)));
            b.scales_h |= (uint16_t)((ls6[s] >> 4) << (2 * s));
        }
        for (int k = 0; k < 128; k++) b.qs[k] = (uint8_t)(k * 7 + 5);
        quant_dequant_row(GGML_TYPE_IQ4_XS, &b, y, QK_K);
        for (int i = 0; i < QK_K; i++) {
            int s = i / 32, r = i % 32;
            int nib = r < 16 ? b.qs[16 * s + r] & 15 : b.qs[16 * s + r - 16] >> 4;
            want[i] = 0.25f * (float)(ls6[s] - 32) * (float)IQ4_LEVELS[nib];
        }
        CHECK(all_equal(y, want, QK_K, "IQ4_XS"));
        CHECK(y[0] == 280.0f && y[32] == -271.25f && y[80] == 0.0f);
    }
}

// ggml's own dequantization of random blocks of every quantized type (tests/data/quant_ref/,
// written by scripts/oracle/quant_refs.sh; the format is in scripts/oracle/quant_ref.c): every
// kernel variant this CPU runs gives the same bits; the fused dot agrees with the values.
static void test_ggml_blocks(void) {
    static const char *names[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",   "Q2_K",
                                  "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"};
    const char *dir = getenv("CTERP_TESTS_DIR") ? getenv("CTERP_TESTS_DIR") : "tests";
    int nv;
    const kern_variant *var = kern_variants(&nv);
    for (size_t t = 0; t < sizeof names / sizeof names[0]; t++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/data/quant_ref/%s.bin", dir, names[t]);
        FILE *f = fopen(path, "rb");
        CHECK_MSG(f != NULL, "%s: cannot open", path);
        if (!f) continue;
        char magic[4];
        uint32_t hdr[3];
        int ok =
            fread(magic, 1, 4, f) == 4 && !memcmp(magic, "QREF", 4) && fread(hdr, 4, 3, f) == 3;
        uint32_t type = hdr[0], nb = hdr[1], qk = hdr[2];
        ok = ok && !strcmp(gguf_type_name(type), names[t]) && qk == gguf_type_block(type) &&
             nb <= 64;
        CHECK_MSG(ok, "%s: bad header", path);
        if (!ok) {
            fclose(f);
            continue;
        }
        size_t bytes = quant_row_bytes(type, (int64_t)nb * qk), n = (size_t)nb * qk;
        uint8_t *blocks = malloc(bytes);
        float *want = malloc(n * 4), *y = malloc(n * 4), *v = malloc(n * 4);
        ok = fread(blocks, 1, bytes, f) == bytes && fread(want, 4, n, f) == n && fgetc(f) == EOF;
        fclose(f);
        CHECK_MSG(ok, "%s: size", path);
        double ref = 0, mag = 0;
        for (size_t i = 0; ok && i < n; i++) {
            v[i] = (float)((int)(i % 7) - 3) / 4;
            ref += (double)want[i] * v[i], mag += fabs((double)want[i] * v[i]);
        }
        for (int k = 0; ok && k < nv; k++) {
            if (!var[k].runs_here()) continue;
            var[k].quant->dequant_row(type, blocks, y, (int64_t)n);
            CHECK_MSG(!memcmp(y, want, n * 4), "%s under %s: not ggml's bits", names[t],
                      var[k].name);
            float dot = var[k].quant->dot_row(type, blocks, v, (int64_t)n);
            CHECK_MSG(fabs(dot - ref) <= 1e-6 * mag, "%s under %s: dot %.9g vs %.9g", names[t],
                      var[k].name, dot, ref);
        }
        free(blocks), free(want), free(y), free(v);
    }
}

// quant_type_names lists exactly the types quant_supported accepts, by gguf_type_name
static void test_type_names(void) {
    const char *list = quant_type_names();
    int listed = 0, supported = 0;
    for (const char *p = list; *p; p++) listed += *p == ',';
    listed++;
    for (uint32_t t = 0; t < GGML_TYPE_COUNT + 5; t++) {
        char tok[40];
        snprintf(tok, sizeof tok, ", %s,", gguf_type_name(t));
        char padded[256];
        snprintf(padded, sizeof padded, ", %s,", list);
        int in_list = strstr(padded, tok) != NULL;
        CHECK_MSG(in_list == quant_supported(t), "%s: listed %d, supported %d", gguf_type_name(t),
                  in_list, quant_supported(t));
        supported += quant_supported(t);
    }
    CHECK(listed == supported && supported == 15);
}

// Round trip through each reference quantizer: relative RMS error within the type's budget, and
// the fused dot equal to the dot of the dequantized row. The budget of a type ggml has is ggml's
// own error on the same row (scripts/oracle/quant_refs.sh prints it: ggml_quantize_chunk without
// an importance matrix, as llama-quantize without --imatrix) times 1.05.
static void test_roundtrip(void) {
    static const struct {
        uint32_t type;
        double ggml;        // ggml's relative rms error on this row (0: not measured)
        double max_rel_rms; // when ggml is 0
    } cases[] = {{GGML_TYPE_F32, 0, 0},          {GGML_TYPE_F16, 0, 1e-3},
                 {GGML_TYPE_BF16, 0, 5e-3},      {GGML_TYPE_Q8_0, 0.006157, 0},
                 {GGML_TYPE_Q4_0, 0.096626, 0},  {GGML_TYPE_Q4_1, 0.082017, 0},
                 {GGML_TYPE_Q5_0, 0.047280, 0},  {GGML_TYPE_Q5_1, 0.040926, 0},
                 {GGML_TYPE_Q2_K, 0.309065, 0},  {GGML_TYPE_Q3_K, 0.157794, 0},
                 {GGML_TYPE_Q4_K, 0.073791, 0},  {GGML_TYPE_Q5_K, 0.036979, 0},
                 {GGML_TYPE_Q6_K, 0.020174, 0},  {GGML_TYPE_IQ4_NL, 0.080513, 0},
                 {GGML_TYPE_IQ4_XS, 0.083121, 0}};
    static float x[QUANT_RT_N], y[QUANT_RT_N], v[QUANT_RT_N];
    static uint8_t q[QUANT_RT_N * 4];
    enum { N = QUANT_RT_N };
    quant_rt_data(x, v);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t t = cases[c].type;
        quant_quantize_row(t, x, q, N);
        quant_dequant_row(t, q, y, N);
        double err = quant_rt_error(x, y);
        double bound = cases[c].ggml ? 1.05 * cases[c].ggml : cases[c].max_rel_rms;
        if (getenv("VERBOSE"))
            printf("%-6s rel rms %.6f (ggml %.6f, bound %.6f)\n", gguf_type_name(t), err,
                   cases[c].ggml, bound);
        CHECK_MSG(err <= bound, "%s: relative rms error %.4g > %.4g", gguf_type_name(t), err,
                  bound);
        double ref = 0;
        for (int i = 0; i < N; i++) ref += (double)y[i] * v[i];
        float dot = quant_dot_row(t, q, v, N);
        CHECK_MSG(fabs(dot - ref) <= 1e-4 * (1 + fabs(ref)), "%s: dot %.7g vs %.7g",
                  gguf_type_name(t), dot, ref);
    }
    // zero rows quantize to zero (no division by a zero scale)
    memset(x, 0, sizeof x);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        quant_quantize_row(cases[c].type, x, q, N);
        quant_dequant_row(cases[c].type, q, y, N);
        int zero = 1;
        for (int i = 0; i < N; i++) zero &= y[i] == 0.0f;
        CHECK_MSG(zero, "%s zero row", gguf_type_name(cases[c].type));
    }
    // f16 rows of a length that is not a multiple of 256 in the fused dot
    for (int i = 0; i < 300; i++) x[i] = (float)i / 64;
    quant_quantize_row(GGML_TYPE_F16, x, q, 300);
    double ref = 0;
    for (int i = 0; i < 300; i++) ref += (double)x[i] * v[i];
    CHECK_CLOSE(quant_dot_row(GGML_TYPE_F16, q, v, 300), ref, 1e-3, 1e-5);
}

// The integer dots (quant_xq_prepare, quant_dot_xq) against their naive twin: the reference
// dequantization dotted in f64 with x~ (x as prepared: sx·X), for every length class of each type;
// x~ against x; the dot against the f32 quant_dot_row; extreme values, zeros and NaN.
static void test_xq(void) {
    enum { NMAX = 256 * 12 };
    static float x[NMAX], y[NMAX];
    static uint8_t row[NMAX * 2], buf[4 * NMAX + 512];
    rng_t r;
    rng_seed(&r, 21);
    for (int i = 0; i < NMAX; i++) x[i] = rng_normal(&r);
    for (int i = 64; i < 96; i++) x[i] *= 1e-3f;    // a block 1000x smaller
    x[200] = 40.0f;                                 // an outlier
    for (int i = 128; i < 160; i++) x[i] = 0.0f;    // a zero block
    for (int i = 320; i < 352; i++) x[i] *= 1e-40f; // subnormals
    double worst_x = 0, worst_dot = 0, worst_f32 = 0;
    int clamped = 0;
    for (size_t ti = 0; ti < sizeof XQ_TYPES / sizeof XQ_TYPES[0]; ti++) {
        const uint32_t t = XQ_TYPES[ti];
        int64_t ns[16];
        const int nc = xq_lengths(t, ns);
        for (int c = 0; c < nc; c++) {
            const int64_t n = ns[c];
            CHECK(quant_xq_bytes(n) <= (size_t)(3.25 * (double)n) + 384 &&
                  quant_xq_bytes(n) <= sizeof buf);
            quant_xq q;
            quant_xq_prepare(&q, buf + c, x, n); // any alignment
            CHECK(q.xh && q.n == n && q.x == x);
            double ref = 0, mag = 0, reff = 0, magf = 0, xbound = 0;
            xq_random_row(t, row, n, 100 * ti + (uint64_t)c);
            quant_dequant_row(t, row, y, n);
            for (int64_t b = 0; b < n / 32; b++) {
                float amax = 0;
                int32_t sum = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
                for (int j = 0; j < 32; j++) {
                    int64_t i = 32 * b + j;
                    int32_t X = 256 * q.xh[i] + q.xl[i];
                    double xt = (double)q.sx[b] * X, err = fabs(xt - x[i]);
                    // (a subnormal sx is coarser: its own rounding, up to 2^-150, times |X|)
                    CHECK_MSG(err <= amax / 32512.0 * 1.001 + 32512 * 0x1p-150,
                              "x~[%lld] = %.9g vs %.9g", (long long)i, xt, x[i]);
                    if (amax > 1e-30f && err / amax > worst_x) worst_x = err / amax;
                    clamped += abs(q.xl[i]) == 127;
                    sum += X;
                    ref += (double)y[i] * xt, mag += fabs((double)y[i] * xt);
                    xbound += fabs((double)y[i]) * amax / 32512.0;
                    reff += (double)y[i] * x[i], magf += fabs((double)y[i] * x[i]);
                }
                for (int k = 0; k < 8; k++) {
                    int64_t i = 32 * b + 4 * k;
                    int32_t s4 = 0;
                    for (int j = 0; j < 4; j++) s4 += 256 * q.xh[i + j] + q.xl[i + j];
                    CHECK(q.xs4[8 * b + k] == s4);
                }
                CHECK(q.xsum[b] == q.sx[b] * (float)sum && q.sx[b] == amax / 32512.0f);
            }
            const float got = quant_dot_xq(t, row, &q), f32 = quant_dot_row(t, row, x, n);
            CHECK_MSG(fabs(got - ref) <= 1e-6 * mag, "%s n=%lld: %.9g vs naive %.9g (mag %.3g)",
                      gguf_type_name(t), (long long)n, got, ref, mag);
            CHECK_MSG(fabs(got - f32) <= xbound + 2e-6 * magf,
                      "%s n=%lld: %.9g vs f32 dot %.9g (bound %.3g)", gguf_type_name(t),
                      (long long)n, got, f32, xbound + 2e-6 * magf);
            if (fabs(got - ref) / mag > worst_dot) worst_dot = fabs(got - ref) / mag;
            if (fabs(got - reff) / magf > worst_f32) worst_f32 = fabs(got - reff) / magf;
        }
        // a block holding NaN or inf makes the dot NaN, as the f32 dot
        float keep = x[40];
        x[40] = NAN;
        quant_xq q;
        quant_xq_prepare(&q, buf, x, 256);
        CHECK_MSG(isnan(quant_dot_xq(t, row, &q)), "%s NaN", gguf_type_name(t));
        x[40] = INFINITY;
        quant_xq_prepare(&q, buf, x, 256);
        CHECK_MSG(isnan(quant_dot_xq(t, row, &q)), "%s inf", gguf_type_name(t));
        x[40] = keep;
    }
    if (getenv("VERBOSE"))
        printf("xq: |x~ - x| <= %.3g amax (%d of the xl at ±127); dot vs naive %.3g, vs f64 x %.3g "
               "(of sum |w x|)\n",
               worst_x, clamped, worst_dot, worst_f32);
    { // the largest lane sums: Q8_0 weights -128 against x = -1 (X = -32512): 4·128·32512 < 2^24
        static block_q8_0 b8[4];
        for (int b = 0; b < 4; b++) {
            b8[b].d = 0x7BFF; // 65504
            memset(b8[b].qs, 0x80, 32);
        }
        for (int i = 0; i < 128; i++) x[i] = -1.0f;
        quant_xq q;
        quant_xq_prepare(&q, buf, x, 128);
        CHECK_CLOSE(quant_dot_xq(GGML_TYPE_Q8_0, b8, &q), 128.0 * 65504 * 128, 0, 1e-6);
    }
    // types without an integer kernel, and rows whose n is not a multiple of 32: the f32 dot
    for (int i = 0; i < 300; i++) x[i] = (float)i / 64;
    quant_xq q;
    quant_xq_prepare(&q, buf, x, 300);
    CHECK(q.xh == NULL && quant_xq_bytes(300) == 0);
    CHECK(quant_dot_xq(GGML_TYPE_F32, x, &q) == quant_dot_row(GGML_TYPE_F32, x, x, 300));
    quant_quantize_row(GGML_TYPE_Q2_K, x, row, 256);
    quant_xq_prepare(&q, buf, x, 256);
    CHECK(quant_dot_xq(GGML_TYPE_Q2_K, row, &q) == quant_dot_row(GGML_TYPE_Q2_K, row, x, 256));
    // no buffer: x alone, which those types use
    quant_xq_prepare(&q, NULL, x, 256);
    CHECK(q.xh == NULL && q.x == x && q.n == 256 && !quant_has_xq(GGML_TYPE_Q2_K) &&
          quant_has_xq(GGML_TYPE_Q5_K) && quant_has_xq(GGML_TYPE_Q6_K));
    CHECK(quant_dot_xq(GGML_TYPE_Q2_K, row, &q) == quant_dot_row(GGML_TYPE_Q2_K, row, x, 256));
}

// The matvec (quant_matvec_xq): every row the bits of quant_dot_xq on it, for row counts that
// exercise each kernel's runs of rows and its tail (1..9, 16, 17: groups of 2 and 4 and the rows
// after them), rows at an odd stride (a GGUF row may start at any byte), every length class (rows
// under 1 KB go 4 or 2 at a time, of 1-2 KB one at a time) and rows of 4096 (4 or 2 at a time); the
// types with integer kernels, F16 and BF16 (their own multi-row kernel), F32 (its own multi-row
// kernel on 4-byte aligned rows) and Q2_K (the f32 dot); each way of reading the rows
// (QUANT_MV_AUTO, ONE and SIDE: the bits must not depend on it). And F16's and BF16's dots:
// exactly dot_f32 of the dequantized row (quant_dot_row of F32 bits), for lengths around each of
// its steps (32, 8, 1); F32's matvec on 5 aligned rows of those lengths, each row dot_f32's bits.
static void test_matvec(void) {
    enum { NMAX = 256 * 16, RMAX = 17 };
    static float x[NMAX], w[NMAX], deq[NMAX], y[RMAX];
    static uint8_t buf[4 * NMAX + 512];
    uint8_t *W = malloc((size_t)RMAX * (NMAX * 4 + 8));
    CHECK(quant_xq_bytes(NMAX) + 3 <= sizeof buf);
    rng_t r;
    rng_seed(&r, 31);
    for (int i = 0; i < NMAX; i++) x[i] = rng_normal(&r);
    x[77] = -25.0f;
    static const uint32_t types[] = {GGML_TYPE_Q8_0,   GGML_TYPE_Q4_0, GGML_TYPE_Q4_K,
                                     GGML_TYPE_Q6_K,   GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL,
                                     GGML_TYPE_IQ4_XS, GGML_TYPE_Q3_K, GGML_TYPE_F16,
                                     GGML_TYPE_F32,    GGML_TYPE_Q2_K, GGML_TYPE_BF16};
    static const int row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17};
    int checked = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t t = types[ti];
        int64_t ns[16];
        const int half = t == GGML_TYPE_F16 || t == GGML_TYPE_BF16 || t == GGML_TYPE_F32;
        const int nc = xq_lengths(t == GGML_TYPE_Q2_K ? GGML_TYPE_Q4_K
                                  : half              ? GGML_TYPE_Q8_0
                                                      : t,
                                  ns);
        ns[nc] = NMAX; // rows of 4096: Q4_K's too are long enough for 4 rows at a time
        for (int c = 0; c <= nc; c++) {
            const int64_t n = ns[c];
            // an odd stride: rows at any byte; F32's every other length at a stride of 4 bytes
            // (its multi-row kernel; rows off 4-byte alignment take the one-row dot)
            const size_t rb = quant_row_bytes(t, n) + (t == GGML_TYPE_F32 && c % 2 ? 8 : 7);
            for (int i = 0; i < RMAX; i++) {
                uint8_t *row = W + (size_t)i * rb;
                if (quant_has_xq(t)) {
                    xq_random_row(t, row, n, 1000 * ti + 37 * (uint64_t)c + (uint64_t)i);
                } else {
                    for (int64_t j = 0; j < n; j++) w[j] = 0.05f * rng_normal(&r);
                    quant_quantize_row(t, w, row, n);
                }
            }
            quant_xq q;
            quant_xq_prepare(&q, buf + 3, x, n);
            for (size_t k = 0; k < sizeof row_counts / sizeof row_counts[0]; k++) {
                const int rows = row_counts[k];
                const int off = rows == RMAX ? 0 : rows % 3; // start at other rows too
                for (int group = QUANT_MV_AUTO; group <= QUANT_MV_SIDE; group++) {
                    for (int i = 0; i < RMAX; i++) y[i] = -1.0f;
                    quant_matvec_xq(y, t, W + (size_t)off * rb, rb, rows, &q, group);
                    for (int i = 0; i < rows; i++) {
                        const float one = quant_dot_xq(t, W + (size_t)(off + i) * rb, &q);
                        CHECK_MSG(memcmp(&one, &y[i], 4) == 0,
                                  "%s matvec n=%lld rows=%d group %d row %d: %.9g vs dot_xq %.9g",
                                  gguf_type_name(t), (long long)n, rows, group, i, y[i], one);
                        checked++;
                    }
                }
            }
        }
    }
    // F16's and BF16's dots are dot_f32 of the dequantized row, to the bit; and within 1e-6 of
    // Σ|w·x| of f64
    static const int64_t lens[] = {1,  7,  8,  9,  31,  32,  33,  39,  40,
                                   41, 63, 64, 65, 100, 255, 256, 257, 2053};
    for (size_t k = 0; k < 2 * sizeof lens / sizeof lens[0]; k++) {
        const int64_t n = lens[k / 2];
        const uint32_t ht = k % 2 ? GGML_TYPE_BF16 : GGML_TYPE_F16;
        for (int64_t j = 0; j < n; j++) w[j] = rng_normal(&r);
        quant_quantize_row(ht, w, W + 1, n); // at an odd address
        quant_dequant_row(ht, W + 1, deq, n);
        const float got = quant_dot_row(ht, W + 1, x, n);
        const float f32 = quant_dot_row(GGML_TYPE_F32, deq, x, n);
        double ref = 0, mag = 0;
        for (int64_t j = 0; j < n; j++)
            ref += (double)deq[j] * x[j], mag += fabs((double)deq[j] * x[j]);
        CHECK_MSG(memcmp(&got, &f32, 4) == 0, "%s dot n=%lld: %.9g vs dot_f32 %.9g",
                  gguf_type_name(ht), (long long)n, got, f32);
        CHECK_MSG(fabs(got - ref) <= 1e-6 * mag, "%s dot n=%lld: %.9g vs f64 %.9g",
                  gguf_type_name(ht), (long long)n, got, ref);
        float *F = (float *)(void *)W; // 5 rows of n f32 (a run of 4 and one), stride n + 1
        for (int64_t j = 0; j < 5 * (n + 1); j++) F[j] = rng_normal(&r);
        quant_xq q;
        quant_xq_prepare(&q, NULL, x, n);
        quant_matvec_xq(y, GGML_TYPE_F32, F, (size_t)(n + 1) * 4, 5, &q, QUANT_MV_AUTO);
        for (int i = 0; i < 5; i++) {
            const float one = quant_dot_row(GGML_TYPE_F32, F + i * (n + 1), x, n);
            CHECK_MSG(memcmp(&one, &y[i], 4) == 0, "F32 matvec n=%lld row %d: %.9g vs %.9g",
                      (long long)n, i, y[i], one);
        }
    }
    CHECK(checked > 1000);
    free(W);
}

int main(void) {
    test_hand_blocks();
    test_hand_blocks_more();
    test_ggml_blocks();
    test_type_names();
    test_roundtrip();
    test_xq();
    test_matvec();
    return test_done();
}
