// Fuzz target: arbitrary bytes -> cterp_tokenize and cterp_detokenize under each tokenizer kind:
// SentencePiece (stories260K's 512-token vocabulary and llama's 32000 from the shared test data,
// plus a synthetic one), GPT-2 byte-level BPE (gpt-2's vocabulary from the test data) and the
// llama-bpe pre-tokenizer (a synthetic vocabulary). Byte-level BPE must give the bytes back.
#include "cterp/tokenizer.h"
#include "fuzz.h"
#include "synth_model.h"

enum { MAX_TOK = 8 };
static cterp_tokenizer *toks[MAX_TOK];
static int n_toks;

static void add_file(const char *path) {
    cterp_tokenizer *t;
    if (!file_exists(path)) return;
    if (cterp_tokenizer_open(&t, path)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", cterp_last_error());
        abort();
    }
    toks[n_toks++] = t;
}

static void add_synthetic(const char *name, const char *pre) {
    char *p = fuzz_path(name);
    gguf_writer *w = gguf_writer_new(0);
    if (pre) synth_vocab_bpe(w, pre);
    else synth_vocab_spm(w);
    if (gguf_writer_write(w, p)) abort();
    gguf_writer_free(w);
    add_file(p);
    free(p);
}

// The texts of llama.cpp's tokenizer test file, one seed each.
static void seed_texts(const char *inp) {
    char *text;
    size_t len;
    if (file_read_all(inp, &text, &len)) return;
    const char *sep = "\n__ggml_vocab_test__\n";
    int k = 0;
    for (char *p = text, *end; (end = strstr(p, sep)); p = end + strlen(sep)) {
        char name[32];
        snprintf(name, sizeof name, "vocab_test_%02d.txt", k++);
        fuzz_seed(name, p, (size_t)(end - p));
    }
    free(text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    const char *td = fuzz_testdata();
    if (td) {
        static const char *const files[] = {"models/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf",
                                            "vocab/ggml-vocab-gpt-2.gguf"};
        for (int i = 0; i < 3; i++) {
            char *p = file_join(td, files[i]);
            add_file(p);
            free(p);
        }
        char *inp = file_join(td, "vocab/ggml-vocab-llama-spm.gguf.inp");
        if (fuzz_seed_dir()) seed_texts(inp);
        free(inp);
    } else {
        fprintf(stderr, "fuzz_tokenizer: no shared test data: the synthetic vocabularies only\n");
    }
    add_synthetic("spm.gguf", NULL);
    add_synthetic("gpt2.gguf", "gpt-2");
    add_synthetic("llama-bpe.gguf", "llama-bpe");
    static const char *const extra[] = {"Hello 12345 <|bos|> Hello", "\xff\xfe \xc3\x28 \xed\xa0\x80x",
                                        "\xe2\x96\x81\xe2\x96\x81  \t\n\n  ", "<s></s><unk>"};
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "extra_%d.txt", i);
        fuzz_seed(name, extra[i], strlen(extra[i]));
    }
    fprintf(stderr, "fuzz_tokenizer: %d tokenizers\n", n_toks);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    for (int k = 0; k < n_toks; k++) {
        const cterp_tokenizer *t = toks[k];
        int bpe = !strcmp(cterp_tokenizer_kind(t), "gpt2");
        for (int special = 0; special < 2; special++) {
            int32_t *ids;
            size_t n;
            if (cterp_tokenize(t, text, size, special, special, &ids, &n)) continue;
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= cterp_tokenizer_n_vocab(t)) abort();
            char *back;
            size_t len;
            if (cterp_detokenize(t, ids, n, special, &back, &len)) abort();
            if (bpe && !special && (len != size || memcmp(back, data, size))) {
                fprintf(stderr, "%s tokenizer %d: the bytes do not come back\n",
                        cterp_tokenizer_kind(t), k);
                abort();
            }
            free(back);
            free(ids);
        }
    }
    return 0;
}
