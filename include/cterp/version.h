// The version of cterp (written into saved SAEs as cterp_version).
#ifndef CTERP_VERSION_H
#define CTERP_VERSION_H
#define CTERP_VERSION "0.1"
#endif
