// Inspection of a .gguf file: metadata, tensors, and (for a loadable model) its configuration
// and hook names. `cterp inspect` calls cli_inspect_gguf for .gguf paths.
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cterp/model.h"
#include "io/gguf.h"

static void print_str(gguf_str s, size_t max) {
    size_t n = s.len < max ? (size_t)s.len : max;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 32)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    printf(s.len > max ? "...\"" : "\"");
}

static void print_scalar(const gguf_kv *kv, uint32_t type, uint64_t i) {
    if (type == GGUF_TYPE_STRING)
        print_str(kv->strs[i], 60);
    else if (type == GGUF_TYPE_F32 || type == GGUF_TYPE_F64)
        printf("%g", gguf_arr_f64(kv, i));
    else if (type == GGUF_TYPE_BOOL)
        printf("%s", gguf_arr_i64(kv, i) ? "true" : "false");
    else
        printf("%lld", (long long)gguf_arr_i64(kv, i));
}

int cli_inspect_gguf(const char *path) {
    gguf_file *g;
    if (gguf_open(&g, path)) {
        fprintf(stderr, "cterp inspect: %s\n", cterp_last_error());
        return 1;
    }
    printf("file: %s (%zu bytes, GGUF v%u, alignment %u)\n", path, g->size, g->version,
           g->alignment);
    printf("metadata (%llu keys):\n", (unsigned long long)g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        printf("  %-44s ", kv->key);
        if (kv->type == GGUF_TYPE_ARRAY) {
            printf("%s[%llu] ", gguf_vtype_name(kv->arr_type), (unsigned long long)kv->n);
            // gguf_arr_* read from kv->val with the element type; view scalars the same way
            for (uint64_t j = 0; j < kv->n && j < 4; j++) {
                printf(j ? ", " : "[");
                print_scalar(kv, kv->arr_type, j);
            }
            printf(kv->n > 4 ? ", ...]\n" : kv->n ? "]\n" : "[]\n");
        } else {
            gguf_kv one = *kv; // a scalar is an array of one element of its own type
            one.arr_type = kv->type;
            printf("%s = ", gguf_vtype_name(kv->type));
            print_scalar(&one, kv->type, 0);
            printf("\n");
        }
    }
    size_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) total += g->tensors[i].n_bytes;
    printf("tensors (%llu, %.2f MiB):\n", (unsigned long long)g->n_tensors, total / 1048576.0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        char shape[96];
        int k = snprintf(shape, sizeof shape, "[%lld", (long long)t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, ", %lld", (long long)t->ne[d]);
        snprintf(shape + k, sizeof shape - (size_t)k, "]");
        printf("  %-36s %-5s %-18s %zu bytes\n", t->name, gguf_type_name(t->type), shape,
               t->n_bytes);
    }
    gguf_close(g);

    cterp_model *m;
    if (cterp_model_open(&m, path) != CTERP_OK) {
        printf("model: not loadable (%s)\n", cterp_last_error());
        return 0;
    }
    const cterp_model_config *c = cterp_model_config_of(m);
    printf("model: %s, %d layers, d_model %d, %d heads (%d kv), head_dim %d, d_ff %d, vocab %d, "
           "context %d, weights %s, output %s\n",
           c->arch, c->n_layers, c->d_model, c->n_heads,
           c->n_kv_heads, c->head_dim, c->d_ff, c->n_vocab, c->n_ctx, cterp_model_weight_type(m),
           c->tied_output ? "tied to token_embd" : "separate");
    if (c->n_rot)
        printf("       rope: %d dims per head (%s), base %g, scale %g, norm eps %g\n", c->n_rot,
               c->rope_neox ? "half-split" : "adjacent pairs", c->rope_base, c->rope_scale,
               c->norm_eps);
    else
        printf("       learned positions, norm eps %g\n", c->norm_eps);
    if (c->parallel || c->sliding_window || c->attn_softcap > 0 || c->final_softcap > 0)
        printf("       %sparallel attention+MLP %s, sliding window %d, soft-cap attention %g, logits %g\n",
               "", c->parallel ? "yes" : "no", c->sliding_window, c->attn_softcap, c->final_softcap);
    const cterp_tokenizer *tok = cterp_model_tokenizer(m);
    if (tok) {
        const char *pre = cterp_tokenizer_pre(tok);
        printf("tokenizer: %s%s%s%s, %d tokens, bos %d, eos %d\n", cterp_tokenizer_kind(tok),
               *pre ? " (pre-tokenizer " : "", pre, *pre ? ")" : "", cterp_tokenizer_n_vocab(tok),
               cterp_tokenizer_bos(tok), cterp_tokenizer_eos(tok));
    }
    int n = cterp_model_n_hook_points(m);
    printf("hook points (%d): ", n);
    char buf[128];
    // global hooks, then the per-block names of block 0 as blocks.{0..L-1}.NAME
    for (int i = 0; i < n; i++) {
        cterp_model_hook_point(m, i, buf, sizeof buf);
        if (!strncmp(buf, "blocks.", 7)) {
            if (strncmp(buf, "blocks.0.", 9)) continue;
            printf("blocks.{0..%d}.%s", c->n_layers - 1, buf + 9);
        } else
            printf("%s", buf);
        printf(i + 1 < n ? ", " : "\n");
    }
    cterp_model_free(m);
    return 0;
}
