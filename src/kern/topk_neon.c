// The top-k selections for Armv8.2-A NEON + dot product + fp16: topk.inc compiled with that
// variant's flags (CMakeLists.txt, CTERP_ISA_FLAGS_neon).
#define KERN_ISA neon
#include "kern/topk.inc"
