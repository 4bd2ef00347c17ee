// SentencePiece-BPE, byte-level BPE and WordPiece, following llama.cpp (src/llama-vocab.cpp):
// same merge order (priority queue, leftmost on ties), same pre-tokenizers (pretok.c), same
// special-token splitting, same BOS/EOS rules, so the ids match its test-tokenizer-0 files and
// its ids on synthetic vocabularies of every pre-tokenizer type (tests/test_tokenizer.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer_gguf.h"
#include "tokenizer/ucd.h"

enum { KIND_SPM = 0, KIND_BPE = 1, KIND_WPM = 2 };
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
    int kind;
    const pretok_type *pt; // BPE: the pre-tokenizer type (tokenizer.ggml.pre)
    pretok *pre;           // BPE: its compiled regexes
    unsigned pflags;       // BPE: pt->flags
    int ws_model;          // tokenizer.ggml.model "whitespace": BPE per whitespace-free segment
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
    int32_t bos, eos, unk, sep;
    int add_bos, add_eos, add_space_prefix;
    int lowercase, strip_accents; // WPM normalizer
    uint32_t max_token_len;       // WPM: bytes of the longest token
    int32_t byte_tok[256]; // SPM, raw BPE: <0xXX>; byte-level BPE: the token of the mapped byte
    int32_t *specials;     // ids of control/user/unknown tokens, longest text first
    int32_t n_specials;
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
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 63));
        out[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 63));
    out[2] = (char)(0x80 | ((cp >> 6) & 63));
    out[3] = (char)(0x80 | (cp & 63));
    return 4;
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
    pretok_free(t->pre);
    free(t);
}

// A special token id: the GGUF key when it names a token, else the default (as llama.cpp: a key
// out of range, such as UINT32_MAX for "none", keeps the default; a default out of range is none).
static int32_t opt_id(const gguf_file *g, const char *key, int32_t n_vocab, int32_t def) {
    if (def >= n_vocab) def = -1;
    uint32_t v;
    if (gguf_get_u32(g, key, &v) != CTERP_OK) return def;
    return v < (uint32_t)n_vocab ? (int32_t)v : def;
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

// Token texts llama.cpp treats as control whatever their GGUF type says (end-of-generation,
// end-of-turn and fill-in-the-middle markers: llama_vocab::impl::load's text-based detection),
// and the gpt-oss markers it makes user-defined. Both change how the text is split (parse_special).
static const char *const CONTROL_TEXTS[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\xef\xbd\x9c"
    "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "[e~[",
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<\xef\xbd\x9c"
    "fim\xe2\x96\x81"
    "begin\xef\xbd\x9c>",
    "<PRE>",
    "\xe2\x96\x81<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<\xef\xbd\x9c"
    "fim\xe2\x96\x81hole\xef\xbd\x9c>",
    "<SUF>",
    "\xe2\x96\x81<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<\xef\xbd\x9c"
    "fim\xe2\x96\x81"
    "end\xef\xbd\x9c>",
    "<MID>",
    "\xe2\x96\x81<MID>",
    "<|code_middle|>",
    "<|middle|>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
};
static const char *const USER_TEXTS[] = {"<|channel|>", "<|message|>", "<|start|>",
                                         "<|constrain|>"};

static void fix_token_types(cterp_tokenizer *t) {
    for (size_t i = 0; i < sizeof CONTROL_TEXTS / sizeof *CONTROL_TEXTS; i++) {
        int32_t id = strmap_get(&t->tokens, CONTROL_TEXTS[i], strlen(CONTROL_TEXTS[i]));
        if (id >= 0 && t->types[id] != TT_UNUSED) t->types[id] = TT_CONTROL;
    }
    for (size_t i = 0; i < sizeof USER_TEXTS / sizeof *USER_TEXTS; i++) {
        int32_t id = strmap_get(&t->tokens, USER_TEXTS[i], strlen(USER_TEXTS[i]));
        if (id >= 0) t->types[id] = TT_USER;
    }
#define HAS(s) (strmap_get(&t->tokens, s, strlen(s)) >= 0)
    // o200k_harmony and solar-open: "<|end|>" is not an end of generation there
    int32_t end = strmap_get(&t->tokens, "<|end|>", 7);
    int call = HAS("<|call|>") || HAS("<|calls|>");
    if (end >= 0 && call && (HAS("<|return|>") || HAS("<|flush|>"))) t->types[end] = TT_USER;
    // gemma4 and paddleocr: "</s>" is an ordinary token there
    int32_t eos_s = strmap_get(&t->tokens, "</s>", 4);
    if (eos_s >= 0 && HAS("<|tool_response>")) t->types[eos_s] = TT_NORMAL;
#undef HAS
}

// The vocabulary kind and, for BPE, the pre-tokenizer type, as llama_vocab::impl::load picks
// them. An unknown tokenizer.ggml.pre is an error there too; a missing one means "default".
static cterp_status pick_kind(cterp_tokenizer *t, const gguf_file *g) {
    gguf_str model, pre;
    cterp_status s;
    if ((s = gguf_get_str(g, "tokenizer.ggml.model", &model))) return s;
    char name[64];
    gguf_str_copy(model, name, sizeof name);
    if (!strcmp(name, "llama")) {
        t->kind = KIND_SPM;
        return CTERP_OK;
    }
    if (!strcmp(name, "bert")) {
        t->kind = KIND_WPM;
        return CTERP_OK;
    }
    if (strcmp(name, "gpt2") && strcmp(name, "gemma4") && strcmp(name, "whitespace"))
        return cterp_error(CTERP_EFORMAT,
                           "%s: tokenizer.ggml.model: expected \"llama\", \"gpt2\", \"bert\", "
                           "\"gemma4\" or \"whitespace\", found \"%s\"",
                           g->path, name);
    t->kind = KIND_BPE;
    t->ws_model = !strcmp(name, "whitespace");
    if (!strcmp(name, "gemma4")) {
        t->pt = pretok_find("gemma4", 6);
    } else if (gguf_get_str(g, "tokenizer.ggml.pre", &pre) != CTERP_OK || pre.len == 0) {
        t->pt = pretok_find("default", 7); // llama.cpp warns: "missing pre-tokenizer type"
    } else {
        t->pt = pretok_find(pre.s, pre.len);
        if (!t->pt) {
            char pn[96];
            gguf_str_copy(pre, pn, sizeof pn);
            return cterp_error(
                CTERP_EFORMAT,
                "%s: tokenizer.ggml.pre: unknown pre-tokenizer type \"%s\" (llama.cpp "
                "refuses it too; docs/model.md lists the known ones)",
                g->path, pn);
        }
    }
    t->pflags = t->pt->flags;
    return pretok_compile(&t->pre, t->pt);
}

cterp_status tokenizer_from_gguf(cterp_tokenizer **out, const gguf_file *g) {
    *out = NULL;
    cterp_status s;
    cterp_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return cterp_error(CTERP_ENOMEM, "%s: out of memory", g->path);
    if ((s = pick_kind(t, g))) goto fail;
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
        if (t->len[i] > t->max_token_len) t->max_token_len = t->len[i];
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
    fix_token_types(t);

    if (t->kind == KIND_BPE) {
        if (gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &kv) != CTERP_OK) {
            if (!(t->pflags & PRETOK_MERGES_OPTIONAL) || gguf_has_key(g, "tokenizer.ggml.merges")) {
                s = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &kv);
                goto fail;
            }
            kv = NULL;
        }
        if (kv && kv->n > (1u << 30)) {
            s = cterp_error(CTERP_EFORMAT, "%s: tokenizer.ggml.merges: too many (%llu)", g->path,
                            (unsigned long long)kv->n);
            goto fail;
        }
        t->n_merges = kv ? (int32_t)kv->n : 0;
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
    }

    // llama.cpp's defaults per kind, then the GGUF keys
    int gemma4 = t->kind == KIND_BPE && (t->pflags & PRETOK_FORCE_BOS);
    int32_t def_bos = t->kind == KIND_SPM ? 1 : t->kind == KIND_WPM ? 101 : 11;
    int32_t def_eos = t->kind == KIND_SPM ? 2 : t->kind == KIND_WPM ? -1 : 11;
    if (t->kind == KIND_BPE && (gemma4 || (t->pflags & PRETOK_NO_BOS_ID))) def_bos = -1;
    if (gemma4) {
        char name[16];
        gguf_str model;
        gguf_get_str(g, "tokenizer.ggml.model", &model);
        if (!strcmp(gguf_str_copy(model, name, sizeof name), "gemma4")) def_eos = -1;
    }
    t->bos = opt_id(g, "tokenizer.ggml.bos_token_id", n, def_bos);
    t->eos = opt_id(g, "tokenizer.ggml.eos_token_id", n, def_eos);
    t->unk = opt_id(g, "tokenizer.ggml.unknown_token_id", n,
                    t->kind == KIND_SPM   ? 0
                    : t->kind == KIND_WPM ? 100
                                          : -1);
    t->sep = opt_id(g, "tokenizer.ggml.seperator_token_id", n, t->kind == KIND_WPM ? 102 : -1);
    t->add_bos = opt_bool(g, "tokenizer.ggml.add_bos_token",
                          t->kind != KIND_BPE || (t->pflags & PRETOK_ADD_BOS));
    if (t->pflags & PRETOK_FORCE_BOS) t->add_bos = 1; // llama.cpp's Gemma 4 workaround
    t->add_eos = opt_bool(g, "tokenizer.ggml.add_eos_token", 0);
    t->add_space_prefix = opt_bool(g, "tokenizer.ggml.add_space_prefix", t->kind == KIND_SPM);
    t->lowercase =
        opt_bool(g, "tokenizer.ggml.normalizer.lowercase", !(t->pflags & PRETOK_NO_LOWERCASE));
    t->strip_accents = opt_bool(g, "tokenizer.ggml.normalizer.strip_accents", t->lowercase);

    uint32_t cps[256];
    byte_to_cp_table(cps);
    for (int b = 0; b < 256; b++) {
        char tmp[8];
        size_t k;
        if (t->kind == KIND_SPM || (t->pflags & PRETOK_RAW)) {
            static const char *hex = "0123456789ABCDEF";
            k = (size_t)snprintf(tmp, sizeof tmp, "<0x%c%c>", hex[b >> 4], hex[b & 15]);
            t->byte_tok[b] = strmap_get(&t->tokens, tmp, k);
            if (t->byte_tok[b] < 0 && t->kind == KIND_SPM) { // the raw byte as a one-byte token
                tmp[0] = (char)b;
                t->byte_tok[b] = strmap_get(&t->tokens, tmp, 1);
            }
        } else if (t->kind == KIND_BPE) {
            k = utf8_put(cps[b], tmp);
            t->byte_tok[b] = strmap_get(&t->tokens, tmp, k);
        } else {
            t->byte_tok[b] = -1;
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
    return t->kind == KIND_SPM ? "llama" : t->kind == KIND_WPM ? "bert" : "gpt2";
}
const char *cterp_tokenizer_pre(const cterp_tokenizer *t) {
    return t->pt ? t->pt->type : "";
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

// ---- BPE ----------------------------------------------------------------------------------

typedef struct {
    const cterp_tokenizer *t;
    ids_vec *out;
    syms_t *s;
    heap_t *h;
    buf_t w, tmp; // the mapped word; "left right" merge keys
    uint32_t cps[256];
} bpe_ctx;

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

// One pre-tokenized word (raw bytes): map bytes to GPT-2 unicode (unless the type keeps UTF-8),
// merge by rank, look up. A pretok_word_fn.
static int bpe_word(void *ctx, const char *word, size_t len) {
    bpe_ctx *c = ctx;
    const cterp_tokenizer *t = c->t;
    buf_t *w = &c->w;
    w->n = 0;
    if (t->pflags & PRETOK_RAW) {
        buf_put(w, word, len);
    } else {
        for (size_t i = 0; i < len; i++) {
            char u[4];
            buf_put(w, u, utf8_put(c->cps[(uint8_t)word[i]], u));
        }
    }
    if (w->oom) return 0;
    int whole = (t->pflags & PRETOK_IGNORE_MERGES) != 0; // a word that is a token: emitted whole
    if (!whole && (t->pflags & PRETOK_NEWLINE_TOKEN)) {
        whole = 1;
        for (size_t i = 0; i < w->n && whole; i++) whole = w->p[i] == '\n';
    }
    if (whole) {
        int32_t id = strmap_get(&t->tokens, w->p, w->n);
        if (id >= 0) {
            push(c->out, id);
            return 1;
        }
    }
    syms_t *s = c->s;
    heap_t *h = c->h;
    if (!syms_split(s, w->p, w->n)) return 0;
    h->n = 0;
    h->bpe = 1;
    for (size_t i = 1; i < s->n; i++)
        bpe_try_bigram(t, w->p, s, h, (int32_t)i - 1, (int32_t)i, &c->tmp);
    while (h->n && !h->oom) {
        bigram_t bg = heap_pop(h);
        sym_t *a = &s->v[bg.left], *b = &s->v[bg.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != bg.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->v[b->next].prev = bg.left;
        bpe_try_bigram(t, w->p, s, h, a->prev, bg.left, &c->tmp);
        bpe_try_bigram(t, w->p, s, h, bg.left, a->next, &c->tmp);
    }
    if (h->oom || c->tmp.oom) return 0;
    for (int32_t i = 0; i != -1; i = s->v[i].next) {
        const sym_t *y = &s->v[i];
        int32_t id = strmap_get(&t->tokens, w->p + y->off, y->n);
        if (id >= 0) {
            push(c->out, id);
        } else if (t->pflags & PRETOK_RAW) { // <0xXX> for each byte that has one
            for (uint32_t k = 0; k < y->n; k++) {
                int32_t bt = t->byte_tok[(uint8_t)w->p[y->off + k]];
                if (bt >= 0) push(c->out, bt);
            }
        } else { // as llama.cpp: each byte of the symbol that is itself a token
            for (uint32_t k = 0; k < y->n; k++) {
                int32_t bt = strmap_get(&t->tokens, w->p + y->off + k, 1);
                if (bt >= 0) push(c->out, bt);
            }
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

// Pre-tokenizes (pretok_split), then BPE per word. The text is cut into valid UTF-8 runs, which
// PCRE2 matches without re-validating them (it would re-check the whole subject on every call:
// quadratic); each invalid byte is a word of its own, so every byte comes back on decoding
// (llama.cpp turns it into U+FFFD instead).
static int bpe_tokenize(const cterp_tokenizer *t, const char *text, size_t len, ids_vec *out,
                        syms_t *s, heap_t *h, void *scratch, buf_t *esc) {
    bpe_ctx c = {.t = t, .out = out, .s = s, .h = h};
    byte_to_cp_table(c.cps);
    if (t->pflags & PRETOK_ESCAPE_SPACES) { // ' ' -> U+2581 before the split
        esc->n = 0;
        for (size_t k = 0; k < len; k++)
            buf_put(esc, text[k] == ' ' ? "\xe2\x96\x81" : text + k, text[k] == ' ' ? 3 : 1);
        if (esc->oom) return 0;
        text = esc->p;
        len = esc->n;
    }
    int ok = 1;
    size_t run0 = 0;
    while (run0 < len && ok) {
        size_t run1 = run0, k;
        while (run1 < len && (k = utf8_valid_seq((const uint8_t *)text + run1, len - run1)))
            run1 += k;
        if (run1 > run0) ok = pretok_split(t->pre, scratch, text + run0, run1 - run0, bpe_word, &c);
        if (run1 < len && ok) ok = bpe_word(&c, text + run1, 1);
        run0 = run1 + 1;
    }
    free(c.w.p);
    free(c.tmp.p);
    return ok;
}

static uint32_t utf8_decode_lenient(const uint8_t *p, size_t n, size_t *k);

// tokenizer.ggml.model "whitespace" (llm_tokenizer_whitespace_session): whitespace is dropped,
// each run between is lower-cased (normalizer option) and tokenized as BPE.
static int bpe_ws_tokenize(const cterp_tokenizer *t, const char *text, size_t len, ids_vec *out,
                           syms_t *s, heap_t *h, void *scratch, buf_t *esc) {
    buf_t seg = {0};
    int ok = 1;
    for (size_t i = 0; i <= len && ok;) {
        size_t k = 1;
        uint32_t cp = i < len ? utf8_decode_lenient((const uint8_t *)text + i, len - i, &k) : ' ';
        i += k;
        if (ucd_is_space(cp)) {
            if (seg.n) ok = bpe_tokenize(t, seg.p, seg.n, out, s, h, scratch, esc);
            seg.n = 0;
        } else {
            char u[4];
            buf_put(&seg, u, utf8_put(t->lowercase ? ucd_lower(cp) : cp, u));
            ok = !seg.oom;
        }
    }
    free(seg.p);
    return ok;
}

// ---- WordPiece (BERT) -----------------------------------------------------------------------

// llama.cpp's unicode_cpt_from_utf8: lead byte and continuation bytes checked, nothing else;
// an invalid byte is U+FFFD. Returns the code point and sets *k to the bytes it took.
static uint32_t utf8_decode_lenient(const uint8_t *p, size_t n, size_t *k) {
    uint8_t c = p[0];
    size_t m = c < 0x80 ? 1 : c < 0xC0 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 0;
    *k = 1;
    if (m == 1) return c;
    if (!m || m > n) return 0xFFFD;
    for (size_t i = 1; i < m; i++)
        if ((p[i] & 0xC0) != 0x80) return 0xFFFD;
    uint32_t cp = m == 2 ? c & 0x1Fu : m == 3 ? c & 0x0Fu : c & 0x07u;
    for (size_t i = 1; i < m; i++) cp = (cp << 6) | (p[i] & 0x3Fu);
    *k = m;
    return cp;
}

static int wpm_is_chinese(uint32_t cp) { // BertTokenizer's ranges (llama.cpp keeps 0x2B920)
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// One word, "▁" + text: the longest token at each position; a position with none makes the
// whole word [UNK].
static void wpm_word(const cterp_tokenizer *t, const buf_t *w, ids_vec *out) {
    if (w->n <= 3) return; // just the "▁"
    size_t start = out->n, n = w->n;
    for (size_t i = 0; i < n;) {
        size_t j = i + t->max_token_len + 1 < n ? i + t->max_token_len + 1 : n;
        int32_t id = -1;
        for (; j > i; j--)
            if ((id = strmap_get(&t->tokens, w->p + i, j - i)) >= 0) break;
        if (id < 0) {
            out->n = start; // discard the word's tokens
            break;
        }
        push(out, id);
        i = j;
    }
    if (out->n == start && t->unk >= 0) push(out, t->unk);
}

// llama.cpp's llm_tokenizer_wpm_session::preprocess (BertNormalizer with its options: strip
// accents as "first code point of the NFD form, marks dropped", lowercase) and the word split:
// whitespace separates, punctuation, ASCII symbols and CJK ideographs are words of their own,
// control characters, NUL and U+FFFD vanish.
static int wpm_tokenize(const cterp_tokenizer *t, const char *text, size_t len, ids_vec *out,
                        buf_t *w) {
    w->n = 0;
    buf_put(w, "\xe2\x96\x81", 3);
    for (size_t i = 0; i < len;) {
        size_t k;
        uint32_t cp = utf8_decode_lenient((const uint8_t *)text + i, len - i, &k);
        i += k;
        if (t->strip_accents) cp = ucd_nfd_base(cp);
        if (ucd_is_space(cp)) {
            wpm_word(t, w, out);
            w->n = 3;
            continue;
        }
        int cls = ucd_class(cp);
        if (cp == 0 || cp == 0xFFFD || cp >= 0x110000 || cls == UCD_CONTROL) continue;
        if (t->strip_accents && cls == UCD_MARK) continue;
        int alone =
            cls == UCD_PUNCT || (cp < 0x7F && strchr("$+<=>^`|~", (int)cp)) || wpm_is_chinese(cp);
        if (t->lowercase) cp = ucd_lower(cp);
        char u[4];
        size_t m = utf8_put(cp, u);
        if (alone) {
            wpm_word(t, w, out);
            w->n = 3;
            buf_put(w, u, m);
            wpm_word(t, w, out);
            w->n = 3;
        } else {
            buf_put(w, u, m);
        }
    }
    wpm_word(t, w, out);
    return !w->oom;
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
    void *scratch = NULL;
    int ok = 1;
    if (t->kind == KIND_BPE) {
        scratch = pretok_scratch_new();
        if (!scratch) ok = 0;
    }
    // WPM: [CLS] ... [SEP] whenever add_special (llama.cpp reads no add_bos/add_sep there)
    int bos = add_special && (t->kind == KIND_WPM || t->add_bos) ? t->bos : -1;
    int32_t eos = !add_special ? -1 : t->kind == KIND_WPM ? t->sep : t->add_eos ? t->eos : -1;
    if (bos >= 0) push(&out, bos);
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
        } else if (t->kind == KIND_WPM) {
            ok = wpm_tokenize(t, p, fr[i].len, &out, &esc);
        } else {
            ok = t->ws_model ? bpe_ws_tokenize(t, p, fr[i].len, &out, &syms, &heap, scratch, &esc)
                             : bpe_tokenize(t, p, fr[i].len, &out, &syms, &heap, scratch, &esc);
        }
        prev_special = 0;
    }
    if (eos >= 0) push(&out, eos);
    free(syms.v);
    free(heap.v);
    free(esc.p);
    pretok_scratch_free(scratch);
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
    int spm_like = t->kind != KIND_BPE || (t->pflags & PRETOK_RAW); // "▁" spaces, <0xXX> bytes
    int unescape = t->kind != KIND_BPE || (t->pflags & PRETOK_ESCAPE_SPACES);
    if (!spm_like) {
        uint32_t cps[256];
        byte_to_cp_table(cps);
        memset(inv, 0xff, sizeof inv);
        for (int i = 0; i < 256; i++) inv[cps[i]] = (int16_t)i;
    }
    // the space the tokenizer put before the first word (WPM: "▁" starts every word)
    int strip = (t->kind == KIND_SPM && t->add_space_prefix) || t->kind == KIND_WPM;
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
        if (spm_like) {
            if (ty == TT_BYTE && sl == 6 && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
                char c = (char)(hexval(s[3]) * 16 + hexval(s[4]));
                buf_put(&b, &c, 1);
            } else {
                for (size_t k = 0; k < sl;) {
                    if (unescape && k + 3 <= sl && !memcmp(s + k, "\xe2\x96\x81", 3)) {
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
