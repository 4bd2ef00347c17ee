// Crosscoders from a model, on a synthetic llama (tests/synth_model.h; no test data needed):
// cterp_act_concat_store serves, for the same tokens, the rows of the single-hook stores of its
// hooks side by side (and resumes, its state naming every hook); the trainer refuses a
// crosscoder on one layer's rows and an SAE on several; a short crosscoder run over three
// residual streams lowers the loss and explains each layer's variance; the saved directory
// (architecture "crosscoder", n_layers, hook_names) loads back to the same weights; cterp_eval
// refuses a crosscoder (cterp_eval_crosscoder evaluates it); cterp_train_crosscoder and `cterp train
// --arch crosscoder --layers` give the same weights, and refuse bad input.
#include <math.h>

#include "core/file.h"
#include "cterp/analysis.h"
#include "synth_pipeline.h"
#include "test.h"

static const char *HOOKS[3] = {"blocks.0.hook_resid_post", "blocks.1.hook_resid_post",
                               "blocks.2.hook_resid_post"};

enum { B = 32, NB = 20, D = 32, L = 3 };

static void test_concat(cterp_model *m) {
    cterp_store_config c = synth_pipeline_store(1);
    float *single[L];
    for (int h = 0; h < L; h++) { // (NB, B, D) of each hook alone
        cterp_act_source s1;
        CHECK_OK(cterp_act_store(&s1, m, HOOKS[h], corpus, &c, B));
        single[h] = malloc((size_t)NB * B * D * sizeof(float));
        for (int i = 0; i < NB; i++) CHECK_OK(s1.next(s1.ctx, single[h] + (size_t)i * B * D, B));
        cterp_act_source_free(&s1);
    }
    cterp_act_source src;
    CHECK_OK(cterp_act_concat_store(&src, m, HOOKS, L, corpus, &c, B));
    CHECK(src.d_in == L * D && src.n_layers == L && src.d_out == 0 && !src.next_target);
    float *x = malloc((size_t)B * L * D * sizeof(float));
    int same = 1;
    for (int i = 0; i < NB; i++) {
        CHECK_OK(src.next(src.ctx, x, B));
        for (int t = 0; t < B; t++)
            for (int h = 0; h < L; h++)
                same &= !memcmp(x + (size_t)t * L * D + h * D, single[h] + ((size_t)i * B + t) * D,
                                D * sizeof(float));
    }
    CHECK_MSG(same, "the concatenated rows differ from the single-hook stores' rows side by side");
    cterp_store_stats st;
    CHECK_OK(cterp_act_source_stats(&src, &st));
    CHECK(st.rows_served == NB * B && st.forwards > 0);
    // resume: the same hooks replay to the same rows; other hooks (or order) are refused
    uint64_t w[16];
    int nw = src.get_state(src.ctx, w, 16);
    CHECK(nw > 0);
    cterp_act_source again, other;
    CHECK_OK(cterp_act_concat_store(&again, m, HOOKS, L, corpus, &c, B));
    CHECK_OK(again.set_state(again.ctx, w, nw, NB * B));
    float *x2 = malloc((size_t)B * L * D * sizeof(float));
    CHECK_OK(src.next(src.ctx, x, B));
    CHECK_OK(again.next(again.ctx, x2, B));
    CHECK_MSG(!memcmp(x, x2, (size_t)B * L * D * sizeof(float)),
              "a resumed concat source serves other rows");
    const char *swapped[3] = {HOOKS[1], HOOKS[0], HOOKS[2]};
    CHECK_OK(cterp_act_concat_store(&other, m, swapped, L, corpus, &c, B));
    CHECK(other.set_state(other.ctx, w, nw, NB * B) != CTERP_OK);
    cterp_act_source_free(&other), cterp_act_source_free(&again), cterp_act_source_free(&src);
    // errors: one hook, an unknown hook (named), hooks of different widths
    CHECK(cterp_act_concat_store(&src, m, HOOKS, 1, corpus, &c, B) == CTERP_EINVAL);
    const char *bad[2] = {HOOKS[0], "blocks.1.hook_nope"};
    CHECK(cterp_act_concat_store(&src, m, bad, 2, corpus, &c, B) == CTERP_ENOTFOUND &&
          strstr(cterp_last_error(), "blocks.1.hook_nope"));
    const char *widths[2] = {HOOKS[0], "blocks.0.mlp.hook_pre"}; // F = 64 wide
    CHECK(cterp_act_concat_store(&src, m, widths, 2, corpus, &c, B) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "width"));
    for (int h = 0; h < L; h++) free(single[h]);
    free(x), free(x2);
}

static cterp_train_config xc_cfg(cterp_arch arch) {
    cterp_train_config c;
    cterp_train_config_default(&c);
    c.architecture = arch;
    c.d_sae = 128, c.batch_size = B, c.training_steps = 300, c.seed = 3, c.lr = 3e-3f;
    c.l1_coefficient = 0.3f, c.checkpoint_every = 0, c.log_every = 100;
    return c;
}

// per-layer explained variance of a crosscoder over nb batches of src (x: (B, L*D))
static void layer_ev(const cterp_sae *s, cterp_act_source *src, int nb, double ev[L]) {
    float *x = malloc((size_t)B * L * D * sizeof(float)),
          *y = malloc((size_t)B * L * D * sizeof(float));
    double sse[L] = {0}, sum[L][D] = {{0}}, sq[L] = {0};
    int64_t n = 0;
    for (int i = 0; i < nb; i++) {
        CHECK_OK(src->next(src->ctx, x, B));
        CHECK_OK(cterp_sae_forward(s, x, B, y));
        for (int t = 0; t < B; t++, n++)
            for (int l = 0; l < L; l++)
                for (int d = 0; d < D; d++) {
                    double v = x[t * L * D + l * D + d], e = v - y[t * L * D + l * D + d];
                    sse[l] += e * e, sum[l][d] += v, sq[l] += v * v;
                }
    }
    for (int l = 0; l < L; l++) {
        double sst = sq[l];
        for (int d = 0; d < D; d++) sst -= sum[l][d] * sum[l][d] / (double)n;
        ev[l] = 1 - sse[l] / sst;
    }
    free(x), free(y);
}

// cterp_eval_crosscoder: an exact crosscoder (latents +e_j and -e_j: x_hat = ReLU(x) - ReLU(-x) =
// x bit for bit) leaves every layer's CE at the clean CE and its EV at 1; a trained one moves the
// CE less than zero ablation does.
static void test_eval(cterp_model *m, const cterp_sae *trained) {
    cterp_eval_config ec;
    cterp_eval_config_default(&ec);
    ec.windows = synth_pipeline_store(1).windows, ec.batch = 4, ec.n_windows = 6;
    cterp_sae *s = NULL;
    CHECK_OK(cterp_sae_create_crosscoder(&s, L, D, 2 * L * D));
    if (!s) return;
    for (int j = 0; j < L * D; j++) {
        s->W_enc[(size_t)(2 * j) * L * D + j] = 1, s->W_dec[(size_t)(2 * j) * L * D + j] = 1;
        s->W_enc[(size_t)(2 * j + 1) * L * D + j] = -1,
                                               s->W_dec[(size_t)(2 * j + 1) * L * D + j] = -1;
    }
    snprintf(s->meta.hook_name, sizeof s->meta.hook_name, "%s,%s,%s", HOOKS[0], HOOKS[1], HOOKS[2]);
    double ce0 = 0, ev[L], cs[L], ca[L];
    CHECK_OK(cterp_eval_crosscoder(m, s, corpus, &ec, &ce0, ev, cs, ca));
    for (int l = 0; l < L; l++) {
        CHECK_MSG(ev[l] == 1.0 && cs[l] == ce0,
                  "exact crosscoder: layer %d EV %g, CE %.9g spliced vs %.9g clean", l, ev[l],
                  cs[l], ce0);
        CHECK_MSG(fabs(ca[l] - ce0) > 1e-3, "layer %d: CE %g ablated, %g clean", l, ca[l],
                  ce0); // it splices
    }
    double e2[L], c2[L], a2[L], ce1 = 0;
    CHECK_OK(cterp_eval_crosscoder(m, trained, corpus, &ec, &ce1, e2, c2, a2));
    CHECK_CLOSE(ce1, ce0, 1e-12, 1e-12); // same windows, same clean run
    for (int l = 0; l < L; l++) {
        fprintf(stderr,
                "trained crosscoder, layer %d: EV %.3f, CE clean %.4f spliced %.4f ablated %.4f\n",
                l, e2[l], ce1, c2[l], a2[l]);
        // the synthetic model is random (ablation may even lower its CE): the reconstruction moves
        // the CE less than zeroing the layer does
        CHECK(e2[l] > 0.3 && e2[l] < 1 && fabs(c2[l] - ce1) < fabs(a2[l] - ce1) && a2[l] == ca[l]);
    }
    // the hook list must name n_layers hooks
    snprintf(s->meta.hook_name, sizeof s->meta.hook_name, "%s,%s", HOOKS[0], HOOKS[1]);
    CHECK(cterp_eval_crosscoder(m, s, corpus, &ec, &ce0, ev, cs, ca) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "3 hooks"));
    cterp_sae_free(s);
}

static void test_train(cterp_model *m) {
    cterp_store_config c = synth_pipeline_store(1);
    cterp_act_source src, one;
    CHECK_OK(cterp_act_concat_store(&src, m, HOOKS, L, corpus, &c, B));
    CHECK_OK(cterp_act_store(&one, m, HOOKS[1], corpus, &c, B));
    cterp_trainer *t = NULL;
    cterp_train_config cfg = xc_cfg(CTERP_ARCH_STANDARD); // an SAE on several layers' rows: refused
    CHECK(cterp_trainer_create(&t, &cfg, &src) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "crosscoder"));
    cfg = xc_cfg(CTERP_ARCH_CROSSCODER); // a crosscoder on one layer's rows: refused
    CHECK(cterp_trainer_create(&t, &cfg, &one) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "several"));
    cterp_act_source_free(&one);
    CHECK_OK(cterp_trainer_create(&t, &cfg, &src));
    if (!t) {
        cterp_act_source_free(&src);
        return;
    }
    CHECK_OK(cterp_trainer_run(t, 10));
    const double first = cterp_trainer_last_metrics(t)->mse_loss;
    CHECK_OK(cterp_trainer_run(t, 0));
    const cterp_train_metrics *mt = cterp_trainer_last_metrics(t);
    CHECK_MSG(mt->mse_loss < 0.5 * first, "crosscoder mse %g after %lld steps, %g after 10",
              mt->mse_loss, (long long)mt->step, first);
    CHECK_MSG(mt->explained_variance > 0.5, "crosscoder explained variance %g",
              mt->explained_variance);
    cterp_sae_meta meta = {0};
    snprintf(meta.model_name, sizeof meta.model_name, "synth");
    snprintf(meta.hook_name, sizeof meta.hook_name, "%s,%s,%s", HOOKS[0], HOOKS[1], HOOKS[2]);
    meta.hook_head_index = -1;
    cterp_trainer_set_meta(t, &meta);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/xc", tmp);
    CHECK_OK(cterp_trainer_save(t, dir));
    cterp_sae *ex = NULL, *ld = NULL;
    CHECK_OK(cterp_trainer_export(t, &ex));
    CHECK_OK(cterp_sae_load(dir, &ld));
    if (ex && ld) {
        CHECK(ld->arch == CTERP_ARCH_CROSSCODER && ld->n_layers == L && ld->d_in == L * D &&
              !strcmp(ld->meta.hook_name, meta.hook_name));
        CHECK(!memcmp(ld->params, ex->params, ex->n_params * sizeof(float)));
        double ev[L];
        layer_ev(ld, &src, 6, ev);
        fprintf(
            stderr,
            "crosscoder: mse %.4g after 10 steps, %.4g after %lld; EV per layer %.3f %.3f %.3f\n",
            first, mt->mse_loss, (long long)mt->step, ev[0], ev[1], ev[2]);
        for (int l = 0; l < L; l++)
            CHECK_MSG(ev[l] > 0.3, "crosscoder: layer %d explained variance %g", l, ev[l]);
        test_eval(m, ld);
        cterp_eval_result er;
        CHECK(cterp_eval(m, ld, corpus, NULL, &er) == CTERP_EINVAL &&
              strstr(cterp_last_error(), "crosscoder"));
    }
    cterp_sae_free(ex), cterp_sae_free(ld);
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
}

// cterp_train_crosscoder (the pipeline: concat store, trainer, save, per-layer EV) and the CLI's
// `train --arch crosscoder --layers 0-2 --component resid`: the same weights; bad input refused.
static void test_pipeline_cli(cterp_model *m) {
    cterp_pipeline_opts po;
    cterp_pipeline_opts_default(&po);
    po.store = synth_pipeline_store(1);
    po.model_name = "synth";
    po.eval_windows = 6;
    cterp_train_config cfg = xc_cfg(CTERP_ARCH_CROSSCODER);
    cfg.training_steps = 100;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/xc_lib", tmp);
    cterp_sae *sae = NULL;
    double ev[L] = {0};
    CHECK_OK(cterp_train_crosscoder(m, HOOKS, L, corpus, &cfg, dir, &po, &sae, ev));
    for (int l = 0; l < L; l++)
        CHECK_MSG(ev[l] > 0.3 && ev[l] <= 1, "pipeline: layer %d EV %g", l, ev[l]);
    CHECK(sae && sae->n_layers == L &&
          !strcmp(sae->meta.hook_name, "blocks.0.hook_resid_post,"
                                       "blocks.1.hook_resid_post,blocks.2.hook_resid_post"));
    cterp_sae_free(sae);
    CHECK(cterp_train_crosscoder(m, HOOKS, 1, corpus, &cfg, NULL, &po, NULL, NULL) == CTERP_EINVAL);
    cfg.architecture = CTERP_ARCH_STANDARD;
    CHECK(cterp_train_crosscoder(m, HOOKS, L, corpus, &cfg, NULL, &po, NULL, NULL) == CTERP_EINVAL);
    if (!getenv("CTERP_BIN")) {
        printf("skip: CLI checks (CTERP_BIN not set)\n");
        return;
    }
    char args[3000], log[700], a[800], b[800];
    snprintf(log, sizeof log, "%s/cli.log", tmp);
    const char *common = "--context-size 16 --model-batch 3 --buffer-rows 256 --seed 3 --batch 32 "
                         "--steps 100 --d-sae 128 --lr 3e-3 --l1-coefficient 0.3 --quiet";
    snprintf(args, sizeof args,
             "train --model %s --data %s --arch crosscoder --layers 0-2 --component resid %s "
             "--eval-windows 6 --out %s/xc_cli",
             model_path, corpus, common, tmp);
    CHECK(cli_run(args, log) == 0 && cli_log_has(log, "blocks.2.hook_resid_post"));
    snprintf(a, sizeof a, "%s/xc_cli/sae_weights.safetensors", tmp);
    snprintf(b, sizeof b, "%s/xc_lib/sae_weights.safetensors", tmp);
    char cmp[2000];
    snprintf(cmp, sizeof cmp, "cmp -s '%s' '%s'", a, b);
    CHECK_MSG(system(cmp) == 0, "train --arch crosscoder: not cterp_train_crosscoder's weights");
    snprintf(a, sizeof a, "%s/xc_cli/cfg.json", tmp);
    CHECK(cli_log_has(a, "\"architecture\":\"crosscoder\"") && cli_log_has(a, "\"n_layers\":3") &&
          cli_log_has(a, "\"hook_names\":[\"blocks.0.hook_resid_post\",\"blocks.1.hook_resid_post\""));
    CHECK(cli_log_has(log, "ce_loss_score") &&
          cli_log_has(log, "blocks.1.hook_resid_post: explained_variance"));
    snprintf(args, sizeof args,
             "eval --model %s --data %s --sae %s/xc_cli --windows 6 --context-size 16 --json",
             model_path, corpus, tmp);
    CHECK(cli_run(args, log) == 0 &&
          cli_log_has(log, "\"layers\":[{\"hook\":\"blocks.0.hook_resid_post\""));
    snprintf(args, sizeof args,
             "eval --model %s --data %s --sae %s/xc_cli --hook blocks.1.hook_resid_post",
             model_path, corpus, tmp);
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "is a crosscoder"));
    // errors: no --layers, one layer, hooks of different widths, a crosscoder on --acts
    snprintf(args, sizeof args,
             "train --model %s --data %s --arch crosscoder --layer 1 --component resid %s",
             model_path, corpus, common);
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "--layers A-B"));
    snprintf(args, sizeof args,
             "train --model %s --data %s --arch crosscoder --layers 1-1 --component resid %s",
             model_path, corpus, common);
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "two or more layers"));
    snprintf(args, sizeof args,
             "train --model %s --data %s --arch crosscoder --hooks "
             "blocks.0.hook_resid_post,blocks.0.mlp.hook_pre %s",
             model_path, corpus, common);
    CHECK(cli_run(args, log) == 1 && cli_log_has(log, "width"));
    snprintf(args, sizeof args, "train --toy --arch crosscoder --steps 10 --quiet");
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "--arch crosscoder reads several layers"));
}

int main(void) {
    cterp_model *m = synth_pipeline_setup("crosscoder", 3);
    if (!m) return test_done();
    test_concat(m);
    test_train(m);
    test_pipeline_cli(m);
    cterp_model_free(m);
    return synth_pipeline_finish();
}
