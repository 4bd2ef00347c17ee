// The variants this build carries, and the choice of one at start-up (kern.h, cterp/isa.h).
#include "kern/kern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/platform.h"
#include "cterp/isa.h"

#define FAMILIES(isa) extern const kern_vec kern_vec_##isa; extern const kern_topk kern_topk_##isa; \
    extern const kern_quant kern_quant_##isa;
FAMILIES(generic)
#if defined(__x86_64__)
FAMILIES(avx2)
FAMILIES(avx512)
extern const kern_bf16 kern_bf16_avx512bf16;
extern const kern_quant kern_quant_avx512bf16;
#elif defined(__aarch64__)
FAMILIES(neon)
#endif

uint32_t kern_feature_mask = UINT32_MAX;
static int has(uint32_t need) { return (platform_cpu_features() & kern_feature_mask & need) == need; }
static int runs_generic(void) { return 1; }
#if defined(__x86_64__)
static int runs_avx2(void) { return has(CPU_X86_64_V3); }
static int runs_avx512(void) { return has(CPU_X86_64_V4); }
static int runs_avx512bf16(void) { return has(CPU_X86_64_V4 | CPU_AVX512BF16 | CPU_AVX512VNNI); }
#elif defined(__aarch64__)
static int runs_neon(void) { return has(CPU_DOTPROD | CPU_FP16); }
#endif

// Best first. A row: name, what it needs, the test, and its families (a variant may share
// another's family where it adds nothing to it, as avx512bf16 shares avx512's vector code).
static const kern_variant VARIANTS[] = {
#if defined(__x86_64__)
    {"avx512bf16", "AVX-512 F/BW/VL/DQ + BF16 + VNNI", runs_avx512bf16, &kern_vec_avx512,
     &kern_topk_avx512, &kern_quant_avx512bf16, &kern_bf16_avx512bf16},
    {"avx512", "AVX-512 F/BW/VL/DQ (x86-64-v4)", runs_avx512, &kern_vec_avx512, &kern_topk_avx512,
     &kern_quant_avx512, NULL},
    {"avx2", "AVX2 + FMA + F16C (x86-64-v3)", runs_avx2, &kern_vec_avx2, &kern_topk_avx2,
     &kern_quant_avx2, NULL},
    {"generic", "portable C for x86-64-v2 (SSE4.2)", runs_generic, &kern_vec_generic,
     &kern_topk_generic, &kern_quant_generic, NULL},
#elif defined(__aarch64__)
    {"neon", "NEON + dot product + fp16 (Armv8.2-A)", runs_neon, &kern_vec_neon, &kern_topk_neon,
     &kern_quant_neon, NULL},
    {"generic", "portable C for Armv8-A (NEON)", runs_generic, &kern_vec_generic,
     &kern_topk_generic, &kern_quant_generic, NULL},
#else
    {"generic", "portable C", runs_generic, &kern_vec_generic, &kern_topk_generic,
     &kern_quant_generic, NULL},
#endif
};
enum { N_VARIANTS = sizeof VARIANTS / sizeof VARIANTS[0] };

const kern_variant *kern = &VARIANTS[N_VARIANTS - 1];

const kern_variant *kern_variants(int *n) {
    *n = N_VARIANTS;
    return VARIANTS;
}

static const kern_variant *best(void) {
    for (int i = 0; i < N_VARIANTS; i++)
        if (VARIANTS[i].runs_here()) return &VARIANTS[i];
    return &VARIANTS[N_VARIANTS - 1];
}

cterp_status cterp_isa_set(const char *name) {
    if (!name || !*name || !strcmp(name, "auto")) {
        kern = best();
        return CTERP_OK;
    }
    char list[160] = "";
    for (int i = 0; i < N_VARIANTS; i++) {
        const kern_variant *v = &VARIANTS[i];
        if (!strcmp(name, v->name)) {
            if (!v->runs_here())
                return cterp_error(CTERP_EINVAL,
                                   "CTERP_ISA=%s: this CPU (%s) cannot run it (it needs %s); it runs "
                                   "%s, the best it has (or unset CTERP_ISA)",
                                   name, platform_cpu_name(), v->what, best()->name);
            kern = v;
            return CTERP_OK;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", v->name);
    }
    return cterp_error(CTERP_EINVAL, "CTERP_ISA=%s: unknown kernel variant; this build has auto, %s", name, list);
}

cterp_status cterp_isa_init(void) {
    const char *want = getenv("CTERP_ISA");
    cterp_status s = cterp_isa_set(want);
    if (s) kern = best();
    return s;
}

// When the library loads: the best variant, or CTERP_ISA's where it names one this CPU runs.
// A bad value is left to cterp_isa_init, which programs call to report it (a library that
// printed here would print before every exec of the CLI).
__attribute__((constructor)) static void kern_start(void) {
    if (cterp_isa_init()) cterp_clear_error();
}

const char *cterp_isa_name(void) { return kern->name; }
const char *cterp_isa_description(void) { return kern->what; }
const char *cterp_cpu_name(void) { return platform_cpu_name(); }

const char *cterp_isa_variant(int i, int *runs_here) {
    if (i < 0 || i >= N_VARIANTS) return NULL;
    if (runs_here) *runs_here = VARIANTS[i].runs_here();
    return VARIANTS[i].name;
}
