// What the operating system and the CPU are: the one place for platform calls (cpuid,
// getauxval, /proc, getrusage, mallopt), each with a POSIX or do-nothing fallback, so that a
// port (macOS, another libc) touches this file only.
#ifndef CTERP_CORE_PLATFORM_H
#define CTERP_CORE_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

// CPU features, as the CPU and the OS report them (x86: cpuid and the OS's saved vector state;
// aarch64: AT_HWCAP, or sysctl on macOS).
enum {
    CPU_X86_64_V2 = 1 << 0,  // SSE4.2, POPCNT, ...
    CPU_X86_64_V3 = 1 << 1,  // AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE
    CPU_X86_64_V4 = 1 << 2,  // AVX-512 F, BW, CD, DQ, VL
    CPU_AVX512BF16 = 1 << 3,
    CPU_AVX512VNNI = 1 << 4,
    CPU_NEON = 1 << 8,       // aarch64 Advanced SIMD (always)
    CPU_DOTPROD = 1 << 9,    // SDOT/UDOT (Armv8.2)
    CPU_FP16 = 1 << 10,      // half-precision arithmetic
    CPU_BF16 = 1 << 11,
    CPU_I8MM = 1 << 12,
};
uint32_t platform_cpu_features(void);

// The CPU's name ("Intel(R) Xeon(R) Processor", "AMD EPYC 7B13", "Neoverse-N1 (0x41/0xd0c)").
const char *platform_cpu_name(void);

// Peak resident set of this process, in bytes (0 where unknown).
int64_t platform_peak_rss(void);

// Keeps freed memory in the heap rather than returning it to the OS (glibc: no mmap for large
// blocks, no trimming); no-op elsewhere.
void platform_keep_heap(void);
// Undoes platform_keep_heap: freed memory goes back to the system again (glibc defaults). For
// long-running servers, whose memory should follow their load, not its peak (cterp serve).
void platform_default_heap(void);

// Runs this program again with argv (Linux: /proc/self/exe); returns only if it could not.
void platform_reexec(char **argv);

#endif
