// Fuzz target: a checkpoint's train_config.json and trainer_state.safetensors together ->
// cterp_trainer_resume, then one training step from whatever was accepted. fuzz_checkpoint
// holds the config fixed and fuzz_train_config never reaches a state; defects live where the
// two meet (a config's d_sae, batch or architecture that the state does not back).
//
// Input: the train_config.json text, then the 7 bytes "\0STATE\0", then the state's bytes (the
// first such separator splits; without one, the whole input is the config and the state is
// empty). Both are written into two checkpoint directories, each made by a real checkpoint
// whose other files (cfg.json, the SAE's weights) stay, with the manifest (checkpoint.json)
// rewritten for the new sizes so inputs reach the readers; one is resumed over a .npy file
// source, the other over the toy source (the fuzz_checkpoint pair). Seeds: config + state pairs
// of checkpoints the library wrote for standard, topk, batchtopk, jumprelu, gated and
// matryoshka_batchtopk, over both sources, at step 0 and mid-run.
//
// The work a valid config asks for is not the target's to fuzz: a checkpoint's batch_size is the
// run's (no byte of the state grows with it, and the run that wrote it had that memory), so an
// input whose config loads with a batch above MAX_BATCH is skipped before the resume allocates
// for it; the step runs only for batches up to MAX_STEP_BATCH and an input-scale estimate of at
// most MAX_NORM_BATCHES batches, and on one thread for any "threads" the library accepts (the
// pool is the process's, and libFuzzer's; cterp_train_config_validate bounds the field).
#include "cterp/train.h"
#include "fuzz.h"
#include "fuzz_sources.h"
#include "train/trainer_impl.h"

enum { D = 16, ROWS = 40, MAX_BATCH = 1 << 16, MAX_STEP_BATCH = 1024, MAX_NORM_BATCHES = 64 };
static const char SEP[] = "\0STATE\0"; // sizeof SEP - 1 == 7: the separator's bytes
enum { SEP_LEN = sizeof SEP - 1 };
static char *ck[2], *state[2], *config[2], *manifest[2];

static void small_cfg(cterp_train_config *c, cterp_arch arch) {
    cterp_train_config_default(c);
    c->architecture = arch;
    c->d_sae = 32, c->k = 4, c->batch_size = 8, c->training_steps = 20;
    c->log_every = 5, c->dead_feature_window = 3, c->feature_sampling_window = 4;
    if (arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK)
        c->n_matryoshka_widths = 2, c->matryoshka_widths[0] = 8, c->matryoshka_widths[1] = 32;
}

// Trains `steps` steps from scratch, checkpoints into ck[which] and writes the config + state
// pair as a seed named `seed`.
static void make_checkpoint(int which, const cterp_train_config *c, int64_t steps,
                            const char *seed) {
    fuzz_write_checkpoint(which, c, steps, ck[which], "fuzz_checkpoint_config");
    if (!fuzz_seed_dir()) return;
    char *ct, *st;
    size_t cn, sn;
    if (file_read_all(config[which], &ct, &cn) || file_read_all(state[which], &st, &sn)) abort();
    char *in = malloc(cn + SEP_LEN + sn);
    if (!in) abort();
    memcpy(in, ct, cn), memcpy(in + cn, SEP, SEP_LEN), memcpy(in + cn + SEP_LEN, st, sn);
    fuzz_seed(seed, in, cn + SEP_LEN + sn);
    free(in), free(ct), free(st);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_quiet_threads();
    fuzz_sources_init(D, ROWS);
    ck[0] = fuzz_subdir("ck_file"), ck[1] = fuzz_subdir("ck_toy");
    for (int i = 0; i < 2; i++) {
        state[i] = file_join(ck[i], "trainer_state.safetensors");
        config[i] = file_join(ck[i], "train_config.json");
        manifest[i] = file_join(ck[i], "checkpoint.json");
    }
    static const struct {
        cterp_arch arch;
        int source, normalize;
        int64_t steps;
        const char *name;
        int64_t d_sae; // 0: 32; 4 makes a 3 KB input, where mutations meet the structure
    } seeds[] = {
        {CTERP_ARCH_TOPK, 0, 1, 0, "topk_file_step0"}, // before any data: not initialized
        {CTERP_ARCH_TOPK, 0, 1, 7, "topk_file_step7"},
        {CTERP_ARCH_TOPK, 1, 0, 6, "topk_toy_step6"},
        {CTERP_ARCH_JUMPRELU, 1, 0, 6, "jumprelu_toy_step6"},
        {CTERP_ARCH_JUMPRELU, 0, 1, 5, "jumprelu_file_step5"},
        {CTERP_ARCH_STANDARD, 0, 0, 5, "standard_file_step5"},
        {CTERP_ARCH_STANDARD, 1, 1, 9, "standard_toy_step9"},
        {CTERP_ARCH_BATCHTOPK, 1, 0, 5, "batchtopk_toy_step5"},
        {CTERP_ARCH_GATED, 0, 0, 4, "gated_file_step4"},
        {CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 1, 0, 5, "matryoshka_toy_step5"},
        {CTERP_ARCH_TOPK, 0, 1, 3, "topk_file_step3_n4", 4},
        {CTERP_ARCH_JUMPRELU, 1, 0, 3, "jumprelu_toy_step3_n4", 4},
        {CTERP_ARCH_STANDARD, 1, 0, 2, "standard_toy_step2_n4", 4},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        cterp_train_config c;
        small_cfg(&c, seeds[i].arch);
        c.normalize_activations = seeds[i].normalize, c.norm_estimate_batches = 2;
        if (seeds[i].d_sae) c.d_sae = seeds[i].d_sae, c.k = 2;
        char name[64];
        snprintf(name, sizeof name, "%s.ck", seeds[i].name);
        make_checkpoint(seeds[i].source, &c, seeds[i].steps, name);
    }
    return 0;
}

// The first separator's offset, or size when there is none.
static size_t split_at(const uint8_t *data, size_t size) {
    for (size_t i = 0; i + SEP_LEN <= size; i++)
        if (!memcmp(data + i, SEP, SEP_LEN)) return i;
    return size;
}

// The step's work is the batch's, and before the first step the input-scale estimate's batches.
static int step_is_small(const cterp_trainer *t) {
    const int estimates = !t->initialized && t->cfg.normalize_activations;
    return t->B <= MAX_STEP_BATCH &&
           (!estimates || t->cfg.norm_estimate_batches <= MAX_NORM_BATCHES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const size_t cn = split_at(data, size);
    const size_t so = cn + SEP_LEN <= size ? cn + SEP_LEN : size;
    for (int i = 0; i < 2; i++) {
        fuzz_write(config[i], data, cn);
        fuzz_write(state[i], data + so, size - so);
        char *text;
        if (checkpoint_manifest_text(ck[i], 0, &text)) abort();
        fuzz_write(manifest[i], text, strlen(text)); // in place: no fsync per input
        free(text);
    }
    cterp_train_config c;
    cterp_train_config_default(&c);
    if (!cterp_train_config_load_json(&c, config[0]) && c.batch_size > MAX_BATCH) return 0;
    for (int i = 0; i < 2; i++) {
        cterp_act_source src;
        fuzz_source_open(i, &src);
        cterp_trainer *t;
        cterp_status s = cterp_trainer_resume(&t, ck[i], &src);
        fuzz_note(ck[i], s);
        if (!s) {
            // the process's one thread (fuzz_quiet_threads) for any count the config may have;
            // one above it (regressions/threads-100000) is the library's to refuse
            if (t->cfg.threads <= CTERP_MAX_THREADS) t->cfg.threads = 0;
            if (step_is_small(t))
                fuzz_note("step", cterp_trainer_run(t, cterp_trainer_step(t) + 1));
            cterp_trainer_free(t);
        }
        cterp_act_source_free(&src);
    }
    return 0;
}
