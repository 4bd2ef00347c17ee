// The SAE trainer: initialisation, the step (forward, backward, revival, clip, Adam), dead-latent
// tracking, metrics and export. Checkpoints are in checkpoint.c.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/dist.h"
#include "core/file.h"
#include "core/platform.h"
#include "core/rng.h"
#include "sae/kernels.h"
#include "train/optim.h"
#include "train/revive.h"
#include "train/trainer_impl.h"

cterp_status trainer_alloc(struct cterp_trainer **out, const cterp_train_config *cfg,
                           cterp_act_source *src) {
    *out = NULL;
    cterp_status s = cterp_train_config_validate(cfg, src->d_in);
    if (s) return s;
    const int P = dist_size();
    if (P > 1 && cfg->batch_size % P)
        return cterp_error(CTERP_EINVAL, "batch_size: %lld rows do not split evenly over %d MPI ranks "
                           "(every rank takes batch_size / P rows of each batch): give a multiple of %d",
                           (long long)cfg->batch_size, P, P);
    if (P > 1 && cfg->skip_nonfinite_rows)
        return cterp_error(CTERP_EINVAL, "skip_nonfinite_rows: not available with %d MPI ranks (a "
                           "replacement row would move one rank's stream ahead of the others')", P);
    if (P > 1 && (cfg->architecture == CTERP_ARCH_TRANSCODER || cfg->architecture == CTERP_ARCH_SKIP_TRANSCODER))
        return cterp_error(CTERP_EINVAL, "architecture %s: not available with %d MPI ranks (a transcoder's "
                           "(input, target) pairs are not split over ranks yet); train it in one process "
                           "(docs/scaling.md)", cterp_arch_name(cfg->architecture), P);
    if (P > 1 && cfg->architecture == CTERP_ARCH_CROSSCODER)
        return cterp_error(CTERP_EINVAL, "architecture crosscoder: not available with %d MPI ranks (not "
                           "checked against one process yet); train it in one process (docs/scaling.md)", P);
    cterp_trainer *t = calloc(1, sizeof *t);
    if (!t) return cterp_error(CTERP_ENOMEM, "trainer: out of memory");
    t->auxk_mode = -1;
    t->out_lock = -1;
    t->cfg = *cfg;
    t->src = src;
    t->D = src->d_in;
    t->N = cterp_train_config_d_sae(cfg, t->D);
    t->B = cfg->batch_size;
    t->P = P, t->rank = dist_rank();
    t->Bl = t->B / P, t->r0 = t->rank * t->Bl;
    t->steps = cterp_train_config_steps(cfg);
    t->scale = 1.0;
    const int tc = cfg->architecture == CTERP_ARCH_TRANSCODER || cfg->architecture == CTERP_ARCH_SKIP_TRANSCODER;
    t->DO = tc ? src->d_out : t->D;
    if (tc && (src->d_out <= 0 || src->d_out > (1 << 24) || !src->next_target))
        s = cterp_error(CTERP_EINVAL, "architecture %s: the source (%s) gives no (input, target) pairs "
                        "(d_out %lld); a transcoder reads one activation and reconstructs another",
                        cterp_arch_name(cfg->architecture), src->description, (long long)src->d_out);
    else if (!tc && (src->d_out != 0 || src->next_target))
        s = cterp_error(CTERP_EINVAL, "architecture %s: the source (%s) gives (input, target) pairs; "
                        "train a transcoder or skip_transcoder on it", cterp_arch_name(cfg->architecture),
                        src->description);
    else if ((cfg->architecture == CTERP_ARCH_CROSSCODER) != (src->n_layers > 0))
        s = cterp_error(CTERP_EINVAL, "architecture %s: the source (%s) %s", cterp_arch_name(cfg->architecture),
                        src->description, src->n_layers > 0 ? "gives several layers' rows side by side; train a "
                        "crosscoder on it" : "gives one layer's rows; a crosscoder reads several (--layers A-B)");
    else if (src->n_layers > 0 && (src->n_layers < 2 || t->D % src->n_layers))
        s = cterp_error(CTERP_EINVAL, "crosscoder: the source's rows (%lld wide) are not %lld layers of one width",
                        (long long)t->D, (long long)src->n_layers);
    else
        s = tc   ? cterp_sae_create_transcoder(&t->sae, cfg->architecture, t->D, t->DO, t->N)
            : src->n_layers > 0 ? cterp_sae_create_crosscoder(&t->sae, src->n_layers, t->D / src->n_layers, t->N)
                                : cterp_sae_create(&t->sae, cfg->architecture, t->D, t->N, cfg->k);
    if (s) {
        free(t);
        return s;
    }
    t->sae->rescale_acts_by_decoder_norm = cfg->rescale_acts_by_decoder_norm;
    if (cfg->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK) { // d_sae closes the list (SAELens)
        t->n_widths = cfg->n_matryoshka_widths;
        memcpy(t->widths, cfg->matryoshka_widths, (size_t)t->n_widths * sizeof(int64_t));
        if (t->widths[t->n_widths - 1] < t->N) t->widths[t->n_widths++] = t->N;
    }
    size_t np = t->sae->n_params, N = (size_t)t->N;
    t->grads = calloc(np, sizeof(float));
    t->adam_m = calloc(np, sizeof(float));
    t->adam_v = calloc(np, sizeof(float));
    t->since_fired = calloc(N, sizeof(int64_t));
    t->window_count = calloc(N, sizeof(int64_t));
    t->log10_density = malloc(N * sizeof(float));
    t->dead = calloc(N, 1);
    t->dead_list = malloc(N * sizeof(int32_t));
    t->x = malloc((size_t)t->Bl * t->D * sizeof(float));
    if (tc) t->y = malloc((size_t)t->B * t->DO * sizeof(float));
    t->rowsq = malloc(2 * N * sizeof(double));
    int ok = t->grads && t->adam_m && t->adam_v && t->since_fired && t->window_count &&
             t->log10_density && t->dead && t->x && t->rowsq && t->dead_list && (!tc || t->y);
    if (ok && P > 1) {
        t->xall = malloc((size_t)t->B * t->D * sizeof(float));
        t->red = malloc((N + (size_t)t->D + 8) * sizeof(double));
        ok = t->xall && t->red;
    }
    if (ok && cfg->architecture == CTERP_ARCH_JUMPRELU) {
        t->log_thr = calloc(N, sizeof(float));
        t->dlog_thr = calloc(N, sizeof(float));
        t->thr_m = calloc(N, sizeof(float));
        t->thr_v = calloc(N, sizeof(float));
        ok = t->log_thr && t->dlog_thr && t->thr_m && t->thr_v;
    }
    if (!ok) {
        cterp_trainer_free(t);
        return cterp_error(CTERP_ENOMEM, "trainer: cannot allocate state for d_sae %lld", (long long)t->N);
    }
    for (size_t i = 0; i < N; i++) t->log10_density[i] = -10.0f;
    if ((s = arch_work_init_out(&t->work, t->Bl, t->D, t->DO, t->N))) {
        cterp_trainer_free(t);
        return s;
    }
    t->last.mean_log10_density = NAN;
    *out = t;
    return CTERP_OK;
}

void cterp_trainer_free(cterp_trainer *t) {
    if (!t) return;
    cterp_sae_free(t->sae);
    free(t->grads), free(t->adam_m), free(t->adam_v), free(t->rowsq), free(t->dead_list);
    free(t->log_thr), free(t->dlog_thr), free(t->thr_m), free(t->thr_v);
    free(t->since_fired), free(t->window_count), free(t->log10_density), free(t->dead), free(t->x), free(t->y);
    free(t->xall), free(t->red);
    arch_work_free(&t->work);
    if (t->metrics_file) fclose(t->metrics_file);
    file_unlock_dir(t->out_lock);
    free(t->out_dir);
    free(t);
}

// n rows of W (n, d) random (Gaussian direction) with norm c
static void random_rows(float *W, int64_t n, int64_t d, double c, rng_t *r) {
    for (int64_t i = 0; i < n; i++) {
        float *w = W + i * d;
        double n2 = 0;
        for (int64_t q = 0; q < d; q++) {
            w[q] = rng_normal(r);
            n2 += (double)w[q] * w[q];
        }
        float k = (float)(c / sqrt(n2));
        for (int64_t q = 0; q < d; q++) w[q] *= k;
    }
}

// W_dec rows random with norm decoder_init_norm; W_enc = W_dec^T (same rows in our layout).
// Transcoders (W_dec rows in the output space): W_enc rows drawn the same way, on their own;
// W_skip starts at 0 (SAELens).
static void init_params(cterp_trainer *t) {
    rng_t r;
    rng_seed(&r, t->cfg.seed);
    const int64_t N = t->N, D = t->D;
    cterp_sae *s = t->sae;
    random_rows(s->W_dec, N, t->DO, t->cfg.decoder_init_norm, &r);
    if (cterp_sae_is_transcoder(s))
        random_rows(s->W_enc, N, D, t->cfg.decoder_init_norm, &r);
    else
        memcpy(s->W_enc, s->W_dec, (size_t)(N * D) * sizeof(float));
    if (t->log_thr)
        for (int64_t i = 0; i < N; i++) {
            t->log_thr[i] = logf(t->cfg.jumprelu_init_threshold);
            s->threshold[i] = t->cfg.jumprelu_init_threshold;
        }
}

// Weiszfeld's algorithm from the mean: 100 iterations, stop when the step is < 1e-5 relative.
static void geometric_median(float *out, const float *x, int64_t B, int64_t D) {
    double *g = calloc((size_t)D, sizeof(double)), *num = malloc((size_t)D * sizeof(double));
    for (int64_t t = 0; t < B; t++)
        for (int64_t d = 0; d < D; d++) g[d] += x[t * D + d];
    for (int64_t d = 0; d < D; d++) g[d] /= (double)B;
    for (int it = 0; it < 100; it++) {
        double den = 0;
        memset(num, 0, (size_t)D * sizeof(double));
        for (int64_t t = 0; t < B; t++) {
            double dist = 0;
            for (int64_t d = 0; d < D; d++) {
                double r = x[t * D + d] - g[d];
                dist += r * r;
            }
            double wgt = 1.0 / fmax(sqrt(dist), 1e-8); // a point on g must not divide by zero
            den += wgt;
            for (int64_t d = 0; d < D; d++) num[d] += wgt * x[t * D + d];
        }
        double move = 0, norm = 0;
        for (int64_t d = 0; d < D; d++) {
            double ng = num[d] / den;
            move += (ng - g[d]) * (ng - g[d]);
            norm += ng * ng;
            g[d] = ng;
        }
        if (sqrt(move) <= 1e-5 * fmax(sqrt(norm), 1e-12)) break;
    }
    for (int64_t d = 0; d < D; d++) out[d] = (float)g[d];
    free(g), free(num);
}

// A branch-free pass over fixed chunks (vectorised, in parallel), then the position of the first
// bad value only when there is one.
static cterp_status check_finite(const float *x, size_t n, int64_t step, const char *what) {
    enum { CH = 4096 };
    int bad = 0;
    #pragma omp parallel for schedule(static) reduction(| : bad)
    for (size_t c = 0; c < n; c += CH) {
        const size_t e = c + CH < n ? c + CH : n;
        uint32_t acc = 0;
        for (size_t i = c; i < e; i++) {
            uint32_t u;
            memcpy(&u, x + i, sizeof u);
            acc |= (u & 0x7f800000u) == 0x7f800000u; // Inf or NaN: all exponent bits set
        }
        bad |= acc != 0;
    }
    if (!bad) return CTERP_OK;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return cterp_error(CTERP_ENAN, "step %lld: %s has a non-finite value (%g at index %zu)",
                               (long long)step, what, (double)x[i], i);
    return CTERP_OK;
}

// Index of the first row of x (B, D) with a NaN/Inf at or after row r, or B.
static int64_t bad_row(const float *x, int64_t r, int64_t B, int64_t D, int64_t *col) {
    for (; r < B; r++)
        for (int64_t d = 0; d < D; d++)
            if (!isfinite(x[r * D + d])) {
                *col = d;
                return r;
            }
    return B;
}

// n rows from the source into x (and the targets into y, for transcoders)
static cterp_status source_rows(cterp_trainer *t, float *x, float *y, int64_t n) {
    return t->y ? t->src->next_target(t->src->ctx, x, y, n) : t->src->next(t->src->ctx, x, n);
}

// The first row at or after r with a NaN/Inf in its input or (transcoders) its target: Bl if none.
static int64_t bad_pair_row(const cterp_trainer *t, int64_t r, int64_t *col, int *in_target) {
    int64_t cx = 0, cy = 0, rx = bad_row(t->x, r, t->Bl, t->D, &cx);
    int64_t ry = t->y ? bad_row(t->y, r, rx, t->DO, &cy) : rx; // only rows before rx matter
    *in_target = ry < rx, *col = ry < rx ? cy : cx;
    return ry < rx ? ry : rx;
}

// This rank's part of the next batch (all of it in one process; transcoders run in one process).
static cterp_status read_part(cterp_trainer *t) {
    if (t->P == 1) return source_rows(t, t->x, t->y, t->B);
    if (t->src->next_part) return t->src->next_part(t->src->ctx, t->x, t->B, t->r0, t->r0 + t->Bl);
    cterp_status s = t->src->next(t->src->ctx, t->xall, t->B); // the toy, a .npy: cheap to make whole
    if (!s) memcpy(t->x, t->xall + t->r0 * t->D, (size_t)(t->Bl * t->D) * sizeof(float));
    return s;
}

// A batch from the source, checked: a row with a NaN/Inf stops training naming the step, the
// hook and the row, or (skip_nonfinite_rows) is replaced by the source's next finite row.
static cterp_status read_batch(cterp_trainer *t, int64_t step) {
    cterp_status s = read_part(t);
    if (s) return s;
    const int64_t B = t->Bl, D = t->D, DO = t->DO;
    if (!check_finite(t->x, (size_t)(B * D), step, "the input batch") &&
        (!t->y || !check_finite(t->y, (size_t)(B * DO), step, "the target batch")))
        return CTERP_OK;
    const char *hook = t->sae->meta.hook_name[0] ? t->sae->meta.hook_name : t->src->description;
    int64_t col = 0, skipped = 0;
    int tgt = 0;
    for (int64_t r = bad_pair_row(t, 0, &col, &tgt); r < B; r = bad_pair_row(t, r, &col, &tgt)) {
        if (!t->cfg.skip_nonfinite_rows)
            return cterp_error(CTERP_ENAN,
                               "step %lld: a non-finite %s at %s: row %lld of the batch, "
                               "column %lld (%g); training stopped, the last checkpoint is kept "
                               "(--skip-nonfinite-rows true skips such rows)",
                               (long long)step, tgt ? "target" : "activation", hook, (long long)(t->r0 + r),
                               (long long)col, (double)(tgt ? t->y[r * DO + col] : t->x[r * D + col]));
        // at most as many rows skipped as the batch holds: a source of mostly NaN is an error
        if (++skipped > B)
            return cterp_error(CTERP_ENAN,
                               "step %lld: more than %lld rows with a NaN/Inf at %s in one batch; "
                               "the data is broken",
                               (long long)step, (long long)B, hook);
        t->skipped_rows++;
        if ((s = source_rows(t, t->x + r * D, t->y ? t->y + r * DO : NULL, 1))) return s;
    }
    cterp_clear_error();
    return CTERP_OK;
}

static cterp_status next_batch(cterp_trainer *t) {
    cterp_status s = read_batch(t, t->step);
    if (s) return s;
    size_t n = (size_t)(t->Bl * t->D);
    if (t->scale != 1.0) {
        float c = (float)t->scale;
        for (size_t i = 0; i < n; i++) t->x[i] *= c;
    }
    return CTERP_OK;
}

// Input scale (E||x|| = sqrt(d_in)) from the first batches, then b_dec from the first batch.
static cterp_status initialize_data(cterp_trainer *t) {
    cterp_status s = CTERP_OK;
    if (t->cfg.normalize_activations) {
        double sum = 0, *nrm = malloc((size_t)(t->B + t->Bl) * sizeof(double));
        if (!nrm) return cterp_error(CTERP_ENOMEM, "out of memory");
        double *mine = nrm + t->B;
        for (int b = 0; b < t->cfg.norm_estimate_batches; b++) {
            if ((s = read_batch(t, 0))) break;
            for (int64_t r = 0; r < t->Bl; r++) {
                double n2 = 0;
                for (int64_t d = 0; d < t->D; d++) n2 += (double)t->x[r * t->D + d] * t->x[r * t->D + d];
                mine[r] = sqrt(n2);
            }
            // every rank's norms in row order: the sum a single process takes, bit for bit
            if ((s = dist_allgather(nrm, mine, (size_t)t->Bl * sizeof(double)))) break;
            double bm = 0;
            for (int64_t r = 0; r < t->B; r++) bm += nrm[r];
            sum += bm / (double)t->B;
        }
        free(nrm);
        if (s) return s;
        double mean_norm = sum / t->cfg.norm_estimate_batches;
        if (!(mean_norm > 0))
            return cterp_error(CTERP_EINVAL, "normalize_activations: the inputs have zero norm");
        t->scale = sqrt((double)t->D) / mean_norm;
    }
    t->initialized = 1;
    return CTERP_OK;
}

cterp_status cterp_trainer_create(cterp_trainer **out, const cterp_train_config *cfg,
                                  cterp_act_source *src) {
    cterp_status s = trainer_alloc(out, cfg, src);
    if (s) return s;
    init_params(*out);
    return CTERP_OK;
}

void cterp_trainer_set_output(cterp_trainer *t, const char *out_dir, cterp_train_log_fn log,
                              void *user) {
    if (t->rank != 0) out_dir = NULL, log = NULL; // rank 0 alone writes and reports
    free(t->out_dir);
    t->out_dir = out_dir ? strdup(out_dir) : NULL;
    if (t->metrics_file) fclose(t->metrics_file);
    t->metrics_file = NULL;
    file_unlock_dir(t->out_lock);
    t->out_lock = -1;
    t->log = log;
    t->log_user = user;
}

int64_t cterp_trainer_step(const cterp_trainer *t) { return t->step; }
const cterp_sae *cterp_trainer_sae(const cterp_trainer *t) { return t->sae; }
const cterp_train_metrics *cterp_trainer_last_metrics(const cterp_trainer *t) { return &t->last; }
double cterp_trainer_input_scale(const cterp_trainer *t) { return t->scale; }

// last: the run's final line, which also gives the process's peak resident set (peak_rss_mb)
static void write_metrics_json(FILE *f, const cterp_train_metrics *m, const cterp_train_config *c,
                               int last) {
    fprintf(f,
            "{\"step\": %lld, \"tokens\": %lld, \"loss\": %.8g, \"mse_loss\": %.8g, "
            "\"sparsity_loss\": %.8g, \"aux_loss\": %.8g, \"mse\": %.8g, "
            "\"explained_variance\": %.8g, \"l0\": %.6g, \"l0_sparsity\": %.6g, "
            "\"l1_magnitude\": %.8g, \"dead_features\": %lld, \"dead_fraction\": %.6g, ",
            (long long)m->step, (long long)m->tokens, m->loss, m->mse_loss, m->sparsity_loss,
            m->aux_loss, m->mse, m->explained_variance, m->l0, m->l0_sparsity, m->l1_magnitude,
            (long long)m->dead_features, m->dead_fraction);
    if (c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK)
        fprintf(f, "\"inner_mse_loss\": %.8g, ", m->inner_mse_loss);
    if (c->k_anneal_steps > 0) fprintf(f, "\"k\": %d, ", m->k); // every line of an annealed run
    if (isfinite(m->mean_log10_density))
        fprintf(f, "\"mean_log10_feature_density\": %.6g, ", m->mean_log10_density);
    if (m->window_done) {
        fprintf(f, "\"log10_density_histogram\": [");
        for (int b = 0; b < 10; b++) fprintf(f, "%lld%s", (long long)m->density_hist[b], b < 9 ? ", " : "");
        fprintf(f, "], \"below_1e-5\": %lld, \"below_1e-6\": %lld, ", (long long)m->below_1e5,
                (long long)m->below_1e6);
    }
    if (c->skip_nonfinite_rows)
        fprintf(f, "\"nonfinite_rows_skipped\": %lld, ", (long long)m->nonfinite_rows_skipped);
    fprintf(f,
            "\"lr\": %.8g, \"sparsity_coefficient\": %.8g, \"topk_threshold\": %.8g, "
            "\"tokens_per_s\": %.6g, \"source_tokens_per_s\": %.6g, \"sae_tokens_per_s\": %.6g, "
            "\"elapsed_s\": %.3f",
            m->lr, m->sparsity_coefficient, m->threshold, m->tokens_per_s, m->source_tokens_per_s,
            m->sae_tokens_per_s, m->elapsed_s);
    if (last) // like the clock fields, not part of what a resumed run must reproduce
        fprintf(f, ", \"peak_rss_mb\": %.1f", (double)platform_peak_rss() / 1048576.0);
    fprintf(f, "}\n");
    fflush(f);
}

// Names the first non-finite value of a block laid out as sae->params (the weights, or t->grads)
// in its first n floats: "W_enc at latent 3, column 5 (nan)". Returns 0 when all are finite.
static int name_nonfinite(const cterp_sae *sae, const float *block, size_t n, char *out,
                          size_t cap) {
    size_t i = 0;
    while (i < n && isfinite(block[i])) i++;
    if (i == n) return 0;
    const int64_t N = sae->d_sae, D = sae->d_in, DO = sae->d_out;
    const struct {
        const char *name;
        const float *p;
        // rows: latents (N) or output columns (b_dec, W_skip: DO); cols 1: a vector
        int64_t rows, cols;
        int by_latent;
    } v[] = {{"W_enc", sae->W_enc, N, D, 1},
             {sae->arch == CTERP_ARCH_GATED ? "b_gate" : "b_enc", sae->b_enc, N, 1, 1},
             {"W_dec", sae->W_dec, N, DO, 1},
             {"b_dec", sae->b_dec, DO, 1, 0},
             {"threshold", sae->threshold, N, 1, 1},
             {"r_mag", sae->r_mag, N, 1, 1},
             {"b_mag", sae->b_mag, N, 1, 1},
             {"W_skip", sae->W_skip, DO, D, 0}};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        if (!v[k].p) continue;
        const size_t off = (size_t)(v[k].p - sae->params), len = (size_t)(v[k].rows * v[k].cols);
        if (i < off || i >= off + len) continue;
        const int64_t r = (int64_t)(i - off) / v[k].cols, col = (int64_t)(i - off) % v[k].cols;
        if (v[k].cols == 1)
            snprintf(out, cap, "%s at %s %lld (%g)", v[k].name,
                     v[k].by_latent ? "latent" : "column", (long long)r, block[i]);
        else
            snprintf(out, cap, "%s at %s %lld, %s column %lld (%g)", v[k].name,
                     v[k].by_latent ? "latent" : "output column", (long long)r,
                     v[k].by_latent && v[k].p == sae->W_dec ? "output" : "input", (long long)col,
                     block[i]);
        return 1;
    }
    snprintf(out, cap, "parameter %zu (%g)", i, block[i]);
    return 1;
}

// P > 1: the gradient summed over the ranks (each rank's is the mean over its Bl rows, so the
// batch's mean is their mean), the squared row norms again from the sums, and the firing counts,
// input column sums and loss terms of every rank's rows summed into red (the statistics below).
static cterp_status reduce_step(cterp_trainer *t, double aux) {
    const int64_t N = t->N, D = t->D, DO = t->DO, Bl = t->Bl;
    const arch_work *w = &t->work;
    // every trained parameter's gradient, in sae->params' layout: W_enc, b_enc, W_dec, b_dec, then
    // gated's r_mag, b_mag and skip_transcoder's W_skip; not jumprelu's threshold (dlog_thr's)
    const size_t n = t->sae->n_params - (t->sae->threshold ? (size_t)N : 0);
    cterp_status s = dist_sum_f32(t->grads, n);
    if (!s && t->dlog_thr) s = dist_sum_f32(t->dlog_thr, (size_t)N);
    if (s) return s;
    const float inv = 1.0f / (float)t->P; // exact for a power of two
    float *g = t->grads;
    #pragma omp parallel for schedule(static)
    for (size_t q = 0; q < n; q++) g[q] *= inv;
    if (t->dlog_thr)
        for (int64_t i = 0; i < N; i++) t->dlog_thr[i] *= inv;
    const float *dW_enc = g, *dW_dec = g + N * D + N;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++)
        t->rowsq[i] = sumsq_f64(dW_enc + i * D, D), t->rowsq[N + i] = sumsq_f64(dW_dec + i * DO, DO);
    double *r = t->red, *col = r + N, *term = r + N + D, sumsq = 0;
    memset(r, 0, (size_t)(N + D + 8) * sizeof(double));
    for (int64_t p = 0; p < w->nnz; p++)
        if (w->f[p] > 0) r[w->lat[p]] += 1;
    for (int64_t q = 0; q < Bl; q++)
        for (int64_t d = 0; d < D; d++) {
            const double v = t->x[q * D + d];
            col[d] += v, sumsq += v * v;
        }
    term[0] = w->sse, term[1] = sumsq, term[2] = w->sparsity_loss * (double)Bl;
    term[3] = aux * (double)Bl, term[4] = w->l1_magnitude * (double)Bl;
    term[5] = w->aux_loss * (double)Bl; // matryoshka's inner prefixes (its inner_mse_loss)
    return dist_sum_f64(r, (size_t)(N + D + 8));
}

// batchtopk over P ranks (arch_work.cut): the cut of the whole batch from every rank's best
// candidates (each sends at most keep: the batch's best keep lie among them), in the batch's
// flat index (rank r's rows start at r0, so its flat indices at r0 x N): the pairs a single
// process keeps, ties included.
typedef struct {
    float v;
    int32_t pad;
    int64_t i;
} cut_cand;

static int cand_order(const void *a, const void *b) {
    const cut_cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static cterp_status global_cut(void *user, const float *v, const int64_t *flat, int64_t n,
                               int64_t keep, float *cut_v, int64_t *cut_i) {
    cterp_trainer *t = user;
    const int64_t off = t->r0 * t->N, cap = keep * t->P;
    cut_cand *mine = malloc((size_t)(n + cap) * sizeof(cut_cand));
    if (!mine) return cterp_error(CTERP_ENOMEM, "batchtopk: out of memory for %lld candidates", (long long)cap);
    cut_cand *all = mine + n;
    for (int64_t q = 0; q < n; q++) mine[q] = (cut_cand){v[q], 0, flat[q] + off};
    size_t got = 0;
    cterp_status s = dist_allgatherv(all, (size_t)cap * sizeof(cut_cand), mine, (size_t)n * sizeof(cut_cand), &got);
    if (!s) {
        const int64_t m = (int64_t)(got / sizeof(cut_cand));
        if (m > keep) {
            qsort(all, (size_t)m, sizeof *all, cand_order);
            *cut_v = all[keep - 1].v, *cut_i = all[keep - 1].i - off;
        } else {
            *cut_v = 0, *cut_i = INT64_MAX; // keep every positive
        }
    }
    free(mine);
    return s;
}

static cterp_status train_step(cterp_trainer *t) {
    cterp_status s;
    const int64_t N = t->N, D = t->D, B = t->B, step = t->step;
    const cterp_train_config *c = &t->cfg;
    double t0 = time_now();
    if (!t->initialized && (s = initialize_data(t))) return s;
    if ((s = next_batch(t))) return s;
    t->t_data += time_now() - t0;
    const int64_t DO = t->DO;
    if (step == 0 && c->b_dec_init != CTERP_BDEC_ZEROS) { // b_dec from the first (whole) batch
        const float *bx = t->y ? t->y : t->x; // of the targets, for transcoders (one process)
        if (t->P > 1) {
            if ((s = dist_allgather(t->xall, t->x, (size_t)(t->Bl * D) * sizeof(float)))) return s;
            bx = t->xall;
        }
        if (c->b_dec_init == CTERP_BDEC_GEOMETRIC_MEDIAN) geometric_median(t->sae->b_dec, bx, B, DO);
        else if (c->b_dec_init == CTERP_BDEC_MEAN) {
            for (int64_t d = 0; d < DO; d++) {
                double m = 0;
                for (int64_t r = 0; r < B; r++) m += bx[r * DO + d];
                t->sae->b_dec[d] = (float)(m / (double)B);
            }
        }
    }
    const double lr = sched_lr(c, step, t->steps);
    const double sp = sched_sparsity(c, step, t->steps);
    // k annealing: a function of the step alone, so every rank and a resumed run agree; the pair
    // buffers grow to the largest k at the first step and are reused after it
    const int k = cterp_train_config_k_at(c, D, step);
    t->sae->k = k;
    arch_opts o = {c->architecture, k, c->rescale_acts_by_decoder_norm, 0.0f, c->jumprelu_bandwidth, NULL, 0,
                   c->encoder_bf16, t->fuse_mode, t->widths, t->n_widths, t->y, c->gated_detach_aux_decoder};
    if (c->architecture == CTERP_ARCH_STANDARD || c->architecture == CTERP_ARCH_GATED ||
        c->architecture == CTERP_ARCH_CROSSCODER || cterp_sae_is_transcoder(t->sae))
        o.coef = (float)(c->l1_coefficient * sp);
    if (c->architecture == CTERP_ARCH_JUMPRELU) o.coef = (float)(c->l0_coefficient * sp);
    arch_work *w = &t->work;
    if (t->P > 1 && (c->architecture == CTERP_ARCH_BATCHTOPK || c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK))
        w->cut = global_cut, w->cut_user = t, w->cut_keep = (int64_t)k * B;
    // dead latents as of before this step; when revival will run, the forward copies their
    // pre-activations while each row of z is in cache
    int64_t n_dead = 0;
    for (int64_t i = 0; i < N; i++)
        if ((t->dead[i] = t->since_fired[i] >= c->dead_feature_window)) t->dead_list[n_dead++] = (int32_t)i;
    const int topk_like = c->architecture == CTERP_ARCH_TOPK || c->architecture == CTERP_ARCH_BATCHTOPK ||
                          c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK;
    if (n_dead > 0 && ((c->use_auxk && topk_like) || c->use_ghost_grads)) o.sub = t->dead_list, o.n_sub = n_dead;
    if ((s = arch_forward(w, t->sae, &o, t->sae->threshold, t->x))) return s;

    // Backward: each latent's gradient rows, with their squared norms taken while the rows are
    // in cache (the clipping norm then needs no pass of its own).
    const float *thr = t->sae->threshold;
    float *dW_enc = t->grads, *db_enc = dW_enc + N * D, *dW_dec = db_enc + N, *db_dec = dW_dec + N * DO;
    float *gx = c->architecture == CTERP_ARCH_GATED ? db_dec + D : NULL; // d r_mag, d b_mag (2N)
    float *dW_skip = t->sae->W_skip ? db_dec + DO : NULL;                 // (DO, D), from prepare
    double *rowsq = t->rowsq;
    double t0b = time_now();
    arch_backward_prepare(w, &o, t->x, db_dec);
    #pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < N; i++) {
        float *e = dW_enc + i * D, *d = dW_dec + i * DO;
        db_enc[i] = arch_latent_grad(w, t->sae, &o, thr, i, e, d, t->dlog_thr ? t->dlog_thr + i : NULL, gx);
        rowsq[i] = sumsq_f64(e, D), rowsq[N + i] = sumsq_f64(d, DO);
    }
    double t1 = time_now(), aux = 0;
    w->t_backward += t1 - t0b;
    if (n_dead > 0 && c->use_auxk && topk_like) {
        int k_aux = c->aux_k > 0 ? c->aux_k : c->aux_k == 0 ? (int)(D / 2 > 0 ? D / 2 : 1) : (int)D;
        aux += revive_auxk(w, t->sae, t->x, t->dead, n_dead, k_aux, c->aux_k_coefficient,
                           c->rescale_acts_by_decoder_norm, t->grads, t->auxk_mode);
    }
    if (n_dead > 0 && c->use_ghost_grads) aux += revive_ghost(w, t->sae, t->x, t->dead, n_dead, t->grads);
    if (n_dead > 0 && (c->use_auxk || c->use_ghost_grads)) // the rows revival added to
        for (int64_t i = 0; i < N; i++)
            if (t->dead[i]) rowsq[i] = sumsq_f64(dW_enc + i * D, D), rowsq[N + i] = sumsq_f64(dW_dec + i * DO, DO);
    double t2 = time_now();
    t->t_revive += t2 - t1;
    arch_bdec_from_benc(t->sae, db_enc, gx ? gx + N : NULL, db_dec);
    aux += w->aux_loss; // gated's gate reconstruction, matryoshka's inner prefixes
    double loss = w->mse_loss + w->sparsity_loss + aux;
    const size_t n_trained = t->sae->n_params - (t->sae->threshold ? (size_t)N : 0);
    if (!isfinite(loss)) { // a non-finite weight is the usual cause: name it
        char p[160];
        const int bad = name_nonfinite(t->sae, t->sae->params, t->sae->n_params, p, sizeof p);
        return cterp_error(CTERP_ENAN,
                           "step %lld: the loss is not finite (mse %g, sparsity %g, aux %g)%s%s; "
                           "training stopped, the last checkpoint is kept",
                           (long long)step, w->mse_loss, w->sparsity_loss, aux,
                           bad ? "; a non-finite weight: " : "", bad ? p : "");
    }
    if (t->dlog_thr) // dL/dlog(theta) = theta dL/dtheta
        for (int64_t i = 0; i < N; i++) t->dlog_thr[i] *= t->sae->threshold[i];
    if (t->P > 1) {
        if ((s = reduce_step(t, aux))) return s;
        const double *term = t->red + N + D; // the batch's loss, from every rank's rows
        loss = (term[0] + term[2] + term[3]) / (double)B;
    }

    // global gradient norm, in a fixed order: W_enc rows, b_enc, W_dec rows, b_dec, log thresholds
    double gn2 = 0;
    for (int64_t i = 0; i < N; i++) gn2 += rowsq[i];
    gn2 += sumsq_f64(db_enc, N);
    for (int64_t i = 0; i < N; i++) gn2 += rowsq[N + i];
    gn2 += sumsq_f64(db_dec, DO);
    if (t->dlog_thr) gn2 += sumsq_f64(t->dlog_thr, N);
    if (gx) gn2 += sumsq_f64(gx, 2 * N);
    if (dW_skip) gn2 += sumsq_f64(dW_skip, DO * D);
    if (!isfinite(gn2)) { // which parameter, which latent: the gradient, else the weight behind it
        char g[160], p[160];
        if (!name_nonfinite(t->sae, t->grads, n_trained, g, sizeof g)) {
            int64_t i = 0; // jumprelu: the log threshold's gradient, kept apart
            while (t->dlog_thr && i < N && isfinite(t->dlog_thr[i])) i++;
            if (t->dlog_thr && i < N)
                snprintf(g, sizeof g, "threshold (its log) at latent %lld (%g)", (long long)i,
                         t->dlog_thr[i]);
            else
                snprintf(g, sizeof g, "its norm (%g)", gn2);
        }
        const int bad = name_nonfinite(t->sae, t->sae->params, t->sae->n_params, p, sizeof p);
        return cterp_error(CTERP_ENAN,
                           "step %lld: the gradient is not finite: the gradient of %s%s%s; "
                           "training stopped, the last checkpoint is kept",
                           (long long)step, g, bad ? "; a non-finite weight: " : "", bad ? p : "");
    }
    float gscale = 1.0f;
    if (c->grad_clip > 0 && sqrt(gn2) > c->grad_clip) gscale = (float)(c->grad_clip / sqrt(gn2));
    // Adam over W_enc, b_enc, W_dec, b_dec (+ r_mag, b_mag for gated, W_skip for skip_transcoder;
    // the jumprelu threshold array is not trained directly)
    adam_update(t->sae->params, t->grads, gscale, t->adam_m, t->adam_v,
                t->sae->n_params - (t->sae->threshold ? (size_t)N : 0),
                (float)lr, c->adam_beta1, c->adam_beta2, c->adam_eps, step + 1);
    if (t->log_thr) {
        adam_update(t->log_thr, t->dlog_thr, gscale, t->thr_m, t->thr_v, (size_t)N, (float)lr, c->adam_beta1,
                    c->adam_beta2, c->adam_eps, step + 1);
        for (int64_t i = 0; i < N; i++) t->sae->threshold[i] = expf(t->log_thr[i]);
    }
    const int btopk = c->architecture == CTERP_ARCH_BATCHTOPK || c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK;
    double min_kept = w->min_kept;
    if (t->P > 1 && btopk && (s = dist_min_f64(&min_kept, 1))) return s;
    // the inference threshold learns once k is final: the cut of an annealing k is far below it
    const int k_final = c->k_anneal_steps <= 0 || step >= c->k_anneal_steps;
    if (btopk && k_final && isfinite(min_kept)) // the float product, as always
        t->topk_threshold = (1 - c->topk_threshold_lr) * t->topk_threshold + c->topk_threshold_lr * (float)min_kept;

    double t3 = time_now();
    t->t_optim += t3 - t2;
    // firing statistics (act > 0)
    for (int64_t i = 0; i < N; i++) t->since_fired[i]++;
    if (t->P > 1) { // every rank's firings (reduce_step)
        for (int64_t i = 0; i < N; i++)
            if (t->red[i] > 0) t->since_fired[i] = 0, t->window_count[i] += (int64_t)t->red[i];
    } else {
        for (int64_t p = 0; p < w->nnz; p++)
            if (w->f[p] > 0) {
                t->since_fired[w->lat[p]] = 0;
                t->window_count[w->lat[p]]++;
            }
    }
    t->window_steps++;
    double mean_log = t->last.mean_log10_density;
    cterp_train_metrics *m = &t->last;
    m->window_done = 0;
    if (t->window_steps >= c->feature_sampling_window) {
        double tokens = (double)t->window_steps * B, sum = 0;
        memset(m->density_hist, 0, sizeof m->density_hist);
        m->below_1e5 = m->below_1e6 = 0;
        for (int64_t i = 0; i < N; i++) {
            double freq = (double)t->window_count[i] / tokens;
            double l = log10(freq + 1e-10);
            t->log10_density[i] = (float)l;
            sum += l;
            int b = (int)floor(l) + 10;
            m->density_hist[b < 0 ? 0 : b > 9 ? 9 : b]++;
            m->below_1e5 += freq < 1e-5;
            m->below_1e6 += freq < 1e-6;
        }
        mean_log = sum / (double)N;
        m->window_done = 1;
        t->have_density = 1;
        memset(t->window_count, 0, (size_t)N * sizeof(int64_t));
        t->window_steps = 0;
    }
    t->step++;

    // metrics of this batch
    int64_t dead_now = 0;
    for (int64_t i = 0; i < N; i++) dead_now += t->since_fired[i] >= c->dead_feature_window;
    m->step = t->step;
    m->steps = t->steps;
    m->tokens = t->step * B;
    m->loss = loss;
    m->mse_loss = w->mse_loss;
    m->sparsity_loss = w->sparsity_loss;
    m->aux_loss = aux;
    m->inner_mse_loss = c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK ? w->aux_loss : 0;
    m->mse = w->mse_loss;
    m->explained_variance = w->sst > 0 ? 1.0 - w->sse / w->sst : NAN;
    int64_t nnz_pos = 0;
    for (int64_t p = 0; p < w->nnz; p++) nnz_pos += w->f[p] > 0;
    m->l1_magnitude = w->l1_magnitude;
    if (t->P > 1) { // the whole batch's terms (reduce_step); sst from the sums, in f64
        const double *cnt = t->red, *col = t->red + N, *term = t->red + N + D;
        double c2 = 0, nz = 0;
        for (int64_t d = 0; d < D; d++) c2 += col[d] * col[d];
        for (int64_t i = 0; i < N; i++) nz += cnt[i];
        const double sst = term[1] - c2 / (double)B;
        nnz_pos = (int64_t)nz;
        m->mse_loss = m->mse = term[0] / (double)B;
        m->sparsity_loss = term[2] / (double)B;
        m->aux_loss = term[3] / (double)B;
        m->l1_magnitude = term[4] / (double)B;
        if (c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK) m->inner_mse_loss = term[5] / (double)B;
        m->explained_variance = sst > 0 ? 1.0 - term[0] / sst : NAN;
    }
    m->l0 = (double)nnz_pos / (double)B;
    m->l0_sparsity = m->l0 / (double)N;
    m->dead_features = dead_now;
    m->dead_fraction = (double)dead_now / (double)N;
    m->mean_log10_density = mean_log;
    m->lr = lr;
    m->sparsity_coefficient = o.coef;
    m->threshold = t->topk_threshold;
    m->nonfinite_rows_skipped = t->skipped_rows;
    m->k = topk_like ? k : 0;
    t->t_stats += time_now() - t3;
    return CTERP_OK;
}

// Opens out_dir/metrics.jsonl: new at step 0; resumed, the lines up to this step kept and any
// after it (a killed run logged past its last checkpoint) or torn dropped, so the file reads as
// one run.
static cterp_status metrics_open(cterp_trainer *t) {
    char *p = file_join(t->out_dir, "metrics.jsonl"), *text = NULL;
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    cterp_status s = CTERP_OK;
    size_t len = 0;
    if (t->step > 0 && file_exists(p) && !(s = file_read_all(p, &text, &len))) {
        size_t keep = 0;
        for (char *line = text; line < text + len;) {
            char *nl = memchr(line, '\n', (size_t)(text + len - line));
            if (!nl) break; // torn last line
            long long step = -1;
            if (!strncmp(line, "{\"step\": ", 9)) step = strtoll(line + 9, NULL, 10);
            if (step < 0 || step > t->step) break;
            keep = (size_t)(nl + 1 - text);
            line = nl + 1;
        }
        if (keep < len) s = file_write_all(p, text, keep);
    }
    free(text);
    if (!s && !(t->metrics_file = fopen(p, t->step > 0 ? "a" : "w")))
        s = cterp_error(CTERP_EIO, "%s: cannot open for writing: %s", p, strerror(errno));
    free(p);
    return s;
}

cterp_status cterp_trainer_run(cterp_trainer *t, int64_t until_step) {
    if (until_step <= 0 || until_step > t->steps) until_step = t->steps;
    cterp_status s;
    if (t->out_dir) {
        if ((s = file_mkdirs(t->out_dir))) return s;
        if (t->out_lock < 0 && (s = file_lock_dir(t->out_dir, "training run", &t->out_lock)))
            return s;
        if (!t->metrics_file && (s = metrics_open(t))) return s;
    }
    if (t->cfg.threads > 0) omp_set_num_threads(t->cfg.threads);
    t->t_start = time_now();
    int64_t first = t->step;
    const double data0 = t->t_data;
    while (t->step < until_step) {
        if ((s = train_step(t))) return s;
        cterp_train_metrics *m = &t->last;
        double el = time_now() - t->t_start;
        m->elapsed_s = t->elapsed_before + el;
        m->tokens_per_s = (double)(t->step - first) * t->B / (el > 0 ? el : 1e-9);
        m->eta_s = m->tokens_per_s > 0 ? (double)(t->steps - t->step) * t->B / m->tokens_per_s : 0;
        const double tok = (double)(t->step - first) * t->B, data = t->t_data - data0;
        m->source_tokens_per_s = data > 0 ? tok / data : 0;
        m->sae_tokens_per_s = el - data > 0 ? tok / (el - data) : 0;
        if (t->step % t->cfg.log_every == 0 || t->step == t->steps || m->window_done) {
            if (t->P > 1) { // every rank must hold the same weights: a reduction that gave
                int same;   // different bits on different ranks is caught here, not later
                if ((s = dist_same(t->sae->params, t->sae->n_params * sizeof(float), &same))) return s;
                if (!same)
                    return cterp_error(CTERP_EIO, "step %lld: the %d MPI ranks hold different weights "
                                       "(the gradient sum differed between ranks); training stopped, "
                                       "the last checkpoint is kept (--dist-reduce ordered gives every "
                                       "rank the same bits)", (long long)t->step, t->P);
            }
            if (t->metrics_file) write_metrics_json(t->metrics_file, m, &t->cfg, t->step == t->steps);
            if (t->log) t->log(m, t->log_user);
        }
        if (t->out_dir && t->cfg.checkpoint_every > 0 && t->step % t->cfg.checkpoint_every == 0 &&
            t->step < t->steps) {
            char name[64];
            snprintf(name, sizeof name, "checkpoints/step_%lld", (long long)t->step);
            char *dir = file_join(t->out_dir, name);
            s = dir ? cterp_trainer_checkpoint(t, dir) : CTERP_ENOMEM;
            free(dir);
            if (s) return s;
        }
        file_test_point("step"); // between steps
    }
    t->elapsed_before += time_now() - t->t_start;
    t->t_start = time_now();
    return CTERP_OK;
}

cterp_status cterp_trainer_export(const cterp_trainer *t, cterp_sae **out) {
    const cterp_train_config *c = &t->cfg;
    const int64_t N = t->N, D = t->D, DO = t->DO;
    const int btopk = c->architecture == CTERP_ARCH_BATCHTOPK || c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK;
    cterp_arch arch = btopk ? CTERP_ARCH_JUMPRELU : c->architecture; // as SAELens saves them
    cterp_sae *s;
    cterp_status st = cterp_sae_is_transcoder(t->sae) ? cterp_sae_create_transcoder(&s, arch, D, DO, N)
                      : arch == CTERP_ARCH_CROSSCODER
                          ? cterp_sae_create_crosscoder(&s, t->sae->n_layers, D / t->sae->n_layers, N)
                          : cterp_sae_create(&s, arch, D, N, // the k of the last step (annealing)
                                             cterp_train_config_k_at(c, D, t->step > 0 ? t->step - 1 : 0));
    if (st) return st;
    s->meta = t->sae->meta;
    s->meta.training_tokens = t->step * t->B;
    memcpy(s->W_enc, t->sae->W_enc, (size_t)(N * D) * sizeof(float));
    memcpy(s->b_enc, t->sae->b_enc, (size_t)N * sizeof(float));
    memcpy(s->W_dec, t->sae->W_dec, (size_t)(N * DO) * sizeof(float));
    memcpy(s->b_dec, t->sae->b_dec, (size_t)DO * sizeof(float));
    if (s->W_skip) memcpy(s->W_skip, t->sae->W_skip, (size_t)(DO * D) * sizeof(float));
    // fold the input scale: the saved SAE reads and writes unscaled activations
    const float sc = (float)t->scale;
    if (sc != 1.0f) {
        for (int64_t q = 0; q < N * D; q++) s->W_enc[q] *= sc;
        for (int64_t q = 0; q < N * DO; q++) s->W_dec[q] /= sc;
        for (int64_t d = 0; d < DO; d++) s->b_dec[d] /= sc;
    }
    int topk_like = c->architecture == CTERP_ARCH_TOPK || btopk;
    if (topk_like && c->rescale_acts_by_decoder_norm) { // fold decoder norms (SAELens fold_W_dec_norm)
        for (int64_t i = 0; i < N; i++) {
            double n2 = 0;
            for (int64_t d = 0; d < D; d++) n2 += (double)s->W_dec[i * D + d] * s->W_dec[i * D + d];
            float n = (float)sqrt(n2);
            if (!(n > 0)) continue;
            for (int64_t d = 0; d < D; d++) s->W_enc[i * D + d] *= n, s->W_dec[i * D + d] /= n;
            s->b_enc[i] *= n;
        }
    }
    s->rescale_acts_by_decoder_norm = 0;
    if (c->architecture == CTERP_ARCH_JUMPRELU)
        memcpy(s->threshold, t->sae->threshold, (size_t)N * sizeof(float));
    if (btopk)
        for (int64_t i = 0; i < N; i++) s->threshold[i] = (float)t->topk_threshold;
    if (c->architecture == CTERP_ARCH_GATED) { // gate and magnitude read x through W_enc: the scale is folded there
        memcpy(s->r_mag, t->sae->r_mag, (size_t)N * sizeof(float));
        memcpy(s->b_mag, t->sae->b_mag, (size_t)N * sizeof(float));
    }
    *out = s;
    return CTERP_OK;
}

void cterp_act_source_free(cterp_act_source *s) {
    if (s && s->free && s->ctx) s->free(s->ctx);
    if (s) s->ctx = NULL;
}

// inverse of the standard normal upper tail by bisection (benchmarks only)
static double normal_upper_quantile(double p) {
    double lo = -10, hi = 10;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(mid / sqrt(2.0)) > p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

void cterp_trainer_bench_setup(cterp_trainer *t, double dead_fraction, double target_l0) {
    const int64_t N = t->N, D = t->D;
    if (target_l0 > 0 && target_l0 < N) { // z_i ~ N(0, ||W_enc_i||^2) for x ~ N(0, I), b_dec = 0
        double q = normal_upper_quantile(target_l0 / (double)N);
        for (int64_t i = 0; i < N; i++) {
            double n2 = 0;
            for (int64_t d = 0; d < D; d++) n2 += (double)t->sae->W_enc[i * D + d] * t->sae->W_enc[i * D + d];
            t->sae->b_enc[i] = (float)(-q * sqrt(n2));
        }
    }
    int64_t nd = (int64_t)(dead_fraction * (double)N);
    for (int64_t i = 0; i < nd; i++) { // every (N/nd)-th latent: spread over the index range
        int64_t j = (int64_t)((double)i * (double)N / (double)nd);
        t->sae->b_enc[j] = -1e4f;
        t->since_fired[j] = t->cfg.dead_feature_window;
    }
}

void cterp_trainer_phase_times(const cterp_trainer *t, double out[CTERP_N_PHASES]) {
    const arch_work *w = &t->work;
    double v[CTERP_N_PHASES] = {t->t_data,  w->t_encode, w->t_select, w->t_decode,
                                w->t_backward, t->t_revive, t->t_optim, t->t_stats};
    memcpy(out, v, sizeof v);
}

const char *cterp_trainer_phase_name(int phase) {
    static const char *names[CTERP_N_PHASES] = {"data",     "encode", "select", "decode",
                                                "backward", "revive", "optim",  "stats"};
    return phase >= 0 && phase < CTERP_N_PHASES ? names[phase] : "?";
}

void cterp_trainer_bench_auxk_mode(cterp_trainer *t, int mode) { t->auxk_mode = mode; }
void cterp_trainer_bench_fuse_mode(cterp_trainer *t, int mode) { t->fuse_mode = mode; }

void cterp_trainer_set_meta(cterp_trainer *t, const cterp_sae_meta *meta) { t->sae->meta = *meta; }
