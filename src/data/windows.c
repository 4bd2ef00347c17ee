// Context windows: tokenize documents one at a time, concatenate them with a separator, and cut
// BOS + (T-1)-token windows with a mask of the special positions (SAELens
// concat_and_batch_sequences).
#include <stdlib.h>
#include <string.h>

#include "cterp/data.h"

struct cterp_windows {
    cterp_dataset *ds;
    const cterp_tokenizer *tok;
    cterp_window_config c;
    int32_t bos, eos, sep, n_vocab;
    int32_t *q; // pending tokens (qlen from qhead)
    uint8_t *qm;
    size_t qhead, qlen, qcap;
    int started; // a document was queued since the last rewind (the next one gets a separator)
    int eof;
    int64_t pos;
};

void cterp_window_config_default(cterp_window_config *c) {
    c->context_size = 128;
    c->prepend_bos = 1;
    c->separator = CTERP_SEP_BOS;
    c->concat = 1;
    c->exclude_special = 1;
}

void cterp_windows_close(cterp_windows *w) {
    if (!w) return;
    cterp_dataset_close(w->ds);
    free(w->q), free(w->qm);
    free(w);
}

cterp_status cterp_windows_open(cterp_windows **out, const char *path, const cterp_dataset_opts *o,
                                const cterp_tokenizer *tok, const cterp_window_config *c) {
    *out = NULL;
    cterp_window_config cd;
    if (!c) cterp_window_config_default(&cd), c = &cd;
    if (c->context_size < 2 || c->context_size > (1 << 20))
        return cterp_error(CTERP_EINVAL, "context_size: expected 2..%d, got %d", 1 << 20, c->context_size);
    cterp_windows *w = calloc(1, sizeof *w);
    if (!w) return cterp_error(CTERP_ENOMEM, "windows: out of memory");
    w->c = *c, w->tok = tok;
    w->bos = tok ? cterp_tokenizer_bos(tok) : -1;
    w->eos = tok ? cterp_tokenizer_eos(tok) : -1;
    w->n_vocab = tok ? cterp_tokenizer_n_vocab(tok) : INT32_MAX;
    w->sep = c->separator == CTERP_SEP_BOS ? w->bos : c->separator == CTERP_SEP_EOS ? w->eos
                                                                                   : c->separator;
    cterp_status s = CTERP_OK;
    if (c->separator < CTERP_SEP_EOS)
        s = cterp_error(CTERP_EINVAL, "separator: expected an id, -1, -2 (BOS) or -3 (EOS), got %d",
                        c->separator);
    else if (c->prepend_bos && w->bos < 0)
        s = cterp_error(CTERP_EINVAL, "prepend_bos: the tokenizer has no BOS token");
    else if (c->separator < CTERP_SEP_NONE && w->sep < 0)
        s = cterp_error(CTERP_EINVAL, "separator: the tokenizer has no %s token",
                        c->separator == CTERP_SEP_BOS ? "BOS" : "EOS");
    else if (w->sep >= w->n_vocab)
        s = cterp_error(CTERP_EINVAL, "separator: id %d outside the vocabulary [0, %d)", w->sep, w->n_vocab);
    if (!s) s = cterp_dataset_open(&w->ds, path, o);
    if (!s && !tok && !cterp_dataset_pretokenized(w->ds))
        s = cterp_error(CTERP_EINVAL, "%s: a text dataset needs a tokenizer", path);
    if (s) {
        cterp_windows_close(w);
        return s;
    }
    *out = w;
    return CTERP_OK;
}

static int is_special(const cterp_windows *w, int32_t id) {
    if (!w->c.exclude_special) return 0;
    if (id == w->bos || id == w->eos || id == w->sep) return 1;
    return w->tok && cterp_tokenizer_is_special(w->tok, id);
}

static cterp_status push(cterp_windows *w, const int32_t *ids, size_t n, int sep_first) {
    if (w->qhead > 0 && w->qhead >= w->qlen / 2) { // compact: keep the queue near its live size
        memmove(w->q, w->q + w->qhead, (w->qlen - w->qhead) * sizeof *w->q);
        memmove(w->qm, w->qm + w->qhead, w->qlen - w->qhead);
        w->qlen -= w->qhead, w->qhead = 0;
    }
    size_t need = w->qlen + n + 1;
    if (need > w->qcap) {
        size_t cap = need * 2;
        int32_t *q = realloc(w->q, cap * sizeof *q);
        if (q) w->q = q;
        uint8_t *qm = realloc(w->qm, cap);
        if (qm) w->qm = qm;
        if (!q || !qm) return cterp_error(CTERP_ENOMEM, "windows: out of memory (%zu tokens)", need);
        w->qcap = cap;
    }
    if (sep_first) { // the separator is special by construction: always masked
        w->q[w->qlen] = w->sep, w->qm[w->qlen++] = (uint8_t)(w->c.exclude_special != 0);
    }
    for (size_t i = 0; i < n; i++) w->q[w->qlen] = ids[i], w->qm[w->qlen++] = (uint8_t)is_special(w, ids[i]);
    return CTERP_OK;
}

// Queues the next document; *eof at the end of the dataset.
static cterp_status feed(cterp_windows *w, int *eof) {
    cterp_document doc;
    cterp_status s = cterp_dataset_next(w->ds, &doc, eof);
    if (s || *eof) return s;
    const int32_t *ids = doc.tokens;
    int32_t *owned = NULL;
    size_t n = doc.n_tokens;
    if (doc.text) {
        if ((s = cterp_tokenize(w->tok, doc.text, doc.len, 0, 0, &owned, &n))) return s;
        ids = owned;
    } else {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= w->n_vocab)
                return cterp_error(CTERP_EFORMAT, "%s: token %lld: id %d outside the vocabulary [0, %d)",
                                   cterp_dataset_path(w->ds), (long long)(doc.offset + (int64_t)i),
                                   ids[i], w->n_vocab);
    }
    if (!w->c.concat && !doc.continues) w->qhead = w->qlen = 0; // a new document: drop the remainder
    int sep = w->c.concat && w->started && !doc.continues && w->sep >= 0;
    s = push(w, ids, n, sep);
    w->started = 1;
    free(owned);
    return s;
}

cterp_status cterp_windows_next(cterp_windows *w, int32_t *tokens, uint8_t *mask, int *eof) {
    const size_t T = (size_t)w->c.context_size, off = w->c.prepend_bos ? 1 : 0, need = T - off;
    *eof = 0;
    while (w->qlen - w->qhead < need) {
        if (w->eof) {
            *eof = 1;
            return CTERP_OK;
        }
        int e = 0;
        cterp_status s = feed(w, &e);
        if (s) return s;
        if (e) w->eof = 1;
    }
    if (off) tokens[0] = w->bos, mask[0] = (uint8_t)(w->c.exclude_special != 0);
    memcpy(tokens + off, w->q + w->qhead, need * sizeof *tokens);
    memcpy(mask + off, w->qm + w->qhead, need);
    w->qhead += need;
    w->pos++;
    return CTERP_OK;
}

cterp_status cterp_windows_rewind(cterp_windows *w) {
    w->qhead = w->qlen = 0, w->started = 0, w->eof = 0, w->pos = 0;
    return cterp_dataset_rewind(w->ds);
}

int64_t cterp_windows_position(const cterp_windows *w) { return w->pos; }
int cterp_windows_context_size(const cterp_windows *w) { return w->c.context_size; }
cterp_dataset *cterp_windows_dataset(cterp_windows *w) { return w->ds; }
int32_t cterp_windows_separator(const cterp_windows *w) { return w->sep; }
