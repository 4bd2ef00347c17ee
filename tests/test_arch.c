// Model families against llama.cpp: each variant of tests/synth_arch.h is regenerated into a
// temporary GGUF, run through cterp_model_forward and cterp_generate, and compared with
// llama.cpp's outputs on the same file (tests/data/model_ref/<variant>.ref, written by
// scripts/oracle/model_refs.sh): the logits of all 16 prompt positions, blocks.L.hook_resid_post
// and blocks.L.hook_resid_mid of every layer (where llama.cpp names that point), and the greedy
// continuation, which must be identical. A family cterp does not load fails with its error.
//
// CTERP_ARCH_ONLY=name1,name2 runs only the variants with those names or architectures
// (e.g. CTERP_ARCH_ONLY=llama,gpt2).
#include "cterp/model.h"
#include "synth_arch.h"
#include "test.h"

// Tolerances, as max |cterp - llama.cpp| over a tensor divided by the rms of llama.cpp's
// values. scripts/oracle/write_synth.c measures llama.cpp itself against an exact
// double-precision forward: families without a GELU agree to <= 3e-6 (f32 rounding), so 1e-4
// leaves room for cterp's own f32 rounding and nothing else. llama.cpp's CPU GELU reads an fp16
// table (GGML_GELU_FP16: input and output rounded to fp16, ~1e-3 relative each); that alone moves
// its logits by up to 2.9e-3 and the residual stream by up to 3.1e-3 of the rms (gemma3, six
// layers), so the GELU families (gpt2, gptneox, gemma*) get 1e-2.
#define TOL_F32 1e-4
#define TOL_GELU 1e-2

typedef struct {
    int T, n_gen, V, D, L, has_mid;
    float margin;
    char arch[25];
    int32_t *tok;               // (T + n_gen): prompt, then llama.cpp's greedy continuation
    float *logits, *post, *mid; // (T, V), (L, T, D), (L, T, D)
} model_ref;

static void ref_free(model_ref *r) {
    free(r->tok), free(r->logits), free(r->post), free(r->mid);
    memset(r, 0, sizeof *r);
}

// Reads the format written by scripts/oracle/model_ref.c (docs/model.md).
static int ref_read(model_ref *r, const char *path) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[8];
    uint32_t h[7];
    int ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "CTERPREF", 8) &&
             fread(h, 4, 7, f) == 7 && h[0] == 1 && fread(&r->margin, 4, 1, f) == 1 &&
             fread(r->arch, 1, 24, f) == 24;
    if (ok && h[1] - 1 < 256 && h[2] < 256 && h[3] - 1 < 65536 && h[4] - 1 < 4096 &&
        h[5] - 1 < 64) {
        r->T = (int)h[1], r->n_gen = (int)h[2], r->V = (int)h[3], r->D = (int)h[4];
        r->L = (int)h[5], r->has_mid = h[6] != 0;
        size_t nt = (size_t)(r->T + r->n_gen), nl = (size_t)r->T * r->V;
        size_t nr = (size_t)r->L * r->T * r->D;
        r->tok = malloc(nt * 4), r->logits = malloc(nl * 4), r->post = malloc(nr * 4);
        r->mid = malloc(nr * 4);
        ok = r->tok && r->logits && r->post && r->mid && fread(r->tok, 4, nt, f) == nt &&
             fread(r->logits, 4, nl, f) == nl && fread(r->post, 4, nr, f) == nr &&
             (!r->has_mid || fread(r->mid, 4, nr, f) == nr) && fgetc(f) == EOF;
    } else
        ok = 0;
    fclose(f);
    if (!ok) ref_free(r);
    return ok;
}

typedef struct {
    float *dst; // (T, D) slot of this layer
    size_t n;
    int calls;
} capture;

static cterp_status cap_fn(const char *name, float *act, const int64_t *shape, int ndim, void *u) {
    capture *c = u;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (n != c->n) return cterp_error(CTERP_EINVAL, "%s: %zu values, expected %zu", name, n, c->n);
    memcpy(c->dst, act, n * sizeof *act);
    c->calls++;
    return CTERP_OK;
}

// max |a - b| / rms(b)
static double rel_diff(const float *a, const float *b, size_t n) {
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
        s += (double)b[i] * b[i];
    }
    return m / (sqrt(s / (double)n) + 1e-30);
}

// the variant's name or architecture equals p[0..len)
static int matches(const synth_arch_cfg *c, const char *p, size_t len) {
    return (strlen(c->name) == len && !strncmp(p, c->name, len)) ||
           (strlen(c->arch) == len && !strncmp(p, c->arch, len));
}

static int selected(const synth_arch_cfg *c, const char *only) {
    if (!only || !*only) return 1;
    for (const char *p = only; *p;) {
        size_t len = strcspn(p, ",");
        if (len && matches(c, p, len)) return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

static void test_variant(const synth_arch_cfg *c, const char *refdir, const char *tmp) {
    char path[4200], gpath[4200];
    snprintf(path, sizeof path, "%s/%s.ref", refdir, c->name);
    model_ref r;
    if (!ref_read(&r, path)) {
        CHECK_MSG(0, "%s: cannot read the reference %s", c->name, path);
        return;
    }
    const int T = r.T, V = r.V, D = r.D, L = r.L;
    snprintf(gpath, sizeof gpath, "%s/%s.gguf", tmp, c->name);
    CHECK_OK(synth_arch_write(gpath, c));
    cterp_model *m = NULL;
    cterp_status s = cterp_model_open(&m, gpath);
    if (s) {
        CHECK_MSG(0, "%s (%s): cterp cannot load it: %s", c->name, c->arch, cterp_last_error());
        printf("%-17s FAIL: not loaded\n", c->name);
        ref_free(&r);
        return;
    }
    const cterp_model_config *mc = cterp_model_config_of(m);
    CHECK_MSG(mc->n_vocab == V && mc->d_model == D && mc->n_layers == L,
              "%s: cterp reads V %d D %d L %d, llama.cpp %d %d %d", c->name, mc->n_vocab,
              mc->d_model, mc->n_layers, V, D, L);
    if (mc->n_vocab != V || mc->d_model != D || mc->n_layers != L) goto done;

    // one forward: logits of every position, resid_post (and resid_mid) of every layer
    size_t nr = (size_t)L * T * D;
    float *logits = malloc((size_t)T * V * sizeof *logits), *post = calloc(nr, sizeof *post);
    float *mid = calloc(nr, sizeof *mid);
    cterp_hook *hooks = calloc(2 * (size_t)L, sizeof *hooks);
    capture *caps = calloc(2 * (size_t)L, sizeof *caps);
    char(*names)[64] = calloc(2 * (size_t)L, sizeof *names);
    int nh = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 1 + r.has_mid; k++) {
            snprintf(names[nh], sizeof names[nh], "blocks.%d.hook_resid_%s", l, k ? "mid" : "post");
            caps[nh] = (capture){(k ? mid : post) + (size_t)l * T * D, (size_t)T * D, 0};
            hooks[nh] = (cterp_hook){names[nh], cap_fn, &caps[nh]};
            nh++;
        }
    cterp_forward_opts o = {.hooks = hooks, .n_hooks = nh, .logits = logits};
    s = cterp_model_forward(m, r.tok, 1, T, &o);
    CHECK_MSG(s == CTERP_OK, "%s: forward: %s", c->name, cterp_last_error());
    if (!s) {
        for (int i = 0; i < nh; i++)
            CHECK_MSG(caps[i].calls == 1, "%s: %s fired %d times", c->name, names[i],
                      caps[i].calls);
        int gelu = synth_arch_layernorm(c) || synth_arch_gemma(c);
        double tol = gelu ? TOL_GELU : TOL_F32;
        double dl = rel_diff(logits, r.logits, (size_t)T * V), dp = rel_diff(post, r.post, nr);
        double dm = r.has_mid ? rel_diff(mid, r.mid, nr) : 0;
        CHECK_MSG(dl <= tol, "%s: logits differ from llama.cpp's by %.3g x rms (tolerance %g)",
                  c->name, dl, tol);
        CHECK_MSG(dp <= tol, "%s: resid_post differs by %.3g x rms (tolerance %g)", c->name, dp,
                  tol);
        CHECK_MSG(dm <= tol, "%s: resid_mid differs by %.3g x rms (tolerance %g)", c->name, dm,
                  tol);

        // greedy continuation through the KV cache
        cterp_sampler_params sp = {.temperature = 0, .top_p = 1, .seed = 0};
        int32_t *out = NULL;
        int n_out = 0;
        s = cterp_generate(m, r.tok, T, r.n_gen, &sp, NULL, NULL, NULL, &out, &n_out);
        CHECK_MSG(s == CTERP_OK, "%s: generate: %s", c->name, cterp_last_error());
        int same = !s && n_out == T + r.n_gen;
        for (int i = T; same && i < n_out; i++) same = out[i] == r.tok[i];
        CHECK_MSG(same, "%s: greedy continuation differs from llama.cpp's", c->name);
        if (!same && !s) {
            fprintf(stderr, "  cterp:    ");
            for (int i = T; i < n_out; i++) fprintf(stderr, " %d", out[i]);
            fprintf(stderr, "\n  llama.cpp:");
            for (int i = T; i < T + r.n_gen; i++) fprintf(stderr, " %d", r.tok[i]);
            fprintf(stderr, "\n");
        }
        free(out);
        printf("%-17s logits %.2e, resid_post %.2e, resid_mid %s%.2e (x rms; tolerance %g), "
               "greedy %d tokens %s\n",
               c->name, dl, dp, r.has_mid ? "" : "n/a ", dm, tol, r.n_gen,
               same ? "identical" : "DIFFER");
    } else
        printf("%-17s FAIL: forward\n", c->name);
    free(logits), free(post), free(mid), free(hooks), free(caps), free(names);
done:
    cterp_model_free(m);
    remove(gpath);
    ref_free(&r);
}

int main(void) {
    const char *tests = getenv("CTERP_TESTS_DIR");
    char refdir[4000];
    snprintf(refdir, sizeof refdir, "%s/data/model_ref", tests ? tests : "tests");
    const char *tmp = test_tmpdir("arch");
    CHECK(tmp != NULL);
    if (!tmp) return test_done();
    const char *only = getenv("CTERP_ARCH_ONLY");
    int n = 0;
    for (int i = 0; i < SYNTH_ARCH_N_VARIANTS; i++)
        if (selected(&synth_arch_variants[i], only))
            test_variant(&synth_arch_variants[i], refdir, tmp), n++;
    // every name in the filter must mean something (a typo would silently test nothing)
    for (const char *p = only ? only : ""; *p;) {
        size_t len = strcspn(p, ",");
        int known = 0;
        for (int i = 0; i < SYNTH_ARCH_N_VARIANTS && len; i++)
            known |= matches(&synth_arch_variants[i], p, len);
        CHECK_MSG(known || !len, "CTERP_ARCH_ONLY: no variant or architecture '%.*s'", (int)len, p);
        p += len + (p[len] == ',');
    }
    CHECK_MSG(n > 0, "CTERP_ARCH_ONLY=%s selects nothing", only);
    rmdir(tmp);
    return test_done();
}
