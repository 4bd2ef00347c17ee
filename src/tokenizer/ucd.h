// Unicode lookups for the WordPiece (BERT) normalizer, from tables generated out of the Unicode
// Character Database (scripts/gen_ucd_tables.py -> ucd_tables.h). They follow llama.cpp's
// unicode.cpp definitions: White_Space, general categories, simple lowercase, and "NFD" as the
// first code point of the canonical decomposition.
#ifndef CTERP_UCD_H
#define CTERP_UCD_H

#include <stdint.h>

enum { UCD_OTHER = 0, UCD_CONTROL = 1, UCD_MARK = 2, UCD_PUNCT = 3 }; // Cc/Cf/Co/Cs, M*, P*

int ucd_class(uint32_t cp);
int ucd_is_space(uint32_t cp); // the White_Space property
uint32_t ucd_lower(uint32_t cp);
uint32_t ucd_nfd_base(uint32_t cp);
const char *ucd_version(void);

#endif
