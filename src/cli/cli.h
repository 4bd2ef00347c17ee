// Subcommands of the cterp binary: each takes (argc, argv) with argv[0] = the command name and
// returns the process exit code (0 ok, 1 failure, 2 usage error).
#ifndef CTERP_CLI_H
#define CTERP_CLI_H

typedef struct {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} cli_command;

int cmd_demo(int argc, char **argv);

#endif
