// cterp demo: toy model of superposition -> SAE with the default config -> recovery report.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/file.h"
#include "cterp/toy.h"
#include "cterp/train.h"

int cmd_demo(int argc, char **argv) {
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    cterp_toy_config tc;
    cterp_toy_config_default(&tc);
    const char *out = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: cterp demo [--out DIR] [--quiet] [--FIELD VALUE ...]\n\n"
                   "Trains an SAE (cterp defaults) on the built-in toy model of superposition\n"
                   "(%d ground-truth features in %d dimensions, ~%.0f active per sample) and reports\n"
                   "how well the features were recovered (MMCS), explained variance, L0 and dead\n"
                   "latents. Any training config field can be overridden (see cterp train --help).\n",
                   tc.n_features, tc.d, tc.avg_active);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (!strncmp(argv[i], "--", 2) && i + 1 < argc) {
            if (cterp_train_config_set(&cfg, argv[i] + 2, argv[i + 1])) {
                cli_error("demo");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "cterp demo: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    return cli_run_toy(&cfg, &tc, out, quiet, 1);
}
