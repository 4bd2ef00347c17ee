// Self-contained HTML dashboards: an index of latents, one page per latent (histograms as inline
// SVG, examples with tokens shaded by activation) and a training report, all written with plain
// fprintf: no template engine, no external resources.
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "cterp/dashboard.h"

static const char *CSS =
    "<style>body{font:14px/1.45 system-ui,sans-serif;margin:1em auto;max-width:1100px;padding:0 "
    "1em;color:#222}"
    "h1{font-size:1.4em;margin:.3em 0}h2{font-size:1.1em;margin:1.2em 0 .3em;border-bottom:1px "
    "solid #ddd}"
    "table{border-collapse:collapse}td,th{padding:1px "
    "8px;text-align:right}th.l{text-align:left}th{background:#eee}"
    "#lat th{cursor:pointer}#lat tr:nth-child(even){background:#f6f6f6}td.l{text-align:left}"
    ".ex{font-family:ui-monospace,monospace;white-space:pre-wrap;margin:1px 0;font-size:13px}"
    ".ex b{display:inline-block;min-width:4.5em;color:#555;font-weight:normal}"
    "i{font-style:normal;border-radius:2px}i.c{outline:1px solid #a33}"
    ".h1{background:#fff3e5}.h2{background:#ffe6cc}.h3{background:#ffd9b2}.h4{background:#ffcc99}"
    ".h5{background:#ffbf80}.h6{background:#ffb266}.h7{background:#ffa54c}.h8{background:#ff9933}"
    ".h9{background:#ff8c1a}.h10{background:#ff8000}.p{color:#1a7f37}.n{color:#b42318}"
    ".cols{display:flex;gap:2em;flex-wrap:wrap}svg text{font:11px sans-serif;fill:#444}"
    "a{color:#0550ae;text-decoration:none}nav{margin-bottom:.5em}</style>\n";

// Pages are derived files: written to a temporary name and renamed (never half-written), but not
// fsynced (a thousand fsyncs cost seconds on a busy disk).
typedef struct {
    FILE *f;
    char *path, tmp[4200];
} page_file;

static cterp_status page_open(page_file *p, const char *path) {
    p->path = (char *)path;
    if ((size_t)snprintf(p->tmp, sizeof p->tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof p->tmp)
        return cterp_error(CTERP_EINVAL, "%s: path too long", path);
    p->f = fopen(p->tmp, "w");
    return p->f ? CTERP_OK : cterp_error(CTERP_EIO, "%s: cannot open for writing", p->tmp);
}

static cterp_status page_close(page_file *p) {
    int bad = ferror(p->f) != 0;
    bad |= fclose(p->f) != 0;
    if (bad || rename(p->tmp, p->path) != 0) {
        unlink(p->tmp);
        return cterp_error(CTERP_EIO, "%s: write failed", p->path);
    }
    return CTERP_OK;
}

static void esc(FILE *o, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", o);
            break;
        case '<':
            fputs("&lt;", o);
            break;
        case '>':
            fputs("&gt;", o);
            break;
        case '"':
            fputs("&quot;", o);
            break;
        case '\n':
            fputs("\xE2\x86\xB5", o);
            break; // ↵
        case '\t':
            fputs("\xE2\x87\xA5", o);
            break; // ⇥
        default:
            fputc(*s, o);
        }
    }
}

static void esc_token(FILE *o, const cterp_features *f, int32_t id) {
    if (id < 0 || id >= f->n_vocab)
        fprintf(o, "&lt;%d&gt;", (int)id);
    else if (!f->vocab[id][0])
        fputs("\xE2\x88\x85", o); // ∅
    else
        esc(o, f->vocab[id]);
}

static void page_start(FILE *o, const char *title) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>",
          o);
    esc(o, title);
    fputs("</title>\n", o);
    fputs(CSS, o);
    fputs("</head><body>\n", o);
}

// Bars of counts over [x0, x1] (n bins); log: heights on log10(1 + count).
static void svg_bars(FILE *o, const int64_t *counts, int n, double x0, double x1,
                     const char *xlabel, int log, const char *color, double split) {
    const int W = 480, H = 130, L = 40, B = 20;
    double mx = 0;
    for (int b = 0; b < n; b++)
        mx = fmax(mx, log ? log10(1.0 + (double)counts[b]) : (double)counts[b]);
    fprintf(o, "<svg width=\"%d\" height=\"%d\" role=\"img\">", W + L + 10, H + B + 5);
    fprintf(o, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/>", L, H, L + W, H);
    double bw = (double)W / (n > 0 ? n : 1);
    for (int b = 0; b < n && mx > 0; b++) {
        double v = log ? log10(1.0 + (double)counts[b]) : (double)counts[b];
        double h = v / mx * (H - 10);
        const char *c = color;
        if (split == split && x0 + (x1 - x0) * (b + 0.5) / n < split)
            c = "#d9534f"; // negative side
        if (h > 0)
            fprintf(o,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"%s\"><title>%.4g..%.4g: %lld</title></rect>",
                    L + b * bw, H - h, bw > 1.5 ? bw - 0.5 : bw, h, c, x0 + (x1 - x0) * b / n,
                    x0 + (x1 - x0) * (b + 1) / n, (long long)counts[b]);
    }
    fprintf(o,
            "<text x=\"%d\" y=\"%d\">%.3g</text><text x=\"%d\" y=\"%d\" "
            "text-anchor=\"end\">%.3g</text>",
            L, H + 14, x0, L + W, H + 14, x1);
    fprintf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", L + W / 2, H + 14);
    esc(o, xlabel);
    fprintf(o, "</text><text x=\"%d\" y=\"12\" text-anchor=\"end\">%s%.0f</text></svg>\n", L - 4,
            log ? "10^" : "", log ? mx : mx);
}

static void example(FILE *o, const cterp_features *f, const cterp_feature_example *e,
                    float max_act) {
    fputs("<div class=\"ex\"><b>", o);
    fprintf(o, "%.3g</b>", (double)e->act);
    for (int t = 0; t < e->n_ctx; t++) {
        float a = e->acts[t];
        int lvl = max_act > 0 && a > 0 ? (int)ceilf(a / max_act * 10) : 0;
        lvl = lvl > 10 ? 10 : lvl;
        int center = e->start + t == e->pos;
        if (lvl || center) {
            fputs("<i class=\"", o);
            if (lvl) fprintf(o, "h%d", lvl);
            if (center) fputs(lvl ? " c" : "c", o);
            fputc('"', o);
            if (a > 0) fprintf(o, " title=\"%.3g\"", (double)a);
            fputc('>', o);
        } else {
            fputs("<i>", o);
        }
        esc_token(o, f, e->tokens[t]);
        fputs("</i>", o);
    }
    fprintf(o, " <small>(w%lld:%d)</small></div>\n", (long long)e->window, e->pos);
}

// Co-firing (Jaccard over firing positions) and decoder-cosine neighbours, with links.
static void correlated(FILE *o, const cterp_features *f, const cterp_feature *ft) {
    if (f->cfg.n_neighbours <= 0) return;
    fputs("<h2 id=\"corr\">Correlated latents</h2><div class=\"cols\">", o);
    fputs("<table><tr><th class=\"l\">co-firing<th>Jaccard</tr>", o);
    for (int k = 0; k < ft->n_cofire; k++)
        fprintf(o, "<tr><td class=\"l\"><a href=\"%d.html\">%d</a><td>%.3f</tr>",
                (int)ft->cofire_ids[k], (int)ft->cofire_ids[k], (double)ft->cofire_jaccard[k]);
    if (!f->cofire_done)
        fputs("<tr><td class=\"l\" colspan=\"2\">not counted (d_sae above "
              "cofire_max_latents)</tr>",
              o);
    else if (!ft->n_cofire)
        fputs("<tr><td class=\"l\" colspan=\"2\">fires with no other latent</tr>", o);
    fputs("</table><table><tr><th class=\"l\">decoder neighbour<th>cosine</tr>", o);
    for (int k = 0; k < ft->n_dec; k++)
        fprintf(o, "<tr><td class=\"l\"><a href=\"%d.html\">%d</a><td>%+.3f</tr>",
                (int)ft->dec_ids[k], (int)ft->dec_ids[k], (double)ft->dec_cos[k]);
    fputs("</table></div>\n", o);
}

// Mean change of the next-token loss when the latent is ablated where it fires, and the
// positions where it helps most.
static void loss_effect(FILE *o, const cterp_features *f, const cterp_feature *ft) {
    if (f->cfg.loss_windows <= 0) return;
    fputs("<h2 id=\"loss\">Ablation effect on the next-token loss</h2>", o);
    if (!ft->loss_n) {
        fprintf(o, "<p>Did not fire in the %lld windows measured.</p>\n",
                (long long)f->cfg.loss_windows);
        return;
    }
    fprintf(o,
            "<p>Ablated where it fires (x &minus; f&middot;W_dec, SAE error term kept): next-token "
            "loss %+.4f nats on average over %lld positions of the first %lld windows.</p>\n",
            ft->loss_mean, (long long)ft->loss_n, (long long)f->cfg.loss_windows);
    fputs("<table><tr><th class=\"l\">position<th class=\"l\">next token<th>&Delta; loss</tr>", o);
    for (int k = 0; k < ft->n_loss; k++) {
        const cterp_feature_loss *l = &ft->loss_top[k];
        fprintf(o, "<tr><td class=\"l\">w%lld:%d<td class=\"l\"><i>", (long long)l->window, l->pos);
        esc_token(o, f, l->next);
        fprintf(o, "</i><td class=\"%s\">%+.4f</tr>", l->dloss > 0 ? "n" : "p", (double)l->dloss);
    }
    fputs("</table>\n", o);
}

static cterp_status feature_page(const cterp_features *f, int64_t i, const char *path) {
    page_file w;
    cterp_status s = page_open(&w, path);
    if (s) return s;
    FILE *o = w.f;
    const cterp_feature *ft = &f->f[i];
    char title[96];
    snprintf(title, sizeof title, "Latent %lld", (long long)i);
    page_start(o, title);
    fputs("<nav><a href=\"../index.html\">index</a>", o);
    if (i > 0)
        fprintf(o, " | <a href=\"%lld.html\">&larr; %lld</a>", (long long)i - 1, (long long)i - 1);
    if (i + 1 < f->d_sae)
        fprintf(o, " | <a href=\"%lld.html\">%lld &rarr;</a>", (long long)i + 1, (long long)i + 1);
    fprintf(o, "</nav><h1>Latent %lld</h1><div>", (long long)i);
    esc(o, f->sae), fputs(" at ", o), esc(o, f->hook), fputs("</div>\n", o);
    fprintf(o,
            "<table><tr><th>frequency<th>fired<th>log10 freq<th>mean act<th>max "
            "act</tr><tr><td>%.4g<td>%lld<td>%s",
            ft->frequency, (long long)ft->fired, "");
    if (ft->fired)
        fprintf(o, "%.2f", log10(ft->frequency));
    else
        fputs("dead", o);
    fprintf(o, "<td>%.4g<td>%.4g</tr></table>\n", ft->mean_act, (double)ft->max_act);
    if (!ft->fired) {
        fprintf(o, "<p>This latent never fired on the %lld tokens of the corpus.</p>\n",
                (long long)f->n_tokens);
    } else {
        fputs("<div class=\"cols\"><div><h2>Activation density</h2>", o);
        svg_bars(o, ft->hist, ft->n_bins, 0, ft->bin_width * ft->n_bins, "activation", 0, "#ff9933",
                 NAN);
        fputs("</div>", o);
    }
    if (ft->n_logits > 0) {
        if (!ft->fired) fputs("<div class=\"cols\">", o);
        fputs("<div><h2>Logit effects</h2>", o);
        svg_bars(o, ft->logit_hist, CTERP_FEAT_LOGIT_BINS, ft->logit_lo, ft->logit_hi,
                 "W_dec . W_U", 0, "#5b8def", 0);
        fputs("</div></div>\n<div class=\"cols\"><table><tr><th>positive logits<th></tr>", o);
        for (int k = 0; k < ft->n_logits; k++) {
            fputs("<tr><td class=\"l\"><i>", o), esc_token(o, f, ft->logit_top_ids[k]);
            fprintf(o, "</i><td class=\"p\">%+.3f</tr>", (double)ft->logit_top[k]);
        }
        fputs("</table><table><tr><th>negative logits<th></tr>", o);
        for (int k = 0; k < ft->n_logits; k++) {
            fputs("<tr><td class=\"l\"><i>", o), esc_token(o, f, ft->logit_bot_ids[k]);
            fprintf(o, "</i><td class=\"n\">%+.3f</tr>", (double)ft->logit_bot[k]);
        }
        fputs("</table></div>\n", o);
    } else if (ft->fired) {
        fputs("</div>\n", o);
    }
    correlated(o, f, ft);
    loss_effect(o, f, ft);
    if (ft->n_top) {
        fprintf(o, "<h2>Top activations</h2><div id=\"top\">\n");
        for (int k = 0; k < ft->n_top; k++) example(o, f, &ft->top[k], ft->max_act);
        fputs("</div>\n", o);
    }
    for (int g = ft->n_groups - 1; g >= 0; g--) {
        const cterp_feature_group *G = &ft->groups[g];
        if (!G->n) continue;
        fprintf(o, "<h2>Interval %.3g &ndash; %.3g: %lld tokens (%.1f%% of firings)</h2>\n",
                (double)G->lo, (double)G->hi, (long long)G->count,
                100.0 * (double)G->count / (double)ft->fired);
        for (int k = 0; k < G->n; k++) example(o, f, &G->ex[k], ft->max_act);
    }
    fputs("</body></html>\n", o);
    return page_close(&w);
}

static const char *SORT_JS =
    "<script>\n"
    "function sortBy(c,desc){var tb=document.querySelector('#lat "
    "tbody'),rows=Array.from(tb.rows);\n"
    " rows.sort(function(a,b){var "
    "x=a.cells[c].textContent,y=b.cells[c].textContent,p=parseFloat(x),q=parseFloat(y);\n"
    "  var r=(isNaN(p)||isNaN(q))?x.localeCompare(y):p-q;return desc?-r:r;});\n"
    " rows.forEach(function(r){tb.appendChild(r);});document.body.dataset.sorted=c+(desc?'d':'a');}"
    "\n"
    "var cols={latent:0,freq:1,mean:2,max:3,loss:6};\n"
    "document.querySelectorAll('#lat "
    "th').forEach(function(th,c){th.addEventListener('click',function(){\n"
    " var d=document.body.dataset.sorted!==c+'d';sortBy(c,d);});});\n"
    "var m=/sort=(\\w+)/.exec(location.hash);if(m&&m[1] in "
    "cols)sortBy(cols[m[1]],m[1]!=='latent');\n"
    "</script>\n";

static cterp_status index_page(const cterp_features *f, const char *path,
                               const cterp_dashboard_opts *op, int training) {
    page_file w;
    cterp_status s = page_open(&w, path);
    if (s) return s;
    FILE *o = w.f;
    char title[600];
    if (op && op->title)
        snprintf(title, sizeof title, "%s", op->title);
    else
        snprintf(title, sizeof title, "Features of %.250s at %.250s", f->sae[0] ? f->sae : "an SAE",
                 f->hook);
    page_start(o, title);
    fputs("<h1>", o), esc(o, title), fputs("</h1>\n", o);
    int64_t dead = 0, dense = 0;
    int64_t dens[10] = {0}; // log10 frequency bins [-10, 0)
    for (int64_t i = 0; i < f->d_sae; i++) {
        double fr = f->f[i].frequency;
        if (!f->f[i].fired) {
            dead++;
            continue;
        }
        dense += fr > 0.1;
        int b = (int)floor(log10(fr)) + 10;
        dens[b < 0 ? 0 : b > 9 ? 9 : b]++;
    }
    fputs("<table><tr><th>model<td class=\"l\">", o), esc(o, f->model);
    fputs("<tr><th>hook<td class=\"l\">", o), esc(o, f->hook);
    fputs("<tr><th>SAE<td class=\"l\">", o), esc(o, f->sae);
    fputs("<tr><th>data<td class=\"l\">", o), esc(o, f->dataset);
    fprintf(o,
            "<tr><th>tokens<td class=\"l\">%lld (%lld windows of %d, special positions left out)",
            (long long)f->n_tokens, (long long)f->n_windows, f->context_size);
    fprintf(o, "<tr><th>latents<td class=\"l\">%lld: %lld dead, %lld dense (&gt; 10%%)</table>\n",
            (long long)f->d_sae, (long long)dead, (long long)dense);
    if (training) fputs("<p><a href=\"training.html\">training report</a></p>\n", o);
    if (f->view_n > 0)
        fputs("<p><a href=\"tokens.html\">which latents fire here</a>: the corpus token by "
              "token</p>\n",
              o);
    fputs("<h2>Latent frequencies (log10, alive latents)</h2>", o);
    svg_bars(o, dens, 10, -10, 0, "log10 frequency", 0, "#5b8def", NAN);
    fputs("<h2>Latents</h2><p>Click a column to sort.</p>\n<table "
          "id=\"lat\"><thead><tr><th>latent<th>frequency"
          "<th>mean act<th>max act<th class=\"l\">top token<th class=\"l\">top "
          "logits",
          o);
    const int loss = f->cfg.loss_windows > 0;
    if (loss) fputs("<th title=\"mean next-token loss change when ablated\">&Delta; loss", o);
    fputs("</tr></thead><tbody>\n", o);
    for (int64_t i = 0; i < f->d_sae; i++) {
        const cterp_feature *ft = &f->f[i];
        fprintf(
            o,
            "<tr><td><a href=\"f/%lld.html\">%lld</a><td>%.3g<td>%.3g<td>%.3g<td class=\"l\"><i>",
            (long long)i, (long long)i, ft->frequency, ft->mean_act, (double)ft->max_act);
        if (ft->n_top) {
            const cterp_feature_example *e = &ft->top[0];
            if (e->n_ctx > 0) esc_token(o, f, e->tokens[e->pos - e->start]);
        }
        fputs("</i><td class=\"l\">", o);
        for (int k = 0; k < ft->n_logits && k < 3; k++) {
            fputs(k ? " <i>" : "<i>", o), esc_token(o, f, ft->logit_top_ids[k]), fputs("</i>", o);
        }
        if (loss && ft->loss_n) fprintf(o, "<td>%+.3g", ft->loss_mean);
        if (loss && !ft->loss_n) fputs("<td>", o);
        fputc('\n', o);
    }
    fputs("</tbody></table>\n", o);
    fputs(SORT_JS, o);
    fputs("</body></html>\n", o);
    return page_close(&w);
}

// tokens.html: the first windows of the corpus, every token with the latents that fire on it
// (strongest first, linked to their pages): a token's shade is its strongest latent's activation
// relative to that latent's max.
static cterp_status tokens_page(const cterp_features *f, const char *path) {
    page_file w;
    cterp_status s = page_open(&w, path);
    if (s) return s;
    FILE *o = w.f;
    const int64_t T = f->context_size, K = CTERP_FEAT_VIEW_K;
    page_start(o, "Which latents fire here");
    fputs("<nav><a href=\"index.html\">index</a></nav><h1>Which latents fire here</h1>\n", o);
    fprintf(o, "<p>The first %d windows of ", f->view_n);
    esc(o, f->dataset);
    fputs(": hover a token for its latents; the table lists up to 5 per token, strongest first. "
          "Special positions (BOS, separators) are left out, as in the statistics.</p>\n",
          o);
    for (int v = 0; v < f->view_n; v++) {
        fprintf(o, "<h2 id=\"w%lld\">Window %lld</h2><div class=\"ex\">",
                (long long)f->view_window[v], (long long)f->view_window[v]);
        for (int64_t t = 0; t < T; t++) {
            const int32_t *id = f->view_ids + (v * T + t) * K;
            const float *av = f->view_acts + (v * T + t) * K;
            int lvl = 0;
            if (id[0] >= 0 && id[0] < f->d_sae && f->f[id[0]].max_act > 0) {
                lvl = (int)ceilf(av[0] / f->f[id[0]].max_act * 10);
                lvl = lvl > 10 ? 10 : lvl < 1 ? 1 : lvl;
            }
            fprintf(o, "<i class=\"tv%s%.0d\" title=\"%lld:", lvl ? " h" : "", lvl, (long long)t);
            for (int64_t k = 0; k < K && id[k] >= 0; k++)
                fprintf(o, " %d (%.3g)", (int)id[k], (double)av[k]);
            fputs("\">", o);
            esc_token(o, f, f->view_tokens[v * T + t]);
            fputs("</i>", o);
        }
        fputs("</div>\n<table class=\"tvt\"><tr><th>pos<th class=\"l\">token<th "
              "class=\"l\">latents (activation)</tr>\n",
              o);
        for (int64_t t = 0; t < T; t++) {
            const int32_t *id = f->view_ids + (v * T + t) * K;
            const float *av = f->view_acts + (v * T + t) * K;
            fprintf(o, "<tr><td>%lld<td class=\"l\"><i>", (long long)t);
            esc_token(o, f, f->view_tokens[v * T + t]);
            fputs("</i><td class=\"l\">", o);
            if (f->view_mask[v * T + t]) fputs("special", o);
            for (int64_t k = 0; k < K && id[k] >= 0; k++)
                fprintf(o, "%s<a href=\"f/%d.html\">%d</a> (%.3g)", k ? " " : "", (int)id[k],
                        (int)id[k], (double)av[k]);
            fputs("</tr>\n", o);
        }
        fputs("</table>\n", o);
    }
    fputs("</body></html>\n", o);
    return page_close(&w);
}

cterp_status cterp_dashboard_write(const cterp_features *f, const char *out_dir,
                                   const cterp_dashboard_opts *o) {
    char *fd = file_join(out_dir, "f"), *ip = file_join(out_dir, "index.html");
    char *tp = file_join(out_dir, "training.html");
    cterp_status s =
        fd && ip && tp ? file_mkdirs(fd) : cterp_error(CTERP_ENOMEM, "dashboard: out of memory");
    int training = o && o->metrics;
    if (!s && training) s = cterp_report_write(o->metrics, tp, NULL);
    const double t0 = time_now();
    for (int64_t i = 0; !s && i < f->d_sae; i++) {
        char name[48];
        snprintf(name, sizeof name, "%lld.html", (long long)i);
        char *p = file_join(fd, name);
        s = p ? feature_page(f, i, p) : cterp_error(CTERP_ENOMEM, "dashboard: out of memory");
        free(p);
        if (!s && o && o->progress && ((i + 1) % 256 == 0 || i + 1 == f->d_sae))
            o->progress("dashboard", i + 1, f->d_sae, "latent pages", time_now() - t0, o->progress_user);
    }
    if (!s && f->view_n > 0) {
        char *vp = file_join(out_dir, "tokens.html");
        s = vp ? tokens_page(f, vp) : cterp_error(CTERP_ENOMEM, "dashboard: out of memory");
        free(vp);
    }
    if (!s) s = index_page(f, ip, o, training);
    free(fd), free(ip), free(tp);
    return s;
}

// ---- training report -----------------------------------------------------------------------

enum { NSER = 8 };
static const char *SER[NSER] = {
    "loss",          "mse_loss", "sparsity_loss", "aux_loss", "explained_variance", "l0",
    "dead_fraction", "lr"};

static void svg_line(FILE *o, const char *name, const double *x, const double *y, int64_t n) {
    const int W = 420, H = 140, L = 60, B = 20;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int64_t have = 0;
    for (int64_t k = 0; k < n; k++)
        if (isfinite(y[k]))
            x0 = fmin(x0, x[k]), x1 = fmax(x1, x[k]), y0 = fmin(y0, y[k]), y1 = fmax(y1, y[k]),
            have++;
    if (!have) return;
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + (y0 == 0 ? 1 : fabs(y0) * 0.1), y0 -= y1 - y0 == 0 ? 1 : 0;
    fputs("<div><h2>", o), esc(o, name), fputs("</h2>", o);
    fprintf(o,
            "<svg width=\"%d\" height=\"%d\" role=\"img\"><rect x=\"%d\" y=\"0\" width=\"%d\" "
            "height=\"%d\" "
            "fill=\"none\" stroke=\"#ccc\"/><polyline fill=\"none\" stroke=\"#0550ae\" "
            "stroke-width=\"1.5\" points=\"",
            W + L + 10, H + B + 5, L, W, H);
    for (int64_t k = 0; k < n; k++)
        if (isfinite(y[k]))
            fprintf(o, "%.1f,%.1f ", L + (x[k] - x0) / (x1 - x0) * W,
                    H - (y[k] - y0) / (y1 - y0) * (H - 4) - 2);
    fprintf(
        o,
        "\"/><text x=\"%d\" y=\"10\" text-anchor=\"end\">%.4g</text><text x=\"%d\" y=\"%d\" "
        "text-anchor=\"end\">%.4g</text><text x=\"%d\" y=\"%d\">%.0f</text><text x=\"%d\" y=\"%d\" "
        "text-anchor=\"end\">step %.0f</text></svg>",
        L - 4, y1, L - 4, H, y0, L, H + 14, x0, L + W, H + 14, x1);
    fprintf(o, "<div>last: %.5g</div></div>\n", y[n - 1]);
}

cterp_status cterp_report_write(const char *metrics_jsonl, const char *out_html,
                                const char *title) {
    FILE *in = fopen(metrics_jsonl, "r");
    if (!in) return cterp_error(CTERP_EIO, "%s: cannot open the metrics file", metrics_jsonl);
    double *v = NULL; // (n, 1 + NSER): step then the series (NaN when absent)
    int64_t n = 0, cap = 0, line_no = 0;
    char *line = NULL;
    size_t lc = 0;
    ssize_t len;
    cterp_status s = CTERP_OK;
    while ((len = getline(&line, &lc, in)) > 0) {
        line_no++;
        if (len == 1 && line[0] == '\n') continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (!cJSON_IsObject(j) || !cJSON_IsNumber(st)) {
            cJSON_Delete(j);
            s = cterp_error(CTERP_EFORMAT,
                            "%s:%lld: expected a JSON object with a numeric \"step\" (a trainer's "
                            "metrics.jsonl line)",
                            metrics_jsonl, (long long)line_no);
            goto done;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            double *nv = realloc(v, (size_t)cap * (1 + NSER) * sizeof *v);
            if (!nv) {
                cJSON_Delete(j);
                s = cterp_error(CTERP_ENOMEM, "%s: out of memory", metrics_jsonl);
                goto done;
            }
            v = nv;
        }
        double *r = v + n * (1 + NSER);
        r[0] = st->valuedouble;
        for (int k = 0; k < NSER; k++) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, SER[k]);
            r[1 + k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        }
        cJSON_Delete(j);
        n++;
    }
    if (n == 0) {
        s = cterp_error(CTERP_EFORMAT, "%s: no metrics lines", metrics_jsonl);
        goto done;
    }
    double *xs = malloc((size_t)n * sizeof *xs), *ys = malloc((size_t)n * sizeof *ys);
    page_file w;
    if (!xs || !ys) s = cterp_error(CTERP_ENOMEM, "%s: out of memory", metrics_jsonl);
    if (!s) s = page_open(&w, out_html);
    if (!s) {
        FILE *o = w.f;
        char t[600];
        snprintf(t, sizeof t, "%s", title ? title : "Training report");
        page_start(o, t);
        fputs("<nav><a href=\"index.html\">index</a></nav><h1>", o), esc(o, t),
            fputs("</h1><div>", o);
        esc(o, metrics_jsonl);
        fprintf(o, ": %lld log lines, steps %.0f to %.0f</div>\n<div class=\"cols\">\n",
                (long long)n, v[0], v[(n - 1) * (1 + NSER)]);
        for (int k = 0; k < NSER; k++) {
            for (int64_t q = 0; q < n; q++)
                xs[q] = v[q * (1 + NSER)], ys[q] = v[q * (1 + NSER) + 1 + k];
            svg_line(o, SER[k], xs, ys, n);
        }
        fputs("</div></body></html>\n", o);
        s = page_close(&w);
    }
    free(xs), free(ys);
done:
    fclose(in);
    free(line), free(v);
    return s;
}
