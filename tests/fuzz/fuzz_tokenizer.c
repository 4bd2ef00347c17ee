// Fuzz target: arbitrary bytes -> cterp_tokenize and cterp_detokenize under each tokenizer kind:
// SentencePiece (stories260K's 512-token vocabulary and llama's 32000 from the shared test data,
// plus synthetic ones, one with Gemma's settings), GPT-2 byte-level BPE (gpt-2's and falcon's
// vocabularies from the test data), synthetic BPE vocabularies of pre-tokenizer types whose
// regexes differ in kind (llama-bpe, qwen2, deepseek's literal classes, tekken's lookaheads,
// superbpe's empty matches, exaone-moe's nested repeats, chameleon's list of six, kimi-k2 and
// afmoe's rewritten splitters, gemma4's UTF-8 BPE, the whitespace model) and WordPiece (BERT).
// Byte-level BPE must give the bytes back when its vocabulary has every byte.
#include "cterp/tokenizer.h"
#include "fuzz.h"
#include "synth_model.h"
#include "synth_vocab.h"

enum { MAX_TOK = 24 };
static cterp_tokenizer *toks[MAX_TOK];
static int
    lossless[MAX_TOK]; // byte-level BPE with a token for every byte: decoding gives the input
static int n_toks;

// 1 for byte-level BPE whose vocabulary has all 256 byte tokens (falcon's lacks 0xFE and 0xFF)
static int all_bytes_back(const cterp_tokenizer *t) {
    const char *pre = cterp_tokenizer_pre(t); // the UTF-8 BPE types map or drop spaces
    if (strcmp(cterp_tokenizer_kind(t), "gpt2") || !strcmp(pre, "gemma4") ||
        !strcmp(pre, "sarvam_moe") || !strcmp(pre, "whitespace"))
        return 0;
    int ok = 1;
    for (int b = 0; b < 256 && ok; b++) {
        char c = (char)b, *back = NULL;
        int32_t *ids = NULL;
        size_t n, len;
        ok = !cterp_tokenize(t, &c, 1, 0, 0, &ids, &n) &&
             !cterp_detokenize(t, ids, n, 0, &back, &len) && len == 1 && back[0] == c;
        free(ids);
        free(back);
    }
    return ok;
}

static void add_file(const char *path) {
    cterp_tokenizer *t;
    if (!file_exists(path)) return;
    if (cterp_tokenizer_open(&t, path)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", cterp_last_error());
        abort();
    }
    if (n_toks == MAX_TOK) abort();
    lossless[n_toks] = all_bytes_back(t);
    toks[n_toks++] = t;
}

// A vocabulary of tests/synth_vocab.h (trained on its built-in text only).
static void add_kind(const char *kind) {
    char name[80];
    snprintf(name, sizeof name, "%s.gguf", kind);
    char *p = fuzz_path(name);
    gguf_writer *w = gguf_writer_new(0);
    if (!synth_tok_vocab(w, kind, NULL, 0) || gguf_writer_write(w, p)) abort();
    gguf_writer_free(w);
    add_file(p);
    free(p);
}

static void add_synthetic(const char *name, const char *pre) {
    char *p = fuzz_path(name);
    gguf_writer *w = gguf_writer_new(0);
    if (pre)
        synth_vocab_bpe(w, pre);
    else
        synth_vocab_spm(w);
    if (gguf_writer_write(w, p)) abort();
    gguf_writer_free(w);
    add_file(p);
    free(p);
}

// The texts of llama.cpp's tokenizer test file, one seed each.
static void seed_texts(const char *inp, const char *prefix) {
    char *text;
    size_t len;
    if (file_read_all(inp, &text, &len)) return;
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep);
    int k = 0;
    for (char *p = text, *end; (end = memmem(p, len - (size_t)(p - text), sep, seplen));
         p = end + seplen) {
        char name[48];
        snprintf(name, sizeof name, "%s_%03d.txt", prefix, k++);
        fuzz_seed(name, p, (size_t)(end - p));
    }
    free(text);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    const char *td = fuzz_testdata();
    if (td) {
        static const char *const files[] = {
            "models/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf",
            "vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-falcon.gguf"};
        for (int i = 0; i < 4; i++) {
            char *p = file_join(td, files[i]);
            add_file(p);
            free(p);
        }
        char *inp = file_join(td, "vocab/ggml-vocab-llama-spm.gguf.inp");
        if (fuzz_seed_dir()) seed_texts(inp, "vocab_test");
        free(inp);
    } else {
        fprintf(stderr, "fuzz_tokenizer: no shared test data: the synthetic vocabularies only\n");
    }
    add_synthetic("spm.gguf", NULL);
    add_synthetic("gpt2.gguf", "gpt-2");
    add_synthetic("llama-bpe.gguf", "llama-bpe");
    static const char *const kinds[] = {
        "bpe-qwen2",      "bpe-deepseek-llm", "bpe-tekken",  "bpe-superbpe",
        "bpe-exaone-moe", "bpe-chameleon",    "bpe-kimi-k2", "bpe-afmoe",
        "bpe-gemma4",     "bpe-whitespace",   "gemma",       "bert"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) add_kind(kinds[i]);
    if (fuzz_seed_dir()) { // the oracle test's texts: tests/data/tok_ref next to tests/fuzz
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char *slash = strrchr(dir, '/');
        if (slash) {
            snprintf(slash, sizeof dir - (size_t)(slash - dir), "/../data/tok_ref/texts.inp");
            seed_texts(dir, "tok_ref");
        }
    }
    static const char *const extra[] = {
        "Hello 12345 <|bos|> Hello",
        "\xff\xfe \xc3\x28 \xed\xa0\x80x",
        "\xe2\x96\x81\xe2\x96\x81  \t\n\n  ",
        "<s></s><unk>",
        "Hello, World! H\xc3\xa9llo na\xc3\xafve [CLS] x [SEP] [UNK] \xe4\xbd\xa0\xe5\xa5\xbd",
        "camelCaseWord HTTPServer it'sGOOD 1234567 \xd9\xa3\xd9\xa4",
        "\xe6\x97\xa5\xe6\x9c\xac\xe3\x80\x80\xe8\xaa\x9e\xe3\x80\x82 a\xe1\xa0\x8e"
        "b",
        "<sentinel:12> IMGIMGABZ \n\n\n\n<start_of_turn>user\n<end_of_turn>",
    };
    for (int i = 0; i < (int)(sizeof extra / sizeof *extra); i++) {
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
        for (int special = 0; special < 2; special++) {
            int32_t *ids;
            size_t n;
            if (cterp_tokenize(t, text, size, special, special, &ids, &n)) continue;
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] >= cterp_tokenizer_n_vocab(t)) abort();
            char *back;
            size_t len;
            if (cterp_detokenize(t, ids, n, special, &back, &len)) abort();
            if (lossless[k] && !special && (len != size || memcmp(back, data, size))) {
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
