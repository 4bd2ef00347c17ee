// Gemma 1, 2 and 3: RMSNorm whose weights GGUF stores as (1 + w) already, embeddings times
// sqrt(d_model), half-split RoPE, GeGLU (tanh GELU on the gate), output tied to the embeddings.
// Gemma 2 adds post-attention and post-MLP norms (ln1_post / ln2_post; hook_attn_out and
// hook_mlp_out come after them), soft-capping of the attention scores and of the logits, and
// sliding-window attention on every other layer (layer l slides when l % 2 == 0). Gemma 3 drops
// the attention cap, adds qk-norm, slides 5 layers of every 6 with their own RoPE base
// (rope.freq_base_swa, default 10000, unscaled) while the global layers take rope.freq_base and
// the linear scaling. All as llama.cpp's gemma/gemma2/gemma3 graphs.
#include <math.h>
#include <stdio.h>

#include "model/model_impl.h"

static cterp_status common(model_loader *ld, int post_norms) {
    cterp_model *m = ld->m;
    cterp_model_config *c = &m->cfg;
    cterp_status s;
    m->norm = NORM_RMS;
    m->rope = ROPE_NEOX;
    m->mlp = MLP_GELU_GATED;
    if ((s = ld_common(ld, "attention.layer_norm_rms_epsilon"))) return s;
    m->embed_scale = sqrtf((float)c->d_model);
    char nm[96];
    for (int l = 0; l < c->n_layers; l++) {
        layer_w *w = &m->layers[l];
        if ((s = ld_attn(ld, l))) return s;
        if ((s = ld_mlp(ld, l, 1, 0))) return s;
        if (!post_norms) continue;
        snprintf(nm, sizeof nm, "blk.%d.post_attention_norm.weight", l);
        if ((s = ld_vec(ld, nm, c->d_model, &w->attn_post_norm, 0))) return s;
        snprintf(nm, sizeof nm, "blk.%d.post_ffw_norm.weight", l);
        if ((s = ld_vec(ld, nm, c->d_model, &w->ffn_post_norm, 0))) return s;
    }
    return CTERP_OK;
}

// gemma_pytorch: the 27B models scale by 1/sqrt(d_model / heads), the others 1/sqrt(head_dim)
static float attn_scale(const cterp_model_config *c, int n_layers_27b) {
    if (c->n_layers == n_layers_27b) return 1.0f / sqrtf((float)(c->d_model / c->n_heads));
    return 1.0f / sqrtf((float)c->head_dim);
}

cterp_status gemma_load(model_loader *ld) {
    cterp_status s = common(ld, 0);
    if (s) return s;
    ld->m->output = ld->m->tok_embd; // llama.cpp's gemma always unembeds with token_embd
    ld->m->cfg.tied_output = 1;
    return CTERP_OK;
}

cterp_status gemma2_load(model_loader *ld) {
    cterp_model *m = ld->m;
    cterp_model_config *c = &m->cfg;
    cterp_status s;
    if ((s = common(ld, 1))) return s;
    m->output = m->tok_embd;
    c->tied_output = 1;
    if ((s = ld_f32(ld, "attn_logit_softcapping", &c->attn_softcap, 50.0f, 0.0f, 1e30f))) return s;
    if ((s = ld_f32(ld, "final_logit_softcapping", &c->final_softcap, 30.0f, 0.0f, 1e30f)))
        return s;
    if ((s = ld_swa(ld, 4096, 2))) return s;
    float base_swa;
    if ((s = ld_f32(ld, "rope.freq_base_swa", &base_swa, c->rope_base, 1e-3f, 1e30f))) return s;
    for (int l = 0; l < c->n_layers; l++)
        if (m->layers[l].window) m->layers[l].rope_base = base_swa;
    m->attn_scale = attn_scale(c, 46);
    return CTERP_OK;
}

cterp_status gemma3_load(model_loader *ld) {
    cterp_model *m = ld->m;
    cterp_model_config *c = &m->cfg;
    cterp_status s;
    if ((s = common(ld, 1))) return s;
    for (int l = 0; l < c->n_layers; l++)
        if (!m->layers[l].q_norm)
            return cterp_error(CTERP_EFORMAT, "%s: tensor 'blk.%d.attn_q_norm.weight' missing (gemma3)",
                               m->g->path, l);
    if ((s = ld_f32(ld, "final_logit_softcapping", &c->final_softcap, 0.0f, 0.0f, 1e30f)))
        return s;
    if ((s = ld_swa(ld, 0, 6))) return s;
    float base_swa;
    if ((s = ld_f32(ld, "rope.freq_base_swa", &base_swa, 10000.0f, 1e-3f, 1e30f))) return s;
    for (int l = 0; l < c->n_layers; l++)
        if (m->layers[l].window) {
            m->layers[l].rope_base = base_swa;
            m->layers[l].rope_scale = 1.0f;
        }
    m->attn_scale = attn_scale(c, 62);
    return CTERP_OK;
}
