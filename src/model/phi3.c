// Phi-3 (mini/medium 4k): RMSNorm, fused qkv, half-split RoPE over rope.dimension_count dims,
// SwiGLU from one fused up projection (2F rows: gate then up). llama.cpp turns Phi-3's sliding
// window off (the converted files do not describe it right), and so does cterp. The 128k models'
// LongRoPE (rope_factors_long/short) is refused.
#include "model/model_impl.h"

cterp_status phi3_load(model_loader *ld) {
    cterp_model *m = ld->m;
    const cterp_model_config *c = &m->cfg;
    cterp_status s;
    m->norm = NORM_RMS;
    m->rope = ROPE_NEOX;
    m->mlp = MLP_SILU_GATED;
    if ((s = ld_common(ld, "attention.layer_norm_rms_epsilon"))) return s;
    if (ld_has(ld, "rope_factors_long.weight") || ld_has(ld, "blk.0.rope_factors_long.weight"))
        return cterp_error(CTERP_EFORMAT,
                           "%s: rope_factors_long: LongRoPE (Phi-3 128k) is not supported; the 4k "
                           "models are",
                           m->g->path);
    for (int l = 0; l < c->n_layers; l++) {
        if ((s = ld_attn(ld, l))) return s;
        if ((s = ld_mlp(ld, l, 1, 1))) return s;
    }
    return CTERP_OK;
}
