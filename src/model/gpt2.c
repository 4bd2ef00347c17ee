// GPT-2: LayerNorm with biases, learned positions, fused qkv, GELU (tanh) MLP, biases everywhere.
#include "model/model_impl.h"

cterp_status gpt2_load(model_loader *ld) {
    cterp_model *m = ld->m;
    cterp_model_config *c = &m->cfg;
    cterp_status s;
    m->norm = NORM_LAYER;
    m->rope = ROPE_NONE;
    m->mlp = MLP_GELU;
    if ((s = ld_common(ld, "attention.layer_norm_epsilon"))) return s;
    if (c->head_dim * c->n_heads != c->d_model || c->n_kv_heads != c->n_heads)
        return cterp_error(CTERP_EFORMAT,
                           "%s: gpt2 needs head_count * head_dim == embedding_length", m->g->path);
    const gguf_tensor *pe = gguf_find_tensor(m->g, "position_embd.weight");
    if (pe && pe->ne[1] >= 1 && pe->ne[1] < (1 << 24)) c->n_ctx = (int)pe->ne[1];
    if ((s = ld_mat(ld, "position_embd.weight", c->d_model, c->n_ctx, &m->pos_embd, 0))) return s;
    for (int l = 0; l < c->n_layers; l++) {
        if ((s = ld_attn(ld, l))) return s;
        if ((s = ld_mlp(ld, l, 0, 0))) return s;
    }
    return CTERP_OK;
}
