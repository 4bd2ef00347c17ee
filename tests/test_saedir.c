// SAELens SAE directories: bit-exact round trips, the on-disk W_enc transpose, cfg.json against
// the SAELens v6.18 layout, hand-written SAELens v5 directories (flat cfg, f16/bf16 tensors),
// and bad directories failing with messages that name the file and the field.
#include "core/file.h"
#include "core/half.h"
#include "core/rng.h"
#include "cterp/sae.h"
#include "io/safetensors.h"
#include "test.h"

#include <cJSON.h>
#include <dirent.h>

static char root[512];

static void path_of(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", root, name);
}

static void write_text(const char *dir, const char *name, const char *text) {
    file_mkdirs(dir);
    char *p = file_join(dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    free(p);
}

static cterp_sae *make_sae(cterp_arch arch, int64_t D, int64_t N, int k, uint64_t seed) {
    cterp_sae *s = NULL;
    const int tc = arch == CTERP_ARCH_TRANSCODER || arch == CTERP_ARCH_SKIP_TRANSCODER;
    if ((tc ? cterp_sae_create_transcoder(&s, arch, D, D - 8, N) : cterp_sae_create(&s, arch, D, N, k)) != CTERP_OK)
        return NULL;
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < s->n_params; i++) s->params[i] = rng_normal(&r);
    if (s->threshold)
        for (int64_t i = 0; i < N; i++) s->threshold[i] = 0.1f * rng_uniform(&r);
    snprintf(s->meta.model_name, sizeof s->meta.model_name, "gpt2");
    snprintf(s->meta.hook_name, sizeof s->meta.hook_name, "blocks.8.hook_resid_pre");
    snprintf(s->meta.dataset_path, sizeof s->meta.dataset_path, "monology/pile-uncopyrighted");
    s->meta.context_size = 1024;
    s->meta.training_tokens = 123456789;
    return s;
}

static int same_floats(const float *a, const float *b, size_t n) {
    return (a == NULL) == (b == NULL) && (!n || !a || !memcmp(a, b, n * sizeof(float)));
}

static void check_same(const cterp_sae *a, const cterp_sae *b) {
    CHECK(a->arch == b->arch && a->d_in == b->d_in && a->d_sae == b->d_sae && a->d_out == b->d_out);
    if (a->arch == CTERP_ARCH_TOPK) CHECK(a->k == b->k);
    CHECK(a->rescale_acts_by_decoder_norm == b->rescale_acts_by_decoder_norm);
    CHECK(a->apply_b_dec_to_input == b->apply_b_dec_to_input);
    CHECK(!strcmp(a->normalize_activations, b->normalize_activations));
    size_t D = (size_t)a->d_in, N = (size_t)a->d_sae, DO = (size_t)a->d_out;
    CHECK(same_floats(a->W_enc, b->W_enc, N * D));
    CHECK(same_floats(a->W_dec, b->W_dec, N * DO));
    CHECK(same_floats(a->b_enc, b->b_enc, N));
    CHECK(same_floats(a->b_dec, b->b_dec, DO));
    CHECK(same_floats(a->W_skip, b->W_skip, DO * D));
    CHECK(same_floats(a->threshold, b->threshold, N));
    CHECK(same_floats(a->r_mag, b->r_mag, N));
    CHECK(same_floats(a->b_mag, b->b_mag, N));
    const cterp_sae_meta *m = &a->meta, *n = &b->meta;
    CHECK(!strcmp(m->model_name, n->model_name) && !strcmp(m->hook_name, n->hook_name));
    CHECK(!strcmp(m->dataset_path, n->dataset_path));
    CHECK(m->hook_head_index == n->hook_head_index && m->context_size == n->context_size);
    CHECK(m->prepend_bos == n->prepend_bos && m->training_tokens == n->training_tokens);
    CHECK(!strcmp(m->sequence_separator_token, n->sequence_separator_token));
    CHECK(m->exclude_special_tokens == n->exclude_special_tokens);
    CHECK(m->disable_concat_sequences == n->disable_concat_sequences);
}

static cJSON *read_json(const char *dir, const char *name) {
    char *p = file_join(dir, name), *txt = NULL;
    size_t n;
    cJSON *j = NULL;
    if (file_read_all(p, &txt, &n) == CTERP_OK) j = cJSON_Parse(txt);
    free(txt);
    free(p);
    return j;
}

static const cJSON *get(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int is_str(const cJSON *j, const char *s) {
    return cJSON_IsString(j) && !strcmp(j->valuestring, s);
}

static int is_num(const cJSON *j, double v) {
    return cJSON_IsNumber(j) && j->valuedouble == v;
}

// cfg.json as SAELens v6.18 writes it (reference/saelens.md section 4)
static void check_cfg(const char *dir, const cterp_sae *s) {
    cJSON *c = read_json(dir, "cfg.json");
    CHECK(c != NULL);
    if (!c) return;
    CHECK(is_num(get(c, "d_in"), (double)s->d_in) && is_num(get(c, "d_sae"), (double)s->d_sae));
    CHECK(is_str(get(c, "dtype"), "float32") && is_str(get(c, "device"), "cpu"));
    // transcoders: d_out, and apply_b_dec_to_input false (SAELens's TranscoderConfig refuses true)
    const int tc = cterp_sae_is_transcoder(s);
    CHECK(tc ? is_num(get(c, "d_out"), (double)s->d_out) : !get(c, "d_out"));
    CHECK(cJSON_IsBool(get(c, "apply_b_dec_to_input")) && cJSON_IsTrue(get(c, "apply_b_dec_to_input")) == !tc);
    CHECK(is_str(get(c, "normalize_activations"), "none"));
    CHECK(is_str(get(c, "reshape_activations"), "none"));
    CHECK(is_str(get(c, "architecture"), cterp_arch_name(s->arch)));
    if (s->arch == CTERP_ARCH_TOPK) {
        CHECK(is_num(get(c, "k"), s->k));
        CHECK(cJSON_IsBool(get(c, "rescale_acts_by_decoder_norm")) &&
              cJSON_IsTrue(get(c, "rescale_acts_by_decoder_norm")) ==
                  (s->rescale_acts_by_decoder_norm != 0));
    } else {
        CHECK(!get(c, "k") && !get(c, "rescale_acts_by_decoder_norm"));
    }
    const cJSON *m = get(c, "metadata");
    CHECK(cJSON_IsObject(m));
    CHECK(is_str(get(m, "sae_lens_version"), "6.18.0"));
    CHECK(is_str(get(m, "cterp_version"), "0.1"));
    CHECK(is_str(get(m, "model_name"), "gpt2"));
    CHECK(is_str(get(m, "model_class_name"), "HookedTransformer"));
    CHECK(is_str(get(m, "hook_name"), "blocks.8.hook_resid_pre"));
    CHECK(cJSON_IsNull(get(m, "hook_head_index")));
    CHECK(is_num(get(m, "context_size"), 1024));
    CHECK(cJSON_IsTrue(get(m, "prepend_bos")));
    const cJSON *sl = get(m, "seqpos_slice");
    CHECK(cJSON_IsArray(sl) && cJSON_GetArraySize(sl) == 1 &&
          cJSON_IsNull(cJSON_GetArrayItem(sl, 0)));
    CHECK(is_str(get(m, "dataset_path"), "monology/pile-uncopyrighted"));
    const cJSON *kw = get(m, "model_from_pretrained_kwargs");
    CHECK(cJSON_IsObject(kw) && cJSON_IsFalse(get(kw, "center_writing_weights")));
    CHECK(cJSON_IsFalse(get(m, "exclude_special_tokens")));
    CHECK(is_str(get(m, "sequence_separator_token"), "bos"));
    CHECK(cJSON_IsFalse(get(m, "disable_concat_sequences")));
    CHECK(cJSON_IsNull(get(m, "neuronpedia_id")));
    CHECK(is_num(get(m, "training_tokens"), 123456789));
    cJSON_Delete(c);
}

// The tensors SAELens v6's load_from_disk finds in sae_weights.safetensors: its strict
// load_state_dict wants exactly the module's parameters (reference/saelens.md section 4), no more
// and no fewer, under these names and shapes.
static void check_tensor_names(const st_file *st, cterp_arch arch, int64_t D, int64_t DO, int64_t N) {
    static const char *const plain[] = {"W_dec", "W_enc", "b_dec", "b_enc", NULL};
    static const char *const jump[] = {"W_dec", "W_enc", "b_dec", "b_enc", "threshold", NULL};
    static const char *const gated[] = {"W_dec", "W_enc", "b_dec", "b_gate", "b_mag", "r_mag", NULL};
    static const char *const skip[] = {"W_dec", "W_enc", "W_skip", "b_dec", "b_enc", NULL};
    const char *const *want = arch == CTERP_ARCH_JUMPRELU ? jump : arch == CTERP_ARCH_GATED ? gated
                              : arch == CTERP_ARCH_SKIP_TRANSCODER ? skip : plain;
    int n = 0;
    for (; want[n]; n++) {
        const st_tensor *t = st_find(st, want[n]);
        CHECK_MSG(t != NULL, "%s: tensor %s missing", cterp_arch_name(arch), want[n]);
        if (!t) continue;
        // W_enc [d_in, d_sae], W_dec [d_sae, d_out], W_skip [d_out, d_in], b_dec [d_out], the rest [d_sae]
        const int two = want[n][0] == 'W';
        const int64_t r0 = !strcmp(want[n], "W_enc") ? D : !strcmp(want[n], "W_dec") ? N : DO;
        const int64_t r1 = !strcmp(want[n], "W_enc") ? N : !strcmp(want[n], "W_dec") ? DO : D;
        const int64_t len = !strcmp(want[n], "b_dec") ? DO : N;
        CHECK_MSG(t->dtype == ST_F32 && t->ndim == (two ? 2 : 1) &&
                      (two ? t->shape[0] == r0 && t->shape[1] == r1 : t->shape[0] == len),
                  "%s: tensor %s: wrong dtype or shape", cterp_arch_name(arch), want[n]);
    }
    CHECK_MSG(st->n_tensors == n, "%s: %d tensors on disk, SAELens's module has %d", cterp_arch_name(arch),
              st->n_tensors, n);
    // sorted by name, as SAELens's writer (safetensors save_file) puts them
    for (int i = 1; i < st->n_tensors; i++) CHECK(strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0);
}

static void test_round_trips(void) {
    const int64_t D = 24, N = 40;
    cterp_arch archs[6] = {CTERP_ARCH_STANDARD, CTERP_ARCH_TOPK,       CTERP_ARCH_JUMPRELU,
                           CTERP_ARCH_GATED,    CTERP_ARCH_TRANSCODER, CTERP_ARCH_SKIP_TRANSCODER};
    for (int a = 0; a < 6; a++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/rt_%s/nested", root, cterp_arch_name(archs[a]));
        cterp_sae *s = make_sae(archs[a], D, N, 5, 100 + (uint64_t)a);
        CHECK(s != NULL);
        if (!s) continue;
        s->rescale_acts_by_decoder_norm = archs[a] == CTERP_ARCH_TOPK;
        float dens[40];
        for (int i = 0; i < N; i++) dens[i] = -1.0f - 0.1f * (float)i;
        CHECK_OK(cterp_sae_save(s, dir, a == 2 ? dens : NULL)); // creates the missing dirs
        cterp_sae *l = (cterp_sae *)1;
        CHECK_OK(cterp_sae_load(dir, &l));
        if (l && l != (cterp_sae *)1) {
            check_same(s, l);
            // and they compute the same thing
            float x[2 * 24], f1[2 * 40], f2[2 * 40];
            for (int i = 0; i < 2 * D; i++) x[i] = (float)(i % 7) - 3.0f;
            CHECK_OK(cterp_sae_encode(s, x, 2, f1));
            CHECK_OK(cterp_sae_encode(l, x, 2, f2));
            CHECK(!memcmp(f1, f2, sizeof f1));
            float y1[2 * 24], y2[2 * 24];
            CHECK_OK(cterp_sae_forward(s, x, 2, y1));
            CHECK_OK(cterp_sae_forward(l, x, 2, y2));
            CHECK(!memcmp(y1, y2, 2 * (size_t)s->d_out * sizeof(float)));
            cterp_sae_free(l);
        }
        check_cfg(dir, s);
        // on disk: W_enc is (D, N), element [d][i] is latent i's encoder weight for input d
        char *wp = file_join(dir, "sae_weights.safetensors");
        st_file st;
        CHECK_OK(st_open(&st, wp));
        const st_tensor *t = st_find(&st, "W_enc");
        CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == D && t->shape[1] == N);
        int ok = t != NULL;
        for (int64_t d = 0; ok && d < D; d += 5)
            for (int64_t i = 0; i < N; i += 3) {
                float v;
                memcpy(&v, t->data + 4 * (size_t)(d * N + i), 4);
                ok &= v == s->W_enc[i * D + d];
            }
        CHECK_MSG(ok, "W_enc on disk is not the transpose of the (N, D) layout");
        check_tensor_names(&st, archs[a], D, s->d_out, N);
        st_close(&st);
        free(wp);
        char *sp = file_join(dir, "sparsity.safetensors");
        if (a == 2) {
            float got[40];
            CHECK_OK(st_open(&st, sp));
            CHECK_OK(st_read_f32(&st, "sparsity", got, 1, &N));
            CHECK(!memcmp(got, dens, sizeof dens));
            st_close(&st);
        } else {
            CHECK(!file_exists(sp));
        }
        free(sp);
        cterp_sae_free(s);
    }
}

// cfg.json fields SAELens allows that cterp only round-trips in part
static void test_meta_variants(void) {
    char dir[600];
    path_of(dir, sizeof dir, "meta");
    cterp_sae *s = make_sae(CTERP_ARCH_STANDARD, 4, 6, 0, 7);
    s->meta.hook_head_index = 3;
    s->meta.prepend_bos = 0;
    s->meta.exclude_special_tokens = 1;
    s->meta.disable_concat_sequences = 1;
    s->apply_b_dec_to_input = 0;
    snprintf(s->meta.sequence_separator_token, sizeof s->meta.sequence_separator_token, "50256");
    snprintf(s->normalize_activations, sizeof s->normalize_activations, "layer_norm");
    CHECK_OK(cterp_sae_save(s, dir, NULL));
    cJSON *c = read_json(dir, "cfg.json");
    const cJSON *m = get(c, "metadata");
    CHECK(is_num(get(m, "hook_head_index"), 3));
    CHECK(is_num(get(m, "sequence_separator_token"), 50256)); // a token id is a number
    CHECK(is_str(get(c, "normalize_activations"), "layer_norm"));
    cJSON_Delete(c);
    cterp_sae *l = NULL;
    CHECK_OK(cterp_sae_load(dir, &l));
    if (l) check_same(s, l);
    cterp_sae_free(l);
    s->meta.sequence_separator_token[0] = 0; // none -> null
    CHECK_OK(cterp_sae_save(s, dir, NULL));
    c = read_json(dir, "cfg.json");
    CHECK(cJSON_IsNull(get(get(c, "metadata"), "sequence_separator_token")));
    cJSON_Delete(c);
    CHECK_OK(cterp_sae_load(dir, &l));
    if (l) check_same(s, l);
    cterp_sae_free(l);
    cterp_sae_free(s);
}

// Tensors of an SAELens directory written by hand in a given dtype (values exact in f16).
static void write_weights(const char *dir, st_dtype dt, int64_t D, int64_t N, int with_thr,
                          const float *scale) {
    size_t es = st_dtype_size(dt), nd = (size_t)(D * N);
    uint8_t *W_enc = malloc(nd * es), *W_dec = malloc(nd * es), *b_enc = malloc((size_t)N * es),
            *b_dec = malloc((size_t)D * es), *thr = malloc((size_t)N * es);
    // value of W_enc[d][i] = d + i/8, W_dec[i][d] = i - d/4, b_enc[i] = -i/2, b_dec[d] = d/16
    for (int64_t d = 0; d < D; d++)
        for (int64_t i = 0; i < N; i++) {
            float e = (float)d + (float)i / 8, w = (float)i - (float)d / 4;
            uint16_t he = dt == ST_F16 ? f32_to_f16(e) : f32_to_bf16(e);
            uint16_t hw = dt == ST_F16 ? f32_to_f16(w) : f32_to_bf16(w);
            if (dt == ST_F32) {
                memcpy(W_enc + 4 * (size_t)(d * N + i), &e, 4);
                memcpy(W_dec + 4 * (size_t)(i * D + d), &w, 4);
            } else {
                memcpy(W_enc + 2 * (size_t)(d * N + i), &he, 2);
                memcpy(W_dec + 2 * (size_t)(i * D + d), &hw, 2);
            }
        }
    for (int64_t i = 0; i < N; i++) {
        float b = -(float)i / 2, t = 0.25f;
        uint16_t hb = dt == ST_F16 ? f32_to_f16(b) : f32_to_bf16(b);
        uint16_t ht = dt == ST_F16 ? f32_to_f16(t) : f32_to_bf16(t);
        if (dt == ST_F32)
            memcpy(b_enc + 4 * i, &b, 4), memcpy(thr + 4 * i, &t, 4);
        else
            memcpy(b_enc + 2 * i, &hb, 2), memcpy(thr + 2 * i, &ht, 2);
    }
    for (int64_t d = 0; d < D; d++) {
        float b = (float)d / 16;
        uint16_t hb = dt == ST_F16 ? f32_to_f16(b) : f32_to_bf16(b);
        if (dt == ST_F32)
            memcpy(b_dec + 4 * d, &b, 4);
        else
            memcpy(b_dec + 2 * d, &hb, 2);
    }
    int64_t sDN[2] = {D, N}, sND[2] = {N, D};
    st_writer w;
    st_writer_init(&w);
    st_writer_add(&w, "W_enc", dt, 2, sDN, W_enc);
    st_writer_add(&w, "W_dec", dt, 2, sND, W_dec);
    st_writer_add(&w, "b_enc", dt, 1, &N, b_enc);
    st_writer_add(&w, "b_dec", dt, 1, &D, b_dec);
    if (with_thr) st_writer_add(&w, "threshold", dt, 1, &N, thr);
    if (scale) st_writer_add(&w, "scaling_factor", ST_F32, 1, &N, scale);
    file_mkdirs(dir);
    char *p = file_join(dir, "sae_weights.safetensors");
    CHECK_OK(st_write(&w, p));
    free(p);
    st_writer_free(&w);
    free(W_enc), free(W_dec), free(b_enc), free(b_dec), free(thr);
}

static void check_hand_values(const cterp_sae *s, float scale_row1) {
    int ok = 1;
    for (int64_t i = 0; i < s->d_sae; i++) {
        float sc = i == 1 ? scale_row1 : 1.0f;
        for (int64_t d = 0; d < s->d_in; d++) {
            ok &= s->W_enc[i * s->d_in + d] == (float)d + (float)i / 8;
            ok &= s->W_dec[i * s->d_in + d] == ((float)i - (float)d / 4) * sc;
        }
        ok &= s->b_enc[i] == -(float)i / 2;
    }
    for (int64_t d = 0; d < s->d_in; d++) ok &= s->b_dec[d] == (float)d / 16;
    CHECK_MSG(ok, "hand-written tensor values not read back exactly");
}

// A SAELens v5 topk SAE: flat cfg, architecture "standard" with activation_fn_str "topk"
static const char *v5_topk_cfg =
    "{\"architecture\": \"standard\", \"d_in\": 4, \"d_sae\": 6, \"activation_fn_str\": \"topk\", "
    "\"activation_fn_kwargs\": {\"k\": 2}, \"apply_b_dec_to_input\": true, "
    "\"finetuning_scaling_factor\": false, \"context_size\": 128, \"model_name\": \"gpt2-small\", "
    "\"hook_point\": \"blocks.0.hook_resid_pre\", \"hook_point_layer\": 0, "
    "\"hook_point_head_index\": null, \"prepend_bos\": true, \"dataset_path\": "
    "\"Skylion007/openwebtext\", \"dataset_trust_remote_code\": true, \"normalize_activations\": "
    "false, \"dtype\": \"torch.float32\", \"device\": \"cuda\", \"sae_lens_training_version\": "
    "\"3.12.1\", \"neuronpedia_id\": null, \"model_from_pretrained_kwargs\": {}, "
    "\"seqpos_slice\": [null]}";

static void test_saelens_v5(void) {
    char dir[600];
    path_of(dir, sizeof dir, "v5_topk");
    write_text(dir, "cfg.json", v5_topk_cfg);
    write_weights(dir, ST_F16, 4, 6, 0, NULL);
    cterp_sae *s = NULL;
    CHECK_OK(cterp_sae_load(dir, &s));
    if (s) {
        CHECK(s->arch == CTERP_ARCH_TOPK && s->k == 2 && s->d_in == 4 && s->d_sae == 6);
        CHECK(s->rescale_acts_by_decoder_norm == 0 && s->apply_b_dec_to_input == 1);
        CHECK(!strcmp(s->normalize_activations, "none"));
        CHECK(!strcmp(s->meta.hook_name, "blocks.0.hook_resid_pre"));
        CHECK(!strcmp(s->meta.model_name, "gpt2-small") && s->meta.context_size == 128);
        CHECK(s->meta.hook_head_index == -1 && s->meta.prepend_bos == 1);
        CHECK(!strcmp(s->meta.sequence_separator_token, "bos")); // v5 had no such key
        check_hand_values(s, 1.0f);
    }
    cterp_sae_free(s);

    // v5 standard: no architecture key, activation_fn_str relu, boolean normalize_activations,
    // bf16 tensors and a legacy scaling_factor that is folded into W_dec
    path_of(dir, sizeof dir, "v5_relu");
    write_text(dir, "cfg.json",
               "{\"d_in\": 4, \"d_sae\": 6, \"activation_fn_str\": \"relu\", \"hook_point\": "
               "\"blocks.2.attn.hook_z\", \"hook_point_head_index\": 5, \"normalize_activations\": "
               "true, \"dtype\": \"bfloat16\", \"training_tokens\": 2000000000}");
    float scale[6] = {1, 2, 1, 1, 1, 1};
    write_weights(dir, ST_BF16, 4, 6, 0, scale);
    CHECK_OK(cterp_sae_load(dir, &s));
    if (s) {
        CHECK(s->arch == CTERP_ARCH_STANDARD);
        CHECK(!strcmp(s->normalize_activations, "expected_average_only_in"));
        CHECK(s->meta.hook_head_index == 5 && s->meta.training_tokens == 2000000000);
        check_hand_values(s, 2.0f);
    }
    cterp_sae_free(s);

    // SAELens v6 jumprelu as written by SAELens (f32), with v6 metadata variants
    path_of(dir, sizeof dir, "v6_jumprelu");
    write_text(
        dir, "cfg.json",
        "{\"d_in\":4,\"d_sae\":6,\"dtype\":\"float32\",\"device\":\"cpu\","
        "\"apply_b_dec_to_input\":false,\"normalize_activations\":\"none\","
        "\"reshape_activations\":\"hook_z\",\"architecture\":\"jumprelu\","
        "\"metadata\":{\"sae_lens_version\":\"6.18.0\",\"sae_lens_training_version\":"
        "\"6.18.0\",\"model_name\":\"gemma-2-2b\",\"hook_name\":\"blocks.12.hook_resid_post\","
        "\"hook_head_index\":null,\"context_size\":1024,\"prepend_bos\":true,"
        "\"seqpos_slice\":[null],\"dataset_path\":\"x\",\"exclude_special_tokens\":[0,1,2],"
        "\"sequence_separator_token\":null,\"neuronpedia_id\":\"gemma-2-2b/12-res\"}}");
    write_weights(dir, ST_F32, 4, 6, 1, NULL);
    CHECK_OK(cterp_sae_load(dir, &s));
    if (s) {
        CHECK(s->arch == CTERP_ARCH_JUMPRELU && s->threshold && s->threshold[5] == 0.25f);
        CHECK(s->apply_b_dec_to_input == 0 && s->meta.exclude_special_tokens == 1);
        CHECK(s->meta.sequence_separator_token[0] == 0);
        CHECK(!strcmp(s->meta.model_name, "gemma-2-2b"));
        check_hand_values(s, 1.0f);
    }
    cterp_sae_free(s);
}

// Loading `dir` fails, *out stays NULL, and the message contains every string of `want`.
static void expect_load_fails(const char *dir, const char *w1, const char *w2, const char *w3) {
    cterp_sae *s = (cterp_sae *)1; // not NULL: the loader must clear it
    cterp_clear_error();
    cterp_status st = cterp_sae_load(dir, &s);
    CHECK_MSG(st != CTERP_OK, "%s loaded", dir);
    CHECK(s == NULL);
    const char *m = cterp_last_error();
    const char *w[3] = {w1, w2, w3};
    for (int i = 0; i < 3; i++)
        if (w[i]) CHECK_MSG(strstr(m, w[i]) != NULL, "message '%s' lacks '%s'", m, w[i]);
    if (st == CTERP_OK && s != (cterp_sae *)1) cterp_sae_free(s);
}

static void test_errors(void) {
    char dir[600];
    const char *good = "{\"d_in\":4,\"d_sae\":6,\"architecture\":\"standard\"}";
    struct {
        const char *cfg;
        const char *w1, *w2;
    } cases[] = {
        {"{\"d_sae\":6}", "missing key 'd_in'", NULL},
        {"{\"d_in\":\"abc\",\"d_sae\":6}", "d_in: expected an integer, found \"abc\"", NULL},
        {"{\"d_in\":4.5,\"d_sae\":6}", "d_in: expected an integer", NULL},
        {"{\"d_in\":0,\"d_sae\":6}", "d_in: expected 1..", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":\"foo\"}", "architecture 'foo' is unknown",
         NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":\"clt\"}", "architecture 'clt'",
         "not supported"},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":\"jumprelu_transcoder\",\"d_out\":4}",
         "architecture 'jumprelu_transcoder'", "not supported"},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":\"topk\",\"k\":2,\"d_out\":4}",
         "has 'd_out' with architecture 'topk'", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":\"batchtopk\",\"k\":2}", "batchtopk",
         "training checkpoint"},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":7}", "architecture: expected a string", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"dtype\":\"int8\"}", "dtype 'int8'", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":\"topk\"}", "missing key 'k'", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"architecture\":\"topk\",\"k\":7}", "k: expected 1..6", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"activation_fn_str\":\"tanh-relu\"}",
         "activation_fn 'tanh-relu'", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"normalize_activations\":\"sqrt\"}",
         "normalize_activations 'sqrt'", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"apply_b_dec_to_input\":\"yes\"}",
         "apply_b_dec_to_input: expected true or false", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"metadata\":{\"context_size\":\"long\"}}", "context_size", NULL},
        {"{\"d_in\":4,\"d_sae\":6,\"reshape_activations\":\"hook_q\"}", "reshape_activations",
         NULL},
        {"{\"d_in\":4,\"d_sae\":6", "not valid JSON", NULL},
        {"\x01\x02 garbage", "not valid JSON", NULL},
        {"[4, 6]", "expected a JSON object", NULL},
        {"{\"d_in\":4,\"d_sae\":6} trailing", "unexpected bytes", NULL},
        {"", "not valid JSON", NULL},
    };
    path_of(dir, sizeof dir, "bad_cfg");
    write_weights(dir, ST_F32, 4, 6, 0, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(dir, "cfg.json", cases[i].cfg);
        expect_load_fails(dir, "bad_cfg/cfg.json", cases[i].w1, cases[i].w2);
    }
    // cfg.json disagrees with the tensors
    write_text(dir, "cfg.json", "{\"d_in\":4,\"d_sae\":8}");
    expect_load_fails(dir, "sae_weights.safetensors", "tensor W_enc has shape [4, 6]",
                      "cfg.json (d_in 4, d_sae 8) implies [4, 8]");
    write_text(dir, "cfg.json", "{\"d_in\":4,\"d_sae\":6,\"architecture\":\"jumprelu\"}");
    expect_load_fails(dir, "sae_weights.safetensors", "tensor threshold: not found", NULL);
    // W_dec alone has the wrong shape
    {
        float w[64] = {0};
        int64_t s46[2] = {4, 6}, s38[2] = {3, 4}, s6 = 6, s4 = 4;
        st_writer wr;
        st_writer_init(&wr);
        st_writer_add(&wr, "W_enc", ST_F32, 2, s46, w);
        st_writer_add(&wr, "W_dec", ST_F32, 2, s38, w);
        st_writer_add(&wr, "b_enc", ST_F32, 1, &s6, w);
        st_writer_add(&wr, "b_dec", ST_F32, 1, &s4, w);
        char *p = file_join(dir, "sae_weights.safetensors");
        st_write(&wr, p);
        write_text(dir, "cfg.json", good);
        expect_load_fails(dir, "tensor W_dec has shape [3, 4]", "d_sae 6", "[6, 4]");
        // an integer W_enc
        st_writer_free(&wr);
        st_writer_init(&wr);
        st_writer_add(&wr, "W_enc", ST_I32, 2, s46, w);
        int64_t s64[2] = {6, 4};
        st_writer_add(&wr, "W_dec", ST_F32, 2, s64, w);
        st_writer_add(&wr, "b_enc", ST_F32, 1, &s6, w);
        st_writer_add(&wr, "b_dec", ST_F32, 1, &s4, w);
        st_write(&wr, p);
        expect_load_fails(dir, "tensor W_enc", "dtype I32", NULL);
        st_writer_free(&wr);
        // truncated weights
        write_weights(dir, ST_F32, 4, 6, 0, NULL);
        char *buf = NULL;
        size_t n = 0;
        file_read_all(p, &buf, &n);
        FILE *f = fopen(p, "wb");
        if (f) {
            fwrite(buf, 1, n - 5, f);
            fclose(f);
        }
        free(buf);
        expect_load_fails(dir, "sae_weights.safetensors", "past the end", NULL);
        // missing weights
        remove(p);
        expect_load_fails(dir, "sae_weights.safetensors", "cannot open", NULL);
        free(p);
    }
    // missing cfg.json, missing directory, a file instead of a directory
    path_of(dir, sizeof dir, "no_cfg");
    write_weights(dir, ST_F32, 4, 6, 0, NULL);
    expect_load_fails(dir, "no_cfg/cfg.json", "cannot open", "incomplete SAE directory");
    path_of(dir, sizeof dir, "does_not_exist");
    expect_load_fails(dir, "does_not_exist", "not a directory", NULL);
    CHECK(!file_exists(dir)); // loading creates nothing
    path_of(dir, sizeof dir, "no_cfg/sae_weights.safetensors");
    expect_load_fails(dir, "not a directory", NULL, NULL);
    CHECK(cterp_sae_load(dir, NULL) == CTERP_EINVAL);

    // save refuses what it cannot write
    cterp_sae *b = NULL;
    CHECK_OK(cterp_sae_create(&b, CTERP_ARCH_BATCHTOPK, 4, 6, 2));
    path_of(dir, sizeof dir, "btk");
    CHECK(cterp_sae_save(b, dir, NULL) == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), "batchtopk") != NULL);
    cterp_sae_free(b);
    path_of(dir, sizeof dir, "no_cfg/sae_weights.safetensors/sub"); // parent is a file
    cterp_sae *s = make_sae(CTERP_ARCH_STANDARD, 4, 6, 0, 1);
    CHECK(cterp_sae_save(s, dir, NULL) != CTERP_OK);
    cterp_sae_free(s);
}

static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".new")) n++;
    closedir(d);
    return n;
}

static void test_overwrite(void) {
    char dir[600];
    path_of(dir, sizeof dir, "over");
    cterp_sae *a = make_sae(CTERP_ARCH_JUMPRELU, 8, 16, 0, 11);
    cterp_sae *b = make_sae(CTERP_ARCH_TOPK, 6, 10, 3, 12);
    float dens[16] = {0};
    CHECK_OK(cterp_sae_save(a, dir, dens));
    CHECK_OK(cterp_sae_save(b, dir, NULL)); // replaces every file; the stale sparsity goes
    char *sp = file_join(dir, "sparsity.safetensors");
    CHECK(!file_exists(sp));
    free(sp);
    CHECK(count_tmp_files(dir) == 0);
    cterp_sae *l = NULL;
    CHECK_OK(cterp_sae_load(dir, &l));
    if (l) check_same(b, l);
    cterp_sae_free(l);
    // a save that fails (its temporary name is taken by a directory) leaves the old SAE whole
    char tmpname[700];
    snprintf(tmpname, sizeof tmpname, "%s/sae_weights.safetensors.new.tmp.%d", dir, (int)getpid());
    CHECK_OK(file_mkdirs(tmpname));
    CHECK(cterp_sae_save(a, dir, dens) != CTERP_OK);
    CHECK(strstr(cterp_last_error(), "sae_weights.safetensors") != NULL);
    rmdir(tmpname);
    CHECK(count_tmp_files(dir) == 0);
    CHECK_OK(cterp_sae_load(dir, &l));
    if (l) check_same(b, l);
    cterp_sae_free(l);
    cterp_sae_free(a);
    cterp_sae_free(b);
}

// A gated directory as SAELens writes it, by hand (b_gate, b_mag, r_mag; no b_enc): loaded
// values land where they belong and the SAE computes SAELens's encode; one without r_mag or with
// a b_enc instead of b_gate fails naming the tensor.
static void test_gated_hand(void) {
    const int64_t D = 3, N = 4;
    float W_enc[3 * 4], W_dec[4 * 3], b_dec[3] = {0.5f, -0.25f, 0.125f};
    float b_gate[4] = {0.1f, -5.0f, 0.0f, 0.3f}, b_mag[4] = {0.2f, 0.0f, -4.0f, -0.1f};
    float r_mag[4] = {0.0f, 0.5f, -1.0f, 0.25f};
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 4; i++) W_enc[d * 4 + i] = 0.25f * (float)(d + 1) - 0.125f * (float)i;
    for (int q = 0; q < 12; q++) W_dec[q] = (float)q / 8 - 0.5f;
    char dir[600];
    const int64_t sDN[2] = {D, N}, sND[2] = {N, D};
    for (int variant = 0; variant < 3; variant++) {
        snprintf(dir, sizeof dir, "%s/gated_hand_%d", root, variant);
        write_text(dir, "cfg.json",
                   "{\"d_in\":3,\"d_sae\":4,\"dtype\":\"float32\",\"device\":\"cpu\","
                   "\"apply_b_dec_to_input\":true,\"normalize_activations\":\"none\","
                   "\"reshape_activations\":\"none\",\"architecture\":\"gated\","
                   "\"metadata\":{\"sae_lens_version\":\"6.18.0\",\"hook_name\":\"blocks.1.hook_resid_post\"}}");
        st_writer w;
        st_writer_init(&w);
        st_writer_add(&w, "W_dec", ST_F32, 2, sND, W_dec);
        st_writer_add(&w, "W_enc", ST_F32, 2, sDN, W_enc);
        st_writer_add(&w, "b_dec", ST_F32, 1, &D, b_dec);
        st_writer_add(&w, variant == 2 ? "b_enc" : "b_gate", ST_F32, 1, &N, b_gate);
        st_writer_add(&w, "b_mag", ST_F32, 1, &N, b_mag);
        if (variant != 1) st_writer_add(&w, "r_mag", ST_F32, 1, &N, r_mag);
        char *p = file_join(dir, "sae_weights.safetensors");
        CHECK_OK(st_write(&w, p));
        free(p);
        st_writer_free(&w);
        if (variant == 1) {
            expect_load_fails(dir, "r_mag", "gated", "not found");
            continue;
        }
        if (variant == 2) {
            expect_load_fails(dir, "b_gate", "gated", "not found");
            continue;
        }
        cterp_sae *s = NULL;
        CHECK_OK(cterp_sae_load(dir, &s));
        if (!s) continue;
        CHECK(s->arch == CTERP_ARCH_GATED && s->r_mag && s->b_mag && !s->threshold);
        CHECK(!memcmp(s->b_enc, b_gate, sizeof b_gate) && !memcmp(s->r_mag, r_mag, sizeof r_mag) &&
              !memcmp(s->b_mag, b_mag, sizeof b_mag));
        // SAELens GatedSAE.encode: 1[xc W_enc + b_gate > 0] * ReLU(xc (W_enc * exp(r_mag)) + b_mag)
        const float x[2 * 3] = {1.0f, 2.0f, -1.0f, -0.5f, 0.25f, 3.0f};
        float f[2 * 4], xh[2 * 3];
        CHECK_OK(cterp_sae_encode(s, x, 2, f));
        int bad = 0, on = 0, off = 0;
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < 4; i++) {
                double pi = b_gate[i], mag = b_mag[i];
                for (int d = 0; d < 3; d++) {
                    double xc = (double)x[t * 3 + d] - b_dec[d];
                    pi += xc * W_enc[d * 4 + i];
                    mag += xc * W_enc[d * 4 + i] * exp(r_mag[i]);
                }
                double want = pi > 0 && mag > 0 ? mag : 0;
                bad += fabs(f[t * 4 + i] - want) > 1e-5 * (1 + fabs(want));
                on += want > 0, off += want == 0;
            }
        CHECK_MSG(bad == 0, "gated encode differs from SAELens's formula in %d values", bad);
        CHECK_MSG(on > 0 && off > 0, "gated hand case: %d on, %d off (want both)", on, off);
        CHECK_OK(cterp_sae_decode(s, f, 2, xh));
        for (int d = 0; d < 3; d++) {
            double want = b_dec[d];
            for (int i = 0; i < 4; i++) want += (double)f[i] * W_dec[i * 3 + d];
            CHECK_CLOSE(xh[d], want, 1e-5, 1e-5);
        }
        cterp_sae_free(s);
    }
}

// A skip_transcoder directory as SAELens writes it (d_in 3 -> d_out 2, W_skip [d_out, d_in]):
// forward is SAELens's ReLU(x W_enc + b_enc) W_dec + b_dec + x W_skip^T with no b_dec on the input;
// a transcoder config without d_out, or with apply_b_dec_to_input, or without W_skip, is refused.
static void test_transcoder_hand(void) {
    const int64_t D = 3, DO = 2, N = 4;
    float W_enc[3 * 4], W_dec[4 * 2], b_enc[4] = {0.1f, -0.2f, 0.3f, -5.0f}, b_dec[2] = {0.5f, -0.25f};
    float W_skip[2 * 3] = {0.5f, -1.0f, 0.25f, 2.0f, 0.0f, -0.75f};
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 4; i++) W_enc[d * 4 + i] = 0.25f * (float)(d + 1) - 0.125f * (float)i;
    for (int q = 0; q < 8; q++) W_dec[q] = (float)q / 8 - 0.5f;
    const int64_t sDN[2] = {D, N}, sND[2] = {N, DO}, sSk[2] = {DO, D};
    const char *cfgs[4] = {
        "{\"d_in\":3,\"d_sae\":4,\"d_out\":2,\"apply_b_dec_to_input\":false,\"architecture\":\"skip_transcoder\"}",
        "{\"d_in\":3,\"d_sae\":4,\"apply_b_dec_to_input\":false,\"architecture\":\"skip_transcoder\"}",
        "{\"d_in\":3,\"d_sae\":4,\"d_out\":2,\"apply_b_dec_to_input\":true,\"architecture\":\"transcoder\"}",
        "{\"d_in\":3,\"d_sae\":4,\"d_out\":2,\"architecture\":\"skip_transcoder\"}"};
    for (int variant = 0; variant < 4; variant++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/transcoder_hand_%d", root, variant);
        write_text(dir, "cfg.json", cfgs[variant]);
        st_writer w;
        st_writer_init(&w);
        st_writer_add(&w, "W_dec", ST_F32, 2, sND, W_dec);
        st_writer_add(&w, "W_enc", ST_F32, 2, sDN, W_enc);
        if (variant != 3) st_writer_add(&w, "W_skip", ST_F32, 2, sSk, W_skip);
        st_writer_add(&w, "b_dec", ST_F32, 1, &DO, b_dec);
        st_writer_add(&w, "b_enc", ST_F32, 1, &N, b_enc);
        char *p = file_join(dir, "sae_weights.safetensors");
        CHECK_OK(st_write(&w, p));
        free(p);
        st_writer_free(&w);
        if (variant == 1) expect_load_fails(dir, "missing key 'd_out'", NULL, NULL);
        if (variant == 2) expect_load_fails(dir, "apply_b_dec_to_input: got true", "transcoder", NULL);
        if (variant == 3) expect_load_fails(dir, "W_skip", "not found", "skip_transcoder");
        if (variant) continue;
        cterp_sae *s = NULL;
        CHECK_OK(cterp_sae_load(dir, &s));
        if (!s) continue;
        CHECK(s->arch == CTERP_ARCH_SKIP_TRANSCODER && s->d_out == 2 && !s->apply_b_dec_to_input);
        const float x[2 * 3] = {1.0f, 2.0f, -1.0f, -0.5f, 0.25f, 3.0f};
        float y[2 * 2];
        CHECK_OK(cterp_sae_forward(s, x, 2, y));
        int on = 0;
        for (int t = 0; t < 2; t++)
            for (int o = 0; o < 2; o++) {
                double want = b_dec[o];
                for (int i = 0; i < 4; i++) {
                    double h = b_enc[i];
                    for (int d = 0; d < 3; d++) h += (double)x[t * 3 + d] * W_enc[d * 4 + i];
                    if (h > 0) want += h * W_dec[i * 2 + o], on += o == 0;
                }
                for (int d = 0; d < 3; d++) want += (double)x[t * 3 + d] * W_skip[o * 3 + d];
                CHECK_CLOSE(y[t * 2 + o], want, 1e-5, 1e-5);
            }
        CHECK_MSG(on > 0 && on < 8, "transcoder hand case: %d of 8 latents on (want some, not all)", on);
        char again[600];
        snprintf(again, sizeof again, "%s/transcoder_again", root);
        CHECK_OK(cterp_sae_save(s, again, NULL));
        cterp_sae *l = NULL;
        CHECK_OK(cterp_sae_load(again, &l));
        if (l) check_same(s, l);
        cterp_sae_free(l);
        cterp_sae_free(s);
    }
}

// crosscoder: cterp's own format (SAELens has none): cfg.json d_in per layer, n_layers,
// hook_names; W_enc (L*D, N), W_dec (N, L*D), b_dec (L*D)
static void test_crosscoder(void) {
    enum { L = 3, DL = 4, N = 10 };
    cterp_sae *s = NULL;
    CHECK_OK(cterp_sae_create_crosscoder(&s, L, DL, N));
    if (!s) return;
    rng_t r;
    rng_seed(&r, 77);
    for (size_t i = 0; i < s->n_params; i++) s->params[i] = rng_normal(&r);
    snprintf(s->meta.model_name, sizeof s->meta.model_name, "gpt2");
    snprintf(s->meta.hook_name, sizeof s->meta.hook_name,
             "blocks.2.hook_resid_post,blocks.3.hook_resid_post,blocks.4.hook_resid_post");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/rt_crosscoder", root);
    CHECK_OK(cterp_sae_save(s, dir, NULL));
    cJSON *cfg = read_json(dir, "cfg.json");
    CHECK(cfg && is_str(get(cfg, "architecture"), "crosscoder") && is_num(get(cfg, "d_in"), DL) &&
          is_num(get(cfg, "n_layers"), L) && cJSON_IsFalse(get(cfg, "apply_b_dec_to_input")));
    const cJSON *hn = cfg ? get(cfg, "hook_names") : NULL;
    CHECK(cJSON_IsArray(hn) && cJSON_GetArraySize(hn) == L &&
          is_str(cJSON_GetArrayItem(hn, 1), "blocks.3.hook_resid_post"));
    cJSON_Delete(cfg);
    char *wp = file_join(dir, "sae_weights.safetensors");
    st_file st;
    CHECK_OK(st_open(&st, wp));
    const st_tensor *t = st_find(&st, "W_enc");
    CHECK(t && t->ndim == 2 && t->shape[0] == L * DL && t->shape[1] == N);
    t = st_find(&st, "W_dec");
    CHECK(t && t->ndim == 2 && t->shape[0] == N && t->shape[1] == L * DL);
    t = st_find(&st, "b_dec");
    CHECK(t && t->ndim == 1 && t->shape[0] == L * DL);
    st_close(&st);
    free(wp);
    cterp_sae *l = NULL;
    CHECK_OK(cterp_sae_load(dir, &l));
    if (l) {
        check_same(s, l);
        CHECK(l->n_layers == L && l->arch == CTERP_ARCH_CROSSCODER);
        float x[2 * L * DL], y1[2 * L * DL], y2[2 * L * DL];
        for (int i = 0; i < 2 * L * DL; i++) x[i] = (float)(i % 5) - 2.0f;
        CHECK_OK(cterp_sae_forward(s, x, 2, y1));
        CHECK_OK(cterp_sae_forward(l, x, 2, y2));
        CHECK(!memcmp(y1, y2, sizeof y1));
        cterp_sae_free(l);
    }
    // a wrong n_layers (the tensors then disagree) and a hook count that is not n_layers fail
    char *cp = file_join(dir, "cfg.json"), *txt = NULL;
    size_t n;
    CHECK_OK(file_read_all(cp, &txt, &n));
    cJSON *j = txt ? cJSON_Parse(txt) : NULL;
    if (j) {
        cJSON_ReplaceItemInObject(j, "n_layers", cJSON_CreateNumber(2));
        char *out = cJSON_Print(j);
        write_text(dir, "cfg.json", out);
        l = (cterp_sae *)1;
        CHECK(cterp_sae_load(dir, &l) == CTERP_EFORMAT && l == NULL);
        cJSON_ReplaceItemInObject(j, "n_layers", cJSON_CreateNumber(L));
        cJSON_DeleteItemFromArray(cJSON_GetObjectItemCaseSensitive(j, "hook_names"), 0);
        free(out);
        out = cJSON_Print(j);
        write_text(dir, "cfg.json", out);
        CHECK(cterp_sae_load(dir, &l) == CTERP_EFORMAT && l == NULL);
        free(out);
        cJSON_Delete(j);
    }
    free(txt);
    free(cp);
    cterp_sae_free(s);
}

int main(void) {
    const char *d = test_tmpdir("saedir");
    if (!d) return 1;
    snprintf(root, sizeof root, "%s", d);
    test_round_trips();
    test_meta_variants();
    test_saelens_v5();
    test_errors();
    test_gated_hand();
    test_transcoder_hand();
    test_crosscoder();
    test_overwrite();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
    return test_done();
}
