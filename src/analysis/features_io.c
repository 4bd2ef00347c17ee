// The features directory: features.json (run, vocabulary, per-latent summary arrays) and
// latents.jsonl (one latent per line, in full). Floats are written in their shortest form that
// reads back to the same float, so a loaded result equals the saved one.
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/features_impl.h"
#include "core/file.h"

#define FEATURES_FORMAT "cterp-features"
#define FEATURES_VERSION 2 // 2: correlated latents, ablation effects, token view (1 still loads)

static void jstr(FILE *o, const char *s) {
    fputc('"', o);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fputc('\\', o), fputc(*p, o);
        else if (*p == '\n')
            fputs("\\n", o);
        else if (*p == '\t')
            fputs("\\t", o);
        else if (*p < 0x20)
            fprintf(o, "\\u%04x", *p);
        else
            fputc(*p, o);
    }
    fputc('"', o);
}

static void jf(FILE *o, float x) { // shortest decimal that reads back to x
    char b[32];
    if (x == 0) {
        fputs("0", o);
        return;
    }
    for (int p = 6; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)x);
        if (strtof(b, NULL) == x) break;
    }
    fputs(b, o);
}

static void jd(FILE *o, double x) {
    char b[40];
    for (int p = 9; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, x);
        if (strtod(b, NULL) == x) break;
    }
    fputs(b, o);
}

static void write_example(FILE *o, const cterp_feature_example *e) {
    fputs("{\"act\":", o), jf(o, e->act);
    fprintf(o, ",\"window\":%lld,\"pos\":%d,\"start\":%d,\"tokens\":[", (long long)e->window,
            e->pos, e->start);
    for (int t = 0; t < e->n_ctx; t++) fprintf(o, t ? ",%d" : "%d", (int)e->tokens[t]);
    fputs("],\"acts\":[", o);
    for (int t = 0; t < e->n_ctx; t++) {
        if (t) fputc(',', o);
        jf(o, e->acts[t]);
    }
    fputs("]}", o);
}

static void write_latent(FILE *o, const cterp_feature *ft, int64_t i) {
    fprintf(o, "{\"i\":%lld,\"fired\":%lld,\"frequency\":", (long long)i, (long long)ft->fired);
    jd(o, ft->frequency), fputs(",\"mean_act\":", o), jd(o, ft->mean_act);
    fputs(",\"max_act\":", o), jf(o, ft->max_act);
    fputs(",\"hist\":{\"bin_width\":", o), jf(o, ft->bin_width);
    fputs(",\"counts\":[", o);
    for (int b = 0; b < ft->n_bins; b++) fprintf(o, b ? ",%lld" : "%lld", (long long)ft->hist[b]);
    fputs("]},\"logits\":{\"top\":[", o);
    for (int k = 0; k < ft->n_logits; k++) {
        fprintf(o, "%s[%d,", k ? "," : "", (int)ft->logit_top_ids[k]), jf(o, ft->logit_top[k]),
            fputc(']', o);
    }
    fputs("],\"bottom\":[", o);
    for (int k = 0; k < ft->n_logits; k++) {
        fprintf(o, "%s[%d,", k ? "," : "", (int)ft->logit_bot_ids[k]), jf(o, ft->logit_bot[k]),
            fputc(']', o);
    }
    fputs("],\"hist_lo\":", o), jf(o, ft->logit_lo), fputs(",\"hist_hi\":", o), jf(o, ft->logit_hi);
    fputs(",\"hist\":[", o);
    for (int b = 0; b < (ft->n_logits ? CTERP_FEAT_LOGIT_BINS : 0); b++)
        fprintf(o, b ? ",%lld" : "%lld", (long long)ft->logit_hist[b]);
    fputs("]},\"top\":[", o);
    for (int k = 0; k < ft->n_top; k++) {
        if (k) fputc(',', o);
        write_example(o, &ft->top[k]);
    }
    const char *nk[2] = {"cofire", "decoder"};
    for (int k = 0; k < 2; k++) {
        const int n = k ? ft->n_dec : ft->n_cofire;
        const int32_t *ids = k ? ft->dec_ids : ft->cofire_ids;
        const float *v = k ? ft->dec_cos : ft->cofire_jaccard;
        fprintf(o, "],\"%s\":[", nk[k]);
        for (int q = 0; q < n; q++)
            fprintf(o, "%s[%d,", q ? "," : "", (int)ids[q]), jf(o, v[q]), fputc(']', o);
    }
    fprintf(o, "],\"loss\":{\"n\":%lld,\"mean\":", (long long)ft->loss_n), jd(o, ft->loss_mean);
    fputs(",\"top\":[", o);
    for (int q = 0; q < ft->n_loss; q++) {
        const cterp_feature_loss *l = &ft->loss_top[q];
        fprintf(o, "%s{\"window\":%lld,\"pos\":%d,\"next\":%d,\"dloss\":", q ? "," : "",
                (long long)l->window, l->pos, (int)l->next);
        jf(o, l->dloss), fputc('}', o);
    }
    fputs("]},\"quantiles\":[", o);
    for (int g = 0; g < ft->n_groups; g++) {
        const cterp_feature_group *G = &ft->groups[g];
        fputs(g ? ",{\"lo\":" : "{\"lo\":", o), jf(o, G->lo), fputs(",\"hi\":", o), jf(o, G->hi);
        fprintf(o, ",\"count\":%lld,\"examples\":[", (long long)G->count);
        for (int k = 0; k < G->n; k++) {
            if (k) fputc(',', o);
            write_example(o, &G->ex[k]);
        }
        fputs("]}", o);
    }
    fputs("]}\n", o);
}

static cterp_status write_file(const char *dir, const char *name, const cterp_features *f,
                               int latents) {
    char *path = file_join(dir, name);
    if (!path) return cterp_error(CTERP_ENOMEM, "features: out of memory");
    file_atomic w;
    cterp_status s = file_atomic_open(&w, path);
    free(path);
    if (s) return s;
    FILE *o = w.fp;
    if (latents) {
        for (int64_t i = 0; i < f->d_sae; i++) write_latent(o, &f->f[i], i);
    } else {
        const cterp_features_config *c = &f->cfg;
        fprintf(o, "{\"format\":\"%s\",\"version\":%d,\"model\":", FEATURES_FORMAT,
                FEATURES_VERSION);
        jstr(o, f->model), fputs(",\"sae\":", o), jstr(o, f->sae), fputs(",\"hook\":", o),
            jstr(o, f->hook);
        fputs(",\"dataset\":", o), jstr(o, f->dataset);
        fprintf(o,
                ",\"context_size\":%d,\"d_in\":%lld,\"d_sae\":%lld,\"n_windows\":%lld,\"n_tokens\":"
                "%lld,\n",
                f->context_size, (long long)f->d_in, (long long)f->d_sae, (long long)f->n_windows,
                (long long)f->n_tokens);
        fprintf(o,
                "\"config\":{\"top_n\":%d,\"quantile_k\":%d,\"ctx_left\":%d,\"ctx_right\":%d,\"n_"
                "logits\":%d,"
                "\"seed\":%llu,\"hist_bins\":%d,\"groups\":%d,\"logit_bins\":%d,"
                "\"n_neighbours\":%d,\"cofire\":%s,\"loss_windows\":%lld,\"loss_top\":%d,"
                "\"view_k\":%d},\n",
                c->top_n, c->quantile_k, c->ctx_left, c->ctx_right, c->n_logits,
                (unsigned long long)c->seed, CTERP_FEAT_HIST_BINS, CTERP_FEAT_GROUPS,
                CTERP_FEAT_LOGIT_BINS, c->n_neighbours, f->cofire_done ? "true" : "false",
                (long long)c->loss_windows, c->loss_top, CTERP_FEAT_VIEW_K);
        fputs("\"token_view\":[", o);
        const int64_t T = f->context_size, K = CTERP_FEAT_VIEW_K;
        for (int v = 0; v < f->view_n; v++) {
            fprintf(o, "%s{\"window\":%lld,\"tokens\":[", v ? ",\n" : "",
                    (long long)f->view_window[v]);
            for (int64_t t = 0; t < T; t++)
                fprintf(o, t ? ",%d" : "%d", (int)f->view_tokens[v * T + t]);
            fputs("],\"special\":[", o);
            for (int64_t t = 0; t < T; t++)
                fprintf(o, t ? ",%d" : "%d", f->view_mask[v * T + t] ? 1 : 0);
            fputs("],\"latents\":[", o);
            for (int64_t t = 0; t < T; t++) {
                fputs(t ? ",[" : "[", o);
                for (int64_t k = 0; k < K && f->view_ids[(v * T + t) * K + k] >= 0; k++) {
                    fprintf(o, "%s[%d,", k ? "," : "", (int)f->view_ids[(v * T + t) * K + k]);
                    jf(o, f->view_acts[(v * T + t) * K + k]), fputc(']', o);
                }
                fputc(']', o);
            }
            fputs("]}", o);
        }
        fputs("],\n", o);
        fputs("\"vocab\":[", o);
        for (int64_t v = 0; v < f->n_vocab; v++) {
            if (v) fputc(',', o);
            jstr(o, f->vocab[v]);
        }
        const char *keys[] = {"frequency", "mean_act", "max_act"};
        for (int k = 0; k < 3; k++) {
            fprintf(o, "],\n\"%s\":[", keys[k]);
            for (int64_t i = 0; i < f->d_sae; i++) {
                if (i) fputc(',', o);
                if (k == 2)
                    jf(o, f->f[i].max_act);
                else
                    jd(o, k ? f->f[i].mean_act : f->f[i].frequency);
            }
        }
        fputs("]}\n", o);
    }
    if (ferror(o)) w.failed = 1;
    return file_atomic_commit(&w);
}

cterp_status cterp_features_save(const cterp_features *f, const char *dir) {
    cterp_status s = file_mkdirs(dir);
    if (!s) s = write_file(dir, "latents.jsonl", f, 1);
    if (!s) s = write_file(dir, "features.json", f, 0);
    return s;
}

// ---- load ----------------------------------------------------------------------------------

typedef struct {
    const char *file;
    int64_t line; // 0: a whole-file JSON
    int version;
} where;

static cterp_status bad(const where *w, const char *field, const char *expected,
                        const cJSON *found) {
    const char *kind = !found                  ? "nothing"
                       : cJSON_IsNumber(found) ? "a number"
                       : cJSON_IsString(found) ? "a string"
                       : cJSON_IsArray(found)  ? "an array"
                       : cJSON_IsObject(found) ? "an object"
                                               : "another value";
    char at[64] = "";
    if (w->line) snprintf(at, sizeof at, ":%lld", (long long)w->line);
    return cterp_error(CTERP_EFORMAT, "%s%s: field '%s': expected %s, found %s", w->file, at, field,
                       expected, kind);
}

static cterp_status get_num(const where *w, const cJSON *o, const char *k, double lo, double hi,
                            double *v) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= lo && j->valuedouble <= hi)) {
        char exp[96];
        snprintf(exp, sizeof exp, "a number in [%g, %g]", lo, hi);
        if (cJSON_IsNumber(j)) {
            char at[64] = "";
            if (w->line) snprintf(at, sizeof at, ":%lld", (long long)w->line);
            return cterp_error(CTERP_EFORMAT, "%s%s: field '%s': expected %s, found %g", w->file,
                               at, k, exp, j->valuedouble);
        }
        return bad(w, k, exp, j);
    }
    *v = j->valuedouble;
    return CTERP_OK;
}

static const cJSON *get_arr(const where *w, const cJSON *o, const char *k, int max,
                            cterp_status *s) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    char exp[64];
    snprintf(exp, sizeof exp, "an array of at most %d", max);
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) > max) *s = bad(w, k, exp, j), j = NULL;
    return j;
}

static cterp_status read_example(const where *w, const cJSON *e, int ctx, int64_t V,
                                 cterp_feature_example *ex) {
    cterp_status s = CTERP_OK;
    double v;
    if ((s = get_num(w, e, "act", -3e38, 3e38, &v))) return s;
    ex->act = (float)v;
    if ((s = get_num(w, e, "window", 0, 9e15, &v))) return s;
    ex->window = (int64_t)v;
    if ((s = get_num(w, e, "pos", 0, 1 << 30, &v))) return s;
    ex->pos = (int)v;
    if ((s = get_num(w, e, "start", 0, 1 << 30, &v))) return s;
    ex->start = (int)v;
    const cJSON *tk = get_arr(w, e, "tokens", ctx, &s),
                *ac = tk ? get_arr(w, e, "acts", ctx, &s) : NULL;
    if (!tk || !ac) return s;
    if (cJSON_GetArraySize(ac) != cJSON_GetArraySize(tk))
        return bad(w, "acts", "as many values as tokens", ac);
    ex->n_ctx = cJSON_GetArraySize(tk);
    int t = 0;
    for (const cJSON *a = tk->child, *b = ac->child; a && b; a = a->next, b = b->next, t++) {
        if (!cJSON_IsNumber(a) || a->valuedouble < 0 || (V > 0 && a->valuedouble >= (double)V)) {
            char exp[64];
            snprintf(exp, sizeof exp, "token ids in [0, %lld)", (long long)V);
            return bad(w, "tokens", exp, a);
        }
        if (!cJSON_IsNumber(b)) return bad(w, "acts", "numbers", b);
        ex->tokens[t] = (int32_t)a->valuedouble, ex->acts[t] = (float)b->valuedouble;
    }
    return CTERP_OK;
}

static cterp_status read_latent(const where *w, const cJSON *o, cterp_features *f, int64_t i) {
    cterp_feature *ft = &f->f[i];
    const cterp_features_config *c = &f->cfg;
    cterp_status s = CTERP_OK;
    double v;
    if ((s = get_num(w, o, "i", (double)i, (double)i, &v))) return s;
    if ((s = get_num(w, o, "fired", 0, 9e18, &v))) return s;
    ft->fired = (int64_t)v;
    if ((s = get_num(w, o, "frequency", 0, 1, &ft->frequency))) return s;
    if ((s = get_num(w, o, "mean_act", -3e38, 3e38, &ft->mean_act))) return s;
    if ((s = get_num(w, o, "max_act", -3e38, 3e38, &v))) return s;
    ft->max_act = (float)v;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hist");
    if (!cJSON_IsObject(h)) return bad(w, "hist", "an object", h);
    if ((s = get_num(w, h, "bin_width", 0, 3e38, &v))) return s;
    ft->bin_width = (float)v;
    const cJSON *hc = get_arr(w, h, "counts", CTERP_FEAT_HIST_BINS, &s);
    if (!hc) return s;
    ft->n_bins = 0;
    for (const cJSON *x = hc->child; x; x = x->next)
        ft->hist[ft->n_bins++] = (int64_t)x->valuedouble;
    const cJSON *lg = cJSON_GetObjectItemCaseSensitive(o, "logits");
    if (!cJSON_IsObject(lg)) return bad(w, "logits", "an object", lg);
    const char *lk[2] = {"top", "bottom"};
    for (int k = 0; k < 2; k++) {
        const cJSON *a = get_arr(w, lg, lk[k], c->n_logits, &s);
        if (!a) return s;
        int n = 0;
        for (const cJSON *x = a->child; x; x = x->next, n++) {
            if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsNumber(x->child) ||
                !cJSON_IsNumber(x->child->next) || x->child->valuedouble < 0 ||
                (f->n_vocab > 0 && x->child->valuedouble >= (double)f->n_vocab))
                return bad(w, lk[k], "[token id, logit] pairs", x);
            (k ? ft->logit_bot_ids : ft->logit_top_ids)[n] = (int32_t)x->child->valuedouble;
            (k ? ft->logit_bot : ft->logit_top)[n] = (float)x->child->next->valuedouble;
        }
        ft->n_logits = n;
    }
    if ((s = get_num(w, lg, "hist_lo", -3e38, 3e38, &v))) return s;
    ft->logit_lo = (float)v;
    if ((s = get_num(w, lg, "hist_hi", -3e38, 3e38, &v))) return s;
    ft->logit_hi = (float)v;
    const cJSON *lh = get_arr(w, lg, "hist", CTERP_FEAT_LOGIT_BINS, &s);
    if (!lh) return s;
    int b = 0;
    for (const cJSON *x = lh->child; x; x = x->next) ft->logit_hist[b++] = (int64_t)x->valuedouble;

    if (w->version >= 2) { // correlated latents and ablation effects
        const char *nk[2] = {"cofire", "decoder"};
        for (int k = 0; k < 2; k++) {
            const cJSON *a = get_arr(w, o, nk[k], c->n_neighbours, &s);
            if (!a) return s;
            int n = 0;
            for (const cJSON *x = a->child; x; x = x->next, n++) {
                if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsNumber(x->child) ||
                    !cJSON_IsNumber(x->child->next) || x->child->valuedouble < 0 ||
                    x->child->valuedouble >= (double)f->d_sae)
                    return bad(w, nk[k], "[latent, value] pairs with latents in [0, d_sae)", x);
                (k ? ft->dec_ids : ft->cofire_ids)[n] = (int32_t)x->child->valuedouble;
                (k ? ft->dec_cos : ft->cofire_jaccard)[n] = (float)x->child->next->valuedouble;
            }
            *(k ? &ft->n_dec : &ft->n_cofire) = n;
        }
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(o, "loss");
        if (!cJSON_IsObject(ls)) return bad(w, "loss", "an object", ls);
        if ((s = get_num(w, ls, "n", 0, 9e18, &v))) return s;
        ft->loss_n = (int64_t)v;
        if ((s = get_num(w, ls, "mean", -1e30, 1e30, &ft->loss_mean))) return s;
        const cJSON *lt = get_arr(w, ls, "top", c->loss_windows > 0 ? c->loss_top : 0, &s);
        if (!lt) return s;
        for (const cJSON *x = lt->child; x; x = x->next) {
            cterp_feature_loss *l = &ft->loss_top[ft->n_loss++];
            if (!cJSON_IsObject(x)) return bad(w, "loss.top", "objects", x);
            if ((s = get_num(w, x, "window", 0, 9e15, &v))) return s;
            l->window = (int64_t)v;
            if ((s = get_num(w, x, "pos", 0, 1 << 30, &v))) return s;
            l->pos = (int)v;
            if ((s = get_num(w, x, "next", 0, f->n_vocab > 0 ? (double)f->n_vocab - 1 : 2e9, &v)))
                return s;
            l->next = (int32_t)v;
            if ((s = get_num(w, x, "dloss", -3e38, 3e38, &v))) return s;
            l->dloss = (float)v;
        }
    }

    const cJSON *top = get_arr(w, o, "top", c->top_n, &s),
                *qs = top ? get_arr(w, o, "quantiles", CTERP_FEAT_GROUPS, &s) : NULL;
    if (!top || !qs) return s;
    int64_t n_ex = cJSON_GetArraySize(top);
    for (const cJSON *g = qs->child; g; g = g->next) {
        const cJSON *ex = cJSON_IsObject(g) ? get_arr(w, g, "examples", c->quantile_k, &s) : NULL;
        if (!ex) return s ? s : bad(w, "quantiles", "objects", g);
        n_ex += cJSON_GetArraySize(ex);
    }
    const int ctx = c->ctx_left + c->ctx_right + 1;
    cterp_feature_example *ex = examples_alloc(f, i, n_ex, ctx);
    if (n_ex && !ex) return cterp_error(CTERP_ENOMEM, "%s: out of memory", w->file);
    ft->top = cJSON_GetArraySize(top) ? ex : NULL;
    for (const cJSON *e = top->child; e; e = e->next, ex++, ft->n_top++)
        if ((s = read_example(w, e, ctx, f->n_vocab, ex))) return s;
    for (const cJSON *g = qs->child; g; g = g->next) {
        cterp_feature_group *G = &ft->groups[ft->n_groups++];
        if ((s = get_num(w, g, "lo", 0, 3e38, &v))) return s;
        G->lo = (float)v;
        if ((s = get_num(w, g, "hi", 0, 3e38, &v))) return s;
        G->hi = (float)v;
        if ((s = get_num(w, g, "count", 0, 9e18, &v))) return s;
        G->count = (int64_t)v;
        const cJSON *exs = cJSON_GetObjectItemCaseSensitive(g, "examples");
        G->ex = cJSON_GetArraySize(exs) ? ex : NULL;
        for (const cJSON *e = exs->child; e; e = e->next, ex++, G->n++)
            if ((s = read_example(w, e, ctx, f->n_vocab, ex))) return s;
    }
    return CTERP_OK;
}

// features.json "token_view": [{"window", "tokens": [T], "special": [T], "latents": [T x
// [[id, act], ...]]}]
static cterp_status read_view(const where *w, const cJSON *root, cterp_features *f, int64_t T,
                              int64_t V) {
    cterp_status s = CTERP_OK;
    const cJSON *tv = get_arr(w, root, "token_view", 4096, &s);
    if (!tv) return s;
    if ((s = features_view_alloc(f, cJSON_GetArraySize(tv), T))) return s;
    const int64_t K = CTERP_FEAT_VIEW_K;
    int v = 0;
    for (const cJSON *x = tv->child; x; x = x->next, v++) {
        double d;
        if (!cJSON_IsObject(x)) return bad(w, "token_view", "objects", x);
        if ((s = get_num(w, x, "window", 0, 9e15, &d))) return s;
        f->view_window[v] = (int64_t)d;
        const cJSON *tk = cJSON_GetObjectItemCaseSensitive(x, "tokens"),
                    *sp = cJSON_GetObjectItemCaseSensitive(x, "special"),
                    *la = cJSON_GetObjectItemCaseSensitive(x, "latents");
        if (!cJSON_IsArray(tk) || !cJSON_IsArray(sp) || !cJSON_IsArray(la) ||
            cJSON_GetArraySize(tk) != T || cJSON_GetArraySize(sp) != T ||
            cJSON_GetArraySize(la) != T)
            return bad(w, "token_view", "tokens, special and latents arrays of context_size", x);
        int64_t t = 0;
        for (const cJSON *a = tk->child, *b = sp->child, *c = la->child; a && b && c;
             a = a->next, b = b->next, c = c->next, t++) {
            if (!cJSON_IsNumber(a) || a->valuedouble < 0 || (V > 0 && a->valuedouble >= (double)V))
                return bad(w, "token_view.tokens", "token ids in [0, n_vocab)", a);
            if (!cJSON_IsNumber(b)) return bad(w, "token_view.special", "0 or 1", b);
            if (!cJSON_IsArray(c) || cJSON_GetArraySize(c) > K)
                return bad(w, "token_view.latents", "arrays of at most 5 [id, act] pairs", c);
            f->view_tokens[v * T + t] = (int32_t)a->valuedouble;
            f->view_mask[v * T + t] = b->valuedouble != 0;
            int32_t *id = f->view_ids + (v * T + t) * K;
            float *av = f->view_acts + (v * T + t) * K;
            int64_t k = 0;
            for (const cJSON *p = c->child; p; p = p->next, k++) {
                if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2 || !cJSON_IsNumber(p->child) ||
                    !cJSON_IsNumber(p->child->next) || p->child->valuedouble < 0 ||
                    p->child->valuedouble >= (double)f->d_sae)
                    return bad(w, "token_view.latents", "[latent, activation] pairs", p);
                id[k] = (int32_t)p->child->valuedouble, av[k] = (float)p->child->next->valuedouble;
            }
            for (; k < K; k++) id[k] = -1, av[k] = 0;
        }
    }
    return CTERP_OK;
}

cterp_status cterp_features_load(const char *dir, cterp_features **out) {
    *out = NULL;
    char *jp = file_join(dir, "features.json"), *lp = file_join(dir, "latents.jsonl"), *text = NULL,
         *line = NULL;
    cJSON *root = NULL;
    cterp_features *f = NULL;
    FILE *in = NULL;
    size_t len;
    cterp_status s = CTERP_OK;
    double v;
    if (!jp || !lp) {
        s = cterp_error(CTERP_ENOMEM, "features: out of memory");
        goto done;
    }
    if (!file_is_dir(dir)) {
        s = cterp_error(
            CTERP_EIO,
            "%s: not a features directory (expected features.json and latents.jsonl from "
            "cterp features)",
            dir);
        goto done;
    }
    if ((s = file_read_all(jp, &text, &len))) goto done;
    where w = {jp, 0, 0};
    root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        s = cterp_error(CTERP_EFORMAT, "%s: not a JSON object", jp);
        goto done;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, FEATURES_FORMAT)) {
        s = bad(&w, "format", "\"" FEATURES_FORMAT "\"", fmt);
        goto done;
    }
    if ((s = get_num(&w, root, "version", 1, FEATURES_VERSION, &v))) goto done;
    w.version = (int)v;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (!cJSON_IsObject(cfg)) {
        s = bad(&w, "config", "an object", cfg);
        goto done;
    }
    cterp_features_config c;
    cterp_features_config_default(&c);
    double top_n, qk, cl, cr, nl, ns, d_sae, d_in, nwin, ntok, T;
    if ((s = get_num(&w, cfg, "top_n", 1, 1 << 20, &top_n)) ||
        (s = get_num(&w, cfg, "quantile_k", 1, 32, &qk)) ||
        (s = get_num(&w, cfg, "ctx_left", 0, 1 << 16, &cl)) ||
        (s = get_num(&w, cfg, "ctx_right", 0, 1 << 16, &cr)) ||
        (s = get_num(&w, cfg, "n_logits", 0, 1 << 16, &nl)) ||
        (s = get_num(&w, cfg, "seed", 0, 2e19, &ns)) ||
        (s = get_num(&w, root, "d_sae", 1, 1 << 30, &d_sae)) ||
        (s = get_num(&w, root, "d_in", 1, 1 << 30, &d_in)) ||
        (s = get_num(&w, root, "n_windows", 0, 9e18, &nwin)) ||
        (s = get_num(&w, root, "n_tokens", 0, 9e18, &ntok)) ||
        (s = get_num(&w, root, "context_size", 1, 1 << 30, &T)))
        goto done;
    c.top_n = (int)top_n, c.quantile_k = (int)qk, c.ctx_left = (int)cl, c.ctx_right = (int)cr,
    c.n_logits = (int)nl;
    c.seed = (uint64_t)ns, c.windows.context_size = (int)T;
    c.n_neighbours = 0, c.loss_windows = 0, c.loss_top = 0, c.view_windows = 0;
    int cofire_done = 0;
    if (w.version >= 2) {
        double nn, lw, lt;
        if ((s = get_num(&w, cfg, "n_neighbours", 0, 64, &nn)) ||
            (s = get_num(&w, cfg, "loss_windows", 0, 9e15, &lw)) ||
            (s = get_num(&w, cfg, "loss_top", 0, 64, &lt)))
            goto done;
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(cfg, "cofire");
        if (!cJSON_IsBool(cf)) {
            s = bad(&w, "cofire", "true or false", cf);
            goto done;
        }
        c.n_neighbours = (int)nn, c.loss_windows = (int64_t)lw, c.loss_top = (int)lt;
        cofire_done = cJSON_IsTrue(cf);
    }
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(root, "vocab");
    if (!cJSON_IsArray(voc)) {
        s = bad(&w, "vocab", "an array of strings", voc);
        goto done;
    }
    int64_t V = cJSON_GetArraySize(voc);
    if ((s = features_alloc(&f, (int64_t)d_sae, c.n_logits, c.n_neighbours,
                            c.loss_windows > 0 ? c.loss_top : 0, V)))
        goto done;
    f->cfg = c, f->d_in = (int64_t)d_in, f->n_windows = (int64_t)nwin, f->n_tokens = (int64_t)ntok;
    f->cofire_done = cofire_done;
    if (w.version >= 2 && (s = read_view(&w, root, f, (int64_t)T, V))) goto done;
    f->context_size = (int)T;
    const char *sk[] = {"model", "sae", "hook", "dataset"};
    char *sd[] = {f->model, f->sae, f->hook, f->dataset};
    size_t sc[] = {sizeof f->model, sizeof f->sae, sizeof f->hook, sizeof f->dataset};
    for (int k = 0; k < 4; k++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, sk[k]);
        if (!cJSON_IsString(j)) {
            s = bad(&w, sk[k], "a string", j);
            goto done;
        }
        snprintf(sd[k], sc[k], "%s", j->valuestring);
    }
    f->cfg.hook = f->hook;
    size_t total = 1;
    for (const cJSON *x = voc->child; x; x = x->next) {
        if (!cJSON_IsString(x)) {
            s = bad(&w, "vocab", "strings", x);
            goto done;
        }
        total += strlen(x->valuestring) + 1;
    }
    char *p = f->str_mem = malloc(total);
    if (!p) {
        s = cterp_error(CTERP_ENOMEM, "%s: out of memory", jp);
        goto done;
    }
    int64_t v_i = 0;
    for (const cJSON *x = voc->child; x; x = x->next, v_i++) {
        size_t n = strlen(x->valuestring) + 1;
        memcpy(p, x->valuestring, n), f->vocab[v_i] = p, p += n;
    }

    in = fopen(lp, "r");
    if (!in) {
        s = cterp_error(CTERP_EIO, "%s: cannot open", lp);
        goto done;
    }
    size_t cap = 0;
    for (int64_t i = 0; i < f->d_sae; i++) {
        where wl = {lp, i + 1, w.version};
        ssize_t n = getline(&line, &cap, in);
        if (n <= 0) {
            s = cterp_error(CTERP_EFORMAT, "%s: %lld lines, expected d_sae = %lld (one per latent)",
                            lp, (long long)i, (long long)f->d_sae);
            goto done;
        }
        cJSON *o = cJSON_ParseWithLength(line, (size_t)n);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            s = cterp_error(CTERP_EFORMAT, "%s:%lld: not a JSON object", lp, (long long)(i + 1));
            goto done;
        }
        s = read_latent(&wl, o, f, i);
        cJSON_Delete(o);
        if (s) goto done;
    }
    *out = f, f = NULL;
done:
    if (in) fclose(in);
    cJSON_Delete(root);
    cterp_features_free(f);
    free(jp), free(lp), free(text), free(line);
    return s;
}

// ---- Neuronpedia feature-upload batch --------------------------------------------------------

static void np_example(FILE *o, const cterp_features *f, const cterp_feature_example *e, float bmin,
                       float bmax, double contains) {
    fputs("{\"bin_min\":", o), jf(o, bmin), fputs(",\"bin_max\":", o), jf(o, bmax);
    fputs(",\"bin_contains\":", o), jd(o, contains), fputs(",\"tokens\":[", o);
    for (int t = 0; t < e->n_ctx; t++) {
        if (t) fputc(',', o);
        int32_t id = e->tokens[t];
        char buf[32];
        if (id >= 0 && id < f->n_vocab) {
            jstr(o, f->vocab[id]);
        } else {
            snprintf(buf, sizeof buf, "<%d>", (int)id);
            jstr(o, buf);
        }
    }
    fputs("],\"values\":[", o);
    for (int t = 0; t < e->n_ctx; t++) {
        if (t) fputc(',', o);
        jf(o, e->acts[t]);
    }
    fputs("]}", o);
}

// Bin midpoints and heights: "<name>_bar_values" and "<name>_bar_heights".
static void np_hist(FILE *o, const char *name, const int64_t *h, int n, double lo, double w) {
    fprintf(o, ",\"%s_bar_values\":[", name);
    for (int b = 0; b < n; b++) {
        if (b) fputc(',', o);
        jd(o, lo + w * (b + 0.5));
    }
    fprintf(o, "],\"%s_bar_heights\":[", name);
    for (int b = 0; b < n; b++) fprintf(o, b ? ",%lld" : "%lld", (long long)h[b]);
    fputc(']', o);
}

cterp_status cterp_features_export_neuronpedia(const cterp_features *f, const char *path,
                                               const cterp_neuronpedia_opts *op) {
    cterp_neuronpedia_opts d = {NULL, NULL, -1, NULL};
    if (!op) op = &d;
    int layer = op->layer;
    if (layer < 0 && sscanf(f->hook, "blocks.%d.", &layer) != 1)
        return cterp_error(CTERP_EINVAL,
                           "neuronpedia: no layer in the hook name '%s' (give the layer)", f->hook);
    file_atomic w;
    cterp_status s = file_atomic_open(&w, path);
    if (s) return s;
    FILE *o = w.fp;
    fputs("{\"model_id\":", o), jstr(o, op->model_id ? op->model_id : f->model);
    fprintf(o, ",\"layer\":%d,\"sae_set\":", layer), jstr(o, op->sae_set ? op->sae_set : "cterp");
    fputs(",\"features\":[\n", o);
    for (int64_t i = 0; i < f->d_sae; i++) {
        const cterp_feature *ft = &f->f[i];
        fprintf(o, "%s{\"feature_index\":%lld", i ? ",\n" : "", (long long)i);
        const char *empty[] = {"neuron_alignment_indices",    "neuron_alignment_values",
                               "neuron_alignment_l1",         "correlated_neurons_indices",
                               "correlated_neurons_l1",       "correlated_neurons_pearson",
                               "correlated_features_indices", "correlated_features_l1",
                               "correlated_features_pearson"};
        for (size_t k = 0; k < sizeof empty / sizeof *empty; k++)
            fprintf(o, ",\"%s\":[]", empty[k]);
        for (int side = 0; side < 2; side++) { // neg_* = bottom logits, pos_* = top logits
            const int32_t *ids = side ? ft->logit_top_ids : ft->logit_bot_ids;
            const float *vals = side ? ft->logit_top : ft->logit_bot;
            fprintf(o, ",\"%s_str\":[", side ? "pos" : "neg");
            for (int k = 0; k < ft->n_logits; k++) {
                if (k) fputc(',', o);
                jstr(o, ids[k] >= 0 && ids[k] < f->n_vocab ? f->vocab[ids[k]] : "");
            }
            fprintf(o, "],\"%s_values\":[", side ? "pos" : "neg");
            for (int k = 0; k < ft->n_logits; k++) {
                if (k) fputc(',', o);
                jf(o, vals[k]);
            }
            fputc(']', o);
        }
        fputs(",\"frac_nonzero\":", o), jd(o, ft->frequency);
        np_hist(o, "freq_hist_data", ft->hist, ft->n_bins, 0, ft->bin_width);
        const int lb = ft->n_logits ? CTERP_FEAT_LOGIT_BINS : 0;
        np_hist(o, "logits_hist_data", ft->logit_hist, lb, ft->logit_lo,
                ((double)ft->logit_hi - ft->logit_lo) / CTERP_FEAT_LOGIT_BINS);
        fprintf(o, ",\"n_prompts_total\":%lld,\"n_tokens_in_prompt\":%d,\"dataset\":",
                (long long)f->n_windows, f->context_size);
        jstr(o, op->dataset ? op->dataset : f->dataset);
        fputs(",\"decoder_weights_dist\":[],\"activations\":[", o);
        int first = 1;
        for (int k = 0; k < ft->n_top; k++, first = 0) { // SAEDashboard's "TOP ACTIVATIONS" group
            if (!first) fputc(',', o);
            np_example(o, f, &ft->top[k], -1, ft->max_act, -1);
        }
        for (int g = ft->n_groups - 1; g >= 0; g--) { // its "INTERVAL lo - hi, CONTAINS x%" groups
            const cterp_feature_group *G = &ft->groups[g];
            for (int k = 0; k < G->n; k++, first = 0) {
                if (!first) fputc(',', o);
                np_example(o, f, &G->ex[k], G->lo, G->hi,
                           ft->fired ? (double)G->count / (double)ft->fired : 0);
            }
        }
        fputs("]}", o);
    }
    fputs("\n]}\n", o);
    if (ferror(o)) w.failed = 1;
    return file_atomic_commit(&w);
}
