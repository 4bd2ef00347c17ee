// cterp steer: generation with one SAE latent added, clamped or ablated at the SAE's hook, shown
// beside the same generation (same prompt, sampler and seed) without the edit.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cterp/features.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: cterp steer --model M.gguf --sae DIR --feature I (--strength X | --clamp V | "
            "--ablate)\n"
            "                   --prompt P [-n N] [--temp T] [--top-p P] [--seed S] [--hook H]\n"
            "  --strength X   add X * W_dec[I] to the activation at every position\n"
            "  --clamp V      set latent I to V through the SAE, keeping the error term\n"
            "  --ablate       set latent I to 0 the same way (only latent I changes)\n"
            "  -n N           tokens to generate (40); --temp 0 is greedy (default), --seed S (0)\n"
            "  --hook H       hook point (default: the SAE's metadata hook_name)\n");
}

static int num(const char *a, const char *v, double *x) {
    char *end;
    *x = strtod(v, &end);
    if (end == v || *end || !isfinite(*x)) {
        fprintf(stderr, "cterp steer: %s: not a number: '%s'\n", a, v);
        return -1;
    }
    return 0;
}

static int gen(cterp_model *m, const int32_t *ids, int n, int n_new, const cterp_sampler_params *sp,
               const cterp_forward_opts *fo, char **text) {
    int32_t *out = NULL;
    int n_out = 0;
    size_t len;
    *text = NULL;
    if (cterp_generate(m, ids, n, n_new, sp, fo, NULL, NULL, &out, &n_out)) return -1;
    if (n_out < n + n_new && n_out == cterp_model_config_of(m)->n_ctx)
        fprintf(stderr, "cterp steer: stopped at the model's context of %d tokens\n", n_out);
    cterp_status s = cterp_detokenize(cterp_model_tokenizer(m), out, (size_t)n_out, 0, text, &len);
    free(out);
    return s ? -1 : 0;
}

int cmd_steer(int argc, char **argv) {
    const char *model = NULL, *sae_dir = NULL, *prompt = NULL, *hook_arg = NULL;
    double feature = 0, value = 0, x;
    int have_feature = 0;
    int mode = -1, modes = 0, n_new = 40;
    cterp_sampler_params sp = {0.0f, 1.0f, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        if (!strcmp(a, "--ablate")) {
            mode = CTERP_STEER_ABLATE, modes++;
            continue;
        }
        if (!v) {
            fprintf(stderr, "cterp steer: unknown option or missing value: %s\n", a);
            return usage(stderr), 2;
        }
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--sae"))
            sae_dir = v;
        else if (!strcmp(a, "--prompt"))
            prompt = v;
        else if (!strcmp(a, "--hook"))
            hook_arg = v;
        else if (!strcmp(a, "--feature")) {
            if (num(a, v, &feature)) return 2;
            if (feature != floor(feature) || fabs(feature) > 9e15) {
                fprintf(stderr, "cterp steer: --feature: expected a latent index, got '%s'\n", v);
                return 2;
            }
            have_feature = 1;
        } else if (!strcmp(a, "--strength") || !strcmp(a, "--clamp")) {
            if (num(a, v, &value)) return 2;
            mode = !strcmp(a, "--clamp") ? CTERP_STEER_CLAMP : CTERP_STEER_ADD, modes++;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--temp") || !strcmp(a, "--top-p") ||
                   !strcmp(a, "--seed")) {
            if (num(a, v, &x)) return 2;
            if (!strcmp(a, "-n"))
                n_new = (int)x;
            else if (!strcmp(a, "--temp"))
                sp.temperature = (float)x;
            else if (!strcmp(a, "--top-p"))
                sp.top_p = (float)x;
            else
                sp.seed = (uint64_t)x;
        } else {
            fprintf(stderr, "cterp steer: unknown option %s\n", a);
            return usage(stderr), 2;
        }
        i++;
    }
    if (!model || !sae_dir || !prompt || !have_feature) {
        fprintf(stderr, "cterp steer: --model, --sae, --feature and --prompt are required\n");
        return usage(stderr), 2;
    }
    if (modes != 1) {
        fprintf(stderr, "cterp steer: give exactly one of --strength X, --clamp V, --ablate\n");
        return usage(stderr), 2;
    }
    if (n_new < 0 || sp.temperature < 0 || sp.top_p <= 0 || sp.top_p > 1) {
        fprintf(stderr, "cterp steer: need -n >= 0, --temp >= 0, 0 < --top-p <= 1\n");
        return 2;
    }
    cterp_sae *sae = NULL;
    cterp_model *m = NULL;
    cterp_steer st;
    memset(&st, 0, sizeof st);
    int32_t *ids = NULL;
    size_t n = 0;
    char *t0 = NULL, *t1 = NULL;
    int rc = 1;
    if (cterp_sae_load(sae_dir, &sae) || cterp_model_open(&m, model)) goto fail;
    const char *hook = hook_arg ? hook_arg : sae->meta.hook_name;
    int layer, dim;
    if (!hook[0]) {
        fprintf(stderr, "cterp steer: %s has no hook_name in its metadata; give --hook\n", sae_dir);
        goto done;
    }
    if (cterp_model_hook_info(m, hook, &layer, &dim)) goto fail;
    if (cterp_steer_init(&st, sae, (int64_t)feature, (cterp_steer_mode)mode, (float)value))
        goto fail;
    if (!cterp_model_tokenizer(m)) {
        fprintf(stderr, "cterp steer: %s has no tokenizer\n", model);
        goto done;
    }
    if (cterp_tokenize(cterp_model_tokenizer(m), prompt, strlen(prompt), 1, 0, &ids, &n)) goto fail;
    if (n == 0) {
        fprintf(stderr, "cterp steer: empty prompt and the vocabulary adds no BOS\n");
        goto done;
    }
    cterp_hook h = {hook, cterp_steer_hook, &st};
    cterp_forward_opts fo = {&h, 1, 0, NULL, 0};
    if (gen(m, ids, (int)n, n_new, &sp, NULL, &t0) || gen(m, ids, (int)n, n_new, &sp, &fo, &t1))
        goto fail;
    if (mode == CTERP_STEER_ADD)
        printf("latent %lld at %s: + %g x W_dec[%lld] at every position\n", (long long)feature,
               hook, value, (long long)feature);
    else
        printf("latent %lld at %s: %s to %g through the SAE (error term kept); its mean activation "
               "before the edit "
               "was %.4g over %lld positions\n",
               (long long)feature, hook, mode == CTERP_STEER_ABLATE ? "ablated" : "clamped",
               mode == CTERP_STEER_ABLATE ? 0.0 : value,
               st.n_rows ? st.sum_before / (double)st.n_rows : 0.0, (long long)st.n_rows);
    printf("--- without ---\n%s\n--- with ---\n%s\n", t0, t1);
    rc = 0;
    goto done;
fail:
    cli_error("steer");
done:
    free(ids), free(t0), free(t1);
    cterp_steer_free(&st);
    cterp_sae_free(sae);
    cterp_model_free(m);
    return rc;
}
