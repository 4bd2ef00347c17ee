// cterp_train_sae: model + dataset -> activation store -> trainer -> SAE directory (+ eval),
// the C form of mlxterp's model.train_sae.
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

cterp_status cterp_train_sae(cterp_model *m, int layer, const char *component, const char *dataset,
                             const cterp_train_config *cfg, const char *out_dir,
                             const cterp_pipeline_opts *opts, cterp_sae **sae, cterp_eval_result *ev) {
    if (sae) *sae = NULL;
    cterp_pipeline_opts od;
    if (!opts) cterp_pipeline_opts_default(&od), opts = &od;
    char hook[256];
    cterp_status s = cterp_hook_name(layer, component, hook, sizeof hook);
    if (s) return s;
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
    if ((s = cterp_act_store(&src, m, hook, dataset, &sc, cfg->batch_size))) return s;
    cterp_trainer *t = NULL;
    cterp_sae *out = NULL;
    s = opts->resume ? cterp_trainer_resume(&t, opts->resume, &src) : cterp_trainer_create(&t, cfg, &src);
    if (s) goto done;
    cterp_sae_meta meta = cterp_trainer_sae(t)->meta;
    cterp_store_meta(&meta, opts->model_name, hook, dataset, &sc.windows);
    cterp_trainer_set_meta(t, &meta);
    cterp_trainer_set_output(t, out_dir, opts->log, opts->log_user);
    if ((s = cterp_trainer_run(t, 0))) goto done;
    if (out_dir && (s = cterp_trainer_save(t, out_dir))) goto done;
    if ((sae || (ev && opts->eval_windows > 0)) && (s = cterp_trainer_export(t, &out))) goto done;
    if (ev && opts->eval_windows > 0) {
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
