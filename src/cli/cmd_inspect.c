// cterp inspect DIR: describe a saved SAE (SAELens directory or a cterp checkpoint).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"
#include "cterp/sae.h"
#include "cterp/train.h"

int cmd_inspect(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: cterp inspect SAE_DIR | MODEL.gguf\n\nDescribes an SAE directory (cfg.json + "
               "sae_weights.safetensors, SAELens format) or a GGUF model (sizes, tensors, hooks).\n");
        return argc == 2 ? 0 : 2;
    }
    const char *path = argv[1];
    size_t n = strlen(path);
    if (n > 5 && !strcmp(path + n - 5, ".gguf")) return cli_inspect_gguf(path);
    if (!file_is_dir(path)) {
        fprintf(stderr, "cterp inspect: %s: not an SAE directory\n", path);
        return 1;
    }
    // a checkpoint (its manifest or its trainer state inside) must be whole before its SAE counts
    char *man = file_join(path, "checkpoint.json"),
         *state = file_join(path, "trainer_state.safetensors");
    int is_ck = man && state && (file_exists(man) || file_exists(state));
    free(man), free(state);
    if (is_ck && cterp_checkpoint_check(path)) {
        cli_error("inspect");
        return 1;
    }
    cterp_sae *sae;
    if (cterp_sae_load(path, &sae)) {
        cli_error("inspect");
        return 1;
    }
    const int64_t D = sae->d_in, N = sae->d_sae, DO = sae->d_out;
    printf("SAE %s%s\n", path,
           is_ck ? " (a complete checkpoint: every file as its checkpoint.json records)" : "");
    printf("  architecture           %s\n", cterp_arch_name(sae->arch));
    printf("  d_in, d_sae            %lld, %lld (expansion %.1fx)\n", (long long)D, (long long)N, (double)N / D);
    if (DO != D || cterp_sae_is_transcoder(sae)) printf("  d_out                  %lld\n", (long long)DO);
    if (sae->arch == CTERP_ARCH_TOPK) printf("  k                      %d\n", sae->k);
    printf("  normalize_activations  %s\n", sae->normalize_activations);
    printf("  apply_b_dec_to_input   %s\n", sae->apply_b_dec_to_input ? "true" : "false");
    printf("  model, hook            %s, %s\n", sae->meta.model_name[0] ? sae->meta.model_name : "-",
           sae->meta.hook_name[0] ? sae->meta.hook_name : "-");
    if (sae->meta.training_tokens) printf("  training tokens        %lld\n", (long long)sae->meta.training_tokens);
    double nmin = INFINITY, nmax = 0, nsum = 0;
    for (int64_t i = 0; i < N; i++) {
        double n2 = 0;
        for (int64_t d = 0; d < DO; d++) n2 += (double)sae->W_dec[i * DO + d] * sae->W_dec[i * DO + d];
        double n = sqrt(n2);
        nmin = fmin(nmin, n), nmax = fmax(nmax, n), nsum += n;
    }
    printf("  decoder row norms      min %.4g  mean %.4g  max %.4g\n", nmin, nsum / N, nmax);
    if (sae->threshold) {
        double tmin = INFINITY, tmax = -INFINITY, ts = 0;
        for (int64_t i = 0; i < N; i++) tmin = fmin(tmin, sae->threshold[i]), tmax = fmax(tmax, sae->threshold[i]), ts += sae->threshold[i];
        printf("  threshold              min %.4g  mean %.4g  max %.4g\n", tmin, ts / N, tmax);
    }
    cterp_sae_free(sae);
    return 0;
}
