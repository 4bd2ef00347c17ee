// GPT-2's byte-level BPE alphabet (bytes_to_unicode) for the synthetic vocabularies the tests and
// benchmarks write: byte b's token as UTF-8.
#ifndef CTERP_TESTS_SYNTH_BYTES_H
#define CTERP_TESTS_SYNTH_BYTES_H

// out (4 bytes) <- the token of byte b (0..255): b itself where printable, else 256 + its index
// among the unprintable bytes (0-32, 127-160, 173), as a NUL-terminated UTF-8 string
static inline void synth_byte_token(int b, char out[4]) {
    const int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const unsigned cp =
        printable ? (unsigned)b : 256u + (unsigned)(b < 33 ? b : b <= 160 ? b - 94 : 67);
    if (cp < 0x80)
        out[0] = (char)cp, out[1] = 0;
    else
        out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
}

#endif
