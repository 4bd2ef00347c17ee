// cterp train: --toy | --acts FILE|DIR | --model M.gguf ... (the model path: train_model.c)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/platform.h"
#include "core/dist.h"
#include "core/file.h"
#include "cterp/toy.h"
#include "cterp/train.h"
#include "io/npy.h"

static void usage(void) {
    printf("usage: cterp train (--toy [toy options] | --acts FILE|DIR [--d-in D] | --model M.gguf\n"
           "                   (--hook H | --layer L --component C | --hooks H1,H2,... |\n"
           "                    --layers A-B --component C) --data D) [options]\n\n"
           "data:\n"
           "  --toy                   the toy model of superposition (see toy options)\n"
           "  --acts FILE             activations: .npy float32/16/64 [n, d_in], or raw f32 with --d-in,\n"
           "                          or a cache directory written by cterp cache\n"
           "  --d-in D                row width of a raw f32 file\n"
           "  --acts-out DIR          transcoders: the target cache beside --acts DIR (cterp cache\n"
           "                          --hooks IN,OUT writes both from one run)\n"
           "config:\n"
           "  --config FILE           JSON object of config fields (\"preset\" applied first)\n"
           "  --preset NAME           cterp (default) | mlxterp | saelens\n"
           "  --arch A                standard | topk | batchtopk | jumprelu | matryoshka_batchtopk |\n"
           "                          gated | transcoder | skip_transcoder (these two from --model only:\n"
           "                          --layer L --component mlp reads blocks.L.ln2.hook_normalized ->\n"
           "                          blocks.L.hook_mlp_out; or --hook-in H --hook-out H)\n"
           "                          | crosscoder (--model only: one dictionary over several layers,\n"
           "                          --layers A-B --component resid, or --hooks H1,H2,...)\n"
           "  --matryoshka-widths W   matryoshka_batchtopk: prefix widths, e.g. 128,512 (d_sae appended)\n"
           "  --k K  --expansion-factor E  --d-sae N  --lr X  --lr-scheduler S\n"
           "  --steps S | --tokens T  --batch B  --seed N\n"
           "  --FIELD VALUE           any config field (docs/training.md), dashes or underscores\n"
           "output:\n"
           "  --out DIR               SAE directory (SAELens format) + metrics.jsonl + checkpoints/\n"
           "  --resume DIR            continue from a checkpoint directory (same data); with --hooks or\n"
           "                          --layers: the run's --out DIR (each hook from its latest checkpoint)\n"
           "  --quiet                 no progress lines\n"
           "MPI (mpirun -np P cterp train ...: each rank trains on batch / P rows of every batch):\n"
           "  --dist-reduce M         allreduce (default: MPI's sum) | ordered (gradients summed rank\n"
           "                          0, 1, ... in that order: the same bits run to run; docs/scaling.md)\n"
           "toy options: --toy-features G --toy-d D --toy-active A --toy-decay R\n"
           "             --toy-correlation C --toy-mag-min M --toy-mag-max M --toy-seed S\n"
           "             --toy-save-features F.npy (write the ground-truth directions and exit)\n"
           "%s  --eval-windows N        windows evaluated after training (64; 0: none)\n", cli_model_help);
}

static void progress(const cterp_train_metrics *m, void *user) {
    int tty = *(int *)user;
    fprintf(stderr, "%sstep %lld/%lld  %.0f tok/s  loss %.4g  ev %.4f  l0 %.2f  dead %.1f%%  lr %.3g  eta %.0fs%s",
            tty ? "\r" : "", (long long)m->step, (long long)m->steps, m->tokens_per_s, m->loss,
            m->explained_variance, m->l0, 100 * m->dead_fraction, m->lr, m->eta_s, tty ? "   " : "\n");
    if (tty && m->step == m->steps) fprintf(stderr, "\n");
}

static int set_toy(cterp_toy_config *tc, const char *name, const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end) return -1;
    if (!strcmp(name, "features")) tc->n_features = (int)x;
    else if (!strcmp(name, "d")) tc->d = (int)x;
    else if (!strcmp(name, "active")) tc->avg_active = x;
    else if (!strcmp(name, "decay")) tc->decay = x;
    else if (!strcmp(name, "correlation")) tc->correlation = x;
    else if (!strcmp(name, "mag-min")) tc->mag_min = (float)x;
    else if (!strcmp(name, "mag-max")) tc->mag_max = (float)x;
    else if (!strcmp(name, "seed")) tc->seed = (uint64_t)x;
    else return -2;
    return 0;
}

int cmd_train(int argc, char **argv) {
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    cterp_toy_config tc;
    cterp_toy_config_default(&tc);
    const char *acts = NULL, *acts_out = NULL, *out = NULL, *resume = NULL, *features_out = NULL;
    int toy = 0, quiet = 0;
    int64_t d_in_raw = 0;
    cli_model_opts mo;
    cli_model_opts_default(&mo);
    mo.multi = 1; // --hooks, --layers
    mo.tc = 1;    // --hook-in, --hook-out
    int mf, n_over = 0;
    const char *over_name[64], *over_val[64]; // config flags with a value per hook
    // presets and --config first, so that flags override them wherever they stand
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--preset") && cterp_train_config_preset(&cfg, argv[i + 1])) {
            cli_error("train");
            return 2;
        }
    }
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--config") && cterp_train_config_load_json(&cfg, argv[i + 1])) {
            cli_error("train");
            return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (!strcmp(a, "--toy")) {
            toy = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (i + 1 >= argc || strncmp(a, "--", 2)) {
            fprintf(stderr, "cterp train: unexpected argument '%s' (see --help)\n", a);
            return 2;
        } else if (!strcmp(a, "--preset") || !strcmp(a, "--config")) {
            i++;
        } else if (!strcmp(a, "--acts")) {
            acts = argv[++i];
        } else if (!strcmp(a, "--acts-out")) {
            acts_out = argv[++i];
        } else if (!strcmp(a, "--d-in")) {
            d_in_raw = atoll(argv[++i]);
        } else if (!strcmp(a, "--out")) {
            out = argv[++i];
        } else if (!strcmp(a, "--resume")) {
            resume = argv[++i];
        } else if (!strcmp(a, "--dist-reduce")) {
            const char *v = argv[++i];
            if (strcmp(v, "allreduce") && strcmp(v, "ordered")) {
                fprintf(stderr, "cterp train: --dist-reduce: expected allreduce or ordered, got '%s'\n", v);
                return 2;
            }
            dist_set_reduce(!strcmp(v, "ordered") ? DIST_REDUCE_ORDERED : DIST_REDUCE_ALLREDUCE);
        } else if (!strcmp(a, "--toy-save-features")) {
            features_out = argv[++i];
        } else if ((mf = cli_model_flag(&mo, a, argv[i + 1]))) {
            if (mf < 0) {
                fprintf(stderr, "cterp train: %s: bad value '%s' (see --help)\n", a, argv[i + 1]);
                return 2;
            }
            i++;
        } else if (!strncmp(a, "--toy-", 6)) {
            int r = set_toy(&tc, a + 6, argv[i + 1]);
            if (r) {
                fprintf(stderr, "cterp train: %s: %s '%s'\n", a, r == -1 ? "expected a number, got" : "unknown toy option", argv[i + 1]);
                return 2;
            }
            i++;
        } else if (strchr(argv[i + 1], ',') && strcmp(a, "--matryoshka-widths") &&
                   strcmp(a, "--matryoshka_widths")) { // one value per hook (--hooks, --layers);
                                                       // the widths are one list for every hook
            if (n_over == (int)(sizeof over_name / sizeof over_name[0])) {
                fprintf(stderr, "cterp train: %s: more than %d per-hook config flags\n", a, n_over);
                return 2;
            }
            over_name[n_over] = a + 2, over_val[n_over++] = argv[++i];
        } else {
            if (cterp_train_config_set(&cfg, a + 2, argv[i + 1])) {
                cli_error("train");
                return 2;
            }
            i++;
        }
    }
    if (dist_rank() != 0) quiet = 1; // rank 0 reports for every rank
    if (toy + (acts != NULL) + (mo.model != NULL) != 1) {
        fprintf(stderr, "cterp train: give exactly one data source: --toy, --acts FILE or --model M.gguf (see --help)\n");
        return 2;
    }
    if (acts_out && (!acts || !file_is_dir(acts) || !file_is_dir(acts_out) ||
                     (cfg.architecture != CTERP_ARCH_TRANSCODER &&
                      cfg.architecture != CTERP_ARCH_SKIP_TRANSCODER))) {
        fprintf(stderr, "cterp train: --acts-out %s: the targets of a transcoder: give --acts DIR_IN "
                        "--acts-out DIR_OUT, two cache directories of one run (cterp cache --hooks "
                        "IN,OUT), with --arch transcoder|skip_transcoder\n", acts_out);
        return 2;
    }
    if (!mo.model && (mo.hooks || mo.layers)) {
        fprintf(stderr, "cterp train: %s needs --model (several hooks from one forward; a cache of "
                        "several hooks is trained one hook at a time: --acts DIR/<hook>)\n",
                mo.hooks ? "--hooks" : "--layers");
        return 2;
    }
    if ((mo.hook_in || mo.hook_out) && !mo.model) {
        fprintf(stderr, "cterp train: %s needs --model (a transcoder's pairs come from one forward)\n",
                mo.hook_in ? "--hook-in" : "--hook-out");
        return 2;
    }
    if (mo.model && (mo.hooks || mo.layers) &&
        (cfg.architecture == CTERP_ARCH_TRANSCODER || cfg.architecture == CTERP_ARCH_SKIP_TRANSCODER ||
         mo.hook_in || mo.hook_out)) {
        fprintf(stderr, "cterp train: --arch %s takes one MLP (--layer L --component mlp, or "
                        "--hook-in H --hook-out H), not %s\n",
                cterp_arch_name(cfg.architecture), mo.hooks ? "--hooks" : "--layers");
        return 2;
    }
    if (cfg.architecture == CTERP_ARCH_CROSSCODER) { // several layers into one dictionary
        if (!mo.model || !(mo.hooks || mo.layers) || mo.hook || mo.layer >= 0) {
            fprintf(stderr, "cterp train: --arch crosscoder reads several layers from one forward: give --model M "
                            "with --layers A-B --component resid (or --hooks H1,H2,...)%s\n",
                    mo.hook || mo.layer >= 0 ? ", not --hook or --layer" : "");
            return 2;
        }
        if (n_over) {
            fprintf(stderr, "cterp train: --%s %s: a crosscoder is one dictionary: one value per flag\n",
                    over_name[0], over_val[0]);
            return 2;
        }
        return cli_train_crosscoder(&cfg, &mo, out, resume, quiet);
    }
    if (mo.model && (mo.hooks || mo.layers)) // several hooks, one forward (train_hooks.c)
        return cli_train_hooks(&cfg, over_name, over_val, n_over, &mo, out, resume, quiet);
    if (n_over) {
        fprintf(stderr, "cterp train: --%s %s: one value per hook needs --model with --hooks or --layers\n",
                over_name[0], over_val[0]);
        return 2;
    }
    if (resume) { // the run's config is the checkpoint's; the data sources need its seed and batch
        char *p = file_join(resume, "train_config.json");
        cterp_status s = cterp_checkpoint_check(resume);
        if (!s) s = p ? cterp_train_config_load_json(&cfg, p) : CTERP_ENOMEM;
        free(p);
        if (s) {
            fprintf(stderr, "cterp train: --resume %s: %s\n", resume, cterp_last_error());
            return 1;
        }
    }
    if (toy && features_out && dist_size() > 1) {
        fprintf(stderr, "cterp train: --toy-save-features runs in one process (not under mpirun)\n");
        return 2;
    }
    if (toy && features_out) { // the ground truth, for reference implementations (bench/)
        cterp_toy *tt;
        if (cterp_toy_create(&tt, &tc) ||
            npy_write_f32(features_out, cterp_toy_features(tt), tc.n_features, tc.d)) {
            cli_error("train");
            return 1;
        }
        cterp_toy_free(tt);
        printf("wrote the %d x %d toy features to %s\n", tc.n_features, tc.d, features_out);
        return 0;
    }
    if (mo.model) return cli_train_model(&cfg, &mo, out, resume, quiet);
    if (toy && !resume) return cli_run_toy(&cfg, &tc, out, quiet, 1);

    cterp_toy *toyp = NULL;
    cterp_act_source src = {0};
    cterp_trainer *tr = NULL;
    int rc = 1;
    cterp_sae_meta meta;
    int have_meta = 0;
    cterp_status s = toy ? (cterp_toy_create(&toyp, &tc) ? 1 : cterp_toy_source(&src, toyp))
                         : cli_open_acts(&src, acts, acts_out, d_in_raw, &cfg, &mo, &meta, &have_meta);
    if (s) {
        cli_error("train");
        goto done;
    }
    s = resume ? cterp_trainer_resume(&tr, resume, &src) : cterp_trainer_create(&tr, &cfg, &src);
    if (s) {
        cli_error("train");
        goto done;
    }
    if (have_meta) cterp_trainer_set_meta(tr, &meta);
    int tty = isatty(2);
    cterp_trainer_set_output(tr, out, quiet ? NULL : progress, &tty);
    printf("Training on %s\n", src.description);
    fflush(stdout);
    if (cterp_trainer_run(tr, 0)) {
        cli_error("train");
        goto done;
    }
    const cterp_train_metrics *m = cterp_trainer_last_metrics(tr);
    printf("done: %lld steps, explained variance %.4f, L0 %.2f, dead %.2f%%, %.1f s, "
           "peak RSS %.0f MB\n",
           (long long)m->step, m->explained_variance, m->l0, 100 * m->dead_fraction, m->elapsed_s,
           platform_peak_rss() / 1048576.0);
    if (out) {
        if (cterp_trainer_save(tr, out)) {
            fprintf(stderr, "cterp train: saving to %s: %s\n", out, cterp_last_error());
            goto done;
        }
        printf("saved the SAE to %s\n", out);
    }
    rc = 0;
done:
    cterp_trainer_free(tr);
    cterp_act_source_free(&src);
    cterp_toy_free(toyp);
    return rc;
}
