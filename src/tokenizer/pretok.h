// Pre-tokenizers of BPE vocabularies (tokenizer.ggml.pre) as llama.cpp defines them
// (src/llama-vocab.cpp: the pre-type list in llama_vocab::impl::load, the regexes in
// llm_tokenizer_bpe): one table from the pre names to the regexes that cut the text into words,
// applied one after another, and the flags each type sets. The regexes run on PCRE2 (UTF, UCP).
#ifndef CTERP_PRETOK_H
#define CTERP_PRETOK_H

#include <stddef.h>

#include "cterp/error.h"

enum {
    PRETOK_IGNORE_MERGES = 1 << 0,   // a word that is itself a token is emitted whole
    PRETOK_ADD_BOS = 1 << 1,         // add_bos defaults to on (the GGUF key overrides)
    PRETOK_NO_CLEAN_SPACES = 1 << 2, // clean_spaces off: a detokenizer setting, recorded only
    PRETOK_RAW = 1 << 3,             // words stay UTF-8 (no GPT-2 byte mapping); <0xXX> fallback
    PRETOK_ESCAPE_SPACES = 1 << 4,   // ' ' becomes U+2581 before the split
    PRETOK_NO_BOS_ID = 1 << 5,       // no default BOS id (the GGUF key still sets one)
    PRETOK_ADD_SEP = 1 << 6,         // add_sep: an embedding setting, recorded only
    PRETOK_FORCE_BOS = 1 << 7,       // add_bos on whatever the GGUF says
    PRETOK_NEWLINE_TOKEN = 1 << 8,   // a word of newlines that is a token is emitted whole
    PRETOK_MERGES_OPTIONAL = 1 << 9, // the vocabulary may come without merges
    PRETOK_NO_LOWERCASE = 1 << 10,   // normalizer lowercase defaults to off (whitespace model)
};

typedef struct {
    const char *names;     // the tokenizer.ggml.pre values, space-separated
    const char *type;      // llama.cpp's LLAMA_VOCAB_PRE_TYPE_* name, lower case
    const char *const *re; // regexes, applied in order; NULL-terminated
    unsigned flags;        // PRETOK_*
} pretok_type;

extern const pretok_type pretok_types[];
extern const int pretok_n_types;

// The entry whose names include `name` (len bytes), or NULL.
const pretok_type *pretok_find(const char *name, size_t len);

typedef struct pretok pretok;

// Compiles the regexes of `ty` (translated as pretok.c explains). Errors name the regex.
cterp_status pretok_compile(pretok **out, const pretok_type *ty);
void pretok_free(pretok *p); // NULL is a no-op

// Scratch for pretok_split (PCRE2 match data); one per thread at a time.
void *pretok_scratch_new(void);
void pretok_scratch_free(void *s);

// Cuts text[0, len) (valid UTF-8) into words as llama.cpp's unicode_regex_split does: each regex
// splits every piece the previous one left into its matches and the gaps between them. Calls
// word(ctx, w, n) for each non-empty word, in order; returns 0 as soon as word does, else 1.
typedef int (*pretok_word_fn)(void *ctx, const char *w, size_t n);
int pretok_split(const pretok *p, void *scratch, const char *text, size_t len, pretok_word_fn word,
                 void *ctx);

#endif
