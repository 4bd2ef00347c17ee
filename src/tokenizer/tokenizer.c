// SentencePiece-BPE and GPT-2 byte-level BPE, following llama.cpp (src/llama-vocab.cpp):
// same merge order (priority queue, leftmost on ties), same special-token splitting, same
// BOS/EOS rules, so the ids match its test-tokenizer-0 files exactly.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_gguf.h"

enum { KIND_SPM = 0, KIND_BPE = 1 };
enum { PRE_NONE = 0, PRE_GPT2 = 1, PRE_LLAMA3 = 2 };
// token_type values in GGUF
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

// Open-addressing string -> index map over strings stored in an arena.
typedef struct {
    uint32_t mask;
    int32_t *slots; // -1 empty
    const char *arena;
    const uint32_t *off, *len;
} strmap;

struct cterp_tokenizer {
    int kind, pre;
    int32_t n_vocab;
    char *arena;    // token strings, NUL-terminated
    uint32_t *off;  // (n_vocab) offsets into arena
    uint32_t *len;  // (n_vocab)
    float *scores;  // (n_vocab)
    int32_t *types; // (n_vocab)
    strmap tokens;
    char *merge_arena; // "left right" strings
    uint32_t *merge_off, *merge_len;
    int32_t n_merges;
    strmap merges;
    int32_t bos, eos, unk;
    int add_bos, add_eos, add_space_prefix;
    int32_t byte_tok[256]; // SPM: <0xXX>; BPE: the token of the mapped byte (-1 if none)
    int32_t *specials;     // ids of control/user/unknown tokens, longest text first
    int32_t n_specials;
    pcre2_code *re;
};

// ---- small helpers ------------------------------------------------------------------------

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int strmap_build(strmap *m, const char *arena, const uint32_t *off, const uint32_t *len,
                        int32_t n) {
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n) cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return 0;
    memset(m->slots, 0xff, cap * sizeof *m->slots);
    m->mask = cap - 1;
    m->arena = arena;
    m->off = off;
    m->len = len;
    for (int32_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)hash(arena + off[i], len[i]) & m->mask;
        while (m->slots[h] >= 0) {
            int32_t j = m->slots[h];
            // first occurrence wins on duplicate strings (llama.cpp's map insert keeps the last;
            // vocabularies we accept have none, the fuzz-safe choice is deterministic either way)
            if (len[j] == len[i] && !memcmp(arena + off[j], arena + off[i], len[i])) break;
            h = (h + 1) & m->mask;
        }
        if (m->slots[h] < 0) m->slots[h] = i;
    }
    return 1;
}

static int32_t strmap_get(const strmap *m, const char *s, size_t n) {
    uint32_t h = (uint32_t)hash(s, n) & m->mask;
    for (;;) {
        int32_t j = m->slots[h];
        if (j < 0) return -1;
        if (m->len[j] == n && !memcmp(m->arena + m->off[j], s, n)) return j;
        h = (h + 1) & m->mask;
    }
}

static size_t utf8_len(uint8_t c) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 63));
        return 2;
    }
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 63));
    out[2] = (char)(0x80 | (cp & 63));
    return 3;
}

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to 256+n in order.
static void byte_to_cp_table(uint32_t cp[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            cp[b] = b;
        else
            cp[b] = 256 + (uint32_t)n++;
    }
}

// Growable id vector.
typedef struct {
    int32_t *v;
    size_t n, cap;
    int oom;
} ids_vec;

static void push(ids_vec *o, int32_t id) {
    if (o->oom) return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->v, cap * sizeof *p);
        if (!p) {
            o->oom = 1;
            return;
        }
        o->v = p;
        o->cap = cap;
    }
    o->v[o->n++] = id;
}

// Growable byte buffer.
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

// ---- loading ------------------------------------------------------------------------------

void cterp_tokenizer_free(cterp_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->scores);
    free(t->types);
    free(t->tokens.slots);
    free(t->merge_arena);
    free(t->merge_off);
    free(t->merge_len);
    free(t->merges.slots);
    free(t->specials);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

static const char *RE_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char *RE_LLAMA3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int32_t opt_id(const gguf_file *g, const char *key, int32_t n_vocab, int32_t def) {
    uint32_t v;
    if (gguf_get_u32(g, key, &v) != CTERP_OK) return def;
    return v < (uint32_t)n_vocab ? (int32_t)v : -1; // llama.cpp writes UINT32_MAX for "none"
}

static int opt_bool(const gguf_file *g, const char *key, int def) {
    int v;
    return gguf_get_bool(g, key, &v) == CTERP_OK ? v : def;
}

static _Thread_local cterp_tokenizer *g_sort_tok; // only used inside qsort during loading
static int cmp_special(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_sort_tok->len[x] != g_sort_tok->len[y])
        return g_sort_tok->len[x] > g_sort_tok->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

cterp_status tokenizer_from_gguf(cterp_tokenizer **out, const gguf_file *g) {
    *out = NULL;
    cterp_status s;
    gguf_str model;
    if ((s = gguf_get_str(g, "tokenizer.ggml.model", &model))) return s;
    cterp_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return cterp_error(CTERP_ENOMEM, "%s: out of memory", g->path);
    char name[64];
    gguf_str_copy(model, name, sizeof name);
    if (!strcmp(name, "llama"))
        t->kind = KIND_SPM;
    else if (!strcmp(name, "gpt2"))
        t->kind = KIND_BPE;
    else {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: tokenizer.ggml.model: expected \"llama\" or \"gpt2\", found \"%s\"",
                        g->path, name);
        goto fail;
    }
    const gguf_kv *toks, *kv;
    if ((s = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks))) goto fail;
    if (toks->n == 0 || toks->n > (1u << 30)) {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: tokenizer.ggml.tokens: expected 1..2^30 tokens, found %llu", g->path,
                        (unsigned long long)toks->n);
        goto fail;
    }
    int32_t n = (int32_t)toks->n;
    t->n_vocab = n;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) total += toks->strs[i].len + 1;
    if (total > UINT32_MAX) {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: tokenizer.ggml.tokens: %zu bytes of token text, at most 4 GiB",
                        g->path, total);
        goto fail;
    }
    t->arena = malloc(total);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->scores = calloc((size_t)n, sizeof *t->scores);
    t->types = malloc((size_t)n * sizeof *t->types);
    if (!t->arena || !t->off || !t->len || !t->scores || !t->types) goto oom;
    size_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        t->off[i] = (uint32_t)pos;
        t->len[i] = (uint32_t)toks->strs[i].len;
        memcpy(t->arena + pos, toks->strs[i].s, toks->strs[i].len);
        pos += toks->strs[i].len;
        t->arena[pos++] = 0;
        t->types[i] = TT_NORMAL;
    }
    if (gguf_get_arr(g, "tokenizer.ggml.scores", -1, &kv) == CTERP_OK) {
        if (kv->n != (uint64_t)n ||
            (kv->arr_type != GGUF_TYPE_F32 && kv->arr_type != GGUF_TYPE_F64)) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tokenizer.ggml.scores: expected %d f32, found %llu %s", g->path, n,
                            (unsigned long long)kv->n, gguf_vtype_name(kv->arr_type));
            goto fail;
        }
        for (int32_t i = 0; i < n; i++) t->scores[i] = (float)gguf_arr_f64(kv, (uint64_t)i);
    } else if (t->kind == KIND_SPM) {
        s = cterp_error(CTERP_EFORMAT,
                        "%s: tokenizer.ggml.scores: required for a SentencePiece vocabulary",
                        g->path);
        goto fail;
    }
    if (gguf_get_arr(g, "tokenizer.ggml.token_type", -1, &kv) == CTERP_OK) {
        if (kv->n != (uint64_t)n || kv->arr_type == GGUF_TYPE_STRING) {
            s = cterp_error(CTERP_EFORMAT,
                            "%s: tokenizer.ggml.token_type: expected %d integers, found %llu %s",
                            g->path, n, (unsigned long long)kv->n, gguf_vtype_name(kv->arr_type));
            goto fail;
        }
        for (int32_t i = 0; i < n; i++) t->types[i] = (int32_t)gguf_arr_i64(kv, (uint64_t)i);
    }
    if (!strmap_build(&t->tokens, t->arena, t->off, t->len, n)) goto oom;

    if (t->kind == KIND_BPE) {
        if ((s = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &kv))) goto fail;
        if (kv->n > (1u << 30)) {
            s = cterp_error(CTERP_EFORMAT, "%s: tokenizer.ggml.merges: too many (%llu)", g->path,
                            (unsigned long long)kv->n);
            goto fail;
        }
        t->n_merges = (int32_t)kv->n;
        size_t mt = 0;
        for (int32_t i = 0; i < t->n_merges; i++) mt += kv->strs[i].len + 1;
        if (mt > UINT32_MAX) {
            s = cterp_error(CTERP_EFORMAT, "%s: tokenizer.ggml.merges: too large", g->path);
            goto fail;
        }
        t->merge_arena = malloc(mt ? mt : 1);
        t->merge_off = malloc(((size_t)t->n_merges + 1) * sizeof *t->merge_off);
        t->merge_len = malloc(((size_t)t->n_merges + 1) * sizeof *t->merge_len);
        if (!t->merge_arena || !t->merge_off || !t->merge_len) goto oom;
        pos = 0;
        for (int32_t i = 0; i < t->n_merges; i++) {
            t->merge_off[i] = (uint32_t)pos;
            t->merge_len[i] = (uint32_t)kv->strs[i].len;
            memcpy(t->merge_arena + pos, kv->strs[i].s, kv->strs[i].len);
            pos += kv->strs[i].len;
            t->merge_arena[pos++] = 0;
        }
        if (!strmap_build(&t->merges, t->merge_arena, t->merge_off, t->merge_len, t->n_merges))
            goto oom;
        gguf_str pre;
        t->pre = PRE_GPT2; // files from before the key existed used the GPT-2 split
        if (gguf_get_str(g, "tokenizer.ggml.pre", &pre) == CTERP_OK) {
            char pn[64];
            gguf_str_copy(pre, pn, sizeof pn);
            if (!strcmp(pn, "gpt-2") || !strcmp(pn, "gpt2"))
                t->pre = PRE_GPT2;
            else if (!strcmp(pn, "llama-bpe") || !strcmp(pn, "llama3"))
                t->pre = PRE_LLAMA3;
            else {
                s = cterp_error(
                    CTERP_EFORMAT,
                    "%s: tokenizer.ggml.pre: expected \"gpt-2\" or \"llama-bpe\", found "
                    "\"%s\" (not supported)",
                    g->path, pn);
                goto fail;
            }
        }
        int err;
        PCRE2_SIZE eoff;
        t->re = pcre2_compile((PCRE2_SPTR)(t->pre == PRE_LLAMA3 ? RE_LLAMA3 : RE_GPT2),
                              PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &eoff, NULL);
        if (!t->re) {
            s = cterp_error(CTERP_EINVAL, "pre-tokenizer regex failed to compile (pcre2 error %d)",
                            err);
            goto fail;
        }
    }

    t->bos = opt_id(g, "tokenizer.ggml.bos_token_id", n, t->kind == KIND_SPM ? 1 : -1);
    t->eos = opt_id(g, "tokenizer.ggml.eos_token_id", n, t->kind == KIND_SPM ? 2 : -1);
    t->unk = opt_id(g, "tokenizer.ggml.unknown_token_id", n, t->kind == KIND_SPM ? 0 : -1);
    t->add_bos =
        opt_bool(g, "tokenizer.ggml.add_bos_token", t->kind == KIND_SPM || t->pre == PRE_LLAMA3);
    t->add_eos = opt_bool(g, "tokenizer.ggml.add_eos_token", 0);
    t->add_space_prefix = opt_bool(g, "tokenizer.ggml.add_space_prefix", t->kind == KIND_SPM);

    uint32_t cps[256];
    byte_to_cp_table(cps);
    for (int b = 0; b < 256; b++) {
        char tmp[8];
        size_t k;
        if (t->kind == KIND_SPM) {
            static const char *hex = "0123456789ABCDEF";
            k = (size_t)snprintf(tmp, sizeof tmp, "<0x%c%c>", hex[b >> 4], hex[b & 15]);
            t->byte_tok[b] = strmap_get(&t->tokens, tmp, k);
            if (t->byte_tok[b] < 0) { // no byte tokens: the raw byte as a one-character token
                tmp[0] = (char)b;
                t->byte_tok[b] = strmap_get(&t->tokens, tmp, 1);
            }
        } else {
            k = utf8_put(cps[b], tmp);
            t->byte_tok[b] = strmap_get(&t->tokens, tmp, k);
        }
    }
    t->specials = malloc((size_t)n * sizeof *t->specials);
    if (!t->specials) goto oom;
    for (int32_t i = 0; i < n; i++)
        if ((t->types[i] == TT_CONTROL || t->types[i] == TT_USER || t->types[i] == TT_UNKNOWN) &&
            t->len[i] > 0)
            t->specials[t->n_specials++] = i;
    g_sort_tok = t;
    qsort(t->specials, (size_t)t->n_specials, sizeof *t->specials, cmp_special);
    g_sort_tok = NULL;
    *out = t;
    return CTERP_OK;
oom:
    s = cterp_error(CTERP_ENOMEM, "%s: out of memory loading the vocabulary", g->path);
fail:
    cterp_tokenizer_free(t);
    return s;
}

cterp_status cterp_tokenizer_open(cterp_tokenizer **out, const char *gguf_path) {
    *out = NULL;
    gguf_file *g;
    cterp_status s = gguf_open(&g, gguf_path);
    if (s) return s;
    s = tokenizer_from_gguf(out, g);
    gguf_close(g);
    return s;
}

int32_t cterp_tokenizer_n_vocab(const cterp_tokenizer *t) {
    return t->n_vocab;
}
int32_t cterp_tokenizer_bos(const cterp_tokenizer *t) {
    return t->bos;
}
int32_t cterp_tokenizer_eos(const cterp_tokenizer *t) {
    return t->eos;
}
int cterp_tokenizer_add_bos(const cterp_tokenizer *t) {
    return t->add_bos;
}
const char *cterp_tokenizer_kind(const cterp_tokenizer *t) {
    return t->kind == KIND_SPM ? "llama" : "gpt2";
}
int cterp_tokenizer_is_special(const cterp_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return 1;
    int ty = t->types[id];
    return ty == TT_CONTROL || ty == TT_UNKNOWN || ty == TT_UNUSED;
}
const char *cterp_tokenizer_token(const cterp_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return "";
    return t->arena + t->off[id];
}

// ---- SentencePiece ------------------------------------------------------------------------

typedef struct {
    int32_t prev, next;
    uint32_t off, n; // into the text being tokenized
} sym_t;

typedef struct {
    int32_t left, right;
    float score;  // SPM: higher first
    int32_t rank; // BPE: lower first
    uint32_t size;
} bigram_t;

typedef struct {
    bigram_t *v;
    size_t n, cap;
    int bpe, oom;
} heap_t;

// 1 if a should pop before b
static int heap_before(const heap_t *h, const bigram_t *a, const bigram_t *b) {
    if (h->bpe) {
        if (a->rank != b->rank) return a->rank < b->rank;
    } else if (a->score != b->score)
        return a->score > b->score;
    return a->left < b->left;
}

static void heap_push(heap_t *h, bigram_t b) {
    if (h->oom) return;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        bigram_t *p = realloc(h->v, cap * sizeof *p);
        if (!p) {
            h->oom = 1;
            return;
        }
        h->v = p;
        h->cap = cap;
    }
    size_t i = h->n++;
    h->v[i] = b;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_before(h, &h->v[i], &h->v[p])) break;
        bigram_t tmp = h->v[i];
        h->v[i] = h->v[p];
        h->v[p] = tmp;
        i = p;
    }
}

static bigram_t heap_pop(heap_t *h) {
    bigram_t top = h->v[0];
    h->v[0] = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && heap_before(h, &h->v[l], &h->v[m])) m = l;
        if (r < h->n && heap_before(h, &h->v[r], &h->v[m])) m = r;
        if (m == i) break;
        bigram_t tmp = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = tmp;
        i = m;
    }
    return top;
}

typedef struct {
    sym_t *v;
    size_t n, cap;
} syms_t;

static int syms_split(syms_t *s, const char *text, size_t len) {
    s->n = 0;
    if (len > s->cap) {
        sym_t *p = realloc(s->v, len * sizeof *p);
        if (!p) return 0;
        s->v = p;
        s->cap = len;
    }
    for (size_t off = 0; off < len;) {
        size_t k = utf8_len((uint8_t)text[off]);
        if (k > len - off) k = len - off;
        sym_t *y = &s->v[s->n];
        y->off = (uint32_t)off;
        y->n = (uint32_t)k;
        y->prev = (int32_t)s->n - 1;
        off += k;
        y->next = off == len ? -1 : (int32_t)s->n + 1;
        s->n++;
    }
    return 1;
}

static void spm_try_bigram(const cterp_tokenizer *t, const char *text, const syms_t *s, heap_t *h,
                           int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const sym_t *a = &s->v[left], *b = &s->v[right];
    int32_t id = strmap_get(&t->tokens, text + a->off, a->n + b->n);
    if (id < 0) return;
    bigram_t bg = {left, right, t->scores[id], 0, a->n + b->n};
    heap_push(h, bg);
}

// text: already space-escaped ("▁")
static int spm_tokenize(const cterp_tokenizer *t, const char *text, size_t len, ids_vec *out,
                        syms_t *s, heap_t *h) {
    if (!len) return 1;
    if (!syms_split(s, text, len)) return 0;
    h->n = 0;
    h->bpe = 0;
    for (size_t i = 1; i < s->n; i++) spm_try_bigram(t, text, s, h, (int32_t)i - 1, (int32_t)i);
    while (h->n && !h->oom) {
        bigram_t bg = heap_pop(h);
        sym_t *a = &s->v[bg.left], *b = &s->v[bg.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size) continue; // stale
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->v[b->next].prev = bg.left;
        spm_try_bigram(t, text, s, h, a->prev, bg.left);
        spm_try_bigram(t, text, s, h, bg.left, a->next);
    }
    if (h->oom) return 0;
    for (int32_t i = 0; i != -1; i = s->v[i].next) {
        const sym_t *y = &s->v[i];
        int32_t id = strmap_get(&t->tokens, text + y->off, y->n);
        if (id >= 0)
            push(out, id);
        else
            for (uint32_t k = 0; k < y->n; k++) {
                int32_t bt = t->byte_tok[(uint8_t)text[y->off + k]];
                push(out, bt >= 0 ? bt : t->unk);
            }
    }
    return 1;
}

// ---- byte-level BPE -----------------------------------------------------------------------

static void bpe_try_bigram(const cterp_tokenizer *t, const char *w, const syms_t *s, heap_t *h,
                           int32_t left, int32_t right, buf_t *tmp) {
    if (left < 0 || right < 0) return;
    const sym_t *a = &s->v[left], *b = &s->v[right];
    tmp->n = 0;
    buf_put(tmp, w + a->off, a->n);
    buf_put(tmp, " ", 1);
    buf_put(tmp, w + b->off, b->n);
    if (tmp->oom) return;
    int32_t rank = strmap_get(&t->merges, tmp->p, tmp->n);
    if (rank < 0) return;
    bigram_t bg = {left, right, 0, rank, a->n + b->n};
    heap_push(h, bg);
}

// One pre-tokenized word (raw bytes): map bytes to GPT-2 unicode, merge by rank, look up.
static int bpe_word(const cterp_tokenizer *t, const char *word, size_t len, ids_vec *out, syms_t *s,
                    heap_t *h, buf_t *w, buf_t *tmp, const uint32_t *cps) {
    w->n = 0;
    for (size_t i = 0; i < len; i++) {
        char u[4];
        buf_put(w, u, utf8_put(cps[(uint8_t)word[i]], u));
    }
    if (w->oom) return 0;
    if (t->pre == PRE_LLAMA3) { // ignore_merges: a word that is a token is emitted whole
        int32_t id = strmap_get(&t->tokens, w->p, w->n);
        if (id >= 0) {
            push(out, id);
            return 1;
        }
    }
    if (!syms_split(s, w->p, w->n)) return 0;
    h->n = 0;
    h->bpe = 1;
    for (size_t i = 1; i < s->n; i++)
        bpe_try_bigram(t, w->p, s, h, (int32_t)i - 1, (int32_t)i, tmp);
    while (h->n && !h->oom) {
        bigram_t bg = heap_pop(h);
        sym_t *a = &s->v[bg.left], *b = &s->v[bg.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->v[b->next].prev = bg.left;
        bpe_try_bigram(t, w->p, s, h, a->prev, bg.left, tmp);
        bpe_try_bigram(t, w->p, s, h, bg.left, a->next, tmp);
    }
    if (h->oom || tmp->oom) return 0;
    for (int32_t i = 0; i != -1; i = s->v[i].next) {
        const sym_t *y = &s->v[i];
        int32_t id = strmap_get(&t->tokens, w->p + y->off, y->n);
        if (id >= 0)
            push(out, id);
        else // as llama.cpp: each byte of the symbol that is itself a token
            for (uint32_t k = 0; k < y->n; k++) {
                int32_t bt = strmap_get(&t->tokens, w->p + y->off + k, 1);
                if (bt >= 0) push(out, bt);
            }
    }
    return 1;
}

// Length of one valid UTF-8 sequence at p (as PCRE2 defines validity: no overlongs, no
// surrogates, at most U+10FFFF), or 0.
static size_t utf8_valid_seq(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (!k || k > n || c > 0xF4) return 0;
    for (size_t i = 1; i < k; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0; // overlong
    if (c == 0xED && p[1] > 0x9F) return 0; // surrogate
    if (c == 0xF0 && p[1] < 0x90) return 0; // overlong
    if (c == 0xF4 && p[1] > 0x8F) return 0; // > U+10FFFF
    return k;
}

// Pre-tokenizes with the regex, then BPE per word. The text is cut into valid UTF-8 runs
// matched with PCRE2_NO_UTF_CHECK (PCRE2 otherwise re-validates the whole subject on every
// call: quadratic in the text length); each invalid byte is a word of its own.
static int bpe_tokenize(const cterp_tokenizer *t, const char *text, size_t len, ids_vec *out,
                        syms_t *s, heap_t *h, pcre2_match_data *md) {
    uint32_t cps[256];
    byte_to_cp_table(cps);
    buf_t w = {0}, tmp = {0};
    int ok = 1;
    size_t run0 = 0;
    while (run0 < len && ok) {
        size_t run1 = run0, k;
        while (run1 < len && (k = utf8_valid_seq((const uint8_t *)text + run1, len - run1)))
            run1 += k;
        const char *r = text + run0;
        size_t rlen = run1 - run0, off = 0;
        while (off < rlen && ok) {
            int rc = pcre2_match(t->re, (PCRE2_SPTR)r, rlen, off, PCRE2_NO_UTF_CHECK, md, NULL);
            size_t a = rlen, b = rlen;
            if (rc >= 0) {
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                a = ov[0];
                b = ov[1];
            }
            if (a > off) ok = bpe_word(t, r + off, a - off, out, s, h, &w, &tmp, cps); // gap
            if (ok && b > a) ok = bpe_word(t, r + a, b - a, out, s, h, &w, &tmp, cps);
            if (b == a && a < rlen) { // empty match: step one character
                b = a + utf8_valid_seq((const uint8_t *)r + a, rlen - a);
                if (ok) ok = bpe_word(t, r + a, b - a, out, s, h, &w, &tmp, cps);
            }
            off = b;
        }
        if (run1 < len && ok) ok = bpe_word(t, text + run1, 1, out, s, h, &w, &tmp, cps);
        run0 = run1 + 1;
    }
    free(w.p);
    free(tmp.p);
    return ok;
}

// ---- special-token partition and the public entry points ---------------------------------

typedef struct {
    int32_t id; // >= 0: a special token; -1: raw text
    size_t off, len;
} frag_t;

cterp_status cterp_tokenize(const cterp_tokenizer *t, const char *text, size_t len, int add_special,
                            int parse_special, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    ids_vec out = {0};
    frag_t *fr = NULL, *nf = NULL;
    size_t nfr = 0, cap = 0;
    if (len) {
        cap = 16;
        fr = malloc(cap * sizeof *fr);
        if (!fr) return cterp_error(CTERP_ENOMEM, "tokenize: out of memory");
        fr[nfr++] = (frag_t){-1, 0, len};
    }
    for (int32_t si = 0; si < t->n_specials && nfr; si++) {
        int32_t id = t->specials[si];
        if (!parse_special && (t->types[id] == TT_CONTROL || t->types[id] == TT_UNKNOWN)) continue;
        const char *st = t->arena + t->off[id];
        size_t sl = t->len[id];
        size_t nn = 0, ncap = nfr + 8;
        nf = malloc(ncap * sizeof *nf);
        if (!nf) goto oom;
        for (size_t i = 0; i < nfr; i++) {
            frag_t f = fr[i];
            while (1) {
                const char *hit =
                    f.id < 0 && f.len >= sl ? memmem(text + f.off, f.len, st, sl) : NULL;
                if (nn + 2 >= ncap) {
                    ncap *= 2;
                    frag_t *p = realloc(nf, ncap * sizeof *nf);
                    if (!p) goto oom;
                    nf = p;
                }
                if (!hit) {
                    nf[nn++] = f;
                    break;
                }
                size_t pos = (size_t)(hit - text);
                if (pos > f.off) nf[nn++] = (frag_t){-1, f.off, pos - f.off};
                nf[nn++] = (frag_t){id, pos, sl};
                size_t end = pos + sl;
                f.len -= end - f.off;
                f.off = end;
                if (!f.len) break;
            }
        }
        free(fr);
        fr = nf;
        nf = NULL;
        nfr = nn;
    }

    syms_t syms = {0};
    heap_t heap = {0};
    buf_t esc = {0};
    pcre2_match_data *md = NULL;
    int ok = 1;
    if (t->kind == KIND_BPE) {
        md = pcre2_match_data_create_from_pattern(t->re, NULL);
        if (!md) ok = 0;
    }
    if (add_special && t->add_bos && t->bos >= 0) push(&out, t->bos);
    int prev_special = 1; // SPM: a space prefix at the start and after each special token
    for (size_t i = 0; i < nfr && ok; i++) {
        if (fr[i].id >= 0) {
            push(&out, fr[i].id);
            prev_special = 1;
            continue;
        }
        const char *p = text + fr[i].off;
        if (t->kind == KIND_SPM) {
            esc.n = 0;
            if (t->add_space_prefix && prev_special) buf_put(&esc, "\xe2\x96\x81", 3);
            for (size_t k = 0; k < fr[i].len; k++) {
                if (p[k] == ' ')
                    buf_put(&esc, "\xe2\x96\x81", 3);
                else
                    buf_put(&esc, p + k, 1);
            }
            ok = !esc.oom && spm_tokenize(t, esc.p, esc.n, &out, &syms, &heap);
        } else {
            ok = bpe_tokenize(t, p, fr[i].len, &out, &syms, &heap, md);
        }
        prev_special = 0;
    }
    if (add_special && t->add_eos && t->eos >= 0) push(&out, t->eos);
    free(syms.v);
    free(heap.v);
    free(esc.p);
    if (md) pcre2_match_data_free(md);
    free(fr);
    if (!ok || out.oom) {
        free(out.v);
        return cterp_error(CTERP_ENOMEM, "tokenize: out of memory");
    }
    *ids = out.v;
    *n = out.n;
    return CTERP_OK;
oom:
    free(nf);
    free(fr);
    free(out.v);
    return cterp_error(CTERP_ENOMEM, "tokenize: out of memory");
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

cterp_status cterp_detokenize(const cterp_tokenizer *t, const int32_t *ids, size_t n,
                              int keep_special, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    buf_t b = {0};
    buf_put(&b, "", 0);
    // inverse of bytes_to_unicode for code points < 512
    int16_t inv[512];
    if (t->kind == KIND_BPE) {
        uint32_t cps[256];
        byte_to_cp_table(cps);
        memset(inv, 0xff, sizeof inv);
        for (int i = 0; i < 256; i++) inv[cps[i]] = (int16_t)i;
    }
    int strip = t->kind == KIND_SPM && t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) {
            free(b.p);
            return cterp_error(CTERP_EINVAL, "detokenize: token id %d out of range [0, %d)", id,
                               t->n_vocab);
        }
        const char *s = t->arena + t->off[id];
        size_t sl = t->len[id];
        int ty = t->types[id];
        if (ty == TT_CONTROL || ty == TT_UNUSED) {
            if (keep_special) buf_put(&b, s, sl);
            continue;
        }
        if (ty == TT_UNKNOWN) {
            buf_put(&b, "\xe2\x96\x85", 3); // as llama.cpp
            strip = 0;
            continue;
        }
        if (ty == TT_USER) {
            buf_put(&b, s, sl);
            strip = 0;
            continue;
        }
        size_t start = b.n;
        if (t->kind == KIND_SPM) {
            if (ty == TT_BYTE && sl == 6 && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
                char c = (char)(hexval(s[3]) * 16 + hexval(s[4]));
                buf_put(&b, &c, 1);
            } else {
                for (size_t k = 0; k < sl;) {
                    if (k + 3 <= sl && !memcmp(s + k, "\xe2\x96\x81", 3)) {
                        buf_put(&b, " ", 1);
                        k += 3;
                    } else
                        buf_put(&b, s + k++, 1);
                }
            }
            if (strip && b.n > start && b.p[start] == ' ') {
                memmove(b.p + start, b.p + start + 1, b.n - start - 1);
                b.p[--b.n] = 0;
            }
        } else {
            for (size_t k = 0; k < sl;) { // decode UTF-8 code points < 512 back to bytes
                uint8_t c0 = (uint8_t)s[k];
                uint32_t cp = c0;
                size_t m = 1;
                if (c0 >= 0xC0 && c0 < 0xE0 && k + 1 < sl)
                    cp = ((c0 & 31u) << 6) | ((uint8_t)s[k + 1] & 63u), m = 2;
                if (cp < 512 && inv[cp] >= 0) {
                    char c = (char)inv[cp];
                    buf_put(&b, &c, 1);
                } else
                    buf_put(&b, s + k, m); // not a byte symbol: copy as is
                k += m;
            }
        }
        strip = 0;
    }
    if (b.oom) {
        free(b.p);
        return cterp_error(CTERP_ENOMEM, "detokenize: out of memory");
    }
    *text = b.p;
    *len = b.n;
    return CTERP_OK;
}
