// Internal: build a tokenizer from an already opened GGUF (the model loader shares its file).
#ifndef CTERP_TOKENIZER_GGUF_H
#define CTERP_TOKENIZER_GGUF_H

#include "cterp/tokenizer.h"
#include "io/gguf.h"

// Copies everything it needs: the tokenizer outlives `g`.
cterp_status tokenizer_from_gguf(cterp_tokenizer **out, const gguf_file *g);

#endif
