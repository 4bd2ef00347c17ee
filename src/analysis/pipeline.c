// cterp_train_sae: model + dataset -> activation store -> trainer -> SAE directory (+ eval),
// the C form of mlxterp's model.train_sae.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "cterp/analysis.h"

void cterp_pipeline_opts_default(cterp_pipeline_opts *o) {
    memset(o, 0, sizeof *o);
    cterp_store_config_default(&o->store);
    o->eval_windows = 0;
}

void cterp_store_meta(cterp_sae_meta *meta, const char *model_name, const char *hook,
                      const char *dataset, const cterp_window_config *w) {
    snprintf(meta->model_name, sizeof meta->model_name, "%s", model_name ? model_name : "");
    snprintf(meta->hook_name, sizeof meta->hook_name, "%s", hook ? hook : "");
    snprintf(meta->dataset_path, sizeof meta->dataset_path, "%s", dataset ? dataset : "");
    meta->hook_head_index = -1;
    meta->context_size = w->context_size;
    meta->prepend_bos = w->prepend_bos;
    const char *sep = w->separator == CTERP_SEP_BOS ? "bos" : w->separator == CTERP_SEP_EOS ? "eos"
                    : w->separator == CTERP_SEP_NONE ? "" : NULL;
    if (sep) snprintf(meta->sequence_separator_token, sizeof meta->sequence_separator_token, "%s", sep);
    else snprintf(meta->sequence_separator_token, sizeof meta->sequence_separator_token, "%d", w->separator);
    meta->exclude_special_tokens = w->exclude_special;
    meta->disable_concat_sequences = !w->concat;
}

// An SAE on hook (hook_out NULL), or a transcoder from hook to hook_out: store, trainer, save,
// eval.
// Each layer's explained variance of a crosscoder over the next `rows` rows of its source (at
// least one batch of 256): 1 - sum ||x_l - x_hat_l||^2 / sum ||x_l - mean(x_l)||^2, in f64.
static cterp_status crosscoder_layer_ev(const cterp_sae *sae, cterp_act_source *src, int64_t rows, double *ev) {
    const int64_t L = sae->n_layers, W = sae->d_in, DL = W / L, B = 256;
    float *x = malloc((size_t)(B * W) * sizeof(float)), *y = malloc((size_t)(B * W) * sizeof(float));
    double *sum = calloc((size_t)W, sizeof(double)), *sse = calloc((size_t)L, sizeof(double)),
           *sq = calloc((size_t)L, sizeof(double));
    cterp_status s = CTERP_OK;
    int64_t n = 0;
    if (!x || !y || !sum || !sse || !sq) s = cterp_error(CTERP_ENOMEM, "crosscoder eval: out of memory");
    for (; !s && (n == 0 || n < rows); n += B) {
        if ((s = src->next(src->ctx, x, B)) || (s = cterp_sae_forward(sae, x, B, y))) break;
        for (int64_t q = 0; q < B * W; q++) {
            const double v = x[q], e = v - y[q];
            sse[q % W / DL] += e * e, sq[q % W / DL] += v * v, sum[q % W] += v;
        }
    }
    for (int64_t l = 0; !s && l < L; l++) {
        double var = sq[l];
        for (int64_t d = l * DL; d < (l + 1) * DL; d++) var -= sum[d] * sum[d] / (double)n;
        ev[l] = var > 0 ? 1.0 - sse[l] / var : NAN;
    }
    free(x), free(y), free(sum), free(sse), free(sq);
    return s;
}

// xc_hooks (n_xc >= 2): a crosscoder over those hooks side by side (hook: their comma-separated
// list, for the metadata); ev is then not filled, xc_ev (n_xc) gets each layer's EV.
static cterp_status train_one(cterp_model *m, const char *hook, const char *hook_out,
                              const char *const *xc_hooks, int n_xc, double *xc_ev,
                              const char *dataset, const cterp_train_config *cfg,
                              const char *out_dir, const cterp_pipeline_opts *opts,
                              cterp_sae **sae, cterp_eval_result *ev) {
    if (sae) *sae = NULL;
    cterp_pipeline_opts od;
    if (!opts) cterp_pipeline_opts_default(&od), opts = &od;
    cterp_status s;
    cterp_train_config rc; // a resumed run's config is the checkpoint's: the store needs its seed and batch
    if (opts->resume) {
        if ((s = cterp_checkpoint_check(opts->resume))) return s;
        char *p = file_join(opts->resume, "train_config.json");
        if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
        rc = *cfg;
        s = cterp_train_config_load_json(&rc, p);
        free(p);
        if (s) return s;
        cfg = &rc;
    }
    cterp_store_config sc = opts->store;
    sc.seed = cfg->seed; // one seed for the whole run
    sc.run_rows = cterp_train_rows_needed(cfg); // a short run fills only what it takes
    cterp_act_source src;
    s = xc_hooks   ? cterp_act_concat_store(&src, m, xc_hooks, n_xc, dataset, &sc, cfg->batch_size)
        : hook_out ? cterp_act_pair_store(&src, m, hook, hook_out, dataset, &sc, cfg->batch_size)
                   : cterp_act_store(&src, m, hook, dataset, &sc, cfg->batch_size);
    if (s) return s;
    cterp_trainer *t = NULL;
    cterp_sae *out = NULL;
    s = opts->resume ? cterp_trainer_resume(&t, opts->resume, &src) : cterp_trainer_create(&t, cfg, &src);
    if (s) goto done;
    cterp_sae_meta meta = cterp_trainer_sae(t)->meta;
    cterp_store_meta(&meta, opts->model_name, hook, dataset, &sc.windows);
    if (hook_out) snprintf(meta.hook_name_out, sizeof meta.hook_name_out, "%s", hook_out);
    cterp_trainer_set_meta(t, &meta);
    cterp_trainer_set_output(t, out_dir, opts->log, opts->log_user);
    if ((s = cterp_trainer_run(t, 0))) goto done;
    if (out_dir && (s = cterp_trainer_save(t, out_dir))) goto done;
    if ((sae || xc_ev || (ev && opts->eval_windows > 0)) && (s = cterp_trainer_export(t, &out))) goto done;
    if (xc_ev && (s = crosscoder_layer_ev(out, &src, opts->eval_windows * sc.windows.context_size, xc_ev)))
        goto done;
    if (!xc_hooks && ev && opts->eval_windows > 0) {
        cterp_eval_config ec;
        cterp_eval_config_default(&ec);
        ec.windows = sc.windows;
        ec.data = sc.data;
        ec.batch = sc.model_batch;
        ec.n_windows = opts->eval_windows;
        ec.progress = opts->eval_progress, ec.progress_user = opts->eval_progress_user;
        if ((s = cterp_eval(m, out, dataset, &ec, ev))) goto done;
    }
    if (sae) *sae = out, out = NULL;
done:
    cterp_sae_free(out);
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
    return s;
}

cterp_status cterp_train_sae(cterp_model *m, int layer, const char *component, const char *dataset,
                             const cterp_train_config *cfg, const char *out_dir,
                             const cterp_pipeline_opts *opts, cterp_sae **sae, cterp_eval_result *ev) {
    if (sae) *sae = NULL;
    char hook[256];
    cterp_status s = cterp_hook_name(layer, component, hook, sizeof hook);
    return s ? s : train_one(m, hook, NULL, NULL, 0, NULL, dataset, cfg, out_dir, opts, sae, ev);
}

cterp_status cterp_train_transcoder(cterp_model *m, const char *hook_in, const char *hook_out,
                                    const char *dataset, const cterp_train_config *cfg,
                                    const char *out_dir, const cterp_pipeline_opts *opts,
                                    cterp_sae **sae, cterp_eval_result *ev) {
    if (sae) *sae = NULL;
    if (!hook_in || !hook_out)
        return cterp_error(CTERP_EINVAL, "transcoder: an input and an output hook are needed");
    return train_one(m, hook_in, hook_out, NULL, 0, NULL, dataset, cfg, out_dir, opts, sae, ev);
}

cterp_status cterp_train_crosscoder(cterp_model *m, const char *const *hooks, int n, const char *dataset,
                                    const cterp_train_config *cfg, const char *out_dir,
                                    const cterp_pipeline_opts *opts, cterp_sae **sae, double *layer_ev) {
    if (sae) *sae = NULL;
    if (cfg->architecture != CTERP_ARCH_CROSSCODER)
        return cterp_error(CTERP_EINVAL, "crosscoder: got architecture %s, expected crosscoder",
                           cterp_arch_name(cfg->architecture));
    if (!hooks || n < 2 || n > 4096)
        return cterp_error(CTERP_EINVAL, "crosscoder: got %d hooks, expected 2..4096 (one layer is an SAE)", n);
    char list[256];
    size_t k = 0;
    for (int h = 0; h < n; h++) { // cfg.json's hook_names, through the metadata
        size_t len = hooks[h] ? strlen(hooks[h]) : 0;
        if (!len || strchr(hooks[h], ',') || k + len + 2 > sizeof list)
            return cterp_error(CTERP_EINVAL, "crosscoder: the hook names (\"%s\"...) must be non-empty, without "
                               "commas, and %zu characters together at most", hooks[h] ? hooks[h] : "",
                               sizeof list - 1);
        if (k) list[k++] = ',';
        memcpy(list + k, hooks[h], len + 1);
        k += len;
    }
    cterp_pipeline_opts od;
    if (!opts) cterp_pipeline_opts_default(&od), opts = &od;
    double *ev = layer_ev && opts->eval_windows > 0 ? layer_ev : NULL;
    return train_one(m, list, NULL, hooks, n, ev, dataset, cfg, out_dir, opts, sae, NULL);
}

typedef struct {
    const cterp_pipeline_opts *o;
    int h;
} hook_log_ctx;

static void hook_log(const cterp_train_metrics *m, void *user) {
    const hook_log_ctx *c = user;
    c->o->hook_log(c->h, m, c->o->log_user);
}

// The last error, prefixed with the hook it concerns (copied first: the message is the buffer).
static cterp_status with_hook(cterp_status s, const char *hook) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cterp_last_error());
    return cterp_error(s, "hook %s: %s", hook, msg);
}

// The fields that decide which rows each hook's source serves: they must agree for one stream
// to feed every trainer as its own store would.
static cterp_status check_same_rows(const char *const *hooks, int n, const cterp_train_config *c) {
    for (int h = 1; h < n; h++) {
        const char *f = c[h].batch_size != c[0].batch_size ? "batch_size"
                        : c[h].seed != c[0].seed           ? "seed"
                        : cterp_train_rows_needed(&c[h]) != cterp_train_rows_needed(&c[0])
                            ? "the rows the run takes (training steps/tokens, normalize_activations)"
                            : NULL;
        if (!f) continue;
        return cterp_error(CTERP_EINVAL,
                           "hook %s: %s differs from hook %s's (batch %lld/%lld, seed %llu/%llu, "
                           "%lld/%lld rows): one forward feeds every hook, so batch_size, seed and "
                           "the run's length must be the same for all",
                           hooks[h], f, hooks[0], (long long)c[h].batch_size, (long long)c[0].batch_size,
                           (unsigned long long)c[h].seed, (unsigned long long)c[0].seed,
                           (long long)cterp_train_rows_needed(&c[h]), (long long)cterp_train_rows_needed(&c[0]));
    }
    return CTERP_OK;
}

cterp_status cterp_train_saes(cterp_model *m, const char *const *hooks, int n, const char *dataset,
                              const cterp_train_config *cfgs, const char *out_dir,
                              const char *const *resume, const cterp_pipeline_opts *opts,
                              cterp_sae **saes, cterp_eval_result *evs) {
    if (n < 1 || n > 4096) return cterp_error(CTERP_EINVAL, "hooks: expected 1..4096 hook names, got %d", n);
    if (saes) memset(saes, 0, (size_t)n * sizeof *saes);
    cterp_pipeline_opts od;
    if (!opts) cterp_pipeline_opts_default(&od), opts = &od;
    cterp_train_config *cfg = malloc((size_t)n * sizeof *cfg);
    cterp_act_source *src = calloc((size_t)n, sizeof *src);
    cterp_trainer **t = calloc((size_t)n, sizeof *t);
    hook_log_ctx *lc = calloc((size_t)n, sizeof *lc);
    char **dirs = calloc((size_t)n, sizeof *dirs);
    cterp_multi_store *ms = NULL;
    cterp_sae *out = NULL;
    cterp_status s = cfg && src && t && lc && dirs ? CTERP_OK : cterp_error(CTERP_ENOMEM, "out of memory");
    for (int h = 0; !s && h < n; h++) { // a resumed hook's config is its checkpoint's
        cfg[h] = cfgs[h];
        if (!resume || !resume[h]) continue;
        char *p = file_join(resume[h], "train_config.json");
        if (!(s = cterp_checkpoint_check(resume[h])))
            s = p ? cterp_train_config_load_json(&cfg[h], p) : cterp_error(CTERP_ENOMEM, "out of memory");
        free(p);
    }
    if (!s) s = check_same_rows(hooks, n, cfg);
    cterp_store_config sc = opts->store;
    sc.seed = cfg[0].seed;
    sc.run_rows = cterp_train_rows_needed(&cfg[0]);
    if (!s) s = cterp_multi_store_open(&ms, m, hooks, n, dataset, &sc, cfg[0].batch_size);
    for (int h = 0; !s && h < n; h++) s = cterp_multi_store_source(ms, h, &src[h]); // all before any read
    for (int h = 0; !s && h < n; h++) {
        s = resume && resume[h] ? cterp_trainer_resume(&t[h], resume[h], &src[h])
                                : cterp_trainer_create(&t[h], &cfg[h], &src[h]);
        if (s) {
            s = with_hook(s, hooks[h]);
            break;
        }
        cterp_sae_meta meta = cterp_trainer_sae(t[h])->meta;
        cterp_store_meta(&meta, opts->model_name, hooks[h], dataset, &sc.windows);
        cterp_trainer_set_meta(t[h], &meta);
        if (out_dir && !(dirs[h] = file_join(out_dir, hooks[h]))) s = cterp_error(CTERP_ENOMEM, "out of memory");
        lc[h] = (hook_log_ctx){opts, h};
        if (opts->hook_log)
            cterp_trainer_set_output(t[h], dirs[h], hook_log, &lc[h]);
        else
            cterp_trainer_set_output(t[h], dirs[h], opts->log, opts->log_user);
    }
    // a step of each in turn: the sources stay within a batch of each other (resumed ones may
    // start apart; the one behind catches up first)
    const int64_t steps = s ? 0 : cterp_train_config_steps(&cfg[0]);
    for (;;) {
        if (s) break;
        int64_t lo = steps;
        for (int h = 0; h < n; h++) lo = cterp_trainer_step(t[h]) < lo ? cterp_trainer_step(t[h]) : lo;
        if (lo >= steps) break;
        for (int h = 0; !s && h < n; h++)
            if (cterp_trainer_step(t[h]) == lo && (s = cterp_trainer_run(t[h], lo + 1)))
                s = with_hook(s, hooks[h]);
    }
    for (int h = 0; !s && h < n; h++) {
        if (dirs[h] && (s = cterp_trainer_save(t[h], dirs[h]))) break;
        if (!saes && !(evs && opts->eval_windows > 0)) continue;
        if ((s = cterp_trainer_export(t[h], &out))) break;
        if (evs && opts->eval_windows > 0) {
            cterp_eval_config ec;
            cterp_eval_config_default(&ec);
            ec.windows = sc.windows;
            ec.data = sc.data;
            ec.batch = sc.model_batch;
            ec.n_windows = opts->eval_windows;
            ec.progress = opts->eval_progress, ec.progress_user = opts->eval_progress_user;
            if ((s = cterp_eval(m, out, dataset, &ec, &evs[h]))) break;
        }
        if (saes) saes[h] = out, out = NULL;
        cterp_sae_free(out), out = NULL;
    }
    cterp_sae_free(out);
    if (s && saes)
        for (int h = 0; h < n; h++) cterp_sae_free(saes[h]), saes[h] = NULL;
    for (int h = 0; t && h < n; h++) cterp_trainer_free(t[h]);
    for (int h = 0; src && h < n; h++) cterp_act_source_free(&src[h]);
    for (int h = 0; dirs && h < n; h++) free(dirs[h]);
    cterp_multi_store_free(ms);
    free(cfg), free(src), free(t), free(lc), free(dirs);
    return s;
}
