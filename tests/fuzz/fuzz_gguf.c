// Fuzz target: GGUF bytes -> the reader (header, metadata, tensor infos, alignment, names) through
// gguf_open_buffer, every key through the typed getters, the vocabulary through the tokenizer
// (tokenize + detokenize a fixed text), then, when it parses, the model loader (dims, tensor
// shapes and types, its tokenizer) and a 2-token forward with logits and a hook.
#include "cterp/model.h"
#include "fuzz.h"
#include "io/gguf.h"
#include "synth_arch.h"
#include "synth_model.h"
#include "tokenizer/tokenizer_gguf.h"

static char *model_path;

static const char TEXT[] = "Once upon a time, Hello 12345 \xe2\x96\x81\xff<s>\n";

// A finished writer's bytes as a seed file; frees the writer.
static void seed_writer(const char *name, gguf_writer *w) {
    uint8_t *buf;
    size_t n;
    if (gguf_writer_buffer(w, &buf, &n)) abort();
    fuzz_seed(name, buf, n);
    free(buf);
    gguf_writer_free(w);
}

static void seed_model(const char *name, const synth_cfg *c, int vocab) {
    gguf_writer *w = gguf_writer_new(0);
    synth_add(w, c);
    if (vocab == 1) synth_vocab_spm(w);
    if (vocab == 2) synth_vocab_bpe(w, "gpt-2");
    if (vocab == 3) synth_vocab_bpe(w, "llama-bpe");
    seed_writer(name, w);
}

// The synthetic model with stories260K's own SentencePiece vocabulary (512 tokens) copied in.
static void seed_stories_vocab(const char *name, synth_cfg c) {
    const char *td = fuzz_testdata();
    if (!td) return;
    char *p = file_join(td, "models/stories260K.gguf");
    gguf_file *g;
    if (!p || gguf_open(&g, p)) {
        free(p);
        return;
    }
    free(p);
    const gguf_kv *toks, *scores, *types;
    if (gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks) ||
        gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_F32, &scores) ||
        gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_I32, &types)) {
        gguf_close(g);
        return;
    }
    char **strs = malloc(toks->n * sizeof *strs);
    for (uint64_t i = 0; i < toks->n; i++) {
        strs[i] = malloc(toks->strs[i].len + 1);
        gguf_str_copy(toks->strs[i], strs[i], toks->strs[i].len + 1);
    }
    gguf_writer *w = gguf_writer_new(0);
    c.V = (int)toks->n;
    synth_add(w, &c);
    gguf_writer_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, toks->n);
    gguf_writer_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_F32, scores->val, scores->n);
    gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types->val, types->n);
    seed_writer(name, w);
    for (uint64_t i = 0; i < toks->n; i++) free(strs[i]);
    free(strs);
    gguf_close(g);
}

static void seed_files(void) {
    // {gpt2, L, D, H, Hkv, F, V, n_ctx, n_rot, rope_freqs, tied, type, seed}
    synth_cfg llama = {0, 1, 32, 2, 1, 64, 276, 16, 16, 0, 0, GGML_TYPE_Q8_0, 1, 0};
    seed_model("llama_q8_spm.gguf", &llama, 1);
    synth_cfg gpt2 = {1, 1, 32, 2, 2, 64, 264, 16, 0, 0, 0, GGML_TYPE_Q4_0, 2, 0};
    seed_model("gpt2_q4_bpe.gguf", &gpt2, 2);
    synth_cfg gqa = {0, 1, 32, 4, 2, 32, 264, 8, 8, 1, 1, GGML_TYPE_F16, 3, 0};
    seed_model("llama_f16_gqa_tied_llamabpe.gguf", &gqa, 3);
    synth_cfg bare = {0, 2, 16, 2, 2, 16, 8, 4, 8, 0, 0, GGML_TYPE_BF16, 4, 0};
    seed_model("llama_bf16_novocab.gguf", &bare, 0);
    synth_cfg f32 = {1, 1, 8, 1, 1, 8, 8, 4, 0, 0, 1, GGML_TYPE_F32, 5, 0};
    seed_model("gpt2_f32_tied.gguf", &f32, 0);
    seed_stories_vocab("llama_q8_stories_vocab.gguf", llama);
    // every family of test_arch, shrunk (2 layers, d_model 32) to keep the seeds small
    for (size_t i = 0; i < sizeof synth_arch_variants / sizeof synth_arch_variants[0]; i++) {
        synth_arch_cfg a = synth_arch_variants[i];
        a.L = a.L < 2 ? a.L : 2, a.D = 32, a.H = 2, a.Hkv = a.Hkv < a.H ? 1 : 2, a.hd = 0, a.F = 64;
        a.n_ctx = 16;
        if (a.n_rot > 16) a.n_rot = 16;
        gguf_writer *aw = gguf_writer_new(0);
        synth_arch_add(aw, &a);
        char nm[64];
        snprintf(nm, sizeof nm, "arch_%s.gguf", a.name);
        seed_writer(nm, aw);
    }
    gguf_writer *w = gguf_writer_new(64); // metadata of every type, no tensors
    gguf_writer_u32(w, "general.alignment", 64);
    gguf_writer_i32(w, "a.i32", -5);
    gguf_writer_f32(w, "a.f32", 1.5f);
    gguf_writer_bool(w, "a.bool", 1);
    gguf_writer_str(w, "a.str", "text");
    double f64[3] = {1e300, -1, 0.5};
    gguf_writer_arr(w, "a.f64s", GGUF_TYPE_F64, f64, 3);
    const char *strs[2] = {"x", ""};
    gguf_writer_arr_str(w, "a.strs", strs, 2);
    seed_writer("metadata_only.gguf", w);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    model_path = fuzz_path("model.gguf");
    if (fuzz_seed_dir()) seed_files();
    return 0;
}

static void use_tokenizer(const cterp_tokenizer *t) {
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    size_t len;
    for (int special = 0; special < 2; special++) {
        if (cterp_tokenize(t, TEXT, sizeof TEXT - 1, special, special, &ids, &n)) continue;
        if (!cterp_detokenize(t, ids, n, special, &back, &len)) free(back);
        free(ids);
    }
    int32_t some[4] = {0, cterp_tokenizer_n_vocab(t) - 1, cterp_tokenizer_bos(t),
                       cterp_tokenizer_eos(t)};
    for (int i = 0; i < 4; i++)
        if (some[i] >= 0) cterp_tokenizer_token(t, some[i]), cterp_tokenizer_is_special(t, some[i]);
    if (!cterp_detokenize(t, some, 2, 1, &back, &len)) free(back);
}

static cterp_status hook_sum(const char *name, float *act, const int64_t *shape, int ndim,
                             void *user) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += act[i]; // reads every element the shape claims
    *(double *)user += s;
    return CTERP_OK;
}

static void use_model(cterp_model *m) {
    const cterp_model_config *c = cterp_model_config_of(m);
    char buf[128];
    int nh = cterp_model_n_hook_points(m);
    for (int i = 0; i < nh; i++) cterp_model_hook_point(m, i, buf, sizeof buf);
    int64_t bytes;
    cterp_model_fingerprint(m, &bytes);
    cterp_model_weight_type(m);
    if (cterp_model_tokenizer(m)) use_tokenizer(cterp_model_tokenizer(m));
    double sum = 0;
    cterp_hook hooks[2] = {{"blocks.0.hook_resid_post", hook_sum, &sum},
                           {"blocks.0.attn.hook_pattern", hook_sum, &sum}};
    int32_t tok[2] = {0, c->n_vocab > 1 ? 1 : 0};
    float *logits = malloc((size_t)c->n_vocab * 2 * sizeof(float));
    if (!logits) abort();
    cterp_forward_opts o = {hooks, 2, 0, logits, 0};
    fuzz_note("forward", cterp_model_forward(m, tok, 1, 2, &o));
    free(logits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *g;
    if (gguf_open_buffer(&g, data, size, "fuzz.gguf")) return 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        uint32_t u;
        int64_t v;
        float f;
        int b;
        gguf_str s;
        const gguf_kv *a;
        char tmp[64];
        gguf_get_u32(g, kv->key, &u);
        gguf_get_i64(g, kv->key, &v);
        gguf_get_f32(g, kv->key, &f);
        gguf_get_bool(g, kv->key, &b);
        if (!gguf_get_str(g, kv->key, &s)) gguf_str_copy(s, tmp, sizeof tmp);
        if (!gguf_get_arr(g, kv->key, -1, &a) && a->n > 0) {
            if (a->arr_type == GGUF_TYPE_STRING)
                gguf_str_copy(a->strs[a->n - 1], tmp, sizeof tmp);
            else
                gguf_arr_f64(a, a->n - 1), gguf_arr_i64(a, 0);
        }
        if (gguf_find_key(g, kv->key) != (int64_t)i) abort(); // keys are unique
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (gguf_find_tensor(g, g->tensors[i].name) != &g->tensors[i]) abort();
    cterp_tokenizer *t;
    if (gguf_has_key(g, "tokenizer.ggml.model") && !tokenizer_from_gguf(&t, g)) {
        use_tokenizer(t);
        cterp_tokenizer_free(t);
    }
    int is_model = gguf_has_key(g, "general.architecture") && g->n_tensors > 0;
    gguf_close(g);
    if (!is_model) return 0;
    fuzz_write(model_path, data, size); // the model loader takes a path
    cterp_model *m;
    cterp_status st = cterp_model_open(&m, model_path);
    fuzz_note("model", st);
    if (st) return 0;
    use_model(m);
    cterp_model_free(m);
    return 0;
}
