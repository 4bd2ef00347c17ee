// Qwen 2 / 2.5 and Qwen 3: RMSNorm, half-split RoPE, GQA, SwiGLU; Qwen 2 has q/k/v biases,
// Qwen 3 none but qk-norm (an RMS norm of each head's q and k before RoPE).
#include "model/model_impl.h"

static cterp_status load(model_loader *ld, int qk_norm) {
    cterp_model *m = ld->m;
    const cterp_model_config *c = &m->cfg;
    cterp_status s;
    m->norm = NORM_RMS;
    m->rope = ROPE_NEOX;
    m->mlp = MLP_SILU_GATED;
    if ((s = ld_common(ld, "attention.layer_norm_rms_epsilon"))) return s;
    for (int l = 0; l < c->n_layers; l++) {
        if ((s = ld_attn(ld, l))) return s;
        if ((s = ld_mlp(ld, l, 1, 0))) return s;
        if (qk_norm && !m->layers[l].q_norm)
            return cterp_error(CTERP_EFORMAT, "%s: tensor 'blk.%d.attn_q_norm.weight' missing (%s)",
                               m->g->path, l, c->arch);
    }
    return CTERP_OK;
}

cterp_status qwen2_load(model_loader *ld) {
    return load(ld, 0);
}

cterp_status qwen3_load(model_loader *ld) {
    return load(ld, 1);
}
