// The pre-tokenizer table and the regex split (pretok.h).
//
// The regexes are llama.cpp's own text. llama.cpp runs them in three ways: hand-written splitters
// for the gpt-2, llama3, qwen2, qwen35 and newline patterns (equivalent to the regex), std::regex
// on a "collapsed" text where every non-ASCII code point is replaced by one byte per category
// (when the regex uses \p{..}), and std::wregex on the code points otherwise. PCRE2 with UTF+UCP
// gives the same words once the regex is translated at compile time (pretok_compile):
//   - \s is llama.cpp's whitespace (\t-\r, space, U+0085, U+00A0, U+1680, U+2000-U+200A,
//     U+2028, U+2029, U+202F, U+205F, U+3000; PCRE2 would add U+180E); \S is the rest;
//   - \d is [0-9] (std::regex's \d is ASCII);
//   - \p{Lu}, \p{Ll}, \p{Lt}, \p{Lm}, \p{Lo} are \p{L} (the collapsed text keeps one letter class:
//     "[\p{Lu}...]*[\p{Ll}...]+" matches any run of letters, ASCII case included);
//   - in a regex without \p{..}, non-ASCII whitespace never matches a (non-negated) class of
//     literal characters: std::wregex sees it as \v (deepseek's [一-龥ࠀ-一가-퟿] spans
//     U+3000);
//   - $ is the end of the piece (PCRE2_DOLLAR_ENDONLY).
// Three llama.cpp patterns are triggers for hand-written splitters that differ from their text
// (kimi-k2's "\p{Han}+", afmoe's "\p{AFMoE_digits}", tiny_aya's digit groups); the table holds
// a regex that does what that splitter does.
// Unicode data: PCRE2's (10.42: Unicode 14); llama.cpp's tables are Unicode 15.1, so code points
// assigned in 15.0/15.1 count as unassigned here.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretok.h"

#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// ---- llama.cpp's regex lists --------------------------------------------------------------

#define CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_RE                                                                                  \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"      \
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE                                                                                   \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"           \
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define DEEPSEEK3_TAIL                                                                             \
    "[!\"#$%&'()*+,\\-./"                                                                          \
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
#define CASED_WORDS(lower, upper, suffix)                                                          \
    "[^\\r\\n\\p{L}\\p{N}]?" upper "*" lower "+" suffix "|[^\\r\\n\\p{L}\\p{N}]?" upper "+" lower  \
    "*" suffix
#define TEKKEN_UP "((?=[\\p{L}])([^a-z]))"
#define TEKKEN_LO "((?=[\\p{L}])([^A-Z]))"
#define GRANITE_UP "((?=[\\p{L}\\p{M}])([^a-z]))"
#define GRANITE_LO "((?=[\\p{L}\\p{M}])([^A-Z]))"
#define CASE_UP "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define CASE_LO "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
#define WORD_TAIL "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
// afmoe's and tiny_aya's digit splitter: each digit run in groups of three from the right, the
// text before a run joined to its first group (as unicode_regex_split_custom_afmoe does)
#define AFMOE_DIGITS "\\P{N}*\\p{N}{1,3}(?=(?:\\p{N}{3})*(?!\\p{N}))"
// unicode_cpt_is_han's ranges
#define HAN                                                                                        \
    "[\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}\\x{2A700}-\\x{2EBEF}"            \
    "\\x{F900}-\\x{FAFF}\\x{2F800}-\\x{2FA1F}]"

static const char *const RE_DEFAULT[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+",
                                         "[0-9][0-9][0-9]", NULL};
static const char *const RE_GPT2[] = {GPT2_RE, NULL};
static const char *const RE_LLAMA3[] = {LLAMA3_RE, NULL};
static const char *const RE_JAIS2[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                 "\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|"
                 "\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
    NULL};
static const char *const RE_DEEPSEEK_LLM[] = {
    "[\r\n]",
    // U+1F7D, U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A as escapes: an editor normalizing to NFC
    // would silently change them
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-"
    "ᲺᲽ-"
    "Ჿᴀ-"
    "ᴫᵫ-ᵷᵹ-ᶚḀ-"
    "ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1F7Dᾀ-ᾴᾶ-ᾼ\u1FBEῂ-ῄῆ-ῌῐ-\u1FD3ῖ-\u1FDBῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212A-ℭℯ-"
    "ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤ"
    "Ⳬ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-"
    "𐲲𐳀-"
    "𐳲𑢠-"
    "𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+", NULL};
static const char *const RE_DEEPSEEK3[] = {
    "\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
    DEEPSEEK3_TAIL " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+", NULL};
static const char *const RE_SPARK2_5[] = {
    "\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
    DEEPSEEK3_TAIL " ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+", "\\p{N}", NULL};
static const char *const RE_YOUTU[] = {
    "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-"
    "ゟ゠-"
    "ヿ]"
    "+",
    CASED_WORDS(CASE_LO, CASE_UP, CONTRACTIONS "?") "|\\p{N}" WORD_TAIL, NULL};
static const char *const RE_DEEPSEEK_CODER[] = {
    "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}", NULL};
static const char *const RE_FALCON[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RE, "[0-9][0-9][0-9]",
                                        NULL};
static const char *const RE_STARCODER[] = {"\\p{N}", GPT2_RE, NULL};
static const char *const RE_QWEN2[] = {QWEN2_RE, NULL};
static const char *const RE_QWEN35[] = {
    CONTRACTIONS
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_PORO[] = {" ?[^(\\s|.,!?…。，、।۔،)]+", NULL};
static const char *const RE_VIKING[] = {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}", NULL};
static const char *const RE_TEKKEN[] = {CASED_WORDS(TEKKEN_LO, TEKKEN_UP, "") "|\\p{N}" WORD_TAIL,
                                        NULL};
static const char *const RE_CHAMELEON[] = {"<sentinel:[0-9]+>",
                                           "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                                           "([\\t\\n]|    |  )",
                                           "\\p{N}",
                                           "[\\p{P}!-/:-@\\[-`{-~]",
                                           GPT2_RE,
                                           NULL};
static const char *const RE_GPT4O[] = {
    CASED_WORDS(TEKKEN_LO, TEKKEN_UP, CONTRACTIONS "?") "|\\p{N}{1,3}" WORD_TAIL, NULL};
static const char *const RE_GRANITE_EMB_MULTI[] = {
    CASED_WORDS(GRANITE_LO, GRANITE_UP, CONTRACTIONS "?") "|\\p{N}{1,3}" WORD_TAIL, NULL};
static const char *const RE_TINY_AYA[] = {
    AFMOE_DIGITS, // llama.cpp: "\\d{1,3}(?=(?:\\d{3})*\\b)", run by the afmoe splitter
    CASED_WORDS(CASE_LO, CASE_UP, CONTRACTIONS "?") "|\\p{N}{1,3}" WORD_TAIL, NULL};
static const char *const RE_KIMI_K2[] = {
    // llama.cpp: "\\p{Han}+", the trigger of unicode_regex_split_custom_kimi_k2, which splits as
    // this: Han runs, then words of non-Han letters (no marks) with a contraction suffix
    HAN "+|[^\\r\\n\\p{L}\\p{N}]?(?:(?!" HAN
        ")\\p{L})+(?:'(?:[sSdDmMtT]|[rR][eE]|[vV][eE]|[lL][lL]))?|"
        "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_SUPERBPE[] = {"\\p{N}+", "(?=(\\d{3})+(?!\\d))", NULL};
static const char *const RE_BAILINGMOE[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_SEED_CODER[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|"
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_UFAKZEKA[] = {
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_AFMOE[] = {
    AFMOE_DIGITS, // llama.cpp: "\\p{AFMoE_digits}", the trigger of its afmoe splitter
    "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-"
    "힯ᄀ-"
    "ᇿ]"
    "+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_LAGUNA[] = {"[^\\n]+|[\\n]+", QWEN2_RE, NULL};
static const char *const RE_EXAONE_MOE[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}|"
                 " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_NEWLINES[] = {"[^\\n]+|[\\n]+", NULL};
static const char *const RE_MINICPM5[] = {
    "\\p{N}{1,3}",
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RE_WHITESPACE[] = {"\\S+", NULL};

enum {
    IGN = PRETOK_IGNORE_MERGES,
    BOS = PRETOK_ADD_BOS,
    NCS = PRETOK_NO_CLEAN_SPACES,
};

// llama_vocab::impl::load's if-chain over tokenizer.ggml.pre, in its order.
const pretok_type pretok_types[] = {
    {"default", "default", RE_DEFAULT, 0},
    {"minicpm5", "minicpm5", RE_MINICPM5, IGN},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", "llama3",
     RE_LLAMA3, IGN | BOS},
    {"deepseek-llm", "deepseek_llm", RE_DEEPSEEK_LLM, NCS},
    {"deepseek-coder", "deepseek_coder", RE_DEEPSEEK_CODER, NCS},
    {"deepseek-v3", "deepseek3_llm", RE_DEEPSEEK3, NCS},
    {"spark2_5", "spark2_5", RE_SPARK2_5, NCS},
    {"youtu", "youtu", RE_YOUTU, NCS | IGN},
    {"falcon", "falcon", RE_FALCON, 0},
    {"mpt", "mpt", RE_GPT2, 0},
    {"starcoder", "starcoder", RE_STARCODER, 0},
    {"gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert",
     "gpt2", RE_GPT2, 0},
    {"jais-2", "jais2", RE_JAIS2, 0},
    {"gemma4 granite-embed-multi-311m", "gemma4", RE_NEWLINES,
     PRETOK_RAW | PRETOK_ESCAPE_SPACES | PRETOK_FORCE_BOS | PRETOK_NEWLINE_TOKEN},
    {"sarvam-moe", "sarvam_moe", RE_NEWLINES, PRETOK_RAW | PRETOK_ESCAPE_SPACES | NCS},
    {"jina-v1-en jina-v2-code roberta-bpe", "gpt2", RE_GPT2, PRETOK_ADD_SEP},
    {"whitespace", "whitespace", RE_WHITESPACE, PRETOK_RAW | PRETOK_NO_LOWERCASE},
    {"refact", "refact", RE_STARCODER, 0},
    {"command-r", "command_r", RE_STARCODER, NCS},
    {"qwen2 deepseek-r1-qwen kormo f2llmv2", "qwen2", RE_QWEN2, NCS},
    {"qwen35", "qwen35", RE_QWEN35, NCS},
    {"stablelm2", "stablelm2", RE_QWEN2, 0},
    {"olmo", "olmo", RE_GPT2, 0},
    {"dbrx", "dbrx", RE_LLAMA3, 0},
    {"smaug-bpe", "smaug", RE_LLAMA3, 0},
    {"poro-chat", "poro", RE_PORO, NCS},
    {"glm4 chatglm-bpe", "chatglm4", RE_LLAMA3, PRETOK_NO_BOS_ID},
    {"viking", "viking", RE_VIKING, NCS},
    {"jais", "jais", RE_GPT2, 0},
    {"tekken", "tekken", RE_TEKKEN, NCS | IGN | BOS},
    {"smollm", "smollm", RE_STARCODER, NCS},
    {"codeshell", "codeshell", RE_STARCODER, 0},
    {"bloom", "bloom", RE_PORO, 0},
    {"gpt3-finnish", "gpt3_finnish", RE_PORO, 0},
    {"exaone", "exaone", RE_STARCODER, 0},
    {"exaone4", "gpt2", RE_GPT2, 0},
    {"exaone-moe", "exaone_moe", RE_EXAONE_MOE, 0},
    {"chameleon", "chameleon", RE_CHAMELEON, BOS | NCS},
    {"minerva-7b", "minerva", RE_STARCODER, 0},
    {"megrez", "qwen2", RE_QWEN2, 0},
    {"gpt-4o llama4 kanana2 talkie", "gpt4o", RE_GPT4O, NCS},
    {"granite-embed-multi-97m", "granite_emb_multi", RE_GRANITE_EMB_MULTI, NCS | IGN},
    {"tiny_aya cohere2moe", "tiny_aya", RE_TINY_AYA, NCS},
    {"superbpe", "superbpe", RE_SUPERBPE, NCS},
    {"trillion", "trillion", RE_GPT2, NCS},
    {"granite-docling", "granite_docling", RE_GPT2, NCS},
    {"bailingmoe bailingmoe2 llada-moe", "bailingmoe", RE_BAILINGMOE, NCS},
    {"seed-coder", "seed_coder", RE_SEED_CODER, NCS},
    {"hunyuan", "hunyuan", RE_QWEN2, NCS},
    {"hunyuan-dense", "hunyuan_dense", RE_DEEPSEEK3, NCS},
    {"hy_v4", "hy_v4", RE_DEEPSEEK3, NCS},
    {"joyai-llm", "joyai_llm", RE_DEEPSEEK3, NCS},
    {"kimi-k2", "kimi_k2", RE_KIMI_K2, NCS | PRETOK_MERGES_OPTIONAL},
    {"ufakzeka", "ufakzeka", RE_UFAKZEKA, NCS},
    {"grok-2", "grok_2", RE_QWEN2, NCS},
    {"afmoe", "afmoe", RE_AFMOE, NCS},
    {"laguna", "laguna", RE_LAGUNA, NCS},
    {"minimax-m2", "minimax_m2", RE_GPT4O, NCS},
    {"solar-open", "solar_open", RE_QWEN2, NCS},
    {"mellum2", "mellum2", RE_STARCODER, 0},
};
const int pretok_n_types = (int)(sizeof pretok_types / sizeof pretok_types[0]);

const pretok_type *pretok_find(const char *name, size_t len) {
    if (!len) return NULL;
    for (int i = 0; i < pretok_n_types; i++) {
        for (const char *p = pretok_types[i].names; *p;) {
            size_t n = strcspn(p, " ");
            if (n == len && !memcmp(p, name, len)) return &pretok_types[i];
            p += n;
            while (*p == ' ') p++;
        }
    }
    return NULL;
}

// ---- translation to PCRE2 -----------------------------------------------------------------

#define WS                                                                                         \
    "\\t-\\r "                                                                                     \
    "\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define NON_ASCII_WS                                                                               \
    "[\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]"

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_insert(sbuf *b, size_t at, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memmove(b->p + at + n, b->p + at, b->n - at);
    memcpy(b->p + at, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

static int sb_put(sbuf *b, const char *s) {
    return sb_insert(b, b->n, s, strlen(s));
}

// The rules in the comment at the top. Returns 0 on allocation failure or an unsupported form
// (\S or \D inside a class).
static int translate(const char *re, sbuf *out) {
    int wide = strstr(re, "\\p{") == NULL && strstr(re, "\\P{") == NULL;
    int in_class = 0, negated = 0, has_non_ascii = 0, has_space = 0;
    size_t class_at = 0;
    out->n = 0;
    if (!sb_put(out, "")) return 0;
    for (size_t i = 0; re[i];) {
        char c = re[i];
        if (c == '\\' && re[i + 1]) {
            char e = re[i + 1];
            const char *rep = NULL;
            if (e == 's') {
                rep = in_class ? WS : "[" WS "]";
                has_space = 1;
            } else if (e == 'S') {
                if (in_class) return 0;
                rep = "[^" WS "]";
            } else if (e == 'd') {
                rep = in_class ? "0-9" : "[0-9]";
            } else if (e == 'D') {
                if (in_class) return 0;
                rep = "[^0-9]";
            } else if ((e == 'p' || e == 'P') && re[i + 2] == '{' && re[i + 3] == 'L' &&
                       re[i + 4] && strchr("ultmo", re[i + 4]) && re[i + 5] == '}') {
                rep = e == 'p' ? "\\p{L}" : "\\P{L}";
                i += 4; // the subcategory's extra characters
            }
            if (rep) {
                if (!sb_put(out, rep)) return 0;
            } else if (!sb_insert(out, out->n, re + i, 2)) {
                return 0;
            }
            i += 2;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            negated = re[i + 1] == '^';
            has_non_ascii = has_space = 0;
            class_at = out->n;
            if (!sb_insert(out, out->n, re + i, negated ? 2 : 1)) return 0;
            i += negated ? 2 : 1;
            continue;
        }
        if (c == ']' && in_class) {
            in_class = 0;
            if (!sb_put(out, "]")) return 0;
            if (wide && !negated && has_non_ascii && !has_space) {
                if (!sb_insert(out, class_at, "(?:(?!" NON_ASCII_WS ")",
                               6 + strlen(NON_ASCII_WS) + 1) ||
                    !sb_put(out, ")"))
                    return 0;
            }
            i++;
            continue;
        }
        if (in_class && (unsigned char)c >= 0x80) has_non_ascii = 1;
        if (!sb_insert(out, out->n, re + i, 1)) return 0;
        i++;
    }
    return 1;
}

// ---- compiled pre-tokenizer and the split -------------------------------------------------

struct pretok {
    int n;
    pcre2_code *re[8];
};

void pretok_free(pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->re[i]);
    free(p);
}

cterp_status pretok_compile(pretok **out, const pretok_type *ty) {
    *out = NULL;
    pretok *p = calloc(1, sizeof *p);
    if (!p) return cterp_error(CTERP_ENOMEM, "pre-tokenizer %s: out of memory", ty->type);
    sbuf b = {0};
    cterp_status s = CTERP_OK;
    for (int i = 0; ty->re[i]; i++) {
        if (i == (int)(sizeof p->re / sizeof p->re[0])) {
            s = cterp_error(CTERP_EINVAL, "pre-tokenizer %s: more than 8 regexes", ty->type);
            break;
        }
        if (!translate(ty->re[i], &b)) {
            s = cterp_error(CTERP_EINVAL, "pre-tokenizer %s: regex %d: cannot translate", ty->type,
                            i);
            break;
        }
        int err;
        PCRE2_SIZE eoff;
        p->re[i] = pcre2_compile((PCRE2_SPTR)b.p, b.n, PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY,
                                 &err, &eoff, NULL);
        if (!p->re[i]) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(err, msg, sizeof msg);
            s = cterp_error(CTERP_EINVAL, "pre-tokenizer %s: regex %d: %s at offset %zu", ty->type,
                            i, (const char *)msg, (size_t)eoff);
            break;
        }
        p->n = i + 1;
        // JIT when the platform has it; the interpreter otherwise (and pretok_split falls back
        // to it when the JIT stack runs out)
        pcre2_jit_compile(p->re[i], PCRE2_JIT_COMPLETE);
    }
    free(b.p);
    if (s) {
        pretok_free(p);
        return s;
    }
    *out = p;
    return CTERP_OK;
}

void *pretok_scratch_new(void) {
    return pcre2_match_data_create(1, NULL);
}

void pretok_scratch_free(void *s) {
    if (s) pcre2_match_data_free(s);
}

static size_t utf8_step(const char *s, size_t i, size_t n) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t k = lut[(uint8_t)s[i] >> 4];
    return k < n - i ? k : n - i;
}

// One match from `off`: 1 and [*a, *b) on a match, 0 on none. A matcher error (JIT stack,
// match or heap limit on a pathological piece) ends the matches: the rest becomes a gap.
static int match(pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t off,
                 uint32_t opts, size_t *a, size_t *b) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, opts | PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, off, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                         NULL);
    if (rc < 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *a = ov[0];
    *b = ov[1];
    return 1;
}

static int split(const pretok *p, int lvl, pcre2_match_data *md, const char *s, size_t n,
                 pretok_word_fn word, void *ctx) {
    if (!n) return 1;
    if (lvl == p->n) return word(ctx, s, n);
    // as std::regex_iterator over the piece: matches and the gaps between them are words; after
    // an empty match, a non-empty one at the same place, else the search moves one character on
    size_t gap = 0, off = 0, a, b;
    uint32_t opts = 0;
    while (off <= n) {
        if (!match(p->re[lvl], md, s, n, off, opts, &a, &b)) {
            if (!opts) break;
            if (off >= n) break;
            off += utf8_step(s, off, n);
            opts = 0;
            continue;
        }
        if (a > gap && !split(p, lvl + 1, md, s + gap, a - gap, word, ctx)) return 0;
        if (b > a && !split(p, lvl + 1, md, s + a, b - a, word, ctx)) return 0;
        gap = b;
        off = b;
        opts = b == a ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    }
    return gap < n ? split(p, lvl + 1, md, s + gap, n - gap, word, ctx) : 1;
}

int pretok_split(const pretok *p, void *scratch, const char *text, size_t len, pretok_word_fn word,
                 void *ctx) {
    return split(p, 0, scratch, text, len, word, ctx);
}
