// The vector primitives for the baseline of the architecture (x86-64-v2; Armv8-A): vec.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_generic).
#define KERN_ISA generic
#define KERN_VLEN 4 // floats per vector register
#include "kern/vec.inc"
