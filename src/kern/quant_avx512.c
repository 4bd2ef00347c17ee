// Dequantization and dot products of GGUF rows for AVX-512 F/BW/VL/DQ (x86-64-v4), also used by avx512bf16: quant.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_avx512).
#define KERN_ISA avx512
#include "kern/quant.inc"
