// Dequantization and dot products of GGUF rows for the baseline of the architecture (x86-64-v2; Armv8-A): quant.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_generic).
#define KERN_ISA generic
#include "kern/quant.inc"
