// Llama (also Mistral, SmolLM, TinyLlama, Llama 3.x as GGUF stores them): RMSNorm, adjacent-pair
// RoPE (the converter permutes Q/K for it), GQA, SwiGLU, optional q/k/v/o biases, tied or separate
// output, Llama 3.1/3.2 rope scaling as `rope_freqs.weight`, linear scaling from the keys, and a
// sliding window on every layer when `llama.attention.sliding_window` is set (Mistral v0.1's
// definition; llama.cpp ignores the key, which only matters past the window).
#include "model/model_impl.h"

cterp_status llama_load(model_loader *ld) {
    cterp_model *m = ld->m;
    const cterp_model_config *c = &m->cfg;
    cterp_status s;
    m->norm = NORM_RMS;
    m->rope = ROPE_NORM;
    m->mlp = MLP_SILU_GATED;
    if ((s = ld_common(ld, "attention.layer_norm_rms_epsilon"))) return s;
    if ((s = ld_vec(ld, "rope_freqs.weight", c->n_rot / 2, &m->rope_freqs, 1))) return s;
    if ((s = ld_swa(ld, 0, 0))) return s;
    for (int l = 0; l < c->n_layers; l++) {
        if ((s = ld_attn(ld, l))) return s;
        if ((s = ld_mlp(ld, l, 1, 0))) return s;
    }
    return CTERP_OK;
}
