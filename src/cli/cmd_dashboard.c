// cterp dashboard: self-contained HTML pages of an SAE's latents (from a features directory, or
// computed here), plus a training report; cterp report: the training report alone.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"
#include "cterp/dashboard.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: cterp dashboard --features DIR --out DIR [--metrics FILE] [--title T]\n"
        "       cterp dashboard --model M.gguf --sae DIR --data D --out DIR [features options]\n"
        "  --features DIR   the output of cterp features\n"
        "  --model/--sae/--data  run the features pass first (kept in OUT/features/)\n"
        "  --metrics FILE   a training metrics.jsonl: adds OUT/training.html (default with --sae:\n"
        "                   SAE_DIR/metrics.jsonl when it exists)\n"
        "  --title T        page title\n"
        "writes OUT/index.html (sortable table of latents) and OUT/f/I.html per latent;\n"
        "`cterp features --help` lists the features options\n");
}

int cmd_dashboard(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.store.windows.context_size = 0;
    cterp_features_config fc;
    cterp_features_config_default(&fc);
    const char *feats = NULL, *sae_dir = NULL, *out = NULL;
    cterp_dashboard_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        int mf = v ? cli_model_flag(&mo, a, v) : 0,
            ff = mf == 0 && v ? cli_features_flag(&fc, "dashboard", a, v) : 0;
        if (mf < 0) {
            fprintf(stderr, "cterp dashboard: %s: bad value '%s'\n", a, v);
            return 2;
        } else if (ff < 0) {
            return 2;
        } else if (mf > 0 || ff > 0) {
            i++;
        } else if (v && !strcmp(a, "--features")) {
            feats = argv[++i];
        } else if (v && !strcmp(a, "--sae")) {
            sae_dir = argv[++i];
        } else if (v && !strcmp(a, "--out")) {
            out = argv[++i];
        } else if (v && !strcmp(a, "--metrics")) {
            o.metrics = argv[++i];
        } else if (v && !strcmp(a, "--title")) {
            o.title = argv[++i];
        } else {
            fprintf(stderr, "cterp dashboard: unknown option or missing value: %s\n", a);
            return usage(stderr), 2;
        }
    }
    if (!out || (!feats && (!mo.model || !sae_dir || !mo.data)) ||
        (feats && (mo.model || sae_dir))) {
        fprintf(stderr,
                "cterp dashboard: --out and either --features DIR or --model, --sae and --data\n");
        return usage(stderr), 2;
    }
    cterp_features *F = NULL;
    char *metrics = NULL;
    int rc = 1;
    if (feats) {
        if (cterp_features_load(feats, &F)) {
            cli_error("dashboard");
            return 1;
        }
    } else {
        if ((rc = cli_features_run("dashboard", &mo, sae_dir, &fc, &F))) return rc;
        rc = 1;
        char *fd = file_join(out, "features");
        if (!fd || cterp_features_save(F, fd)) {
            fprintf(stderr, "cterp dashboard: %s\n", fd ? cterp_last_error() : "out of memory");
            free(fd);
            goto done;
        }
        free(fd);
        metrics = file_join(sae_dir, "metrics.jsonl");
        if (!o.metrics && metrics && file_exists(metrics)) o.metrics = metrics;
    }
    cli_progress_state ps;
    cli_progress_init(&ps, 0);
    o.progress = cli_progress, o.progress_user = &ps;
    double t0 = time_now();
    if (cterp_dashboard_write(F, out, &o)) {
        cli_error("dashboard");
        goto done;
    }
    fprintf(stderr, "wrote %s/index.html and %lld latent pages%s in %.1f s\n", out,
            (long long)F->d_sae, o.metrics ? " and training.html" : "", time_now() - t0);
    rc = 0;
done:
    free(metrics);
    cterp_features_free(F);
    return rc;
}

int cmd_report(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *title = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: cterp report METRICS.jsonl --out report.html [--title T]\n"
                   "  loss, MSE, sparsity and aux losses, explained variance, L0, dead fraction "
                   "and LR over steps\n");
            return 0;
        }
        if (v && !strcmp(a, "--out"))
            out = argv[++i];
        else if (v && !strcmp(a, "--title"))
            title = argv[++i];
        else if (a[0] != '-' && !in)
            in = a;
        else {
            fprintf(stderr, "cterp report: unknown option or missing value: %s\n", a);
            return 2;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "usage: cterp report METRICS.jsonl --out report.html [--title T]\n");
        return 2;
    }
    if (cterp_report_write(in, out, title)) {
        cli_error("report");
        return 1;
    }
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}
