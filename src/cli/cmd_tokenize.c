// cterp tokenize: text on stdin -> token ids of a GGUF vocabulary.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cterp/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cterp tokenize --model M.gguf [--no-bos] [--ids] < text\n"
               "  reads all of stdin and prints its tokens (BOS as the vocabulary says)\n"
               "  --no-bos   do not add BOS/EOS\n"
               "  --ids      print only the ids, space-separated on one line (default: one\n"
               "             'id<TAB>token' line per token)\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    int add_special = 1, ids_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
        if ((!strcmp(argv[i], "--model") || !strcmp(argv[i], "-m")) && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--no-bos"))
            add_special = 0;
        else if (!strcmp(argv[i], "--ids"))
            ids_only = 1;
        else {
            fprintf(stderr, "cterp tokenize: unknown option or missing value: %s\n", argv[i]);
            return usage(stderr), 2;
        }
    }
    if (!model) {
        fprintf(stderr, "cterp tokenize: --model is required\n");
        return usage(stderr), 2;
    }
    size_t cap = 1 << 16, len = 0, got;
    char *text = malloc(cap);
    while (text && (got = fread(text + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) {
            char *p = realloc(text, cap *= 2);
            if (!p) free(text);
            text = p;
        }
    }
    if (!text) {
        fprintf(stderr, "cterp tokenize: out of memory reading stdin\n");
        return 1;
    }
    cterp_tokenizer *t;
    if (cterp_tokenizer_open(&t, model)) {
        cli_error("tokenize");
        free(text);
        return 1;
    }
    int32_t *ids;
    size_t n;
    int rc = 0;
    if (cterp_tokenize(t, text, len, add_special, 0, &ids, &n)) {
        cli_error("tokenize");
        rc = 1;
    } else {
        for (size_t i = 0; i < n; i++) {
            if (ids_only)
                printf(i ? " %d" : "%d", ids[i]);
            else
                printf("%d\t%s\n", ids[i], cterp_tokenizer_token(t, ids[i]));
        }
        if (ids_only) printf("\n");
        free(ids);
    }
    cterp_tokenizer_free(t);
    free(text);
    return rc;
}
