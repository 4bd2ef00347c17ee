// Feature statistics and steering against naive references:
//  - stories260K with a topk SAE trained in-test: every top and quantile example's activation and
//    context, recomputed by a separate B = 1 forward and a double-precision encode, matches what
//    cterp_features_collect reports; the top-N values are the naive top-N; counts, histogram and
//    intervals add up; two runs are identical; save/load round-trips bit for bit;
//  - the toy: a latent matched to a ground-truth feature (cos >= 0.95) has its top examples on
//    rows where that feature fires;
//  - steering: ADD raises the probability of the latent's top logit token and changes greedy
//    generation; ABLATE with the error term equals x - f_i W_dec[i] (naive), leaves every other
//    latent's activation as it was, and is a bit-exact no-op for a latent that does not fire;
//  - errors: feature out of range, d_in/hook mismatch, unknown hook, missing data, bad files;
//  - token display strings (SentencePiece and GPT-2 vocabularies) are valid UTF-8 and rebuild
//    a tokenized text.
#include <stdint.h>

#include "core/file.h"
#include "cterp/analysis.h"
#include "cterp/features.h"
#include "cterp/toy.h"
#include "stories.h"
#include "test.h"

static const char *HOOK = "blocks.2.hook_resid_post";
enum { T = 32, D = 64 };
static char corpus[800], tmpd[600];

// naive topk/standard encode of one row in double
static void naive_encode(const cterp_sae *s, const float *x, double *f) {
    const int64_t N = s->d_sae;
    for (int64_t i = 0; i < N; i++) {
        double z = s->b_enc[i];
        for (int d = 0; d < D; d++) z += ((double)x[d] - s->b_dec[d]) * s->W_enc[i * D + d];
        f[i] = z > 0 ? z : 0;
    }
    if (s->arch != CTERP_ARCH_TOPK) return;
    for (int64_t i = 0; i < N; i++) { // keep the k largest
        int above = 0;
        for (int64_t j = 0; j < N && above < s->k; j++)
            above += f[j] > f[i] || (f[j] == f[i] && j < i);
        if (above >= s->k) f[i] = -f[i] - 1; // mark
    }
    for (int64_t i = 0; i < N; i++) f[i] = f[i] < 0 ? 0 : f[i];
}

typedef struct {
    float *x;
} cap_t;
static cterp_status cap_hook(const char *name, float *act, const int64_t *shape, int ndim,
                             void *user) {
    cap_t *c = user;
    memcpy(c->x, act, (size_t)(shape[0] * shape[1] * D) * sizeof(float));
    return CTERP_OK;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

static void test_collect(cterp_model *m, const cterp_sae *sae) {
    const int64_t N = sae->d_sae;
    cterp_features_config c;
    cterp_features_config_default(&c);
    c.windows.context_size = T;
    c.batch = 5; // windows per forward; the naive reference runs one at a time
    c.top_n = 8;
    c.quantile_k = 3;
    c.ctx_left = 4, c.ctx_right = 2;
    c.seed = 7;
    c.loss_windows = 3; // stored and reloaded; checked against a direct computation below
    cterp_features *F = NULL, *F2 = NULL;
    double t0 = time_now();
    CHECK_OK(cterp_features_collect(m, sae, corpus, &c, "stories260K", "sae", &F));
    double t1 = time_now();
    if (!F) return;
    printf("collect: %lld windows, %lld tokens, d_sae %lld in %.2f s\n", (long long)F->n_windows,
           (long long)F->n_tokens, (long long)N, t1 - t0);
    CHECK(F->n_windows > 10 && F->n_tokens > 10 * (T - 2) && F->d_sae == N &&
          !strcmp(F->hook, HOOK));

    // naive: every window alone, all latents in double
    cterp_windows *w;
    CHECK_OK(cterp_windows_open(&w, corpus, NULL, cterp_model_tokenizer(m), &c.windows));
    const int64_t NW = F->n_windows;
    double *fn = calloc((size_t)(NW * T * N), sizeof(double));
    int32_t *tok = malloc(sizeof(int32_t) * NW * T);
    uint8_t *mask = malloc((size_t)(NW * T));
    float x[T * D];
    cap_t cp = {x};
    cterp_hook h = {HOOK, cap_hook, &cp};
    cterp_forward_opts fo = {&h, 1, 0, NULL, 0};
    int64_t ntok = 0;
    for (int64_t k = 0; k < NW; k++) {
        int eof;
        CHECK_OK(cterp_windows_next(w, tok + k * T, mask + k * T, &eof));
        CHECK_OK(cterp_model_forward(m, tok + k * T, 1, T, &fo));
        for (int t = 0; t < T; t++)
            if (!mask[k * T + t]) naive_encode(sae, x + t * D, fn + (k * T + t) * N), ntok++;
    }
    cterp_windows_close(w);
    CHECK(ntok == F->n_tokens);

    int64_t fired_diff = 0, fired_total = 0, fired_rep = 0, checked = 0, ctx_checked = 0,
            ctx_bad = 0, alive = 0;
    double *col = malloc(sizeof(double) * NW * T);
    for (int64_t i = 0; i < N; i++) {
        const cterp_feature *ft = &F->f[i];
        int64_t fired = 0, n = 0;
        for (int64_t r = 0; r < NW * T; r++)
            if (!mask[r]) {
                double a = fn[r * N + i];
                fired += a > 0, col[n++] = a;
            }
        fired_diff += llabs(fired - ft->fired), fired_total += fired, fired_rep += ft->fired;
        if (!ft->fired) continue;
        alive++;
        qsort(col, (size_t)n, sizeof *col, cmp_desc);
        CHECK_CLOSE(ft->max_act, col[0], 1e-4, 1e-4);
        CHECK(ft->n_top == (ft->fired < c.top_n ? ft->fired : c.top_n));
        int64_t hs = 0, gs = 0;
        for (int b = 0; b < ft->n_bins; b++) hs += ft->hist[b];
        CHECK_MSG(hs == ft->fired, "latent %lld: histogram holds %lld, fired %lld", (long long)i,
                  (long long)hs, (long long)ft->fired);
        CHECK(ft->max_act < ft->bin_width * (float)ft->n_bins &&
              ft->max_act >= ft->bin_width * (float)(ft->n_bins - 1));
        for (int g = 0; g < ft->n_groups; g++) {
            const cterp_feature_group *G = &ft->groups[g];
            gs += G->count;
            CHECK(G->n == (G->count < c.quantile_k ? G->count : c.quantile_k));
            for (int k = 0; k < G->n; k++) CHECK(G->ex[k].act >= G->lo && G->ex[k].act < G->hi);
        }
        CHECK(gs == ft->fired);
        for (int k = 0; k < ft->n_top; k++) {
            const cterp_feature_example *e = &ft->top[k];
            CHECK_CLOSE(e->act, col[k], 1e-4, 1e-4); // the reported top-N are the naive top-N
            if (k) CHECK(e->act <= ft->top[k - 1].act);
        }
        // every example, top and quantile: its activation and its context, recomputed
        for (int pass = 0; pass < 1 + ft->n_groups; pass++) {
            const cterp_feature_example *ex = pass ? ft->groups[pass - 1].ex : ft->top;
            int n_ex = pass ? ft->groups[pass - 1].n : ft->n_top;
            for (int k = 0; k < n_ex; k++) {
                const cterp_feature_example *e = &ex[k];
                int64_t r = e->window * T + e->pos;
                CHECK_MSG(fabs(e->act - fn[r * N + i]) <= 1e-4 + 1e-4 * fabs(fn[r * N + i]),
                          "latent %lld window %lld pos %d: reported %.7g, recomputed %.7g",
                          (long long)i, (long long)e->window, e->pos, e->act, fn[r * N + i]);
                CHECK(e->start == (e->pos - c.ctx_left > 0 ? e->pos - c.ctx_left : 0));
                CHECK(e->start + e->n_ctx ==
                      (e->pos + c.ctx_right + 1 < T ? e->pos + c.ctx_right + 1 : T));
                CHECK(e->acts[e->pos - e->start] == e->act);
                for (int t = 0; t < e->n_ctx; t++) {
                    int64_t q = e->window * T + e->start + t;
                    double ref = mask[q] ? 0 : fn[q * N + i];
                    ctx_bad +=
                        tok[q] != e->tokens[t] || fabs(e->acts[t] - ref) > 1e-4 + 1e-4 * fabs(ref);
                    ctx_checked++;
                }
                checked++;
            }
        }
    }
    printf("naive check: %lld alive latents, %lld examples, %lld context tokens (%lld differ), "
           "fired %lld vs "
           "naive %lld (|diff| %lld)\n",
           (long long)alive, (long long)checked, (long long)ctx_checked, (long long)ctx_bad,
           (long long)fired_rep, (long long)fired_total, (long long)fired_diff);
    CHECK(alive > N / 2 && checked > 100);
    // token view: the CTERP_FEAT_VIEW_K strongest latents per position, against the naive encode
    int64_t view_bad = 0, view_n = 0;
    CHECK(F->view_n == c.view_windows && F->cofire_done);
    for (int64_t v = 0; v < F->view_n; v++)
        for (int t = 0; t < T; t++) {
            const int64_t r = F->view_window[v] * T + t;
            CHECK(F->view_tokens[v * T + t] == tok[r] && F->view_mask[v * T + t] == mask[r]);
            const int32_t *id = F->view_ids + (v * T + t) * CTERP_FEAT_VIEW_K;
            const float *av = F->view_acts + (v * T + t) * CTERP_FEAT_VIEW_K;
            for (int k = 0; k < CTERP_FEAT_VIEW_K; k++) {
                if (mask[r]) {
                    view_bad += id[k] != -1;
                    continue;
                }
                int above = 0; // naive rank of the listed latent: how many are larger
                if (id[k] >= 0) {
                    double a = fn[r * N + id[k]];
                    view_bad += fabs(av[k] - a) > 1e-4 + 1e-4 * fabs(a) || !(a > 0);
                    for (int64_t j = 0; j < N; j++) above += fn[r * N + j] > a + 1e-4;
                    view_bad += above > k;
                } else { // fewer than k + 1 latents fire here
                    for (int64_t j = 0; j < N; j++) above += fn[r * N + j] > 1e-4;
                    view_bad += above > k;
                }
                view_n++;
            }
        }
    printf("token view: %lld windows, %lld entries, %lld differ from the naive ranking\n",
           (long long)F->view_n, (long long)view_n, (long long)view_bad);
    CHECK(view_n > 0 && view_bad == 0);
    // top-k membership can flip between the batched and the one-window forward at near-ties
    CHECK_MSG(fired_diff <= fired_total / 1000, "fired counts differ by %lld of %lld",
              (long long)fired_diff, (long long)fired_total);
    CHECK_MSG(ctx_bad <= ctx_checked / 200, "%lld of %lld context values differ",
              (long long)ctx_bad, (long long)ctx_checked);

    // logit effects: W_dec[i] . (g * W_U), against a naive product through the model's unembed
    // of a one-hot residual (unembed is linear)
    float *lg = malloc(sizeof(float) * 512 * 2), *e = calloc(D * D, sizeof(float)),
          *U = malloc(sizeof(float) * D * 512);
    for (int d = 0; d < D; d++) e[d * D + d] = 1;
    CHECK_OK(cterp_model_unembed(m, e, D, U)); // row d: g_d W_U[:, d]
    for (int64_t i = 0; i < N; i += N / 4) {
        const cterp_feature *ft = &F->f[i];
        CHECK_OK(cterp_logit_effects(m, sae, i, 1, lg));
        int best = 0;
        for (int v = 0; v < 512; v++) best = lg[v] > lg[best] ? v : best;
        double ref = 0;
        for (int d = 0; d < D; d++) ref += (double)sae->W_dec[i * D + d] * U[d * 512 + best];
        CHECK_CLOSE(lg[best], ref, 1e-4, 1e-4);
        // one row takes the fused-dot path, a chunk the GEMM: the same up to rounding
        CHECK(ft->n_logits == c.n_logits && ft->logit_top_ids[0] == best);
        CHECK_CLOSE(ft->logit_top[0], lg[best], 1e-5, 1e-5);
        CHECK(ft->logit_bot[0] <= ft->logit_bot[1] && ft->logit_top[0] >= ft->logit_top[1]);
    }
    free(lg), free(e), free(U);

    // deterministic; save/load round trip is exact
    CHECK_OK(cterp_features_collect(m, sae, corpus, &c, "stories260K", "sae", &F2));
    char dir[800];
    snprintf(dir, sizeof dir, "%s/feats", tmpd);
    CHECK_OK(cterp_features_save(F, dir));
    cterp_features *L = NULL;
    CHECK_OK(cterp_features_load(dir, &L));
    for (int pass = 0; pass < 2 && F2 && L; pass++) {
        const cterp_features *G = pass ? L : F2;
        int same = G->d_sae == F->d_sae && G->n_tokens == F->n_tokens &&
                   G->n_windows == F->n_windows && !strcmp(G->hook, F->hook) &&
                   G->n_vocab == F->n_vocab;
        for (int64_t v = 0; same && v < G->n_vocab; v++) same = !strcmp(G->vocab[v], F->vocab[v]);
        const size_t vt = (size_t)F->view_n * T;
        same = same && G->view_n == F->view_n && G->cofire_done == F->cofire_done &&
               !memcmp(G->view_window, F->view_window, sizeof(int64_t) * (size_t)F->view_n) &&
               !memcmp(G->view_tokens, F->view_tokens, sizeof(int32_t) * vt) &&
               !memcmp(G->view_mask, F->view_mask, vt) &&
               !memcmp(G->view_ids, F->view_ids, sizeof(int32_t) * vt * CTERP_FEAT_VIEW_K) &&
               !memcmp(G->view_acts, F->view_acts, sizeof(float) * vt * CTERP_FEAT_VIEW_K);
        for (int64_t i = 0; same && i < N; i++) {
            const cterp_feature *a = &F->f[i], *b = &G->f[i];
            same = a->fired == b->fired && a->frequency == b->frequency &&
                   a->mean_act == b->mean_act && a->max_act == b->max_act &&
                   a->n_bins == b->n_bins && a->bin_width == b->bin_width &&
                   !memcmp(a->hist, b->hist, sizeof(int64_t) * (size_t)a->n_bins) &&
                   a->n_top == b->n_top && a->n_groups == b->n_groups &&
                   a->n_logits == b->n_logits &&
                   !memcmp(a->logit_top, b->logit_top, sizeof(float) * (size_t)a->n_logits) &&
                   !memcmp(a->logit_bot_ids, b->logit_bot_ids,
                           sizeof(int32_t) * (size_t)a->n_logits) &&
                   a->logit_lo == b->logit_lo && a->logit_hi == b->logit_hi &&
                   a->n_cofire == b->n_cofire && a->n_dec == b->n_dec &&
                   !memcmp(a->cofire_ids, b->cofire_ids, sizeof(int32_t) * (size_t)a->n_cofire) &&
                   !memcmp(a->cofire_jaccard, b->cofire_jaccard,
                           sizeof(float) * (size_t)a->n_cofire) &&
                   !memcmp(a->dec_ids, b->dec_ids, sizeof(int32_t) * (size_t)a->n_dec) &&
                   !memcmp(a->dec_cos, b->dec_cos, sizeof(float) * (size_t)a->n_dec) &&
                   a->loss_n == b->loss_n && a->loss_mean == b->loss_mean && a->n_loss == b->n_loss;
            for (int k = 0; same && k < a->n_loss; k++)
                same = a->loss_top[k].window == b->loss_top[k].window &&
                       a->loss_top[k].pos == b->loss_top[k].pos &&
                       a->loss_top[k].next == b->loss_top[k].next &&
                       a->loss_top[k].dloss == b->loss_top[k].dloss;
            for (int k = 0; same && k < a->n_top; k++)
                same = a->top[k].act == b->top[k].act && a->top[k].window == b->top[k].window &&
                       a->top[k].n_ctx == b->top[k].n_ctx &&
                       !memcmp(a->top[k].acts, b->top[k].acts,
                               sizeof(float) * (size_t)a->top[k].n_ctx) &&
                       !memcmp(a->top[k].tokens, b->top[k].tokens,
                               sizeof(int32_t) * (size_t)a->top[k].n_ctx);
            for (int g = 0; same && g < a->n_groups; g++) {
                same = a->groups[g].count == b->groups[g].count &&
                       a->groups[g].n == b->groups[g].n && a->groups[g].lo == b->groups[g].lo;
                for (int k = 0; same && k < a->groups[g].n; k++)
                    same = a->groups[g].ex[k].act == b->groups[g].ex[k].act &&
                           a->groups[g].ex[k].pos == b->groups[g].ex[k].pos &&
                           !memcmp(a->groups[g].ex[k].acts, b->groups[g].ex[k].acts,
                                   sizeof(float) * (size_t)a->groups[g].ex[k].n_ctx);
            }
        }
        CHECK_MSG(same, "%s differs from the first run",
                  pass ? "the loaded result" : "a second run");
    }
    cterp_features_free(L);
    cterp_features_free(F2);

    // a version-1 file (before neighbours, ablation effects and the token view) still loads,
    // with those empty; in version 2 they are required
    char lp[900], cmd[2000];
    snprintf(cmd, sizeof cmd, "sed -i 's/\"version\":2,/\"version\":1,/' '%s/features.json'", dir);
    CHECK(system(cmd) == 0);
    CHECK_OK(cterp_features_load(dir, &L));
    if (L) {
        int64_t had = 0, left = 0;
        for (int64_t i = 0; i < N; i++)
            had += F->f[i].n_cofire + F->f[i].n_dec + F->f[i].n_loss,
                left += L->f[i].n_cofire + L->f[i].n_dec + L->f[i].n_loss +
                        (L->f[i].max_act != F->f[i].max_act);
        CHECK(had > 0 && left == 0 && L->view_n == 0 && F->view_n > 0 && L->cfg.loss_windows == 0);
    }
    cterp_features_free(L), L = NULL;
    snprintf(cmd, sizeof cmd, "sed -i 's/\"version\":1,/\"version\":2,/' '%s/features.json'", dir);
    CHECK(system(cmd) == 0);
    snprintf(lp, sizeof lp, "%s/latents.jsonl", dir);
    snprintf(cmd, sizeof cmd, "sed -i '5s/\"loss\":/\"lozz\":/' '%s'", lp);
    CHECK(system(cmd) == 0);
    CHECK(cterp_features_load(dir, &L) == CTERP_EFORMAT && L == NULL);
    CHECK_MSG(strstr(cterp_last_error(), "latents.jsonl:5: field 'loss'") != NULL, "%s",
              cterp_last_error());
    // a corrupt line is named with its field
    snprintf(cmd, sizeof cmd, "sed -i '3s/\"max_act\":/\"max_akt\":/' '%s'", lp);
    CHECK(system(cmd) == 0);
    CHECK(cterp_features_load(dir, &L) == CTERP_EFORMAT && L == NULL);
    CHECK_MSG(strstr(cterp_last_error(), "latents.jsonl:3: field 'max_act'") != NULL, "%s",
              cterp_last_error());
    snprintf(cmd, sizeof cmd, "%s/none", tmpd);
    CHECK(cterp_features_load(cmd, &L) != CTERP_OK && strstr(cterp_last_error(), "none"));
    free(fn), free(tok), free(mask), free(col);
    cterp_features_free(F);
}

// The toy: top examples of a matched latent lie where its ground-truth feature fires.
static void test_toy(void) {
    cterp_toy_config tc;
    cterp_toy_config_default(&tc);
    tc.n_features = 64, tc.d = 32, tc.avg_active = 3, tc.decay = 0.98, tc.mag_min = 0.5f,
    tc.mag_max = 1.5f;
    tc.seed = 5;
    cterp_toy *toy;
    CHECK_OK(cterp_toy_create(&toy, &tc));
    cterp_act_source src;
    cterp_toy_source(&src, toy);
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    cfg.architecture = CTERP_ARCH_TOPK, cfg.d_sae = 128, cfg.k = 4, cfg.batch_size = 512,
    cfg.lr = 3e-3f;
    cfg.training_steps = 800, cfg.log_every = 100000;
    cterp_trainer *t;
    CHECK_OK(cterp_trainer_create(&t, &cfg, &src));
    CHECK_OK(cterp_trainer_run(t, 0));
    cterp_sae *sae = NULL;
    CHECK_OK(cterp_trainer_export(t, &sae));
    cterp_trainer_free(t);
    cterp_act_source_free(&src);
    if (!sae) return;
    const int G = tc.n_features, d = tc.d, B = 1024, NB = 16;
    const int64_t N = sae->d_sae;
    cterp_features_config c;
    cterp_features_config_default(&c);
    c.top_n = 10;
    cterp_feature_acc *acc;
    CHECK_OK(cterp_feature_acc_create(&acc, N, &c));
    float *x = malloc(sizeof(float) * B * d), *f = malloc(sizeof(float) * B * N);
    float *coef = malloc(sizeof(float) * (size_t)NB * B * G);
    for (int b = 0; b < NB; b++) { // rows the trainer never saw (batches after its stream)
        cterp_toy_sample(toy, 100000 + (uint64_t)b, x, B, coef + (size_t)b * B * G);
        CHECK_OK(cterp_sae_encode(sae, x, B, f));
        CHECK_OK(cterp_feature_acc_add(acc, f, B, (int64_t)b * B, NULL));
    }
    cterp_features *F = NULL;
    CHECK_OK(cterp_feature_acc_result(acc, 1, &F));
    CHECK(cterp_feature_acc_tokens(acc) == (int64_t)NB * B);
    int matched = 0, on = 0, total = 0;
    const float *feat = cterp_toy_features(toy);
    for (int j = 0; j < G && F; j++) {
        int64_t best = -1;
        double bc = 0;
        for (int64_t i = 0; i < N; i++) {
            double dot = 0, nn = 0;
            for (int q = 0; q < d; q++)
                dot += (double)feat[j * d + q] * sae->W_dec[i * d + q],
                    nn += pow(sae->W_dec[i * d + q], 2);
            double cs = nn > 0 ? dot / sqrt(nn) : 0;
            if (cs > bc) bc = cs, best = i;
        }
        if (bc < 0.95 || F->f[best].n_top == 0) continue;
        matched++;
        for (int k = 0; k < F->f[best].n_top; k++) {
            int64_t row = F->f[best].top[k].window; // T = 1: the row
            on += coef[(size_t)row * G + j] > 0, total++;
        }
    }
    printf("toy: %d of %d features matched (cos >= 0.95); %d of %d of their top examples on rows "
           "where the "
           "feature fires\n",
           matched, G, on, total);
    CHECK(matched >= G / 2);
    CHECK_MSG(on == total, "%d of %d top examples where the matched feature fires", on, total);
    cterp_features_free(F);
    cterp_feature_acc_free(acc);
    free(x), free(f), free(coef);
    cterp_sae_free(sae);
    cterp_toy_free(toy);
}

// ---- steering ----

typedef struct {
    const cterp_sae *s;
    int64_t i;
} naive_abl;
static cterp_status naive_ablate_hook(const char *name, float *act, const int64_t *shape, int ndim,
                                      void *user) {
    naive_abl *a = user;
    const int64_t R = shape[0] * shape[1], N = a->s->d_sae;
    double *f = malloc(sizeof(double) * (size_t)N);
    for (int64_t r = 0; r < R; r++) {
        naive_encode(a->s, act + r * D, f);
        for (int d = 0; d < D; d++)
            act[r * D + d] = (float)(act[r * D + d] - f[a->i] * a->s->W_dec[a->i * D + d]);
    }
    free(f);
    return CTERP_OK;
}

static void softmax(const float *l, int V, double *p) {
    double mx = l[0], z = 0;
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    for (int v = 0; v < V; v++) z += p[v] = exp(l[v] - mx);
    for (int v = 0; v < V; v++) p[v] /= z;
}

static void test_steer(cterp_model *m, const cterp_sae *sae) {
    const int64_t N = sae->d_sae;
    const int V = 512;
    cterp_steer s;
    CHECK(cterp_steer_init(&s, sae, N, CTERP_STEER_ADD, 1) == CTERP_EINVAL);
    CHECK_MSG(strstr(cterp_last_error(), "out of range") && strstr(cterp_last_error(), "256"), "%s",
              cterp_last_error());
    CHECK(cterp_steer_init(&s, sae, -1, CTERP_STEER_ABLATE, 0) == CTERP_EINVAL);

    const char *text =
        "Once upon a time, there was a little girl named Lily. She loved to play with her ball";
    int32_t *ids;
    size_t n;
    CHECK_OK(cterp_tokenize(cterp_model_tokenizer(m), text, strlen(text), 1, 0, &ids, &n));
    const int Tn = (int)n;
    float *f = malloc(sizeof(float) * (size_t)(Tn * N)),
          *l0 = malloc(sizeof(float) * (size_t)(Tn * V)),
          *l1 = malloc(sizeof(float) * (size_t)(Tn * V)),
          *l2 = malloc(sizeof(float) * (size_t)(Tn * V));
    CHECK_OK(cterp_features_on_tokens(m, sae, NULL, ids, Tn, f));
    int64_t fires = -1, silent = -1;
    double best = 0;
    for (int64_t i = 0; i < N; i++) {
        double sum = 0;
        for (int t = 0; t < Tn; t++) sum += f[t * N + i];
        if (sum > best) best = sum, fires = i;
        if (sum == 0 && silent < 0) silent = i;
    }
    CHECK(fires >= 0 && silent >= 0);
    cterp_forward_opts o = {NULL, 0, 0, l0, 0};
    CHECK_OK(cterp_model_forward(m, ids, 1, Tn, &o));

    // ablating a latent that never fires changes nothing, bit for bit
    CHECK_OK(cterp_steer_init(&s, sae, silent, CTERP_STEER_ABLATE, 0));
    cterp_hook h = {HOOK, cterp_steer_hook, &s};
    o = (cterp_forward_opts){&h, 1, 0, l1, 0};
    CHECK_OK(cterp_model_forward(m, ids, 1, Tn, &o));
    CHECK(!memcmp(l0, l1, sizeof(float) * (size_t)(Tn * V)));
    cterp_steer_free(&s);

    // ablating the most active latent: x - f_i W_dec[i], every other latent untouched
    CHECK_OK(cterp_steer_init(&s, sae, fires, CTERP_STEER_ABLATE, 0));
    CHECK_OK(cterp_model_forward(m, ids, 1, Tn, &o));
    naive_abl na = {sae, fires};
    cterp_hook hn = {HOOK, naive_ablate_hook, &na};
    cterp_forward_opts on = {&hn, 1, 0, l2, 0};
    CHECK_OK(cterp_model_forward(m, ids, 1, Tn, &on));
    double maxd = 0, maxc = 0;
    for (int64_t q = 0; q < (int64_t)Tn * V; q++)
        maxd = fmax(maxd, fabs(l1[q] - l2[q])), maxc = fmax(maxc, fabs(l1[q] - l0[q]));
    printf("ablate latent %lld: logits move by up to %.4f; vs the naive ablation %.2g\n",
           (long long)fires, maxc, maxd);
    CHECK(maxd < 1e-3 && maxc > 10 * maxd);
    int64_t others = 0;
    for (int64_t r = 0; r < s.rows; r++)
        for (int64_t i = 0; i < N; i++)
            others += i == fires ? s.f_edit[r * N + i] != 0 : s.f_edit[r * N + i] != s.f[r * N + i];
    CHECK(s.rows == Tn && others == 0 && s.sum_before > 0);
    cterp_steer_free(&s);

    // adding the decoder direction raises its top logit token: the latent whose direct logit
    // effect is the strongest (a latent the later layers wash out would test nothing)
    int32_t target = 0;
    int64_t strong = 0;
    float *lga = malloc(sizeof(float) * (size_t)(N * V));
    CHECK_OK(cterp_logit_effects(m, sae, 0, N, lga));
    for (int64_t i = 0; i < N; i++)
        for (int v = 0; v < V; v++)
            if (lga[i * V + v] > lga[strong * V + target]) strong = i, target = v;
    free(lga);
    CHECK_OK(cterp_steer_init(&s, sae, strong, CTERP_STEER_ADD, 8));
    o.logits = l1;
    CHECK_OK(cterp_model_forward(m, ids, 1, Tn, &o));
    double p0 = 0, p1 = 0, pa[512], pb[512];
    for (int t = 0; t < Tn; t++) {
        softmax(l0 + t * V, V, pa), softmax(l1 + t * V, V, pb);
        p0 += pa[target] / Tn, p1 += pb[target] / Tn;
    }
    printf("steer latent %lld (+8 W_dec): mean p('%s') %.4f -> %.4f\n", (long long)strong,
           cterp_tokenizer_token(cterp_model_tokenizer(m), target), p0, p1);
    CHECK(p1 > 1.2 * p0); // raised (by 1.4x to 3.4x over the SAEs the release and sanitizer runs train)
    // generation: same prompt and seed, different text
    cterp_sampler_params sp = {0, 1, 0};
    int32_t *g0, *g1;
    int n0, n1;
    CHECK_OK(cterp_generate(m, ids, 5, 30, &sp, NULL, NULL, NULL, &g0, &n0));
    cterp_forward_opts og = {&h, 1, 0, NULL, 0};
    CHECK_OK(cterp_generate(m, ids, 5, 30, &sp, &og, NULL, NULL, &g1, &n1));
    CHECK(n0 != n1 || memcmp(g0, g1, sizeof(int32_t) * (size_t)n0));
    int hits0 = 0, hits1 = 0;
    for (int k = 5; k < n0; k++) hits0 += g0[k] == target;
    for (int k = 5; k < n1; k++) hits1 += g1[k] == target;
    printf("greedy generation: the target token %d times unsteered, %d times steered\n", hits0,
           hits1);
    free(g0), free(g1);
    cterp_steer_free(&s);
    free(f), free(l0), free(l1), free(l2), free(ids);
}

// ---- ablation effects: the reported dloss against a direct computation ----

typedef struct {
    const cterp_sae *s;
    int64_t i;
    const uint8_t *mask; // (T)
    double *fi;          // (T) the latent's activation (naive encode), 0 at special positions
} naive_abl_masked;
static cterp_status naive_ablate_masked_hook(const char *name, float *act, const int64_t *shape,
                                             int ndim, void *user) {
    naive_abl_masked *a = user;
    const int64_t R = shape[0] * shape[1], N = a->s->d_sae;
    double *f = malloc(sizeof(double) * (size_t)N);
    for (int64_t r = 0; r < R; r++) {
        naive_encode(a->s, act + r * D, f);
        a->fi[r] = a->mask[r] ? 0 : f[a->i];
        if (a->mask[r]) continue;
        for (int d = 0; d < D; d++)
            act[r * D + d] = (float)(act[r * D + d] - f[a->i] * a->s->W_dec[a->i * D + d]);
    }
    free(f);
    return CTERP_OK;
}

// next-token CE per position of one window (double log-sum-exp)
static void window_ce(const float *lg, const int32_t *tok, int V, double *ce) {
    for (int t = 0; t < T - 1; t++) {
        const float *x = lg + (int64_t)t * V;
        double mx = x[0], z = 0;
        for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        for (int v = 0; v < V; v++) z += exp(x[v] - mx);
        ce[t] = mx + log(z) - x[tok[t + 1]];
    }
}

static void test_ablation(cterp_model *m, const cterp_sae *sae) {
    const int64_t N = sae->d_sae;
    const int V = 512, LW = 6;
    cterp_features_config c;
    cterp_features_config_default(&c);
    c.windows.context_size = T;
    c.batch = 4; // the ablation windows span two statistics batches
    c.n_windows = 10;
    c.loss_windows = LW, c.loss_top = 4;
    cterp_features *F = NULL;
    double t0 = time_now();
    CHECK_OK(cterp_features_collect(m, sae, corpus, &c, "stories260K", "sae", &F));
    double t1 = time_now();
    c.loss_windows = 0;
    cterp_features *F0 = NULL;
    CHECK_OK(cterp_features_collect(m, sae, corpus, &c, "stories260K", "sae", &F0));
    double t2 = time_now();
    if (!F || !F0) return;
    printf("ablation effects over %d windows: collect %.2f s (without: %.2f s)\n", LW, t1 - t0,
           t2 - t1);
    CHECK(F0->f[0].n_loss == 0 && F0->f[0].loss_n == 0 && F->cfg.loss_windows == LW);
    int64_t differ = 0; // the statistics do not depend on the ablation forwards beside them
    for (int64_t i = 0; i < N; i++) {
        const cterp_feature *a = &F->f[i], *b = &F0->f[i];
        differ += a->fired != b->fired || a->max_act != b->max_act || a->n_top != b->n_top;
        for (int k = 0; differ == 0 && k < a->n_top; k++)
            differ += a->top[k].act != b->top[k].act || a->top[k].window != b->top[k].window ||
                      memcmp(a->top[k].acts, b->top[k].acts, sizeof(float) * (size_t)a->top[k].n_ctx);
    }
    CHECK_MSG(differ == 0, "%lld latents' statistics change when ablation effects are measured",
              (long long)differ);

    // the windows, clean CE of each, one at a time
    cterp_windows *w;
    CHECK_OK(cterp_windows_open(&w, corpus, NULL, cterp_model_tokenizer(m), &c.windows));
    int32_t tok[LW][T];
    uint8_t mask[LW][T];
    double ce0[LW][T], ce1[T], fi[T];
    float *lg = malloc(sizeof(float) * T * V);
    for (int k = 0; k < LW; k++) {
        int eof;
        CHECK_OK(cterp_windows_next(w, tok[k], mask[k], &eof));
        cterp_forward_opts o = {NULL, 0, 0, lg, 0};
        CHECK_OK(cterp_model_forward(m, tok[k], 1, T, &o));
        window_ce(lg, tok[k], V, ce0[k]);
    }
    cterp_windows_close(w);
    // the latents measured at the most positions, and one measured at few
    int64_t pick[5] = {-1, -1, -1, -1, -1};
    for (int64_t i = 0; i < N; i++) {
        for (int q = 0; q < 4; q++)
            if (pick[q] < 0 || F->f[i].loss_n > F->f[pick[q]].loss_n) {
                for (int r = 3; r > q; r--) pick[r] = pick[r - 1];
                pick[q] = i;
                break;
            }
        if (F->f[i].loss_n > 0 && F->f[i].loss_n <= 3) pick[4] = i;
    }
    int checked_top = 0, checked_lat = 0;
    double worst = 0, moved = 0;
    for (int q = 0; q < 5; q++) {
        const int64_t i = pick[q];
        if (i < 0) continue;
        const cterp_feature *ft = &F->f[i];
        double sum = 0, dl[LW][T];
        int64_t n = 0;
        for (int k = 0; k < LW; k++) {
            naive_abl_masked na = {sae, i, mask[k], fi};
            cterp_hook h = {HOOK, naive_ablate_masked_hook, &na};
            cterp_forward_opts o = {&h, 1, 0, lg, 0};
            CHECK_OK(cterp_model_forward(m, tok[k], 1, T, &o));
            window_ce(lg, tok[k], V, ce1);
            for (int t = 0; t < T - 1; t++) {
                dl[k][t] = ce1[t] - ce0[k][t];
                if (fi[t] > 0) sum += dl[k][t], n++, moved = fmax(moved, fabs(dl[k][t]));
            }
        }
        CHECK_MSG(n == ft->loss_n, "latent %lld: %lld positions measured, direct %lld",
                  (long long)i, (long long)ft->loss_n, (long long)n);
        double mean = n ? sum / (double)n : 0;
        worst = fmax(worst, fabs(mean - ft->loss_mean));
        CHECK_MSG(fabs(mean - ft->loss_mean) < 2e-4, "latent %lld: mean dloss %.6g, direct %.6g",
                  (long long)i, ft->loss_mean, mean);
        CHECK(ft->n_loss == (ft->loss_n < c.loss_top ? ft->loss_n : c.loss_top));
        for (int k = 0; k < ft->n_loss; k++) {
            const cterp_feature_loss *l = &ft->loss_top[k];
            CHECK(l->window >= 0 && l->window < LW && l->pos >= 0 && l->pos < T - 1);
            if (l->window < 0 || l->window >= LW || l->pos < 0 || l->pos >= T - 1) continue;
            double d = dl[l->window][l->pos];
            worst = fmax(worst, fabs(d - l->dloss));
            CHECK_MSG(fabs(d - l->dloss) < 2e-4, "latent %lld (w%lld:%d): dloss %.6g, direct %.6g",
                      (long long)i, (long long)l->window, l->pos, l->dloss, d);
            CHECK(l->next == tok[l->window][l->pos + 1]);
            if (k) CHECK(l->dloss <= ft->loss_top[k - 1].dloss);
            checked_top++;
        }
        checked_lat++;
    }
    printf("ablation effects of %d latents (%d listed positions) vs a direct B = 1 computation: "
           "max |diff| %.2g, while dloss reaches %.3f\n",
           checked_lat, checked_top, worst, moved);
    CHECK(checked_lat >= 4 && checked_top >= 10 && moved > 100 * worst);
    free(lg);
    cterp_features_free(F), cterp_features_free(F0);
}

// ---- correlated latents and quantile groups on hand-built activations ----

static void test_neighbours(void) {
    // co-firing: latent 0 fires on rows 0..9, 1 on 5..14, 2 on 0..9, 3 on 15..19, 4 on row 0,
    // 5 never; row 20 is masked (every latent fires there)
    enum { NL = 6, R = 21 };
    float f[R * NL] = {0};
    uint8_t msk[R] = {0};
    for (int r = 0; r < R; r++) {
        f[r * NL + 0] = r < 10 ? 1.0f + r : 0;
        f[r * NL + 1] = r >= 5 && r < 15 ? 2.0f : 0;
        f[r * NL + 2] = r < 10 ? 0.5f : 0;
        f[r * NL + 3] = r >= 15 && r < 20 ? 1.0f : 0;
        f[r * NL + 4] = r == 0 ? 3.0f : 0;
    }
    for (int i = 0; i < NL; i++) f[20 * NL + i] = 1;
    msk[20] = 1;
    cterp_features_config c;
    cterp_features_config_default(&c);
    c.n_neighbours = 4;
    cterp_feature_acc *acc;
    CHECK_OK(cterp_feature_acc_create(&acc, NL, &c));
    CHECK_OK(cterp_feature_acc_add(acc, f, 12, 0, msk)); // two calls: counts carry over
    CHECK_OK(cterp_feature_acc_add(acc, f + 12 * NL, R - 12, 12, msk + 12));
    cterp_features *F = NULL;
    CHECK_OK(cterp_feature_acc_result(acc, 1, &F));
    cterp_feature_acc_free(acc);
    if (F) {
        const cterp_feature *a = &F->f[0];
        CHECK(F->cofire_done && a->n_cofire == 3);
        CHECK(a->cofire_ids[0] == 2 && a->cofire_jaccard[0] == 1.0f);
        CHECK(a->cofire_ids[1] == 1 && fabs(a->cofire_jaccard[1] - 5.0 / 15) < 1e-7);
        CHECK(a->cofire_ids[2] == 4 && fabs(a->cofire_jaccard[2] - 1.0 / 10) < 1e-7);
        CHECK(F->f[3].n_cofire == 0 && F->f[5].n_cofire == 0);
        CHECK(F->f[1].n_cofire == 2 && F->f[1].cofire_ids[0] == 0 && F->f[1].cofire_ids[1] == 2);
        CHECK(F->f[4].n_cofire == 2 && F->f[4].cofire_ids[0] == 0 && // J(4,0) = J(4,2) = 0.1
              F->f[4].cofire_ids[1] == 2 && F->f[4].cofire_jaccard[0] == F->f[4].cofire_jaccard[1]);
    }
    cterp_features_free(F), F = NULL;
    c.cofire_max_latents = NL - 1; // too many latents for the table: no co-firing, no error
    CHECK_OK(cterp_feature_acc_create(&acc, NL, &c));
    CHECK_OK(cterp_feature_acc_add(acc, f, R, 0, msk));
    CHECK_OK(cterp_feature_acc_result(acc, 1, &F));
    CHECK(F && !F->cofire_done && F->f[0].n_cofire == 0);
    cterp_feature_acc_free(acc);
    cterp_features_free(F);

    // decoder cosine: rows e1, (e1 + e2)/|.|, -e1, e2 (D = 3)
    float W[4 * 3] = {1, 0, 0, 2, 2, 0, -3, 0, 0, 0, 1, 0};
    int32_t ids[4 * 2];
    float cs[4 * 2];
    CHECK_OK(cterp_decoder_neighbours(W, 4, 3, 2, ids, cs));
    CHECK(ids[0] == 1 && fabs(cs[0] - M_SQRT1_2) < 1e-6 && ids[1] == 3 && fabs(cs[1]) < 1e-7);
    CHECK(ids[2 * 2] == 3 && fabs(cs[2 * 2]) < 1e-7 && ids[2 * 2 + 1] == 1); // -e1: e2 (0), then 1
    CHECK(cterp_decoder_neighbours(W, 4, 3, 4, ids, cs) == CTERP_EINVAL);
    // random rows (more than one SGEMM chunk) against naive double cosines
    enum { NR = 300, DR = 16, KR = 3 };
    float *Wr = malloc(sizeof(float) * NR * DR), *cr = malloc(sizeof(float) * NR * KR);
    int32_t *ir = malloc(sizeof(int32_t) * NR * KR);
    uint64_t st = 12345;
    for (int q = 0; q < NR * DR; q++) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        Wr[q] = (float)((double)(st >> 11) / 9007199254740992.0 - 0.5);
    }
    CHECK_OK(cterp_decoder_neighbours(Wr, NR, DR, KR, ir, cr));
    int bad = 0;
    for (int i = 0; i < NR; i++) {
        double best[KR] = {-2, -2, -2};
        for (int j = 0; j < NR; j++) {
            if (j == i) continue;
            double dot = 0, a = 0, b = 0;
            for (int d = 0; d < DR; d++)
                dot += (double)Wr[i * DR + d] * Wr[j * DR + d],
                    a += (double)Wr[i * DR + d] * Wr[i * DR + d],
                    b += (double)Wr[j * DR + d] * Wr[j * DR + d];
            double cv = dot / sqrt(a * b);
            for (int k = 0; k < KR; k++)
                if (cv > best[k]) {
                    for (int q = KR - 1; q > k; q--) best[q] = best[q - 1];
                    best[k] = cv;
                    break;
                }
        }
        for (int k = 0; k < KR; k++) bad += fabs(cr[i * KR + k] - best[k]) > 1e-5;
    }
    CHECK_MSG(bad == 0, "%d decoder-neighbour cosines differ from the naive ones", bad);
    free(Wr), free(cr), free(ir);
}

// Quantile groups on known distributions: latent 0 takes 0.01, 0.02, ..., 10.00 (groups of
// width 1 over [0, 16)); latent 1 grows geometrically, so the range doubles many times and groups
// merge. Counts are exact, samples lie in their group and are spread over it (not the top), and
// the samples do not depend on the order or batching of the rows.
static void test_quantiles(void) {
    enum { R = 1000, NL = 2 };
    float *f = malloc(sizeof(float) * R * NL);
    for (int r = 0; r < R; r++)
        f[r * NL] = (float)(r + 1) / 100.0f, f[r * NL + 1] = 0.001f * powf(1.01f, (float)r);
    cterp_features_config c;
    cterp_features_config_default(&c);
    c.quantile_k = 5, c.seed = 11, c.n_neighbours = 0;
    cterp_features *F[2] = {NULL, NULL};
    for (int pass = 0; pass < 2;
         pass++) { // rows in order in one call; in batches of 64, last first
        cterp_feature_acc *acc;
        CHECK_OK(cterp_feature_acc_create(&acc, NL, &c));
        if (pass == 0) {
            CHECK_OK(cterp_feature_acc_add(acc, f, R, 0, NULL));
        } else {
            for (int r0 = (R - 1) / 64 * 64; r0 >= 0; r0 -= 64)
                CHECK_OK(
                    cterp_feature_acc_add(acc, f + r0 * NL, R - r0 < 64 ? R - r0 : 64, r0, NULL));
        }
        CHECK_OK(cterp_feature_acc_result(acc, 1, &F[pass]));
        cterp_feature_acc_free(acc);
    }
    if (!F[0] || !F[1]) return;
    const cterp_feature *a = &F[0]->f[0];
    CHECK(a->fired == R && a->max_act == 10.0f && a->n_groups == 11);
    const int64_t expect[11] = {99, 100, 100, 100, 100, 100, 100, 100, 100, 100, 1};
    double off = 0;
    int n_off = 0;
    for (int g = 0; g < a->n_groups && g < 11; g++) {
        const cterp_feature_group *G = &a->groups[g];
        CHECK_MSG(G->lo == (float)g && G->hi == (float)(g + 1) && G->count == expect[g],
                  "group %d: [%g, %g) count %lld", g, G->lo, G->hi, (long long)G->count);
        CHECK(G->n == (G->count < 5 ? G->count : 5));
        for (int k = 0; k < G->n; k++) {
            CHECK(G->ex[k].act >= G->lo && G->ex[k].act < G->hi &&
                  G->ex[k].act == f[G->ex[k].window * NL]);
            if (k)
                CHECK(G->ex[k].act <= G->ex[k - 1].act && G->ex[k].window != G->ex[k - 1].window);
            if (g >= 1 && g <= 9) off += G->ex[k].act - G->lo, n_off++;
        }
    }
    // 45 samples uniform on [0, 1): mean 0.5, sd 0.043; the top 5 of each group would give 0.97
    printf("quantile groups: 11 groups of 0.01..10; the 45 samples of the full groups sit at %.3f "
           "of their group on average\n",
           off / n_off);
    CHECK(n_off == 45 && fabs(off / n_off - 0.5) < 0.15);
    const cterp_feature *b = &F[0]->f[1];
    int64_t total = 0;
    for (int g = 0; g < b->n_groups; g++) {
        const cterp_feature_group *G = &b->groups[g];
        int64_t direct = 0;
        for (int r = 0; r < R; r++) direct += f[r * NL + 1] >= G->lo && f[r * NL + 1] < G->hi;
        CHECK_MSG(G->count == direct, "latent 1 group %d: %lld, direct %lld", g,
                  (long long)G->count, (long long)direct);
        total += G->count;
        for (int k = 0; k < G->n; k++) CHECK(G->ex[k].act >= G->lo && G->ex[k].act < G->hi);
    }
    CHECK(total == R && b->max_act == f[(R - 1) * NL + 1]);
    int same = 1; // order and batching do not change the sample
    for (int i = 0; i < NL; i++)
        for (int g = 0; g < F[0]->f[i].n_groups; g++)
            for (int k = 0; k < F[0]->f[i].groups[g].n; k++)
                same &= F[0]->f[i].groups[g].ex[k].window == F[1]->f[i].groups[g].ex[k].window;
    CHECK_MSG(same, "the quantile samples depend on the order of the rows");
    cterp_features_free(F[0]), cterp_features_free(F[1]);
    free(f);
}

static void test_errors(cterp_model *m, const cterp_sae *sae) {
    cterp_features *F = NULL;
    cterp_features_config c;
    cterp_features_config_default(&c);
    c.windows.context_size = T;
    c.n_windows = 2;
    cterp_sae *narrow;
    CHECK_OK(cterp_sae_create(&narrow, CTERP_ARCH_STANDARD, 32, 16, 0));
    snprintf(narrow->meta.hook_name, sizeof narrow->meta.hook_name, "%s", HOOK);
    CHECK(cterp_features_collect(m, narrow, corpus, &c, NULL, NULL, &F) == CTERP_EINVAL && !F);
    CHECK_MSG(strstr(cterp_last_error(), HOOK) && strstr(cterp_last_error(), "d_in is 32"), "%s",
              cterp_last_error());
    cterp_steer s;
    CHECK_OK(cterp_steer_init(&s, narrow, 3, CTERP_STEER_ADD, 1));
    cterp_hook h = {HOOK, cterp_steer_hook, &s};
    cterp_forward_opts o = {&h, 1, 0, NULL, 0};
    int32_t ids[3] = {1, 403, 407};
    CHECK(cterp_model_forward(m, ids, 1, 3, &o) == CTERP_EINVAL &&
          strstr(cterp_last_error(), "d_in is 32"));
    cterp_sae_free(narrow);
    // a [B,T,H,hd] hook (H*hd = 64 = d_model): rows flattened per token, no logit effects (z is
    // not the residual stream)
    cterp_sae *zs;
    CHECK_OK(cterp_sae_create(&zs, CTERP_ARCH_STANDARD, D, 16, 0));
    for (int64_t q = 0; q < 16 * D; q++)
        zs->W_enc[q] = zs->W_dec[q] = (float)((q * 7919) % 13) / 13.0f - 0.4f;
    c.hook = "blocks.1.attn.hook_z";
    CHECK_OK(cterp_features_collect(m, zs, corpus, &c, NULL, NULL, &F));
    CHECK(F && F->n_tokens > 0 && F->f[0].n_logits == 0 &&
          !strcmp(F->hook, "blocks.1.attn.hook_z"));
    int64_t zf = 0;
    for (int64_t i = 0; F && i < 16; i++) zf += F->f[i].fired;
    CHECK(zf > 0);
    cterp_features_free(F), F = NULL;
    c.hook = NULL;
    cterp_sae_free(zs);
    c.hook = "blocks.9.hook_resid_post";
    CHECK(cterp_features_collect(m, sae, corpus, &c, NULL, NULL, &F) == CTERP_ENOTFOUND && !F);
    CHECK(strstr(cterp_last_error(), "blocks.9.hook_resid_post") != NULL);
    c.hook = NULL;
    CHECK(cterp_features_collect(m, sae, "/nonexistent/stories.txt", &c, NULL, NULL, &F) !=
              CTERP_OK &&
          !F);
    CHECK(strstr(cterp_last_error(), "/nonexistent/stories.txt") != NULL);
    c.top_n = 0;
    CHECK(cterp_features_collect(m, sae, corpus, &c, NULL, NULL, &F) == CTERP_EINVAL && !F);
}

// valid UTF-8, no NUL inside
static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        if (!n || (n == 2 && *p < 0xC2)) return 0;
        for (int k = 1; k < n; k++)
            if ((p[k] & 0xC0) != 0x80) return 0;
        p += n;
    }
    return 1;
}

// Display strings of both tokenizer kinds: every token is valid UTF-8, and the pieces of a
// tokenized text put back together give the text (SentencePiece: with its space prefix).
static void test_display(const char *data) {
    const char *names[2] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"};
    const char *text = "Tom had a red ball.\nIt was big";
    for (int k = 0; k < 2; k++) {
        char path[1200], buf[512], joined[512] = "";
        snprintf(path, sizeof path, "%s/vocab/%s", data, names[k]);
        cterp_tokenizer *tk;
        CHECK_OK(cterp_tokenizer_open(&tk, path));
        if (!tk) continue;
        int bad = 0;
        for (int32_t v = 0; v < cterp_tokenizer_n_vocab(tk); v++)
            bad += !utf8_ok(cterp_token_display(tk, v, buf, sizeof buf));
        CHECK_MSG(bad == 0, "%s: %d display strings are not valid UTF-8", names[k], bad);
        int32_t *ids;
        size_t n;
        CHECK_OK(cterp_tokenize(tk, text, strlen(text), 0, 0, &ids, &n));
        for (size_t i = 0; i < n; i++)
            strncat(joined, cterp_token_display(tk, ids[i], buf, sizeof buf),
                    sizeof joined - strlen(joined) - 1);
        CHECK_MSG(!strcmp(joined, text) || (joined[0] == ' ' && !strcmp(joined + 1, text)),
                  "%s: '%s'", names[k], joined);
        free(ids);
        cterp_tokenizer_free(tk);
    }
}

int main(void) {
    test_toy();
    test_neighbours();
    test_quantiles();
    const char *data = test_data_dir();
    if (!data) {
        printf("skip: shared test data not found (set CTERP_TESTDATA)\n");
        return test_done();
    }
    test_display(data);
    snprintf(tmpd, sizeof tmpd, "%s", test_tmpdir("features"));
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K.gguf", data);
    snprintf(corpus, sizeof corpus, "%s/stories.txt", tmpd);
    cterp_model *m;
    CHECK_OK(cterp_model_open(&m, mp));
    if (!m) return test_done();
    CHECK(write_story_corpus(m, corpus, test_sanitized() ? 16 : 40, 100, 3) ==
          0); // sampling is slow under ASan
    cterp_train_config cfg;
    cterp_train_config_default(&cfg);
    cfg.architecture = CTERP_ARCH_TOPK, cfg.k = 8, cfg.d_sae = 256, cfg.batch_size = 256;
    cfg.training_steps = 400, cfg.log_every = 100000, cfg.seed = 3;
    struct {
        cterp_store_config store;
    } po;
    cterp_store_config_default(&po.store);
    po.store.buffer_rows = 2048;
    po.store.windows.context_size = T;
    cterp_sae *sae = NULL;
    double t0 = time_now();
    char cache[800];
    snprintf(cache, sizeof cache, "%s/cache", tmpd);
    cterp_cache_info info;
    cterp_act_source src;
    cterp_trainer *tr = NULL;
    po.store.seed = cfg.seed;
    CHECK_OK(cterp_act_cache_write(m, "stories260K", HOOK, corpus, &po.store, 1 << 30,
                                   CTERP_DTYPE_F32, cache, NULL, NULL, &info));
    CHECK_OK(cterp_act_source_cache(&src, cache, &po.store, cfg.batch_size));
    CHECK_OK(cterp_trainer_create(&tr, &cfg, &src));
    if (tr) {
        cterp_sae_meta meta = cterp_trainer_sae(tr)->meta; // the hook the features pass reads
        cterp_store_meta(&meta, "stories260K", HOOK, corpus, &po.store.windows);
        cterp_trainer_set_meta(tr, &meta);
        CHECK_OK(cterp_trainer_run(tr, 0));
        CHECK_OK(cterp_trainer_export(tr, &sae));
    }
    cterp_trainer_free(tr);
    cterp_act_source_free(&src);
    printf("trained the SAE in %.1f s\n", time_now() - t0);
    if (sae) {
        test_collect(m, sae);
        test_ablation(m, sae);
        test_steer(m, sae);
        test_errors(m, sae);
        cterp_sae_free(sae);
    }
    cterp_model_free(m);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpd);
    if (system(cmd)) return 1;
    return test_done();
}
