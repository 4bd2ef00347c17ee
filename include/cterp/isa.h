// The kernel variant (instruction set) cterp runs. One binary carries a variant of its hot
// kernels per ISA level (x86-64: generic = x86-64-v2, avx2 = AVX2+FMA+F16C, avx512 =
// AVX-512 F/BW/VL/DQ, avx512bf16 = that + BF16 + VNNI; aarch64: generic = Armv8-A NEON, neon =
// + dot product and fp16). The best one this CPU runs is chosen when the library loads; the
// environment variable CTERP_ISA=name forces one ("auto": the best). Every variant gives the
// same results: only speed differs (docs/architecture.md, "Kernels and dispatch").
#ifndef CTERP_ISA_H
#define CTERP_ISA_H

#include "cterp/error.h"

#ifdef __cplusplus
extern "C" {
#endif

// Applies CTERP_ISA (unset or "auto": the best variant this CPU runs). An unknown name or a
// variant this CPU cannot run is refused with an error naming what it has, and the automatic
// choice stays. The library does this when it loads too, silently; programs call it to have a
// bad CTERP_ISA reported (the CLI stops on it with exit code 2).
cterp_status cterp_isa_init(void);

// Chooses a variant by name ("auto" for the best). Same errors as above. Not while other
// threads run kernels.
cterp_status cterp_isa_set(const char *name);

// The variant in use ("avx2", ...) and its instruction sets in words.
const char *cterp_isa_name(void);
const char *cterp_isa_description(void);

// The variants this build carries, best first: name of the i-th (NULL past the end), and
// whether this CPU runs it.
const char *cterp_isa_variant(int i, int *runs_here);

// The CPU's name, as the CPU or the OS reports it.
const char *cterp_cpu_name(void);

#ifdef __cplusplus
}
#endif
#endif
