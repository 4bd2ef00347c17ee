// Writes the synthetic vocabularies of tests/synth_vocab.h for scripts/oracle/tok_refs.sh
// (compiled against the repository's build, build/libcterp.a).
//
//   tok_synth kinds             the kinds that have oracle files, one a line
//   tok_synth names             every tokenizer.ggml.pre value cterp knows and the kind whose ids
//                               it must give: "NAME KIND" lines
//   tok_synth KIND OUT.gguf [TRAIN]
//                               writes that vocabulary (KIND: a kind, or bpe-<any pre name>),
//                               trained on the file TRAIN too (tests/data/tok_ref/texts.inp)
#include "synth_vocab.h"

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "kinds")) {
        char names[128][64];
        int n = synth_tok_kinds(names, 128);
        for (int i = 0; i < n; i++) printf("%s\n", names[i]);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "names")) {
        const unsigned mask =
            ~(unsigned)(PRETOK_NO_CLEAN_SPACES | PRETOK_ADD_SEP | PRETOK_NO_BOS_ID);
        for (int i = 0; i < pretok_n_types; i++) {
            const pretok_type *t = &pretok_types[i], *rep = t;
            for (int j = 0; j < i; j++)
                if (pretok_types[j].re == t->re &&
                    (pretok_types[j].flags & mask) == (t->flags & mask)) {
                    rep = &pretok_types[j];
                    break;
                }
            size_t k = strcspn(rep->names, " ");
            for (const char *p = t->names; *p;) {
                size_t m = strcspn(p, " ");
                printf("%.*s bpe-%.*s\n", (int)m, p, (int)k, rep->names);
                p += m;
                while (*p == ' ') p++;
            }
        }
        return 0;
    }
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: tok_synth kinds | names | KIND OUT.gguf [TRAIN]\n");
        return 2;
    }
    char *extra = NULL;
    size_t len = 0;
    if (argc == 4) {
        FILE *f = fopen(argv[3], "rb");
        if (!f || fseek(f, 0, SEEK_END) || (len = (size_t)ftell(f), fseek(f, 0, SEEK_SET))) {
            fprintf(stderr, "tok_synth: cannot read %s\n", argv[3]);
            return 1;
        }
        extra = malloc(len + 1);
        if (!extra || fread(extra, 1, len, f) != len) return 1;
        fclose(f);
    }
    gguf_writer *w = gguf_writer_new(0);
    if (!synth_tok_vocab(w, argv[1], extra, len)) {
        fprintf(stderr, "tok_synth: unknown kind '%s'\n", argv[1]);
        return 2;
    }
    if (gguf_writer_write(w, argv[2])) {
        fprintf(stderr, "tok_synth: %s\n", cterp_last_error());
        return 1;
    }
    gguf_writer_free(w);
    free(extra);
    return 0;
}
