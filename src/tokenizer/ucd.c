// Bisection over the generated tables (ucd.h).
#include "tokenizer/ucd.h"

#include <stddef.h>

#include "tokenizer/ucd_tables.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int ucd_class(uint32_t cp) {
    size_t lo = 0, hi = COUNT(ucd_class_start); // last start <= cp
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ucd_class_start[mid] <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return cp < 0x110000 ? ucd_class_val[lo] : UCD_OTHER;
}

int ucd_is_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint32_t ucd_lower(uint32_t cp) {
    size_t lo = 0, hi = COUNT(ucd_lower_runs);
    while (lo < hi) { // first run whose start is > cp
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)ucd_lower_runs[mid][0] <= cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo) return cp;
    const int32_t *r = ucd_lower_runs[lo - 1];
    uint32_t k = cp - (uint32_t)r[0];
    if (k % (uint32_t)r[2] || k / (uint32_t)r[2] >= (uint32_t)r[1]) return cp;
    return (uint32_t)((int32_t)cp + r[3]);
}

uint32_t ucd_nfd_base(uint32_t cp) {
    size_t lo = 0, hi = COUNT(ucd_nfd_runs);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ucd_nfd_runs[mid][0] <= cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo && cp <= ucd_nfd_runs[lo - 1][1] ? ucd_nfd_runs[lo - 1][2] : cp;
}

const char *ucd_version(void) {
    return UCD_VERSION;
}
