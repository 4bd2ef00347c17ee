// Subcommands of the cterp binary: each takes (argc, argv) with argv[0] = the command name and
// returns the process exit code (0 ok, 1 failure, 2 usage error).
#ifndef CTERP_CLI_H
#define CTERP_CLI_H

#include <stdint.h>

#include "cterp/train.h"

typedef struct {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} cli_command;

// Prints the last error as "cterp CMD: message" (a message that already starts with "CMD: " is
// not prefixed twice).
void cli_error(const char *cmd);

// A cterp_progress_fn for the CLI: a live line on a terminal (stderr); off one, a line every 5 s
// and at a phase's end when it took over a second. With tokens_per_unit set
// (the context size for windows) the rate is also given in tokens/s.
typedef struct {
    int tty;
    int64_t tokens_per_unit;
    double last;
} cli_progress_state;
void cli_progress_init(cli_progress_state *p, int64_t tokens_per_unit);
void cli_progress(const char *what, int64_t done, int64_t total, const char *unit, double sec,
                  void *user);

int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_model(int argc, char **argv);    // cterp bench --model
int cmd_bench_pipeline(int argc, char **argv); // cterp bench --pipeline
int cmd_synth(int argc, char **argv);          // cterp synth (cmd_synth.c)
int cmd_bench_synth(int argc, char **argv);    // cterp bench --synth (cmd_synth.c)
// cmd_bench.c: the SGEMM rate (GFLOP/s, median of ~1 s of calls) of (B, D) x (D, N)^T, and the
// cpu / kernels / BLAS lines every benchmark prints
double sgemm_gflops(int64_t B, int64_t D, int64_t N);
void print_blas(double peak);
// cmd_bench.c: SAE training steps alone on unit-Gaussian activations of width D with cfg
// (batch_size rows a step): tokens/s over `steps` steps after a warm-up (NAN on failure)
double bench_sae_tokens_per_s(const cterp_train_config *cfg, int64_t D, int64_t steps);

#include "cterp/toy.h"
#include "cterp/train.h"
// Trains on the toy with cfg, prints progress (unless quiet) and the recovery report; saves to
// out if not NULL. Returns the exit code.
int cli_run_toy(const cterp_train_config *cfg, const cterp_toy_config *tc, const char *out,
                int quiet, int report);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
// Prints metadata, tensors, model config and hook names of a .gguf (used by `cterp inspect`).
int cli_inspect_gguf(const char *path);

// ---- the model path (train_model.c): flags shared by train --model, cache and eval ----
#include "cterp/acts.h"
#include "cterp/analysis.h"
typedef struct {
    const char *model, *hook, *component, *data;
    const char *hooks, *layers; // several hooks, one forward: --hooks H1,H2 | --layers 0-5 (with --component)
    int multi;                  // set by train and cache: --hooks/--layers are their flags (0: unknown flags)
    const char *hook_in, *hook_out; // transcoders: --hook-in H --hook-out H (train, eval)
    int tc;                     // set by train and eval: --hook-in/--hook-out are their flags
    int layer; // -1: not given
    cterp_store_config store;
    int64_t eval_windows;
} cli_model_opts;
extern const char *cli_model_help;
void cli_model_opts_default(cli_model_opts *o);
// 1: flag a (with value v) consumed; 0: not a model flag; -1: bad value.
int cli_model_flag(cli_model_opts *o, const char *a, const char *v);
// The hook from --hook or --layer + --component (error message recorded).
cterp_status cli_model_hook(const cli_model_opts *o, char *hook, size_t cap);
// Several hooks (--hooks H1,H2,... or --layers A-B,C --component C1,C2), checked against the model
// (unknown, repeated, layers outside it: errors naming the flag and value). *hooks: n strings in
// one allocation (free(*hooks)). Returns 0 or the exit code 2 with the message printed.
int cli_model_hooks(const cli_model_opts *o, const char *cmd, const cterp_model *m, char ***hooks, int *n);
// The store's fill_progress for train --model (user: a cli_fill_log {isatty(2), 0}).
typedef struct {
    int tty;
    double last;
} cli_fill_log;
void cli_fill_progress(int64_t rows, int64_t total, double sec, void *user);
// The pipeline options every train --model run starts from: model name, store (its fill progress
// on fl unless quiet), eval windows (rank 0 only under mpirun).
void cli_pipeline_opts(cterp_pipeline_opts *po, const cli_model_opts *mo, cli_fill_log *fl, int quiet);
const char *cli_base_name(const char *path);
// cterp train --model with --hooks/--layers (train_hooks.c): one SAE per hook into out/<hook>.
// over_name[i] (a config field) takes over_val[i] = "v1,v2,...": value h for hook h (cfg holds
// the rest).
int cli_train_hooks(const cterp_train_config *cfg, const char *const *over_name,
                    const char *const *over_val, int n_over, const cli_model_opts *mo, const char *out,
                    const char *resume, int quiet);
int cli_train_model(const cterp_train_config *cfg, const cli_model_opts *mo, const char *out,
                    const char *resume, int quiet);
// --arch crosscoder: one crosscoder over the hooks of --layers/--component or --hooks (2 or more,
// one width), from one forward per batch; prints each layer's explained variance.
// Runs cterp_eval_crosscoder and prints, per layer, EV and the CE spliced / ablated / recovered
// (json: one object). 0, or 1 with the error printed.
int cli_eval_crosscoder(cterp_model *m, const cterp_sae *sae, const char *data, const cterp_eval_config *ec,
                        int json);
int cli_train_crosscoder(const cterp_train_config *cfg, const cli_model_opts *mo, const char *out,
                         const char *resume, int quiet);
// --acts: a cache directory (with metadata for the SAE) or an activation file; with acts_out
// (not NULL) a transcoder's pair of cache directories (cterp_act_pair_cache).
cterp_status cli_open_acts(cterp_act_source *src, const char *acts, const char *acts_out,
                           int64_t d_in_raw, const cterp_train_config *cfg, const cli_model_opts *mo,
                           cterp_sae_meta *meta, int *have_meta);
int cmd_cache(int argc, char **argv);
int cmd_eval(int argc, char **argv);

// ---- features, steering, dashboards (cmd_features.c, cmd_steer.c, cmd_dashboard.c) ----
#include "cterp/features.h"
int cmd_features(int argc, char **argv);
int cmd_steer(int argc, char **argv);
int cmd_dashboard(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_serve(int argc, char **argv); // cmd_serve.c: the live explorer (libmicrohttpd)
// --windows --top --quantile-k --ctx-left --ctx-right --logits --seed: 1 consumed, 0 not one of
// them, -1 bad value (printed).
int cli_features_flag(cterp_features_config *c, const char *cmd, const char *a, const char *v);
// The features pass for model + SAE + data (summary on stderr); returns the exit code.
int cli_features_run(const char *cmd, const cli_model_opts *mo, const char *sae_dir, cterp_features_config *fc,
                     cterp_features **out);

#endif
