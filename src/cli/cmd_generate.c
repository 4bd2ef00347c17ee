// cterp generate: sample text from a GGUF model (greedy by default), streaming to stdout.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"
#include "cterp/model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cterp generate --model M.gguf [--prompt P] [-n N] [--temp T] [--top-p P] "
               "[--seed N]\n"
               "  --prompt P   text to continue (default: start from BOS alone)\n"
               "  -n N         tokens to generate (default 64; stops early at EOS)\n"
               "  --temp T     sampling temperature, 0 = greedy (default 0)\n"
               "  --top-p P    nucleus sampling threshold (default 1 = off)\n"
               "  --seed N     random seed for sampling (default 0)\n"
               "  --samples N  N samples, one per line (newlines in a sample become spaces), sample i\n"
               "               seeded with --seed + i: a text corpus for cterp train --model / cache\n");
}

typedef struct {
    const cterp_tokenizer *tok;
    int32_t *ids;
    int n, cap;
    size_t printed;
} stream;

// Decodes the whole sequence and prints what is new: piece boundaries (byte tokens, the
// SentencePiece space prefix) then come out exactly as a one-shot decode would.
static void flush_text(stream *st) {
    char *text;
    size_t len;
    if (cterp_detokenize(st->tok, st->ids, (size_t)st->n, 0, &text, &len) != CTERP_OK) return;
    if (len > st->printed) fwrite(text + st->printed, 1, len - st->printed, stdout);
    fflush(stdout);
    st->printed = len;
    free(text);
}

static int on_token(int32_t t, void *u) {
    stream *st = u;
    if (st->n < st->cap) st->ids[st->n++] = t;
    flush_text(st);
    return 0;
}

// --samples: n samples from the same prompt, sample i seeded with seed + i, one per line.
static cterp_status write_samples(cterp_model *m, const int32_t *prompt, int n_prompt, int n_new,
                                  const cterp_sampler_params *sp0, long samples) {
    const cterp_tokenizer *tok = cterp_model_tokenizer(m);
    int64_t generated = 0;
    double t0 = time_now();
    for (long i = 0; i < samples; i++) {
        cterp_sampler_params sp = *sp0;
        sp.seed = sp0->seed + (uint64_t)i;
        int32_t *out = NULL;
        int n_out = 0;
        char *text = NULL;
        size_t len = 0;
        cterp_status s = cterp_generate(m, prompt, n_prompt, n_new, &sp, NULL, NULL, NULL, &out, &n_out);
        if (!s) s = cterp_detokenize(tok, out, (size_t)n_out, 0, &text, &len);
        if (s) {
            free(out);
            fprintf(stderr, "cterp generate: sample %ld: %s\n", i, cterp_last_error());
            return s;
        }
        for (size_t k = 0; k < len; k++)
            if (text[k] == '\n' || text[k] == '\r') text[k] = ' '; // one sample per line
        fwrite(text, 1, len, stdout);
        putchar('\n');
        generated += n_out - n_prompt;
        free(out), free(text);
    }
    fflush(stdout);
    double dt = time_now() - t0;
    fprintf(stderr, "[%ld samples, %lld generated tokens in %.3f s, %.1f tokens/s]\n", samples,
            (long long)generated, dt, dt > 0 ? generated / dt : 0.0);
    return CTERP_OK;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    int n_new = 64;
    long samples = 0; // 0: one sample, streamed as it is generated
    cterp_sampler_params sp = {0.0f, 1.0f, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout), 0;
        if (!v) {
            fprintf(stderr, "cterp generate: unknown option or missing value: %s\n", a);
            return usage(stderr), 2;
        }
        char *end = NULL;
        if (!strcmp(a, "--model") || !strcmp(a, "-m"))
            model = v;
        else if (!strcmp(a, "--prompt") || !strcmp(a, "-p"))
            prompt = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-tokens"))
            n_new = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--temp"))
            sp.temperature = strtof(v, &end);
        else if (!strcmp(a, "--top-p"))
            sp.top_p = strtof(v, &end);
        else if (!strcmp(a, "--seed"))
            sp.seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--samples"))
            samples = strtol(v, &end, 10);
        else {
            fprintf(stderr, "cterp generate: unknown option %s\n", a);
            return usage(stderr), 2;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "cterp generate: %s: not a number: '%s'\n", a, v);
            return 2;
        }
        i++;
    }
    if (!model) {
        fprintf(stderr, "cterp generate: --model is required\n");
        return usage(stderr), 2;
    }
    if (n_new < 0 || sp.top_p <= 0 || sp.top_p > 1 || sp.temperature < 0 || samples < 0 || samples > INT32_MAX) {
        fprintf(stderr, "cterp generate: need -n >= 0, 0 < --top-p <= 1, --temp >= 0, --samples >= 0\n");
        return 2;
    }
    cterp_model *m;
    if (cterp_model_open(&m, model)) {
        cli_error("generate");
        return 1;
    }
    const cterp_tokenizer *tok = cterp_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "cterp generate: %s has no tokenizer\n", model);
        cterp_model_free(m);
        return 1;
    }
    int32_t *ids = NULL, *out = NULL;
    size_t n = 0;
    int rc = 1, n_out = 0;
    if (cterp_tokenize(tok, prompt ? prompt : "", prompt ? strlen(prompt) : 0, 1, 0, &ids, &n))
        goto fail;
    if (n == 0) { // a vocabulary without BOS and no prompt: nothing to condition on
        fprintf(stderr, "cterp generate: empty prompt and the vocabulary adds no BOS\n");
        goto done;
    }
    int n_ctx = cterp_model_config_of(m)->n_ctx;
    if ((int64_t)n + n_new > n_ctx) {
        if ((int)n >= n_ctx) {
            fprintf(stderr, "cterp generate: the prompt has %zu tokens, the model's context %d\n", n,
                    n_ctx);
            goto done;
        }
        fprintf(stderr,
                "cterp generate: the model's context is %d tokens: stopping after %d new tokens, "
                "not %d (prompt %zu)\n",
                n_ctx, n_ctx - (int)n, n_new, n);
        n_new = n_ctx - (int)n;
    }
    if (samples > 0) {
        rc = write_samples(m, ids, (int)n, n_new, &sp, samples) ? 1 : 0;
        goto done;
    }
    stream st = {tok, malloc(((size_t)n + (size_t)n_new) * sizeof(int32_t)), (int)n, (int)n + n_new,
                 0};
    if (!st.ids) goto fail;
    memcpy(st.ids, ids, n * sizeof *ids);
    flush_text(&st);
    double t0 = time_now();
    if (cterp_generate(m, ids, (int)n, n_new, &sp, NULL, on_token, &st, &out, &n_out)) {
        free(st.ids);
        goto fail;
    }
    double dt = time_now() - t0;
    printf("\n");
    fflush(stdout); // keep the stats line after the text when both go to one terminal/file
    fprintf(stderr, "[%d prompt + %d generated tokens in %.3f s, %.1f tokens/s]\n", (int)n,
            n_out - (int)n, dt, dt > 0 ? (n_out - (int)n) / dt : 0.0);
    free(st.ids);
    rc = 0;
    goto done;
fail:
    cli_error("generate");
done:
    free(ids);
    free(out);
    cterp_model_free(m);
    return rc;
}
