// GPT-NeoX (Pythia): LayerNorm with biases, fused qkv with biases, half-split RoPE over the first
// rope.dimension_count dims of each head (Pythia: a quarter), GELU MLP with biases, separate
// output, and the parallel residual when `gptneox.use_parallel_residual` says so:
// x + attn(ln1 x) + mlp(ln2 x), where TransformerLens has no hook_resid_mid.
#include "model/model_impl.h"

cterp_status gptneox_load(model_loader *ld) {
    cterp_model *m = ld->m;
    cterp_model_config *c = &m->cfg;
    cterp_status s;
    m->norm = NORM_LAYER;
    m->rope = ROPE_NEOX;
    m->mlp = MLP_GELU;
    if ((s = ld_common(ld, "attention.layer_norm_epsilon"))) return s;
    if ((s = ld_bool(ld, "use_parallel_residual", &c->parallel, -1))) return s;
    for (int l = 0; l < c->n_layers; l++) {
        if ((s = ld_attn(ld, l))) return s;
        if ((s = ld_mlp(ld, l, 0, 0))) return s;
    }
    return CTERP_OK;
}

cterp_status gptneox_block(block_ctx *b, int l) {
    return b->m->cfg.parallel ? block_parallel(b, l) : block_sequential(b, l);
}
