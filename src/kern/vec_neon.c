// The vector primitives for Armv8.2-A NEON + dot product + fp16: vec.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_neon).
#define KERN_ISA neon
#define KERN_VLEN 4 // floats per vector register
#include "kern/vec.inc"
