// Writes the synthetic models the forward benchmarks and docs/measurements.md use (not a test):
// random-weight llama GGUFs of a named shape in one tensor type or a K-quant _M mix, optionally
// with the tokenizer of another GGUF (e.g. llama.cpp's ggml-vocab-*.gguf) so `cterp train` can
// read text with it.
//   bench_synth_gguf OUT.gguf --shape llama768|gpt2small|llama1b
//                    [--type F32|F16|BF16|Q8_0|Q4_0|Q4_K|Q6_K|Q4_K_M]
//                    [--vocab-from V.gguf | --filler-vocab]
//   bench_synth_gguf OUT.gguf --repack LLAMA.gguf --as qwen2|phi3
// llama768: 12 layers, d_model 768, 12 heads, d_ff 2048, vocab 8192 (the 12x768 of
// docs/measurements.md). gpt2small: GPT-2 small's shape (12 x 768, d_ff 3072, vocab 50257, 1024
// positions, tied). llama1b: Llama-3.2-1B's shape: 16 layers, d_model 2048, 32/8 heads,
// d_ff 8192, vocab 128256, tied, context 131072 (Q4_K_M: token_embd, attn_v, ffn_down in Q6_K).
// --filler-vocab: a byte-level BPE vocabulary of exactly the shape's size (the 256 byte tokens,
// then <|fN|> fillers, no merges), which llama.cpp needs to load the model
// (bench/llamacpp_forward.sh).
// --repack: a llama GGUF rewritten as qwen2 or phi3 computing the same function (tests/repack.h),
// e.g. stories260K to train on a non-llama family with known results.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/repack.h"
#include "../tests/synth_model.h"

// the --filler-vocab vocabulary of V >= 256 tokens
static void filler_vocab(gguf_writer *w, int V) {
    char(*store)[16] = malloc((size_t)V * sizeof *store);
    const char **toks = malloc((size_t)V * sizeof *toks);
    int32_t *types = malloc((size_t)V * sizeof *types);
    for (int b = 0; b < V; b++) {
        if (b < 256)
            synth_byte_token(b, store[b]);
        else
            snprintf(store[b], sizeof store[b], "<|f%d|>", b);
        toks[b] = store[b], types[b] = 1;
    }
    gguf_writer_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_writer_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)V);
    gguf_writer_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, (uint64_t)V);
    gguf_writer_arr_str(w, "tokenizer.ggml.merges", NULL, 0);
    free(store), free(toks), free(types);
}

// copies every tokenizer.* key of src into w (each value as repack.h copies it)
static cterp_status copy_tokenizer(gguf_writer *w, const char *src_path, int *n_tokens) {
    gguf_file *g;
    cterp_status s = gguf_open(&g, src_path);
    if (s) return s;
    *n_tokens = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (strncmp(kv->key, "tokenizer.", 10)) continue;
        repack_copy_kv(w, kv, kv->key);
        if (!strcmp(kv->key, "tokenizer.ggml.tokens")) *n_tokens = (int)kv->n;
    }
    gguf_close(g);
    return CTERP_OK;
}

int main(int argc, char **argv) {
    const char *out = NULL, *shape = "llama768", *type = "F32", *vocab = NULL, *repack = NULL,
               *as = NULL;
    int filler = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape = argv[++i];
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) type = argv[++i];
        else if (!strcmp(argv[i], "--vocab-from") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--filler-vocab"))
            filler = 1;
        else if (!strcmp(argv[i], "--repack") && i + 1 < argc) repack = argv[++i];
        else if (!strcmp(argv[i], "--as") && i + 1 < argc) as = argv[++i];
        else if (argv[i][0] != '-' && !out) out = argv[i];
        else {
            fprintf(stderr, "usage: bench_synth_gguf OUT.gguf --shape llama768|llama1b [--type T] "
                            "[--vocab-from V.gguf | --filler-vocab]\n");
            return 2;
        }
    }
    if (!out || (filler && vocab)) {
        fprintf(stderr, "bench_synth_gguf: %s\n",
                !out ? "no output path" : "--filler-vocab or --vocab-from, not both");
        return 2;
    }
    if (repack) {
        if (!as || (strcmp(as, "qwen2") && strcmp(as, "phi3"))) {
            fprintf(stderr, "bench_synth_gguf: --repack needs --as qwen2 or --as phi3\n");
            return 2;
        }
        if (repack_llama(repack, out, as)) {
            fprintf(stderr, "bench_synth_gguf: %s\n", cterp_last_error());
            return 1;
        }
        return 0;
    }
    // {gpt2, L, D, H, Hkv, F, V, n_ctx, n_rot, rope_freqs, tied, type, seed, type_hi}
    synth_cfg c;
    if (!strcmp(shape, "llama768"))
        c = (synth_cfg){0, 12, 768, 12, 12, 2048, 8192, 1024, 64, 0, 0, GGML_TYPE_F32, 1, 0};
    else if (!strcmp(shape, "gpt2small"))
        c = (synth_cfg){1, 12, 768, 12, 12, 3072, 50257, 1024, 0, 0, 1, GGML_TYPE_F32, 1, 0};
    else if (!strcmp(shape, "llama1b"))
        c = (synth_cfg){0, 16, 2048, 32, 8, 8192, 128256, 131072, 64, 0, 1, GGML_TYPE_F32, 1, 0};
    else {
        fprintf(stderr, "bench_synth_gguf: --shape: expected llama768, gpt2small or llama1b, found %s\n", shape);
        return 2;
    }
    static const struct {
        const char *name;
        uint32_t t, hi;
    } types[] = {{"F32", GGML_TYPE_F32, 0},   {"F16", GGML_TYPE_F16, 0},  {"Q8_0", GGML_TYPE_Q8_0, 0},
                 {"Q4_0", GGML_TYPE_Q4_0, 0}, {"Q4_K", GGML_TYPE_Q4_K, 0}, {"Q6_K", GGML_TYPE_Q6_K, 0},
                 {"Q4_K_M", GGML_TYPE_Q4_K, GGML_TYPE_Q6_K}, {"BF16", GGML_TYPE_BF16, 0}};
    int found = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(type, types[i].name)) c.type = types[i].t, c.type_hi = types[i].hi, found = 1;
    if (!found) {
        fprintf(stderr, "bench_synth_gguf: --type: expected F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K or Q4_K_M, found %s\n", type);
        return 2;
    }
    gguf_writer *w = gguf_writer_new(0);
    synth_add(w, &c);
    if (filler) filler_vocab(w, c.V);
    if (vocab) {
        int n_tok = 0;
        if (copy_tokenizer(w, vocab, &n_tok)) {
            fprintf(stderr, "bench_synth_gguf: %s\n", cterp_last_error());
            return 1;
        }
        if (n_tok > c.V) {
            fprintf(stderr, "bench_synth_gguf: %s has %d tokens, the shape's vocabulary %d\n", vocab, n_tok, c.V);
            return 1;
        }
    }
    cterp_status s = gguf_writer_write(w, out);
    gguf_writer_free(w);
    if (s) {
        fprintf(stderr, "bench_synth_gguf: %s\n", cterp_last_error());
        return 1;
    }
    return 0;
}
