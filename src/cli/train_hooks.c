// Several hooks, one forward: the hook list of --hooks / --layers + --component (shared with
// cterp cache), and `cterp train --model M --hooks ...`: one SAE per hook from one run of the
// model (cterp_train_saes), each in OUT/<hook>, with per-hook config values (--d-sae 2048,4096).
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/platform.h"
#include "core/file.h"
#include "cterp/analysis.h"

// Splits a comma list into at most cap items of up to 255 chars; -1 on an empty item or overflow.
static int split(const char *v, char (*item)[256], int cap) {
    int n = 0;
    for (const char *p = v;; n++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len > 255 || n == cap) return -1;
        memcpy(item[n], p, len), item[n][len] = 0;
        if (!e) return n + 1;
        p = e + 1;
    }
}

// "A", "A-B" or lists of them -> layers in order; -1 with the message printed.
static int parse_layers(const char *cmd, const char *v, int n_layers, int *out, int cap) {
    char(*item)[256] = malloc(64 * sizeof *item);
    int ni = item ? split(v, item, 64) : -1, n = 0;
    for (int i = 0; i < ni; i++) {
        char *end, *dash = strchr(item[i], '-');
        long a = strtol(item[i], &end, 10), b = a;
        int ok = end != item[i] && (*end == 0 || end == dash) && a >= 0;
        if (ok && dash) {
            char *e2;
            b = strtol(dash + 1, &e2, 10);
            ok = e2 != dash + 1 && *e2 == 0 && b >= 0;
        }
        if (!ok) {
            fprintf(stderr,
                    "cterp %s: --layers: '%s': expected layers like 0-5 or 0,2,4 (from-to, both "
                    "included)\n",
                    cmd, item[i]);
            free(item);
            return -1;
        }
        if (b < a) {
            fprintf(stderr, "cterp %s: --layers: bad range '%s': expected A-B with A <= B\n", cmd,
                    item[i]);
            free(item);
            return -1;
        }
        if (b >= n_layers) {
            fprintf(stderr, "cterp %s: --layers: layer %ld outside the model's %d layers (0-%d)\n",
                    cmd, b, n_layers, n_layers - 1);
            free(item);
            return -1;
        }
        for (long l = a; l <= b; l++) {
            if (n == cap) {
                fprintf(stderr, "cterp %s: --layers: more than %d layers\n", cmd, cap);
                free(item);
                return -1;
            }
            out[n++] = (int)l;
        }
    }
    free(item);
    if (ni < 0) {
        fprintf(stderr,
                "cterp %s: --layers: '%s': expected layers like 0-5 or 0,2,4 (no empty item)\n",
                cmd, v);
        return -1;
    }
    return n;
}

enum { MAX_HOOKS = 256 };

int cli_model_hooks(const cli_model_opts *o, const char *cmd, const cterp_model *m, char ***hooks,
                    int *n) {
    *hooks = NULL, *n = 0;
    if (o->hooks && (o->layers || o->hook || o->layer >= 0 || o->component)) {
        fprintf(
            stderr,
            "cterp %s: give --hooks H1,H2,... or --layers with --component, not --hooks with %s\n",
            cmd,
            o->layers       ? "--layers"
            : o->hook       ? "--hook"
            : o->layer >= 0 ? "--layer"
                            : "--component");
        return 2;
    }
    if (o->layers && (o->hook || o->layer >= 0 || !o->component)) {
        fprintf(stderr, "cterp %s: --layers needs --component C (and no --hook or --layer)\n", cmd);
        return 2;
    }
    char(*item)[256] = malloc(MAX_HOOKS * sizeof *item), (*comp)[256] = malloc(16 * sizeof *comp);
    int *layer = malloc(MAX_HOOKS * sizeof *layer), k = 0, rc = 2;
    char **list = NULL;
    if (!item || !comp || !layer) {
        fprintf(stderr, "cterp %s: out of memory\n", cmd);
        goto done;
    }
    if (o->hooks) {
        if ((k = split(o->hooks, item, MAX_HOOKS)) < 0) {
            fprintf(stderr,
                    "cterp %s: --hooks: '%s': expected hook names separated by commas "
                    "(no empty item, at most %d)\n",
                    cmd, o->hooks, MAX_HOOKS);
            goto done;
        }
        for (int i = 0; i < k; i++)
            if (!strchr(item[i], '.') && strncmp(item[i], "hook_", 5)) {
                fprintf(stderr,
                        "cterp %s: --hooks: '%s' is not a hook name (blocks.L.hook_...; for a "
                        "component at some layers use --layers L --component %s)\n",
                        cmd, item[i], item[i]);
                goto done;
            }
    } else {
        int nl = parse_layers(cmd, o->layers, cterp_model_config_of(m)->n_layers, layer, MAX_HOOKS);
        int nc = nl < 0 ? 0 : split(o->component, comp, 16);
        if (nl < 0) goto done;
        if (nc < 0) {
            fprintf(stderr,
                    "cterp %s: --component: '%s': expected components separated by commas\n", cmd,
                    o->component);
            goto done;
        }
        for (int l = 0; l < nl; l++)
            for (int c = 0; c < nc; c++) {
                if (k == MAX_HOOKS) {
                    fprintf(stderr, "cterp %s: more than %d hooks\n", cmd, MAX_HOOKS);
                    goto done;
                }
                if (cterp_hook_name(layer[l], comp[c], item[k++], 256)) {
                    fprintf(stderr, "cterp %s: --component: %s\n", cmd, cterp_last_error());
                    goto done;
                }
            }
    }
    for (int i = 0; i < k; i++) {
        for (int j = 0; j < i; j++)
            if (!strcmp(item[i], item[j])) {
                fprintf(stderr, "cterp %s: %s: %s is given twice\n", cmd,
                        o->hooks ? "--hooks" : "--layers/--component", item[i]);
                goto done;
            }
        int l, d;
        if (cterp_model_hook_info(m, item[i], &l, &d)) {
            fprintf(stderr, "cterp %s: %s: %s\n", cmd, o->hooks ? "--hooks" : "--component",
                    cterp_last_error());
            goto done;
        }
    }
    // one allocation: the pointers, then the names
    list = malloc((size_t)k * (sizeof *list + 256));
    if (!list) {
        fprintf(stderr, "cterp %s: out of memory\n", cmd);
        goto done;
    }
    for (int i = 0; i < k; i++)
        list[i] = (char *)(list + k) + (size_t)i * 256, strcpy(list[i], item[i]);
    *hooks = list, *n = k, rc = 0;
done:
    free(item), free(comp), free(layer);
    return rc;
}

// The latest complete checkpoint in dir/checkpoints (the highest step_N whose manifest checks).
static char *latest_checkpoint(const char *dir) {
    char *cd = file_join(dir, "checkpoints"), *best = NULL;
    long long best_step = -1;
    DIR *d = cd ? opendir(cd) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "step_", 5)) continue;
        long long st = strtoll(e->d_name + 5, &end, 10);
        if (end == e->d_name + 5 || *end || st <= best_step) continue;
        char *p = file_join(cd, e->d_name);
        if (p && cterp_checkpoint_check(p) == CTERP_OK)
            free(best), best = p, best_step = st;
        else
            free(p);
    }
    if (d) closedir(d);
    free(cd);
    return best;
}

typedef struct {
    char *const *hooks;
    int tty;
} log_ctx;

static void hook_progress(int h, const cterp_train_metrics *m, void *user) {
    const log_ctx *c = user;
    fprintf(stderr,
            "%s  step %lld/%lld  %.0f tok/s  loss %.4g  ev %.4f  l0 %.2f  dead %.1f%%  lr %.3g\n",
            c->hooks[h], (long long)m->step, (long long)m->steps, m->tokens_per_s, m->loss,
            m->explained_variance, m->l0, 100 * m->dead_fraction, m->lr);
}

int cli_train_hooks(const cterp_train_config *cfg, const char *const *over_name,
                    const char *const *over_val, int n_over, const cli_model_opts *mo,
                    const char *out, const char *resume, int quiet) {
    if (!mo->data) {
        fprintf(stderr, "cterp train: --model needs --data D (see --help)\n");
        return 2;
    }
    if (!out && !resume) {
        fprintf(stderr,
                "cterp train: --hooks/--layers need --out DIR (one SAE per hook in DIR/<hook>)\n");
        return 2;
    }
    cterp_model *m = NULL;
    if (cterp_model_open(&m, mo->model)) {
        cli_error("train");
        return 1;
    }
    char **hooks = NULL, **res = NULL;
    int n = 0, rc = cli_model_hooks(mo, "train", m, &hooks, &n);
    cterp_train_config *cfgs = rc ? NULL : malloc((size_t)n * sizeof *cfgs);
    cterp_eval_result *ev = rc ? NULL : calloc((size_t)n, sizeof *ev);
    char(*val)[256] = rc ? NULL : malloc(MAX_HOOKS * sizeof *val);
    if (rc) goto done;
    rc = 1;
    if (!cfgs || !ev || !val) {
        fprintf(stderr, "cterp train: out of memory\n");
        goto done;
    }
    for (int h = 0; h < n; h++) cfgs[h] = *cfg;
    for (int i = 0; i < n_over; i++) { // "v1,v2,...": value h for hook h
        const char *name = over_name[i];
        int k = split(over_val[i], val, MAX_HOOKS);
        if (k != n) {
            fprintf(stderr,
                    "cterp train: --%s: '%s': expected one value, or %d values separated by commas "
                    "(one per hook, in the order of %s)\n",
                    name, over_val[i], n, mo->hooks ? "--hooks" : "--layers/--component");
            rc = 2;
            goto done;
        }
        for (int h = 0; h < n; h++)
            if (cterp_train_config_set(&cfgs[h], name, val[h])) {
                cli_error("train");
                rc = 2;
                goto done;
            }
    }
    if (resume) { // the interrupted run's directory: each hook from its latest checkpoint
        res = calloc((size_t)n, sizeof *res);
        for (int h = 0; res && h < n; h++) {
            char *hd = file_join(resume, hooks[h]);
            res[h] = hd ? latest_checkpoint(hd) : NULL;
            free(hd);
            if (!res[h]) {
                fprintf(stderr,
                        "cterp train: --resume %s: no complete checkpoint in %s/%s/checkpoints "
                        "(with --hooks/--layers, --resume takes the run's --out DIR)\n",
                        resume, resume, hooks[h]);
                goto done;
            }
        }
        if (!res) goto done;
        if (!out) out = resume;
    }
    cterp_pipeline_opts po;
    log_ctx lc = {hooks, isatty(2)};
    cli_fill_log fl = {lc.tty, 0};
    cli_pipeline_opts(&po, mo, &fl, quiet);
    po.hook_log = quiet ? NULL : hook_progress;
    po.log_user = &lc;
    cli_progress_state ps;
    cli_progress_init(&ps, mo->store.windows.context_size);
    if (!quiet) po.eval_progress = cli_progress, po.eval_progress_user = &ps;
    printf("Training %d SAEs on %s over %s (context %d), one forward for all:", n, po.model_name,
           mo->data, mo->store.windows.context_size);
    for (int h = 0; h < n; h++) printf(" %s", hooks[h]);
    printf("\n");
    fflush(stdout);
    double t0 = time_now();
    if (cterp_train_saes(m, (const char *const *)hooks, n, mo->data, cfgs, out,
                         (const char *const *)res, &po, NULL, ev)) {
        cli_error("train");
        goto done;
    }
    printf("done: %d SAEs, %lld tokens each, in %.1f s, peak RSS %.0f MB\n", n,
           (long long)(cterp_train_config_steps(&cfgs[0]) * cfgs[0].batch_size), time_now() - t0,
           platform_peak_rss() / 1048576.0);
    for (int h = 0; h < n; h++) {
        printf("saved the SAE of %s to %s/%s\n", hooks[h], out, hooks[h]);
        if (mo->eval_windows > 0) {
            printf("eval of %s (%lld windows of %s):\n", hooks[h], (long long)ev[h].n_windows,
                   mo->data);
            cterp_eval_print(&ev[h], stdout, 0);
        }
    }
    rc = 0;
done:
    for (int h = 0; res && h < n; h++) free(res[h]);
    free(res), free(hooks), free(cfgs), free(ev), free(val);
    cterp_model_free(m);
    return rc;
}
