// The vector primitives for AVX2 + FMA + F16C (x86-64-v3): vec.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_avx2).
#define KERN_ISA avx2
#define KERN_VLEN 8 // floats per vector register
#include "kern/vec.inc"
