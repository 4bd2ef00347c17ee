// The top-k selections for the baseline of the architecture (x86-64-v2; Armv8-A): topk.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_generic).
#define KERN_ISA generic
#include "kern/topk.inc"
