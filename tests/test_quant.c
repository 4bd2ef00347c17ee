// Dequantization per block against values computed by hand from the format description, the
// reference quantizers' round-trip error per type, and the fused dot against dequant + loop.
#include "core/half.h"
#include "core/rng.h"
#include "model/quant.h"
#include "test.h"

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
    CHECK(quant_supported(GGML_TYPE_Q4_K) && !quant_supported(GGML_TYPE_Q5_K));
    CHECK(quant_row_bytes(GGML_TYPE_Q6_K, 512) == 420 && quant_row_bytes(GGML_TYPE_Q8_0, 64) == 68);
}

// Round trip through each reference quantizer: relative RMS error within the type's budget, and
// the fused dot equal to the dot of the dequantized row.
static void test_roundtrip(void) {
    static const struct {
        uint32_t type;
        double max_rel_rms;
    } cases[] = {{GGML_TYPE_F32, 0},     {GGML_TYPE_F16, 1e-3},  {GGML_TYPE_BF16, 5e-3},
                 {GGML_TYPE_Q8_0, 0.01}, {GGML_TYPE_Q4_0, 0.12}, {GGML_TYPE_Q4_K, 0.12},
                 {GGML_TYPE_Q6_K, 0.035}};
    enum { N = 1024 };
    static float x[N], y[N], v[N];
    static uint8_t q[N * 4];
    rng_t r;
    rng_seed(&r, 1);
    for (int i = 0; i < N; i++)
        x[i] = rng_normal(&r) * (i < 256 ? 0.01f : 1.0f), v[i] = rng_normal(&r);
    x[700] = 6.0f; // an outlier inside one block
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint32_t t = cases[c].type;
        quant_quantize_row(t, x, q, N);
        quant_dequant_row(t, q, y, N);
        // error per 256-element segment relative to that segment's RMS (scales differ 100x)
        double worst = 0;
        for (int s = 0; s < N / 256; s++) {
            double e = 0, ref = 0;
            for (int i = 256 * s; i < 256 * (s + 1); i++)
                e += (double)(y[i] - x[i]) * (y[i] - x[i]), ref += (double)x[i] * x[i];
            double rel = sqrt(e / ref);
            if (rel > worst) worst = rel;
        }
        if (getenv("VERBOSE")) printf("%s rel rms %.4g\n", gguf_type_name(t), worst);
        CHECK_MSG(worst <= cases[c].max_rel_rms, "%s: relative rms error %.4g > %.4g",
                  gguf_type_name(t), worst, cases[c].max_rel_rms);
        double ref = 0;
        for (int i = 0; i < N; i++) ref += (double)y[i] * v[i];
        float dot = quant_dot_row(t, q, v, N);
        CHECK_MSG(fabs(dot - ref) <= 1e-4 * (1 + fabs(ref)), "%s: dot %.7g vs %.7g",
                  gguf_type_name(t), dot, ref);
    }
    // zero rows quantize to zero (no division by a zero scale)
    memset(x, 0, sizeof x);
    uint32_t qt[4] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int c = 0; c < 4; c++) {
        quant_quantize_row(qt[c], x, q, N);
        quant_dequant_row(qt[c], q, y, N);
        int zero = 1;
        for (int i = 0; i < N; i++) zero &= y[i] == 0.0f;
        CHECK_MSG(zero, "%s zero row", gguf_type_name(qt[c]));
    }
    // f16 rows of a length that is not a multiple of 256 in the fused dot
    for (int i = 0; i < 300; i++) x[i] = (float)i / 64;
    quant_quantize_row(GGML_TYPE_F16, x, q, 300);
    double ref = 0;
    for (int i = 0; i < 300; i++) ref += (double)x[i] * v[i];
    CHECK_CLOSE(quant_dot_row(GGML_TYPE_F16, q, v, 300), ref, 1e-3, 1e-5);
}

int main(void) {
    test_hand_blocks();
    test_roundtrip();
    return test_done();
}
