// cterp: the command line. One file per subcommand (cmd_*.c), thin over the library.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const cli_command commands[] = {
    {"demo", "train an SAE on the built-in toy model of superposition and report recovery",
     cmd_demo},
    {"train", "train an SAE: --toy | --acts FILE|DIR | --model M --data D (see --help)", cmd_train},
    {"cache", "write a model's activations at a hook over a dataset to an activation cache", cmd_cache},
    {"eval", "evaluate an SAE spliced into its model (EV, L0, CE/KL recovered)", cmd_eval},
    {"inspect", "describe a saved SAE directory", cmd_inspect},
    {"generate", "generate text from a GGUF model (greedy, temperature, top-p)", cmd_generate},
    {"tokenize", "tokenize stdin with a GGUF vocabulary", cmd_tokenize},
};

static void usage(FILE *f) {
    fprintf(f, "usage: cterp COMMAND [options]   (cterp COMMAND --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cterp: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
