// cterp cache: run a model over a dataset and write its activations at a hook to a cache
// directory (activations.bin + tokens.bin) that `cterp train --acts DIR` trains from.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/file.h"
#include "cterp/acts.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cterp cache --model M.gguf (--hook H | --layer L --component C | --hooks H1,H2,... |\n"
               "                   --layers A-B --component C) --data D --tokens N --out DIR\n"
               "                   [--dtype f32|f16|bf16] [--resume] [options]\n"
               "  --tokens N              activation rows to write; at most one epoch: stops at the end of the\n"
               "                          data and says so (train --acts wraps around it, as training live does)\n"
               "  --out DIR               cache directory (activations.bin, tokens.bin); with --hooks or\n"
               "                          --layers one per hook, DIR/<hook> (train --acts DIR/<hook>)\n"
               "  --dtype T               f32 (default; training from it equals training live), f16, bf16\n"
               "  --resume                go on from where a killed run of the same command stopped (its last\n"
               "                          chunk, DIR/cache.progress); other options are refused naming them.\n"
               "                          The cache equals an uninterrupted run's byte for byte. Under mpirun\n"
               "                          (a sharded cache) resume with the killed run's number of ranks\n"
               "%s", cli_model_help);
}

static void progress(int64_t rows, int64_t max, void *user) {
    int tty = *(int *)user;
    if (tty) fprintf(stderr, "\r%lld / %lld rows", (long long)rows, (long long)max);
}

static const char *dtype_name(cterp_dtype dt) {
    return dt == CTERP_DTYPE_F32 ? "f32" : dt == CTERP_DTYPE_F16 ? "f16" : "bf16";
}

// --hooks / --layers: one cache per hook, out/<hook>, from one run of the model.
static int cache_hooks(const cli_model_opts *mo, const char *out, int64_t tokens, cterp_dtype dt, int resume) {
    cterp_model *m;
    if (cterp_model_open(&m, mo->model)) {
        cli_error("cache");
        return 1;
    }
    char **hooks;
    int n, rc = cli_model_hooks(mo, "cache", m, &hooks, &n);
    if (rc) {
        cterp_model_free(m);
        return rc;
    }
    cterp_cache_info *info = calloc((size_t)n, sizeof *info);
    int tty = isatty(2);
    double t0 = time_now();
    int64_t from = 0;
    cterp_status s = !info ? cterp_error(CTERP_ENOMEM, "out of memory")
                     : resume ? cterp_act_cache_resume(m, cli_base_name(mo->model), (const char *const *)hooks, n, 1,
                                                       mo->data, &mo->store, tokens, dt, out, progress, &tty, info,
                                                       &from)
                              : cterp_act_cache_write_hooks(m, cli_base_name(mo->model), (const char *const *)hooks,
                                                            n, mo->data, &mo->store, tokens, dt, out, progress, &tty,
                                                            info);
    if (tty) fprintf(stderr, "\n");
    cterp_model_free(m);
    if (s) {
        cli_error("cache");
        free(hooks), free(info);
        return 1;
    }
    double dt_s = time_now() - t0;
    if (resume) printf("resumed at row %lld; ", (long long)from);
    printf("wrote %lld rows (%s) of %d hooks from %lld windows of %d tokens, one forward for all, in %.1f s "
           "(%.0f tokens/s)", (long long)info[0].count, dtype_name(dt), n, (long long)info[0].windows,
           info[0].context_size, dt_s, (info[0].count - from) / (dt_s > 0 ? dt_s : 1));
    if (info[0].complete_epoch && info[0].count < tokens)
        printf("; the whole dataset: one epoch, fewer rows than --tokens %lld\n", (long long)tokens);
    else
        printf(info[0].complete_epoch ? "; the whole dataset\n" : "; the first rows of the dataset\n");
    for (int h = 0; h < n; h++) printf("  %s/%s: %lld x %lld\n", out, hooks[h], (long long)info[h].count, (long long)info[h].d_in);
    free(hooks), free(info);
    return 0;
}

int cmd_cache(int argc, char **argv) {
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.multi = 1; // --hooks, --layers
    const char *out = NULL;
    int64_t tokens = 0;
    cterp_dtype dt = CTERP_DTYPE_F32;
    int resume = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        int mf = v ? cli_model_flag(&mo, a, v) : 0;
        if (mf < 0) {
            fprintf(stderr, "cterp cache: %s: bad value '%s'\n", a, v);
            return 2;
        } else if (mf > 0) {
            i++;
        } else if (!strcmp(a, "--resume")) {
            resume = 1;
        } else if (v && !strcmp(a, "--out")) {
            out = argv[++i];
        } else if (v && !strcmp(a, "--tokens")) {
            char *end;
            tokens = strtoll(v, &end, 10);
            if (end == v || *end || tokens < 1) {
                fprintf(stderr, "cterp cache: --tokens: expected a positive integer, got '%s'\n", v);
                return 2;
            }
            i++;
        } else if (v && !strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32")) dt = CTERP_DTYPE_F32;
            else if (!strcmp(v, "f16")) dt = CTERP_DTYPE_F16;
            else if (!strcmp(v, "bf16")) dt = CTERP_DTYPE_BF16;
            else {
                fprintf(stderr, "cterp cache: --dtype: expected f32, f16 or bf16, got '%s'\n", v);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "cterp cache: unknown option or missing value: %s\n", a);
            return usage(stderr), 2;
        }
    }
    if (!mo.model || !mo.data || !out || tokens < 1) {
        fprintf(stderr, "cterp cache: --model, --data, --tokens and --out are required\n");
        return usage(stderr), 2;
    }
    if (mo.hooks || mo.layers) return cache_hooks(&mo, out, tokens, dt, resume);
    char hook[256];
    if (cli_model_hook(&mo, hook, sizeof hook)) {
        cli_error("cache");
        return 2;
    }
    cterp_model *m;
    if (cterp_model_open(&m, mo.model)) {
        cli_error("cache");
        return 1;
    }
    int tty = isatty(2);
    cterp_cache_info info;
    double t0 = time_now();
    int64_t from = 0;
    const char *hp = hook;
    cterp_status s = resume ? cterp_act_cache_resume(m, cli_base_name(mo.model), &hp, 1, 0, mo.data, &mo.store,
                                                     tokens, dt, out, progress, &tty, &info, &from)
                            : cterp_act_cache_write(m, cli_base_name(mo.model), hook, mo.data, &mo.store, tokens, dt,
                                                    out, progress, &tty, &info);
    if (tty) fprintf(stderr, "\n");
    cterp_model_free(m);
    if (s) {
        cli_error("cache");
        return 1;
    }
    double dt_s = time_now() - t0;
    if (resume) printf("resumed at row %lld; ", (long long)from);
    printf("wrote %lld rows x %lld (%s) of %s from %lld windows of %d tokens to %s in %.1f s (%.0f tokens/s)",
           (long long)info.count, (long long)info.d_in, dt == CTERP_DTYPE_F32 ? "f32" : dt == CTERP_DTYPE_F16 ? "f16" : "bf16",
           hook, (long long)info.windows, info.context_size, out, dt_s, (info.count - from) / (dt_s > 0 ? dt_s : 1));
    if (info.complete_epoch && info.count < tokens) // a cache holds one epoch; train --acts wraps around it
        printf("; the whole dataset: one epoch, fewer rows than --tokens %lld\n", (long long)tokens);
    else
        printf(info.complete_epoch ? "; the whole dataset\n" : "; the first rows of the dataset\n");
    return 0;
}
