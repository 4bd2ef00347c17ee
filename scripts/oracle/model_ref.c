// Runs a GGUF model with llama.cpp (CPU, F32 KV cache, no flash attention) on a fixed prompt and
// writes what cterp's tests compare against: the logits of every prompt position, the residual
// stream after each block (llama.cpp's "l_out-L" = TransformerLens blocks.L.hook_resid_post),
// the residual between attention and MLP where the family names it ("ffn_inp-L" or "sa_out-L" =
// blocks.L.hook_resid_mid), and a greedy continuation.
//
//   model_ref MODEL.gguf OUT.ref N_GEN TOKEN...
//
// Built and run by scripts/oracle/model_refs.sh (compiled with oracle_cc from setup.sh), whose
// write_synth then checks OUT against its exact double-precision forward and merges both into the
// stored reference (version 2, described in write_synth.c and docs/model.md). OUT is
// llama.cpp's half alone, little-endian, version 1:
//   0  char[8]  "CTERPREF"
//   8  u32      version (1)
//   12 u32      T (prompt tokens)      16 u32 N_GEN      20 u32 V      24 u32 D      28 u32 L
//   32 u32      has_mid (1: resid_mid recorded for every layer)
//   36 f32      smallest top-1 minus top-2 logit over the N_GEN greedy steps
//   40 char[24] general.architecture, NUL-padded
//   64 i32 tokens[T], i32 generated[N_GEN], f32 logits[T][V], f32 resid_post[L][T][D],
//      f32 resid_mid[L][T][D] (when has_mid)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

enum { MAX_L = 64 };

typedef struct {
    int active; // record only during the prompt's forward
    int T, D, L;
    float *post, *mid; // (L, T, D)
    int got_post[MAX_L], got_mid[MAX_L];
    char mid_name[16]; // llama.cpp's name of resid_mid for this family, "" when none
} capture;

// "l_out-3" -> 3 when the prefix matches exactly
static int layer_of(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) || name[n] != '-') return -1;
    char *end;
    long l = strtol(name + n + 1, &end, 10);
    return *end || l < 0 || l >= MAX_L ? -1 : (int)l;
}

// Copies an F32 tensor of ne = (D, T) into out, row by row (views may be non-contiguous).
static int copy_rows(float *out, const struct ggml_tensor *t, int D, int T) {
    if (t->type != GGML_TYPE_F32 || t->ne[0] != D || t->ne[1] != T || t->ne[2] != 1 ||
        t->ne[3] != 1 || t->nb[0] != sizeof(float)) {
        fprintf(stderr, "model_ref: %s: unexpected shape [%lld %lld %lld %lld] or type %d\n",
                t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                (long long)t->ne[3], (int)t->type);
        return 0;
    }
    for (int i = 0; i < T; i++)
        ggml_backend_tensor_get((struct ggml_tensor *)t, out + (size_t)i * D, (size_t)i * t->nb[1],
                                (size_t)D * sizeof(float));
    return 1;
}

static bool cb_eval(struct ggml_tensor *t, bool ask, void *user) {
    capture *c = user;
    if (!c->active) return ask ? false : true;
    int lp = layer_of(t->name, "l_out"), lm = c->mid_name[0] ? layer_of(t->name, c->mid_name) : -1;
    if (ask) return (lp >= 0 && lp < c->L) || (lm >= 0 && lm < c->L);
    size_t off;
    if (lp >= 0 && lp < c->L) {
        off = (size_t)lp * c->T * c->D;
        c->got_post[lp] += copy_rows(c->post + off, t, c->D, c->T);
    } else if (lm >= 0 && lm < c->L) {
        off = (size_t)lm * c->T * c->D;
        c->got_mid[lm] += copy_rows(c->mid + off, t, c->D, c->T);
    }
    return true; // keep computing
}

static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    if (level >= GGML_LOG_LEVEL_WARN) fputs(text, stderr);
}

static int argmax2(const float *x, int V, float *margin) {
    int a = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[a]) a = i;
    float second = -INFINITY;
    for (int i = 0; i < V; i++)
        if (i != a && x[i] > second) second = x[i];
    *margin = x[a] - second;
    return a;
}

static int put(FILE *f, const void *p, size_t n) {
    return fwrite(p, 1, n, f) == n;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: model_ref MODEL.gguf OUT.ref N_GEN TOKEN...\n");
        return 2;
    }
    const char *model_path = argv[1], *out_path = argv[2];
    int n_gen = atoi(argv[3]), T = argc - 4;
    int32_t *tok = malloc((size_t)(T + n_gen) * sizeof *tok);
    for (int i = 0; i < T; i++) tok[i] = atoi(argv[4 + i]);

    llama_log_set(log_cb, NULL);
    const char *backends = getenv("ORACLE_BACKENDS");
    if (!backends) {
        fprintf(stderr, "model_ref: ORACLE_BACKENDS is not set (source scripts/oracle/setup.sh)\n");
        return 1;
    }
    ggml_backend_load_all_from_path(backends);
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) {
        fprintf(stderr, "model_ref: %s: llama.cpp could not load it\n", model_path);
        return 1;
    }
    char arch[24] = {0};
    llama_model_meta_val_str(model, "general.architecture", arch, sizeof arch);
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    int D = llama_model_n_embd(model), L = llama_model_n_layer(model);
    if (L > MAX_L) return 1;

    capture cap = {.T = T, .D = D, .L = L};
    // resid_mid: the sequential families name the sum resid_pre + attn_out; phi3 leaves it
    // unnamed and gptneox with the parallel residual has none (nor has TransformerLens)
    if (!strncmp(arch, "gemma", 5))
        strcpy(cap.mid_name, "sa_out");
    else if (strcmp(arch, "phi3") != 0)
        strcpy(cap.mid_name, "ffn_inp"); // gptneox: only when not parallel (checked below)
    cap.post = calloc((size_t)L * T * D, sizeof(float));
    cap.mid = calloc((size_t)L * T * D, sizeof(float));

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = cp.n_ubatch = 64;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.swa_full = true; // the whole window history stays in the cache; the mask still applies
    cp.cb_eval = cb_eval;
    cp.cb_eval_user_data = &cap;
    cp.no_perf = true;
    if (T + n_gen > (int)cp.n_ctx) return 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "model_ref: %s: no context\n", model_path);
        return 1;
    }

    struct llama_batch b = llama_batch_init(T, 0, 1);
    for (int i = 0; i < T; i++) {
        b.token[i] = tok[i], b.pos[i] = i, b.n_seq_id[i] = 1, b.seq_id[i][0] = 0, b.logits[i] = 1;
    }
    b.n_tokens = T;
    cap.active = 1;
    if (llama_decode(ctx, b)) {
        fprintf(stderr, "model_ref: %s: llama_decode failed\n", model_path);
        return 1;
    }
    cap.active = 0;
    float *logits = malloc((size_t)T * V * sizeof *logits);
    for (int i = 0; i < T; i++)
        memcpy(logits + (size_t)i * V, llama_get_logits_ith(ctx, i), (size_t)V * sizeof(float));

    int has_mid = cap.mid_name[0] != 0;
    for (int l = 0; l < L; l++) {
        if (cap.got_post[l] != 1) {
            fprintf(stderr, "model_ref: %s: l_out-%d seen %d times\n", model_path, l,
                    cap.got_post[l]);
            return 1;
        }
        if (has_mid && cap.got_mid[l] != 1) {
            if (!strcmp(arch, "gptneox") && cap.got_mid[l] == 0) {
                has_mid = 0; // parallel residual
                continue;
            }
            fprintf(stderr, "model_ref: %s: %s-%d seen %d times\n", model_path, cap.mid_name, l,
                    cap.got_mid[l]);
            return 1;
        }
    }

    // greedy continuation through the KV cache, one token per step
    float margin = INFINITY, m;
    int32_t *gen = tok + T;
    const float *last = logits + (size_t)(T - 1) * V;
    for (int s = 0; s < n_gen; s++) {
        gen[s] = argmax2(last, V, &m);
        if (m < margin) margin = m;
        if (s + 1 == n_gen) break;
        b.token[0] = gen[s], b.pos[0] = T + s, b.n_seq_id[0] = 1, b.seq_id[0][0] = 0,
        b.logits[0] = 1, b.n_tokens = 1;
        if (llama_decode(ctx, b)) {
            fprintf(stderr, "model_ref: %s: llama_decode (step %d) failed\n", model_path, s);
            return 1;
        }
        last = llama_get_logits_ith(ctx, 0);
    }

    FILE *f = fopen(out_path, "wb");
    if (!f) {
        perror(out_path);
        return 1;
    }
    uint32_t hdr[7] = {1,           (uint32_t)T, (uint32_t)n_gen,  (uint32_t)V,
                       (uint32_t)D, (uint32_t)L, (uint32_t)has_mid};
    int ok = put(f, "CTERPREF", 8) && put(f, hdr, sizeof hdr) && put(f, &margin, 4) &&
             put(f, arch, sizeof arch) && put(f, tok, (size_t)(T + n_gen) * 4) &&
             put(f, logits, (size_t)T * V * 4) && put(f, cap.post, (size_t)L * T * D * 4) &&
             (!has_mid || put(f, cap.mid, (size_t)L * T * D * 4));
    if (fclose(f) || !ok) {
        fprintf(stderr, "model_ref: %s: write failed\n", out_path);
        return 1;
    }
    printf("%s: %s L=%d D=%d V=%d resid_mid=%s, greedy margin %.3g, continuation", out_path, arch,
           L, D, V, has_mid ? cap.mid_name : "none", margin);
    for (int s = 0; s < n_gen; s++) printf(" %d", gen[s]);
    printf("\n");

    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(logits), free(cap.post), free(cap.mid), free(tok);
    return 0;
}
