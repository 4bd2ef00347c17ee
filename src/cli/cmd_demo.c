#include <stdio.h>

#include "cli/cli.h"

int cmd_demo(int argc, char **argv) {
    fprintf(stderr, "cterp demo: not built yet\n");
    return 1;
}
