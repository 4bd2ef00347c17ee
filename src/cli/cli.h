// Subcommands of the cterp binary: each takes (argc, argv) with argv[0] = the command name and
// returns the process exit code (0 ok, 1 failure, 2 usage error).
#ifndef CTERP_CLI_H
#define CTERP_CLI_H

typedef struct {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} cli_command;

int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#include "cterp/toy.h"
#include "cterp/train.h"
// Trains on the toy with cfg, prints progress (unless quiet) and the recovery report; saves to
// out if not NULL. Returns the exit code.
int cli_run_toy(const cterp_train_config *cfg, const cterp_toy_config *tc, const char *out,
                int quiet, int report);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
// Prints metadata, tensors, model config and hook names of a .gguf (used by `cterp inspect`).
int cli_inspect_gguf(const char *path);

#endif
