// Fuzz target: dataset bytes -> the readers (.txt lines, .jsonl with a text field, .bin uint16
// and .u32.bin uint32 token streams) through cterp_dataset_open/next/fingerprint and through
// cterp_windows with a tokenizer (stories260K's when the test data is there, else a synthetic
// SentencePiece vocabulary): every window's ids inside the vocabulary, its mask 0/1, and the
// windows after a rewind the same as before. The first two input bytes pick the kind and the
// options (skip_malformed, text field, context size, BOS, separator, concat, special mask); the
// rest is the file.
#include "cterp/data.h"
#include "cterp/tokenizer.h"
#include "fuzz.h"
#include "synth_model.h"

enum { MAX_WINDOWS = 64, MAX_T = 24 };
static const char *const ext[4] = {".txt", ".jsonl", ".bin", ".u32.bin"};
static char *paths[4];
static cterp_tokenizer *tok;

static void seed(const char *name, int kind, int flags, int ctx, const void *body, size_t n) {
    uint8_t buf[2048];
    if (n + 2 > sizeof buf) abort();
    buf[0] = (uint8_t)(kind | flags), buf[1] = (uint8_t)ctx;
    memcpy(buf + 2, body, n);
    fuzz_seed(name, buf, n + 2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    for (int k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "data%s", ext[k]);
        paths[k] = fuzz_path(name);
    }
    const char *td = fuzz_testdata();
    char *p = td ? file_join(td, "models/stories260K.gguf") : NULL;
    if (!p || !file_exists(p)) { // a synthetic SentencePiece vocabulary
        free(p);
        p = fuzz_path("spm.gguf");
        gguf_writer *w = gguf_writer_new(0);
        synth_vocab_spm(w);
        if (gguf_writer_write(w, p)) abort();
        gguf_writer_free(w);
    }
    if (cterp_tokenizer_open(&tok, p)) {
        fprintf(stderr, "fuzz_dataset: %s\n", cterp_last_error());
        abort();
    }
    free(p);
    if (fuzz_seed_dir()) {
        const char txt[] =
            "Once upon a time there was a cat.\n\nThe cat sat on the mat.\nA dog \xc3\xa9t\xc3\xa9 "
            "\xf0\x9f\x98\x80 ran.\r\nLast line without newline";
        seed("lines.txt", 0, 0x18, 7, txt, sizeof txt - 1);
        seed("lines_nocat.txt", 0, 0x20, 3, txt, sizeof txt - 1);
        const char jl[] =
            "{\"text\": \"Once upon a time\"}\n{\"text\": \"a \\\"quoted\\\" \\u00e9 "
            "\\ud83d\\ude00 "
            "line\\n\", \"id\": 3}\n\n{\"content\": \"other field\"}\n{\"text\": 5}\nnot json\n"
            "{\"text\": \"after a bad line\"}\n";
        seed("text.jsonl", 1, 0x1c, 9, jl, sizeof jl - 1);
        seed("strict.jsonl", 1, 0x18, 5, jl, sizeof jl - 1);
        seed("content.jsonl", 1, 0x1c, 9 | 0x80, jl, sizeof jl - 1);
        uint16_t t16[40];
        for (int i = 0; i < 40; i++) t16[i] = (uint16_t)(i * 7 % 500);
        seed("tokens.bin", 2, 0x18, 8, t16, sizeof t16);
        seed("tokens_eos.bin", 2, 0x58, 5, t16, sizeof t16);
        uint32_t t32[30];
        for (int i = 0; i < 30; i++) t32[i] = (uint32_t)(i * 13 % 500);
        seed("tokens.u32.bin", 3, 0x38, 6, t32, sizeof t32);
        seed("empty.txt", 0, 0x18, 4, "", 0);
    }
    return 0;
}

// Reads up to MAX_WINDOWS windows; returns how many, or -1 on an error. Checks each.
static int read_windows(cterp_windows *w, int T, int32_t *ids, uint8_t *mask) {
    const int32_t V = cterp_tokenizer_n_vocab(tok);
    int n = 0;
    for (; n < MAX_WINDOWS; n++) {
        int eof = 0;
        if (cterp_windows_next(w, ids + (size_t)n * T, mask + (size_t)n * T, &eof)) return -1;
        if (eof) break;
        for (int i = 0; i < T; i++) {
            const int32_t id = ids[(size_t)n * T + i];
            if (id < 0 || id >= V || mask[(size_t)n * T + i] > 1) {
                fprintf(stderr, "window %d position %d: id %d (vocabulary %d), mask %d\n", n, i, id,
                        V, mask[(size_t)n * T + i]);
                abort();
            }
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const int kind = data[0] & 3;
    const char *path = paths[kind];
    fuzz_write(path, data + 2, size - 2);
    cterp_dataset_opts o;
    cterp_dataset_opts_default(&o);
    o.skip_malformed = (data[0] >> 2) & 1;
    o.text_field = data[1] & 0x80 ? "content" : NULL;
    cterp_window_config c;
    cterp_window_config_default(&c);
    c.context_size = 1 + (data[1] & 0x7f) % MAX_T;
    c.concat = (data[0] >> 3) & 1;
    c.prepend_bos = (data[0] >> 4) & 1;
    c.exclude_special = (data[0] >> 5) & 1;
    static const int32_t seps[4] = {CTERP_SEP_BOS, CTERP_SEP_EOS, CTERP_SEP_NONE, 5};
    c.separator = seps[data[0] >> 6];

    // the documents, twice (a rewind serves the same), and the fingerprint
    cterp_dataset *d;
    cterp_status s = cterp_dataset_open(&d, path, &o);
    fuzz_note("dataset", s);
    if (!s) {
        size_t total[2] = {0, 0};
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < 1000; i++) {
                cterp_document doc;
                int eof = 0;
                if (cterp_dataset_next(d, &doc, &eof) || eof) break;
                total[pass] += doc.text ? doc.len : doc.n_tokens;
            }
            if (cterp_dataset_rewind(d)) break;
        }
        if (total[0] != total[1]) abort();
        uint64_t h;
        int64_t bytes;
        fuzz_note("fingerprint", cterp_dataset_fingerprint(d, &h, &bytes));
        cterp_dataset_close(d);
    }

    // windows, then the same windows again after a rewind
    cterp_windows *w;
    s = cterp_windows_open(&w, path, &o, tok, &c);
    fuzz_note("windows", s);
    if (s) return 0;
    const int T = cterp_windows_context_size(w);
    if (T != c.context_size) abort();
    static int32_t ids[2][MAX_WINDOWS * MAX_T];
    static uint8_t mask[2][MAX_WINDOWS * MAX_T];
    int n0 = read_windows(w, T, ids[0], mask[0]);
    if (n0 > 0 && !cterp_windows_rewind(w)) {
        int n1 = read_windows(w, T, ids[1], mask[1]);
        if (n1 != n0 || memcmp(ids[0], ids[1], (size_t)n0 * T * 4) ||
            memcmp(mask[0], mask[1], (size_t)n0 * T)) {
            fprintf(stderr, "fuzz_dataset: %d windows, then %d after a rewind, or other ones\n", n0,
                    n1);
            abort();
        }
    }
    cterp_windows_close(w);
    return 0;
}
