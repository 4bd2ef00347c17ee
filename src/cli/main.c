// cterp: the command line. One file per subcommand (cmd_*.c), thin over the library.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "cli/cli.h"
#include "core/blas.h"
#include "core/dist.h"
#include "core/platform.h"
#include "cterp/isa.h"
#include "cterp/version.h"

static const cli_command commands[] = {
    {"demo", "train an SAE on the built-in toy model of superposition and report recovery",
     cmd_demo},
    {"synth", "train an SAE on a synthetic world with known features and score it (mcc, f1 ...)",
     cmd_synth},
    {"train", "train an SAE: --toy | --acts FILE|DIR | --model M --data D (see --help)", cmd_train},
    {"cache", "write a model's activations at a hook over a dataset to an activation cache", cmd_cache},
    {"eval", "evaluate an SAE spliced into its model (EV, L0, CE/KL recovered)", cmd_eval},
    {"inspect", "describe a saved SAE directory or a GGUF model", cmd_inspect},
    {"bench", "training-step speed on random activations vs the machine's SGEMM", cmd_bench},
    {"generate", "generate text from a GGUF model (greedy, temperature, top-p)", cmd_generate},
    {"tokenize", "tokenize stdin with a GGUF vocabulary", cmd_tokenize},
    {"features", "per-latent stats, top/quantile examples and logit effects over a corpus", cmd_features},
    {"steer", "generate with an SAE latent added, clamped or ablated, beside the unedited text", cmd_steer},
    {"dashboard", "self-contained HTML pages of an SAE's latents (+ training report)", cmd_dashboard},
    {"report", "HTML training report from a metrics.jsonl", cmd_report},
    {"serve", "the live explorer: prompt page, steering and JSON API over HTTP (+ dashboard)", cmd_serve},
};

void cli_error(const char *cmd) {
    const char *msg = cterp_last_error();
    const size_t n = strlen(cmd);
    if (!strncmp(msg, cmd, n) && !strncmp(msg + n, ": ", 2)) msg += n + 2;
    fprintf(stderr, "cterp %s: %s\n", cmd, msg);
}

void cli_progress_init(cli_progress_state *p, int64_t tokens_per_unit) {
    p->tty = isatty(2);
    p->tokens_per_unit = tokens_per_unit;
    p->last = 0;
}

void cli_progress(const char *what, int64_t done, int64_t total, const char *unit, double sec,
                  void *user) {
    cli_progress_state *p = user;
    const int end = total > 0 ? done >= total : 0;
    // off a terminal: every 5 s, and the end of a phase that took over a second (not its start:
    // a phase that fails at once then says only why)
    if (!p->tty && !(end ? sec > 1.0 : sec - p->last >= 5.0)) return;
    p->last = sec;
    fprintf(stderr, "%s%s: %lld", p->tty ? "\r" : "", what, (long long)done);
    if (total > 0) fprintf(stderr, "/%lld", (long long)total);
    fprintf(stderr, " %s", unit);
    const double rate = sec > 0 ? (double)done / sec : 0;
    if (done > 0 && sec > 0) {
        fprintf(stderr, ", %.1f s", sec);
        if (p->tokens_per_unit > 0 && !strcmp(unit, "windows"))
            fprintf(stderr, ", %.0f tok/s", rate * (double)p->tokens_per_unit);
        else
            fprintf(stderr, ", %.3g %s/s", rate, unit);
        if (!end && total > 0 && rate > 0) fprintf(stderr, ", eta %.0f s", (double)(total - done) / rate);
    }
    fprintf(stderr, "%s", p->tty ? (end ? "\n" : "   ") : "\n");
}

// Version, the CPU, the kernel variants this binary carries and which one runs.
static int version(void) {
    int bad = cterp_isa_init() != CTERP_OK;
    printf("cterp %s\ncpu: %s\nkernels: %s (%s)%s\nvariants:", CTERP_VERSION, cterp_cpu_name(),
           cterp_isa_name(), cterp_isa_description(), getenv("CTERP_ISA") && !bad ? ", from CTERP_ISA" : "");
    int runs;
    for (int i = 0; cterp_isa_variant(i, &runs); i++) printf(" %s", cterp_isa_variant(i, NULL));
    printf("\nruns here:");
    for (int i = 0; cterp_isa_variant(i, &runs); i++)
        if (runs) printf(" %s", cterp_isa_variant(i, NULL));
    printf("\nblas: %s, core %s\n", openblas_get_config(), openblas_get_corename());
    printf("mpi: %s\n", dist_built() ? "yes (mpirun -np P cterp train|cache ...)" : "no (built without MPI)");
    if (bad) fprintf(stderr, "cterp: %s\n", cterp_last_error());
    return bad ? 2 : 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: cterp COMMAND [options]   (cterp COMMAND --help for each; cterp --version)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    // OpenMP threads that spin while waiting make every step several times slower as soon as
    // anything else runs on the machine (measured: 20k vs 85k tokens/s with one other busy
    // process on 2 cores, libgomp's default spin of 300,000), while threads that sleep at once
    // (passive) pay a futex wake-up at each of the ~100 small parallel regions of a decoded
    // token (Q4_K 12x768: 8.1 ms a token passive, 2.6 ms spinning). A short spin keeps both:
    // 10,000 spins, measured on 2 cores: decode 2.6 ms, SAE steps with a busy process beside
    // them within 2-5% of passive. libgomp reads this once, before main, so set it and start
    // again; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) {
        setenv("GOMP_SPINCOUNT", "10000", 1);
        platform_reexec(argv); // returns only on failure: carry on as we are
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    // Training allocates the same large scratch buffers every step; served by mmap they are
    // unmapped and zero-filled again each time (measured: 12% + 7% of a step in page faults).
    // Keep freed memory in the heap instead.
    platform_keep_heap();
    if (!strcmp(argv[1], "--version")) return version();
    // the kernel variant: the best this CPU runs, or CTERP_ISA's; a bad CTERP_ISA stops here
    if (cterp_isa_init()) {
        fprintf(stderr, "cterp: %s\n", cterp_last_error());
        return 2;
    }
    // under mpirun: join the job; rank 0 alone prints results (stdout), every rank its errors
    if (dist_init(&argc, &argv)) return 2;
    if (dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    if (dist_size() > 1 && strcmp(argv[1], "train") && strcmp(argv[1], "cache")) {
        if (dist_rank() == 0)
            fprintf(stderr, "cterp %s: runs in one process; under mpirun only train and cache split their "
                            "work over the ranks (docs/scaling.md)\n", argv[1]);
        dist_finalize();
        return 2;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            const int rc = commands[i].run(argc - 1, argv + 1);
            // one rank failing ends the job: the others may be waiting for it in a collective
            if (rc != 0 && dist_size() > 1) {
                fprintf(stderr, "cterp: MPI rank %d of %d failed (exit code %d): stopping every rank\n",
                        dist_rank(), dist_size(), rc);
                dist_abort(rc);
            }
            if (dist_size() > 1 && dist_rank() == 0) // what the scaling model needs (docs/scaling.md)
                fprintf(stderr, "cterp: MPI: %d ranks; rank 0 spent %.3f s in collectives, summed %.1f MB of floats\n",
                        dist_size(), dist_comm_seconds(), (double)dist_reduced_bytes() / 1e6);
            dist_finalize();
            return rc;
        }
    dist_finalize();
    fprintf(stderr, "cterp: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
