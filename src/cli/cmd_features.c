// cterp features: per-latent statistics, examples and logit effects of an SAE over a corpus
// (written to a directory), or the latents that fire most on one text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"
#include "cterp/features.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: cterp features --model M.gguf --sae DIR --data D --out DIR [options]\n"
        "       cterp features --model M.gguf --sae DIR --text \"...\" [--top N]\n"
        "  --sae DIR               SAE directory; its metadata gives the hook and context size\n"
        "  --out DIR               writes DIR/features.json and DIR/latents.jsonl "
        "(docs/features.md)\n"
        "  --text T                rank the latents by their largest activation on T (BOS added)\n"
        "  --windows N             windows read (0: the whole dataset)\n"
        "  --top N                 top examples per latent (20); with --text: latents listed (10)\n"
        "  --quantile-k K          examples sampled per activation interval (5)\n"
        "  --ctx-left L --ctx-right R  context tokens around an example (5, 5)\n"
        "  --logits N              top and bottom logit-effect tokens (10)\n"
        "  --seed S                quantile sampling seed (0)\n"
        "  --loss-windows N        measure each latent's ablation effect on the next-token loss\n"
        "                          over the first N windows (0: off; costs one forward of a\n"
        "                          window per latent firing in it)\n"
        "  --neighbours K          co-firing (Jaccard) and decoder-cosine neighbours listed (5)\n"
        "  --view-windows N        windows of the per-token 'which latents fire here' view (4)\n"
        "  --neuronpedia OUT.json  also write Neuronpedia's feature-upload batch JSON\n"
        "  --np-model-id ID --np-sae-set NAME --np-layer L  its model id, SAE set and layer\n"
        "                          (defaults: the model file's name, \"cterp\", the hook's layer)\n"
        "%s",
        cli_model_help);
}

// Parses the options shared by features and dashboard; 1 consumed (with value), 0 not ours,
// -1 bad value (message printed).
int cli_features_flag(cterp_features_config *c, const char *cmd, const char *a, const char *v) {
    static const char *const names[] = {
        "--windows", "--top",  "--quantile-k",   "--ctx-left",   "--ctx-right",
        "--logits",  "--seed", "--loss-windows", "--neighbours", "--view-windows"};
    size_t k = 0;
    while (k < sizeof names / sizeof names[0] && strcmp(a, names[k])) k++;
    if (k == sizeof names / sizeof names[0]) return 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < 0 || x > (1 << 30) || (k >= 1 && k <= 2 && x < 1)) {
        fprintf(stderr, "cterp %s: %s: expected a %s integer, got '%s'\n", cmd, a,
                k >= 1 && k <= 2 ? "positive" : "non-negative", v);
        return -1;
    }
    switch (k) {
    case 0:
        c->n_windows = x;
        break;
    case 1:
        c->top_n = (int)x;
        break;
    case 2:
        c->quantile_k = (int)x;
        break;
    case 3:
        c->ctx_left = (int)x;
        break;
    case 4:
        c->ctx_right = (int)x;
        break;
    case 5:
        c->n_logits = (int)x;
        break;
    case 6:
        c->seed = (uint64_t)x;
        break;
    case 7:
        c->loss_windows = x;
        break;
    case 8:
        if (x > 64) {
            fprintf(stderr, "cterp %s: --neighbours: at most 64, got '%s'\n", cmd, v);
            return -1;
        }
        c->n_neighbours = (int)x;
        break;
    default:
        if (x > 4096) {
            fprintf(stderr, "cterp %s: --view-windows: at most 4096, got '%s'\n", cmd, v);
            return -1;
        }
        c->view_windows = (int)x;
        break;
    }
    return 1;
}

// Runs the features pass for the CLI (model + SAE + data from mo); prints a summary to stderr.
int cli_features_run(const char *cmd, const cli_model_opts *mo, const char *sae_dir,
                     cterp_features_config *fc, cterp_features **out) {
    cterp_sae *sae = NULL;
    cterp_model *m = NULL;
    int rc = 1;
    char hook[256] = "";
    *out = NULL;
    if (cterp_sae_load(sae_dir, &sae) || cterp_model_open(&m, mo->model)) {
        cli_error(cmd);
        goto done;
    }
    if ((mo->hook || mo->component) && cli_model_hook(mo, hook, sizeof hook)) {
        cli_error(cmd);
        rc = 2;
        goto done;
    }
    fc->windows = mo->store.windows;
    if (!fc->windows.context_size)
        fc->windows.context_size = sae->meta.context_size > 0 ? sae->meta.context_size : 128;
    fc->data = mo->store.data;
    fc->batch = mo->store.model_batch;
    fc->hook = hook[0] ? hook : NULL;
    cli_progress_state ps;
    cli_progress_init(&ps, fc->windows.context_size);
    fc->progress = cli_progress, fc->progress_user = &ps;
    double t0 = time_now();
    if (cterp_features_collect(m, sae, mo->data, fc, cli_base_name(mo->model), sae_dir, out)) {
        cli_error(cmd);
        goto done;
    }
    const cterp_features *F = *out;
    int64_t dead = 0;
    for (int64_t i = 0; i < F->d_sae; i++) dead += F->f[i].fired == 0;
    fprintf(stderr,
            "%lld latents at %s over %lld windows of %s (%lld tokens) in %.1f s: %lld dead\n",
            (long long)F->d_sae, F->hook, (long long)F->n_windows, mo->data, (long long)F->n_tokens,
            time_now() - t0, (long long)dead);
    rc = 0;
done:
    cterp_sae_free(sae);
    cterp_model_free(m);
    return rc;
}

typedef struct {
    int64_t i;
    float max;
    int pos, n_fired;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->max != y->max) return x->max > y->max ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int on_text(const cli_model_opts *mo, const char *sae_dir, const char *text, int top) {
    cterp_sae *sae = NULL;
    cterp_model *m = NULL;
    int32_t *ids = NULL;
    float *f = NULL;
    ranked *rk = NULL;
    size_t n = 0;
    int rc = 1;
    char hook[256] = "";
    if (cterp_sae_load(sae_dir, &sae) || cterp_model_open(&m, mo->model)) goto fail;
    if ((mo->hook || mo->component) && cli_model_hook(mo, hook, sizeof hook)) goto fail;
    const cterp_tokenizer *tk = cterp_model_tokenizer(m);
    if (!tk) {
        fprintf(stderr, "cterp features: %s has no tokenizer\n", mo->model);
        goto done;
    }
    if (cterp_tokenize(tk, text, strlen(text), 1, 0, &ids, &n)) goto fail;
    if (n == 0) {
        fprintf(stderr, "cterp features: --text gave no tokens\n");
        goto done;
    }
    const int64_t N = sae->d_sae, T = (int64_t)n;
    f = malloc((size_t)(T * N) * sizeof *f);
    rk = malloc((size_t)N * sizeof *rk);
    if (!f || !rk) {
        fprintf(stderr, "cterp features: out of memory\n");
        goto done;
    }
    if (cterp_features_on_tokens(m, sae, hook[0] ? hook : NULL, ids, (int)T, f)) goto fail;
    for (int64_t i = 0; i < N; i++) {
        rk[i] = (ranked){i, 0, -1, 0};
        for (int64_t t = 0; t < T; t++) {
            if (cterp_tokenizer_is_special(tk, ids[t])) continue; // BOS: left out as in training
            float a = f[t * N + i];
            rk[i].n_fired += a > 0;
            if (a > rk[i].max) rk[i].max = a, rk[i].pos = (int)t;
        }
    }
    qsort(rk, (size_t)N, sizeof *rk, cmp_ranked);
    printf("%lld tokens at %s; latents by their largest activation:\n", (long long)T,
           hook[0] ? hook : sae->meta.hook_name);
    printf("%8s %10s %6s  %-16s %s\n", "latent", "max", "pos", "token", "fires on");
    char buf[512];
    for (int k = 0; k < top && k < N && rk[k].max > 0; k++) {
        cterp_token_display(tk, ids[rk[k].pos], buf, sizeof buf);
        char q[540];
        snprintf(q, sizeof q, "'%s'", buf);
        printf("%8lld %10.4g %6d  %-16s %d of %lld tokens\n", (long long)rk[k].i, (double)rk[k].max,
               rk[k].pos, q, rk[k].n_fired, (long long)T);
    }
    printf("per token (top 3 latents):\n");
    for (int64_t t = 0; t < T; t++) {
        cterp_token_display(tk, ids[t], buf, sizeof buf);
        printf("%4lld %-14s", (long long)t, buf);
        int used[3] = {-1, -1, -1};
        for (int k = 0; k < 3; k++) {
            int64_t best = -1;
            for (int64_t i = 0; i < N; i++)
                if (f[t * N + i] > 0 && i != used[0] && i != used[1] &&
                    (best < 0 || f[t * N + i] > f[t * N + best]))
                    best = i;
            if (best < 0) break;
            used[k] = (int)best;
            printf(" %lld (%.3g)", (long long)best, (double)f[t * N + best]);
        }
        printf("\n");
    }
    rc = 0;
    goto done;
fail:
    cli_error("features");
done:
    free(ids), free(f), free(rk);
    cterp_sae_free(sae);
    cterp_model_free(m);
    return rc;
}

int cmd_features(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.store.windows.context_size = 0; // 0: from the SAE's metadata
    cterp_features_config fc;
    cterp_features_config_default(&fc);
    const char *sae_dir = NULL, *out = NULL, *text = NULL, *np_out = NULL;
    cterp_neuronpedia_opts np = {NULL, NULL, -1, NULL};
    int top_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        int mf = v ? cli_model_flag(&mo, a, v) : 0,
            ff = mf == 0 && v ? cli_features_flag(&fc, "features", a, v) : 0;
        if (mf < 0) {
            fprintf(stderr, "cterp features: %s: bad value '%s'\n", a, v);
            return 2;
        } else if (ff < 0) {
            return 2;
        } else if (mf > 0 || ff > 0) {
            top_given |= !strcmp(a, "--top");
            i++;
        } else if (v && !strcmp(a, "--sae")) {
            sae_dir = argv[++i];
        } else if (v && !strcmp(a, "--out")) {
            out = argv[++i];
        } else if (v && !strcmp(a, "--text")) {
            text = argv[++i];
        } else if (v && !strcmp(a, "--neuronpedia")) {
            np_out = argv[++i];
        } else if (v && !strcmp(a, "--np-model-id")) {
            np.model_id = argv[++i];
        } else if (v && !strcmp(a, "--np-sae-set")) {
            np.sae_set = argv[++i];
        } else if (v && !strcmp(a, "--np-layer")) {
            char *end;
            long x = strtol(v, &end, 10);
            if (end == v || *end || x < 0 || x > 100000) {
                fprintf(stderr, "cterp features: --np-layer: expected a layer number, got '%s'\n",
                        v);
                return 2;
            }
            np.layer = (int)x, i++;
        } else {
            fprintf(stderr, "cterp features: unknown option or missing value: %s\n", a);
            return usage(stderr), 2;
        }
    }
    if (!mo.model || !sae_dir || (!text && (!mo.data || !out)) || (text && (mo.data || out))) {
        fprintf(stderr, "cterp features: --model and --sae are required, with either --data and "
                        "--out, or --text\n");
        return usage(stderr), 2;
    }
    if (text && np_out) {
        fprintf(stderr, "cterp features: --neuronpedia needs the corpus pass (--data, --out)\n");
        return 2;
    }
    if (text) return on_text(&mo, sae_dir, text, top_given ? fc.top_n : 10);
    cterp_features *F = NULL;
    int rc = cli_features_run("features", &mo, sae_dir, &fc, &F);
    if (rc) return rc;
    if (cterp_features_save(F, out)) {
        cli_error("features");
        rc = 1;
    } else {
        fprintf(stderr, "wrote %s/features.json and %s/latents.jsonl\n", out, out);
    }
    if (!rc && np_out) {
        if (cterp_features_export_neuronpedia(F, np_out, &np)) {
            cli_error("features");
            rc = 1;
        } else {
            fprintf(stderr, "wrote %s (Neuronpedia feature batch, %lld features)\n", np_out,
                    (long long)F->d_sae);
        }
    }
    cterp_features_free(F);
    return rc;
}
