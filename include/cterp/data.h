// cterp datasets and context windows: documents streamed from text or token files, tokenized
// and cut into fixed-length windows with BOS, separators, and a mask of special positions.
//
// Datasets (never loaded whole; one document in memory at a time):
//   FILE.txt (or any other name)  one document per line (empty lines skipped)
//   FILE.jsonl                    one JSON object per line, the document in its "text" field
//   DIR/                          every *.txt file in it, one document per file (sorted by name)
//   FILE.bin                      pretokenized: a flat stream of uint16 ids (uint32 when the name
//                                 ends in ".u32.bin"), windows cut straight from the stream
// Windows (SAELens concat_and_batch_sequences): documents are tokenized without BOS/EOS and
// concatenated with a separator (BOS by default) between them; each window is BOS + the next
// T-1 tokens. The last incomplete window of the dataset is dropped.
#ifndef CTERP_DATA_H
#define CTERP_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"
#include "cterp/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- datasets ------------------------------------------------------------------------------

typedef struct {
    const char *text_field; // jsonl key holding the document (NULL: "text")
    int skip_malformed;     // 1: skip bad jsonl lines and count them; 0: error naming file:line
    int token_bits;         // .bin: 16 or 32 (0: 32 if the name ends in ".u32.bin", else 16)
} cterp_dataset_opts;

typedef struct {
    const char *text; // text datasets: the document (len bytes, not NUL-terminated)
    size_t len;
    const int32_t *tokens; // pretokenized datasets: n_tokens ids (text is NULL)
    size_t n_tokens;
    int continues; // 1: continues the previous document (a .bin stream chunk): no separator
    int64_t offset; // .bin: index in the file of tokens[0]; text: line number (0 for a folder)
} cterp_document;

typedef struct cterp_dataset cterp_dataset;

void cterp_dataset_opts_default(cterp_dataset_opts *o);
// Opens a dataset (kind from the path, see above). o may be NULL (defaults).
cterp_status cterp_dataset_open(cterp_dataset **out, const char *path, const cterp_dataset_opts *o);
void cterp_dataset_close(cterp_dataset *d); // NULL is a no-op
// Next document (pointers valid until the next call); *eof = 1 at the end of the dataset.
// A malformed jsonl line is an error "FILE:LINE: ..." unless skip_malformed.
cterp_status cterp_dataset_next(cterp_dataset *d, cterp_document *doc, int *eof);
// Back to the first document (a new epoch).
cterp_status cterp_dataset_rewind(cterp_dataset *d);
int cterp_dataset_pretokenized(const cterp_dataset *d);
int64_t cterp_dataset_skipped(const cterp_dataset *d); // malformed lines skipped so far
const char *cterp_dataset_path(const cterp_dataset *d);
// What the dataset serves, as a 64-bit hash: its kind, the options that change documents
// (text_field, token_bits), the file names of a folder and the files' contents (sampled above
// 64 MiB a file); not its path or mtime, so a copy has the same fingerprint. *bytes: the
// files' total size. Reads the files (an error names the one that cannot be read).
cterp_status cterp_dataset_fingerprint(const cterp_dataset *d, uint64_t *hash, int64_t *bytes);

// ---- context windows -----------------------------------------------------------------------

#define CTERP_SEP_NONE (-1)
#define CTERP_SEP_BOS (-2)
#define CTERP_SEP_EOS (-3)

typedef struct {
    int context_size;  // T (128)
    int prepend_bos;   // BOS at the start of each window (1)
    int32_t separator; // between concatenated documents: CTERP_SEP_BOS (default), _EOS, _NONE, or an id
    int concat;        // 1: concatenate documents; 0: each document is cut on its own and its
                       // remainder shorter than a window dropped (SAELens disable_concat_sequences)
    int exclude_special; // mask special-token positions (BOS, EOS, separator, control ids) (1)
} cterp_window_config;

typedef struct cterp_windows cterp_windows;

void cterp_window_config_default(cterp_window_config *c);
// Opens the dataset at `path` and cuts windows from it. tok (borrowed) tokenizes text
// datasets and gives BOS/EOS; it may be NULL only for pretokenized data without BOS/EOS use.
cterp_status cterp_windows_open(cterp_windows **out, const char *path, const cterp_dataset_opts *o,
                                const cterp_tokenizer *tok, const cterp_window_config *c);
void cterp_windows_close(cterp_windows *w); // NULL is a no-op
// Next window: tokens (T) and mask (T; 1 = special position, excluded from activations).
// *eof = 1 (tokens untouched) when the dataset has no further complete window.
cterp_status cterp_windows_next(cterp_windows *w, int32_t *tokens, uint8_t *mask, int *eof);
// Back to the first window.
cterp_status cterp_windows_rewind(cterp_windows *w);
// Windows returned since open/rewind (a deterministic replay position).
int64_t cterp_windows_position(const cterp_windows *w);
int cterp_windows_context_size(const cterp_windows *w);
cterp_dataset *cterp_windows_dataset(cterp_windows *w);
// The resolved separator id (-1 for none).
int32_t cterp_windows_separator(const cterp_windows *w);

#ifdef __cplusplus
}
#endif
#endif
