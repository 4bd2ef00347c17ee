// Fuzz target: trainer_state.safetensors bytes -> cterp_trainer_resume with a fixed
// train_config.json (the state's format, sizes and tensor shapes, counters, the source's resume
// state), then one training step from whatever state was accepted. The manifest
// (checkpoint.json) is rewritten for each input's size, so inputs reach the state's reader. Two
// fixed checkpoints take each input: topk over a .npy file source with the input scale estimated
// (its position, epoch and fingerprint in the state), and jumprelu over the toy source (log
// thresholds).
#include "cterp/train.h"
#include "fuzz.h"
#include "fuzz_sources.h"
#include "train/trainer_impl.h"

enum { D = 16, ROWS = 40 };
static char *ck[2], *state[2], *manifest[2];

static void small_cfg(cterp_train_config *c, cterp_arch arch) {
    cterp_train_config_default(c);
    c->architecture = arch;
    c->d_sae = 32, c->k = 4, c->batch_size = 8, c->training_steps = 20;
    c->log_every = 5, c->dead_feature_window = 3, c->feature_sampling_window = 4;
}

// Trains `steps` steps from scratch and checkpoints into ck[which]; its state is a seed.
static void make_checkpoint(int which, const cterp_train_config *c, int64_t steps, const char *seed) {
    fuzz_write_checkpoint(which, c, steps, ck[which], "fuzz_checkpoint");
    fuzz_seed_file(seed, state[which]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_quiet_threads();
    fuzz_sources_init(D, ROWS);
    ck[0] = fuzz_subdir("ck_topk_file"), ck[1] = fuzz_subdir("ck_jumprelu_toy");
    for (int i = 0; i < 2; i++) {
        state[i] = file_join(ck[i], "trainer_state.safetensors");
        manifest[i] = file_join(ck[i], "checkpoint.json");
    }
    cterp_train_config a, b;
    small_cfg(&a, CTERP_ARCH_TOPK);
    a.normalize_activations = 1, a.norm_estimate_batches = 2;
    small_cfg(&b, CTERP_ARCH_JUMPRELU);
    make_checkpoint(0, &a, 0, "topk_file_step0.safetensors"); // before any data
    make_checkpoint(1, &b, 6, "jumprelu_toy_step6.safetensors");
    make_checkpoint(0, &a, 7, "topk_file_step7.safetensors"); // the one that stays
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int i = 0; i < 2; i++) {
        fuzz_write(state[i], data, size);
        char *text;
        if (checkpoint_manifest_text(ck[i], 0, &text)) abort();
        fuzz_write(manifest[i], text, strlen(text)); // in place: no fsync per input
        free(text);
        cterp_act_source src;
        fuzz_source_open(i, &src);
        cterp_trainer *t;
        cterp_status s = cterp_trainer_resume(&t, ck[i], &src);
        fuzz_note(ck[i], s);
        if (!s) {
            fuzz_note("step", cterp_trainer_run(t, cterp_trainer_step(t) + 1));
            cterp_trainer_free(t);
        }
        cterp_act_source_free(&src);
    }
    return 0;
}
