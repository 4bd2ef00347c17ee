// Fuzz target: train config JSON text -> cterp_train_config_load_json, then validation and the
// writer's round trip (what the writer writes loads back to the same config).
#include <stdio.h>

#include "cterp/train.h"
#include "fuzz.h"

static char *cfg_path, *back_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    cfg_path = fuzz_path("train_config.json");
    back_path = fuzz_path("back.json");
    if (fuzz_seed_dir()) { // the writer's output for each preset, and the unit tests' cases
        static const char *const presets[] = {"cterp", "mlxterp", "saelens"};
        for (int i = 0; i < 3; i++) {
            cterp_train_config c;
            cterp_train_config_default(&c);
            cterp_train_config_preset(&c, presets[i]);
            char *text;
            size_t n;
            FILE *f = open_memstream(&text, &n);
            cterp_train_config_write_json(&c, f);
            fclose(f);
            char name[32];
            snprintf(name, sizeof name, "preset_%s.json", presets[i]);
            fuzz_seed(name, text, n);
            free(text);
        }
        static const char *const small[] = {
            "{\"preset\": \"mlxterp\", \"k\": 16, \"lr_scheduler\": \"cosine\"}",
            "{\"architecture\": \"jumprelu\", \"d_sae\": 64, \"lr\": 2.5e-4, \"seed\": 123456789012345}",
            "{\"training_tokens\": 1e6, \"batch_size\": 4096, \"use_ghost_grads\": true, \"b_dec_init\": \"mean\"}",
            "{\"d_sae\": [1], \"k\": {}}",
        };
        for (int i = 0; i < 4; i++) {
            char name[32];
            snprintf(name, sizeof name, "small_%d.json", i);
            fuzz_seed(name, small[i], strlen(small[i]));
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write(cfg_path, data, size);
    cterp_train_config c;
    cterp_train_config_default(&c);
    if (cterp_train_config_load_json(&c, cfg_path)) return 0;
    cterp_train_config_validate(&c, 64);
    cterp_train_config_d_sae(&c, 64);
    cterp_train_config_steps(&c);
    FILE *f = fopen(back_path, "w");
    if (!f) abort();
    if (cterp_train_config_write_json(&c, f)) abort();
    fclose(f);
    cterp_train_config b;
    cterp_train_config_default(&b);
    if (cterp_train_config_load_json(&b, back_path)) {
        fprintf(stderr, "train config: the written config does not load: %s\n", cterp_last_error());
        abort();
    }
    for (size_t i = 0; i < sizeof b; i++) // (the error text would be an older one's here)
        if (((const uint8_t *)&b)[i] != ((const uint8_t *)&c)[i]) {
            fprintf(stderr, "train config: the written config loads back different at byte %zu\n",
                    i);
            abort();
        }
    return 0;
}
