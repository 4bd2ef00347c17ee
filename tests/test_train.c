// Trainer: schedules, config validation, determinism, resume bit-identity, NaN handling,
// checkpoint errors, and that each architecture recovers the toy's features.
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "core/file.h"
#include "core/rng.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "cterp/toy.h"
#include "cterp/train.h"
#include "sae/bf16.h"
#include "sae/kernels.h"
#include "test.h"
#include "train/optim.h"
#include "train/trainer_impl.h"

static void small_toy(cterp_toy_config *tc) {
    cterp_toy_config_default(tc);
    tc->n_features = 64;
    tc->d = 32;
    tc->avg_active = 3;
    tc->decay = 0.98;
    tc->mag_min = 0.5f;
    tc->mag_max = 1.5f;
    tc->seed = 5;
}

static void small_cfg(cterp_train_config *c, cterp_arch arch, int64_t steps) {
    cterp_train_config_default(c);
    c->architecture = arch;
    c->d_sae = 128;
    c->k = 4;
    c->batch_size = 512;
    c->training_steps = steps;
    c->log_every = 10;
    c->dead_feature_window = 50;
    if (arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK) // d_sae (128) is appended
        c->n_matryoshka_widths = 2, c->matryoshka_widths[0] = 32, c->matryoshka_widths[1] = 96;
}

// (input, target) pairs for transcoders: x from the toy, y = M2 ReLU(M1 x), a small fixed "MLP"
// (d_in 32 -> 48 hidden -> d_out 16). Its position is the toy stream's (resume works).
enum { MLP_H = 48, MLP_DO = 16 };
typedef struct {
    cterp_act_source toy;
    float M1[MLP_H * 32], M2[MLP_DO * MLP_H];
} mlp_src;

static cterp_status mlp_next_target(void *ctx, float *x, float *y, int64_t B) {
    mlp_src *m = ctx;
    cterp_status s = m->toy.next(m->toy.ctx, x, B);
    if (s) return s;
    for (int64_t t = 0; t < B; t++) {
        float h[MLP_H];
        for (int j = 0; j < MLP_H; j++) {
            double a = 0;
            for (int d = 0; d < 32; d++) a += (double)m->M1[j * 32 + d] * x[t * 32 + d];
            h[j] = a > 0 ? (float)a : 0.0f;
        }
        for (int e = 0; e < MLP_DO; e++) {
            double a = 0;
            for (int j = 0; j < MLP_H; j++) a += (double)m->M2[e * MLP_H + j] * h[j];
            y[t * MLP_DO + e] = (float)a;
        }
    }
    return CTERP_OK;
}
static int mlp_get_state(void *ctx, uint64_t *st, int cap) {
    mlp_src *m = ctx;
    return m->toy.get_state(m->toy.ctx, st, cap);
}
static cterp_status mlp_set_state(void *ctx, const uint64_t *st, int n, int64_t max_rows) {
    mlp_src *m = ctx;
    return m->toy.set_state(m->toy.ctx, st, n, max_rows);
}
static void mlp_free(void *ctx) {
    mlp_src *m = ctx;
    cterp_act_source_free(&m->toy);
    free(m);
}

static void mlp_source(cterp_act_source *s, const cterp_toy *toy) {
    memset(s, 0, sizeof *s);
    mlp_src *m = calloc(1, sizeof *m);
    if (!m || cterp_toy_source(&m->toy, toy)) abort();
    rng_t r;
    rng_seed(&r, 77);
    for (int q = 0; q < MLP_H * 32; q++) m->M1[q] = rng_normal(&r) / sqrtf(32.0f);
    for (int q = 0; q < MLP_DO * MLP_H; q++) m->M2[q] = rng_normal(&r) / sqrtf((float)MLP_H);
    s->d_in = 32, s->d_out = MLP_DO, s->ctx = m;
    s->next_target = mlp_next_target, s->get_state = mlp_get_state, s->set_state = mlp_set_state;
    s->free = mlp_free;
    snprintf(s->description, sizeof s->description, "toy -> MLP pairs");
}

static void test_schedules(void) {
    cterp_train_config c;
    cterp_train_config_default(&c);
    c.lr = 1.0f, c.lr_end = 0.1f, c.lr_warm_up_steps = 10, c.lr_decay_steps = -1;
    c.lr_scheduler = CTERP_LR_COSINE;
    CHECK_CLOSE(sched_lr(&c, 0, 110), 0.1, 1e-9, 0);     // warm-up: (0+1)/10
    CHECK_CLOSE(sched_lr(&c, 9, 110), 1.0, 1e-9, 0);
    CHECK_CLOSE(sched_lr(&c, 10, 110), 1.0, 1e-9, 0);    // decay starts at lr
    CHECK_CLOSE(sched_lr(&c, 60, 110), 0.55, 1e-9, 0);   // cosine midpoint
    CHECK_CLOSE(sched_lr(&c, 109, 110), 0.1 + 0.9 * 0.5 * (1 + cos(M_PI * 99 / 100.0)), 1e-7, 0);
    c.lr_scheduler = CTERP_LR_LINEAR;
    CHECK_CLOSE(sched_lr(&c, 60, 110), 0.55, 1e-9, 0);
    CHECK_CLOSE(sched_lr(&c, 35, 110), 1.0 - 0.9 * 0.25, 1e-9, 0);
    c.lr_decay_steps = 20;
    CHECK_CLOSE(sched_lr(&c, 20, 110), 0.55, 1e-9, 0);
    CHECK_CLOSE(sched_lr(&c, 50, 110), 0.1, 1e-7, 0);    // after the decay: lr_end
    c.lr_scheduler = CTERP_LR_CONSTANT;
    CHECK_CLOSE(sched_lr(&c, 50, 110), 1.0, 1e-9, 0);
    c.sparsity_warm_up_steps = -1;
    CHECK_CLOSE(sched_sparsity(&c, 0, 100), 0.0, 1e-12, 0);
    CHECK_CLOSE(sched_sparsity(&c, 50, 100), 0.5, 1e-12, 0);
    c.sparsity_warm_up_steps = 10;
    CHECK_CLOSE(sched_sparsity(&c, 5, 100), 0.5, 1e-12, 0);
    CHECK_CLOSE(sched_sparsity(&c, 10, 100), 1.0, 1e-12, 0);
    c.sparsity_warm_up_steps = 0;
    CHECK_CLOSE(sched_sparsity(&c, 0, 100), 1.0, 1e-12, 0);
}

static void write_text(const char *path, const char *text) {
    CHECK_OK(file_write_all(path, text, strlen(text)));
}

// Rewrites a checkpoint's manifest for the files it now holds (a test that edits a file checks
// what lies past the manifest).
static void remanifest(const char *ck) {
    char *text, *p = file_join(ck, "checkpoint.json");
    CHECK_OK(checkpoint_manifest_text(ck, 0, &text));
    write_text(p, text);
    free(text), free(p);
}

// Overwrites 8-byte element i of tensor `name` in a safetensors file with v.
static void patch_u64(const char *path, const char *name, int i, uint64_t v) {
    st_file f;
    CHECK_OK(st_open(&f, path));
    const st_tensor *x = st_find(&f, name);
    CHECK(x && x->nelem > i && st_dtype_size(x->dtype) == 8);
    size_t off = x ? (size_t)(x->data - f.map.data) + 8 * (size_t)i : 0;
    st_close(&f);
    char *d;
    size_t n;
    CHECK_OK(file_read_all(path, &d, &n));
    if (off + 8 <= n) memcpy(d + off, &v, 8);
    CHECK_OK(file_write_all(path, d, n));
    free(d);
}

// Peak resident memory of this process so far (kB).
static long peak_rss_kb(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

static void expect_invalid(cterp_train_config *c, const char *field, const char *needle) {
    cterp_status s = cterp_train_config_validate(c, 32);
    CHECK_MSG(s == CTERP_EINVAL && strstr(cterp_last_error(), field) && strstr(cterp_last_error(), needle),
              "expected an error naming %s and %s, got '%s'", field, needle, cterp_last_error());
}

static void test_config(void) {
    cterp_train_config c;
    cterp_train_config_default(&c);
    CHECK_OK(cterp_train_config_validate(&c, 32));
    c.encoder_bf16 = 1, c.architecture = CTERP_ARCH_STANDARD;
    expect_invalid(&c, "encoder_bf16", "topk, batchtopk or matryoshka_batchtopk");
    cterp_train_config_default(&c);
    c.encoder_bf16 = 1, c.use_ghost_grads = 1; // the dead latents' pre-activations are f32
    if (bf16_available()) CHECK_OK(cterp_train_config_validate(&c, 32));
    cterp_train_config_default(&c);
    c.k = 300, c.d_sae = 256;
    expect_invalid(&c, "k", "300");
    c.k = 0;
    expect_invalid(&c, "k", "1..d_sae");
    cterp_train_config_default(&c);
    c.lr = 0;
    expect_invalid(&c, "lr", "> 0");
    cterp_train_config_default(&c);
    c.aux_k = -2;
    expect_invalid(&c, "aux_k", ">= -1");
    cterp_train_config_default(&c);
    c.dead_feature_window = 0;
    expect_invalid(&c, "dead_feature_window", "> 0");
    cterp_train_config_default(&c);
    c.feature_sampling_window = -3;
    expect_invalid(&c, "feature_sampling_window", "-3");
    cterp_train_config_default(&c);
    c.threads = CTERP_MAX_THREADS;
    CHECK_OK(cterp_train_config_validate(&c, 32));
    c.threads = 100000; // OpenMP would start them all
    expect_invalid(&c, "threads", "0..1024");
    // matryoshka_widths: a flag or JSON list; strictly increasing, within d_sae, only for
    // matryoshka_batchtopk, present there; errors name the field and the value
    cterp_train_config_default(&c);
    c.d_sae = 256;
    CHECK_OK(cterp_train_config_set(&c, "architecture", "matryoshka_batchtopk"));
    expect_invalid(&c, "matryoshka_widths", "got none");
    CHECK_OK(cterp_train_config_set(&c, "matryoshka-widths", "16,64,256"));
    CHECK(c.n_matryoshka_widths == 3 && c.matryoshka_widths[0] == 16 && c.matryoshka_widths[2] == 256);
    CHECK_OK(cterp_train_config_validate(&c, 32));
    CHECK_OK(cterp_train_config_set(&c, "matryoshka_widths", "16,64,64"));
    expect_invalid(&c, "matryoshka_widths", "got 64 after 64");
    CHECK_OK(cterp_train_config_set(&c, "matryoshka_widths", "128,64"));
    expect_invalid(&c, "matryoshka_widths", "strictly increasing");
    CHECK_OK(cterp_train_config_set(&c, "matryoshka_widths", "16,300"));
    expect_invalid(&c, "matryoshka_widths", "got 300 (width 2), expected 1..d_sae (256)");
    CHECK(cterp_train_config_set(&c, "matryoshka_widths", "16,abc") == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "matryoshka_widths: got '16,abc'"), "%s", cterp_last_error());
    CHECK(cterp_train_config_set(&c, "matryoshka_widths", "0,16") == CTERP_EINVAL);
    CHECK(cterp_train_config_set(&c, "matryoshka_widths", "16,") == CTERP_EINVAL);
    CHECK(cterp_train_config_set(&c, "matryoshka_widths", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17") == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "at most 16"), "%s", cterp_last_error());
    CHECK_OK(cterp_train_config_set(&c, "matryoshka_widths", "16"));
    CHECK_OK(cterp_train_config_validate(&c, 32));
    c.architecture = CTERP_ARCH_BATCHTOPK;
    expect_invalid(&c, "matryoshka_widths", "architecture batchtopk");
    CHECK_OK(cterp_train_config_set(&c, "matryoshka_widths", "none"));
    CHECK(c.n_matryoshka_widths == 0);
    CHECK_OK(cterp_train_config_validate(&c, 32));
    c.architecture = CTERP_ARCH_MATRYOSHKA_BATCHTOPK, c.k = 0;
    CHECK_OK(cterp_train_config_set(&c, "matryoshka_widths", "16"));
    expect_invalid(&c, "k", "1..d_sae");
    cterp_train_config_default(&c);
    c.architecture = CTERP_ARCH_GATED, c.use_ghost_grads = 1;
    expect_invalid(&c, "use_ghost_grads", "gated");
    c.use_ghost_grads = 0;
    CHECK_OK(cterp_train_config_validate(&c, 32));
    CHECK(cterp_train_config_set(&c, "architecture", "crossfoo") == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), "crossfoo") && strstr(cterp_last_error(), "gated") &&
          strstr(cterp_last_error(), "matryoshka_batchtopk"));
    CHECK(cterp_train_config_set(&c, "lr-scheduler", "exp") == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), "lr_scheduler") && strstr(cterp_last_error(), "cosine"));
    CHECK(cterp_train_config_set(&c, "nope", "1") == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), "nope"));
    CHECK(cterp_train_config_set(&c, "k", "abc") == CTERP_EINVAL);
    CHECK(cterp_train_config_set(&c, "k", "2.5") == CTERP_EINVAL);
    CHECK(cterp_train_config_set(&c, "lr_end", "3e105") == CTERP_EINVAL); // inf as a float
    CHECK_MSG(strstr(cterp_last_error(), "lr_end: got '3e105', out of range"), "%s", cterp_last_error());
    CHECK_OK(cterp_train_config_set(&c, "training-tokens", "1e6"));
    CHECK(c.training_tokens == 1000000);
    CHECK_OK(cterp_train_config_set(&c, "use_ghost_grads", "true"));
    CHECK(c.use_ghost_grads == 1);
    // presets
    CHECK_OK(cterp_train_config_preset(&c, "mlxterp"));
    CHECK(c.architecture == CTERP_ARCH_TOPK && c.expansion_factor == 32 && c.k == 128);
    CHECK(fabsf(c.lr - 3e-4f) < 1e-9f && c.lr_scheduler == CTERP_LR_COSINE && c.use_ghost_grads);
    CHECK(c.feature_sampling_window == 1000 && c.dead_feature_window == 5000);
    CHECK_OK(cterp_train_config_preset(&c, "saelens"));
    CHECK(c.lr_scheduler == CTERP_LR_CONSTANT && c.dead_feature_window == 1000 &&
          c.feature_sampling_window == 2000 && c.batch_size == 4096);
    CHECK(cterp_train_config_preset(&c, "pytorch") == CTERP_EINVAL);
    // JSON: round trip through the writer, and a bad file
    const char *dir = test_tmpdir("train-config");
    char *p = file_join(dir, "c.json");
    cterp_train_config a, b;
    cterp_train_config_default(&a);
    a.architecture = CTERP_ARCH_JUMPRELU, a.lr = 2.5e-4f, a.seed = 123456789012345ULL, a.lr_decay_steps = 77;
    FILE *f = fopen(p, "w");
    cterp_train_config_write_json(&a, f);
    fclose(f);
    cterp_train_config_default(&b);
    CHECK_OK(cterp_train_config_load_json(&b, p));
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    a.architecture = CTERP_ARCH_MATRYOSHKA_BATCHTOPK; // the widths go out as a JSON list and back
    a.n_matryoshka_widths = 3, a.matryoshka_widths[0] = 8, a.matryoshka_widths[1] = 96,
    a.matryoshka_widths[2] = 4096;
    f = fopen(p, "w");
    cterp_train_config_write_json(&a, f);
    fclose(f);
    cterp_train_config_default(&b);
    CHECK_OK(cterp_train_config_load_json(&b, p));
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    write_text(p, "{\"architecture\": \"matryoshka_batchtopk\", \"matryoshka_widths\": [32, 16]}");
    CHECK_OK(cterp_train_config_load_json(&b, p)); // read as given; validation names the order
    CHECK(b.n_matryoshka_widths == 2 && b.matryoshka_widths[0] == 32 && b.matryoshka_widths[1] == 16);
    expect_invalid(&b, "matryoshka_widths", "got 16 after 32");
    write_text(p, "{\"matryoshka_widths\": [32, \"x\"]}");
    CHECK(cterp_train_config_load_json(&b, p) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "c.json: matryoshka_widths"), "%s", cterp_last_error());
    write_text(p, "{\"matryoshka_widths\": [32.5]}");
    CHECK(cterp_train_config_load_json(&b, p) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "matryoshka_widths: got '32.5'"), "%s", cterp_last_error());
    f = fopen(p, "w");
    fputs("{\"preset\": \"mlxterp\", \"k\": 16, \"lr_scheduler\": \"warp\"}", f);
    fclose(f);
    CHECK(cterp_train_config_load_json(&b, p) == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), "c.json") && strstr(cterp_last_error(), "warp"));
    f = fopen(p, "w");
    fputs("{\"k\": 16,", f);
    fclose(f);
    CHECK(cterp_train_config_load_json(&b, p) == CTERP_EFORMAT);
    // an array or object as a value: an error naming the field (the message was built from freed
    // memory once: ASan's build of this test catches a regression)
    write_text(p, "{\"d_sae\": [1], \"k\": {}}");
    CHECK(cterp_train_config_load_json(&b, p) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(),
                     "c.json: d_sae: got an array, expected a string, number or boolean"),
              "%s", cterp_last_error());
    write_text(p, "{\"k\": {\"x\": 1}}");
    CHECK(cterp_train_config_load_json(&b, p) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "k: got an object"), "%s", cterp_last_error());
    write_text(p, "{\"preset\": \"pytorch\"}");
    CHECK(cterp_train_config_load_json(&b, p) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "c.json: preset: got 'pytorch'"), "%s",
              cterp_last_error());
    free(p);
}

static int params_equal(const cterp_trainer *a, const cterp_trainer *b) {
    const cterp_sae *x = cterp_trainer_sae(a), *y = cterp_trainer_sae(b);
    return x->n_params == y->n_params && !memcmp(x->params, y->params, x->n_params * sizeof(float));
}

// bf16: 1 the bf16 encoder, 2 the same with the GEMM fused with the top-k forced (topk)
static void test_resume(cterp_arch arch, int ghost, int bf16) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    CHECK_OK(cterp_toy_create(&toy, &tc));
    cterp_train_config c;
    small_cfg(&c, arch, 40);
    c.use_ghost_grads = ghost;
    c.encoder_bf16 = bf16 != 0;
    c.dead_feature_window = 5; // dead latents early, so revival code runs before the checkpoint
    const int pairs = arch == CTERP_ARCH_TRANSCODER || arch == CTERP_ARCH_SKIP_TRANSCODER;
    c.normalize_activations = !pairs; // not supported with transcoders
    c.checkpoint_every = 20;
    const char *dir = test_tmpdir("resume");
    char out1[600], out2[600], ck[700];
    snprintf(out1, sizeof out1, "%s/straight", dir);
    snprintf(out2, sizeof out2, "%s/resumed", dir);
    cterp_act_source s1, s2, s3;
    if (pairs) {
        mlp_source(&s1, toy), mlp_source(&s2, toy), mlp_source(&s3, toy);
    } else {
        cterp_toy_source(&s1, toy);
        cterp_toy_source(&s2, toy);
        cterp_toy_source(&s3, toy);
    }
    cterp_trainer *a, *b, *r;
    CHECK_OK(cterp_trainer_create(&a, &c, &s1));
    if (bf16 == 2) cterp_trainer_bench_fuse_mode(a, 1);
    cterp_trainer_set_output(a, out1, NULL, NULL);
    CHECK_OK(cterp_trainer_run(a, 0));
    // same seed, separate run: identical (determinism)
    CHECK_OK(cterp_trainer_create(&b, &c, &s2));
    if (bf16 == 2) cterp_trainer_bench_fuse_mode(b, 1);
    cterp_trainer_set_output(b, out2, NULL, NULL);
    CHECK_OK(cterp_trainer_run(b, 20)); // writes checkpoints/step_20
    cterp_trainer_free(b);
    snprintf(ck, sizeof ck, "%s/checkpoints/step_20", out2);
    CHECK(file_is_dir(ck));
    CHECK_OK(cterp_trainer_resume(&r, ck, &s3));
    if (r) {
        if (bf16 == 2) cterp_trainer_bench_fuse_mode(r, 1);
        CHECK(cterp_trainer_step(r) == 20);
        cterp_trainer_set_output(r, out2, NULL, NULL);
        CHECK_OK(cterp_trainer_run(r, 0));
        CHECK_MSG(params_equal(a, r), "%s%s%s: N + resume + N differs from 2N straight", cterp_arch_name(arch),
                  ghost ? " + ghost grads" : "", bf16 == 2 ? " + encoder_bf16 fused" : bf16 ? " + encoder_bf16" : "");
        cterp_trainer_free(r);
    }
    // the checkpoint's SAE directory loads as an SAE, of the architecture SAELens saves it as
    cterp_sae *sae = NULL;
    CHECK_OK(cterp_sae_load(ck, &sae));
    if (sae) {
        const cterp_arch want = arch == CTERP_ARCH_BATCHTOPK || arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK
                                    ? CTERP_ARCH_JUMPRELU : arch;
        CHECK_MSG(sae->arch == want, "%s: checkpoint saved as %s", cterp_arch_name(arch), cterp_arch_name(sae->arch));
    }
    cterp_sae_free(sae);
    { // matryoshka logs its inner prefixes' loss; the others have none
        char *mp = file_join(out1, "metrics.jsonl"), *txt = NULL;
        size_t n = 0;
        CHECK_OK(file_read_all(mp, &txt, &n));
        CHECK((txt && strstr(txt, "\"inner_mse_loss\": ")) == (arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK));
        free(txt), free(mp);
    }
    cterp_trainer_free(a);
    cterp_act_source_free(&s1), cterp_act_source_free(&s2), cterp_act_source_free(&s3);
    cterp_toy_free(toy);
}

// k annealing (dictionary_learning's k_anneal_steps): the schedule against values pinned from its
// Python expression int(k_start * (1 - r) + k * r), r = min(step, A) / A (f64, truncated; e.g.
// 64 -> 4 over 10 steps gives 15 at step 8 where exact arithmetic gives 16), and the errors.
static void test_k_anneal_config(void) {
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_TOPK, 40);
    CHECK(cterp_train_config_k_at(&c, 32, 0) == 4 && cterp_train_config_k_at(&c, 32, 39) == 4); // off
    c.k_anneal_steps = 20; // k_anneal_start 0: d_in (32)
    CHECK_OK(cterp_train_config_validate(&c, 32));
    const int64_t s1[] = {0, 1, 5, 10, 19, 20, 39};
    const int want1[] = {32, 30, 25, 18, 5, 4, 4};
    for (int i = 0; i < 7; i++)
        CHECK_MSG(cterp_train_config_k_at(&c, 32, s1[i]) == want1[i], "step %lld: k %d, expected %d",
                  (long long)s1[i], cterp_train_config_k_at(&c, 32, s1[i]), want1[i]);
    c.k_anneal_steps = 10, c.k_anneal_start = 64;
    const int64_t s2[] = {0, 7, 8, 9, 10, 11};
    const int want2[] = {64, 22, 15, 9, 4, 4};
    for (int i = 0; i < 6; i++)
        CHECK_MSG(cterp_train_config_k_at(&c, 32, s2[i]) == want2[i], "step %lld: k %d, expected %d",
                  (long long)s2[i], cterp_train_config_k_at(&c, 32, s2[i]), want2[i]);
    c.d_sae = 4096, c.k = 32, c.k_anneal_steps = 1000, c.k_anneal_start = 0, c.training_steps = 2000;
    const int64_t s3[] = {1, 3, 7, 333, 999};
    const int want3[] = {767, 765, 762, 522, 32};
    for (int i = 0; i < 5; i++) CHECK(cterp_train_config_k_at(&c, 768, s3[i]) == want3[i]);
    // errors name the field, the value and what is allowed
    small_cfg(&c, CTERP_ARCH_TOPK, 40);
    c.k_anneal_steps = -1;
    expect_invalid(&c, "k_anneal_steps", "got -1, expected >= 0");
    c.k_anneal_steps = 40;
    expect_invalid(&c, "k_anneal_steps", "got 40, expected < the training steps (40)");
    c.k_anneal_steps = 10, c.k_anneal_start = 4;
    expect_invalid(&c, "k_anneal_start", "got 4, expected > k (4)");
    c.k_anneal_start = 129;
    expect_invalid(&c, "k_anneal_start", "expected <= d_sae (128)");
    c.k_anneal_start = -2;
    expect_invalid(&c, "k_anneal_start", "got -2, expected >= 0");
    c.k_anneal_start = 0, c.k = 40; // d_in (32) is not above k
    expect_invalid(&c, "k_anneal_start", "got 0 (d_in 32), expected > k (40)");
    c.k = 4, c.d_sae = 16; // nor is it within a d_sae smaller than d_in
    expect_invalid(&c, "k_anneal_start", "got 0 (d_in 32), expected <= d_sae (16)");
    small_cfg(&c, CTERP_ARCH_STANDARD, 40);
    c.k_anneal_steps = 10;
    expect_invalid(&c, "k_anneal_steps", "architecture standard");
    small_cfg(&c, CTERP_ARCH_BATCHTOPK, 40);
    c.k_anneal_start = 64;
    expect_invalid(&c, "k_anneal_start", "with k_anneal_steps 0");
    CHECK(cterp_train_config_set(&c, "k-anneal-steps", "2.5") == CTERP_EINVAL);
    CHECK_OK(cterp_train_config_set(&c, "k-anneal-steps", "10"));
    CHECK_OK(cterp_train_config_validate(&c, 32));
    small_cfg(&c, CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 40);
    c.k_anneal_steps = 10;
    CHECK_OK(cterp_train_config_validate(&c, 32));
    // JSON round trip
    const char *dir = test_tmpdir("k-anneal-config");
    char *p = file_join(dir, "c.json");
    cterp_train_config b;
    c.k_anneal_start = 100;
    FILE *f = fopen(p, "w");
    cterp_train_config_write_json(&c, f);
    fclose(f);
    cterp_train_config_default(&b);
    CHECK_OK(cterp_train_config_load_json(&b, p));
    CHECK(b.k_anneal_steps == 10 && b.k_anneal_start == 100 && memcmp(&b, &c, sizeof b) == 0);
    free(p);
}

// The value of "key": N on the metrics line of `step` (-1 if absent).
static long long metrics_value(const char *txt, long long step, const char *key) {
    char pre[48], k[48];
    snprintf(pre, sizeof pre, "{\"step\": %lld,", step);
    snprintf(k, sizeof k, "\"%s\": ", key);
    for (const char *line = txt; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (!strncmp(line, pre, strlen(pre))) {
            const char *v = strstr(line, k);
            return v && (!nl || v < nl) ? strtoll(v + strlen(k), NULL, 10) : -1;
        }
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

// Training with k annealing: every metrics line has the step's k, the l0 follows it (topk), the
// saved SAE has the final k, batchtopk's inference threshold waits for the final k, and a run
// resumed from a checkpoint in the middle of the anneal is bit-identical to a straight one.
// bf16: 1 the bf16 encoder, 2 the same with the GEMM fused with the top-k forced (topk)
static void test_k_anneal_train(cterp_arch arch, int bf16) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    CHECK_OK(cterp_toy_create(&toy, &tc));
    cterp_train_config c;
    small_cfg(&c, arch, 40);
    c.k_anneal_steps = 30, c.k_anneal_start = 48;
    c.log_every = 1, c.checkpoint_every = 20, c.dead_feature_window = 5;
    c.encoder_bf16 = bf16 != 0;
    const char *dir = test_tmpdir("k-anneal");
    char out1[600], out2[600], ck[700];
    snprintf(out1, sizeof out1, "%s/straight", dir);
    snprintf(out2, sizeof out2, "%s/resumed", dir);
    cterp_act_source s1, s2, s3;
    cterp_toy_source(&s1, toy), cterp_toy_source(&s2, toy), cterp_toy_source(&s3, toy);
    cterp_trainer *a, *b, *r = NULL;
    CHECK_OK(cterp_trainer_create(&a, &c, &s1));
    if (bf16 == 2) cterp_trainer_bench_fuse_mode(a, 1);
    cterp_trainer_set_output(a, out1, NULL, NULL);
    CHECK_OK(cterp_trainer_run(a, 0));
    CHECK(cterp_trainer_last_metrics(a)->k == 4);
    CHECK_OK(cterp_trainer_save(a, out1));
    CHECK_OK(cterp_trainer_create(&b, &c, &s2));
    if (bf16 == 2) cterp_trainer_bench_fuse_mode(b, 1);
    cterp_trainer_set_output(b, out2, NULL, NULL);
    CHECK_OK(cterp_trainer_run(b, 20)); // checkpoints/step_20: k 48 -> 4 is a third of the way
    CHECK(cterp_trainer_last_metrics(b)->k == cterp_train_config_k_at(&c, 32, 19));
    if (arch != CTERP_ARCH_TOPK) // the threshold waits for the final k (step 30)
        CHECK_MSG(b->topk_threshold == 0, "%s: threshold %g during the anneal", cterp_arch_name(arch),
                  b->topk_threshold);
    cterp_trainer_free(b);
    snprintf(ck, sizeof ck, "%s/checkpoints/step_20", out2);
    CHECK_OK(cterp_trainer_resume(&r, ck, &s3));
    if (r) {
        if (bf16 == 2) cterp_trainer_bench_fuse_mode(r, 1);
        CHECK(r->cfg.k_anneal_steps == 30 && r->cfg.k_anneal_start == 48);
        cterp_trainer_set_output(r, out2, NULL, NULL);
        CHECK_OK(cterp_trainer_run(r, 0));
        CHECK_MSG(params_equal(a, r), "%s%s: k annealing: 20 + resume + 20 differs from 40 straight",
                  cterp_arch_name(arch), bf16 == 2 ? " (bf16, fused)" : bf16 ? " (bf16)" : "");
        CHECK(r->topk_threshold == a->topk_threshold);
        if (arch != CTERP_ARCH_TOPK) CHECK(a->topk_threshold > 0);
        cterp_trainer_free(r);
    }
    // metrics.jsonl: the k of each step (the line of step m is step index m - 1's), in both runs
    for (int run = 0; run < 2; run++) {
        char *mp = file_join(run ? out2 : out1, "metrics.jsonl"), *txt = NULL;
        CHECK_OK(file_read_all(mp, &txt, NULL));
        for (long long m = 1; txt && m <= 40; m++) {
            const long long k = metrics_value(txt, m, "k"), want = cterp_train_config_k_at(&c, 32, m - 1);
            CHECK_MSG(k == want, "%s run %d, step %lld: k %lld in metrics.jsonl, expected %lld",
                      cterp_arch_name(arch), run, m, k, want);
        }
        if (txt && arch == CTERP_ARCH_TOPK) { // a token has at most k positive; most have more here
            const char *l = strstr(txt, "{\"step\": 1,"), *l0 = l ? strstr(l, "\"l0\": ") : NULL;
            CHECK_MSG(l0 && atof(l0 + 6) > 40 && atof(l0 + 6) <= 48, "topk: l0 %g at step 1, expected "
                      "40..48", l0 ? atof(l0 + 6) : -1.0);
        }
        free(txt), free(mp);
    }
    // the saved SAE and the checkpoint's: topk has k in cfg.json (the final one; the checkpoint's
    // the k of its last step; cterp_sae_load reads it there); the config is in the checkpoint
    cterp_sae *sae = NULL;
    if (arch == CTERP_ARCH_TOPK) {
        CHECK_OK(cterp_sae_load(out1, &sae));
        CHECK(sae && sae->k == 4);
        cterp_sae_free(sae), sae = NULL;
        CHECK_OK(cterp_sae_load(ck, &sae));
        CHECK(sae && sae->k == cterp_train_config_k_at(&c, 32, 19));
        cterp_sae_free(sae);
    }
    char *cp = file_join(ck, "train_config.json"), *txt = NULL;
    CHECK_OK(file_read_all(cp, &txt, NULL));
    CHECK(txt && strstr(txt, "\"k_anneal_steps\": 30") && strstr(txt, "\"k_anneal_start\": 48"));
    free(txt), free(cp);
    cterp_trainer_free(a);
    cterp_act_source_free(&s1), cterp_act_source_free(&s2), cterp_act_source_free(&s3);
    cterp_toy_free(toy);
}

static void test_bad_checkpoint(void) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    cterp_act_source src;
    cterp_toy_source(&src, toy);
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_TOPK, 10);
    const char *dir = test_tmpdir("badck");
    char ck[600], path[700];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    cterp_trainer *t, *r = NULL;
    cterp_status s;
    cterp_trainer_create(&t, &c, &src);
    cterp_trainer_run(t, 5);
    CHECK_OK(cterp_trainer_checkpoint(t, ck));
    CHECK_OK(cterp_trainer_checkpoint(t, ck)); // overwriting an existing checkpoint works
    cterp_trainer_free(t);
    // truncated state
    snprintf(path, sizeof path, "%s/trainer_state.safetensors", ck);
    char *data;
    size_t n;
    CHECK_OK(file_read_all(path, &data, &n));
    CHECK_OK(file_write_all(path, data, n / 2));
    CHECK(cterp_trainer_resume(&r, ck, &src) == CTERP_EFORMAT && r == NULL);
    CHECK_MSG(strstr(cterp_last_error(), "trainer_state.safetensors") != NULL, "%s", cterp_last_error());
    CHECK_OK(file_write_all(path, data, n));
    free(data);
    // a config that asks for 100000 OpenMP threads (fuzz_checkpoint_config, crafted): refused
    // naming the field, before the first step would start them
    snprintf(path, sizeof path, "%s/train_config.json", ck);
    CHECK_OK(file_read_all(path, &data, &n));
    char *th = strstr(data, "\"threads\": 0,");
    CHECK(th != NULL);
    if (th) {
        char *edited = malloc(n + 16);
        snprintf(edited, n + 16, "%.*s\"threads\": 100000,%s", (int)(th - data), data,
                 th + strlen("\"threads\": 0,"));
        write_text(path, edited);
        free(edited);
        remanifest(ck);
        s = cterp_trainer_resume(&r, ck, &src);
        CHECK_MSG(s == CTERP_EINVAL && r == NULL && strstr(cterp_last_error(), "threads: got 100000"),
                  "%s", cterp_last_error());
    }
    CHECK_OK(file_write_all(path, data, n));
    remanifest(ck);
    free(data);
    // a config that does not match the state (other d_sae)
    snprintf(path, sizeof path, "%s/train_config.json", ck);
    write_text(path, "{\"d_sae\": 64, \"k\": 4, \"batch_size\": 512, \"training_steps\": 10}");
    s = cterp_trainer_resume(&r, ck, &src);
    CHECK_MSG(s == CTERP_EFORMAT && strstr(cterp_last_error(), "checkpoint.json describes") &&
                  strstr(cterp_last_error(), "train_config.json"),
              "%s", cterp_last_error()); // the manifest sees the file changed
    remanifest(ck);
    s = cterp_trainer_resume(&r, ck, &src);
    CHECK_MSG(s != CTERP_OK && r == NULL && strstr(cterp_last_error(), "d_sae"), "%s",
              cterp_last_error());
    CHECK(cterp_trainer_resume(&r, "/nonexistent/ck", &src) == CTERP_EIO);
    // a config that says a huge d_sae (10 GB of parameters at d_in 32): refused naming d_sae by the
    // state's sizes before anything is allocated (quickly, without the memory)
    write_text(path,
               "{\"d_sae\": 39999976, \"k\": 4, \"batch_size\": 512, \"training_steps\": 10}");
    remanifest(ck);
    // CPU seconds, not wall: a loaded machine stretches the wall time of a fast refusal
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    long rss0 = peak_rss_kb();
    s = cterp_trainer_resume(&r, ck, &src);
    CHECK_MSG(s == CTERP_EFORMAT && r == NULL && strstr(cterp_last_error(), "d_sae 128") &&
                  strstr(cterp_last_error(), "39999976"),
              "%s", cterp_last_error());
    // the state says so too: its tensors, which the file holds, refuse it
    char state[700];
    snprintf(state, sizeof state, "%s/trainer_state.safetensors", ck);
    patch_u64(state, "state_i64", 5, 39999976);
    s = cterp_trainer_resume(&r, ck, &src);
    CHECK_MSG(s == CTERP_EFORMAT && r == NULL &&
                  strstr(cterp_last_error(), "tensor params: expected shape") &&
                  strstr(cterp_last_error(), "d_sae 39999976"),
              "%s", cterp_last_error());
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double dt = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    long drss = peak_rss_kb() - rss0;
    CHECK_MSG(dt < 1.0 && drss < 32 * 1024, "refusing a huge d_sae took %.3f CPU s and %ld kB", dt,
              drss);
    cterp_act_source_free(&src);
    cterp_toy_free(toy);
}

// A checkpoint is whole only with its manifest, written last; leftovers of a killed write do not
// block the next one; a second trainer on the same output directory is refused naming the first.
static void test_checkpoint_complete(void) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    cterp_act_source src;
    cterp_toy_source(&src, toy);
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_TOPK, 10);
    const char *dir = test_tmpdir("ckwhole");
    char ck[600], p[700];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    cterp_trainer *t, *r = NULL, *u = NULL;
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    CHECK_OK(cterp_trainer_run(t, 3));
    // a killed writer's temporaries in <ck>.tmp: the next checkpoint clears them
    snprintf(p, sizeof p, "%s.tmp", ck);
    CHECK_OK(file_mkdirs(p));
    snprintf(p, sizeof p, "%s.tmp/sae_weights.safetensors.tmp.99999", ck);
    write_text(p, "partial");
    snprintf(p, sizeof p, "%s.tmp/cfg.json", ck);
    write_text(p, "{");
    CHECK_OK(cterp_trainer_checkpoint(t, ck));
    snprintf(p, sizeof p, "%s.tmp", ck);
    CHECK(!file_exists(p));
    CHECK_OK(cterp_checkpoint_check(ck));
    // without its manifest a directory is not a checkpoint, whatever else it holds
    snprintf(p, sizeof p, "%s/checkpoint.json", ck);
    CHECK(unlink(p) == 0);
    CHECK(cterp_checkpoint_check(ck) == CTERP_EFORMAT);
    CHECK(cterp_trainer_resume(&r, ck, &src) == CTERP_EFORMAT && r == NULL);
    CHECK_MSG(strstr(cterp_last_error(),
                     "not a complete checkpoint: checkpoint.json, written last, is missing"),
              "%s", cterp_last_error());
    // a file shorter than the manifest says
    CHECK_OK(cterp_trainer_checkpoint(t, ck));
    snprintf(p, sizeof p, "%s/sae_weights.safetensors", ck);
    CHECK(truncate(p, 100) == 0);
    CHECK(cterp_trainer_resume(&r, ck, &src) == CTERP_EFORMAT && r == NULL);
    CHECK_MSG(strstr(cterp_last_error(),
                     "sae_weights.safetensors: not the checkpoint its checkpoint.json describes") &&
                  strstr(cterp_last_error(), "found 100 bytes"),
              "%s", cterp_last_error());
    // one writer per output directory
    snprintf(p, sizeof p, "%s/out", dir);
    cterp_trainer_set_output(t, p, NULL, NULL);
    CHECK_OK(cterp_trainer_run(t, 4));
    CHECK_OK(cterp_trainer_create(&u, &c, &src));
    cterp_trainer_set_output(u, p, NULL, NULL);
    CHECK(cterp_trainer_run(u, 1) == CTERP_EIO);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d holds", (int)getpid());
    CHECK_MSG(strstr(cterp_last_error(), "in use by another cterp process") &&
                  strstr(cterp_last_error(), pid),
              "%s", cterp_last_error());
    cterp_trainer_free(t); // releases it
    CHECK_OK(cterp_trainer_run(u, 1));
    cterp_trainer_free(u);
    cterp_act_source_free(&src);
    cterp_toy_free(toy);
}

// A checkpoint's data position that claims more rows than the trainer took (its steps and the
// input-scale batches, times its batch) is refused before the source replays anything.
static void test_checkpoint_rows(void) {
    enum { R = 50, C = 32 };
    const char *dir = test_tmpdir("ckrows");
    char npy[600], ck[700], state[800];
    snprintf(npy, sizeof npy, "%s/a.npy", dir);
    snprintf(ck, sizeof ck, "%s/ck", dir);
    snprintf(state, sizeof state, "%s/trainer_state.safetensors", ck);
    float v[R * C];
    for (int q = 0; q < R * C; q++) v[q] = (float)((q * 7919) % 101) / 50.0f - 1.0f;
    CHECK_OK(npy_write_f32(npy, v, R, C));
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_TOPK, 10);
    c.normalize_activations = 1, c.norm_estimate_batches = 3;
    cterp_act_source src;
    cterp_trainer *t, *r = NULL;
    CHECK_OK(cterp_act_source_file(&src, npy, 0, c.seed));
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    CHECK_OK(cterp_trainer_run(t, 2));
    CHECK_OK(cterp_trainer_checkpoint(t, ck)); // (3 + 2) * 512 rows: epoch 51, row 10
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
    CHECK_OK(cterp_act_source_file(&src, npy, 0, c.seed));
    CHECK_OK(cterp_trainer_resume(&r, ck, &src));
    CHECK(r && cterp_trainer_step(r) == 2);
    cterp_trainer_free(r);
    patch_u64(state, "source_state", 1, 52); // epoch 52: 2610 rows
    CHECK(cterp_trainer_resume(&r, ck, &src) == CTERP_EFORMAT && r == NULL);
    CHECK_MSG(strstr(cterp_last_error(), "epoch 52, row 10: more rows than the 2560 taken"), "%s",
              cterp_last_error());
    cterp_act_source_free(&src);
}

// a source that yields NaN at a given batch
typedef struct {
    cterp_act_source inner;
    int64_t n, bad_at, pos; // pos < 0: the batch's last value
    float val;
} nan_src;

static cterp_status nan_next(void *ctx, float *x, int64_t B) {
    nan_src *s = ctx;
    cterp_status st = s->inner.next(s->inner.ctx, x, B);
    if (s->n++ == s->bad_at) x[s->pos >= 0 ? s->pos : B * s->inner.d_in - 1] = s->val;
    return st;
}

// +Inf as the very last value of a batch (the tail of the check's last chunk)
static void test_inf_last(void) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    nan_src ns = {.n = 0, .bad_at = 2, .pos = -1, .val = INFINITY};
    cterp_toy_source(&ns.inner, toy);
    cterp_act_source src = ns.inner;
    src.ctx = &ns, src.next = nan_next, src.free = NULL;
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_TOPK, 5);
    cterp_trainer *t;
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    CHECK(cterp_trainer_run(t, 0) == CTERP_ENAN);
    char want[96];
    snprintf(want, sizeof want, "row %lld of the batch, column %lld (inf)",
             (long long)(c.batch_size - 1), (long long)(ns.inner.d_in - 1));
    CHECK_MSG(strstr(cterp_last_error(), "step 2") && strstr(cterp_last_error(), want), "%s", cterp_last_error());
    cterp_trainer_free(t);
    cterp_act_source_free(&ns.inner);
    cterp_toy_free(toy);
}

static void test_nan(void) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    nan_src ns = {.n = 0, .bad_at = 7, .pos = 3, .val = NAN};
    cterp_toy_source(&ns.inner, toy);
    cterp_act_source src = ns.inner;
    src.ctx = &ns;
    src.next = nan_next;
    src.free = NULL;
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_TOPK, 20);
    c.checkpoint_every = 5;
    const char *dir = test_tmpdir("nan");
    cterp_trainer *t;
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    cterp_trainer_set_output(t, dir, NULL, NULL);
    cterp_status s = cterp_trainer_run(t, 0);
    CHECK(s == CTERP_ENAN);
    CHECK_MSG(strstr(cterp_last_error(), "step 7: a non-finite activation at toy") &&
                  strstr(cterp_last_error(), "row 0 of the batch, column 3 (nan)") &&
                  strstr(cterp_last_error(), "the last checkpoint is kept"),
              "%s", cterp_last_error());
    char ck[600];
    snprintf(ck, sizeof ck, "%s/checkpoints/step_5/sae_weights.safetensors", dir);
    CHECK(file_exists(ck)); // the last checkpoint is kept
    cterp_trainer_free(t);
    cterp_act_source_free(&ns.inner);
    cterp_toy_free(toy);
}

// A NaN weight stops training naming the parameter and the latent (and the column), by the loss
// it makes non-finite or by the gradient; the last checkpoint is kept.
static void test_nonfinite_param(void) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    static const cterp_arch archs[] = {CTERP_ARCH_STANDARD, CTERP_ARCH_TOPK, CTERP_ARCH_JUMPRELU};
    for (int a = 0; a < 4; a++) {
        cterp_act_source src;
        cterp_toy_source(&src, toy);
        cterp_train_config c;
        small_cfg(&c, archs[a < 3 ? a : 2], 20);
        c.checkpoint_every = 5;
        char name[32];
        snprintf(name, sizeof name, "nanparam%d", a);
        const char *dir = test_tmpdir(name);
        cterp_trainer *t;
        CHECK_OK(cterp_trainer_create(&t, &c, &src));
        cterp_trainer_set_output(t, dir, NULL, NULL);
        CHECK_OK(cterp_trainer_run(t, 6));
        const int64_t D = t->sae->d_in;
        const char *want;
        if (a < 3) { // a weight of W_enc: latent 3's encoder row, input column 5
            t->sae->W_enc[3 * D + 5] = NAN;
            want = "W_enc at latent 3, input column 5 (nan)";
        } else { // jumprelu's threshold of latent 2: the loss stays finite, its gradient does not
            t->log_thr[2] = t->sae->threshold[2] = NAN;
            want = "threshold at latent 2 (nan)";
        }
        CHECK(cterp_trainer_run(t, 0) == CTERP_ENAN);
        const char *e = cterp_last_error();
        CHECK_MSG(strstr(e, "step 6: ") && strstr(e, want) &&
                      strstr(e, "the last checkpoint is kept"),
                  "%s", e);
        if (a == 3)
            CHECK_MSG(strstr(e, "the gradient of threshold (its log) at latent 2 (nan)"), "%s", e);
        char ck[600];
        snprintf(ck, sizeof ck, "%s/checkpoints/step_5/sae_weights.safetensors", dir);
        CHECK(file_exists(ck));
        cterp_trainer_free(t);
        cterp_act_source_free(&src);
    }
    cterp_toy_free(toy);
}

// A row with a NaN in a .npy file: training stops naming the step, the row and the column; with
// skip_nonfinite_rows the row is skipped (counted in the metrics and the checkpoint) and a
// resumed run equals a straight one.
static void test_skip_nonfinite(void) {
    enum { R = 64, C = 16 };
    const char *dir = test_tmpdir("skipnan");
    char npy[600], ck[700];
    snprintf(npy, sizeof npy, "%s/a.npy", dir);
    snprintf(ck, sizeof ck, "%s/ck", dir);
    float v[R * C];
    for (int q = 0; q < R * C; q++) v[q] = (float)((q * 7919) % 101) / 50.0f - 1.0f;
    v[10 * C + 5] = NAN;
    CHECK_OK(npy_write_f32(npy, v, R, C));
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_TOPK, 20);
    c.d_sae = 32, c.batch_size = 8; // 160 rows: the NaN row comes in each of the 3 epochs
    cterp_act_source src;
    cterp_trainer *a, *b, *r;
    CHECK_OK(cterp_act_source_file(&src, npy, 0, c.seed));
    CHECK_OK(cterp_trainer_create(&a, &c, &src));
    CHECK(cterp_trainer_run(a, 0) == CTERP_ENAN);
    CHECK_MSG(strstr(cterp_last_error(), "a non-finite activation at") &&
                  strstr(cterp_last_error(), "column 5 (nan)") &&
                  strstr(cterp_last_error(), "--skip-nonfinite-rows"),
              "%s", cterp_last_error());
    cterp_trainer_free(a);
    cterp_act_source_free(&src);
    CHECK_OK(cterp_train_config_set(&c, "skip-nonfinite-rows", "true"));
    CHECK_OK(cterp_act_source_file(&src, npy, 0, c.seed));
    CHECK_OK(cterp_trainer_create(&a, &c, &src));
    CHECK_OK(cterp_trainer_run(a, 0));
    const int64_t skipped = cterp_trainer_last_metrics(a)->nonfinite_rows_skipped;
    CHECK_MSG(skipped >= 2 && skipped <= 3, "skipped %lld rows", (long long)skipped);
    cterp_act_source_free(&src);
    CHECK_OK(cterp_act_source_file(&src, npy, 0, c.seed));
    CHECK_OK(cterp_trainer_create(&b, &c, &src));
    CHECK_OK(cterp_trainer_run(b, 11));
    CHECK_OK(cterp_trainer_checkpoint(b, ck));
    cterp_trainer_free(b);
    cterp_act_source_free(&src);
    CHECK_OK(cterp_act_source_file(&src, npy, 0, c.seed));
    CHECK_OK(cterp_trainer_resume(&r, ck, &src));
    CHECK_OK(cterp_trainer_run(r, 0));
    CHECK(params_equal(a, r));
    CHECK(cterp_trainer_last_metrics(r)->nonfinite_rows_skipped == skipped);
    cterp_trainer_free(r);
    cterp_trainer_free(a);
    cterp_act_source_free(&src);
}

// Each architecture recovers the small toy's features (MMCS >= 0.95).
static void test_recovery(cterp_arch arch, int bf16) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    cterp_act_source src;
    cterp_toy_source(&src, toy);
    cterp_train_config c;
    small_cfg(&c, arch, 800);
    c.lr = 3e-3f;
    c.encoder_bf16 = bf16 != 0;
    if (arch == CTERP_ARCH_STANDARD || arch == CTERP_ARCH_GATED)
        c.l1_coefficient = 0.3f, c.sparsity_warm_up_steps = 100;
    // the inner prefixes pull their latents towards directions that serve many features at once;
    // the rest of the SAE needs longer to separate them (0.948 at 800 steps, 0.967 at 1600)
    if (arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK) c.training_steps = 1600;
    if (arch == CTERP_ARCH_JUMPRELU) { // thresholds learn slowly: more steps, larger initial z
        c.training_steps = 1500;
        c.l0_coefficient = 0.3f, c.sparsity_warm_up_steps = 100;
        c.jumprelu_init_threshold = 0.1f, c.jumprelu_bandwidth = 0.1f, c.decoder_init_norm = 1.0f;
    }
    cterp_trainer *t;
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    if (bf16 == 2) cterp_trainer_bench_fuse_mode(t, 1);
    CHECK_OK(cterp_trainer_run(t, 1));
    const cterp_train_metrics first = *cterp_trainer_last_metrics(t);
    CHECK_OK(cterp_trainer_run(t, 0));
    { // training reduces the loss and each of its reconstruction terms
        const cterp_train_metrics *l = cterp_trainer_last_metrics(t);
        CHECK_MSG(l->loss < 0.5 * first.loss && l->mse_loss < 0.5 * first.mse_loss,
                  "%s: loss %g -> %g, mse %g -> %g", cterp_arch_name(arch), first.loss, l->loss, first.mse_loss,
                  l->mse_loss);
        if (arch == CTERP_ARCH_MATRYOSHKA_BATCHTOPK)
            CHECK_MSG(first.inner_mse_loss > 0 && l->inner_mse_loss < 0.5 * first.inner_mse_loss,
                      "matryoshka: inner mse %g -> %g", first.inner_mse_loss, l->inner_mse_loss);
        if (arch == CTERP_ARCH_GATED)
            CHECK_MSG(first.aux_loss > 0 && l->aux_loss < 0.5 * first.aux_loss, "gated: aux loss %g -> %g",
                      first.aux_loss, l->aux_loss);
    }
    cterp_sae *sae = NULL;
    CHECK_OK(cterp_trainer_export(t, &sae));
    if (sae) {
        double rev, m = cterp_mmcs(cterp_toy_features(toy), tc.n_features, sae->W_dec, sae->d_sae, tc.d, &rev);
        const cterp_train_metrics *mt = cterp_trainer_last_metrics(t);
        printf("  %-9s%s MMCS %.4f reverse %.4f EV %.4f L0 %.2f dead %.1f%%\n", cterp_arch_name(arch),
               bf16 == 2 ? " (bf16, fused)" : bf16 ? " (bf16 encoder)" : "", m, rev, mt->explained_variance, mt->l0, 100 * mt->dead_fraction);
        CHECK_MSG(m >= 0.95, "%s: MMCS %.4f < 0.95", cterp_arch_name(arch), m);
    }
    cterp_sae_free(sae);
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
    cterp_toy_free(toy);
}

// Transcoders learn the toy "MLP" (the loss falls, the skip connection takes the linear part);
// the exported and saved one computes what the training form computes; sources and configs that
// do not fit are refused naming what is wrong.
static void test_transcoder_train(cterp_arch arch) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    cterp_act_source src, plain;
    mlp_source(&src, toy);
    cterp_toy_source(&plain, toy);
    cterp_train_config c;
    small_cfg(&c, arch, 400);
    c.lr = 3e-3f, c.l1_coefficient = 0.01f, c.sparsity_warm_up_steps = 50;
    cterp_trainer *t = NULL;
    // refused: a transcoder on a plain source, an SAE on pairs, input scaling
    CHECK(cterp_trainer_create(&t, &c, &plain) == CTERP_EINVAL && !t);
    CHECK_MSG(strstr(cterp_last_error(), "no (input, target) pairs"), "%s", cterp_last_error());
    cterp_train_config c2;
    small_cfg(&c2, CTERP_ARCH_TOPK, 10);
    CHECK(cterp_trainer_create(&t, &c2, &src) == CTERP_EINVAL && !t);
    CHECK_MSG(strstr(cterp_last_error(), "train a transcoder or skip_transcoder"), "%s", cterp_last_error());
    c2 = c, c2.normalize_activations = 1;
    CHECK(cterp_trainer_create(&t, &c2, &src) == CTERP_EINVAL && !t);
    CHECK_MSG(strstr(cterp_last_error(), "normalize_activations: got true"), "%s", cterp_last_error());
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    if (!t) return;
    CHECK_OK(cterp_trainer_run(t, 1));
    const cterp_train_metrics first = *cterp_trainer_last_metrics(t);
    CHECK_OK(cterp_trainer_run(t, 0));
    const cterp_train_metrics *l = cterp_trainer_last_metrics(t);
    printf("  %-15s loss %.4g -> %.4g, EV %.4f, L0 %.2f\n", cterp_arch_name(arch), first.loss, l->loss,
           l->explained_variance, l->l0);
    CHECK_MSG(l->mse_loss < 0.25 * first.mse_loss && l->explained_variance > 0.7, "%s: mse %g -> %g, EV %g",
              cterp_arch_name(arch), first.mse_loss, l->mse_loss, l->explained_variance);
    const cterp_sae *tr = cterp_trainer_sae(t);
    CHECK(tr->d_in == 32 && tr->d_out == MLP_DO && !tr->apply_b_dec_to_input);
    if (arch == CTERP_ARCH_SKIP_TRANSCODER) {
        double sk = 0;
        for (int64_t q = 0; q < MLP_DO * 32; q++) sk += fabs(tr->W_skip[q]);
        CHECK_MSG(sk > 0, "skip_transcoder: W_skip untrained");
    }
    cterp_sae *e = NULL;
    CHECK_OK(cterp_trainer_export(t, &e));
    const char *dir = test_tmpdir("transcoder");
    char out[600];
    snprintf(out, sizeof out, "%s/%s", dir, cterp_arch_name(arch));
    CHECK_OK(cterp_trainer_save(t, out));
    cterp_sae *ld = NULL;
    CHECK_OK(cterp_sae_load(out, &ld));
    enum { TB = 32 };
    float x[TB * 32], y1[TB * MLP_DO], y2[TB * MLP_DO], y3[TB * MLP_DO];
    cterp_toy_sample(toy, 4242, x, TB, NULL);
    if (e && ld) {
        CHECK(e->arch == arch && ld->arch == arch && ld->d_out == MLP_DO);
        CHECK_OK(cterp_sae_forward(tr, x, TB, y1));
        CHECK_OK(cterp_sae_forward(e, x, TB, y2));
        CHECK_OK(cterp_sae_forward(ld, x, TB, y3));
        CHECK(!memcmp(y1, y2, sizeof y1) && !memcmp(y1, y3, sizeof y1));
    }
    cterp_sae_free(ld), cterp_sae_free(e);
    cterp_trainer_free(t);
    cterp_act_source_free(&src), cterp_act_source_free(&plain);
    cterp_toy_free(toy);
}

// gated_detach_aux_decoder reaches the gradient: one step from the same start moves W_dec
// differently, and the gradient-only parts (the encoder's) the same way up to clipping.
// The squared norms of each latent's gradient rows (the clipping norm) match the rows, the dead
// latents' included: the dead rows were once read with the input width D where the W_dec rows
// are d_out wide (16 here, D 32), so a dead latent's W_dec norm came from other latents' rows
// or, past latent (n_params - N (D + 1)) / D, from beyond the gradients (training then depended
// on the heap: runs differed at the first step with a high dead latent).
static void test_transcoder_dead_rows(cterp_arch arch) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    CHECK_OK(cterp_toy_create(&toy, &tc));
    cterp_act_source src;
    mlp_source(&src, toy);
    cterp_train_config c;
    small_cfg(&c, arch, 4);
    c.dead_feature_window = 5;
    cterp_trainer *t = NULL;
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    if (t) {
        const int64_t N = t->N, D = t->D, DO = t->DO;
        CHECK(DO != D);
        for (int64_t i = 1; i <= 3; i++) t->since_fired[i] = c.dead_feature_window; // dead before step 1
        CHECK_OK(cterp_trainer_run(t, 1));
        CHECK(t->dead[1] && t->dead[2] && t->dead[3]);
        const float *dW_enc = t->grads, *dW_dec = t->grads + N * D + N;
        int bad = 0;
        for (int64_t i = 0; i < N; i++)
            bad += t->rowsq[i] != sumsq_f64(dW_enc + i * D, D) ||
                   t->rowsq[N + i] != sumsq_f64(dW_dec + i * DO, DO);
        CHECK_MSG(!bad, "%s: %d latents' gradient row norms do not match their rows",
                  cterp_arch_name(arch), bad);
        cterp_trainer_free(t);
    }
    cterp_act_source_free(&src);
    cterp_toy_free(toy);
}

static void test_gated_detach(void) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    cterp_act_source s1, s2;
    cterp_toy_source(&s1, toy), cterp_toy_source(&s2, toy);
    cterp_train_config c;
    small_cfg(&c, CTERP_ARCH_GATED, 1);
    c.grad_clip = 0; // Adam's first step is then lr * sign(g) up to eps: compare directions
    cterp_trainer *a = NULL, *b = NULL;
    CHECK_OK(cterp_trainer_create(&a, &c, &s1));
    CHECK_OK(cterp_train_config_set(&c, "gated-detach-aux-decoder", "true"));
    CHECK(c.gated_detach_aux_decoder == 1);
    CHECK_OK(cterp_trainer_create(&b, &c, &s2));
    if (a && b) {
        CHECK_OK(cterp_trainer_run(a, 0));
        CHECK_OK(cterp_trainer_run(b, 0));
        const cterp_sae *x = cterp_trainer_sae(a), *y = cterp_trainer_sae(b);
        const size_t D = (size_t)x->d_in, N = (size_t)x->d_sae;
        CHECK(!memcmp(x->W_enc, y->W_enc, N * D * sizeof(float)));
        CHECK_MSG(memcmp(x->W_dec, y->W_dec, N * D * sizeof(float)) != 0,
                  "gated_detach_aux_decoder changed nothing in W_dec's first step");
    }
    cterp_trainer_free(a), cterp_trainer_free(b);
    cterp_act_source_free(&s1), cterp_act_source_free(&s2);
    cterp_toy_free(toy);
}

// The saved SAE (scale and decoder norms folded in) computes on raw inputs exactly what the
// training form computes on scaled inputs.
static void test_export_folding(cterp_arch arch) {
    cterp_toy_config tc;
    small_toy(&tc);
    cterp_toy *toy;
    cterp_toy_create(&toy, &tc);
    cterp_act_source src;
    cterp_toy_source(&src, toy);
    cterp_train_config c;
    small_cfg(&c, arch, 30);
    c.normalize_activations = 1;
    c.rescale_acts_by_decoder_norm = 1;
    c.l1_coefficient = 0.1f;
    c.b_dec_init = CTERP_BDEC_MEAN;
    cterp_trainer *t;
    CHECK_OK(cterp_trainer_create(&t, &c, &src));
    CHECK_OK(cterp_trainer_run(t, 0));
    double sc = cterp_trainer_input_scale(t);
    CHECK_MSG(fabs(sc - 1.0) > 0.05, "the toy's scale should not be 1 (%g): the test would be vacuous", sc);
    cterp_sae *e = NULL;
    CHECK_OK(cterp_trainer_export(t, &e));
    const cterp_sae *tr = cterp_trainer_sae(t);
    enum { B = 64 };
    const int64_t D = tr->d_in, N = tr->d_sae;
    float *x = malloc(B * D * sizeof(float)), *xs = malloc(B * D * sizeof(float));
    float *ft = malloc(B * N * sizeof(float)), *fe = malloc(B * N * sizeof(float));
    float *ht = malloc(B * D * sizeof(float)), *he = malloc(B * D * sizeof(float));
    cterp_toy_sample(toy, 999, x, B, NULL);
    for (int64_t q = 0; q < B * D; q++) xs[q] = (float)(x[q] * sc);
    CHECK_OK(cterp_sae_encode(tr, xs, B, ft));
    CHECK_OK(cterp_sae_decode(tr, ft, B, ht));
    CHECK_OK(cterp_sae_encode(e, x, B, fe));
    CHECK_OK(cterp_sae_decode(e, fe, B, he));
    double df = 0, dh = 0, nh = 0;
    // folding the decoder norms after the scale expresses topk activations in units of the raw
    // input (SAELens folds in the same order): training activation / scale
    double af = arch == CTERP_ARCH_TOPK ? 1.0 / sc : 1.0; // gated: its magnitudes do not change
    if (arch == CTERP_ARCH_GATED) { // the test only means something with a trained r_mag, b_mag
        double rs = 0;
        for (int64_t i = 0; i < N; i++) rs += fabs(tr->r_mag[i]) + fabs(tr->b_mag[i]);
        CHECK_MSG(rs > 0, "gated: r_mag and b_mag untrained");
    }
    // max by comparison, not fmax: GCC 12 for aarch64 crashes vectorising an fmax reduction
    for (int64_t q = 0; q < B * N; q++) { double e_ = fabs(fe[q] - ft[q] * af); df = e_ > df ? e_ : df; }
    for (int64_t q = 0; q < B * D; q++) { double e_ = fabs(he[q] - ht[q] / sc), g_ = fabs(he[q]); dh = e_ > dh ? e_ : dh, nh = g_ > nh ? g_ : nh; }
    CHECK_MSG(df < 1e-4 && dh < 1e-4 * (1 + nh), "%s: exported SAE differs: activations by %g, reconstructions by %g",
              cterp_arch_name(arch), df, dh);
    CHECK(e->rescale_acts_by_decoder_norm == 0 && !strcmp(e->normalize_activations, "none"));
    free(x), free(xs), free(ft), free(fe), free(ht), free(he);
    cterp_sae_free(e);
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
    cterp_toy_free(toy);
}

// An activation file's saved position resumes the same row order from a copy of the file, and is
// refused (naming the field) against other values or another seed; the old 2-word state is taken.
static void test_file_source_state(void) {
    enum { R = 50, C = 8 };
    const char *dir = test_tmpdir("filestate");
    char a[600], b[600], copy[600];
    snprintf(a, sizeof a, "%s/a.npy", dir), snprintf(b, sizeof b, "%s/b.npy", dir);
    snprintf(copy, sizeof copy, "%s/copy.npy", dir);
    float v[R * C], got[20 * C], want[20 * C], scratch[70 * C];
    for (int q = 0; q < R * C; q++) v[q] = (float)q;
    CHECK_OK(npy_write_f32(a, v, R, C));
    CHECK_OK(npy_write_f32(copy, v, R, C));
    v[R * C - 1] += 1; // one value differs, same shape
    CHECK_OK(npy_write_f32(b, v, R, C));
    cterp_act_source s1, s2;
    CHECK_OK(cterp_act_source_file(&s1, a, 0, 7));
    CHECK_OK(s1.next(s1.ctx, scratch, 70)); // into the second epoch
    uint64_t st[16];
    const int n = s1.get_state(s1.ctx, st, 16);
    CHECK(n > 2);
    CHECK_OK(s1.next(s1.ctx, want, 20));
    CHECK_OK(cterp_act_source_file(&s2, copy, 0, 7));
    CHECK_OK(s2.set_state(s2.ctx, st, n, 70));
    CHECK_OK(s2.next(s2.ctx, got, 20));
    CHECK(!memcmp(got, want, sizeof got));
    s2.free(s2.ctx);
    CHECK_OK(cterp_act_source_file(&s2, b, 0, 7));
    CHECK(s2.set_state(s2.ctx, st, n, 70) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "activations: ") && strstr(cterp_last_error(), "b.npy") &&
                  strstr(cterp_last_error(), "other values"),
              "other values: %s", cterp_last_error());
    s2.free(s2.ctx);
    CHECK_OK(cterp_act_source_file(&s2, a, 0, 8));
    CHECK(s2.set_state(s2.ctx, st, n, 70) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "seed: ") && strstr(cterp_last_error(), "seed 7, this run has 8"),
              "seed: %s", cterp_last_error());
    s2.free(s2.ctx);
    CHECK_OK(cterp_act_source_file(&s2, a, 0, 7));
    uint64_t bad[16];
    memcpy(bad, st, sizeof bad);
    bad[0] ^= 1; // not a file position
    CHECK(s2.set_state(s2.ctx, bad, n, 70) == CTERP_EFORMAT);
    memcpy(bad, st, sizeof bad);
    bad[2] = R + 1; // past the end
    CHECK(s2.set_state(s2.ctx, bad, n, 70) == CTERP_EFORMAT);
    CHECK(s2.set_state(s2.ctx, st, n, 69) == CTERP_EFORMAT); // 70 rows served, 69 taken
    CHECK_MSG(strstr(cterp_last_error(), "more rows than the 69 taken"), "%s", cterp_last_error());
    const uint64_t old[2] = {1, 20}; // epoch 1, row 20: where st points
    CHECK_OK(s2.set_state(s2.ctx, old, 2, 70));
    CHECK_OK(s2.next(s2.ctx, got, 20));
    CHECK(!memcmp(got, want, sizeof got));
    s2.free(s2.ctx);
    s1.free(s1.ctx);
}

int main(void) {
    test_export_folding(CTERP_ARCH_TOPK);
    test_export_folding(CTERP_ARCH_STANDARD);
    test_export_folding(CTERP_ARCH_GATED);
    test_schedules();
    test_config();
    test_k_anneal_config();
    test_k_anneal_train(CTERP_ARCH_TOPK, 0);
    test_k_anneal_train(CTERP_ARCH_BATCHTOPK, 0);
    test_k_anneal_train(CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 0);
    test_resume(CTERP_ARCH_TOPK, 0, 0);
    test_resume(CTERP_ARCH_BATCHTOPK, 0, 0);
    test_resume(CTERP_ARCH_STANDARD, 1, 0);
    test_resume(CTERP_ARCH_JUMPRELU, 0, 0);
    test_resume(CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 0, 0);
    test_resume(CTERP_ARCH_GATED, 0, 0);
    test_resume(CTERP_ARCH_TRANSCODER, 0, 0);
    test_resume(CTERP_ARCH_SKIP_TRANSCODER, 0, 0);
    test_transcoder_train(CTERP_ARCH_TRANSCODER);
    test_transcoder_train(CTERP_ARCH_SKIP_TRANSCODER);
    test_transcoder_dead_rows(CTERP_ARCH_TRANSCODER);
    test_transcoder_dead_rows(CTERP_ARCH_SKIP_TRANSCODER);
    test_gated_detach();
    if (bf16_available()) {
        test_resume(CTERP_ARCH_TOPK, 0, 1);
        test_resume(CTERP_ARCH_TOPK, 1, 1);
        test_resume(CTERP_ARCH_TOPK, 0, 2);
        test_resume(CTERP_ARCH_TOPK, 1, 2);
        test_k_anneal_train(CTERP_ARCH_TOPK, 1);
        test_k_anneal_train(CTERP_ARCH_TOPK, 2);
        test_k_anneal_train(CTERP_ARCH_BATCHTOPK, 1);
        test_recovery(CTERP_ARCH_TOPK, 1);
        test_recovery(CTERP_ARCH_TOPK, 2);
        test_recovery(CTERP_ARCH_BATCHTOPK, 1);
    } else {
        printf("skip: encoder_bf16 training (this build or CPU has no AVX-512 BF16)\n");
    }
    test_bad_checkpoint();
    test_checkpoint_rows();
    test_checkpoint_complete();
    test_file_source_state();
    test_nan();
    test_nonfinite_param();
    test_inf_last();
    test_skip_nonfinite();
    test_recovery(CTERP_ARCH_TOPK, 0);
    test_recovery(CTERP_ARCH_BATCHTOPK, 0);
    test_recovery(CTERP_ARCH_STANDARD, 0);
    test_recovery(CTERP_ARCH_JUMPRELU, 0);
    test_recovery(CTERP_ARCH_MATRYOSHKA_BATCHTOPK, 0);
    test_recovery(CTERP_ARCH_GATED, 0);
    return test_done();
}
