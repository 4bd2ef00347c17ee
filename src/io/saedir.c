// SAELens SAE directories: cfg.json + sae_weights.safetensors (+ sparsity.safetensors).
// Writes what SAELens v6.18 writes; reads that, and SAELens v5's flat configs (docs/formats.md).
#include "core/file.h"
#include "cterp/sae.h"
#include "io/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cterp/version.h"
// SAELens converts configs older than 6.0 on load; claiming 6.18.0 keeps ours as they are.
#define SAELENS_VERSION "6.18.0"

// out (cols, rows) = in (rows, cols)^T, in tiles so both sides stay in cache.
static void transpose(float *out, const float *in, size_t rows, size_t cols) {
    const size_t T = 64;
    for (size_t r0 = 0; r0 < rows; r0 += T)
        for (size_t c0 = 0; c0 < cols; c0 += T) {
            size_t r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
            for (size_t r = r0; r < r1; r++)
                for (size_t c = c0; c < c1; c++) out[c * rows + r] = in[r * cols + c];
        }
}

// ---------------------------------------------------------------------------------------------
// save

static cJSON *build_cfg(const cterp_sae *sae) {
    const cterp_sae_meta *m = &sae->meta;
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    if (!root || !meta) {
        cJSON_Delete(root);
        cJSON_Delete(meta);
        return NULL;
    }
    const int cc = sae->arch == CTERP_ARCH_CROSSCODER;
    // a crosscoder's d_in is one layer's width (n_layers of them side by side in the tensors)
    cJSON_AddNumberToObject(root, "d_in", (double)(cc ? sae->d_in / sae->n_layers : sae->d_in));
    cJSON_AddNumberToObject(root, "d_sae", (double)sae->d_sae);
    if (cc) { // cterp's own keys: SAELens has no crosscoder
        cJSON_AddNumberToObject(root, "n_layers", (double)sae->n_layers);
        cJSON *hooks = cJSON_AddArrayToObject(root, "hook_names");
        char buf[sizeof m->hook_name];
        memcpy(buf, m->hook_name, sizeof buf);
        buf[sizeof buf - 1] = 0;
        for (char *tok = buf, *next; hooks && tok && *tok; tok = next) {
            next = strchr(tok, ',');
            if (next) *next++ = 0;
            cJSON_AddItemToArray(hooks, cJSON_CreateString(tok));
        }
    }
    if (cterp_sae_is_transcoder(sae)) { // SAELens's TranscoderConfig fields
        cJSON_AddNumberToObject(root, "d_out", (double)sae->d_out);
        cJSON_AddStringToObject(root, "hook_name_out", m->hook_name_out);
        int layer_out;
        if (sscanf(m->hook_name_out, "blocks.%d.", &layer_out) == 1)
            cJSON_AddNumberToObject(root, "hook_layer_out", layer_out);
        cJSON_AddNullToObject(root, "hook_head_index_out");
    }
    cJSON_AddStringToObject(root, "dtype", "float32");
    cJSON_AddStringToObject(root, "device", "cpu");
    cJSON_AddBoolToObject(root, "apply_b_dec_to_input", sae->apply_b_dec_to_input != 0);
    cJSON_AddStringToObject(root, "normalize_activations",
                            sae->normalize_activations[0] ? sae->normalize_activations : "none");
    cJSON_AddStringToObject(root, "reshape_activations", "none");
    cJSON_AddStringToObject(root, "architecture", cterp_arch_name(sae->arch));
    if (sae->arch == CTERP_ARCH_TOPK) {
        cJSON_AddNumberToObject(root, "k", sae->k);
        cJSON_AddBoolToObject(root, "rescale_acts_by_decoder_norm",
                              sae->rescale_acts_by_decoder_norm != 0);
    }
    cJSON_AddStringToObject(meta, "sae_lens_version", SAELENS_VERSION);
    cJSON_AddStringToObject(meta, "cterp_version", CTERP_VERSION);
    cJSON_AddStringToObject(meta, "model_name", m->model_name);
    cJSON_AddStringToObject(meta, "model_class_name", "HookedTransformer");
    cJSON_AddStringToObject(meta, "hook_name", m->hook_name);
    if (m->hook_head_index >= 0)
        cJSON_AddNumberToObject(meta, "hook_head_index", m->hook_head_index);
    else
        cJSON_AddNullToObject(meta, "hook_head_index");
    cJSON_AddNumberToObject(meta, "context_size", m->context_size);
    cJSON_AddBoolToObject(meta, "prepend_bos", m->prepend_bos != 0);
    cJSON *slice = cJSON_AddArrayToObject(meta, "seqpos_slice");
    if (slice) cJSON_AddItemToArray(slice, cJSON_CreateNull());
    cJSON_AddStringToObject(meta, "dataset_path", m->dataset_path);
    cJSON *kw = cJSON_AddObjectToObject(meta, "model_from_pretrained_kwargs");
    if (kw) cJSON_AddBoolToObject(kw, "center_writing_weights", 0);
    cJSON_AddBoolToObject(meta, "exclude_special_tokens", m->exclude_special_tokens != 0);
    // SAELens takes "bos"/"eos"/"sep", a token id, or null
    const char *sep = m->sequence_separator_token;
    size_t nd = strspn(sep, "0123456789");
    if (!sep[0])
        cJSON_AddNullToObject(meta, "sequence_separator_token");
    else if (nd == strlen(sep) && nd < 10)
        cJSON_AddNumberToObject(meta, "sequence_separator_token", atoi(sep));
    else
        cJSON_AddStringToObject(meta, "sequence_separator_token", sep);
    cJSON_AddBoolToObject(meta, "disable_concat_sequences", m->disable_concat_sequences != 0);
    cJSON_AddNullToObject(meta, "neuronpedia_id");
    if (cterp_sae_is_transcoder(sae)) // SAELens's metadata keys of a transcoder too
        cJSON_AddStringToObject(meta, "hook_name_out", m->hook_name_out);
    if (m->training_tokens > 0)
        cJSON_AddNumberToObject(meta, "training_tokens", (double)m->training_tokens);
    cJSON_AddItemToObject(root, "metadata", meta);
    return root;
}

cterp_status cterp_sae_save(const cterp_sae *sae, const char *dir, const float *log10_density) {
    if (!sae || !dir) return cterp_error(CTERP_EINVAL, "cterp_sae_save: NULL argument");
    if (sae->arch == CTERP_ARCH_BATCHTOPK || sae->arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK)
        return cterp_error(CTERP_EINVAL,
                           "%s: a %s SAE is saved as jumprelu: convert it (threshold) first", dir,
                           cterp_arch_name(sae->arch));
    if (sae->arch != CTERP_ARCH_STANDARD && sae->arch != CTERP_ARCH_TOPK &&
        sae->arch != CTERP_ARCH_JUMPRELU && sae->arch != CTERP_ARCH_GATED && !cterp_sae_is_transcoder(sae) &&
        sae->arch != CTERP_ARCH_CROSSCODER)
        return cterp_error(CTERP_EINVAL, "%s: cannot save architecture %d", dir, (int)sae->arch);
    if (sae->arch == CTERP_ARCH_CROSSCODER &&
        (sae->n_layers < 2 || sae->d_in % sae->n_layers || sae->d_out != sae->d_in || sae->apply_b_dec_to_input))
        return cterp_error(CTERP_EINVAL, "%s: crosscoder with n_layers %lld, d_in %lld, d_out %lld, "
                           "apply_b_dec_to_input %d (expected >= 2 layers dividing d_in = d_out, no centring)",
                           dir, (long long)sae->n_layers, (long long)sae->d_in, (long long)sae->d_out,
                           sae->apply_b_dec_to_input);
    if (cterp_sae_is_transcoder(sae) && sae->apply_b_dec_to_input)
        return cterp_error(CTERP_EINVAL, "%s: a %s with apply_b_dec_to_input (SAELens refuses it)", dir,
                           cterp_arch_name(sae->arch));
    if (sae->arch == CTERP_ARCH_SKIP_TRANSCODER && !sae->W_skip)
        return cterp_error(CTERP_EINVAL, "%s: skip_transcoder without W_skip", dir);
    if (sae->arch == CTERP_ARCH_JUMPRELU && !sae->threshold)
        return cterp_error(CTERP_EINVAL, "%s: jumprelu SAE without a threshold", dir);
    if (sae->arch == CTERP_ARCH_GATED && (!sae->r_mag || !sae->b_mag))
        return cterp_error(CTERP_EINVAL, "%s: gated SAE without r_mag/b_mag", dir);
    cterp_status s = file_mkdirs(dir);
    if (s) return s;
    const int64_t D = sae->d_in, N = sae->d_sae, DO = sae->d_out;
    char *wpath = file_join(dir, "sae_weights.safetensors");
    char *spath = file_join(dir, "sparsity.safetensors");
    char *cpath = file_join(dir, "cfg.json");
    char *wnew = file_join(dir, "sae_weights.safetensors.new");
    char *snew = file_join(dir, "sparsity.safetensors.new");
    float *W_enc_t = malloc((size_t)D * (size_t)N * sizeof(float)); // (D, N)
    char *json = NULL;
    cJSON *cfg = NULL;
    st_writer w;
    st_writer_init(&w);
    if (!wpath || !spath || !cpath || !wnew || !snew || !W_enc_t) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    transpose(W_enc_t, sae->W_enc, (size_t)N, (size_t)D);
    // names in the order SAELens's writer (sorted) puts them; gated has b_gate, b_mag, r_mag
    // and no b_enc (SAELens's GatedSAE)
    int64_t sh_ND[2] = {N, DO}, sh_DN[2] = {D, N}, sh_skip[2] = {DO, D};
    const int gated = sae->arch == CTERP_ARCH_GATED;
    if ((s = st_writer_add(&w, "W_dec", ST_F32, 2, sh_ND, sae->W_dec)) ||
        (s = st_writer_add(&w, "W_enc", ST_F32, 2, sh_DN, W_enc_t)) ||
        (sae->W_skip && (s = st_writer_add(&w, "W_skip", ST_F32, 2, sh_skip, sae->W_skip))) ||
        (s = st_writer_add(&w, "b_dec", ST_F32, 1, &DO, sae->b_dec)))
        goto done;
    if (!gated && (s = st_writer_add(&w, "b_enc", ST_F32, 1, &N, sae->b_enc))) goto done;
    if (gated && ((s = st_writer_add(&w, "b_gate", ST_F32, 1, &N, sae->b_enc)) ||
                  (s = st_writer_add(&w, "b_mag", ST_F32, 1, &N, sae->b_mag)) ||
                  (s = st_writer_add(&w, "r_mag", ST_F32, 1, &N, sae->r_mag))))
        goto done;
    if (sae->arch == CTERP_ARCH_JUMPRELU &&
        (s = st_writer_add(&w, "threshold", ST_F32, 1, &N, sae->threshold)))
        goto done;
    // The new files under names of their own first: a save that fails there (a full disk)
    // leaves the previous SAE whole. Then cfg.json goes, the new files take their names and
    // cfg.json comes back last: a save killed in between leaves no cfg.json, so a reader never
    // takes old and new files together for an SAE.
    if ((s = st_write(&w, wnew))) goto done;
    if (log10_density) {
        st_writer sw;
        st_writer_init(&sw);
        s = st_writer_add(&sw, "sparsity", ST_F32, 1, &N, log10_density);
        if (!s) s = st_write(&sw, snew);
        st_writer_free(&sw);
        if (s) goto done;
    }
    if (unlink(cpath) != 0 && errno != ENOENT) {
        s = cterp_error(CTERP_EIO, "%s: cannot remove the previous file: %s", cpath,
                        strerror(errno));
        goto done;
    }
    file_test_point("sae-swap"); // no cfg.json: an incomplete SAE until the end
    if (rename(wnew, wpath) != 0 || (log10_density && rename(snew, spath) != 0)) {
        s = cterp_error(CTERP_EIO, "%s: cannot rename the new files into place: %s", dir,
                        strerror(errno));
        goto done;
    }
    if (!log10_density && unlink(spath) != 0 && errno != ENOENT) {
        // a stale sparsity file from an earlier save would describe other latents
        s = cterp_error(CTERP_EIO, "%s: cannot remove the stale file: %s", spath, strerror(errno));
        goto done;
    }
    if ((s = file_fsync_dir(dir))) goto done;
    cfg = build_cfg(sae);
    json = cfg ? cJSON_PrintUnformatted(cfg) : NULL;
    if (!json) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", cpath);
        goto done;
    }
    s = file_write_all(cpath, json, strlen(json));
done:
    st_writer_free(&w);
    cJSON_Delete(cfg);
    free(json);
    free(W_enc_t);
    if (s && wnew) unlink(wnew); // no-ops once renamed
    if (s && snew) unlink(snew);
    free(wpath);
    free(spath);
    free(cpath);
    free(wnew);
    free(snew);
    return s;
}

// ---------------------------------------------------------------------------------------------
// load: cfg.json

typedef struct {
    const char *path; // ".../cfg.json" for messages
    const cJSON *root, *meta;
} cfg_t;

// Top-level key, else the same key under "metadata" (v6 nests what v5 kept flat). A JSON null
// counts as absent.
static const cJSON *cfg_get(const cfg_t *c, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(c->root, key);
    if (!j && c->meta) j = cJSON_GetObjectItemCaseSensitive(c->meta, key);
    return cJSON_IsNull(j) ? NULL : j;
}

// The first of two names present (the v6 name, then its pre-6.0 alias).
static const cJSON *cfg_get2(const cfg_t *c, const char *key, const char *alias) {
    const cJSON *j = cfg_get(c, key);
    return j ? j : cfg_get(c, alias);
}

// `what` for messages: the JSON of j, cut short.
static cterp_status type_error(const cfg_t *c, const char *key, const char *want, const cJSON *j) {
    char *txt = cJSON_PrintUnformatted(j);
    char found[64];
    snprintf(found, sizeof found, "%s", txt ? txt : "?");
    if (txt && strlen(txt) >= sizeof found) strcpy(found + sizeof found - 4, "...");
    free(txt);
    return cterp_error(CTERP_EFORMAT, "%s: %s: expected %s, found %s", c->path, key, want, found);
}

static cterp_status get_int(const cfg_t *c, const cJSON *j, const char *key, int64_t lo, int64_t hi,
                            int64_t *out) {
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) ||
        fabs(j->valuedouble) > 9007199254740992.0)
        return type_error(c, key, "an integer", j);
    int64_t v = (int64_t)j->valuedouble;
    if (v < lo || v > hi)
        return cterp_error(CTERP_EFORMAT,
                           "%s: %s: expected %" PRId64 "..%" PRId64 ", found %" PRId64, c->path,
                           key, lo, hi, v);
    *out = v;
    return CTERP_OK;
}

static cterp_status req_int(const cfg_t *c, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const cJSON *j = cfg_get(c, key);
    if (!j) return cterp_error(CTERP_EFORMAT, "%s: missing key '%s'", c->path, key);
    return get_int(c, j, key, lo, hi, out);
}

// Optional integer: *out unchanged when absent or null.
static cterp_status opt_int(const cfg_t *c, const cJSON *j, const char *key, int64_t lo, int64_t hi,
                            int *out) {
    if (!j) return CTERP_OK;
    int64_t v;
    cterp_status s = get_int(c, j, key, lo, hi, &v);
    if (!s) *out = (int)v;
    return s;
}

static cterp_status opt_bool(const cfg_t *c, const char *key, int *out) {
    const cJSON *j = cfg_get(c, key);
    if (!j) return CTERP_OK;
    if (!cJSON_IsBool(j)) return type_error(c, key, "true or false", j);
    *out = cJSON_IsTrue(j);
    return CTERP_OK;
}

static cterp_status opt_str(const cfg_t *c, const cJSON *j, const char *key, char *out,
                            size_t cap) {
    if (!j) return CTERP_OK;
    if (!cJSON_IsString(j)) return type_error(c, key, "a string", j);
    size_t n = strlen(j->valuestring);
    if (n >= cap)
        return cterp_error(CTERP_EFORMAT, "%s: %s: %zu bytes long, at most %zu supported", c->path,
                           key, n, cap - 1);
    memcpy(out, j->valuestring, n + 1);
    return CTERP_OK;
}

static int in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(s, *list)) return 1;
    return 0;
}

// Architecture, k and activation settings; handles v5's activation_fn "topk" on "standard".
static cterp_status parse_arch(const cfg_t *c, cterp_arch *arch, int64_t d_sae, int *k,
                               int *rescale) {
    static const char *const unsupported[] = {"jumprelu_transcoder", "jumprelu_skip_transcoder",
                                              "clt", NULL};
    static const char *const training[] = {"batchtopk", "matryoshka_batchtopk", NULL};
    const cJSON *ja = cfg_get(c, "architecture");
    const char *name = "standard"; // v5 configs before the field existed
    if (ja) {
        if (!cJSON_IsString(ja)) return type_error(c, "architecture", "a string", ja);
        name = ja->valuestring;
    }
    if (in_list(name, unsupported))
        return cterp_error(CTERP_EFORMAT,
                           "%s: architecture '%s' is not supported (cterp loads standard, topk, "
                           "jumprelu and gated SAEs, transcoders and skip_transcoders)",
                           c->path, name);
    if (in_list(name, training))
        return cterp_error(CTERP_EFORMAT,
                           "%s: architecture '%s' is a SAELens training checkpoint, not supported "
                           "(load the final output, which SAELens saves as jumprelu)",
                           c->path, name);
    if (!strcmp(name, "standard"))
        *arch = CTERP_ARCH_STANDARD;
    else if (!strcmp(name, "topk"))
        *arch = CTERP_ARCH_TOPK;
    else if (!strcmp(name, "jumprelu"))
        *arch = CTERP_ARCH_JUMPRELU;
    else if (!strcmp(name, "gated"))
        *arch = CTERP_ARCH_GATED;
    else if (!strcmp(name, "transcoder"))
        *arch = CTERP_ARCH_TRANSCODER;
    else if (!strcmp(name, "skip_transcoder"))
        *arch = CTERP_ARCH_SKIP_TRANSCODER;
    else if (!strcmp(name, "crosscoder"))
        *arch = CTERP_ARCH_CROSSCODER;
    else
        return cterp_error(CTERP_EFORMAT,
                           "%s: architecture '%s' is unknown (expected standard, topk, jumprelu, "
                           "gated, transcoder, skip_transcoder or crosscoder)",
                           c->path, name);
    if (cfg_get(c, "d_out") && *arch != CTERP_ARCH_TRANSCODER && *arch != CTERP_ARCH_SKIP_TRANSCODER)
        return cterp_error(CTERP_EFORMAT,
                           "%s: has 'd_out' with architecture '%s' (only transcoders have one)",
                           c->path, name);
    if (cfg_get(c, "n_layers") && *arch != CTERP_ARCH_CROSSCODER)
        return cterp_error(CTERP_EFORMAT,
                           "%s: has 'n_layers' with architecture '%s' (only crosscoders have one)",
                           c->path, name);
    const cJSON *jf = cfg_get2(c, "activation_fn", "activation_fn_str");
    if (*arch == CTERP_ARCH_STANDARD && jf) {
        if (!cJSON_IsString(jf)) return type_error(c, "activation_fn", "a string", jf);
        if (!strcmp(jf->valuestring, "topk"))
            *arch = CTERP_ARCH_TOPK;
        else if (strcmp(jf->valuestring, "relu") != 0)
            return cterp_error(CTERP_EFORMAT,
                               "%s: activation_fn '%s' is not supported (expected relu or topk)",
                               c->path, jf->valuestring);
    }
    if (*arch == CTERP_ARCH_TOPK) {
        const cJSON *jk = cfg_get(c, "k");
        const char *kname = "k";
        if (!jk) {
            const cJSON *kw = cfg_get(c, "activation_fn_kwargs");
            jk = cJSON_IsObject(kw) ? cJSON_GetObjectItemCaseSensitive(kw, "k") : NULL;
            kname = "activation_fn_kwargs.k";
        }
        if (!jk) return cterp_error(CTERP_EFORMAT, "%s: topk SAE: missing key 'k'", c->path);
        int64_t kv;
        cterp_status s = get_int(c, jk, kname, 1, d_sae, &kv);
        if (s) return s;
        *k = (int)kv;
        if ((s = opt_bool(c, "rescale_acts_by_decoder_norm", rescale))) return s;
    }
    return CTERP_OK;
}

static cterp_status parse_meta(const cfg_t *c, cterp_sae_meta *m) {
    cterp_status s;
    const cJSON *j;
    if ((s = opt_str(c, cfg_get(c, "model_name"), "model_name", m->model_name,
                     sizeof m->model_name)) ||
        (s = opt_str(c, cfg_get2(c, "hook_name", "hook_point"), "hook_name", m->hook_name,
                     sizeof m->hook_name)) ||
        (s = opt_int(c, cfg_get2(c, "hook_head_index", "hook_point_head_index"), "hook_head_index",
                     -1, INT32_MAX, &m->hook_head_index)) ||
        (s = opt_int(c, cfg_get(c, "context_size"), "context_size", 0, INT32_MAX,
                     &m->context_size)) ||
        (s = opt_bool(c, "prepend_bos", &m->prepend_bos)) ||
        (s = opt_str(c, cfg_get(c, "dataset_path"), "dataset_path", m->dataset_path,
                     sizeof m->dataset_path)) ||
        (s = opt_bool(c, "disable_concat_sequences", &m->disable_concat_sequences)) ||
        (s = opt_str(c, cfg_get(c, "hook_name_out"), "hook_name_out", m->hook_name_out,
                     sizeof m->hook_name_out)))
        return s;
    if ((j = cfg_get(c, "training_tokens"))) {
        int64_t v;
        if ((s = get_int(c, j, "training_tokens", 0, INT64_MAX, &v))) return s;
        m->training_tokens = v;
    }
    // SAELens also allows a list of token ids here; cterp keeps only "some are excluded"
    if ((j = cfg_get(c, "exclude_special_tokens"))) {
        if (cJSON_IsArray(j))
            m->exclude_special_tokens = cJSON_GetArraySize(j) > 0;
        else if ((s = opt_bool(c, "exclude_special_tokens", &m->exclude_special_tokens)))
            return s;
    }
    j = cfg_get(c, "sequence_separator_token");
    // null means no separator; a token id is kept as its decimal string
    m->sequence_separator_token[0] = 0;
    if (cJSON_IsNumber(j)) {
        int64_t v;
        if ((s = get_int(c, j, "sequence_separator_token", 0, INT32_MAX, &v))) return s;
        snprintf(m->sequence_separator_token, sizeof m->sequence_separator_token, "%" PRId64, v);
    } else if (j) {
        if ((s = opt_str(c, j, "sequence_separator_token", m->sequence_separator_token,
                         sizeof m->sequence_separator_token)))
            return s;
    } else if (!cJSON_GetObjectItemCaseSensitive(c->root, "sequence_separator_token") &&
               !(c->meta &&
                 cJSON_GetObjectItemCaseSensitive(c->meta, "sequence_separator_token"))) {
        strcpy(m->sequence_separator_token, "bos"); // absent (v5): SAELens's default
    }
    return CTERP_OK;
}

// Everything in cfg.json that shapes the SAE, checked; *sae_out is created by the caller.
typedef struct {
    cterp_arch arch;
    int64_t d_in, d_sae, d_out; // crosscoders: d_in = d_out = n_layers * cfg.json's d_in
    int64_t n_layers;
    int k, rescale, apply_b_dec;
    char normalize[32];
    cterp_sae_meta meta;
} cfg_vals;

static cterp_status parse_cfg(const cfg_t *c, cfg_vals *v) {
    cterp_status s;
    memset(v, 0, sizeof *v);
    v->apply_b_dec = 1;
    strcpy(v->normalize, "none");
    v->meta.hook_head_index = -1;
    v->meta.prepend_bos = 1;
    if (!cJSON_IsObject(c->root))
        return cterp_error(CTERP_EFORMAT, "%s: expected a JSON object", c->path);
    if ((s = req_int(c, "d_in", 1, INT32_MAX, &v->d_in)) ||
        (s = req_int(c, "d_sae", 1, INT32_MAX, &v->d_sae)))
        return s;
    const cJSON *j = cfg_get(c, "dtype");
    if (j) {
        static const char *const ok[] = {"float32", "float16", "bfloat16", "float64", NULL};
        if (!cJSON_IsString(j)) return type_error(c, "dtype", "a string", j);
        const char *d = j->valuestring;
        if (!strncmp(d, "torch.", 6)) d += 6;
        if (!in_list(d, ok))
            return cterp_error(CTERP_EFORMAT,
                               "%s: dtype '%s' is not supported (expected float32, float16, "
                               "bfloat16 or float64)",
                               c->path, j->valuestring);
    }
    if ((s = parse_arch(c, &v->arch, v->d_sae, &v->k, &v->rescale))) return s;
    v->n_layers = 1;
    if (v->arch == CTERP_ARCH_CROSSCODER) { // n_layers rows of d_in side by side, no centring
        v->apply_b_dec = 0;
        if ((s = req_int(c, "n_layers", 2, 4096, &v->n_layers))) return s;
        if (v->d_in > (1 << 24) / v->n_layers)
            return cterp_error(CTERP_EFORMAT, "%s: crosscoder: n_layers %" PRId64 " x d_in %" PRId64
                               " is over 2^24", c->path, v->n_layers, v->d_in);
        v->d_in *= v->n_layers;
    }
    v->d_out = v->d_in;
    const int tc = v->arch == CTERP_ARCH_TRANSCODER || v->arch == CTERP_ARCH_SKIP_TRANSCODER;
    if (tc) { // SAELens: d_out (its default 768 is a guess cterp does not make), no b_dec on the input
        v->apply_b_dec = 0;
        if ((s = req_int(c, "d_out", 1, INT32_MAX, &v->d_out))) return s;
    }
    if ((s = opt_bool(c, "apply_b_dec_to_input", &v->apply_b_dec))) return s;
    if (tc && v->apply_b_dec)
        return cterp_error(CTERP_EFORMAT,
                           "%s: apply_b_dec_to_input: got true for a %s, expected false (b_dec is "
                           "in the output space; SAELens refuses it too)",
                           c->path, cterp_arch_name(v->arch));
    if (v->arch == CTERP_ARCH_CROSSCODER && v->apply_b_dec)
        return cterp_error(CTERP_EFORMAT, "%s: apply_b_dec_to_input: got true for a crosscoder, expected "
                           "false (its encoder reads the activations themselves)", c->path);
    j = cfg_get(c, "normalize_activations");
    if (cJSON_IsBool(j)) { // pre-6.0 boolean
        strcpy(v->normalize, cJSON_IsTrue(j) ? "expected_average_only_in" : "none");
    } else if (j) {
        static const char *const ok[] = {"none", "expected_average_only_in",
                                         "constant_norm_rescale", "layer_norm", NULL};
        if (!cJSON_IsString(j)) return type_error(c, "normalize_activations", "a string", j);
        if (!in_list(j->valuestring, ok))
            return cterp_error(CTERP_EFORMAT,
                               "%s: normalize_activations '%s' is unknown (expected none, "
                               "expected_average_only_in, constant_norm_rescale or layer_norm)",
                               c->path, j->valuestring);
        strcpy(v->normalize, j->valuestring);
    }
    // "hook_z" only means the heads are flattened, which cterp's (B, D) activations already are
    j = cfg_get(c, "reshape_activations");
    if (j) {
        static const char *const ok[] = {"none", "hook_z", NULL};
        if (!cJSON_IsString(j)) return type_error(c, "reshape_activations", "a string", j);
        if (!in_list(j->valuestring, ok))
            return cterp_error(CTERP_EFORMAT,
                               "%s: reshape_activations '%s' is unknown (expected none or hook_z)",
                               c->path, j->valuestring);
    }
    if ((s = parse_meta(c, &v->meta))) return s;
    j = cJSON_GetObjectItemCaseSensitive(c->root, "hook_names");
    if (v->arch == CTERP_ARCH_CROSSCODER && j) { // the layers' hooks, in order, into meta.hook_name
        if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != v->n_layers)
            return cterp_error(CTERP_EFORMAT, "%s: hook_names: expected a list of n_layers (%" PRId64 ") strings",
                               c->path, v->n_layers);
        size_t k = 0;
        const cJSON *h;
        v->meta.hook_name[0] = 0;
        cJSON_ArrayForEach(h, j) {
            size_t n = cJSON_IsString(h) ? strlen(h->valuestring) : 0;
            if (!n || strchr(h->valuestring, ','))
                return cterp_error(CTERP_EFORMAT, "%s: hook_names: expected non-empty strings without commas",
                                   c->path);
            if (k + n + 2 > sizeof v->meta.hook_name)
                return cterp_error(CTERP_EFORMAT, "%s: hook_names: longer than %zu characters together", c->path,
                                   sizeof v->meta.hook_name - 1);
            if (k) v->meta.hook_name[k++] = ',';
            memcpy(v->meta.hook_name + k, h->valuestring, n + 1);
            k += n;
        }
    }
    return CTERP_OK;
}

// ---------------------------------------------------------------------------------------------
// load: weights

// The tensor exists with the shape cfg.json implies, or an error saying both.
static cterp_status expect_shape(const st_file *st, const cfg_vals *v, const char *name, int ndim,
                                 const int64_t *shape) {
    const st_tensor *t = st_find(st, name);
    if (!t)
        return cterp_error(CTERP_ENOTFOUND, "%s: tensor %s: not found (architecture %s needs it)",
                           st->path, name, cterp_arch_name(v->arch));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (same) return CTERP_OK;
    char got[200];
    size_t k = (size_t)snprintf(got, sizeof got, "[");
    for (int i = 0; i < t->ndim && k < sizeof got; i++)
        k += (size_t)snprintf(got + k, sizeof got - k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (k < sizeof got) snprintf(got + k, sizeof got - k, "]");
    char dout[40] = "";
    if (v->d_out != v->d_in) snprintf(dout, sizeof dout, ", d_out %" PRId64, v->d_out);
    return cterp_error(CTERP_EFORMAT,
                       "%s: tensor %s has shape %s, but cfg.json (d_in %" PRId64 ", d_sae %" PRId64
                       "%s) implies [%" PRId64 "%s%" PRId64 "]",
                       st->path, name, got, v->d_in, v->d_sae, dout, shape[0], ndim == 2 ? ", " : "",
                       ndim == 2 ? shape[1] : (int64_t)0);
}

static cterp_status load_weights(const char *wpath, const cfg_vals *v, cterp_sae **out) {
    st_file st;
    cterp_status s = st_open(&st, wpath);
    if (s) return s;
    const int64_t D = v->d_in, N = v->d_sae, DO = v->d_out;
    int64_t sh_DN[2] = {D, N}, sh_ND[2] = {N, DO}, sh_skip[2] = {DO, D};
    const int skip = v->arch == CTERP_ARCH_SKIP_TRANSCODER;
    const char *thr_name = "threshold";
    if (v->arch == CTERP_ARCH_JUMPRELU && !st_find(&st, "threshold") &&
        st_find(&st, "log_threshold"))
        thr_name = "log_threshold"; // a training-time parameterisation
    cterp_sae *sae = NULL;
    float *tmp = NULL;
    // shapes before allocating: a wrong cfg must not cost a huge allocation first
    const int gated = v->arch == CTERP_ARCH_GATED;
    const char *b_enc_name = gated ? "b_gate" : "b_enc"; // gated keeps b_gate where b_enc goes
    if ((s = expect_shape(&st, v, "W_enc", 2, sh_DN)) ||
        (s = expect_shape(&st, v, "W_dec", 2, sh_ND)) ||
        (s = expect_shape(&st, v, b_enc_name, 1, &N)) || (s = expect_shape(&st, v, "b_dec", 1, &DO)))
        goto fail;
    if (skip && (s = expect_shape(&st, v, "W_skip", 2, sh_skip))) goto fail;
    if (gated && ((s = expect_shape(&st, v, "r_mag", 1, &N)) || (s = expect_shape(&st, v, "b_mag", 1, &N))))
        goto fail;
    if (v->arch == CTERP_ARCH_JUMPRELU && (s = expect_shape(&st, v, thr_name, 1, &N))) goto fail;
    if ((s = skip || v->arch == CTERP_ARCH_TRANSCODER ? cterp_sae_create_transcoder(&sae, v->arch, D, DO, N)
             : v->arch == CTERP_ARCH_CROSSCODER       ? cterp_sae_create_crosscoder(&sae, v->n_layers, D / v->n_layers, N)
                                                      : cterp_sae_create(&sae, v->arch, D, N, v->k)))
        goto fail;
    tmp = malloc((size_t)D * (size_t)N * sizeof(float));
    if (!tmp) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", wpath);
        goto fail;
    }
    if ((s = st_read_f32(&st, "W_enc", tmp, 2, sh_DN))) goto fail;
    transpose(sae->W_enc, tmp, (size_t)D, (size_t)N); // file (D, N) -> memory (N, D)
    if ((s = st_read_f32(&st, "W_dec", sae->W_dec, 2, sh_ND)) ||
        (s = st_read_f32(&st, b_enc_name, sae->b_enc, 1, &N)) ||
        (s = st_read_f32(&st, "b_dec", sae->b_dec, 1, &DO)))
        goto fail;
    if (skip && (s = st_read_f32(&st, "W_skip", sae->W_skip, 2, sh_skip))) goto fail;
    if (gated && ((s = st_read_f32(&st, "r_mag", sae->r_mag, 1, &N)) ||
                  (s = st_read_f32(&st, "b_mag", sae->b_mag, 1, &N))))
        goto fail;
    if (v->arch == CTERP_ARCH_JUMPRELU) {
        if ((s = st_read_f32(&st, thr_name, sae->threshold, 1, &N))) goto fail;
        if (thr_name[0] == 'l')
            for (int64_t i = 0; i < N; i++) sae->threshold[i] = expf(sae->threshold[i]);
    }
    // pre-6.0 finetuning scale on the latents before decoding: folded into the W_dec rows
    const char *sf = st_find(&st, "finetuning_scaling_factor") ? "finetuning_scaling_factor"
                     : st_find(&st, "scaling_factor")          ? "scaling_factor"
                                                               : NULL;
    if (sf) {
        if ((s = st_read_f32(&st, sf, tmp, 1, &N))) goto fail;
        int ones = 1;
        for (int64_t i = 0; i < N; i++) ones &= tmp[i] == 1.0f;
        if (!ones && v->arch == CTERP_ARCH_TOPK && v->rescale) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tensor %s with rescale_acts_by_decoder_norm is not supported",
                            wpath, sf);
            goto fail;
        }
        if (!ones)
            for (int64_t i = 0; i < N; i++)
                for (int64_t d = 0; d < DO; d++) sae->W_dec[i * DO + d] *= tmp[i];
    }
    sae->rescale_acts_by_decoder_norm = v->rescale;
    sae->apply_b_dec_to_input = v->apply_b_dec;
    memcpy(sae->normalize_activations, v->normalize, sizeof sae->normalize_activations);
    sae->meta = v->meta;
    free(tmp);
    st_close(&st);
    *out = sae;
    return CTERP_OK;
fail:
    free(tmp);
    cterp_sae_free(sae);
    st_close(&st);
    return s;
}

cterp_status cterp_sae_load(const char *dir, cterp_sae **out) {
    if (!out) return cterp_error(CTERP_EINVAL, "cterp_sae_load: NULL output");
    *out = NULL;
    if (!dir) return cterp_error(CTERP_EINVAL, "cterp_sae_load: NULL directory");
    if (!file_is_dir(dir)) return cterp_error(CTERP_EIO, "%s: not a directory", dir);
    char *cpath = file_join(dir, "cfg.json"), *wpath = file_join(dir, "sae_weights.safetensors");
    char *text = NULL;
    cJSON *root = NULL;
    cterp_status s;
    if (!cpath || !wpath) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    size_t len;
    if (!file_exists(cpath) && file_exists(wpath)) { // cterp_sae_save writes cfg.json last
        s = cterp_error(CTERP_EFORMAT,
                        "%s: cannot open: missing beside %s, an incomplete SAE directory (or a "
                        "save that did not finish)",
                        cpath, wpath);
        goto done;
    }
    if ((s = file_read_all(cpath, &text, &len))) goto done;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        s = cterp_error(CTERP_EFORMAT, "%s: not valid JSON (near byte %zu)", cpath,
                        end && end >= text ? (size_t)(end - text) : (size_t)0);
        goto done;
    }
    for (; *end; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            s = cterp_error(CTERP_EFORMAT, "%s: unexpected bytes after the JSON (byte %zu)", cpath,
                            (size_t)(end - text));
            goto done;
        }
    cfg_t c = {cpath, root, NULL};
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (cJSON_IsObject(meta)) c.meta = meta;
    cfg_vals v;
    if ((s = parse_cfg(&c, &v))) goto done;
    s = load_weights(wpath, &v, out);
done:
    cJSON_Delete(root);
    free(text);
    free(cpath);
    free(wpath);
    return s;
}
