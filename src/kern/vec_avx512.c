// The vector primitives for AVX-512 F/BW/VL/DQ (x86-64-v4), also used by avx512bf16: vec.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_avx512).
#define KERN_ISA avx512
#define KERN_VLEN 16 // floats per vector register
#include "kern/vec.inc"
