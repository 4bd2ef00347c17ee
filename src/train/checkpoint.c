// Checkpoints: the SAE directory (loadable by SAELens) + trainer_state.safetensors (parameters
// in training form, Adam moments, firing counters, schedule position, data position) +
// train_config.json + checkpoint.json, the manifest (every file's size), written last. A
// checkpoint is written into "<dir>.tmp", each file durably (core/file.h), and renamed into
// place, so a crash leaves the previous checkpoint whole; a directory without its manifest, or
// whose files disagree with it, is refused (cterp_checkpoint_check).
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "io/safetensors.h"
#include "train/trainer_impl.h"

#define STATE_FORMAT "cterp-trainer-state"
#define STATE_VERSION "1"
#define MANIFEST "checkpoint.json"
#define MANIFEST_FORMAT "cterp-checkpoint"

// The files of a checkpoint; all but sparsity are needed to resume.
static const char *const ck_files[] = {"cfg.json", "sae_weights.safetensors",
                                       "sparsity.safetensors", "trainer_state.safetensors",
                                       "train_config.json"};
enum { N_CK_FILES = sizeof ck_files / sizeof ck_files[0] };

static void current_density(const cterp_trainer *t, float *out) {
    if (t->have_density || t->window_steps == 0) {
        memcpy(out, t->log10_density, (size_t)t->N * sizeof(float));
        return;
    }
    double tokens = (double)t->window_steps * t->B;
    for (int64_t i = 0; i < t->N; i++) out[i] = (float)log10((double)t->window_count[i] / tokens + 1e-10);
}

cterp_status cterp_trainer_save(const cterp_trainer *t, const char *dir) {
    if (t->rank != 0) return CTERP_OK; // rank 0 alone writes: every rank holds the same weights
    cterp_sae *sae;
    cterp_status s = cterp_trainer_export(t, &sae);
    if (s) return s;
    float *dens = malloc((size_t)t->N * sizeof(float));
    if (!dens) {
        cterp_sae_free(sae);
        return cterp_error(CTERP_ENOMEM, "save: out of memory");
    }
    current_density(t, dens);
    s = cterp_sae_save(sae, dir, dens);
    free(dens);
    cterp_sae_free(sae);
    return s;
}

// One of ours: a checkpoint file, the manifest, or a temporary a killed writer left
// ("<name>.tmp.<pid>", "<name>.new", "<name>.new.tmp.<pid>").
static int own_file(const char *e) {
    for (int i = 0; i <= N_CK_FILES; i++) {
        const char *n = i < N_CK_FILES ? ck_files[i] : MANIFEST;
        size_t k = strlen(n);
        if (!strncmp(e, n, k) &&
            (!e[k] || !strncmp(e + k, ".tmp.", 5) || !strncmp(e + k, ".new", 4)))
            return 1;
    }
    return 0;
}

static cterp_status remove_tree(const char *path) {
    if (!file_exists(path)) return CTERP_OK;
    // only our own checkpoint files live here: remove them one by one, then the directory
    DIR *d = opendir(path);
    if (!d) return cterp_error(CTERP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!own_file(e->d_name)) continue;
        char *p = file_join(path, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    if (rmdir(path) != 0)
        return cterp_error(CTERP_EIO, "%s: cannot remove (unexpected files inside?): %s", path, strerror(errno));
    return CTERP_OK;
}

cterp_status checkpoint_manifest_text(const char *dir, int64_t step, char **text) {
    *text = NULL;
    cJSON *root = cJSON_CreateObject(), *files = cJSON_CreateObject();
    cterp_status s = CTERP_OK;
    if (!root || !files) {
        cJSON_Delete(root), cJSON_Delete(files);
        return cterp_error(CTERP_ENOMEM, "checkpoint: out of memory");
    }
    cJSON_AddStringToObject(root, "format", MANIFEST_FORMAT);
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddNumberToObject(root, "step", (double)step);
    cJSON_AddItemToObject(root, "files", files);
    for (int i = 0; i < N_CK_FILES && !s; i++) {
        char *p = file_join(dir, ck_files[i]);
        struct stat st;
        if (!p)
            s = cterp_error(CTERP_ENOMEM, "checkpoint: out of memory");
        else if (stat(p, &st) == 0)
            cJSON_AddNumberToObject(files, ck_files[i], (double)st.st_size);
        else if (i != 2)
            s = cterp_error(CTERP_EIO, "%s: missing: %s", p, strerror(errno));
        free(p);
    }
    if (!s && !(*text = cJSON_PrintUnformatted(root)))
        s = cterp_error(CTERP_ENOMEM, "checkpoint: out of memory");
    cJSON_Delete(root);
    return s;
}

cterp_status cterp_checkpoint_check(const char *dir) {
    char *mp = file_join(dir, MANIFEST), *text = NULL;
    cJSON *root = NULL;
    cterp_status s = CTERP_OK;
    if (!mp) return cterp_error(CTERP_ENOMEM, "out of memory");
    if (!file_is_dir(dir)) {
        s = cterp_error(CTERP_EIO, "%s: no such checkpoint directory", dir);
        goto done;
    }
    if (!file_exists(mp)) {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: not a complete checkpoint: %s, written last, is missing (a checkpoint "
                        "write was interrupted; resume from an earlier one)",
                        dir, MANIFEST);
        goto done;
    }
    if ((s = file_read_all(mp, &text, NULL))) goto done;
    root = cJSON_Parse(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!cJSON_IsObject(root) || !cJSON_IsString(fmt) ||
        strcmp(fmt->valuestring, MANIFEST_FORMAT) || !cJSON_IsObject(files)) {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: expected a JSON object with \"format\": \"%s\" and \"files\"", mp,
                        MANIFEST_FORMAT);
        goto done;
    }
    for (int i = 0; i < N_CK_FILES; i++) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(files, ck_files[i]);
        if (!n && i == 2) continue; // sparsity is optional
        char *p = file_join(dir, ck_files[i]);
        struct stat st;
        int have = p && stat(p, &st) == 0;
        if (!cJSON_IsNumber(n) || !have || (double)st.st_size != n->valuedouble) {
            char found[64] = "missing";
            if (have) snprintf(found, sizeof found, "%lld bytes", (long long)st.st_size);
            s = cterp_error(
                CTERP_EFORMAT,
                "%s: not the checkpoint its %s describes: expected %.0f bytes, found %s",
                p ? p : ck_files[i], MANIFEST, cJSON_IsNumber(n) ? n->valuedouble : -1.0, found);
            free(p);
            goto done;
        }
        free(p);
    }
done:
    cJSON_Delete(root);
    free(text);
    free(mp);
    return s;
}

static cterp_status write_state(const cterp_trainer *t, const char *path) {
    st_writer w;
    st_writer_init(&w);
    const int64_t N = t->N;
    int64_t np = (int64_t)t->sae->n_params;
    int64_t ints[8] = {t->step, t->window_steps, t->have_density, t->initialized, t->D, N, t->B, t->steps};
    double dbl[3] = {t->topk_threshold, t->scale, t->elapsed_before};
    uint64_t src_state[16];
    int nsrc = t->src->get_state ? t->src->get_state(t->src->ctx, src_state, 16) : 0;
    int64_t s8 = 8, s3 = 3, sn = nsrc;
    cterp_status s = CTERP_OK;
    s = s ? s : st_writer_add(&w, "state_f64", ST_F64, 1, &s3, dbl);
    s = s ? s : st_writer_add(&w, "state_i64", ST_I64, 1, &s8, ints);
    s = s ? s : st_writer_add(&w, "since_fired", ST_I64, 1, &N, t->since_fired);
    s = s ? s : st_writer_add(&w, "window_count", ST_I64, 1, &N, t->window_count);
    if (nsrc > 0) s = s ? s : st_writer_add(&w, "source_state", ST_U64, 1, &sn, src_state);
    int64_t one = 1;
    if (t->skipped_rows > 0)
        s = s ? s : st_writer_add(&w, "skipped_rows", ST_I64, 1, &one, &t->skipped_rows);
    s = s ? s : st_writer_add(&w, "params", ST_F32, 1, &np, t->sae->params);
    s = s ? s : st_writer_add(&w, "adam_m", ST_F32, 1, &np, t->adam_m);
    s = s ? s : st_writer_add(&w, "adam_v", ST_F32, 1, &np, t->adam_v);
    s = s ? s : st_writer_add(&w, "log10_density", ST_F32, 1, &N, t->log10_density);
    if (t->log_thr) {
        s = s ? s : st_writer_add(&w, "log_threshold", ST_F32, 1, &N, t->log_thr);
        s = s ? s : st_writer_add(&w, "log_threshold_adam_m", ST_F32, 1, &N, t->thr_m);
        s = s ? s : st_writer_add(&w, "log_threshold_adam_v", ST_F32, 1, &N, t->thr_v);
    }
    s = s ? s : st_writer_meta(&w, "format", STATE_FORMAT);
    s = s ? s : st_writer_meta(&w, "version", STATE_VERSION);
    s = s ? s : st_writer_meta(&w, "source", t->src->description);
    s = s ? s : st_write(&w, path);
    st_writer_free(&w);
    return s;
}

// Writes a whole file durably from a callback that prints into it.
static cterp_status write_config(const cterp_trainer *t, const char *path) {
    file_atomic w;
    cterp_status s = file_atomic_open(&w, path);
    if (s) return s;
    if ((s = cterp_train_config_write_json(&t->cfg, (FILE *)w.fp))) {
        file_atomic_abort(&w);
        return s;
    }
    return file_atomic_commit(&w);
}

// The directory that holds `path` (malloc'd).
static char *parent_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
}

cterp_status cterp_trainer_checkpoint(cterp_trainer *t, const char *dir) {
    if (t->rank != 0) return CTERP_OK; // rank 0 alone writes: every rank holds the same state
    size_t n = strlen(dir);
    char *tmp = malloc(n + 8), *old = malloc(n + 8), *parent = parent_of(dir);
    char *state = NULL, *cfgp = NULL, *man = NULL, *mtext = NULL;
    cterp_status s = CTERP_OK;
    int wrote = 0;
    if (!tmp || !old || !parent) {
        s = cterp_error(CTERP_ENOMEM, "checkpoint: out of memory");
        goto done;
    }
    snprintf(tmp, n + 8, "%s.tmp", dir);
    snprintf(old, n + 8, "%s.old", dir);
    if ((s = remove_tree(tmp)) || (s = file_mkdirs(tmp))) goto done;
    wrote = 1;
    if ((s = cterp_trainer_save(t, tmp))) goto done;
    state = file_join(tmp, "trainer_state.safetensors");
    cfgp = file_join(tmp, "train_config.json");
    man = file_join(tmp, MANIFEST);
    if (!state || !cfgp || !man) {
        s = cterp_error(CTERP_ENOMEM, "checkpoint: out of memory");
        goto done;
    }
    if ((s = write_state(t, state))) goto done;
    if ((s = write_config(t, cfgp))) goto done;
    // the manifest last: its presence says every file before it is whole
    if ((s = checkpoint_manifest_text(tmp, t->step, &mtext))) goto done;
    if ((s = file_write_all(man, mtext, strlen(mtext)))) goto done;
    // swap in: dir -> dir.old, tmp -> dir, remove dir.old
    if ((s = remove_tree(old))) goto done;
    if (file_exists(dir) && rename(dir, old) != 0) {
        s = cterp_error(CTERP_EIO, "%s: cannot move the previous checkpoint aside: %s", dir, strerror(errno));
        goto done;
    }
    file_test_point("checkpoint-swap"); // a kill here leaves dir.old and dir.tmp, both whole
    if (rename(tmp, dir) != 0) {
        s = cterp_error(CTERP_EIO, "%s: cannot rename into place: %s", dir, strerror(errno));
        goto done;
    }
    wrote = 0;
    if ((s = file_fsync_dir(parent))) goto done;
    s = remove_tree(old);
    // the metrics so far are part of what a resume from here continues
    if (!s && t->metrics_file &&
        (fflush(t->metrics_file) != 0 || fsync(fileno(t->metrics_file)) != 0))
        s = cterp_error(CTERP_EIO, "%s/metrics.jsonl: write failed: %s", t->out_dir,
                        strerror(errno));
done:
    if (s && wrote) { // nothing half-written stays where a reader looks; keep the error's message
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", cterp_last_error());
        remove_tree(tmp);
        cterp_error(s, "%s", msg);
    }
    free(tmp), free(old), free(parent), free(state), free(cfgp), free(man), free(mtext);
    return s;
}

cterp_status cterp_trainer_resume(cterp_trainer **out, const char *dir, cterp_act_source *src) {
    *out = NULL;
    char *cfgp = file_join(dir, "train_config.json"), *statep = file_join(dir, "trainer_state.safetensors");
    cterp_trainer *t = NULL;
    st_file sf;
    int sf_open = 0;
    cterp_status s = CTERP_OK;
    if (!cfgp || !statep) {
        s = cterp_error(CTERP_ENOMEM, "resume: out of memory");
        goto fail;
    }
    if ((s = cterp_checkpoint_check(dir))) goto fail;
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    if ((s = cterp_train_config_load_json(&cfg, cfgp))) goto fail;
    if ((s = st_open(&sf, statep))) goto fail;
    sf_open = 1;
    const char *fmt = st_meta_get(&sf, "format"), *ver = st_meta_get(&sf, "version");
    if (!fmt || strcmp(fmt, STATE_FORMAT) || !ver || strcmp(ver, STATE_VERSION)) {
        s = cterp_error(CTERP_EFORMAT, "%s: format: expected %s version %s, found %s version %s", statep,
                        STATE_FORMAT, STATE_VERSION, fmt ? fmt : "(none)", ver ? ver : "(none)");
        goto fail;
    }
    // Sizes before allocations: the config's d_sae and batch size drive allocations of N * D
    // floats and more, so they must agree with the state's own record and with its tensors, whose
    // bytes the file holds (st_open checked every tensor lies inside it), before any is made.
    if ((s = cterp_train_config_validate(&cfg, src->d_in))) { // name the file
        char msg[1536];
        snprintf(msg, sizeof msg, "%s", cterp_last_error());
        s = cterp_error(s, "%s: %s", cfgp, msg);
        goto fail;
    }
    const int64_t D = src->d_in, N = cterp_train_config_d_sae(&cfg, D), B = cfg.batch_size;
    const int64_t steps = cterp_train_config_steps(&cfg);
    int64_t ints[8], s8 = 8, s3 = 3;
    double dbl[3];
    if ((s = st_read_i64(&sf, "state_i64", ints, 1, &s8))) goto fail;
    if ((s = st_read_f64(&sf, "state_f64", dbl, 1, &s3))) goto fail;
    if (ints[4] != D || ints[5] != N || ints[6] != B) {
        s = cterp_error(
            CTERP_EFORMAT,
            "%s: shape: the checkpoint has d_in %lld, d_sae %lld, batch %lld; the data and "
            "config give %lld, %lld, %lld",
            statep, (long long)ints[4], (long long)ints[5], (long long)ints[6], (long long)D,
            (long long)N, (long long)B);
        goto fail;
    }
    if (ints[0] < 0 || ints[0] > steps || ints[1] < 0 || ints[1] > ints[0]) {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: state_i64: step %lld (density window %lld steps), expected "
                        "0..%lld (window <= step)",
                        statep, (long long)ints[0], (long long)ints[1], (long long)steps);
        goto fail;
    }
    // transcoders: the target width is the source's (trainer_alloc checks it is given)
    const int tc = cfg.architecture == CTERP_ARCH_TRANSCODER || cfg.architecture == CTERP_ARCH_SKIP_TRANSCODER;
    const int64_t DO = tc && src->d_out > 0 && src->d_out <= (1 << 24) ? src->d_out : D;
    const int64_t np = (int64_t)cterp_sae_n_params_out(cfg.architecture, D, DO, N);
    static const char *const per_latent[] = {"since_fired",          "window_count",
                                             "log10_density",        "log_threshold",
                                             "log_threshold_adam_m", "log_threshold_adam_v"};
    static const char *const per_param[] = {"params", "adam_m", "adam_v"};
    const int n_latent = cfg.architecture == CTERP_ARCH_JUMPRELU ? 6 : 3;
    for (int i = 0; i < 3 + n_latent; i++) {
        const char *name = i < 3 ? per_param[i] : per_latent[i - 3];
        const int64_t want = i < 3 ? np : N;
        const st_tensor *x = st_find(&sf, name);
        if (!x || x->ndim != 1 || x->shape[0] != want) {
            char found[48] = "no such tensor";
            if (x && x->ndim == 1)
                snprintf(found, sizeof found, "[%lld]", (long long)x->shape[0]);
            else if (x)
                snprintf(found, sizeof found, "%d dimensions", x->ndim);
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tensor %s: expected shape [%lld] (d_sae %lld, d_in %lld from "
                            "train_config.json and the data), found %s",
                            statep, name, (long long)want, (long long)N, (long long)D, found);
            goto fail;
        }
    }
    if ((s = trainer_alloc(&t, &cfg, src))) goto fail;
    t->step = ints[0], t->window_steps = ints[1], t->have_density = ints[2] != 0, t->initialized = ints[3] != 0;
    t->topk_threshold = dbl[0], t->scale = dbl[1], t->elapsed_before = dbl[2];
    if (!isfinite(t->scale) || !(t->scale > 0) || !isfinite(t->topk_threshold) ||
        !(t->elapsed_before >= 0 && t->elapsed_before < 1e12)) {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: state_f64: input scale %g, topk threshold %g, elapsed %g s; expected "
                        "> 0, finite, >= 0",
                        statep, t->scale, t->topk_threshold, t->elapsed_before);
        goto fail;
    }
    if ((s = st_read_i64(&sf, "since_fired", t->since_fired, 1, &N))) goto fail;
    if ((s = st_read_i64(&sf, "window_count", t->window_count, 1, &N))) goto fail;
    // counters the steps bound: since_fired grows by one a step, a latent fires once a token
    const int64_t max_since = t->step + cfg.dead_feature_window, max_count = t->window_steps * B;
    for (int64_t i = 0; i < N; i++) {
        if (t->since_fired[i] < 0 || t->since_fired[i] > max_since || t->window_count[i] < 0 ||
            t->window_count[i] > max_count) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: latent %lld: since_fired %lld, window_count %lld; expected "
                            "0..%lld and 0..%lld (step %lld, window %lld steps of %lld tokens)",
                            statep, (long long)i, (long long)t->since_fired[i],
                            (long long)t->window_count[i], (long long)max_since,
                            (long long)max_count, (long long)t->step, (long long)t->window_steps,
                            (long long)B);
            goto fail;
        }
    }
    if ((s = st_read_f32(&sf, "params", t->sae->params, 1, &np))) goto fail;
    if ((s = st_read_f32(&sf, "adam_m", t->adam_m, 1, &np))) goto fail;
    if ((s = st_read_f32(&sf, "adam_v", t->adam_v, 1, &np))) goto fail;
    if ((s = st_read_f32(&sf, "log10_density", t->log10_density, 1, &N))) goto fail;
    if (t->log_thr) {
        if ((s = st_read_f32(&sf, "log_threshold", t->log_thr, 1, &N))) goto fail;
        if ((s = st_read_f32(&sf, "log_threshold_adam_m", t->thr_m, 1, &N))) goto fail;
        if ((s = st_read_f32(&sf, "log_threshold_adam_v", t->thr_v, 1, &N))) goto fail;
        for (int64_t i = 0; i < N; i++) t->sae->threshold[i] = expf(t->log_thr[i]);
    }
    if (st_find(&sf, "skipped_rows")) { // rows with a NaN/Inf skipped: at most a batch a step
        int64_t one = 1, max_skip = (t->step + cfg.norm_estimate_batches) * B;
        if ((s = st_read_i64(&sf, "skipped_rows", &t->skipped_rows, 1, &one))) goto fail;
        if (t->skipped_rows < 0 || t->skipped_rows > max_skip) {
            s = cterp_error(CTERP_EFORMAT, "%s: skipped_rows: %lld, expected 0..%lld", statep,
                            (long long)t->skipped_rows, (long long)max_skip);
            goto fail;
        }
    }
    const st_tensor *ss = st_find(&sf, "source_state");
    if (ss && src->set_state) {
        int64_t n = ss->nelem;
        uint64_t st[16];
        if (n > 16) {
            s = cterp_error(CTERP_EFORMAT, "%s: source_state: %lld words, expected <= 16", statep, (long long)n);
            goto fail;
        }
        if ((s = st_read_u64(&sf, "source_state", st, 1, &n))) goto fail;
        // rows the trainer took: a batch a step, and the input-scale estimate's batches first
        const int64_t batches =
            t->step + (t->initialized && cfg.normalize_activations ? cfg.norm_estimate_batches : 0);
        if ((s = src->set_state(src->ctx, st, (int)n,
                                batches * B + t->skipped_rows))) { // name the checkpoint
            char msg[1536];
            snprintf(msg, sizeof msg, "%s", cterp_last_error());
            const char *was = st_meta_get(&sf, "source");
            s = cterp_error(s, "checkpoint %s: %s%s%s%s", dir, msg,
                            was ? " (the checkpoint's source: " : "", was ? was : "",
                            was ? ")" : "");
            goto fail;
        }
    }
    st_close(&sf);
    free(cfgp), free(statep);
    *out = t;
    return CTERP_OK;
fail:
    if (sf_open) st_close(&sf);
    cterp_trainer_free(t);
    free(cfgp), free(statep);
    return s;
}
