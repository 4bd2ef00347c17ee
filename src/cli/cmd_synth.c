// cterp synth: train an SAE on a synthetic world with known features and score it (MCC, F1 ...);
// cterp bench --synth: several architectures on the same generated data, side by side.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/file.h"
#include "cterp/synth.h"
#include "cterp/train.h"

typedef struct {
    const char *preset, *out, *archs;
    int json, quiet, toy;
    int64_t eval_samples;
    cterp_synth_config sc;
    cterp_toy_config tc;
    cterp_train_config cfg;
} synth_opts;

typedef struct {
    cterp_synth_metrics m;
    double train_s;
} synth_result;

static void usage(const char *cmd) {
    int bench = !strcmp(cmd, "bench");
    printf("usage: cterp %s --preset NAME %s[--samples N | --steps S] [--seed S]\n"
           "       [--data-seed S] [--eval-samples N] [--json] [--quiet]%s [--FIELD VALUE ...]\n\n",
           bench ? "bench --synth" : "synth", bench ? "--archs A,B,... " : "[--arch A] ",
           bench ? "" : " [--out DIR]");
    printf(
        "%s"
        "a synthetic world with known features (SynthSAEBench-style: Zipf firing, a hierarchy\n"
        "with mutually exclusive children, low-rank correlated firing, magnitudes, a bias),\n"
        "streamed, never stored; then scores it on fresh samples against the true features:\n"
        "  mcc          optimal one-to-one matching of decoder rows and features, mean |cos|\n"
        "  mmcs         mean over true features of the best cosine to a decoder row\n"
        "  mmcs_reverse mean over decoder rows of the best cosine to a true feature\n"
        "  uniqueness   distinct best-matching features / d_sae\n"
        "  precision, recall, f1  each latent as a detector of its best-matching feature\n"
        "  ev, l0, dead, shrinkage  reconstruction and sparsity on the same samples\n\n"
        "--preset: %s (toy: the world and SAE of `cterp demo`; synth16k: SynthSAEBench-16k,\n"
        "          16,384 features in 768 dims, SAE width 4096, k 25, 200M samples; tiny: tests)\n"
        "--samples N   training samples (= --tokens N; the steps follow from --batch)\n"
        "--data-seed S the world's seed (default: the preset's); --seed sets the SAE's\n"
        "--eval-samples N  held-out samples scored (default 100000)\n"
        "--json        one JSON line per run with every metric\n"
        "any training config field as --FIELD VALUE (--arch, --k, --d-sae, --lr, --batch ...;\n"
        "see cterp train --help)\n",
        bench ? "Trains one SAE per architecture of --archs on the same stream (same seed, "
                "same\nsamples) on "
              : "Trains an SAE on ",
        cterp_synth_preset_names());
}

static int parse_i64(const char *cmd, const char *flag, const char *v, int64_t lo, int64_t *out) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || x != floor(x) || x < (double)lo || x > 9e18) {
        fprintf(stderr, "cterp %s: %s: got '%s', expected an integer >= %lld\n", cmd, flag, v,
                (long long)lo);
        return -1;
    }
    *out = (int64_t)x;
    return 0;
}

// 0 ok, 1 --help printed, 2 usage error (printed)
static int parse(int argc, char **argv, int first, const char *cmd, synth_opts *o) {
    memset(o, 0, sizeof *o);
    o->eval_samples = 100000;
    cterp_train_config_default(&o->cfg);
    cterp_toy_config_default(&o->tc);
    int have_steps = 0;
    for (int i = first; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(cmd);
            return 1;
        }
    for (int i = first; i + 1 < argc; i++) // the world first: flags override its SAE defaults
        if (!strcmp(argv[i], "--preset")) o->preset = argv[i + 1];
    if (!o->preset) {
        fprintf(stderr, "cterp %s: --preset is required: one of %s\n", cmd,
                cterp_synth_preset_names());
        return 2;
    }
    if (cterp_synth_preset(o->preset, &o->sc, &o->toy, &o->cfg)) {
        cli_error(cmd);
        return 2;
    }
    for (int i = first; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config") && cterp_train_config_load_json(&o->cfg, argv[i + 1])) {
            cli_error(cmd);
            return 2;
        }
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        if (!strcmp(a, "--synth")) continue; // cterp bench --synth
        if (strncmp(a, "--", 2) || i + 1 >= argc) {
            fprintf(stderr, "cterp %s: unexpected argument '%s' (see --help)\n", cmd, a);
            return 2;
        }
        const char *v = argv[++i];
        int64_t n;
        if (!strcmp(a, "--preset") || !strcmp(a, "--config")) {
            continue;
        } else if (!strcmp(a, "--out")) {
            o->out = v;
        } else if (!strcmp(a, "--archs")) {
            o->archs = v;
        } else if (!strcmp(a, "--samples") || !strcmp(a, "--tokens")) {
            if (parse_i64(cmd, a, v, 1, &n)) return 2;
            o->cfg.training_tokens = n;
            if (!have_steps) o->cfg.training_steps = 0;
        } else if (!strcmp(a, "--eval-samples")) {
            if (parse_i64(cmd, a, v, 1, &o->eval_samples)) return 2;
        } else if (!strcmp(a, "--data-seed")) {
            if (parse_i64(cmd, a, v, 0, &n)) return 2;
            o->sc.seed = (uint64_t)n, o->tc.seed = (uint64_t)n;
        } else {
            if (cterp_train_config_set(&o->cfg, a + 2, v)) {
                cli_error(cmd);
                return 2;
            }
            if (!strcmp(a, "--steps") || !strcmp(a, "--training-steps")) have_steps = 1;
        }
    }
    return 0;
}

static void progress(const cterp_train_metrics *m, void *user) {
    int tty = *(int *)user;
    fprintf(
        stderr,
        "%sstep %lld/%lld  %.0f samples/s  loss %.4g  ev %.4f  l0 %.2f  dead %.1f%%  eta %.0fs%s",
        tty ? "\r" : "", (long long)m->step, (long long)m->steps, m->tokens_per_s, m->loss,
        m->explained_variance, m->l0, 100 * m->dead_fraction, m->eta_s, tty ? "   " : "\n");
    if (tty && m->step == m->steps) fprintf(stderr, "\n");
}

static cterp_status make_world(const synth_opts *o, cterp_synth **w) {
    return o->toy ? cterp_synth_create_toy(w, &o->tc) : cterp_synth_create(w, &o->sc);
}

// Trains cfg on the world's stream from row 0 and scores the exported SAE. Returns exit code.
static int run_one(const char *cmd, const synth_opts *o, const cterp_train_config *cfg,
                   const cterp_synth *w, synth_result *res) {
    cterp_act_source src = {0};
    cterp_trainer *tr = NULL;
    cterp_sae *sae = NULL;
    int rc = 1;
    if (cterp_train_config_validate(cfg, cterp_synth_d(w)) || cterp_synth_source(&src, w) ||
        cterp_trainer_create(&tr, cfg, &src)) {
        cli_error(cmd);
        rc = 2;
        goto done;
    }
    int tty = isatty(2);
    cterp_trainer_set_output(tr, o->out, o->quiet ? NULL : progress, &tty);
    double t0 = time_now();
    if (cterp_trainer_run(tr, 0) || cterp_trainer_export(tr, &sae)) {
        cli_error(cmd);
        goto done;
    }
    res->train_s = time_now() - t0;
    if (o->out && cterp_trainer_save(tr, o->out)) {
        fprintf(stderr, "cterp %s: saving to %s: %s\n", cmd, o->out, cterp_last_error());
        goto done;
    }
    const int64_t EB = 1024; // held-out rows: far past anything training reads
    if (cterp_synth_eval(w, sae, o->eval_samples, 1000000000ULL * (uint64_t)EB, EB, &res->m)) {
        cli_error(cmd);
        goto done;
    }
    rc = 0;
done:
    cterp_sae_free(sae);
    cterp_trainer_free(tr);
    cterp_act_source_free(&src);
    return rc;
}

static void print_json(const synth_opts *o, const cterp_train_config *cfg, const cterp_synth *w,
                       const synth_result *r) {
    const cterp_synth_metrics *m = &r->m;
    printf(
        "{\"preset\": \"%s\", \"arch\": \"%s\", \"n_features\": %d, \"d_in\": %d, \"d_sae\": %lld, "
        "\"k\": %d, \"batch\": %lld, \"steps\": %lld, \"samples\": %lld, \"seed\": %llu, "
        "\"data_seed\": %llu, "
        "\"eval_samples\": %lld, \"mcc\": %.6f, \"mmcs\": %.6f, \"mmcs_reverse\": %.6f, "
        "\"uniqueness\": %.6f, "
        "\"precision\": %.6f, \"recall\": %.6f, \"f1\": %.6f, \"ev\": %.6f, \"l0\": %.4f, "
        "\"true_l0\": %.4f, "
        "\"dead\": %lld, \"shrinkage\": %.6f, \"train_s\": %.2f}\n",
        o->preset, cterp_arch_name(cfg->architecture), cterp_synth_n_features(w), cterp_synth_d(w),
        (long long)cterp_train_config_d_sae(cfg, cterp_synth_d(w)), cfg->k,
        (long long)cfg->batch_size, (long long)cterp_train_config_steps(cfg),
        (long long)(cterp_train_config_steps(cfg) * cfg->batch_size), (unsigned long long)cfg->seed,
        (unsigned long long)(o->toy ? o->tc.seed : o->sc.seed), (long long)m->samples, m->mcc,
        m->mmcs, m->mmcs_reverse, m->uniqueness, m->precision, m->recall, m->f1, m->ev, m->l0,
        m->true_l0, (long long)m->dead, m->shrinkage, r->train_s);
}

int cmd_synth(int argc, char **argv) {
    synth_opts o;
    int p = parse(argc, argv, 1, "synth", &o);
    if (p) return p == 1 ? 0 : 2;
    if (o.archs) {
        fprintf(stderr, "cterp synth: --archs belongs to cterp bench --synth; use --arch A\n");
        return 2;
    }
    cterp_synth *w = NULL;
    if (make_world(&o, &w)) {
        cli_error("synth");
        return 2;
    }
    const int64_t D = cterp_synth_d(w);
    if (cterp_train_config_validate(&o.cfg, D)) { // before any output
        cli_error("synth");
        cterp_synth_free(w);
        return 2;
    }
    if (!o.json) {
        printf("World: %s\n", cterp_synth_description(w));
        printf("Training a %s SAE: d_sae %lld, k %d, %lld steps of %lld samples, lr %g.\n",
               cterp_arch_name(o.cfg.architecture), (long long)cterp_train_config_d_sae(&o.cfg, D),
               o.cfg.k, (long long)cterp_train_config_steps(&o.cfg), (long long)o.cfg.batch_size,
               o.cfg.lr);
        fflush(stdout);
    }
    synth_result r;
    int rc = run_one("synth", &o, &o.cfg, w, &r);
    if (!rc && o.json) {
        print_json(&o, &o.cfg, w, &r);
    } else if (!rc) {
        const cterp_synth_metrics *m = &r.m;
        printf("\nAgainst the %d true features (%lld held-out samples):\n",
               cterp_synth_n_features(w), (long long)m->samples);
        printf("  mcc           %.4f   optimal one-to-one matching, mean |cos|\n", m->mcc);
        printf("  mmcs          %.4f   true feature -> best decoder row\n", m->mmcs);
        printf("  mmcs_reverse  %.4f   decoder row -> best true feature\n", m->mmcs_reverse);
        printf("  uniqueness    %.4f   distinct best-matching features / d_sae\n", m->uniqueness);
        printf("  f1            %.4f   per latent, vs its feature's firing\n", m->f1);
        printf("  precision     %.4f\n", m->precision);
        printf("  recall        %.4f\n", m->recall);
        printf("  ev            %.4f   explained variance\n", m->ev);
        printf("  l0            %.2f    (true l0 %.2f)\n", m->l0, m->true_l0);
        printf("  dead          %lld\n", (long long)m->dead);
        printf("  shrinkage     %.4f\n", m->shrinkage);
        printf("  train_s       %.1f\n", r.train_s);
        if (o.out) printf("Saved the SAE (SAELens format) to %s\n", o.out);
    }
    cterp_synth_free(w);
    return rc;
}

int cmd_bench_synth(int argc, char **argv) {
    synth_opts o;
    int p = parse(argc, argv, 1, "bench", &o);
    if (p) return p == 1 ? 0 : 2;
    if (!o.archs || !*o.archs) {
        fprintf(stderr, "cterp bench --synth: --archs A,B,... is required (e.g. "
                        "topk,batchtopk,jumprelu,standard)\n");
        return 2;
    }
    if (o.out) {
        fprintf(stderr, "cterp bench --synth: --out is not taken (runs are scored, not saved); use "
                        "cterp synth --out\n");
        return 2;
    }
    // every name checked before any training
    char names[32][64];
    int na = 0;
    for (const char *q = o.archs; *q;) {
        const char *e = strchr(q, ',');
        size_t len = e ? (size_t)(e - q) : strlen(q);
        if (na == 32 || len == 0 || len >= sizeof names[0]) {
            fprintf(stderr,
                    "cterp bench --synth: --archs: got '%s', expected up to 32 comma-separated "
                    "architecture names\n",
                    o.archs);
            return 2;
        }
        memcpy(names[na], q, len);
        names[na][len] = 0;
        cterp_arch a;
        if (cterp_arch_parse(names[na], &a)) {
            fprintf(stderr, "cterp bench --synth: --archs: %s\n", cterp_last_error());
            return 2;
        }
        na++;
        q += len + (e ? 1 : 0);
    }
    cterp_synth *w = NULL;
    if (make_world(&o, &w)) {
        cli_error("bench");
        return 2;
    }
    synth_result res[32];
    cterp_train_config cfgs[32];
    for (int i = 0; i < na; i++) { // every run's config checked before the first trains
        cfgs[i] = o.cfg;
        if (cterp_train_config_set(&cfgs[i], "architecture", names[i]) ||
            cterp_train_config_validate(&cfgs[i], cterp_synth_d(w))) {
            fprintf(stderr, "cterp bench --synth: %s: %s\n", names[i], cterp_last_error());
            cterp_synth_free(w);
            return 2;
        }
    }
    if (!o.json) printf("World: %s\n", cterp_synth_description(w));
    int rc = 0;
    for (int i = 0; i < na && !rc; i++) {
        if (!o.quiet) fprintf(stderr, "-- %s\n", names[i]);
        rc = run_one("bench", &o, &cfgs[i], w, &res[i]);
        if (!rc) print_json(&o, &cfgs[i], w, &res[i]);
        fflush(stdout);
    }
    if (!rc && !o.json) {
        printf("\n%-22s %7s %7s %7s %7s %7s %7s %7s %7s %6s %8s\n", "arch", "f1", "mcc", "mmcs",
               "uniq", "prec", "recall", "ev", "l0", "dead", "train_s");
        for (int i = 0; i < na; i++) {
            const cterp_synth_metrics *m = &res[i].m;
            printf("%-22s %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f %7.2f %6lld %8.1f\n", names[i],
                   m->f1, m->mcc, m->mmcs, m->uniqueness, m->precision, m->recall, m->ev, m->l0,
                   (long long)m->dead, res[i].train_s);
        }
    }
    cterp_synth_free(w);
    return rc;
}
