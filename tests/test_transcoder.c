// Transcoders from a model, on a synthetic llama (tests/synth_model.h; no test data needed):
// cterp_act_pair_store serves, for the same tokens, exactly the rows the single-hook stores of
// its two hooks serve; cterp_train_transcoder (transcoder and skip_transcoder, MLP input ->
// output) learns the MLP (explained variance of its output well above 0, the MSE well under the
// variance); the saved directory carries hook_name_out and loads back; cterp_eval with the
// transcoder spliced in place of the MLP gives the CE losses and EV computed by hand through the
// hook API (capture the input hook, run the transcoder, replace the output hook); bad input is
// refused naming it; and the CLI (train --arch transcoder --layer L --component mlp, --hook-in /
// --hook-out, eval) does the same through $CTERP_BIN.
#include <math.h>

#include "core/file.h"
#include "cterp/analysis.h"
#include "synth_pipeline.h"
#include "test.h"

static const char *HIN = "blocks.1.ln2.hook_normalized", *HOUT = "blocks.1.hook_mlp_out";

enum { B = 32, NB = 40 }; // 1280 rows: several refills of the 256-row buffer

// (NB, B, D) rows of a single-hook store.
static float *single_rows(cterp_model *m, const char *hook, int64_t *D) {
    cterp_store_config c = synth_pipeline_store(1);
    cterp_act_source src;
    CHECK_OK(cterp_act_store(&src, m, hook, corpus, &c, B));
    *D = src.d_in;
    float *x = malloc((size_t)(NB * B * src.d_in) * sizeof(float));
    for (int i = 0; i < NB; i++) CHECK_OK(src.next(src.ctx, x + (size_t)i * B * src.d_in, B));
    cterp_act_source_free(&src);
    return x;
}

static void test_pairs(cterp_model *m) {
    int64_t D, DO;
    float *rx = single_rows(m, HIN, &D), *ry = single_rows(m, HOUT, &DO);
    cterp_store_config c = synth_pipeline_store(1);
    cterp_act_source src;
    CHECK_OK(cterp_act_pair_store(&src, m, HIN, HOUT, corpus, &c, B));
    CHECK(src.d_in == 32 && src.d_out == 32 && D == 32 && DO == 32 && src.next_target);
    float *x = malloc((size_t)B * 32 * 4), *y = malloc((size_t)B * 32 * 4);
    CHECK(src.next(src.ctx, x, B) == CTERP_EINVAL); // pairs only
    int same_x = 1, same_y = 1;
    for (int i = 0; i < NB; i++) {
        CHECK_OK(src.next_target(src.ctx, x, y, B));
        same_x &= !memcmp(x, rx + (size_t)i * B * 32, (size_t)B * 32 * 4);
        same_y &= !memcmp(y, ry + (size_t)i * B * 32, (size_t)B * 32 * 4);
    }
    CHECK_MSG(same_x, "the pair's input rows differ from the %s store's", HIN);
    CHECK_MSG(same_y, "the pair's target rows differ from the %s store's", HOUT);
    cterp_store_stats st;
    CHECK_OK(cterp_act_source_stats(&src, &st));
    CHECK(st.rows_served == NB * B && st.forwards > 0);
    // the resume state names both hooks: the pair's state replays, another pair's is refused
    uint64_t w[16];
    int nw = src.get_state(src.ctx, w, 16);
    CHECK(nw > 0);
    cterp_act_source other;
    CHECK_OK(cterp_act_pair_store(&other, m, HIN, "blocks.1.hook_resid_post", corpus, &c, B));
    CHECK(other.set_state(other.ctx, w, nw, NB * B) != CTERP_OK);
    cterp_act_source_free(&other);
    cterp_act_source again;
    CHECK_OK(cterp_act_pair_store(&again, m, HIN, HOUT, corpus, &c, B));
    CHECK_OK(again.set_state(again.ctx, w, nw, NB * B));
    float *x2 = malloc((size_t)B * 32 * 4), *y2 = malloc((size_t)B * 32 * 4);
    CHECK_OK(src.next_target(src.ctx, x, y, B));
    CHECK_OK(again.next_target(again.ctx, x2, y2, B));
    CHECK_MSG(!memcmp(x, x2, (size_t)B * 32 * 4) && !memcmp(y, y2, (size_t)B * 32 * 4),
              "a pair source resumed from its state serves other rows");
    cterp_act_source_free(&again);
    cterp_act_source_free(&src);
    // errors name the hook
    CHECK(cterp_act_pair_store(&src, m, HIN, HIN, corpus, &c, B) == CTERP_EINVAL);
    CHECK(strstr(cterp_last_error(), HIN) != NULL);
    CHECK(cterp_act_pair_store(&src, m, HIN, "blocks.1.hook_nope", corpus, &c, B) == CTERP_ENOTFOUND);
    CHECK(strstr(cterp_last_error(), "blocks.1.hook_nope") != NULL);
    free(rx), free(ry), free(x), free(y), free(x2), free(y2);
}

static cterp_train_config tc_cfg(cterp_arch arch) {
    cterp_train_config c;
    cterp_train_config_default(&c);
    c.architecture = arch;
    c.d_sae = 128, c.batch_size = B, c.training_steps = 300, c.seed = 3, c.lr = 3e-3f;
    c.l1_coefficient = 0.3f, c.checkpoint_every = 0, c.log_every = 100;
    return c;
}

// Log-softmax of one row in double; the CE of token t.
static double ce_of(const float *logits, int64_t V, int32_t t) {
    double mx = logits[0], z = 0;
    for (int64_t v = 1; v < V; v++) mx = logits[v] > mx ? logits[v] : mx;
    for (int64_t v = 0; v < V; v++) z += exp((double)logits[v] - mx);
    return -((double)logits[t] - mx - log(z));
}

typedef struct {
    float *rows; // (B*T, D): a captured or a replacing activation
    const uint8_t *mask;
    int64_t D;
    int mode; // 0: capture; 1: replace unmasked rows by `rows`; 2: zero unmasked rows
} by_hand;

static cterp_status hand_hook(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    (void)name, (void)ndim;
    by_hand *h = user;
    const int64_t R = shape[0] * shape[1];
    for (int64_t r = 0; r < R; r++) {
        if (h->mode == 0) memcpy(h->rows + r * h->D, act + r * h->D, (size_t)h->D * 4);
        else if (h->mask[r]) continue;
        else if (h->mode == 1) memcpy(act + r * h->D, h->rows + r * h->D, (size_t)h->D * 4);
        else memset(act + r * h->D, 0, (size_t)h->D * 4);
    }
    return CTERP_OK;
}

// eval by hand: the windows eval reads, the input hook captured, the transcoder run on it, its
// output put in place of the output hook's; CE of the clean, spliced and ablated runs, EV.
static void check_eval_by_hand(cterp_model *m, const cterp_sae *sae, const cterp_eval_result *r,
                               int64_t n_windows) {
    enum { T = 16 };
    const int64_t V = cterp_model_config_of(m)->n_vocab, D = sae->d_in, DO = sae->d_out;
    cterp_window_config wc = synth_pipeline_store(1).windows;
    cterp_dataset_opts dop;
    cterp_dataset_opts_default(&dop);
    cterp_windows *w;
    CHECK_OK(cterp_windows_open(&w, corpus, &dop, cterp_model_tokenizer(m), &wc));
    if (!w) return;
    const int64_t P = n_windows * T;
    int32_t *tok = malloc((size_t)P * 4);
    uint8_t *mask = malloc((size_t)P);
    int eof = 0;
    for (int64_t b = 0; b < n_windows; b++) CHECK_OK(cterp_windows_next(w, tok + b * T, mask + b * T, &eof));
    CHECK(!eof);
    cterp_windows_close(w);
    float *xin = malloc((size_t)(P * D) * 4), *yout = malloc((size_t)(P * DO) * 4),
          *yhat = malloc((size_t)(P * DO) * 4), *lg = malloc((size_t)(P * V) * 4);
    double ce[3] = {0, 0, 0}, sse = 0, sx2 = 0, *sx = calloc((size_t)DO, sizeof(double));
    int64_t n = 0, nce = 0;
    for (int run = 0; run < 3; run++) { // clean (capturing both hooks), spliced, ablated
        by_hand hin = {xin, mask, D, 0}, hout = {run == 0 ? yout : yhat, mask, DO, run == 0 ? 0 : run};
        cterp_hook hk[2] = {{HIN, hand_hook, &hin}, {HOUT, hand_hook, &hout}};
        cterp_forward_opts o = {run == 0 ? hk : hk + 1, run == 0 ? 2 : 1, 0, lg, 0};
        // one window at a time: the by-hand run shares nothing with eval's batching
        for (int64_t b = 0; b < n_windows; b++) {
            by_hand hi = hin, ho = hout;
            hi.rows += b * T * D, ho.rows += b * T * DO, hi.mask += b * T, ho.mask += b * T;
            cterp_hook hb[2] = {{HIN, hand_hook, &hi}, {HOUT, hand_hook, &ho}};
            o.hooks = run == 0 ? hb : hb + 1;
            o.logits = lg + b * T * V;
            CHECK_OK(cterp_model_forward(m, tok + b * T, 1, T, &o));
        }
        if (run == 0) CHECK_OK(cterp_sae_forward(sae, xin, P, yhat));
        for (int64_t q = 0; q < P; q++)
            if (!mask[q] && q % T < T - 1) ce[run] += ce_of(lg + q * V, V, tok[q + 1]), nce += run == 0;
    }
    for (int64_t q = 0; q < P; q++) {
        if (mask[q]) continue;
        for (int64_t d = 0; d < DO; d++) {
            double y = yout[q * DO + d], e = y - yhat[q * DO + d];
            sse += e * e, sx2 += y * y, sx[d] += y;
        }
        n++;
    }
    double mean2 = 0;
    for (int64_t d = 0; d < DO; d++) mean2 += (sx[d] / (double)n) * (sx[d] / (double)n);
    const double ev = 1 - sse / (sx2 - (double)n * mean2);
    CHECK(r->n_tokens == n && r->n_ce_tokens == nce);
    CHECK_CLOSE(r->ce_loss_without_sae, ce[0] / (double)nce, 1e-5, 1e-4);
    CHECK_CLOSE(r->ce_loss_with_sae, ce[1] / (double)nce, 1e-5, 1e-4);
    CHECK_CLOSE(r->ce_loss_with_ablation, ce[2] / (double)nce, 1e-5, 1e-4);
    CHECK_CLOSE(r->explained_variance, ev, 1e-5, 1e-4);
    CHECK_CLOSE(r->mse, sse / (double)n, 1e-6, 1e-4);
    free(tok), free(mask), free(xin), free(yout), free(yhat), free(lg), free(sx);
}

static void test_train_eval(cterp_model *m) {
    cterp_pipeline_opts po;
    cterp_pipeline_opts_default(&po);
    po.store = synth_pipeline_store(1);
    po.model_name = "synth";
    po.eval_windows = 6;
    for (int a = 0; a < 2; a++) {
        const cterp_arch arch = a ? CTERP_ARCH_SKIP_TRANSCODER : CTERP_ARCH_TRANSCODER;
        cterp_train_config cfg = tc_cfg(arch);
        char dir[700];
        snprintf(dir, sizeof dir, "%s/%s", tmp, cterp_arch_name(arch));
        cterp_sae *sae = NULL;
        cterp_eval_result ev;
        CHECK_OK(cterp_train_transcoder(m, HIN, HOUT, corpus, &cfg, dir, &po, &sae, &ev));
        if (!sae) continue;
        CHECK(sae->arch == arch && !strcmp(sae->meta.hook_name, HIN) &&
              !strcmp(sae->meta.hook_name_out, HOUT));
        // the MLP is learnt: the MSE of its output well under its variance, and the model loses
        // less with the transcoder in its place than with the MLP's output zeroed
        CHECK_MSG(ev.explained_variance > 0.5, "%s: explained variance %g of the MLP output",
                  cterp_arch_name(arch), ev.explained_variance);
        CHECK_MSG(ev.ce_loss_with_sae < ev.ce_loss_with_ablation, "%s: CE %g spliced, %g ablated",
                  cterp_arch_name(arch), ev.ce_loss_with_sae, ev.ce_loss_with_ablation);
        check_eval_by_hand(m, sae, &ev, 6);
        // the saved directory: both hooks, and the same transcoder back
        cterp_sae *ld = NULL;
        CHECK_OK(cterp_sae_load(dir, &ld));
        if (ld) {
            CHECK(ld->arch == arch && ld->d_out == 32 && !strcmp(ld->meta.hook_name, HIN) &&
                  !strcmp(ld->meta.hook_name_out, HOUT));
            CHECK(!memcmp(ld->params, sae->params, sae->n_params * sizeof(float)));
            cterp_eval_result e2;
            cterp_eval_config ec;
            cterp_eval_config_default(&ec);
            ec.windows = po.store.windows, ec.batch = 4, ec.n_windows = 6;
            CHECK_OK(cterp_eval(m, ld, corpus, &ec, &e2)); // cfg.json's hooks, another batching
            CHECK_CLOSE(e2.ce_loss_with_sae, ev.ce_loss_with_sae, 1e-6, 1e-5);
            // errors: no output hook, the hooks in the wrong order, an output hook for an SAE
            ld->meta.hook_name_out[0] = 0;
            CHECK(cterp_eval(m, ld, corpus, &ec, &e2) == CTERP_EINVAL &&
                  strstr(cterp_last_error(), "hook_name_out"));
            ec.hook = "blocks.2.ln2.hook_normalized", ec.hook_out = HOUT;
            CHECK(cterp_eval(m, ld, corpus, &ec, &e2) == CTERP_EINVAL &&
                  strstr(cterp_last_error(), "does not run before"));
            ec.hook = HIN, ec.hook_out = "blocks.1.hook_nope";
            CHECK(cterp_eval(m, ld, corpus, &ec, &e2) == CTERP_ENOTFOUND);
            cterp_sae_free(ld);
        }
        cterp_sae_free(sae);
    }
    cterp_sae *s = NULL;
    CHECK_OK(cterp_sae_create(&s, CTERP_ARCH_STANDARD, 32, 16, 0));
    if (s) {
        cterp_eval_config ec;
        cterp_eval_config_default(&ec);
        ec.windows = po.store.windows, ec.n_windows = 2, ec.hook = HOUT, ec.hook_out = HIN;
        cterp_eval_result e;
        CHECK(cterp_eval(m, s, corpus, &ec, &e) == CTERP_EINVAL &&
              strstr(cterp_last_error(), "for transcoders"));
        cterp_sae_free(s);
    }
    // a transcoder needs pairs: an SAE's store is refused by the trainer
    cterp_train_config cfg = tc_cfg(CTERP_ARCH_TRANSCODER);
    CHECK(cterp_train_sae(m, 1, "mlp", corpus, &cfg, NULL, &po, NULL, NULL) == CTERP_EINVAL);
}

// A pair of caches from one run (cterp_act_cache_write_hooks, a whole epoch): the pair source
// serves each cache's rows as its own source does, trains the transcoder the live pair trains,
// resumes, and refuses caches that do not hold the same tokens.
static void test_cache_pair(cterp_model *m) {
    char dir[700], din[800], dout[800], other[700], oin[800];
    snprintf(dir, sizeof dir, "%s/cache", tmp);
    snprintf(din, sizeof din, "%s/%s", dir, HIN);
    snprintf(dout, sizeof dout, "%s/%s", dir, HOUT);
    cterp_store_config c = synth_pipeline_store(1);
    const char *hooks[2] = {HIN, HOUT};
    CHECK_OK(cterp_act_cache_write_hooks(m, "synth", hooks, 2, corpus, &c, 1 << 20, CTERP_DTYPE_F32, dir,
                                         NULL, NULL, NULL));
    cterp_train_config cfg = tc_cfg(CTERP_ARCH_TRANSCODER);
    cterp_store_config sc = c;
    sc.seed = cfg.seed, sc.run_rows = cterp_train_rows_needed(&cfg);
    cterp_act_source pair, a, b2;
    CHECK_OK(cterp_act_pair_cache(&pair, din, dout, &sc, B));
    CHECK_OK(cterp_act_source_cache(&a, din, &sc, B));
    CHECK_OK(cterp_act_source_cache(&b2, dout, &sc, B));
    CHECK(pair.d_in == 32 && pair.d_out == 32 && pair.next(pair.ctx, NULL, 0) == CTERP_EINVAL);
    float *x = malloc((size_t)B * 32 * 4), *y = malloc((size_t)B * 32 * 4),
          *xr = malloc((size_t)B * 32 * 4), *yr = malloc((size_t)B * 32 * 4);
    int same = 1;
    uint64_t st[16];
    int nst = 0;
    for (int i = 0; i < NB; i++) {
        if (i == NB / 2) nst = pair.get_state(pair.ctx, st, 16);
        CHECK_OK(pair.next_target(pair.ctx, x, y, B));
        CHECK_OK(a.next(a.ctx, xr, B));
        CHECK_OK(b2.next(b2.ctx, yr, B));
        same &= !memcmp(x, xr, (size_t)B * 32 * 4) && !memcmp(y, yr, (size_t)B * 32 * 4);
    }
    CHECK_MSG(same, "the cache pair's rows differ from its caches' own sources'");
    cterp_act_source_free(&a), cterp_act_source_free(&b2);
    // resumed at batch NB/2: the same pairs from there
    cterp_act_source r;
    CHECK_OK(cterp_act_pair_cache(&r, din, dout, &sc, B));
    CHECK(nst == 15);
    CHECK_OK(r.set_state(r.ctx, st, nst, NB * B));
    CHECK_OK(pair.get_state(pair.ctx, st, 16) == 15 ? CTERP_OK : CTERP_EINVAL);
    cterp_act_source_free(&pair);
    CHECK_OK(cterp_act_pair_cache(&pair, din, dout, &sc, B));
    same = 1;
    for (int i = 0; i < NB; i++) {
        CHECK_OK(pair.next_target(pair.ctx, x, y, B));
        if (i >= NB / 2) {
            CHECK_OK(r.next_target(r.ctx, xr, yr, B));
            same &= !memcmp(x, xr, (size_t)B * 32 * 4) && !memcmp(y, yr, (size_t)B * 32 * 4);
        }
    }
    CHECK_MSG(same, "a resumed cache pair serves other rows");
    st[nst - 1] ^= 1; // another target cache
    cterp_act_source r2;
    CHECK_OK(cterp_act_pair_cache(&r2, din, dout, &sc, B));
    CHECK(r2.set_state(r2.ctx, st, nst, NB * B) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "--acts-out"));
    cterp_act_source_free(&r2), cterp_act_source_free(&r), cterp_act_source_free(&pair);
    // the transcoder trained on the caches is the one trained live
    cterp_pipeline_opts po;
    cterp_pipeline_opts_default(&po);
    po.store = c;
    cterp_sae *live = NULL, *cached = NULL;
    CHECK_OK(cterp_train_transcoder(m, HIN, HOUT, corpus, &cfg, NULL, &po, &live, NULL));
    cterp_trainer *t = NULL;
    CHECK_OK(cterp_act_pair_cache(&pair, din, dout, &sc, B));
    CHECK_OK(cterp_trainer_create(&t, &cfg, &pair));
    if (t) {
        CHECK_OK(cterp_trainer_run(t, 0));
        CHECK_OK(cterp_trainer_export(t, &cached));
    }
    CHECK_MSG(live && cached && live->n_params == cached->n_params &&
                  !memcmp(live->params, cached->params, live->n_params * sizeof(float)),
              "the transcoder trained on the cache pair differs from the live one");
    cterp_trainer_free(t), cterp_act_source_free(&pair), cterp_sae_free(live), cterp_sae_free(cached);
    // refused: the same hook twice; caches of another run (another context size)
    CHECK(cterp_act_pair_cache(&pair, din, din, &sc, B) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "both caches of"));
    snprintf(other, sizeof other, "%s/cache8", tmp);
    snprintf(oin, sizeof oin, "%s/%s", other, HIN);
    cterp_store_config c8 = c;
    c8.windows.context_size = 8;
    CHECK_OK(cterp_act_cache_write(m, "synth", HIN, corpus, &c8, 1 << 20, CTERP_DTYPE_F32, oin, NULL, NULL, NULL));
    CHECK(cterp_act_pair_cache(&pair, oin, dout, &sc, B) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "differ in"));
    // the input cache copied with its last token changed: the headers agree, tokens.bin does not
    char cin[800], *ca = file_join(din, "activations.bin"), *ct = file_join(din, "tokens.bin");
    char *na = NULL, *nt = NULL, *data = NULL, *toks = NULL;
    size_t n_data = 0, n_toks = 0;
    snprintf(cin, sizeof cin, "%s/copy", tmp);
    na = file_join(cin, "activations.bin"), nt = file_join(cin, "tokens.bin");
    CHECK_OK(file_mkdirs(cin));
    CHECK_OK(file_read_all(ca, &data, &n_data));
    CHECK_OK(file_read_all(ct, &toks, &n_toks));
    CHECK(n_toks >= 4);
    CHECK_OK(file_write_all(na, data, n_data));
    CHECK_OK(file_write_all(nt, toks, n_toks));
    CHECK_OK(cterp_act_pair_cache(&pair, cin, dout, &sc, B)); // an exact copy pairs
    cterp_act_source_free(&pair);
    if (n_toks >= 4) toks[n_toks - 4] ^= 1;
    CHECK_OK(file_write_all(nt, toks, n_toks));
    CHECK(cterp_act_pair_cache(&pair, cin, dout, &sc, B) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "differ in tokens (tokens.bin)"));
    unlink(nt);
    CHECK(cterp_act_pair_cache(&pair, cin, dout, &sc, B) == CTERP_EIO &&
          strstr(cterp_last_error(), "copy/tokens.bin: cannot open"));
    free(ca), free(ct), free(na), free(nt), free(data), free(toks);
    free(x), free(y), free(xr), free(yr);
}

static int same_file(const char *a, const char *b) {
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

static void test_cli(void) {
    if (!getenv("CTERP_BIN")) {
        printf("skip: CLI checks (CTERP_BIN not set)\n");
        return;
    }
    char args[3000], log[700], a[800], b[800];
    snprintf(log, sizeof log, "%s/cli.log", tmp);
    const char *common = "--context-size 16 --model-batch 3 --buffer-rows 256 --seed 3 --batch 32 "
                         "--steps 300 --d-sae 128 --lr 3e-3 --l1-coefficient 0.3 --quiet";
    // --layer L --component mlp is the library's pair: the same weights
    snprintf(args, sizeof args,
             "train --model %s --data %s --arch transcoder --layer 1 --component mlp %s "
             "--eval-windows 6 --out %s/cli_tc",
             model_path, corpus, common, tmp);
    CHECK(cli_run(args, log) == 0 && cli_log_has(log, "blocks.1.ln2.hook_normalized -> blocks.1.hook_mlp_out"));
    snprintf(a, sizeof a, "%s/cli_tc/sae_weights.safetensors", tmp);
    snprintf(b, sizeof b, "%s/transcoder/sae_weights.safetensors", tmp);
    CHECK_MSG(same_file(a, b), "train --layer 1 --component mlp: not cterp_train_transcoder's weights");
    snprintf(a, sizeof a, "%s/cli_tc/cfg.json", tmp);
    CHECK(cli_log_has(a, "\"hook_name_out\":\"blocks.1.hook_mlp_out\"") &&
          cli_log_has(a, "\"hook_name\":\"blocks.1.ln2.hook_normalized\""));
    // explicit hooks: skip_transcoder from the residual stream mid-block
    snprintf(args, sizeof args,
             "train --model %s --data %s --arch skip_transcoder --hook-in blocks.1.hook_resid_mid "
             "--hook-out blocks.1.hook_mlp_out %s --eval-windows 0 --out %s/cli_skip",
             model_path, corpus, common, tmp);
    CHECK(cli_run(args, log) == 0);
    snprintf(args, sizeof args, "eval --model %s --data %s --sae %s/cli_skip --windows 6 --context-size 16 --json",
             model_path, corpus, tmp);
    CHECK(cli_run(args, log) == 0 && cli_log_has(log, "\"ce_loss_with_sae\"") && cli_log_has(log, "\"n_tokens\""));
    snprintf(args, sizeof args,
             "eval --model %s --data %s --sae %s/cli_tc --windows 6 --context-size 16 "
             "--hook-in blocks.1.ln2.hook_normalized --hook-out blocks.1.hook_mlp_out",
             model_path, corpus, tmp);
    CHECK(cli_run(args, log) == 0 && cli_log_has(log, "ce_loss_score"));
    // from the caches of one run (test_cache_pair wrote them): the live run's weights
    snprintf(args, sizeof args,
             "train --acts %s/cache/%s --acts-out %s/cache/%s --arch transcoder %s --out %s/cli_cache",
             tmp, HIN, tmp, HOUT, common, tmp);
    CHECK(cli_run(args, log) == 0);
    snprintf(a, sizeof a, "%s/cli_cache/sae_weights.safetensors", tmp);
    snprintf(b, sizeof b, "%s/cli_tc/sae_weights.safetensors", tmp);
    CHECK_MSG(same_file(a, b), "train --acts IN --acts-out OUT: not the live run's weights");
    snprintf(a, sizeof a, "%s/cli_cache/cfg.json", tmp);
    CHECK(cli_log_has(a, "\"hook_name_out\":\"blocks.1.hook_mlp_out\""));
    snprintf(args, sizeof args, "train --acts %s/cache/%s --acts-out %s/cache/%s --arch topk --steps 2",
             tmp, HIN, tmp, HOUT);
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "--acts-out"));
    struct {
        const char *flags, *msg;
    } bad[] = {
        {"--arch transcoder --hooks blocks.1.ln2.hook_normalized,blocks.1.hook_mlp_out",
         "--arch transcoder takes one MLP"},
        {"--arch transcoder --layers 0-1 --component mlp", "not --layers"},
        {"--arch transcoder --hook-in blocks.1.hook_nope --hook-out blocks.1.hook_mlp_out",
         "--hook-in: "},
        {"--arch transcoder --hook-in blocks.1.hook_resid_mid --hook-out blocks.9.hook_mlp_out",
         "--hook-out: "},
        {"--arch transcoder --hook-in blocks.1.hook_resid_mid", "both"},
        {"--arch transcoder --layer 1 --component attn", "--component attn"},
        {"--arch transcoder --hook blocks.1.hook_mlp_out", "not --hook"},
        {"--arch transcoder --hook-in blocks.1.hook_mlp_out --hook-out blocks.1.hook_mlp_out",
         "are both blocks.1.hook_mlp_out"},
        {"--arch topk --hook-in blocks.1.hook_resid_mid --hook-out blocks.1.hook_mlp_out",
         "--hook-in is for --arch transcoder"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "train --model %s --data %s %s --steps 2 --out %s/bad",
                 model_path, corpus, bad[i].flags, tmp);
        int rc = cli_run(args, log);
        CHECK_MSG(rc == 2 && cli_log_has(log, bad[i].msg), "'%s': exit %d, expected 2 and '%s'",
                  bad[i].flags, rc, bad[i].msg);
    }
    snprintf(args, sizeof args, "train --toy --arch transcoder --hook-in a.b --hook-out c.d --steps 2");
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "--hook-in needs --model"));
    // eval: --hook-in on an SAE; a transcoder's SAEBench output
    snprintf(args, sizeof args,
             "train --model %s --data %s --hook blocks.1.hook_mlp_out --d-sae 32 --k 4 --steps 5 "
             "--batch 32 --context-size 16 --buffer-rows 256 --eval-windows 0 --quiet --out %s/sae",
             model_path, corpus, tmp);
    CHECK(cli_run(args, log) == 0);
    snprintf(args, sizeof args,
             "eval --model %s --data %s --sae %s/sae --windows 2 --hook-in blocks.1.hook_resid_mid",
             model_path, corpus, tmp);
    CHECK(cli_run(args, log) == 2 && cli_log_has(log, "--hook-in is for transcoders"));
    snprintf(args, sizeof args,
             "eval --model %s --data %s --sae %s/cli_tc --windows 2 --saebench %s/sb.json",
             model_path, corpus, tmp, tmp);
    CHECK(cli_run(args, log) == 1 && cli_log_has(log, "no SAEBench core output"));
}

int main(void) {
    cterp_model *m = synth_pipeline_setup("transcoder", 3);
    if (!m) return test_done();
    test_pairs(m);
    test_train_eval(m);
    test_cache_pair(m);
    cterp_model_free(m);
    test_cli();
    return synth_pipeline_finish();
}
