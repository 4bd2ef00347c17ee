// Deterministic synthetic vocabularies for the tokenizer oracle tests. Each "kind" is a GGUF
// vocabulary built from a fixed multilingual training text by a plain BPE trainer (merges learned
// over the whole text, across word boundaries, so that every pre-tokenizer's split changes the
// ids; the oracle vocabularies also learn from tests/data/tok_ref/texts.inp itself, so that their
// tokens span the boundaries in exactly those texts). scripts/oracle/tok_refs.sh writes each kind
// with scripts/oracle/tok_synth.c and stores
// llama.cpp's ids for tests/data/tok_ref/{texts,special}.inp in tests/data/tok_ref/<kind>.txt;
// test_tokenizer builds the same vocabulary here and must get the same ids.
//
// Kinds:
//   bpe-<pre>   byte-level BPE (GPT-2 bytes_to_unicode), tokenizer.ggml.pre = <pre> (any string,
//               known or not); for the
//               types that keep UTF-8 (gemma4, sarvam-moe, whitespace) a character-level BPE
//               with "▁" for spaces and <0xXX> byte tokens (gemma4: tokenizer.ggml.model gemma4)
//   spm         SentencePiece (scores = merge order), <unk> <s> </s>, byte fallback, defaults
//   gemma       the same pieces laid out as Gemma's: add_space_prefix false, add_bos on
//   bert        WordPiece ("▁" word starts, bare continuations), lowercase + strip accents
//   bert-cased  WordPiece, tokenizer.ggml.normalizer.lowercase = false
#ifndef CTERP_SYNTH_VOCAB_H
#define CTERP_SYNTH_VOCAB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tokenizer/pretok.h"

static const char synth_train_text[] =
    "The quick brown fox jumps over the lazy dog. The dog didn't mind; it's a lazy dog, and "
    "they've been friends for years. I'm sure you're right: we'll see what he'd say. "
    "DON'T SHOUT! WE'RE LISTENING. It'S fine, they'Ve said.\n"
    "In 2024 the team shipped 12 releases, 123 fixes and 1234 tests; 12345 users ran 3.14159 "
    "jobs at $19.99 each (50% off), i.e. 1,000,000 requests on 2024-01-15 at 10:30.\n\n"
    "def tokenize(text):\n    words = text.split()\n    return [w.lower() for w in words]\n\n"
    "int main(void) {\n\tfor (int i = 0; i < 10; i++) {\n\t\tprintf(\"%d\\n\", i * i);\n\t}\n"
    "\treturn 0;\n}\n"
    "if (a != b && c >= d) { x += 1; } else { x -= 1; } // done\n"
    "camelCaseName, snake_case_name, HTTPServerError, getURLForID, iPhone.\n"
    "Wait... what?! No way!!! --- === *** ### @@@ \"quoted\" 'single' (parens) [brackets] "
    "{braces} <angle>\n"
    "   three spaces,    four spaces,\ttab,\t\ttwo tabs, trailing   \r\nwindows line\r\n"
    "你好，世界！我们在学习中文。中文分词很有趣。\n"
    "こんにちは、世界。カタカナとひらがなと漢字。\n"
    "안녕하세요 세계. 한국어 문장입니다.\n"
    "Привет, мир! Как дела? Всё хорошо, спасибо.\n"
    "Καλημέρα κόσμε. Η γλώσσα είναι ωραία.\n"
    "مرحبا بالعالم. كيف حالك؟\n"
    "שלום עולם, מה שלומך?\n"
    "नमस्ते दुनिया। आप कैसे हैं?\n"
    "สวัสดีครับ ยินดีต้อนรับ\n"
    "Tiếng Việt có dấu rất đẹp.\n"
    "Äpfel und Birnen, Straße, Größe. Café, naïve, résumé, crème brûlée. ¿Qué tal? ¡Muy bien!\n"
    "Emoji: 🦙 llama, 🚀 rocket, 😀 smile, 👍🏽 thumbs, ❤️ heart, 🇫🇷 flag, ✅ "
    "done.\n"
    "The quick brown fox jumps over the lazy dog again; the lazy dog sleeps. "
    "Numbers again: 7, 42, 314, 2718, 16180, 99999 and 3.14 and 2.71828.\n"
    "six      spaces      here      and      there      too\n"
    "Indented:\n                sixteen spaces\n                sixteen again\n        eight\n"
    "\n\n\n\nfour newlines above!\nand here?\nyes.\n\n\ndone!\n\n"
    "The end. The end. The end.\n";

// Extra training text for the vocabulary being built (synth_tok_vocab's argument).
static const char *synth_extra;
static size_t synth_extra_len;

// The training corpus: the text, the text with ASCII letters upper-cased, numbers of one to five
// digits with varied separators, then the extra text twice (NUL bytes left out), so that merges
// span the word boundaries of exactly the texts the tests tokenize. Malloc'd.
static char *synth_corpus(void) {
    size_t n = strlen(synth_train_text);
    char *s = malloc(2 * n + 8192 + 2 * synth_extra_len), *o = s;
    if (!s) abort();
    memcpy(o, synth_train_text, n), o += n;
    for (size_t i = 0; i < n; i++) {
        char c = synth_train_text[i];
        *o++ = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    static const char *const sep[] = {" ", ", ", "\n", ".", " + ", "/", "  "};
    static const uint32_t mod[] = {10, 100, 1000, 10000, 100000};
    for (uint32_t i = 0; i < 500; i++) o += sprintf(o, "%u%s", i * 7919u % mod[i % 5], sep[i % 7]);
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i < synth_extra_len; i++)
            if (synth_extra[i]) *o++ = synth_extra[i];
    *o = 0;
    return s;
}

// ---- BPE trainer --------------------------------------------------------------------------

typedef struct {
    char **str;    // (n) distinct token strings: the alphabet, then what the merges made
    int32_t *rank; // (n) the first merge that made the token; -1 for the alphabet
    int n, cap;
    int32_t (*merge)[2]; // (n_merge) the token pair of each merge, in order
    int n_merge, merge_cap;
} synth_bpe;

static void synth_bpe_free(synth_bpe *b) {
    for (int i = 0; i < b->n; i++) free(b->str[i]);
    free(b->str);
    free(b->rank);
    free(b->merge);
    memset(b, 0, sizeof *b);
}

static int synth_bpe_find(const synth_bpe *b, const char *s, size_t n) {
    for (int i = 0; i < b->n; i++)
        if (strlen(b->str[i]) == n && !memcmp(b->str[i], s, n)) return i;
    return -1;
}

static int synth_bpe_add(synth_bpe *b, const char *s, size_t n) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 512;
        b->str = realloc(b->str, (size_t)b->cap * sizeof *b->str);
        b->rank = realloc(b->rank, (size_t)b->cap * sizeof *b->rank);
        if (!b->str || !b->rank) abort();
    }
    char *p = malloc(n + 1);
    if (!p) abort();
    memcpy(p, s, n);
    p[n] = 0;
    b->str[b->n] = p;
    b->rank[b->n] = -1;
    return b->n++;
}

// Learns up to n_merges merges over seq (n symbol ids, rewritten in place): the most frequent
// adjacent pair (ties: the smaller left id, then right id) while it occurs twice or more. A pair
// with `barrier` on either side is never merged (-1: none). A merge whose text is already a token
// reuses it.
static void synth_bpe_train(synth_bpe *b, int32_t *seq, int n, int n_merges, int32_t barrier) {
    uint32_t cap = 1;
    while (cap < 4u * (uint32_t)n + 16) cap *= 2;
    int64_t *keys = malloc(cap * sizeof *keys);
    int32_t *counts = malloc(cap * sizeof *counts);
    b->merge = realloc(b->merge, (size_t)n_merges * sizeof *b->merge);
    if (!keys || !counts || !b->merge) abort();
    for (int m = 0; m < n_merges; m++) {
        memset(keys, 0xff, cap * sizeof *keys);
        int64_t best = -1;
        int32_t best_n = 1;
        for (int i = 0; i + 1 < n; i++) {
            if (seq[i] == barrier || seq[i + 1] == barrier) continue;
            int64_t k = (int64_t)seq[i] << 32 | (uint32_t)seq[i + 1];
            uint32_t h = (uint32_t)(((uint64_t)k * 0x9E3779B97F4A7C15ull) >> 40) & (cap - 1);
            while (keys[h] != -1 && keys[h] != k) h = (h + 1) & (cap - 1);
            if (keys[h] == -1) keys[h] = k, counts[h] = 0;
            int32_t c = ++counts[h];
            if (c > best_n || (c == best_n && best >= 0 && k < best)) best = k, best_n = c;
        }
        if (best < 0) break;
        int32_t l = (int32_t)(best >> 32), r = (int32_t)(best & 0xffffffff);
        size_t ll = strlen(b->str[l]), rl = strlen(b->str[r]);
        char *s = malloc(ll + rl + 1);
        if (!s) abort();
        memcpy(s, b->str[l], ll);
        memcpy(s + ll, b->str[r], rl + 1);
        int id = synth_bpe_find(b, s, ll + rl);
        if (id < 0) {
            id = synth_bpe_add(b, s, ll + rl);
            b->rank[id] = m;
        }
        free(s);
        b->merge[b->n_merge][0] = l, b->merge[b->n_merge][1] = r;
        b->n_merge++;
        int o = 0;
        for (int i = 0; i < n; i++) {
            if (i + 1 < n && seq[i] == l && seq[i + 1] == r)
                seq[o++] = id, i++;
            else
                seq[o++] = seq[i];
        }
        n = o;
    }
    free(keys);
    free(counts);
}

static size_t synth_utf8_len(const char *s) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[(uint8_t)s[0] >> 4];
}

// Character-level alphabet and sequence of `text` (UTF-8 characters, in order of appearance).
static int32_t *synth_chars(synth_bpe *b, const char *text, int *n) {
    size_t len = strlen(text);
    int32_t *seq = malloc(len * sizeof *seq);
    if (!seq) abort();
    *n = 0;
    for (size_t i = 0; i < len;) {
        size_t k = synth_utf8_len(text + i);
        int id = synth_bpe_find(b, text + i, k);
        if (id < 0) id = synth_bpe_add(b, text + i, k);
        seq[(*n)++] = id;
        i += k;
    }
    return seq;
}

// The training text with ' ' as U+2581, prefixed with one (SentencePiece and SPM-style BPE).
static char *synth_escaped_text(void) {
    char *t = synth_corpus();
    size_t n = strlen(t);
    char *s = malloc(3 * n + 4), *o = s;
    if (!s) abort();
    memcpy(o, "\xe2\x96\x81", 3), o += 3;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == ' ')
            memcpy(o, "\xe2\x96\x81", 3), o += 3;
        else
            *o++ = t[i];
    }
    *o = 0;
    free(t);
    return s;
}

// ---- vocabularies -------------------------------------------------------------------------

typedef struct { // a token list under construction
    const char **tok;
    int32_t *type;
    float *score;
    int n;
} synth_list;

static void synth_push(synth_list *l, const char *s, int32_t type, float score) {
    l->tok[l->n] = s, l->type[l->n] = type, l->score[l->n] = score, l->n++;
}

static void synth_list_alloc(synth_list *l, int cap) {
    l->tok = malloc((size_t)cap * sizeof *l->tok);
    l->type = malloc((size_t)cap * sizeof *l->type);
    l->score = malloc((size_t)cap * sizeof *l->score);
    l->n = 0;
    if (!l->tok || !l->type || !l->score) abort();
}

static void synth_list_free(synth_list *l) {
    free(l->tok), free(l->type), free(l->score);
}

static void synth_write_tokens(gguf_writer *w, const synth_list *l, int scores) {
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", l->tok, (uint64_t)l->n);
    gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, l->type, (uint64_t)l->n);
    if (scores)
        gguf_writer_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_F32, l->score, (uint64_t)l->n);
}

static void synth_write_merges(gguf_writer *w, const synth_bpe *b) {
    char **m = malloc(((size_t)b->n_merge + 1) * sizeof *m);
    if (!m) abort();
    for (int i = 0; i < b->n_merge; i++) {
        const char *l = b->str[b->merge[i][0]], *r = b->str[b->merge[i][1]];
        m[i] = malloc(strlen(l) + strlen(r) + 2);
        if (!m[i]) abort();
        sprintf(m[i], "%s %s", l, r);
    }
    gguf_writer_arr_str(w, "tokenizer.ggml.merges", (const char **)m, (uint64_t)b->n_merge);
    for (int i = 0; i < b->n_merge; i++) free(m[i]);
    free(m);
}

// Byte-level BPE: the 256 byte tokens (in byte order, as GPT-2 maps them), merges learned over
// the training text's bytes, then <|endoftext|> (BOS/EOS, control), <|im_start|> (control) and
// <|user|> (user-defined).
static void synth_vocab_bpe_bytes(gguf_writer *w, const char *pre) {
    synth_bpe b = {0};
    int extra = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
        unsigned cp = printable ? (unsigned)c : 256u + (unsigned)extra++;
        char u[3] = {(char)cp, 0, 0};
        if (cp >= 0x80) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 63));
        synth_bpe_add(&b, u, strlen(u));
    }
    char *text = synth_corpus();
    int n = (int)strlen(text);
    int32_t *seq = malloc((size_t)n * sizeof *seq);
    if (!seq) abort();
    for (int i = 0; i < n; i++) seq[i] = (uint8_t)text[i];
    synth_bpe_train(&b, seq, n, 2000, -1);
    free(seq);
    free(text);
    // whole words no merge makes: only ignore_merges types emit them
    static const char *const words[] = {"Hello",
                                        "\xc4\xa0world",
                                        "\xc4\xa0Hello",
                                        "\xc4\xa0"
                                        "discards",
                                        "camelCaseWord",
                                        "\xc4\xa0months",
                                        "\xc4\xa0multiple"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (synth_bpe_find(&b, words[i], strlen(words[i])) < 0)
            synth_bpe_add(&b, words[i], strlen(words[i]));
    synth_list l;
    synth_list_alloc(&l, b.n + 3);
    for (int i = 0; i < b.n; i++) synth_push(&l, b.str[i], 1, 0);
    int eot = l.n;
    synth_push(&l, "<|endoftext|>", 3, 0);
    synth_push(&l, "<|im_start|>", 3, 0);
    synth_push(&l, "<|user|>", 4, 0);
    gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_str(w, "tokenizer.ggml.pre", pre);
    synth_write_tokens(w, &l, 0);
    synth_write_merges(w, &b);
    gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)eot);
    gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eot);
    synth_list_free(&l);
    synth_bpe_free(&b);
}

// BPE that keeps UTF-8 (gemma4-style): <pad> <eos> <bos> <unk>, <start_of_turn> <end_of_turn>
// (control), the 256 <0xXX> byte tokens, then the characters of the "▁"-escaped training text and
// its merges (never across a newline, as the pre-tokenizer splits there).
static void synth_vocab_bpe_raw(gguf_writer *w, const char *pre) {
    static char bytes[256][8];
    synth_bpe b = {0};
    char *text = synth_escaped_text();
    int n;
    int32_t *seq = synth_chars(&b, text, &n);
    int32_t nl = -1;
    for (int i = 0; i < b.n; i++)
        if (!strcmp(b.str[i], "\n")) nl = i;
    synth_bpe_train(&b, seq, n, 1500, nl);
    free(seq);
    free(text);
    static const char *const words[] = {"Hello", "\xe2\x96\x81world", "\xe2\x96\x81Hello",
                                        "\n\n\n"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (synth_bpe_find(&b, words[i], strlen(words[i])) < 0)
            synth_bpe_add(&b, words[i], strlen(words[i]));
    synth_list l;
    synth_list_alloc(&l, b.n + 262);
    synth_push(&l, "<pad>", 3, 0);
    synth_push(&l, "<eos>", 3, 0);
    synth_push(&l, "<bos>", 3, 0);
    synth_push(&l, "<unk>", 2, 0);
    synth_push(&l, "<start_of_turn>", 3, 0);
    synth_push(&l, "<end_of_turn>", 3, 0);
    for (int c = 0; c < 256; c++) {
        snprintf(bytes[c], sizeof bytes[c], "<0x%02X>", c);
        synth_push(&l, bytes[c], 6, 0);
    }
    for (int i = 0; i < b.n; i++) synth_push(&l, b.str[i], 1, 0);
    // gemma4 and whitespace come with their own tokenizer.ggml.model (llama.cpp's "gpt2" session
    // would assert on the spaces the whitespace pre-tokenizer leaves in its words)
    const char *model = !strcmp(pre, "gemma4")       ? "gemma4"
                        : !strcmp(pre, "whitespace") ? "whitespace"
                                                     : "gpt2";
    gguf_writer_str(w, "tokenizer.ggml.model", model);
    gguf_writer_str(w, "tokenizer.ggml.pre", pre);
    synth_write_tokens(w, &l, 0);
    synth_write_merges(w, &b);
    gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 2);
    gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", 1);
    gguf_writer_u32(w, "tokenizer.ggml.unknown_token_id", 3);
    gguf_writer_u32(w, "tokenizer.ggml.padding_token_id", 0);
    synth_list_free(&l);
    synth_bpe_free(&b);
}

// SentencePiece: the escaped text's characters and merges as pieces, a merge's score is minus its
// rank (the order SentencePiece's BPE learned them). spm: <unk> <s> </s> first, llama's defaults;
// gemma: <pad> <eos> <bos> <unk> <mask>(user) <start_of_turn> <end_of_turn>, no space prefix.
static void synth_vocab_spm_kind(gguf_writer *w, int gemma) {
    static char bytes[256][8];
    synth_bpe b = {0};
    char *text = synth_escaped_text();
    int n;
    int32_t *seq = synth_chars(&b, text, &n);
    synth_bpe_train(&b, seq, n, 1500, -1);
    free(seq);
    free(text);
    synth_list l;
    synth_list_alloc(&l, b.n + 264);
    if (gemma) {
        synth_push(&l, "<pad>", 3, 0);
        synth_push(&l, "<eos>", 3, 0);
        synth_push(&l, "<bos>", 3, 0);
        synth_push(&l, "<unk>", 2, 0);
        synth_push(&l, "<mask>", 4, 0);
        synth_push(&l, "<start_of_turn>", 3, 0);
        synth_push(&l, "<end_of_turn>", 3, 0);
    } else {
        synth_push(&l, "<unk>", 2, 0);
        synth_push(&l, "<s>", 3, 0);
        synth_push(&l, "</s>", 3, 0);
    }
    for (int c = 0; c < 256; c++) {
        snprintf(bytes[c], sizeof bytes[c], "<0x%02X>", c);
        synth_push(&l, bytes[c], 6, 0);
    }
    for (int i = 0; i < b.n; i++)
        synth_push(&l, b.str[i], 1, b.rank[i] < 0 ? -1e9f : -(float)b.rank[i]);
    gguf_writer_str(w, "tokenizer.ggml.model", "llama");
    synth_write_tokens(w, &l, 1);
    if (gemma) {
        gguf_writer_str(w, "tokenizer.ggml.pre", "default");
        gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 2);
        gguf_writer_u32(w, "tokenizer.ggml.eos_token_id", 1);
        gguf_writer_u32(w, "tokenizer.ggml.unknown_token_id", 3);
        gguf_writer_u32(w, "tokenizer.ggml.padding_token_id", 0);
        gguf_writer_bool(w, "tokenizer.ggml.add_bos_token", 1);
        gguf_writer_bool(w, "tokenizer.ggml.add_eos_token", 0);
        gguf_writer_bool(w, "tokenizer.ggml.add_space_prefix", 0);
    }
    synth_list_free(&l);
    synth_bpe_free(&b);
}

// WordPiece: [PAD] [UNK] [CLS] [SEP] [MASK] (control), then for every character c of the
// (ASCII-lowercased when `lower`) training text "▁c" and "c", then the pieces of a BPE trained
// within words: "▁..." at a word start, bare continuations otherwise. Words are cut at
// whitespace and at ASCII punctuation, which stands alone.
static void synth_vocab_bert(gguf_writer *w, int lower) {
    char *corpus = synth_corpus();
    size_t tn = strlen(corpus);
    char *text = malloc(6 * tn + 8), *o = text;
    if (!text) abort();
    int in_word = 0;
    for (size_t i = 0; i < tn; i++) {
        char c = corpus[i];
        if (lower && c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        int space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
        int punct = (uint8_t)c < 0x80 && !space && !(c >= '0' && c <= '9') &&
                    !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z');
        if (space) {
            in_word = 0;
            continue;
        }
        if (punct || !in_word) *o++ = '|', memcpy(o, "\xe2\x96\x81", 3), o += 3; // '|': barrier
        *o++ = c;
        in_word = !punct;
    }
    *o = 0;
    free(corpus);
    synth_bpe b = {0};
    int n;
    int32_t *seq = synth_chars(&b, text, &n);
    int32_t bar = -1;
    for (int i = 0; i < b.n; i++)
        if (!strcmp(b.str[i], "|")) bar = i;
    int n_alpha = b.n;
    synth_bpe_train(&b, seq, n, 700, bar);
    free(seq);
    free(text);
    synth_list l;
    synth_list_alloc(&l, 2 * b.n + 8);
    const char *sp[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) synth_push(&l, sp[i], 3, 0);
    char **own = malloc((size_t)n_alpha * sizeof *own);
    if (!own) abort();
    int n_own = 0;
    for (int i = 0; i < n_alpha; i++) { // "▁c" and "c" for each character
        const char *c = b.str[i];
        if (!strcmp(c, "|") || !strcmp(c, "\xe2\x96\x81")) continue;
        own[n_own] = malloc(strlen(c) + 4);
        if (!own[n_own]) abort();
        sprintf(own[n_own], "\xe2\x96\x81%s", c);
        synth_push(&l, own[n_own++], 1, 0);
        synth_push(&l, c, 1, 0);
    }
    for (int i = n_alpha; i < b.n; i++) {
        const char *s = b.str[i];
        int dup = !strcmp(s, "\xe2\x96\x81");
        for (int j = 0; j < l.n && !dup; j++) dup = !strcmp(l.tok[j], s);
        if (!dup) synth_push(&l, s, 1, 0);
    }
    gguf_writer_str(w, "tokenizer.ggml.model", "bert");
    gguf_writer_str(w, "tokenizer.ggml.pre", "default");
    synth_write_tokens(w, &l, 0);
    gguf_writer_u32(w, "tokenizer.ggml.padding_token_id", 0);
    gguf_writer_u32(w, "tokenizer.ggml.unknown_token_id", 1);
    gguf_writer_u32(w, "tokenizer.ggml.bos_token_id", 2);
    gguf_writer_u32(w, "tokenizer.ggml.seperator_token_id", 3);
    gguf_writer_u32(w, "tokenizer.ggml.mask_token_id", 4);
    if (!lower) gguf_writer_bool(w, "tokenizer.ggml.normalizer.lowercase", 0);
    for (int i = 0; i < n_own; i++) free(own[i]);
    free(own);
    synth_list_free(&l);
    synth_bpe_free(&b);
}

// Writes the vocabulary of `kind` into w, trained on the built-in text plus `extra` (len bytes,
// may be NULL); 0 for an unknown kind. The llama hyperparameters are only there for llama.cpp,
// which wants an architecture to load even a vocabulary.
static int synth_tok_vocab(gguf_writer *w, const char *kind, const char *extra, size_t len) {
    synth_extra = extra;
    synth_extra_len = extra ? len : 0;
    gguf_writer_str(w, "general.architecture", "llama");
    gguf_writer_u32(w, "llama.context_length", 2048);
    gguf_writer_u32(w, "llama.embedding_length", 64);
    gguf_writer_u32(w, "llama.block_count", 1);
    gguf_writer_u32(w, "llama.feed_forward_length", 128);
    gguf_writer_u32(w, "llama.attention.head_count", 4);
    gguf_writer_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (!strncmp(kind, "bpe-", 4)) {
        const pretok_type *ty = pretok_find(kind + 4, strlen(kind + 4)); // unknown: byte-level
        if (ty && (ty->flags & PRETOK_RAW))
            synth_vocab_bpe_raw(w, kind + 4);
        else
            synth_vocab_bpe_bytes(w, kind + 4);
    } else if (!strcmp(kind, "spm") || !strcmp(kind, "gemma")) {
        synth_vocab_spm_kind(w, kind[0] == 'g');
    } else if (!strcmp(kind, "bert") || !strcmp(kind, "bert-cased")) {
        synth_vocab_bert(w, !strcmp(kind, "bert"));
    } else {
        return 0;
    }
    return 1;
}

// The kinds with oracle files: one "bpe-<first name>" per pre-tokenizer entry whose regexes and
// tokenization flags no earlier entry has (clean_spaces and add_sep do not change ids, nor does
// no_bos_id with the BOS key these vocabularies have), then
// spm, gemma, bert, bert-cased. Returns the count (at most cap).
static int synth_tok_kinds(char (*names)[64], int cap) {
    const unsigned mask = ~(unsigned)(PRETOK_NO_CLEAN_SPACES | PRETOK_ADD_SEP | PRETOK_NO_BOS_ID);
    int n = 0;
    for (int i = 0; i < pretok_n_types && n < cap; i++) {
        const pretok_type *t = &pretok_types[i];
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen =
                pretok_types[j].re == t->re && (pretok_types[j].flags & mask) == (t->flags & mask);
        if (seen) continue;
        size_t k = strcspn(t->names, " ");
        snprintf(names[n++], 64, "bpe-%.*s", (int)k, t->names);
    }
    const char *other[] = {"spm", "gemma", "bert", "bert-cased"};
    for (int i = 0; i < 4 && n < cap; i++) snprintf(names[n++], 64, "%s", other[i]);
    return n;
}

#endif
