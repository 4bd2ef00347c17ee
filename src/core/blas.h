// BLAS: OpenBLAS's CBLAS, OpenMP flavour (shares the OpenMP thread pool; see docs/architecture.md).
#ifndef CTERP_CORE_BLAS_H
#define CTERP_CORE_BLAS_H

#include <cblas.h>

#endif
