// Dequantization and dot products of GGUF rows for Armv8.2-A NEON + dot product + fp16: quant.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_neon).
#define KERN_ISA neon
#include "kern/quant.inc"
