// Eval and the model pipeline on stories260K:
//  - an SAE that reconstructs exactly (x = ReLU(x) - ReLU(-x)) scores EV 1, CE score 1, KL 0;
//  - CE/KL/EV/L0 of a random SAE against a naive loop (own encode/decode, double softmax);
//  - end to end: a story corpus sampled from the model, a topk SAE trained on
//    blocks.2.hook_resid_post through cterp_train_sae, evaluated on held-out stories
//    (EV >= 0.9, CE score >= 0.8, L0 <= 16); the same SAE, bit for bit, from an activation cache.
#include <stdint.h>

#include "core/file.h"
#include "cterp/analysis.h"
#include "stories.h"
#include "test.h"

static const char *HOOK = "blocks.2.hook_resid_post";
static char corpus[800], heldout[800], tmpd[600];

static cterp_eval_config eval_cfg(int T, int n) {
    cterp_eval_config c;
    cterp_eval_config_default(&c);
    c.windows.context_size = T;
    c.n_windows = n;
    c.batch = 3;
    c.hook = HOOK;
    return c;
}

static void test_identity(cterp_model *m) {
    const int64_t D = 64;
    cterp_sae *s;
    CHECK_OK(cterp_sae_create(&s, CTERP_ARCH_STANDARD, D, 2 * D, 0));
    for (int64_t i = 0; i < D; i++) { // latent i: +x_i, latent D+i: -x_i
        s->W_enc[i * D + i] = 1, s->W_dec[i * D + i] = 1;
        s->W_enc[(D + i) * D + i] = -1, s->W_dec[(D + i) * D + i] = -1;
    }
    cterp_eval_config c = eval_cfg(32, 5);
    cterp_eval_result r;
    CHECK_OK(cterp_eval(m, s, heldout, &c, &r));
    CHECK(r.n_windows == 5 && r.n_tokens > 100);
    CHECK_CLOSE(r.explained_variance, 1.0, 1e-6, 0);
    CHECK_CLOSE(r.ce_loss_with_sae, r.ce_loss_without_sae, 1e-5, 0);
    CHECK_CLOSE(r.ce_loss_score, 1.0, 1e-4, 0);
    CHECK_CLOSE(r.kl_div_with_sae, 0.0, 1e-6, 0);
    CHECK_CLOSE(r.kl_div_score, 1.0, 1e-5, 0);
    CHECK(r.ce_loss_with_ablation > r.ce_loss_without_sae + 0.5 && r.kl_div_with_ablation > 0.5);
    CHECK_CLOSE(r.l2_ratio, 1.0, 1e-6, 0);
    CHECK(r.l0 > 40 && r.l0 <= 64);
    cterp_sae_free(s);
}

// ---- naive reference ----
typedef struct {
    const cterp_sae *s;
    const uint8_t *mask;
    int mode; // 0 clean (read x), 1 splice, 2 zero
    double *x; // (B*T, D) clean activations
    double l0;
} naive_ctx;

static cterp_status naive_hook(const char *name, float *act, const int64_t *shape, int ndim, void *user) {
    naive_ctx *c = user;
    const cterp_sae *s = c->s;
    const int64_t R = shape[0] * shape[1], D = s->d_in, N = s->d_sae;
    for (int64_t r = 0; r < R; r++) {
        float *a = act + r * D;
        if (c->mode == 0) {
            for (int64_t d = 0; d < D; d++) c->x[r * D + d] = a[d];
            continue;
        }
        if (c->mask[r]) continue;
        if (c->mode == 2) {
            for (int64_t d = 0; d < D; d++) a[d] = 0;
            continue;
        }
        double y[64] = {0};
        for (int64_t i = 0; i < N; i++) {
            double z = s->b_enc[i];
            for (int64_t d = 0; d < D; d++) z += ((double)a[d] - s->b_dec[d]) * s->W_enc[i * D + d];
            if (z <= 0) continue;
            c->l0 += 1;
            for (int64_t d = 0; d < D; d++) y[d] += z * s->W_dec[i * D + d];
        }
        for (int64_t d = 0; d < D; d++) a[d] = (float)(y[d] + s->b_dec[d]);
    }
    return CTERP_OK;
}

static void naive_logp(const float *l, int64_t V, double *out) {
    double mx = l[0], z = 0;
    for (int64_t v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    for (int64_t v = 0; v < V; v++) z += exp(l[v] - mx);
    for (int64_t v = 0; v < V; v++) out[v] = l[v] - mx - log(z);
}

static void test_naive(cterp_model *m) {
    const int64_t D = 64, N = 96, T = 16, NW = 4, V = 512;
    cterp_sae *s;
    CHECK_OK(cterp_sae_create(&s, CTERP_ARCH_STANDARD, D, N, 0));
    uint64_t st = 12345;
    for (size_t q = 0; q < s->n_params; q++) { // small random parameters (LCG)
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        s->params[q] = (float)((double)(st >> 40) / 16777216.0 - 0.5) * 0.3f;
    }
    snprintf(s->meta.hook_name, sizeof s->meta.hook_name, "%s", HOOK); // eval takes the SAE's hook
    cterp_eval_config c = eval_cfg((int)T, (int)NW);
    c.hook = NULL;
    int64_t fired[96], wfired[96];
    c.fired = fired, c.windows_fired = wfired;
    cterp_eval_result r;
    CHECK_OK(cterp_eval(m, s, heldout, &c, &r));

    // the same windows, run naively: all NW windows in one forward
    cterp_windows *w;
    CHECK_OK(cterp_windows_open(&w, heldout, NULL, cterp_model_tokenizer(m), &c.windows));
    int32_t tok[NW * T];
    uint8_t mask[NW * T];
    int eof;
    for (int i = 0; i < NW; i++) CHECK_OK(cterp_windows_next(w, tok + i * T, mask + i * T, &eof));
    cterp_windows_close(w);
    float *lg[3];
    double *x = malloc(sizeof(double) * NW * T * D);
    naive_ctx nc = {s, mask, 0, x, 0};
    for (int mode = 0; mode < 3; mode++) {
        lg[mode] = malloc(sizeof(float) * NW * T * V);
        nc.mode = mode;
        cterp_hook h = {HOOK, naive_hook, &nc};
        cterp_forward_opts o = {&h, 1, 0, lg[mode], 0};
        CHECK_OK(cterp_model_forward(m, tok, NW, T, &o));
    }
    double ce[3] = {0}, kl[3] = {0}, p[512], q[512];
    int64_t n = 0, nx = 0;
    for (int64_t t = 0; t < NW * T; t++) {
        if (mask[t] || t % T == T - 1) continue;
        naive_logp(lg[0] + t * V, V, p);
        for (int mode = 0; mode < 3; mode++) {
            naive_logp(lg[mode] + t * V, V, q);
            ce[mode] -= q[tok[t + 1]];
            for (int64_t v = 0; v < V; v++) kl[mode] += exp(p[v]) * (p[v] - q[v]);
        }
        n++;
    }
    // explained variance over the unmasked positions, naive two-pass
    double mean[64] = {0}, var = 0, sse = 0;
    for (int64_t t = 0; t < NW * T; t++)
        if (!mask[t]) {
            nx++;
            for (int64_t d = 0; d < D; d++) mean[d] += x[t * D + d];
        }
    for (int64_t d = 0; d < D; d++) mean[d] /= (double)nx;
    naive_ctx rc = {s, mask, 1, NULL, 0};
    float a[64];
    double nin = 0, nout = 0, xh2 = 0, xxh = 0;
    int64_t nf[96] = {0}, nwf[96] = {0};
    uint8_t seen[96] = {0};
    for (int64_t t = 0; t < NW * T; t++) {
        if (t % T == 0) memset(seen, 0, sizeof seen);
        if (mask[t]) continue;
        for (int64_t d = 0; d < D; d++) a[d] = (float)x[t * D + d], var += pow(x[t * D + d] - mean[d], 2);
        for (int64_t i = 0; i < N; i++) { // which latents fire (ReLU: z > 0)
            double z = s->b_enc[i];
            for (int64_t d = 0; d < D; d++) z += ((double)a[d] - s->b_dec[d]) * s->W_enc[i * D + d];
            if (z > 0) nf[i]++, nwf[i] += !seen[i], seen[i] = 1;
        }
        int64_t sh[3] = {1, 1, D};
        uint8_t zero = 0;
        rc.mask = &zero;
        naive_hook(HOOK, a, sh, 3, &rc);
        double xx = 0, yy = 0, xy = 0;
        for (int64_t d = 0; d < D; d++)
            sse += pow(x[t * D + d] - a[d], 2), xx += x[t * D + d] * x[t * D + d],
                yy += (double)a[d] * a[d], xy += x[t * D + d] * a[d];
        nin += sqrt(xx), nout += sqrt(yy), xh2 += yy, xxh += xy;
    }
    CHECK_CLOSE(r.l2_norm_in, nin / nx, 1e-6, 1e-6);
    CHECK_CLOSE(r.l2_norm_out, nout / nx, 1e-5, 1e-5);
    CHECK_CLOSE(r.relative_reconstruction_bias, xh2 / xxh, 1e-5, 1e-5);
    int64_t fd = 0, wd = 0, ftot = 0;
    for (int64_t i = 0; i < N; i++)
        fd += llabs(fired[i] - nf[i]), wd += llabs(wfired[i] - nwf[i]), ftot += nf[i];
    CHECK_MSG(fd <= ftot / 500 && wd <= 2 && ftot > 100,
              "per-latent counts: tokens differ by %lld of %lld, windows by %lld", (long long)fd,
              (long long)ftot, (long long)wd);
    CHECK(r.n_ce_tokens == n && r.n_tokens == nx);
    CHECK_CLOSE(r.ce_loss_without_sae, ce[0] / n, 1e-5, 1e-5);
    CHECK_CLOSE(r.ce_loss_with_sae, ce[1] / n, 1e-4, 1e-4);
    CHECK_CLOSE(r.ce_loss_with_ablation, ce[2] / n, 1e-4, 1e-4);
    CHECK_CLOSE(r.kl_div_with_sae, kl[1] / n, 1e-4, 1e-3);
    CHECK_CLOSE(r.kl_div_with_ablation, kl[2] / n, 1e-4, 1e-3);
    CHECK_CLOSE(r.ce_loss_score, (ce[2] - ce[1]) / (ce[2] - ce[0]), 1e-3, 0);
    CHECK_CLOSE(r.explained_variance, 1 - sse / var, 1e-5, 1e-5);
    CHECK_CLOSE(r.l0, rc.l0 / (double)nx, 1e-9, 0.02); // ties at z ~ 0 may differ in f32
    for (int mode = 0; mode < 3; mode++) free(lg[mode]);
    free(x);
    cterp_sae_free(s);
}

static void test_end_to_end(cterp_model *m) {
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    cfg.architecture = CTERP_ARCH_TOPK;
    cfg.k = 16;
    cfg.d_sae = 512;
    cfg.batch_size = 256;
    cfg.training_steps = test_sanitized() ? 300 : 1500;
    cfg.log_every = 100000;
    cfg.seed = 3;
    cterp_pipeline_opts po;
    cterp_pipeline_opts_default(&po);
    po.model_name = "stories260K";
    po.store.buffer_rows = 4096;
    po.store.windows.context_size = 64;
    po.eval_windows = 64;
    char out[800], cache[800];
    snprintf(out, sizeof out, "%s/sae_live", tmpd);
    snprintf(cache, sizeof cache, "%s/cache", tmpd);
    double t0 = time_now();
    cterp_sae *sae = NULL;
    cterp_eval_result ev;
    CHECK_OK(cterp_train_sae(m, 2, "resid_post", corpus, &cfg, out, &po, &sae, &ev));
    double t1 = time_now();
    if (!sae) return;
    CHECK(!strcmp(sae->meta.hook_name, HOOK) && !strcmp(sae->meta.model_name, "stories260K") &&
          sae->meta.context_size == 64 && sae->meta.training_tokens == cfg.training_steps * 256);
    // held-out stories
    cterp_eval_config ec = eval_cfg(64, 64);
    cterp_eval_result r;
    CHECK_OK(cterp_eval(m, sae, heldout, &ec, &r));
    double t2 = time_now();
    printf("trained %lld steps in %.1f s; train-set EV %.4f CE score %.4f; held-out (%lld tokens): EV %.4f "
           "CE score %.4f (CE %.4f / SAE %.4f / ablated %.4f) KL score %.4f L0 %.2f dead %lld (eval %.1f s)\n",
           (long long)cfg.training_steps, t1 - t0, ev.explained_variance, ev.ce_loss_score,
           (long long)r.n_tokens, r.explained_variance, r.ce_loss_score, r.ce_loss_without_sae,
           r.ce_loss_with_sae, r.ce_loss_with_ablation, r.kl_div_score, r.l0, (long long)r.dead_latents,
           t2 - t1);
    if (!test_sanitized()) {
        CHECK(r.explained_variance >= 0.9);
        CHECK(r.ce_loss_score >= 0.8);
    }
    CHECK(r.l0 <= 16.0 + 1e-9);
    cterp_sae *back;
    CHECK_OK(cterp_sae_load(out, &back));
    if (back) {
        CHECK(!strcmp(back->meta.hook_name, HOOK) && !strcmp(back->meta.dataset_path, corpus) &&
              back->meta.context_size == 64 && back->meta.training_tokens == cfg.training_steps * 256);
        cterp_sae_free(back);
    }

    // from a cache of the whole corpus: the same rows in the same order -> the same SAE
    cterp_store_config sc = po.store;
    cterp_cache_info info;
    CHECK_OK(cterp_act_cache_write(m, "stories260K", HOOK, corpus, &sc, 1 << 30, CTERP_DTYPE_F32, cache, NULL,
                                   NULL, &info));
    CHECK(info.complete_epoch);
    sc.seed = cfg.seed;
    cterp_act_source src;
    CHECK_OK(cterp_act_source_cache(&src, cache, &sc, cfg.batch_size));
    cterp_trainer *t;
    CHECK_OK(cterp_trainer_create(&t, &cfg, &src));
    CHECK_OK(cterp_trainer_run(t, 0));
    cterp_sae *s2;
    CHECK_OK(cterp_trainer_export(t, &s2));
    CHECK_MSG(!memcmp(s2->params, sae->params, sae->n_params * sizeof(float)),
              "the SAE trained from the cache differs from the live one");
    cterp_sae_free(s2);
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
    cterp_sae_free(sae);
}

int main(void) {
    const char *data = test_data_dir();
    if (!data) {
        printf("skip: shared test data not found (set CTERP_TESTDATA)\n");
        return test_done();
    }
    snprintf(tmpd, sizeof tmpd, "%s", test_tmpdir("eval"));
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K.gguf", data);
    snprintf(corpus, sizeof corpus, "%s/stories.txt", tmpd);
    snprintf(heldout, sizeof heldout, "%s/heldout.txt", tmpd);
    cterp_model *m;
    CHECK_OK(cterp_model_open(&m, mp));
    if (!m) return test_done();
    CHECK(write_story_corpus(m, corpus, 64, 100, 1) == 0);
    CHECK(write_story_corpus(m, heldout, 16, 100, 2) == 0);
    test_identity(m);
    test_naive(m);
    test_end_to_end(m);
    cterp_model_free(m);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpd);
    if (system(cmd)) return 1;
    return test_done();
}
