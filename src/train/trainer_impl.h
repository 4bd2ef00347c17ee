// The trainer's state (shared by trainer.c and checkpoint.c; not public).
#ifndef CTERP_TRAIN_TRAINER_IMPL_H
#define CTERP_TRAIN_TRAINER_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "cterp/train.h"
#include "sae/arch.h"

struct cterp_trainer {
    cterp_train_config cfg;
    cterp_act_source *src;
    int64_t D, N, B, steps; // B: the global batch (all ranks together)
    int64_t DO;          // width of x_hat: D, or the source's d_out for transcoders
    // data parallelism (core/dist.h): this rank's part of every batch is rows [r0, r0 + Bl) of
    // the B; one process: P 1, Bl = B
    int P, rank;
    int64_t Bl, r0;
    float *xall;         // P > 1: (B, D) a whole batch (the first one's b_dec; sources without next_part)
    double *red;         // P > 1: (N + D + 8) firing counts, input column sums and the loss terms, summed
    cterp_sae *sae;      // parameters in training form (inputs scaled, norms not folded)
    float *grads;        // (n_params) same layout as sae->params
    float *adam_m, *adam_v;
    float *log_thr, *dlog_thr, *thr_m, *thr_v; // jumprelu: log threshold (N) and its Adam state
    int auxk_mode;       // -1 auto, 0 pairs, 1 dense (benchmarks)
    int fuse_mode;       // encoder_bf16 topk: 0 auto, 1 fused, -1 through z (benchmarks)
    double *rowsq;       // (2N) squared norms of each latent's W_enc and W_dec gradient rows
    double topk_threshold; // batchtopk inference threshold (EMA)
    int64_t widths[CTERP_MAX_MATRYOSHKA + 1]; // matryoshka: the prefix widths, d_sae last
    int n_widths;
    double scale;        // input scale factor (1 unless normalize_activations)
    int initialized;     // b_dec and scale done
    int64_t step;        // steps done
    int64_t skipped_rows;   // input rows with a NaN/Inf skipped (skip_nonfinite_rows): the source
                            // served this many rows beyond the batches
    int64_t *since_fired;   // (N) steps since each latent last fired (act > 0)
    int64_t *window_count;  // (N) firings in the current density window
    int64_t window_steps;
    float *log10_density;   // (N) last complete window (or -10 before one completes)
    int have_density;
    uint8_t *dead;          // (N) scratch
    int32_t *dead_list;     // (N) scratch: the dead latents, ascending
    float *x;               // (Bl, D) current batch (this rank's part)
    float *y;               // (B, DO) its targets (transcoders, one process only; NULL otherwise)
    arch_work work;
    cterp_train_metrics last;
    double t_data, t_revive, t_optim, t_stats; // accumulated wall seconds (benchmarks)
    double t_start, elapsed_before; // wall time (elapsed_before: previous runs of a resumed job)
    // output
    char *out_dir;
    int out_lock; // fd of out_dir's .cterp.lock while running into it (-1: none)
    FILE *metrics_file;
    cterp_train_log_fn log;
    void *log_user;
};

// Allocates the state for cfg and src with zeroed parameters (no initialisation).
cterp_status trainer_alloc(struct cterp_trainer **out, const cterp_train_config *cfg,
                           cterp_act_source *src);

// checkpoint.json's text for the files now in `dir` (malloc'd; fuzz_checkpoint rewrites it).
cterp_status checkpoint_manifest_text(const char *dir, int64_t step, char **text);

#endif
