// Model families against two references: each variant of tests/synth_arch.h is regenerated into
// a temporary GGUF, run through cterp_model_forward and cterp_generate, and compared with
// tests/data/model_ref/<variant>.ref (written by scripts/oracle/model_refs.sh). The file holds an
// exact double-precision forward's outputs (scripts/oracle/write_synth.c, independent of cterp's
// model code) and llama.cpp's outputs on the same file: the logits of all 16 prompt positions,
// blocks.L.hook_resid_post and blocks.L.hook_resid_mid of every layer (where llama.cpp names that
// point), and the greedy continuation, which must be identical to both. A family cterp does not
// load fails with its error.
//
// CTERP_ARCH_ONLY=name1,name2 runs only the variants with those names or architectures
// (e.g. CTERP_ARCH_ONLY=llama,gpt2).
#include "cterp/model.h"
#include "synth_arch.h"
#include "test.h"

// Tolerances, as max |cterp - reference| over a tensor divided by the rms of the reference.
// Against the exact forward: 1e-4 for every family, room for cterp's f32 rounding (~3e-6 at
// these sizes) and nothing else. Against llama.cpp: 1e-4 where llama.cpp itself is within
// LLAMA_F32_OWN (f32 rounding) of the exact forward. Its CPU GELU reads an fp16 table
// (GGML_GELU_FP16: input and output rounded to fp16), which moves its outputs by up to ~3e-3, so
// for the GELU families (gpt2, gptneox, gemma*) the bound is that measured error, taken from the
// file, times 1.5 plus 1e-4; a file whose llama.cpp error exceeds LLAMA_GELU_OWN is refused.
#define TOL 1e-4
#define LLAMA_F32_OWN 1e-5
#define LLAMA_GELU_OWN 1e-2

typedef struct {
    int32_t *gen;               // (N_GEN) greedy continuation
    float *logits, *post, *mid; // (T, V), (L, T, D), (L, T, D)
} ref_side;

typedef struct {
    int T, n_gen, V, D, L, has_mid, has_llama;
    char arch[25];
    int32_t *tok;          // (T) prompt
    ref_side exact, llama; // llama: only when has_llama
} model_ref;

static void side_free(ref_side *s) {
    free(s->gen), free(s->logits), free(s->post), free(s->mid);
}

static void ref_free(model_ref *r) {
    free(r->tok), side_free(&r->exact), side_free(&r->llama);
    memset(r, 0, sizeof *r);
}

static int side_read(ref_side *s, FILE *f, const model_ref *r) {
    size_t nl = (size_t)r->T * r->V, nr = (size_t)r->L * r->T * r->D;
    s->gen = malloc((size_t)r->n_gen * 4 + 4), s->logits = malloc(nl * 4);
    s->post = malloc(nr * 4), s->mid = calloc(nr, 4);
    return s->gen && s->logits && s->post && s->mid &&
           fread(s->gen, 4, (size_t)r->n_gen, f) == (size_t)r->n_gen &&
           fread(s->logits, 4, nl, f) == nl && fread(s->post, 4, nr, f) == nr &&
           (!r->has_mid || fread(s->mid, 4, nr, f) == nr);
}

// Reads the format (version 2) written by scripts/oracle/write_synth.c (docs/model.md).
static int ref_read(model_ref *r, const char *path) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[8];
    uint32_t h[8];
    float margins[2];
    int ok = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "CTERPREF", 8) &&
             fread(h, 4, 8, f) == 8 && h[0] == 2 && fread(margins, 4, 2, f) == 2 &&
             fread(r->arch, 1, 24, f) == 24;
    if (ok && h[1] - 1 < 256 && h[2] < 256 && h[3] - 1 < 65536 && h[4] - 1 < 4096 &&
        h[5] - 1 < 64 && h[6] < 2 && h[7] < 2) {
        r->T = (int)h[1], r->n_gen = (int)h[2], r->V = (int)h[3], r->D = (int)h[4];
        r->L = (int)h[5], r->has_mid = (int)h[6], r->has_llama = (int)h[7];
        r->tok = malloc((size_t)r->T * 4);
        ok = r->tok && fread(r->tok, 4, (size_t)r->T, f) == (size_t)r->T &&
             side_read(&r->exact, f, r) && (!r->has_llama || side_read(&r->llama, f, r)) &&
             fgetc(f) == EOF;
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

// Greedy continuation gen (n) against a reference's; prints both when they differ.
static int same_gen(const synth_arch_cfg *c, const int32_t *gen, const int32_t *ref, int n,
                    const char *who) {
    int same = !memcmp(gen, ref, (size_t)n * sizeof *gen);
    CHECK_MSG(same, "%s: greedy continuation differs from the %s reference's", c->name, who);
    if (!same) {
        fprintf(stderr, "  cterp:");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", gen[i]);
        fprintf(stderr, "\n  %s:", who);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ref[i]);
        fprintf(stderr, "\n");
    }
    return same;
}

typedef struct {
    double logits, post, mid;
} diffs;

static diffs diff_side(const float *logits, const float *post, const float *mid,
                       const ref_side *ref, const model_ref *r) {
    size_t nl = (size_t)r->T * r->V, nr = (size_t)r->L * r->T * r->D;
    return (diffs){rel_diff(logits, ref->logits, nl), rel_diff(post, ref->post, nr),
                   r->has_mid ? rel_diff(mid, ref->mid, nr) : 0};
}

static double diffs_max(diffs d) {
    return fmax(d.logits, fmax(d.post, d.mid));
}

// Checks d against tol and prints one line: what was compared, the numbers, the tolerance.
static void report(const synth_arch_cfg *c, const model_ref *r, const char *who, diffs d,
                   double tol, const char *tol_why, int n_gen, int same) {
    CHECK_MSG(d.logits <= tol,
              "%s: logits differ from the %s reference's by %.3g x rms "
              "(tolerance %.3g)",
              c->name, who, d.logits, tol);
    CHECK_MSG(d.post <= tol,
              "%s: resid_post differs from the %s reference's by %.3g x rms "
              "(tolerance %.3g)",
              c->name, who, d.post, tol);
    CHECK_MSG(d.mid <= tol,
              "%s: resid_mid differs from the %s reference's by %.3g x rms "
              "(tolerance %.3g)",
              c->name, who, d.mid, tol);
    char mid[16] = "n/a     ";
    if (r->has_mid) snprintf(mid, sizeof mid, "%.2e", d.mid);
    printf("%-17s %-9s logits %.2e, resid_post %.2e, resid_mid %s (x rms; tolerance %.2e%s), "
           "greedy %d tokens %s\n",
           c->name, who, d.logits, d.post, mid, tol, tol_why, n_gen, same ? "identical" : "DIFFER");
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
    const char *no_llama = synth_arch_llama_cpp_differs(c);
    CHECK_MSG(!strcmp(r.arch, c->arch), "%s: the reference is of %s, expected %s", c->name, r.arch,
              c->arch);
    CHECK_MSG(r.has_llama == !no_llama, "%s: the reference %s llama.cpp's outputs, expected %s",
              c->name, r.has_llama ? "has" : "lacks", no_llama ? "none" : "them");
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
              "%s: cterp reads V %d D %d L %d, the reference %d %d %d", c->name, mc->n_vocab,
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

        // greedy continuation through the KV cache
        cterp_sampler_params sp = {.temperature = 0, .top_p = 1, .seed = 0};
        int32_t *out = NULL;
        int n_out = 0;
        s = cterp_generate(m, r.tok, T, r.n_gen, &sp, NULL, NULL, NULL, &out, &n_out);
        CHECK_MSG(s == CTERP_OK, "%s: generate: %s", c->name, cterp_last_error());
        CHECK_MSG(s || n_out == T + r.n_gen, "%s: generate returned %d tokens, expected %d",
                  c->name, n_out, T + r.n_gen);
        int gen_ok = !s && n_out == T + r.n_gen;

        int same = gen_ok && same_gen(c, out + T, r.exact.gen, r.n_gen, "exact");
        report(c, &r, "exact", diff_side(logits, post, mid, &r.exact, &r), TOL, "", r.n_gen, same);
        if (r.has_llama) {
            // llama.cpp's own error, the exact forward being the truth
            diffs own = diff_side(r.llama.logits, r.llama.post, r.llama.mid, &r.exact, &r);
            int gelu = synth_arch_gelu(c);
            double own_max = diffs_max(own), own_bound = gelu ? LLAMA_GELU_OWN : LLAMA_F32_OWN;
            CHECK_MSG(own_max <= own_bound,
                      "%s: the reference's llama.cpp outputs are %.3g x rms from its exact ones "
                      "(at most %g expected)",
                      c->name, own_max, own_bound);
            double tol = gelu ? 1.5 * own_max + TOL : TOL;
            char why[64] = "";
            if (gelu) snprintf(why, sizeof why, " = 1.5 x its own error %.2e + 1e-4", own_max);
            same = gen_ok && same_gen(c, out + T, r.llama.gen, r.n_gen, "llama.cpp");
            report(c, &r, "llama.cpp", diff_side(logits, post, mid, &r.llama, &r), tol, why,
                   r.n_gen, same);
        } else
            printf("%-17s llama.cpp not compared: %s\n", c->name, no_llama);
        free(out);
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
