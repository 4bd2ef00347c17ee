// cterp eval: an SAE spliced into its model at its hook (a transcoder in place of the MLP it
// replaces), scored over a dataset.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cterp/analysis.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cterp eval --model M.gguf --sae DIR --data D [--json] [--windows N] [options]\n"
               "  --sae DIR               SAE directory (SAELens format); its metadata gives the hook and\n"
               "                          context size unless --hook / --context-size say otherwise;\n"
               "                          a transcoder reads its hook_name and replaces its hook_name_out\n"
               "                          (the MLP's output): CE loss with it spliced in, EV of that output\n"
               "  --hook-in H --hook-out H   a transcoder's hooks, instead of its cfg.json's\n"
               "  --windows N             windows evaluated (64)\n"
               "  --json                  one JSON object instead of name: value lines\n"
               "  --saebench OUT.json     also write SAEBench's core eval output (CoreEvalOutput)\n"
               "%s", cli_model_help);
}

int cmd_eval(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.store.windows.context_size = 0; // 0: from the SAE's metadata
    mo.tc = 1;                         // --hook-in, --hook-out
    const char *sae_dir = NULL, *saebench = NULL;
    int json = 0;
    int64_t windows = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        int mf = v ? cli_model_flag(&mo, a, v) : 0;
        if (mf < 0) {
            fprintf(stderr, "cterp eval: %s: bad value '%s'\n", a, v);
            return 2;
        } else if (mf > 0) {
            i++;
        } else if (v && !strcmp(a, "--sae")) {
            sae_dir = argv[++i];
        } else if (v && !strcmp(a, "--saebench")) {
            saebench = argv[++i];
        } else if (v && !strcmp(a, "--windows")) {
            char *end;
            windows = strtoll(v, &end, 10);
            if (end == v || *end || windows < 1) {
                fprintf(stderr, "cterp eval: --windows: expected a positive integer, got '%s'\n", v);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "cterp eval: unknown option or missing value: %s\n", a);
            return usage(stderr), 2;
        }
    }
    if (!mo.model || !sae_dir || !mo.data) {
        fprintf(stderr, "cterp eval: --model, --sae and --data are required\n");
        return usage(stderr), 2;
    }
    cterp_sae *sae = NULL;
    cterp_model *m = NULL;
    int rc = 1;
    int64_t *fired = NULL, *wfired = NULL;
    char hook[256] = "";
    if (cterp_sae_load(sae_dir, &sae) || cterp_model_open(&m, mo.model)) {
        cli_error("eval");
        goto done;
    }
    if ((mo.hook_in || mo.hook_out) && !cterp_sae_is_transcoder(sae)) {
        fprintf(stderr, "cterp eval: %s is for transcoders; %s is a %s (--hook H)\n",
                mo.hook_in ? "--hook-in" : "--hook-out", sae_dir, cterp_arch_name(sae->arch));
        rc = 2;
        goto done;
    }
    if (mo.hook_in && (mo.hook || mo.component)) {
        fprintf(stderr, "cterp eval: give a transcoder's input hook once: --hook-in H, not with %s\n",
                mo.hook ? "--hook" : "--component");
        rc = 2;
        goto done;
    }
    if ((mo.hook || mo.component) && cli_model_hook(&mo, hook, sizeof hook)) {
        cli_error("eval");
        rc = 2;
        goto done;
    }
    cterp_eval_config ec;
    cterp_eval_config_default(&ec);
    ec.windows = mo.store.windows;
    if (!ec.windows.context_size) ec.windows.context_size = sae->meta.context_size > 0 ? sae->meta.context_size : 128;
    ec.data = mo.store.data;
    ec.batch = mo.store.model_batch;
    ec.n_windows = windows;
    ec.hook = mo.hook_in ? mo.hook_in : hook[0] ? hook : NULL;
    ec.hook_out = mo.hook_out;
    cli_progress_state ps;
    cli_progress_init(&ps, ec.windows.context_size);
    ec.progress = cli_progress, ec.progress_user = &ps;
    if (sae->arch == CTERP_ARCH_CROSSCODER) { // its own hooks (cfg.json hook_names), one layer at a time
        if (ec.hook || ec.hook_out || saebench) {
            fprintf(stderr, "cterp eval: %s is a crosscoder: it is evaluated at its own hooks (no --hook, "
                            "--layer/--component, --hook-in/--hook-out or --saebench)\n", sae_dir);
            rc = 2;
            goto done;
        }
        rc = cli_eval_crosscoder(m, sae, mo.data, &ec, json);
        goto done;
    }
    if (saebench) {
        fired = calloc((size_t)sae->d_sae, sizeof *fired);
        wfired = calloc((size_t)sae->d_sae, sizeof *wfired);
        if (!fired || !wfired) {
            fprintf(stderr, "cterp eval: out of memory\n");
            goto done;
        }
        ec.fired = fired, ec.windows_fired = wfired;
    }
    cterp_eval_result r;
    if (cterp_eval(m, sae, mo.data, &ec, &r)) {
        cli_error("eval");
        goto done;
    }
    cterp_eval_print(&r, stdout, json);
    if (saebench) {
        const char *name = sae->meta.model_name[0] ? sae->meta.model_name : cli_base_name(mo.model);
        if (cterp_eval_saebench_write(saebench, sae, &ec, &r, fired, wfired, name, mo.data)) {
            cli_error("eval");
            goto done;
        }
        fprintf(stderr, "wrote %s (SAEBench core eval output)\n", saebench);
    }
    rc = 0;
done:
    free(fired), free(wfired);
    cterp_sae_free(sae);
    cterp_model_free(m);
    return rc;
}
