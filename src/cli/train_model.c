// The model path of the CLI: flags shared by `train --model`, `cache` and `eval` (model, hook,
// dataset, windows, store), and `cterp train --model` itself (store -> trainer -> SAE -> eval).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/platform.h"
#include "core/dist.h"
#include "core/file.h"
#include "cterp/analysis.h"

void cli_model_opts_default(cli_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->layer = -1;
    cterp_store_config_default(&o->store);
    o->eval_windows = 64;
}

static int parse_i64(const char *v, int64_t *out, int64_t lo) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < lo) return -1;
    *out = x;
    return 0;
}

int cli_model_flag(cli_model_opts *o, const char *a, const char *v) {
    int64_t x = 0;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--hook")) o->hook = v;
    else if (o->multi && !strcmp(a, "--hooks")) o->hooks = v;
    else if (o->multi && !strcmp(a, "--layers")) o->layers = v;
    else if (o->tc && !strcmp(a, "--hook-in")) o->hook_in = v;
    else if (o->tc && !strcmp(a, "--hook-out")) o->hook_out = v;
    else if (!strcmp(a, "--component")) o->component = v;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--text-field")) o->store.data.text_field = v;
    else if (!strcmp(a, "--separator")) {
        if (!strcmp(v, "bos")) o->store.windows.separator = CTERP_SEP_BOS;
        else if (!strcmp(v, "eos")) o->store.windows.separator = CTERP_SEP_EOS;
        else if (!strcmp(v, "none")) o->store.windows.separator = CTERP_SEP_NONE;
        else if (parse_i64(v, &x, 0) == 0 && x <= INT32_MAX) o->store.windows.separator = (int32_t)x;
        else return -1;
    } else {
        static const char *const ints[] = {"--layer", "--context-size", "--model-batch", "--buffer-rows",
                                           "--eval-windows", "--prepend-bos", "--concat",
                                           "--exclude-special", "--skip-malformed", "--overlap"};
        size_t k = 0;
        while (k < sizeof ints / sizeof ints[0] && strcmp(a, ints[k])) k++;
        if (k == sizeof ints / sizeof ints[0]) return 0;
        if (parse_i64(v, &x, 0) || (k >= 5 && x > (k == 9 ? 2 : 1)) || x > INT32_MAX) return -1;
        switch (k) {
        case 0: o->layer = (int)x; break;
        case 1: o->store.windows.context_size = (int)x; break;
        case 2: o->store.model_batch = (int)x; break;
        case 3: o->store.buffer_rows = x; break;
        case 4: o->eval_windows = x; break;
        case 5: o->store.windows.prepend_bos = (int)x; break;
        case 6: o->store.windows.concat = (int)x; break;
        case 7: o->store.windows.exclude_special = (int)x; break;
        case 8: o->store.data.skip_malformed = (int)x; break;
        default: o->store.overlap = (int)x; break;
        }
    }
    return 1;
}

const char *cli_model_help =
    "model and data:\n"
    "  --model M.gguf          the language model\n"
    "  --hook H | --layer L --component C\n"
    "                          hook point: a TransformerLens name (blocks.2.hook_resid_post), or a\n"
    "                          component (mlp, attn, resid, resid_pre, resid_mid, mlp_post) at a layer\n"
    "  --hooks H1,H2,... | --layers A-B[,C...] --component C1[,C2...]\n"
    "                          several hooks from one forward (cterp train, cterp cache): one SAE or\n"
    "                          cache per hook, in DIR/<hook>; config flags take one value or one\n"
    "                          per hook (--d-sae 2048,4096)\n"
    "  --data D                .txt (document per line), folder of .txt, .jsonl (\"text\"), .bin tokens\n"
    "  --context-size N        tokens per window (128); --prepend-bos 0|1 (1); --concat 0|1 (1)\n"
    "  --separator bos|eos|none|ID   between concatenated documents (bos)\n"
    "  --exclude-special 0|1   drop BOS/EOS/separator positions (1)\n"
    "  --text-field F --skip-malformed 0|1   jsonl key (text); skip bad lines instead of failing\n"
    "  --model-batch N         windows per model forward (8)\n"
    "  --buffer-rows N         mixing buffer rows (0: max(32768, 4 x batch), at most the run's rows)\n"
    "  --overlap 0|1|2         the model computes the next refill on its own thread while the SAE\n"
    "                          trains: 1 when that pays (default: the SAE is the slower stage),\n"
    "                          2 always, 0 never (the same rows in the same order)\n";

cterp_status cli_model_hook(const cli_model_opts *o, char *hook, size_t cap) {
    if (o->hooks || o->layers)
        return cterp_error(CTERP_EINVAL, "%s: this command takes one hook (--hook, or --layer with --component)",
                           o->hooks ? "--hooks" : "--layers");
    if (o->hook && (o->component || o->layer >= 0))
        return cterp_error(CTERP_EINVAL, "give --hook, or --layer with --component, not both");
    if (o->hook) return cterp_hook_name(0, o->hook, hook, cap);
    if (o->layer < 0 || !o->component)
        return cterp_error(CTERP_EINVAL, "which activations? give --hook H, or --layer L and --component C");
    return cterp_hook_name(o->layer, o->component, hook, cap);
}

const char *cli_base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

// A rate as people read it: whole tokens from 100 on, three digits below (never "0 tok/s").
static const char *rate(char *buf, double v) {
    snprintf(buf, 32, v >= 100 ? "%.0f" : "%.3g", v);
    return buf;
}

static void progress(const cterp_train_metrics *m, void *user) {
    int tty = *(int *)user;
    char r0[32], r1[32], r2[32];
    // the model and the SAE separately: on a large model the forward is the slow one
    fprintf(stderr, "%sstep %lld/%lld  %s tok/s (model %s, SAE %s)  loss %.4g  ev %.4f  l0 %.2f  dead %.1f%%  lr %.3g  eta %.0fs%s",
            tty ? "\r" : "", (long long)m->step, (long long)m->steps, rate(r0, m->tokens_per_s),
            rate(r1, m->source_tokens_per_s), rate(r2, m->sae_tokens_per_s), m->loss,
            m->explained_variance, m->l0, 100 * m->dead_fraction, m->lr, m->eta_s, tty ? "   " : "\n");
    if (tty && m->step == m->steps) fprintf(stderr, "\n");
}

// The mixing buffer's fills run the model (minutes on a large one): a live line on a terminal,
// else a line at the start, every 5 s and at the end of a fill that took more than a second.
void cli_pipeline_opts(cterp_pipeline_opts *po, const cli_model_opts *mo, cli_fill_log *fl, int quiet) {
    cterp_pipeline_opts_default(po);
    po->model_name = cli_base_name(mo->model);
    po->store = mo->store;
    if (!quiet) po->store.fill_progress = cli_fill_progress, po->store.fill_progress_user = fl;
    po->eval_windows = dist_rank() == 0 ? mo->eval_windows : 0; // under mpirun rank 0 evaluates
}

void cli_fill_progress(int64_t rows, int64_t total, double sec, void *user) {
    cli_fill_log *f = user;
    const int end = rows == total;
    if (!f->tty && rows > 0 && !(end ? sec > 1.0 : sec - f->last >= 5.0)) return;
    f->last = sec;
    const double rate = sec > 0 ? (double)rows / sec : 0;
    fprintf(stderr, "%sfilling the mixing buffer: %lld/%lld rows from the model", f->tty ? "\r" : "",
            (long long)rows, (long long)total);
    if (rows > 0) fprintf(stderr, ", %.0f tok/s, %.0f s", rate, sec);
    if (rows > 0 && !end && rate > 0) fprintf(stderr, ", eta %.0f s", (double)(total - rows) / rate);
    fprintf(stderr, "%s", f->tty ? (end ? "\n" : "   ") : "\n");
}

// A transcoder's hooks: --hook-in H --hook-out H, or --layer L --component mlp (the MLP's
// normalized input, as SAELens's transcoder runner reads it, and its output). 0, or the exit
// code 2 with the message printed.
static int transcoder_hooks(const cli_model_opts *mo, const cterp_model *m, char *in, char *out,
                            size_t cap) {
    if (mo->hook_in || mo->hook_out) {
        if (!mo->hook_in || !mo->hook_out || mo->hook || mo->layer >= 0 || mo->component) {
            fprintf(stderr, "cterp train: a transcoder's hooks are --hook-in H --hook-out H (both, "
                            "and no --hook, --layer or --component), or --layer L --component mlp\n");
            return 2;
        }
        snprintf(in, cap, "%s", mo->hook_in), snprintf(out, cap, "%s", mo->hook_out);
    } else {
        if (mo->hook || mo->layer < 0 || !mo->component) {
            fprintf(stderr, "cterp train: --arch transcoder|skip_transcoder reads one MLP: give "
                            "--layer L --component mlp (or --hook-in H --hook-out H)%s\n",
                    mo->hook ? ", not --hook" : "");
            return 2;
        }
        if (strcmp(mo->component, "mlp") && strcmp(mo->component, "mlp_out")) {
            fprintf(stderr, "cterp train: --component %s: a transcoder replaces the MLP: --component "
                            "mlp (for other hooks: --hook-in H --hook-out H)\n",
                    mo->component);
            return 2;
        }
        snprintf(in, cap, "blocks.%d.ln2.hook_normalized", mo->layer);
        snprintf(out, cap, "blocks.%d.hook_mlp_out", mo->layer);
    }
    int layer, dim;
    for (int k = 0; k < 2; k++)
        if (cterp_model_hook_info(m, k ? out : in, &layer, &dim)) {
            fprintf(stderr, "cterp train: %s: %s\n",
                    mo->hook_in ? (k ? "--hook-out" : "--hook-in") : "--layer/--component",
                    cterp_last_error());
            return 2;
        }
    if (!strcmp(in, out)) {
        fprintf(stderr, "cterp train: --hook-in and --hook-out are both %s (a transcoder maps one "
                        "activation to another; for one hook train an SAE)\n",
                in);
        return 2;
    }
    return 0;
}

// One run's pipeline options (cli_pipeline_opts plus the step log and the resume directory) and
// its closing line.
static void run_opts(cterp_pipeline_opts *po, const cli_model_opts *mo, cli_fill_log *fl, int quiet,
                     int *tty, const char *resume) {
    cli_pipeline_opts(po, mo, fl, quiet);
    po->log = quiet ? NULL : progress;
    po->log_user = tty;
    po->resume = resume;
}

static void print_done(const cterp_sae *sae, double t0, const char *out, const char *what) {
    printf("done: %lld tokens in %.1f s, peak RSS %.0f MB\n", (long long)sae->meta.training_tokens,
           time_now() - t0, platform_peak_rss() / 1048576.0);
    if (out) printf("saved the %s to %s\n", what, out);
}

int cli_train_model(const cterp_train_config *cfg, const cli_model_opts *mo, const char *out,
                    const char *resume, int quiet) {
    if (!mo->data) {
        fprintf(stderr, "cterp train: --model needs --data D (see --help)\n");
        return 2;
    }
    const int tc = cfg->architecture == CTERP_ARCH_TRANSCODER ||
                   cfg->architecture == CTERP_ARCH_SKIP_TRANSCODER;
    if (!tc && (mo->hook_in || mo->hook_out)) {
        fprintf(stderr, "cterp train: %s is for --arch transcoder|skip_transcoder (this run trains "
                        "a %s: --hook H)\n",
                mo->hook_in ? "--hook-in" : "--hook-out", cterp_arch_name(cfg->architecture));
        return 2;
    }
    char hook[256], hook_out[256] = "";
    if (!tc && cli_model_hook(mo, hook, sizeof hook)) {
        cli_error("train");
        return 2;
    }
    cterp_model *m = NULL;
    cterp_sae *sae = NULL;
    int rc = 1, tty = isatty(2);
    if (cterp_model_open(&m, mo->model)) {
        cli_error("train");
        return 1;
    }
    if (tc && (rc = transcoder_hooks(mo, m, hook, hook_out, sizeof hook))) {
        cterp_model_free(m);
        return rc;
    }
    rc = 1;
    cterp_pipeline_opts po;
    cli_fill_log fl = {tty, 0};
    run_opts(&po, mo, &fl, quiet, &tty, resume);
    cli_progress_state ps;
    cli_progress_init(&ps, mo->store.windows.context_size);
    if (!quiet) po.eval_progress = cli_progress, po.eval_progress_user = &ps;
    cterp_eval_result ev;
    printf("Training %s on %s at %s%s%s over %s (context %d)\n", tc ? "a transcoder" : "an SAE",
           po.model_name, hook, tc ? " -> " : "", hook_out, mo->data, mo->store.windows.context_size);
    fflush(stdout);
    double t0 = time_now();
    if (tc ? cterp_train_transcoder(m, hook, hook_out, mo->data, cfg, out, &po, &sae, &ev)
           : cterp_train_sae(m, 0, hook, mo->data, cfg, out, &po, &sae, &ev)) {
        cli_error("train");
        goto done;
    }
    print_done(sae, t0, out, "SAE");
    if (mo->eval_windows > 0) {
        printf("eval (%lld windows of %s):\n", (long long)ev.n_windows, mo->data);
        cterp_eval_print(&ev, stdout, 0);
    }
    rc = 0;
done:
    cterp_sae_free(sae);
    cterp_model_free(m);
    return rc;
}

int cli_eval_crosscoder(cterp_model *m, const cterp_sae *sae, const char *data, const cterp_eval_config *ec,
                        int json) {
    const int L = (int)sae->n_layers;
    double ce0 = 0, *v = calloc((size_t)(3 * (L > 0 ? L : 1)), sizeof *v);
    if (!v || cterp_eval_crosscoder(m, sae, data, ec, &ce0, v, v + L, v + 2 * L)) {
        if (!v) fprintf(stderr, "cterp eval: out of memory\n");
        else cli_error("eval");
        free(v);
        return 1;
    }
    const char *p = sae->meta.hook_name;
    if (json) printf("{\"ce_loss_without_sae\":%.9g,\"layers\":[", ce0);
    else printf("ce_loss_without_sae: %.6g\n", ce0);
    for (int l = 0; l < L; l++) {
        const int n = (int)strcspn(p, ",");
        const double den = v[2 * L + l] - ce0, rec = den != 0 ? (v[2 * L + l] - v[L + l]) / den : NAN;
        if (json)
            printf("%s{\"hook\":\"%.*s\",\"explained_variance\":%.9g,\"ce_loss_with_sae\":%.9g,"
                   "\"ce_loss_with_ablation\":%.9g,\"ce_loss_score\":%.9g}", l ? "," : "", n, p, v[l], v[L + l],
                   v[2 * L + l], rec);
        else
            printf("%.*s: explained_variance %.4f  ce_loss_with_sae %.6g  ce_loss_with_ablation %.6g  "
                   "ce_loss_score %.4f\n", n, p, v[l], v[L + l], v[2 * L + l], rec);
        p += n + (p[n] == ',');
    }
    if (json) printf("]}\n");
    free(v);
    return 0;
}

int cli_train_crosscoder(const cterp_train_config *cfg, const cli_model_opts *mo, const char *out,
                         const char *resume, int quiet) {
    if (!mo->data) {
        fprintf(stderr, "cterp train: --model needs --data D (see --help)\n");
        return 2;
    }
    cterp_model *m = NULL;
    if (cterp_model_open(&m, mo->model)) {
        cli_error("train");
        return 1;
    }
    char **hooks = NULL;
    int n = 0, rc = 2, tty = isatty(2);
    cterp_sae *sae = NULL;
    double *ev = NULL;
    if (cli_model_hooks(mo, "train", m, &hooks, &n)) goto done;
    if (n < 2) {
        fprintf(stderr, "cterp train: --arch crosscoder over one hook (%s): a crosscoder reads two or more layers "
                        "(--layers A-B with A < B); for one layer train an SAE\n", hooks[0]);
        goto done;
    }
    ev = calloc((size_t)n, sizeof *ev);
    if (!ev) {
        fprintf(stderr, "cterp train: out of memory\n");
        goto done;
    }
    rc = 1;
    cterp_pipeline_opts po;
    cli_fill_log fl = {tty, 0};
    run_opts(&po, mo, &fl, quiet, &tty, resume);
    printf("Training a crosscoder on %s over %d hooks (%s .. %s) over %s (context %d)\n", po.model_name, n,
           hooks[0], hooks[n - 1], mo->data, mo->store.windows.context_size);
    fflush(stdout);
    double t0 = time_now();
    if (cterp_train_crosscoder(m, (const char *const *)hooks, n, mo->data, cfg, out, &po, &sae, ev)) {
        cli_error("train");
        goto done;
    }
    print_done(sae, t0, out, "crosscoder");
    if (mo->eval_windows > 0) {
        printf("explained variance per layer on the next %lld rows of the stream:\n",
               (long long)(mo->eval_windows * mo->store.windows.context_size));
        for (int h = 0; h < n; h++) printf("  %-32s %.4f\n", hooks[h], ev[h]);
        cterp_eval_config ec; // each layer spliced in on its own (cterp eval --sae on the directory)
        cterp_eval_config_default(&ec);
        ec.windows = mo->store.windows, ec.data = mo->store.data, ec.batch = mo->store.model_batch;
        ec.n_windows = mo->eval_windows;
        printf("eval (%lld windows of %s, each layer spliced in alone):\n", (long long)ec.n_windows, mo->data);
        if (cli_eval_crosscoder(m, sae, mo->data, &ec, 0)) goto done;
    }
    rc = 0;
done:
    free(hooks), free(ev);
    cterp_sae_free(sae);
    cterp_model_free(m);
    return rc;
}

cterp_status cli_open_acts(cterp_act_source *src, const char *acts, const char *acts_out,
                           int64_t d_in_raw, const cterp_train_config *cfg, const cli_model_opts *mo,
                           cterp_sae_meta *meta, int *have_meta) {
    *have_meta = 0;
    if (!file_is_dir(acts)) return cterp_act_source_file(src, acts, d_in_raw, cfg->seed);
    cterp_cache_info info;
    cterp_status s = cterp_act_cache_info_read(acts, &info);
    if (s) return s;
    cterp_store_config sc = mo->store;
    sc.seed = cfg->seed; // the seed and buffer the live store would use: same rows, same order
    sc.run_rows = cterp_train_rows_needed(cfg);
    cterp_cache_info io;
    if (acts_out && (s = cterp_act_cache_info_read(acts_out, &io))) return s;
    s = acts_out ? cterp_act_pair_cache(src, acts, acts_out, &sc, cfg->batch_size)
                 : cterp_act_source_cache(src, acts, &sc, cfg->batch_size);
    if (s) return s;
    cterp_window_config w;
    cterp_window_config_default(&w);
    w.context_size = info.context_size, w.prepend_bos = info.prepend_bos, w.separator = info.separator;
    w.concat = info.concat, w.exclude_special = info.exclude_special;
    memset(meta, 0, sizeof *meta);
    cterp_store_meta(meta, info.model, info.hook, info.dataset, &w);
    if (acts_out) snprintf(meta->hook_name_out, sizeof meta->hook_name_out, "%s", io.hook);
    *have_meta = 1;
    return CTERP_OK;
}
