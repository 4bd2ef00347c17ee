// The family table: GGUF `general.architecture` -> the file that loads it and the block it runs.
// Adding a family is one new file with its load function and one row here.
#include <string.h>

#include "model/model_impl.h"

cterp_status llama_load(model_loader *ld);
cterp_status gpt2_load(model_loader *ld);
cterp_status gptneox_load(model_loader *ld);
cterp_status gptneox_block(block_ctx *b, int l);
cterp_status gemma_load(model_loader *ld);
cterp_status gemma2_load(model_loader *ld);
cterp_status gemma3_load(model_loader *ld);
cterp_status qwen2_load(model_loader *ld);
cterp_status qwen3_load(model_loader *ld);
cterp_status phi3_load(model_loader *ld);

static const model_family FAMILIES[] = {
    {"llama", llama_load, block_sequential},    {"gpt2", gpt2_load, block_sequential},
    {"gptneox", gptneox_load, gptneox_block},   {"gemma", gemma_load, block_sequential},
    {"gemma2", gemma2_load, block_sequential},  {"gemma3", gemma3_load, block_sequential},
    {"qwen2", qwen2_load, block_sequential},    {"qwen3", qwen3_load, block_sequential},
    {"phi3", phi3_load, block_sequential},
};

const model_family *model_family_find(const char *name) {
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++)
        if (!strcmp(FAMILIES[i].name, name)) return &FAMILIES[i];
    return NULL;
}

const char *model_family_names(void) {
    return "llama, gpt2, gptneox, gemma, gemma2, gemma3, qwen2, qwen3, phi3";
}
