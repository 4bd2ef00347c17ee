// Included first by each <family>_<isa>.c: KERN_ISA names the variant, KERN_TABLE(kern_vec)
// becomes kern_vec_avx2 and so on. Everything else in a template is static to its unit.
#ifndef CTERP_KERN_ISA_H
#define CTERP_KERN_ISA_H
#ifndef KERN_ISA
#error "define KERN_ISA before including a kernel template"
#endif
#define KERN_CAT_(a, b) a##_##b
#define KERN_CAT(a, b) KERN_CAT_(a, b)
#define KERN_TABLE(family) KERN_CAT(family, KERN_ISA)
#include "kern/kern.h"
#endif
