// Fuzz target: cfg.json text of an SAE directory -> cterp_sae_load (JSON, SAELens v6 and v5 keys,
// architecture, k, metadata, then the weights' shapes against d_in/d_sae) over fixed small valid
// weights written once: a topk/standard set, a jumprelu set with its threshold, and a SAELens v5
// style set (log_threshold, scaling_factor). A loaded SAE encodes and decodes a row.
#include "cterp/sae.h"
#include "fuzz.h"
#include "io/safetensors.h"

enum { D = 8, N = 16, NDIRS = 3 };
static char *dirs[NDIRS], *cfgs[NDIRS];

static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * (float)((int)(i * 37 % 19) - 9);
}

// cterp's own save of arch (its cfg.json is a seed), into dir.
static void save_sae(const char *dir, cterp_arch arch, const char *seed_name) {
    cterp_sae *s;
    if (cterp_sae_create(&s, arch, D, N, 4)) abort();
    fill(s->params, s->n_params, 0.01f);
    if (s->threshold) fill(s->threshold, N, 0.001f);
    strcpy(s->meta.model_name, "tiny");
    strcpy(s->meta.hook_name, "blocks.0.hook_resid_post");
    s->meta.context_size = 16;
    if (cterp_sae_save(s, dir, NULL)) abort();
    cterp_sae_free(s);
    char *p = file_join(dir, "cfg.json");
    fuzz_seed_file(seed_name, p);
    free(p);
}

// SAELens v5 names and extras: log_threshold instead of threshold, a scaling factor.
static void save_v5(const char *dir) {
    float W[D * N], b_enc[N], b_dec[D], lt[N], sf[N];
    fill(W, D * N, 0.01f), fill(b_enc, N, 0.1f), fill(b_dec, D, 0.1f), fill(lt, N, 0.1f);
    for (int i = 0; i < N; i++) sf[i] = 1.0f + 0.125f * (float)(i % 3);
    int64_t sDN[2] = {D, N}, sND[2] = {N, D}, sN = N, sD = D;
    st_writer w;
    st_writer_init(&w);
    st_writer_add(&w, "W_enc", ST_F32, 2, sDN, W);
    st_writer_add(&w, "W_dec", ST_F32, 2, sND, W);
    st_writer_add(&w, "b_enc", ST_F32, 1, &sN, b_enc);
    st_writer_add(&w, "b_dec", ST_F32, 1, &sD, b_dec);
    st_writer_add(&w, "log_threshold", ST_F32, 1, &sN, lt);
    st_writer_add(&w, "scaling_factor", ST_F32, 1, &sN, sf);
    char *p = file_join(dir, "sae_weights.safetensors");
    if (st_write(&w, p)) abort();
    free(p);
    st_writer_free(&w);
    static const char v5[] =
        "{\"d_in\": 8, \"d_sae\": 16, \"dtype\": \"torch.float32\", \"architecture\": \"jumprelu\", "
        "\"hook_point\": \"blocks.0.hook_resid_pre\", \"hook_point_head_index\": null, "
        "\"normalize_activations\": false, \"activation_fn_str\": \"relu\", \"context_size\": 128, "
        "\"prepend_bos\": true, \"exclude_special_tokens\": [0, 1], \"sequence_separator_token\": 2, "
        "\"training_tokens\": 1e6, \"finetuning_scaling_factor\": true}";
    fuzz_seed("v5_jumprelu.json", v5, sizeof v5 - 1);
    static const char v5topk[] =
        "{\"d_in\": 8, \"d_sae\": 16, \"activation_fn_str\": \"topk\", \"activation_fn_kwargs\": "
        "{\"k\": 3}, \"hook_name\": \"blocks.1.hook_mlp_out\", \"apply_b_dec_to_input\": false}";
    fuzz_seed("v5_topk.json", v5topk, sizeof v5topk - 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    static const char *const names[NDIRS] = {"topk", "jumprelu", "v5"};
    for (int i = 0; i < NDIRS; i++) {
        dirs[i] = fuzz_subdir(names[i]);
        cfgs[i] = file_join(dirs[i], "cfg.json");
    }
    save_sae(dirs[0], CTERP_ARCH_TOPK, "topk.json");
    save_sae(dirs[1], CTERP_ARCH_JUMPRELU, "jumprelu.json");
    save_v5(dirs[2]);
    if (fuzz_seed_dir()) { // standard: cterp's save of it over the topk weights
        char *sdir = fuzz_subdir("standard");
        save_sae(sdir, CTERP_ARCH_STANDARD, "standard.json");
        free(sdir);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int i = 0; i < NDIRS; i++) {
        fuzz_write(cfgs[i], data, size);
        cterp_sae *s;
        cterp_status st = cterp_sae_load(dirs[i], &s);
        fuzz_note(dirs[i], st);
        if (st) continue;
        float x[D], f[N], xh[D];
        fill(x, D, 0.3f);
        if (s->arch != CTERP_ARCH_BATCHTOPK && !cterp_sae_encode(s, x, 1, f))
            cterp_sae_decode(s, f, 1, xh);
        cterp_sae_free(s);
    }
    return 0;
}
