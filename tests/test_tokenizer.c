// Tokenizers against llama.cpp's own test files (ids pinned by the reference implementation):
// every text of ggml-vocab-{llama-spm,gpt-2,falcon,mpt}.gguf.inp must give exactly the ids of the
// .out (add_special = false, parse_special = false), and decoding must give the text back.
#include "core/file.h"
#include "io/gguf.h"
#include "cterp/tokenizer.h"
#include "synth_model.h"
#include "synth_vocab.h"
#include "test.h"

static void run_vocab(const char *dir, const char *name) {
    char path[4096], inp[4200], outp[4200];
    snprintf(path, sizeof path, "%s/vocab/%s", dir, name);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(outp, sizeof outp, "%s.out", path);
    cterp_tokenizer *t;
    CHECK_OK(cterp_tokenizer_open(&t, path));
    char *itext, *otext;
    size_t ilen, olen;
    CHECK_OK(file_read_all(inp, &itext, &ilen));
    CHECK_OK(file_read_all(outp, &otext, &olen));
    if (!t || !itext || !otext) return;
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep);
    char *p = itext, *o = otext;
    int n_texts = 0, n_ok = 0, n_round = 0;
    while (p < itext + ilen) {
        char *end = strstr(p, sep);
        if (!end) break;
        char *eol = strchr(o, '\n');
        if (!eol) break;
        *eol = 0;
        int32_t want[4096];
        int nw = 0;
        for (char *q = o; *q;) {
            char *e;
            long v = strtol(q, &e, 10);
            if (e == q) break;
            if (nw < 4096) want[nw++] = (int32_t)v;
            q = e;
        }
        int32_t *ids;
        size_t n;
        CHECK_OK(cterp_tokenize(t, p, (size_t)(end - p), 0, 0, &ids, &n));
        int same = (int)n == nw;
        for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
        n_texts++;
        n_ok += same;
        if (!same) {
            fprintf(stderr, "%s text %d '%.*s'\n  want:", name, n_texts - 1, (int)(end - p), p);
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got: ");
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        char *back;
        size_t blen;
        CHECK_OK(cterp_detokenize(t, ids, n, 0, &back, &blen));
        if (back && blen == (size_t)(end - p) && !memcmp(back, p, blen))
            n_round++;
        else
            fprintf(stderr, "%s text %d: decode gave '%s'\n", name, n_texts - 1, back ? back : "");
        free(back);
        free(ids);
        p = end + seplen;
        o = eol + 1;
    }
    CHECK_MSG(n_texts == 46, "%s: %d texts", name, n_texts);
    CHECK_MSG(n_ok == n_texts, "%s: %d of %d texts tokenized as llama.cpp", name, n_ok, n_texts);
    CHECK_MSG(n_round == n_texts, "%s: %d of %d texts decode back", name, n_round, n_texts);
    free(itext);
    free(otext);
    cterp_tokenizer_free(t);
}

static void test_stories(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", dir);
    cterp_tokenizer *t;
    CHECK_OK(cterp_tokenizer_open(&t, path));
    if (!t) return;
    CHECK(cterp_tokenizer_n_vocab(t) == 512 && cterp_tokenizer_bos(t) == 1 &&
          cterp_tokenizer_eos(t) == 2 && cterp_tokenizer_add_bos(t));
    int32_t *ids;
    size_t n;
    const char *s = "Once upon a time";
    CHECK_OK(cterp_tokenize(t, s, strlen(s), 1, 0, &ids, &n));
    CHECK(n >= 2 && ids[0] == 1);
    char *back;
    size_t blen;
    CHECK_OK(cterp_detokenize(t, ids, n, 0, &back, &blen));
    CHECK(back && !strcmp(back, s));
    free(back);
    free(ids);
    // parse_special turns control-token text into its id; without it, it is plain text
    s = "a</s>b";
    CHECK_OK(cterp_tokenize(t, s, strlen(s), 0, 1, &ids, &n));
    int has_eos = 0;
    for (size_t i = 0; i < n; i++) has_eos |= ids[i] == 2;
    CHECK(has_eos);
    free(ids);
    CHECK_OK(cterp_tokenize(t, s, strlen(s), 0, 0, &ids, &n));
    has_eos = 0;
    for (size_t i = 0; i < n; i++) has_eos |= ids[i] == 2;
    CHECK(!has_eos);
    free(ids);
    // empty text: [] without specials, [BOS] with
    CHECK_OK(cterp_tokenize(t, "", 0, 0, 0, &ids, &n));
    CHECK(n == 0);
    free(ids);
    CHECK_OK(cterp_tokenize(t, "", 0, 1, 0, &ids, &n));
    CHECK(n == 1 && ids[0] == 1);
    free(ids);
    // invalid UTF-8 falls back to byte tokens and decodes back to the same bytes (a broken
    // lead byte swallows the bytes after it into its symbol, so keep the spaces before it)
    const char bad[] = "a b\xff\x80";
    CHECK_OK(cterp_tokenize(t, bad, sizeof bad - 1, 0, 0, &ids, &n));
    CHECK_OK(cterp_detokenize(t, ids, n, 0, &back, &blen));
    CHECK(back && blen == sizeof bad - 1 && !memcmp(back, bad, blen));
    free(back);
    free(ids);
    cterp_tokenizer_free(t);
}

// A tiny byte-level BPE vocabulary (synth_model.h): checks the llama-bpe pre-tokenizer (digits in
// groups of three, ignore_merges), merge ranks, BOS defaults and the GGUF key override.
static void write_bpe(const char *path, const char *pre, int add_bos_key) {
    gguf_writer *w = gguf_writer_new(0);
    synth_vocab_bpe(w, pre);
    if (add_bos_key >= 0) gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", add_bos_key);
    CHECK_OK(gguf_writer_write(w, path));
    gguf_writer_free(w);
}

static int ids_are(cterp_tokenizer *t, const char *text, int add, const int32_t *want, size_t nw) {
    int32_t *ids;
    size_t n;
    if (cterp_tokenize(t, text, strlen(text), add, 0, &ids, &n)) return 0;
    int ok = n == nw && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "'%s':", text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static void test_synthetic_bpe(void) {
    const char *tmp = test_tmpdir("tok");
    char path[600];
    snprintf(path, sizeof path, "%s/v.gguf", tmp);
    // ids: bytes 0..255, He 256, ll 257, llo 258, Hello 259, 12 260, 123 261, 45 262, bos 263
    write_bpe(path, "gpt-2", -1);
    cterp_tokenizer *t;
    CHECK_OK(cterp_tokenizer_open(&t, path));
    if (t) {
        CHECK(ids_are(t, "Hello", 1, (int32_t[]){259}, 1));      // gpt-2: no BOS by default
        CHECK(ids_are(t, "12345", 0, (int32_t[]){261, 262}, 2)); // one word, merged by rank
        CHECK(ids_are(t, "Hel", 0, (int32_t[]){256, 'l'}, 2));
    }
    if (t) { // invalid UTF-8 between valid runs: every byte survives the round trip
        const char bad[] = "Hello\xff 12\xc3\x28 \xed\xa0\x80x";
        int32_t *ids;
        size_t n;
        char *back;
        size_t blen;
        CHECK_OK(cterp_tokenize(t, bad, sizeof bad - 1, 0, 0, &ids, &n));
        CHECK(n > 0 && ids[0] == 259);
        CHECK_OK(cterp_detokenize(t, ids, n, 0, &back, &blen));
        CHECK(back && blen == sizeof bad - 1 && !memcmp(back, bad, blen));
        free(back);
        free(ids);
    }
    cterp_tokenizer_free(t);
    write_bpe(path, "llama-bpe", -1);
    CHECK_OK(cterp_tokenizer_open(&t, path));
    if (t) {
        CHECK(ids_are(t, "Hello", 1, (int32_t[]){263, 259}, 2)); // llama-bpe: BOS by default
        CHECK(ids_are(t, "12345", 0, (int32_t[]){261, 262}, 2)); // "123" "45"
        CHECK(ids_are(t, "1234", 0, (int32_t[]){261, '4'}, 2));  // groups of at most three
        CHECK(ids_are(t, "<|bos|>", 0, (int32_t[]){'<', '|', 'b', 'o', 's', '|', '>'}, 7));
        int32_t *ids;
        size_t n;
        CHECK_OK(cterp_tokenize(t, "<|bos|>", 7, 0, 1, &ids, &n)); // parse_special
        CHECK(n == 1 && ids[0] == 263);
        free(ids);
    }
    cterp_tokenizer_free(t);
    write_bpe(path, "llama-bpe", 0); // the GGUF key overrides the default
    CHECK_OK(cterp_tokenizer_open(&t, path));
    if (t) CHECK(ids_are(t, "Hello", 1, (int32_t[]){259}, 1));
    cterp_tokenizer_free(t);
    // an unknown pre-tokenizer is refused, as llama.cpp does; the message names file, key, value
    write_bpe(path, "no-such-pre", -1);
    CHECK(cterp_tokenizer_open(&t, path) == CTERP_EFORMAT && !t);
    CHECK(strstr(cterp_last_error(), path) && strstr(cterp_last_error(), "tokenizer.ggml.pre") &&
          strstr(cterp_last_error(), "no-such-pre"));
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
}

// A vocabulary of 300 one-character tokens, no merges and no special-token keys, with the given
// model and pre (NULL: no key) and one boolean key (NULL: none).
static cterp_tokenizer *open_min(const char *path, const char *model, const char *pre,
                                 const char *bool_key, int bool_val) {
    static char store[300][4];
    const char *toks[300];
    for (int i = 0; i < 300; i++) {
        snprintf(store[i], sizeof store[i], "%c%c", 'A' + i / 26 % 26, 'a' + i % 26);
        toks[i] = store[i];
    }
    toks[0] = "a", toks[1] = "b",
    toks[2] = "\xe2\x96\x81"
              "a";
    gguf_writer *w = gguf_writer_new(0);
    gguf_writer_str(w, "tokenizer.ggml.model", model);
    if (pre) gguf_writer_str(w, "tokenizer.ggml.pre", pre);
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", toks, 300);
    if (strcmp(model, "bert")) gguf_writer_arr_str(w, "tokenizer.ggml.merges", toks, 0);
    if (bool_key) gguf_writer_bool(w, bool_key, bool_val);
    CHECK_OK(gguf_writer_write(w, path));
    gguf_writer_free(w);
    cterp_tokenizer *t;
    cterp_tokenizer_open(&t, path); // NULL on failure: the callers check
    return t;
}

// llama.cpp's defaults where the GGUF keys are absent, and what the oracle files cannot show.
static void test_defaults(void) {
    const char *tmp = test_tmpdir("tokdef");
    char path[600];
    snprintf(path, sizeof path, "%s/v.gguf", tmp);
    cterp_tokenizer *t = open_min(path, "gpt2", "gpt-2", NULL, 0);
    CHECK(t);
    if (t) { // BPE: BOS and EOS default to token 11, no BOS added
        CHECK(cterp_tokenizer_bos(t) == 11 && cterp_tokenizer_eos(t) == 11);
        CHECK(!cterp_tokenizer_add_bos(t) && !strcmp(cterp_tokenizer_pre(t), "gpt2"));
    }
    cterp_tokenizer_free(t);
    t = open_min(path, "gpt2", NULL, NULL, 0); // no pre key: llama.cpp's "default"
    if (t) CHECK(!strcmp(cterp_tokenizer_pre(t), "default"));
    cterp_tokenizer_free(t);
    t = open_min(path, "gpt2", "", NULL, 0);
    if (t) CHECK(!strcmp(cterp_tokenizer_pre(t), "default"));
    cterp_tokenizer_free(t);
    t = open_min(path, "gpt2", "chatglm-bpe", NULL, 0); // glm4: no default BOS id
    if (t)
        CHECK(cterp_tokenizer_bos(t) == -1 && cterp_tokenizer_eos(t) == 11 &&
              !strcmp(cterp_tokenizer_pre(t), "chatglm4"));
    cterp_tokenizer_free(t);
    t = open_min(path, "gpt2", "falcon3", NULL, 0); // an alias of llama3: BOS added
    if (t) CHECK(cterp_tokenizer_add_bos(t) && !strcmp(cterp_tokenizer_pre(t), "llama3"));
    cterp_tokenizer_free(t);
    // Gemma 4: no default ids, and BOS is added whatever add_bos_token says
    t = open_min(path, "gemma4", NULL, "tokenizer.ggml.add_bos_token", 0);
    if (t)
        CHECK(cterp_tokenizer_bos(t) == -1 && cterp_tokenizer_eos(t) == -1 &&
              cterp_tokenizer_add_bos(t) && !strcmp(cterp_tokenizer_pre(t), "gemma4"));
    cterp_tokenizer_free(t);
    t = open_min(path, "bert", NULL, NULL, 0); // [CLS] 101 ... [SEP] 102, [UNK] 100
    if (t) {
        CHECK(!strcmp(cterp_tokenizer_kind(t), "bert") && cterp_tokenizer_bos(t) == 101);
        CHECK(ids_are(t, "A a  b", 1, (int32_t[]){101, 2, 2, 100, 102}, 5)); // lower-cased
        char *back;
        size_t blen;
        CHECK_OK(cterp_detokenize(t, (int32_t[]){2, 1}, 2, 0, &back, &blen));
        CHECK(back && !strcmp(back, "ab"));
        free(back);
    }
    cterp_tokenizer_free(t);
    t = open_min(path, "llama", NULL, NULL, 0); // SentencePiece needs scores
    CHECK(!t && strstr(cterp_last_error(), "tokenizer.ggml.scores"));
    t = open_min(path, "t5", NULL, NULL, 0); // UGM is not supported: the message says so
    CHECK(!t && strstr(cterp_last_error(), "tokenizer.ggml.model") &&
          strstr(cterp_last_error(), "t5"));
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
}

// Texts of a file in llama.cpp's .inp format (may hold NUL bytes): pointers into *buf.
static int split_inp(char *buf, size_t len, const char **txt, size_t *tlen, int cap) {
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep);
    int n = 0;
    for (char *p = buf, *end; n < cap && (end = memmem(p, len - (size_t)(p - buf), sep, seplen));
         p = end + seplen) {
        txt[n] = p;
        tlen[n++] = (size_t)(end - p);
    }
    return n;
}

static const char *tests_dir(void) {
    static char dir[4096];
    const char *d = getenv("CTERP_TESTS_DIR");
    if (d && *d) return d;
    snprintf(dir, sizeof dir, "%s", __FILE__); // an absolute path in CMake builds
    char *slash = strrchr(dir, '/');
    if (!slash) return ".";
    *slash = 0;
    return dir;
}

// One kind: every text must give llama.cpp's ids. Returns the number of texts that do.
static int check_kind(const char *kind, const char *gguf, const char *refdir, const char **txt,
                      const size_t *tlen, int n_txt, int n_plain, const char *train,
                      size_t train_len) {
    gguf_writer *w = gguf_writer_new(0);
    CHECK(synth_tok_vocab(w, kind, train, train_len));
    CHECK_OK(gguf_writer_write(w, gguf));
    gguf_writer_free(w);
    cterp_tokenizer *t;
    CHECK_OK(cterp_tokenizer_open(&t, gguf));
    char path[4400], *ref = NULL;
    size_t rlen;
    if (snprintf(path, sizeof path, "%s/%s.txt", refdir, kind) < (int)sizeof path)
        CHECK_OK(file_read_all(path, &ref, &rlen));
    if (!t || !ref) {
        cterp_tokenizer_free(t);
        return 0;
    }
    int ok = 0, line = 0;
    char *p = strchr(ref, '\n'); // the header
    for (int i = 0; p && i < n_txt; i++, line++) {
        char *q = p + 1, *eol = strchr(q, '\n');
        if (!eol) break;
        *eol = 0;
        int32_t *ids;
        size_t n;
        int special = i >= n_plain;
        CHECK_OK(cterp_tokenize(t, txt[i], tlen[i], special, special, &ids, &n));
        size_t k = 0;
        int same = 1;
        for (char *r = q, *e; same; r = e) {
            long v = strtol(r, &e, 10);
            if (e == r) break;
            same = k < n && ids[k++] == v;
        }
        same = same && k == n;
        ok += same;
        if (!same) {
            fprintf(stderr, "%s: %s text %d:\n  want: %s\n  got: ", kind,
                    special ? "special" : "plain", special ? i - n_plain : i, q);
            for (size_t j = 0; j < n; j++) fprintf(stderr, " %d", ids[j]);
            fprintf(stderr, "\n");
        }
        // byte-level BPE and SentencePiece give the text back (WordPiece normalizes, the
        // UTF-8 BPE types map spaces or drop whitespace)
        const char *pre = cterp_tokenizer_pre(t);
        int lossless = !strcmp(cterp_tokenizer_kind(t), "llama") ||
                       (!strcmp(cterp_tokenizer_kind(t), "gpt2") && strcmp(pre, "gemma4") &&
                        strcmp(pre, "sarvam_moe") && strcmp(pre, "whitespace"));
        if (lossless && !special) {
            char *back;
            size_t blen;
            CHECK_OK(cterp_detokenize(t, ids, n, 0, &back, &blen));
            CHECK_MSG(back && blen == tlen[i] && !memcmp(back, txt[i], blen),
                      "%s: text %d decodes to '%s'", kind, i, back ? back : "");
            free(back);
        }
        free(ids);
        p = eol;
    }
    CHECK_MSG(line == n_txt, "%s: %d lines for %d texts", kind, line, n_txt);
    free(ref);
    cterp_tokenizer_free(t);
    return ok;
}

static void test_oracle_kinds(void) {
    const char *td = tests_dir();
    char refdir[4200], path[4300];
    snprintf(refdir, sizeof refdir, "%s/data/tok_ref", td);
    char *plain, *special;
    size_t plen, slen;
    snprintf(path, sizeof path, "%s/texts.inp", refdir);
    CHECK_OK(file_read_all(path, &plain, &plen));
    snprintf(path, sizeof path, "%s/special.inp", refdir);
    CHECK_OK(file_read_all(path, &special, &slen));
    if (!plain || !special) return;
    enum { MAX_TXT = 512 };
    const char *txt[MAX_TXT];
    size_t tlen[MAX_TXT];
    int n_plain = split_inp(plain, plen, txt, tlen, MAX_TXT);
    int n_txt =
        n_plain + split_inp(special, slen, txt + n_plain, tlen + n_plain, MAX_TXT - n_plain);
    CHECK(n_plain > 100 && n_txt > n_plain);
    const char *tmp = test_tmpdir("tokref");
    char gguf[600];
    snprintf(gguf, sizeof gguf, "%s/v.gguf", tmp);
    char kinds[128][64];
    int n_kinds = synth_tok_kinds(kinds, 128), all = 0;
    for (int k = 0; k < n_kinds; k++) {
        int ok = check_kind(kinds[k], gguf, refdir, txt, tlen, n_txt, n_plain, plain, plen);
        CHECK_MSG(ok == n_txt, "%s: %d of %d texts tokenized as llama.cpp", kinds[k], ok, n_txt);
        printf("  %-32s %d/%d\n", kinds[k], ok, n_txt);
        all += ok == n_txt;
    }
    printf("llama.cpp oracle: %d of %d kinds match on all %d texts\n", all, n_kinds, n_txt);
    free(plain);
    free(special);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
}

int main(void) {
    test_synthetic_bpe();
    test_defaults();
    test_oracle_kinds();
    const char *dir = test_data_dir();
    if (!dir) {
        printf("skip: shared test data not found (set CTERP_TESTDATA)\n");
        return test_done();
    }
    run_vocab(dir, "ggml-vocab-llama-spm.gguf");
    run_vocab(dir, "ggml-vocab-gpt-2.gguf");
    run_vocab(dir, "ggml-vocab-falcon.gguf");
    run_vocab(dir, "ggml-vocab-mpt.gguf");
    test_stories(dir);
    return test_done();
}
