// Training config: defaults, presets, one table of fields for flags, JSON and validation.
#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "cterp/train.h"
#include "sae/bf16.h"

typedef enum { F_ARCH, F_I64, F_INT, F_FLOAT, F_BOOL, F_SCHED, F_BDEC, F_U64, F_WIDTHS } ftype;

typedef struct {
    const char *name;
    ftype type;
    size_t off;
    const char *help;
} field;

#define FLD(n, t, h) {#n, t, offsetof(cterp_train_config, n), h}
static const field fields[] = {
    FLD(architecture, F_ARCH,
        "standard | topk | batchtopk | jumprelu | matryoshka_batchtopk | gated | transcoder | skip_transcoder | "
        "crosscoder"),
    FLD(d_sae, F_I64, "latents (0: d_in * expansion_factor)"),
    FLD(expansion_factor, F_INT, "d_sae = d_in * this when d_sae is 0"),
    FLD(k, F_INT, "topk/batchtopk: active latents per token"),
    FLD(k_anneal_steps, F_I64,
        "topk family: k falls linearly from k_anneal_start to k over these steps (0: off)"),
    FLD(k_anneal_start, F_INT, "topk family: k of the first step when annealing (0: d_in)"),
    FLD(rescale_acts_by_decoder_norm, F_BOOL, "topk/batchtopk: rank latents by z_i * ||W_dec_i||"),
    FLD(jumprelu_bandwidth, F_FLOAT, "jumprelu: straight-through estimator width"),
    FLD(jumprelu_init_threshold, F_FLOAT, "jumprelu: initial threshold"),
    FLD(topk_threshold_lr, F_FLOAT, "batchtopk: EMA rate of the inference threshold"),
    FLD(matryoshka_widths, F_WIDTHS,
        "matryoshka_batchtopk: prefix widths, strictly increasing, e.g. 128,512,2048 (d_sae appended)"),
    FLD(gated_detach_aux_decoder, F_BOOL,
        "gated: no gradient from the gate's reconstruction into W_dec, b_dec (the paper; SAELens: false)"),
    FLD(lr, F_FLOAT, "Adam learning rate"),
    FLD(lr_end, F_FLOAT, "learning rate at the end of the decay"),
    FLD(lr_scheduler, F_SCHED, "constant | cosine | linear"),
    FLD(lr_warm_up_steps, F_I64, "linear warm-up steps"),
    FLD(lr_decay_steps, F_I64, "decay steps after warm-up (-1: all remaining)"),
    FLD(adam_beta1, F_FLOAT, "Adam beta1"),
    FLD(adam_beta2, F_FLOAT, "Adam beta2"),
    FLD(adam_eps, F_FLOAT, "Adam epsilon"),
    FLD(grad_clip, F_FLOAT, "global gradient-norm clip (0: off)"),
    FLD(l1_coefficient, F_FLOAT, "standard, gated, transcoders: L1 coefficient"),
    FLD(l0_coefficient, F_FLOAT, "jumprelu: L0 coefficient"),
    FLD(sparsity_warm_up_steps, F_I64, "sparsity coefficient ramps 0 -> 1 (-1: all steps)"),
    FLD(feature_sampling_window, F_I64, "steps per feature-density window"),
    FLD(dead_feature_window, F_I64, "steps without firing before a latent counts as dead"),
    FLD(use_ghost_grads, F_BOOL, "ghost grads for dead latents"),
    FLD(use_auxk, F_BOOL, "topk/batchtopk: AuxK loss on dead latents"),
    FLD(aux_k, F_INT, "AuxK: dead latents per token (-1: d_in; 0: d_in/2 as SAELens/sparsify)"),
    FLD(aux_k_coefficient, F_FLOAT, "AuxK loss coefficient"),
    FLD(decoder_init_norm, F_FLOAT, "norm of the random initial decoder rows"),
    FLD(b_dec_init, F_BDEC, "geometric_median | mean | zeros"),
    FLD(normalize_activations, F_BOOL, "scale inputs so E||x|| = sqrt(d_in) (folded at save)"),
    FLD(norm_estimate_batches, F_INT, "batches used to estimate the input scale"),
    FLD(batch_size, F_I64, "tokens per step"),
    FLD(training_steps, F_I64, "steps (0: training_tokens / batch_size)"),
    FLD(training_tokens, F_I64, "tokens, when training_steps is 0"),
    FLD(seed, F_U64, "seed of the initialisation (and the data order where it applies)"),
    FLD(log_every, F_I64, "steps between metrics lines"),
    FLD(checkpoint_every, F_I64, "steps between checkpoints (0: only the final one)"),
    FLD(threads, F_INT, "threads (0: all cores)"),
    FLD(encoder_bf16, F_BOOL,
        "topk/batchtopk: encoder GEMM in bf16 (AVX-512 BF16) to choose the top-k, values in f32"),
    FLD(skip_nonfinite_rows, F_BOOL,
        "skip an input row with a NaN/Inf (counted in the metrics) instead of stopping"),
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

static const char *sched_names[] = {"constant", "cosine", "linear"};
static const char *bdec_names[] = {"geometric_median", "mean", "zeros"};

void cterp_train_config_default(cterp_train_config *c) {
    memset(c, 0, sizeof *c);
    c->architecture = CTERP_ARCH_TOPK;
    c->d_sae = 0;
    c->expansion_factor = 8;
    c->k = 8;
    c->rescale_acts_by_decoder_norm = 0; // measured: on, 20-30% of latents die on the toy
    c->jumprelu_bandwidth = 0.05f;
    c->jumprelu_init_threshold = 0.01f;
    c->topk_threshold_lr = 0.01f;
    c->lr = 2e-3f; // measured on the toy: 1e-3 learns slower, 4e-3 leaves 11% never firing
    c->lr_end = 0.0f;
    c->lr_scheduler = CTERP_LR_CONSTANT; // measured: cosine to 0 stops finding late features
    c->lr_warm_up_steps = 0;
    c->lr_decay_steps = -1;
    c->adam_beta1 = 0.9f;
    c->adam_beta2 = 0.999f;
    c->adam_eps = 1e-8f;
    c->grad_clip = 1.0f;
    c->l1_coefficient = 1.0f;
    c->l0_coefficient = 1.0f;
    c->sparsity_warm_up_steps = -1;
    c->feature_sampling_window = 1000;
    c->dead_feature_window = 200;
    c->use_ghost_grads = 0;
    c->use_auxk = 1;
    c->aux_k = -1; // d_in: measured better than d_in/2 on the toy (docs/measurements.md)
    c->aux_k_coefficient = 1.0f / 32;
    c->decoder_init_norm = 0.1f;
    c->b_dec_init = CTERP_BDEC_ZEROS;
    c->normalize_activations = 0;
    c->norm_estimate_batches = 10;
    c->batch_size = 2048;     // measured on the toy: more, smaller steps beat 4096 per token
    c->training_steps = 4500;
    c->training_tokens = 0;
    c->seed = 42;
    c->log_every = 100;
    c->checkpoint_every = 0;
    c->threads = 0;
}

cterp_status cterp_train_config_preset(cterp_train_config *c, const char *name) {
    if (!strcmp(name, "cterp") || !strcmp(name, "default")) {
        cterp_train_config_default(c);
    } else if (!strcmp(name, "mlxterp")) { // mlxterp SAEConfig defaults
        cterp_train_config_default(c);
        c->architecture = CTERP_ARCH_TOPK;
        c->expansion_factor = 32;
        c->k = 128;
        c->lr = 3e-4f;
        c->lr_scheduler = CTERP_LR_COSINE;
        c->lr_warm_up_steps = 0;
        c->use_ghost_grads = 1;
        c->use_auxk = 0;
        c->aux_k = 0;
        c->feature_sampling_window = 1000;
        c->dead_feature_window = 5000;
    } else if (!strcmp(name, "saelens")) { // SAELens v6 LanguageModelSAERunnerConfig defaults
        cterp_train_config_default(c);
        c->architecture = CTERP_ARCH_STANDARD;
        c->rescale_acts_by_decoder_norm = 1;
        c->expansion_factor = 4;
        c->k = 100;
        c->lr = 3e-4f;
        c->lr_scheduler = CTERP_LR_CONSTANT;
        c->lr_warm_up_steps = 0;
        c->lr_end = 3e-5f;
        c->lr_decay_steps = 0;
        c->l1_coefficient = 1.0f;
        c->l0_coefficient = 1.0f;
        c->sparsity_warm_up_steps = 0;
        c->feature_sampling_window = 2000;
        c->dead_feature_window = 1000;
        c->use_ghost_grads = 0;
        c->use_auxk = 1;
        c->aux_k = 0; // d_in/2
        c->aux_k_coefficient = 1.0f;
        c->b_dec_init = CTERP_BDEC_ZEROS;
        c->batch_size = 4096;
        c->training_steps = 0;
        c->training_tokens = 2000000;
        c->log_every = 10;
    } else {
        return cterp_error(CTERP_EINVAL, "preset: got '%s', expected cterp, mlxterp or saelens", name);
    }
    return CTERP_OK;
}

static const field *find_field(const char *name) {
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++) norm[i] = name[i] == '-' ? '_' : name[i];
    if (!strcmp(norm, "arch")) strcpy(norm, "architecture");
    if (!strcmp(norm, "batch")) strcpy(norm, "batch_size");
    if (!strcmp(norm, "steps")) strcpy(norm, "training_steps");
    if (!strcmp(norm, "tokens")) strcpy(norm, "training_tokens");
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(fields[i].name, norm)) return &fields[i];
    return NULL;
}

static cterp_status parse_enum(const char *v, const char **names, int n, int *out, const char *fname) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return CTERP_OK;
        }
    char allowed[256] = "";
    for (int i = 0; i < n; i++) {
        strcat(allowed, names[i]);
        if (i + 1 < n) strcat(allowed, ", ");
    }
    return cterp_error(CTERP_EINVAL, "%s: got '%s', expected one of %s", fname, v, allowed);
}

cterp_status cterp_train_config_set(cterp_train_config *c, const char *name, const char *value) {
    const field *f = find_field(name);
    if (!f) return cterp_error(CTERP_EINVAL, "unknown config field '%s'", name);
    void *p = (char *)c + f->off;
    char *end;
    errno = 0;
    switch (f->type) {
    case F_WIDTHS: { // "128,512,2048" ("" or "none": no widths)
        int n = 0;
        int64_t v[CTERP_MAX_MATRYOSHKA] = {0};
        if (strcmp(value, "none") != 0 && value[0]) {
            for (const char *q = value;; q = end + 1) {
                long long x = strtoll(q, &end, 10);
                if (end == q || errno || (*end && *end != ',') || x <= 0)
                    return cterp_error(CTERP_EINVAL, "%s: got '%s', expected positive integers separated by commas",
                                       f->name, value);
                if (n == CTERP_MAX_MATRYOSHKA)
                    return cterp_error(CTERP_EINVAL, "%s: got '%s', expected at most %d widths", f->name, value,
                                       CTERP_MAX_MATRYOSHKA);
                v[n++] = x;
                if (!*end) break;
            }
        }
        memcpy(c->matryoshka_widths, v, sizeof v); // the whole array: none left from a key before
        c->n_matryoshka_widths = n;
        return CTERP_OK;
    }
    case F_ARCH: {
        cterp_arch a;
        cterp_status s = cterp_arch_parse(value, &a);
        if (s) return s;
        *(cterp_arch *)p = a;
        return CTERP_OK;
    }
    case F_SCHED: {
        int v = 0;
        if (!strcmp(value, "cosineannealing")) value = "cosine";
        cterp_status s = parse_enum(value, sched_names, 3, &v, f->name);
        if (!s) *(cterp_lr_sched *)p = (cterp_lr_sched)v;
        return s;
    }
    case F_BDEC: {
        int v = 0;
        cterp_status s = parse_enum(value, bdec_names, 3, &v, f->name);
        if (!s) *(cterp_bdec_init *)p = (cterp_bdec_init)v;
        return s;
    }
    case F_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "on") || !strcmp(value, "yes"))
            *(int *)p = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "off") ||
                 !strcmp(value, "no"))
            *(int *)p = 0;
        else
            return cterp_error(CTERP_EINVAL, "%s: got '%s', expected true or false", f->name, value);
        return CTERP_OK;
    case F_FLOAT: {
        double v = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(v))
            return cterp_error(CTERP_EINVAL, "%s: got '%s', expected a number", f->name, value);
        if (fabs(v) > FLT_MAX) // would become inf, which the JSON writer cannot write back
            return cterp_error(CTERP_EINVAL, "%s: got '%s', out of range (|x| <= %g)", f->name,
                               value, (double)FLT_MAX);
        *(float *)p = (float)v;
        return CTERP_OK;
    }
    case F_I64:
    case F_INT:
    case F_U64: {
        // accept 1e6-style values when they are whole numbers
        double dv = strtod(value, &end);
        if (end == value || *end || errno || dv != floor(dv) || fabs(dv) > 9e18)
            return cterp_error(CTERP_EINVAL, "%s: got '%s', expected an integer", f->name, value);
        if (f->type == F_INT) {
            if (fabs(dv) > 2147483647.0)
                return cterp_error(CTERP_EINVAL, "%s: got '%s', out of range", f->name, value);
            *(int *)p = (int)dv;
        } else if (f->type == F_U64) {
            unsigned long long u = strtoull(value, &end, 10);
            if (*end || value[0] == '-') {
                if (dv < 0)
                    return cterp_error(CTERP_EINVAL, "%s: got '%s', expected a non-negative integer",
                                       f->name, value);
                u = (unsigned long long)dv;
            }
            *(uint64_t *)p = u;
        } else {
            *(int64_t *)p = (int64_t)dv;
        }
        return CTERP_OK;
    }
    }
    return CTERP_EINVAL;
}

cterp_status cterp_train_config_load_json(cterp_train_config *c, const char *path) {
    char *text;
    cterp_status s = file_read_all(path, &text, NULL);
    if (s) return s;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return cterp_error(CTERP_EFORMAT, "%s: not a JSON object", path);
    }
    cJSON *preset = cJSON_GetObjectItemCaseSensitive(root, "preset");
    if (preset) {
        if (!cJSON_IsString(preset)) {
            cJSON_Delete(root);
            return cterp_error(CTERP_EINVAL, "%s: preset: expected a string", path);
        }
        if ((s = cterp_train_config_preset(c, preset->valuestring))) {
            char msg[1024]; // a copy: cterp_error writes over the message it would read
            snprintf(msg, sizeof msg, "%s", cterp_last_error());
            cJSON_Delete(root);
            return cterp_error(s, "%s: %s", path, msg);
        }
    }
    for (cJSON *it = root->child; it; it = it->next) {
        if (!strcmp(it->string, "preset")) continue;
        char buf[64 + 21 * CTERP_MAX_MATRYOSHKA];
        const char *v;
        if (cJSON_IsArray(it) && !strcmp(it->string, "matryoshka_widths")) { // [128, 512] -> "128,512"
            size_t k = 0;
            int n = 0;
            buf[0] = 0;
            for (cJSON *e = it->child; e; e = e->next, n++) {
                if (!cJSON_IsNumber(e) || n >= CTERP_MAX_MATRYOSHKA + 1) {
                    s = cterp_error(CTERP_EINVAL, "%s: matryoshka_widths: expected at most %d integers",
                                    path, CTERP_MAX_MATRYOSHKA);
                    cJSON_Delete(root);
                    return s;
                }
                k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%.17g", n ? "," : "", e->valuedouble);
            }
            v = buf;
        } else if (cJSON_IsString(it)) v = it->valuestring;
        else if (cJSON_IsBool(it)) v = cJSON_IsTrue(it) ? "true" : "false";
        else if (cJSON_IsNumber(it)) {
            snprintf(buf, sizeof buf, "%.17g", it->valuedouble);
            v = buf;
        } else if (cJSON_IsNull(it)) continue;
        else { // the message first: it->string is freed with root
            s = cterp_error(CTERP_EINVAL, "%s: %s: got %s, expected a string, number or boolean",
                            path, it->string, cJSON_IsArray(it) ? "an array" : "an object");
            cJSON_Delete(root);
            return s;
        }
        if ((s = cterp_train_config_set(c, it->string, v))) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", cterp_last_error());
            cJSON_Delete(root);
            return cterp_error(s, "%s: %s", path, msg);
        }
    }
    cJSON_Delete(root);
    return CTERP_OK;
}

cterp_status cterp_train_config_write_json(const cterp_train_config *c, FILE *f) {
    fprintf(f, "{\n");
    for (int i = 0; i < N_FIELDS; i++) {
        const void *p = (const char *)c + fields[i].off;
        fprintf(f, "  \"%s\": ", fields[i].name);
        switch (fields[i].type) {
        case F_ARCH: fprintf(f, "\"%s\"", cterp_arch_name(*(const cterp_arch *)p)); break;
        case F_SCHED: fprintf(f, "\"%s\"", sched_names[*(const cterp_lr_sched *)p]); break;
        case F_BDEC: fprintf(f, "\"%s\"", bdec_names[*(const cterp_bdec_init *)p]); break;
        case F_BOOL: fprintf(f, "%s", *(const int *)p ? "true" : "false"); break;
        case F_FLOAT: fprintf(f, "%.9g", *(const float *)p); break;
        case F_INT: fprintf(f, "%d", *(const int *)p); break;
        case F_I64: fprintf(f, "%lld", (long long)*(const int64_t *)p); break;
        case F_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p); break;
        case F_WIDTHS:
            fprintf(f, "[");
            for (int j = 0; j < c->n_matryoshka_widths; j++)
                fprintf(f, "%s%lld", j ? ", " : "", (long long)c->matryoshka_widths[j]);
            fprintf(f, "]");
            break;
        }
        fprintf(f, "%s\n", i + 1 < N_FIELDS ? "," : "");
    }
    fprintf(f, "}\n");
    return ferror(f) ? cterp_error(CTERP_EIO, "config: write failed") : CTERP_OK;
}

int64_t cterp_train_config_d_sae(const cterp_train_config *c, int64_t d_in) {
    return c->d_sae > 0 ? c->d_sae : d_in * c->expansion_factor;
}

int64_t cterp_train_config_steps(const cterp_train_config *c) {
    if (c->training_steps > 0) return c->training_steps;
    return c->batch_size > 0 ? c->training_tokens / c->batch_size : 0;
}

// dictionary_learning's update_annealed_k, in f64 as Python computes it, truncated as int() does
int cterp_train_config_k_at(const cterp_train_config *c, int64_t d_in, int64_t step) {
    if (c->k_anneal_steps <= 0) return c->k;
    const double k0 = c->k_anneal_start > 0 ? c->k_anneal_start : (double)d_in;
    const double r = (double)(step < c->k_anneal_steps ? (step > 0 ? step : 0) : c->k_anneal_steps) /
                     (double)c->k_anneal_steps;
    return (int)(k0 * (1 - r) + c->k * r);
}

#define BAD(field, fmt, ...) cterp_error(CTERP_EINVAL, "%s: got " fmt ", expected %s", field, __VA_ARGS__)

cterp_status cterp_train_config_validate(const cterp_train_config *c, int64_t d_in) {
    if ((unsigned)c->architecture >= CTERP_N_ARCHS)
        return BAD("architecture", "%d", (int)c->architecture,
                   "standard, topk, batchtopk, jumprelu, matryoshka_batchtopk, gated, transcoder, "
                   "skip_transcoder or crosscoder");
    if (c->architecture == CTERP_ARCH_TRANSCODER || c->architecture == CTERP_ARCH_SKIP_TRANSCODER) {
        if (c->normalize_activations)
            return cterp_error(CTERP_EINVAL, "normalize_activations: got true with architecture %s, expected "
                               "false (input and target would each need a scale; not supported)",
                               cterp_arch_name(c->architecture));
        if (c->use_ghost_grads)
            return cterp_error(CTERP_EINVAL, "use_ghost_grads: got true with architecture %s, expected false",
                               cterp_arch_name(c->architecture));
    }
    if (d_in <= 0) return BAD("d_in", "%lld", (long long)d_in, "> 0");
    if (c->d_sae < 0) return BAD("d_sae", "%lld", (long long)c->d_sae, ">= 0 (0: d_in * expansion_factor)");
    if (c->d_sae == 0 && (c->expansion_factor <= 0 || c->expansion_factor > 4096))
        return BAD("expansion_factor", "%d", c->expansion_factor, "1..4096");
    int64_t N = cterp_train_config_d_sae(c, d_in);
    if (N > (1 << 26)) return BAD("d_sae", "%lld", (long long)N, "<= 67108864");
    const int matry = c->architecture == CTERP_ARCH_MATRYOSHKA_BATCHTOPK;
    if (c->architecture == CTERP_ARCH_TOPK || c->architecture == CTERP_ARCH_BATCHTOPK || matry) {
        if (c->k <= 0 || c->k > N) {
            char allowed[64];
            snprintf(allowed, sizeof allowed, "1..d_sae (%lld)", (long long)N);
            return BAD("k", "%d", c->k, allowed);
        }
    }
    if (c->k_anneal_steps < 0)
        return BAD("k_anneal_steps", "%lld", (long long)c->k_anneal_steps, ">= 0 (0: off)");
    if (c->k_anneal_start < 0)
        return BAD("k_anneal_start", "%d", c->k_anneal_start, ">= 0 (0: d_in)");
    if (c->k_anneal_steps > 0) {
        if (c->architecture != CTERP_ARCH_TOPK && c->architecture != CTERP_ARCH_BATCHTOPK && !matry)
            return cterp_error(CTERP_EINVAL, "k_anneal_steps: got %lld with architecture %s, expected 0 "
                               "(only topk, batchtopk and matryoshka_batchtopk choose latents by k)",
                               (long long)c->k_anneal_steps, cterp_arch_name(c->architecture));
        const int64_t steps = cterp_train_config_steps(c);
        if (steps > 0 && c->k_anneal_steps >= steps)
            return cterp_error(CTERP_EINVAL, "k_anneal_steps: got %lld, expected < the training steps (%lld), "
                               "so that the last steps train at k", (long long)c->k_anneal_steps, (long long)steps);
        const int64_t k0 = c->k_anneal_start > 0 ? c->k_anneal_start : d_in;
        char got[48]; // "0 (d_in 32)" when it defaults to d_in
        if (c->k_anneal_start > 0) snprintf(got, sizeof got, "%d", c->k_anneal_start);
        else snprintf(got, sizeof got, "0 (d_in %lld)", (long long)d_in);
        if (k0 <= c->k)
            return cterp_error(CTERP_EINVAL, "k_anneal_start: got %s, expected > k (%d): annealing lowers k "
                               "from k_anneal_start to k", got, c->k);
        if (k0 > N)
            return cterp_error(CTERP_EINVAL, "k_anneal_start: got %s, expected <= d_sae (%lld)", got, (long long)N);
    } else if (c->k_anneal_start > 0) {
        return cterp_error(CTERP_EINVAL, "k_anneal_start: got %d with k_anneal_steps 0, expected 0 "
                           "(annealing is off; set k_anneal_steps to anneal)", c->k_anneal_start);
    }
    if ((unsigned)c->n_matryoshka_widths > CTERP_MAX_MATRYOSHKA)
        return BAD("matryoshka_widths", "%d widths", c->n_matryoshka_widths, "at most 16");
    if (matry && c->n_matryoshka_widths == 0)
        return cterp_error(CTERP_EINVAL, "matryoshka_widths: got none, expected the prefix widths of "
                           "matryoshka_batchtopk, strictly increasing, e.g. --matryoshka-widths 128,512");
    if (!matry && c->n_matryoshka_widths > 0)
        return cterp_error(CTERP_EINVAL, "matryoshka_widths: got %d widths with architecture %s, expected "
                           "none (only matryoshka_batchtopk has prefixes)",
                           c->n_matryoshka_widths, cterp_arch_name(c->architecture));
    for (int j = 0; j < c->n_matryoshka_widths; j++) {
        const int64_t v = c->matryoshka_widths[j];
        if (v < 1 || v > N)
            return cterp_error(CTERP_EINVAL, "matryoshka_widths: got %lld (width %d), expected 1..d_sae (%lld)",
                               (long long)v, j + 1, (long long)N);
        if (j > 0 && v <= c->matryoshka_widths[j - 1])
            return cterp_error(CTERP_EINVAL, "matryoshka_widths: got %lld after %lld (width %d), expected "
                               "strictly increasing widths",
                               (long long)v, (long long)c->matryoshka_widths[j - 1], j + 1);
    }
    if (c->architecture == CTERP_ARCH_GATED && c->use_ghost_grads)
        return cterp_error(CTERP_EINVAL, "use_ghost_grads: got true with architecture gated, expected false "
                           "(SAELens v6 has no ghost grads; gated trains its gate through its own aux loss)");
    if (!(c->lr > 0)) return BAD("lr", "%g", c->lr, "> 0");
    if (!(c->lr_end >= 0)) return BAD("lr_end", "%g", c->lr_end, ">= 0");
    if ((unsigned)c->lr_scheduler > 2) return BAD("lr_scheduler", "%d", (int)c->lr_scheduler, "constant, cosine or linear");
    if (c->lr_warm_up_steps < 0) return BAD("lr_warm_up_steps", "%lld", (long long)c->lr_warm_up_steps, ">= 0");
    if (c->lr_decay_steps < -1) return BAD("lr_decay_steps", "%lld", (long long)c->lr_decay_steps, ">= 0 or -1 (all remaining)");
    if (!(c->adam_beta1 >= 0 && c->adam_beta1 < 1)) return BAD("adam_beta1", "%g", c->adam_beta1, "in [0, 1)");
    if (!(c->adam_beta2 >= 0 && c->adam_beta2 < 1)) return BAD("adam_beta2", "%g", c->adam_beta2, "in [0, 1)");
    if (!(c->adam_eps > 0)) return BAD("adam_eps", "%g", c->adam_eps, "> 0");
    if (!(c->grad_clip >= 0)) return BAD("grad_clip", "%g", c->grad_clip, ">= 0 (0: off)");
    if (!(c->l1_coefficient >= 0)) return BAD("l1_coefficient", "%g", c->l1_coefficient, ">= 0");
    if (!(c->l0_coefficient >= 0)) return BAD("l0_coefficient", "%g", c->l0_coefficient, ">= 0");
    if (c->sparsity_warm_up_steps < -1) return BAD("sparsity_warm_up_steps", "%lld", (long long)c->sparsity_warm_up_steps, ">= 0 or -1 (all steps)");
    if (c->feature_sampling_window <= 0) return BAD("feature_sampling_window", "%lld", (long long)c->feature_sampling_window, "> 0");
    if (c->dead_feature_window <= 0) return BAD("dead_feature_window", "%lld", (long long)c->dead_feature_window, "> 0");
    if (c->use_auxk && c->aux_k < -1) return BAD("aux_k", "%d", c->aux_k, ">= -1 (-1: d_in, 0: d_in/2)");
    if (c->aux_k > N) return BAD("aux_k", "%d", c->aux_k, "<= d_sae");
    if (!(c->aux_k_coefficient >= 0)) return BAD("aux_k_coefficient", "%g", c->aux_k_coefficient, ">= 0");
    if (!(c->decoder_init_norm > 0)) return BAD("decoder_init_norm", "%g", c->decoder_init_norm, "> 0");
    if ((unsigned)c->b_dec_init > 2) return BAD("b_dec_init", "%d", (int)c->b_dec_init, "geometric_median, mean or zeros");
    if (c->norm_estimate_batches <= 0) return BAD("norm_estimate_batches", "%d", c->norm_estimate_batches, "> 0");
    if (!(c->jumprelu_bandwidth > 0)) return BAD("jumprelu_bandwidth", "%g", c->jumprelu_bandwidth, "> 0");
    if (!(c->jumprelu_init_threshold > 0)) return BAD("jumprelu_init_threshold", "%g", c->jumprelu_init_threshold, "> 0");
    if (!(c->topk_threshold_lr > 0 && c->topk_threshold_lr <= 1)) return BAD("topk_threshold_lr", "%g", c->topk_threshold_lr, "in (0, 1]");
    if (c->batch_size <= 0 || c->batch_size > (1 << 24)) return BAD("batch_size", "%lld", (long long)c->batch_size, "1..16777216");
    if (c->training_steps < 0) return BAD("training_steps", "%lld", (long long)c->training_steps, ">= 0");
    if (c->training_tokens < 0) return BAD("training_tokens", "%lld", (long long)c->training_tokens, ">= 0");
    // step * batch counts tokens (metrics, the rows a resume replays): keep it exact and in range
    if (cterp_train_config_steps(c) > ((int64_t)1 << 53) / c->batch_size)
        return cterp_error(CTERP_EINVAL,
                           "training_steps * batch_size: got %lld * %lld, expected <= 2^53 tokens",
                           (long long)cterp_train_config_steps(c), (long long)c->batch_size);
    if (cterp_train_config_steps(c) <= 0)
        return cterp_error(CTERP_EINVAL, "training_steps: got 0 (training_tokens %lld / batch_size %lld), expected >= 1",
                           (long long)c->training_tokens, (long long)c->batch_size);
    if (c->log_every <= 0) return BAD("log_every", "%lld", (long long)c->log_every, "> 0");
    if (c->checkpoint_every < 0) return BAD("checkpoint_every", "%lld", (long long)c->checkpoint_every, ">= 0");
    // the trainer gives OpenMP this many threads: a checkpoint's "threads": 100000 made the first
    // step start 100000 of them (gigabytes, then the OOM killer) instead of an error
    if (c->threads < 0 || c->threads > CTERP_MAX_THREADS)
        return BAD("threads", "%d", c->threads, "0..1024 (0: OpenMP's default)");
    if (c->encoder_bf16) {
        if (c->architecture != CTERP_ARCH_TOPK && c->architecture != CTERP_ARCH_BATCHTOPK && !matry)
            return cterp_error(CTERP_EINVAL, "encoder_bf16: got true with architecture %s, expected topk, batchtopk "
                               "or matryoshka_batchtopk "
                               "(the others threshold every pre-activation)", cterp_arch_name(c->architecture));
        if (!bf16_available())
            return cterp_error(CTERP_EINVAL, "encoder_bf16: got true, but %s", bf16_why_unavailable());
    }
    if ((int64_t)c->batch_size * N > ((int64_t)1 << 36))
        return cterp_error(CTERP_EINVAL, "batch_size * d_sae: got %lld, expected <= 2^36 (memory)", (long long)(c->batch_size * N));
    return CTERP_OK;
}

int64_t cterp_train_rows_needed(const cterp_train_config *c) {
    const int64_t batches = c->training_steps + (c->normalize_activations ? c->norm_estimate_batches : 0);
    return batches > 0 && c->batch_size > 0 && batches <= INT64_MAX / c->batch_size ? batches * c->batch_size : 0;
}
