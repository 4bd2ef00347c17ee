// A small text corpus sampled from a model (seeded): n stories of up to n_tokens tokens each,
// one per line, generated from BOS with temperature 1. Used by the pipeline tests so that the
// activations come from text the model itself finds natural.
#ifndef CTERP_TEST_STORIES_H
#define CTERP_TEST_STORIES_H

#include <stdio.h>
#include <stdlib.h>

#include "cterp/model.h"

static inline int write_story_corpus(cterp_model *m, const char *path, int n_stories, int n_tokens,
                                     uint64_t seed) {
    const cterp_tokenizer *tk = cterp_model_tokenizer(m);
    FILE *f = fopen(path, "w");
    if (!f || !tk) return -1;
    int32_t bos = cterp_tokenizer_bos(tk);
    for (int i = 0; i < n_stories; i++) {
        cterp_sampler_params p = {1.0f, 1.0f, seed * 1000 + (uint64_t)i};
        int32_t *ids;
        int n;
        char *text;
        size_t len;
        if (cterp_generate(m, &bos, 1, n_tokens, &p, NULL, NULL, NULL, &ids, &n)) return -1;
        if (cterp_detokenize(tk, ids, (size_t)n, 0, &text, &len)) return -1;
        for (size_t k = 0; k < len; k++)
            if (text[k] == '\n' || text[k] == '\r') text[k] = ' '; // one story per line
        fprintf(f, "%s\n", text);
        free(ids), free(text);
    }
    return fclose(f) ? -1 : 0;
}

#endif
