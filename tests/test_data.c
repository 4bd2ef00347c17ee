// Datasets and context windows: every reader (txt, folder, jsonl, bin u16/u32), malformed input
// with FILE:LINE errors, and windows (BOS, separators, masks, no-concat) against a naive
// reference built from the documents' own tokenizations.
#include <stdint.h>

#include "cterp/data.h"
#include "cterp/model.h"
#include "test.h"

static char tmp[512];

static const char *tpath(const char *name) {
    static char buf[4][1024];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmp, name);
    return buf[i];
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static void write_str(const char *path, const char *s) { write_file(path, s, strlen(s)); }

// All documents of a dataset as "doc|doc|..." (text) or count of tokens (bin)
static int read_all(const char *path, const cterp_dataset_opts *o, char *out, size_t cap, int64_t *ntok) {
    cterp_dataset *d;
    if (cterp_dataset_open(&d, path, o)) return -1;
    out[0] = 0;
    *ntok = 0;
    int eof = 0, n = 0;
    cterp_document doc;
    while (!cterp_dataset_next(d, &doc, &eof) && !eof) {
        if (doc.text) {
            strncat(out, doc.text, doc.len < cap - strlen(out) - 2 ? doc.len : 0);
            strcat(out, "|");
        } else {
            for (size_t i = 0; i < doc.n_tokens; i++) *ntok += doc.tokens[i];
        }
        n++;
    }
    int bad = !eof;
    cterp_dataset_close(d);
    return bad ? -1 : n;
}

static void test_readers(void) {
    char buf[4096];
    int64_t nt;
    write_str(tpath("a.txt"), "first doc\n\nsecond doc\r\n  \nthird");
    CHECK(read_all(tpath("a.txt"), NULL, buf, sizeof buf, &nt) == 3);
    CHECK(!strcmp(buf, "first doc|second doc|third|"));

    const char *jl = "{\"text\": \"hello\"}\n{\"text\": \"w\\u00f6rld\", \"id\": 3}\n\n{\"body\": \"x\"}\n"
                     "{\"text\": \"after\"}\nnot json\n";
    write_file(tpath("b.jsonl"), jl, strlen(jl));
    cterp_dataset *d;
    CHECK_OK(cterp_dataset_open(&d, tpath("b.jsonl"), NULL));
    cterp_document doc;
    int eof = 0;
    CHECK_OK(cterp_dataset_next(d, &doc, &eof));
    CHECK(doc.len == 5 && !memcmp(doc.text, "hello", 5));
    CHECK_OK(cterp_dataset_next(d, &doc, &eof));
    CHECK(doc.len == 6 && !memcmp(doc.text, "w\xc3\xb6rld", 6));
    cterp_status s = cterp_dataset_next(d, &doc, &eof);
    CHECK(s == CTERP_EFORMAT);
    CHECK_MSG(strstr(cterp_last_error(), "b.jsonl:4:") && strstr(cterp_last_error(), "\"text\""), "%s",
              cterp_last_error());
    cterp_dataset_close(d);

    cterp_dataset_opts o;
    cterp_dataset_opts_default(&o);
    o.skip_malformed = 1;
    CHECK_OK(cterp_dataset_open(&d, tpath("b.jsonl"), &o));
    int n = 0;
    while (!cterp_dataset_next(d, &doc, &eof) && !eof) n++;
    CHECK(eof && n == 3 && cterp_dataset_skipped(d) == 2);
    CHECK_OK(cterp_dataset_rewind(d)); // a new epoch reads the same documents
    CHECK_OK(cterp_dataset_next(d, &doc, &eof));
    CHECK(doc.len == 5 && !memcmp(doc.text, "hello", 5));
    cterp_dataset_close(d);
    write_str(tpath("c.jsonl"), "{\"text\": \"ok\"}\n{\"text\": 5}\n");
    CHECK_OK(cterp_dataset_open(&d, tpath("c.jsonl"), NULL));
    cterp_dataset_next(d, &doc, &eof);
    CHECK(cterp_dataset_next(d, &doc, &eof) == CTERP_EFORMAT && strstr(cterp_last_error(), "c.jsonl:2:"));
    cterp_dataset_close(d);
    write_str(tpath("d.jsonl"), "{\"text\": \"ok\"}\n{\"text\": \"unterminated\n");
    CHECK_OK(cterp_dataset_open(&d, tpath("d.jsonl"), NULL));
    cterp_dataset_next(d, &doc, &eof);
    CHECK(cterp_dataset_next(d, &doc, &eof) == CTERP_EFORMAT && strstr(cterp_last_error(), "d.jsonl:2: malformed JSON"));
    cterp_dataset_close(d);

    // a folder: *.txt files in name order, one document each (newlines kept)
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/docs", tmp);
    char cmd[5000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && printf 'B1\\nB2' > '%s/b.txt' && printf 'A' > '%s/a.txt' && "
             "printf 'skip' > '%s/c.md'", dir, dir, dir, dir);
    CHECK(system(cmd) == 0);
    CHECK(read_all(dir, NULL, buf, sizeof buf, &nt) == 2);
    CHECK(!strcmp(buf, "A|B1\nB2|"));

    // token streams: u16 by default, u32 by name; chunks continue each other
    uint16_t t16[70000];
    int64_t sum = 0;
    for (int i = 0; i < 70000; i++) t16[i] = (uint16_t)(i % 500), sum += i % 500;
    write_file(tpath("t.bin"), t16, sizeof t16);
    CHECK(read_all(tpath("t.bin"), NULL, buf, sizeof buf, &nt) == 2 && nt == sum);
    uint32_t t32[5] = {1, 2, 3, 70000, 5};
    write_file(tpath("t.u32.bin"), t32, sizeof t32);
    CHECK(read_all(tpath("t.u32.bin"), NULL, buf, sizeof buf, &nt) == 1 && nt == 70011);
    write_file(tpath("odd.u32.bin"), t32, 7);
    CHECK(cterp_dataset_open(&d, tpath("odd.u32.bin"), NULL) == CTERP_EFORMAT &&
          strstr(cterp_last_error(), "odd.u32.bin") && strstr(cterp_last_error(), "multiple of 4"));
    CHECK(cterp_dataset_open(&d, tpath("missing.txt"), NULL) == CTERP_EIO &&
          strstr(cterp_last_error(), "missing.txt"));
}

// Windows from a token stream without a tokenizer: no BOS, no separator, exact slicing
static void test_bin_windows(void) {
    cterp_window_config c;
    cterp_window_config_default(&c);
    c.context_size = 4, c.prepend_bos = 0, c.separator = CTERP_SEP_NONE;
    cterp_windows *w;
    CHECK_OK(cterp_windows_open(&w, tpath("t.bin"), NULL, NULL, &c));
    int32_t tok[4];
    uint8_t mask[4];
    int eof = 0, ok = 1;
    int64_t n = 0;
    while (!cterp_windows_next(w, tok, mask, &eof) && !eof) {
        for (int i = 0; i < 4; i++) ok &= tok[i] == (int32_t)((n * 4 + i) % 500) && mask[i] == 0;
        n++;
    }
    CHECK(ok && n == 17500 && cterp_windows_position(w) == 17500); // across the 65536-token chunk
    cterp_windows_close(w);
    c.prepend_bos = 1;
    CHECK(cterp_windows_open(&w, tpath("t.bin"), NULL, NULL, &c) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "BOS"));
}

// Naive reference: tokenize each document, join with separators, cut BOS + chunks.
static void test_text_windows(const char *data) {
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K.gguf", data);
    cterp_tokenizer *tk;
    CHECK_OK(cterp_tokenizer_open(&tk, mp));
    if (!tk) return;
    const int32_t BOS = cterp_tokenizer_bos(tk), EOS = cterp_tokenizer_eos(tk);
    CHECK(BOS == 1 && EOS == 2);
    const char *docs[] = {"Once upon a time there was a cat.", "The dog ran.", "Lily liked the big red ball and the sun.", "Hi."};
    char txt[512] = "";
    for (int i = 0; i < 4; i++) strcat(txt, docs[i]), strcat(txt, "\n");
    write_file(tpath("s.txt"), txt, strlen(txt));
    for (int variant = 0; variant < 4; variant++) {
        // 0: defaults (BOS + BOS separators); 1: EOS separator; 2: no concat; 3: keep specials
        const int T = 8;
        int32_t stream[256], smask[256];
        int ns = 0;
        int32_t sep = variant == 1 ? EOS : BOS;
        int32_t ref[64][8];
        int refm[64][8], nref = 0;
        for (int i = 0; i < 4; i++) {
            int32_t *ids;
            size_t n;
            CHECK_OK(cterp_tokenize(tk, docs[i], strlen(docs[i]), 0, 0, &ids, &n));
            if (variant == 2) { // each document on its own, remainder dropped
                for (size_t k = 0; k + (T - 1) <= n; k += T - 1) {
                    ref[nref][0] = BOS, refm[nref][0] = 1;
                    for (int j = 0; j < T - 1; j++) ref[nref][j + 1] = ids[k + j], refm[nref][j + 1] = 0;
                    nref++;
                }
            } else {
                if (i > 0) stream[ns] = sep, smask[ns++] = variant != 3;
                for (size_t k = 0; k < n; k++) stream[ns] = ids[k], smask[ns++] = 0;
            }
            free(ids);
        }
        if (variant != 2)
            for (int k = 0; k + (T - 1) <= ns; k += T - 1) {
                ref[nref][0] = BOS, refm[nref][0] = variant != 3;
                for (int j = 0; j < T - 1; j++) ref[nref][j + 1] = stream[k + j], refm[nref][j + 1] = smask[k + j];
                nref++;
            }
        cterp_window_config c;
        cterp_window_config_default(&c);
        c.context_size = T;
        if (variant == 1) c.separator = CTERP_SEP_EOS;
        if (variant == 2) c.concat = 0;
        if (variant == 3) c.exclude_special = 0;
        cterp_windows *w;
        CHECK_OK(cterp_windows_open(&w, tpath("s.txt"), NULL, tk, &c));
        if (!w) continue;
        for (int epoch = 0; epoch < 2; epoch++) { // a rewind replays the same windows
            int32_t tok[8];
            uint8_t mask[8];
            int eof = 0, got = 0, same = 1;
            while (!cterp_windows_next(w, tok, mask, &eof) && !eof) {
                if (got < nref)
                    for (int j = 0; j < T; j++) same &= tok[j] == ref[got][j] && mask[j] == refm[got][j];
                got++;
            }
            CHECK_MSG(eof && got == nref && same, "variant %d epoch %d: %d windows (expected %d), same %d",
                      variant, epoch, got, nref, same);
            CHECK(nref >= (variant == 2 ? 2 : 4));
            CHECK_OK(cterp_windows_rewind(w));
        }
        cterp_windows_close(w);
    }
    // a pretokenized stream holding an id outside the vocabulary
    uint16_t bad[10] = {5, 6, 7, 600, 8, 9, 10, 11, 12, 13};
    write_file(tpath("bad.bin"), bad, sizeof bad);
    cterp_window_config c;
    cterp_window_config_default(&c);
    c.context_size = 4;
    cterp_windows *w;
    CHECK_OK(cterp_windows_open(&w, tpath("bad.bin"), NULL, tk, &c));
    int32_t tok[4];
    uint8_t mask[4];
    int eof;
    CHECK(cterp_windows_next(w, tok, mask, &eof) == CTERP_EFORMAT);
    CHECK_MSG(strstr(cterp_last_error(), "bad.bin: token 3: id 600"), "%s", cterp_last_error());
    cterp_windows_close(w);
    cterp_tokenizer_free(tk);
}

int main(void) {
    const char *t = test_tmpdir("data");
    if (!t) return 1;
    snprintf(tmp, sizeof tmp, "%s", t);
    test_readers();
    test_bin_windows();
    const char *data = test_data_dir();
    if (data) test_text_windows(data);
    else printf("skip: shared test data not found (set CTERP_TESTDATA): text windows\n");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) return 1;
    return test_done();
}
