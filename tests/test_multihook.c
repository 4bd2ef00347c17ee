// Several hooks, one forward, on a synthetic llama (tests/synth_model.h; no test data needed):
// each per-hook source of cterp_multi_store serves the rows of a single-hook cterp_act_store, bit
// for bit (in step, one running far ahead, with the producer thread, across refills and an epoch's
// wrap); cterp_multi_store_next gives every hook's rows of the same tokens; one forward per batch
// feeds all hooks (counted); cterp_train_saes trains each hook's SAE to the weights of
// cterp_train_sae alone (per-hook d_sae and k), resumes to the same weights, and its checkpoints
// resume a single-hook run; cterp_act_cache_write_hooks writes each hook's cache byte for byte
// as cterp_act_cache_write does; bad input is refused naming it; and the CLI (train/cache
// --hooks, --layers) does the same through $CTERP_BIN.
#include "core/file.h"
#include "cterp/analysis.h"
#include "synth_pipeline.h"
#include "test.h"

enum { NH = 4 };
static const char *HOOKS[NH] = {"blocks.0.hook_resid_post", "blocks.1.attn.hook_z",
                                "blocks.3.hook_mlp_out", "blocks.2.mlp.hook_post"};

enum { B = 32, NB = 90 }; // 2880 rows: several refills and past one epoch (checked below)

// The batches of a single-hook store for hook h: (NB, B, D).
static float *single_batches(cterp_model *m, int h, int64_t *D, int64_t *forwards,
                             int64_t *epochs) {
    cterp_store_config c = synth_pipeline_store(0);
    cterp_act_source src;
    CHECK_OK(cterp_act_store(&src, m, HOOKS[h], corpus, &c, B));
    *D = src.d_in;
    float *x = malloc((size_t)(NB * B * src.d_in) * sizeof(float));
    for (int i = 0; i < NB; i++) CHECK_OK(src.next(src.ctx, x + (size_t)i * B * src.d_in, B));
    cterp_store_stats st;
    CHECK_OK(cterp_act_source_stats(&src, &st));
    *forwards = st.forwards, *epochs = st.epochs;
    cterp_act_source_free(&src);
    return x;
}

static void test_store(cterp_model *m) {
    float *ref[NH];
    int64_t D[NH], fw[NH], ep[NH];
    for (int h = 0; h < NH; h++) ref[h] = single_batches(m, h, &D[h], &fw[h], &ep[h]);
    CHECK(D[0] == 32 && D[1] == 32 && D[2] == 32 && D[3] == 64);
    CHECK_MSG(ep[0] >= 1, "%lld epochs: the reads must wrap the dataset", (long long)ep[0]);
    float *x = malloc((size_t)B * 64 * sizeof(float));
    // in step (overlap off), then one source running all the way ahead (producer thread on)
    for (int pass = 0; pass < 2; pass++) {
        cterp_store_config c = synth_pipeline_store(pass ? 2 : 0);
        cterp_multi_store *ms;
        CHECK_OK(cterp_multi_store_open(&ms, m, HOOKS, NH, corpus, &c, B));
        if (!ms) continue;
        cterp_act_source src[NH];
        for (int h = 0; h < NH; h++) CHECK_OK(cterp_multi_store_source(ms, h, &src[h]));
        int same[NH] = {1, 1, 1, 1};
        if (pass == 0) {
            for (int i = 0; i < NB; i++)
                for (int h = 0; h < NH; h++) {
                    CHECK_OK(src[h].next(src[h].ctx, x, B));
                    same[h] &= !memcmp(x, ref[h] + (size_t)i * B * D[h], (size_t)(B * D[h]) * 4);
                }
        } else {
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < NB; i++) {
                    CHECK_OK(src[h].next(src[h].ctx, x, B));
                    same[h] &= !memcmp(x, ref[h] + (size_t)i * B * D[h], (size_t)(B * D[h]) * 4);
                }
        }
        for (int h = 0; h < NH; h++)
            CHECK_MSG(same[h], "pass %d: hook %s differs from its store alone", pass, HOOKS[h]);
        cterp_store_stats st, sv;
        CHECK_OK(cterp_multi_store_stats(ms, &st));
        CHECK_OK(cterp_act_source_stats(&src[2], &sv));
        // one forward per batch of windows for all four hooks: as many as one hook alone (the
        // producer thread of pass 1 may have run one refill ahead: at most half the buffer more)
        CHECK_MSG(pass
                      ? st.forwards > fw[0] / 2 && st.forwards <= fw[0] + c.buffer_rows / 2 / 16 + 1
                      : st.forwards == fw[0] && fw[0] == fw[3] && st.forwards > 0,
                  "pass %d: %lld forwards for %d hooks, %lld for one alone", pass,
                  (long long)st.forwards, NH, (long long)fw[0]);
        CHECK(st.rows_served == NB * B && sv.rows_served == NB * B && sv.forwards == st.forwards);
        for (int h = 0; h < NH; h++) cterp_act_source_free(&src[h]);
        cterp_multi_store_free(ms);
    }
    // every hook's rows of the same tokens, in the single-hook order
    cterp_store_config c = synth_pipeline_store(1);
    cterp_multi_store *ms;
    CHECK_OK(cterp_multi_store_open(&ms, m, HOOKS, NH, corpus, &c, B));
    if (ms) {
        CHECK(cterp_multi_store_n_hooks(ms) == NH &&
              !strcmp(cterp_multi_store_hook(ms, 2), HOOKS[2]) &&
              cterp_multi_store_d_in(ms, 3) == 64 && !cterp_multi_store_hook(ms, NH));
        float *xs[NH];
        for (int h = 0; h < NH; h++) xs[h] = malloc((size_t)(B * D[h]) * sizeof(float));
        int same = 1;
        for (int i = 0; i < NB; i++) {
            CHECK_OK(cterp_multi_store_next(ms, xs, B));
            for (int h = 0; h < NH; h++)
                same &= !memcmp(xs[h], ref[h] + (size_t)i * B * D[h], (size_t)(B * D[h]) * 4);
        }
        CHECK_MSG(same, "cterp_multi_store_next differs from the single-hook stores");
        cterp_act_source v;
        CHECK(cterp_multi_store_source(ms, 0, &v) == CTERP_EINVAL); // after rows were read
        CHECK(strstr(cterp_last_error(), "before reading") != NULL);
        for (int h = 0; h < NH; h++) free(xs[h]);
        cterp_multi_store_free(ms);
    }
    free(x);
    for (int h = 0; h < NH; h++) free(ref[h]);
}

static cterp_train_config train_cfg(int h) {
    cterp_train_config c;
    cterp_train_config_default(&c);
    static const int64_t d_sae[NH] = {64, 128, 48, 96};
    static const int k[NH] = {4, 8, 6, 8};
    c.d_sae = d_sae[h], c.k = k[h];
    c.batch_size = B, c.training_steps = 40, c.checkpoint_every = 20, c.seed = 3, c.log_every = 10;
    return c;
}

static int same_sae(const cterp_sae *a, const cterp_sae *b) {
    if (!a || !b || a->d_in != b->d_in || a->d_sae != b->d_sae) return 0;
    size_t nd = (size_t)(a->d_in * a->d_sae) * 4;
    return !memcmp(a->W_enc, b->W_enc, nd) && !memcmp(a->W_dec, b->W_dec, nd) &&
           !memcmp(a->b_enc, b->b_enc, (size_t)a->d_sae * 4) &&
           !memcmp(a->b_dec, b->b_dec, (size_t)a->d_in * 4);
}

static void test_train(cterp_model *m) {
    cterp_pipeline_opts po;
    cterp_pipeline_opts_default(&po);
    po.store = synth_pipeline_store(1);
    po.model_name = "synth";
    cterp_train_config cfg[NH];
    cterp_sae *alone[NH] = {0}, *multi[NH] = {0}, *resumed[NH] = {0};
    for (int h = 0; h < NH; h++) {
        cfg[h] = train_cfg(h);
        CHECK_OK(cterp_train_sae(m, 0, HOOKS[h], corpus, &cfg[h], NULL, &po, &alone[h], NULL));
    }
    char run[700], run2[700], ck[NH][800];
    snprintf(run, sizeof run, "%s/run", tmp);
    snprintf(run2, sizeof run2, "%s/run2", tmp);
    CHECK_OK(cterp_train_saes(m, HOOKS, NH, corpus, cfg, run, NULL, &po, multi, NULL));
    for (int h = 0; h < NH; h++)
        CHECK_MSG(same_sae(alone[h], multi[h]), "hook %s: not the SAE trained alone", HOOKS[h]);
    // resumed from the checkpoints at step 20: the same SAEs
    const char *res[NH];
    for (int h = 0; h < NH; h++)
        snprintf(ck[h], sizeof ck[h], "%s/%s/checkpoints/step_20", run, HOOKS[h]), res[h] = ck[h];
    CHECK_OK(cterp_train_saes(m, HOOKS, NH, corpus, cfg, run2, res, &po, resumed, NULL));
    for (int h = 0; h < NH; h++) {
        CHECK_MSG(same_sae(alone[h], resumed[h]),
                  "hook %s: resumed, not the SAE of the straight run", HOOKS[h]);
        cterp_sae_free(resumed[h]), resumed[h] = NULL;
    }
    // and one hook's checkpoint of the multi-hook run resumes that hook alone
    cterp_pipeline_opts pr = po;
    pr.resume = ck[3];
    CHECK_OK(cterp_train_sae(m, 0, HOOKS[3], corpus, &cfg[3], NULL, &pr, &resumed[3], NULL));
    CHECK_MSG(same_sae(alone[3], resumed[3]), "a multi-hook checkpoint resumed alone differs");
    cterp_sae_free(resumed[3]);
    // the saved directory holds the hook's SAE with its metadata and metrics
    char p[900];
    snprintf(p, sizeof p, "%s/%s", run, HOOKS[1]);
    cterp_sae *loaded = NULL;
    CHECK_OK(cterp_sae_load(p, &loaded));
    CHECK(same_sae(loaded, alone[1]) && loaded && !strcmp(loaded->meta.hook_name, HOOKS[1]));
    cterp_sae_free(loaded);
    snprintf(p, sizeof p, "%s/%s/metrics.jsonl", run, HOOKS[2]);
    CHECK(file_exists(p));
    // what decides the rows must agree
    cterp_train_config bad[2] = {train_cfg(0), train_cfg(1)};
    bad[1].batch_size = 64;
    CHECK(cterp_train_saes(m, HOOKS, 2, corpus, bad, NULL, NULL, &po, NULL, NULL) == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), "batch_size") && strstr(cterp_last_error(), HOOKS[1]));
    for (int h = 0; h < NH; h++) cterp_sae_free(alone[h]), cterp_sae_free(multi[h]);
}

static int same_file(const char *a, const char *b) {
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

static void test_cache(cterp_model *m) {
    cterp_store_config c = synth_pipeline_store(1);
    char dir[700], one[800], a[900], b[900];
    snprintf(dir, sizeof dir, "%s/caches", tmp);
    cterp_cache_info info[NH];
    CHECK_OK(cterp_act_cache_write_hooks(m, "synth", HOOKS, NH, corpus, &c, 1 << 20,
                                         CTERP_DTYPE_F16, dir, NULL, NULL, info));
    CHECK(info[0].complete_epoch && info[3].d_in == 64 && info[1].count == info[2].count);
    for (int h = 0; h < NH; h++) {
        snprintf(one, sizeof one, "%s/one_%d", tmp, h);
        cterp_cache_info i1;
        CHECK_OK(cterp_act_cache_write(m, "synth", HOOKS[h], corpus, &c, 1 << 20, CTERP_DTYPE_F16,
                                       one, NULL, NULL, &i1));
        const char *f[2] = {"activations.bin", "tokens.bin"};
        for (int k = 0; k < 2; k++) {
            snprintf(a, sizeof a, "%s/%s/%s", dir, HOOKS[h], f[k]);
            snprintf(b, sizeof b, "%s/%s", one, f[k]);
            CHECK_MSG(same_file(a, b), "%s differs from %s", a, b);
        }
    }
    // an unknown hook is refused before any previous cache is removed
    const char *hk[2] = {HOOKS[0], "blocks.9.hook_resid_post"};
    CHECK(cterp_act_cache_write_hooks(m, "synth", hk, 2, corpus, &c, 100, CTERP_DTYPE_F32, dir,
                                      NULL, NULL, NULL) == CTERP_ENOTFOUND);
    snprintf(a, sizeof a, "%s/%s", dir, HOOKS[0]);
    cterp_cache_info i2;
    CHECK_OK(cterp_act_cache_info_read(a, &i2));
    CHECK(i2.count == info[0].count);
}

static void test_errors(cterp_model *m) {
    cterp_store_config c = synth_pipeline_store(1);
    cterp_multi_store *ms = NULL;
    const char *dup[3] = {HOOKS[0], HOOKS[2], HOOKS[0]};
    CHECK(cterp_multi_store_open(&ms, m, dup, 3, corpus, &c, B) == CTERP_EINVAL && !ms);
    CHECK(strstr(cterp_last_error(), "blocks.0.hook_resid_post is given twice") != NULL);
    const char *unk[2] = {HOOKS[0], "blocks.1.hook_nope"};
    CHECK(cterp_multi_store_open(&ms, m, unk, 2, corpus, &c, B) == CTERP_ENOTFOUND && !ms);
    CHECK(strstr(cterp_last_error(), "blocks.1.hook_nope") != NULL);
    CHECK(cterp_multi_store_open(&ms, m, HOOKS, 0, corpus, &c, B) == CTERP_EINVAL);
    const char *pat[1] = {"blocks.0.attn.hook_pattern"};
    CHECK(cterp_multi_store_open(&ms, m, pat, 1, corpus, &c, B) == CTERP_EINVAL);
    CHECK_OK(cterp_multi_store_open(&ms, m, HOOKS, 2, corpus, &c, B));
    if (!ms) return;
    cterp_act_source s0, s1;
    CHECK_OK(cterp_multi_store_source(ms, 0, &s0));
    CHECK(cterp_multi_store_source(ms, 0, &s1) == CTERP_EINVAL); // one per hook
    CHECK(cterp_multi_store_source(ms, 2, &s1) == CTERP_EINVAL); // outside
    float *xs[2] = {malloc(B * 32 * 4), malloc(B * 32 * 4)};
    CHECK(cterp_multi_store_next(ms, xs, B) == CTERP_EINVAL); // not with per-hook sources
    free(xs[0]), free(xs[1]);
    cterp_act_source_free(&s0);
    cterp_multi_store_free(ms);
    cterp_multi_store_free(NULL);
}

// The CLI on the synthetic model: train --hooks equals train --hook per hook, cache --layers
// equals cache --hook, and bad flags exit 2 naming them.
static void test_cli(void) {
    if (!getenv("CTERP_BIN")) {
        printf("skip: CLI checks (CTERP_BIN not set)\n");
        return;
    }
    char args[2500], log[700], a[900], b[900];
    snprintf(log, sizeof log, "%s/cli.log", tmp);
    const char *common =
        "--context-size 16 --model-batch 3 --batch 32 --steps 30 --eval-windows 0 --quiet";
    snprintf(args, sizeof args,
             "train --model %s --data %s %s --hooks %s,%s --d-sae 64,96 --k 4,8 --out %s/cli",
             model_path, corpus, common, HOOKS[1], HOOKS[3], tmp);
    CHECK_MSG(cli_run(args, log) == 0, "%s", args);
    const char *hk[2] = {HOOKS[1], HOOKS[3]};
    const char *dsae[2] = {"64", "96"}, *k[2] = {"4", "8"};
    for (int h = 0; h < 2; h++) {
        snprintf(args, sizeof args,
                 "train --model %s --data %s %s --hook %s --d-sae %s --k %s --out %s/cli1_%d",
                 model_path, corpus, common, hk[h], dsae[h], k[h], tmp, h);
        CHECK_MSG(cli_run(args, log) == 0, "%s", args);
        snprintf(a, sizeof a, "%s/cli/%s/sae_weights.safetensors", tmp, hk[h]);
        snprintf(b, sizeof b, "%s/cli1_%d/sae_weights.safetensors", tmp, h);
        CHECK_MSG(same_file(a, b), "%s differs from %s", a, b);
    }
    snprintf(args, sizeof args,
             "cache --model %s --data %s --context-size 16 --layers 0-1 --component resid,mlp "
             "--tokens 100000 --out %s/clicache",
             model_path, corpus, tmp);
    CHECK_MSG(cli_run(args, log) == 0, "%s", args);
    snprintf(args, sizeof args,
             "cache --model %s --data %s --context-size 16 --hook blocks.1.hook_mlp_out "
             "--tokens 100000 --out %s/clicache1",
             model_path, corpus, tmp);
    CHECK_MSG(cli_run(args, log) == 0, "%s", args);
    snprintf(a, sizeof a, "%s/clicache/blocks.1.hook_mlp_out/activations.bin", tmp);
    snprintf(b, sizeof b, "%s/clicache1/activations.bin", tmp);
    CHECK_MSG(same_file(a, b), "%s differs from %s", a, b);
    snprintf(args, sizeof args,
             "train --acts %s/clicache/blocks.0.hook_resid_post --d-sae 64 --k 4 --batch 32 "
             "--steps 10 --quiet --out %s/fromcache",
             tmp, tmp);
    CHECK_MSG(cli_run(args, log) == 0 && cli_log_has(log, "blocks.0.hook_resid_post"), "%s", args);
    static const struct {
        const char *flags, *msg;
    } bad[] = {
        {"--layers 3-1 --component resid", "--layers: bad range '3-1'"},
        {"--layers 0-4 --component resid", "--layers: layer 4 outside the model's 4 layers"},
        {"--layers 0-x --component resid", "--layers: '0-x'"},
        {"--hooks blocks.0.hook_resid_post,blocks.0.hook_resid_post",
         "blocks.0.hook_resid_post is given twice"},
        {"--layers 0,0 --component resid", "blocks.0.hook_resid_post is given twice"},
        {"--hooks blocks.0.hook_resid_pist", "unknown hook 'blocks.0.hook_resid_pist'"},
        {"--hooks blocks.0.hook_resid_post,blocks.1.hook_resid_post --d-sae 64,96,128",
         "--d-sae: '64,96,128'"},
        {"--hook blocks.0.hook_resid_post --d-sae 64,96",
         "one value per hook needs --model with --hooks"},
        {"--hooks blocks.0.hook_resid_post --layer 1", "not --hooks with --layer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "train --model %s --data %s %s %s --out %s/bad", model_path,
                 corpus, common, bad[i].flags, tmp);
        int rc = cli_run(args, log);
        CHECK_MSG(rc == 2 && cli_log_has(log, bad[i].msg), "%s: exit %d, expected 2 and '%s'",
                  bad[i].flags, rc, bad[i].msg);
    }
    snprintf(args, sizeof args,
             "cache --model %s --data %s --layers 2-1 --component resid --tokens 10 --out %s/bad",
             model_path, corpus, tmp);
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "cterp cache: --layers: bad range '2-1'"));
}

int main(void) {
    cterp_model *m = synth_pipeline_setup("multihook", 4);
    if (!m) return test_done();
    test_store(m);
    test_train(m);
    test_cache(m);
    test_errors(m);
    cterp_model_free(m);
    test_cli();
    return synth_pipeline_finish();
}
