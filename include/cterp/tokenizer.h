// Tokenizers read from a GGUF vocabulary, reproducing llama.cpp's ids:
//   - SentencePiece-BPE (tokenizer.ggml.model = "llama"): score-ordered merges over UTF-8
//     characters, "▁" for spaces, a space prefix unless add_space_prefix is false (Gemma),
//     byte fallback <0xXX>.
//   - BPE ("gpt2", and "gemma4"): the pre-tokenizer of tokenizer.ggml.pre (every type llama.cpp
//     knows: gpt-2, llama-bpe, qwen2, falcon, deepseek-*, ...; docs/model.md lists them) cuts
//     the text into words with its regexes, then bytes_to_unicode and merges by rank.
//   - WordPiece ("bert"): BertNormalizer (lowercase, strip accents, punctuation and CJK split),
//     longest-match pieces, [UNK] for a word it cannot cover.
// Special tokens: user-defined tokens in the text always become their id; control tokens only
// when parse_special is set. BOS/EOS follow the GGUF add_bos_token/add_eos_token keys with
// llama.cpp's defaults (SPM: BOS on; BPE: per pre-tokenizer type, e.g. off for gpt-2 and on for
// llama-bpe; BERT: [CLS] ... [SEP]).
#ifndef CTERP_TOKENIZER_H
#define CTERP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cterp_tokenizer cterp_tokenizer;

// Loads the vocabulary of a GGUF file (model or vocab-only).
cterp_status cterp_tokenizer_open(cterp_tokenizer **out, const char *gguf_path);
void cterp_tokenizer_free(cterp_tokenizer *t); // NULL is a no-op

// Text (len bytes, any bytes) -> malloc'd ids (*n of them; *ids may be NULL when *n == 0).
// add_special: BOS/EOS as the vocabulary says; parse_special: control-token text -> its id.
cterp_status cterp_tokenize(const cterp_tokenizer *t, const char *text, size_t len, int add_special,
                            int parse_special, int32_t **ids, size_t *n);

// Ids -> malloc'd NUL-terminated text (*len bytes). Control tokens (BOS, EOS) are dropped
// unless `keep_special`; the SentencePiece space prefix of the first piece is removed.
cterp_status cterp_detokenize(const cterp_tokenizer *t, const int32_t *ids, size_t n,
                              int keep_special, char **text, size_t *len);

int32_t cterp_tokenizer_n_vocab(const cterp_tokenizer *t);
int32_t cterp_tokenizer_bos(const cterp_tokenizer *t); // -1 if none
int32_t cterp_tokenizer_eos(const cterp_tokenizer *t); // -1 if none
int cterp_tokenizer_add_bos(const cterp_tokenizer *t);
// 1 for control/unknown/unused tokens (never produced from plain text, dropped by activation
// stores)
int cterp_tokenizer_is_special(const cterp_tokenizer *t, int32_t id);
// The vocabulary string of a token (as stored: "▁the", "Ġthe", "<0x0A>"), NUL-terminated.
const char *cterp_tokenizer_token(const cterp_tokenizer *t, int32_t id);
// "llama" (SentencePiece), "gpt2" (BPE) or "bert" (WordPiece).
const char *cterp_tokenizer_kind(const cterp_tokenizer *t);
// BPE: the pre-tokenizer type as llama.cpp names it ("gpt2", "llama3", "qwen2", "default", ...;
// several tokenizer.ggml.pre values share one); "" for the other kinds.
const char *cterp_tokenizer_pre(const cterp_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif
