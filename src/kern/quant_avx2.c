// Dequantization and dot products of GGUF rows for AVX2 + FMA + F16C (x86-64-v3): quant.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_avx2).
#define KERN_ISA avx2
#include "kern/quant.inc"
