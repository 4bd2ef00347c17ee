// llama.cpp as the tokenizer oracle (scripts/oracle/tok_refs.sh compiles it with oracle_cc):
// loads the vocabulary of a GGUF (vocab_only) and prints llama_tokenize's ids for each text of a
// file in llama.cpp's .inp format (texts separated by "\n__ggml_vocab_test__\n"), one line per
// text, ids separated by spaces.
//
//   tok_ref [-s] [-p] VOCAB.gguf TEXTS
//     -s  add_special (BOS/EOS/SEP as the vocabulary says)    -p  parse_special
//
// Exits 1 with a message if the vocabulary does not load (llama.cpp rejects it).
#define _GNU_SOURCE // memmem
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) exit(1);
    p[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return p;
}

int main(int argc, char **argv) {
    int add_special = 0, parse_special = 0, a = 1;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "-s"))
            add_special = 1;
        else if (!strcmp(argv[a], "-p"))
            parse_special = 1;
        else
            break;
    }
    if (argc - a != 2) {
        fprintf(stderr, "usage: tok_ref [-s] [-p] VOCAB.gguf TEXTS\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(argv[a], mp);
    if (!model) {
        fprintf(stderr, "tok_ref: %s: llama.cpp could not load the vocabulary\n", argv[a]);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    size_t len;
    char *text = read_all(argv[a + 1], &len);
    if (!text) {
        fprintf(stderr, "tok_ref: cannot read %s\n", argv[a + 1]);
        return 1;
    }
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep);
    int32_t cap = 1 << 16;
    llama_token *ids = malloc((size_t)cap * sizeof *ids);
    // memmem, not strstr: a text may hold NUL bytes
    for (char *p = text, *end; (end = memmem(p, len - (size_t)(p - text), sep, seplen));
         p = end + seplen) {
        int32_t n =
            llama_tokenize(vocab, p, (int32_t)(end - p), ids, cap, add_special, parse_special);
        if (n < 0) {
            fprintf(stderr, "tok_ref: a text needs more than %d tokens\n", cap);
            return 1;
        }
        for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    free(ids);
    free(text);
    llama_model_free(model);
    return 0;
}
