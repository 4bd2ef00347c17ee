#include "core/platform.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(__GLIBC__)
#include <limits.h>
#include <malloc.h>
#endif

#if defined(__aarch64__)
#define CTERP_ARCH_NAME "aarch64"
#else
#define CTERP_ARCH_NAME "this"
#endif

#if defined(__APPLE__)
static int sysctl_flag(const char *name) {
    int v = 0;
    size_t len = sizeof v;
    return sysctlbyname(name, &v, &len, NULL, 0) == 0 && v;
}
#endif

uint32_t platform_cpu_features(void) {
    uint32_t f = 0;
#if defined(__x86_64__)
    // libgcc's checks include the OS's support (XCR0) for the AVX and AVX-512 register state
    __builtin_cpu_init();
#if defined(__clang__) && __clang_major__ < 16
    // clang before 16 (Debian 12's 14, the fuzz build) knows no level names: their features
#define X86_CPU(f) __builtin_cpu_supports(f)
    const int v2 = X86_CPU("sse4.2") && X86_CPU("popcnt") && X86_CPU("ssse3");
    const int v3 = v2 && X86_CPU("avx2") && X86_CPU("fma") && X86_CPU("bmi") && X86_CPU("bmi2");
    const int v4 = v3 && X86_CPU("avx512f") && X86_CPU("avx512bw") && X86_CPU("avx512cd") &&
                   X86_CPU("avx512dq") && X86_CPU("avx512vl");
#undef X86_CPU
    if (v2) f |= CPU_X86_64_V2;
    if (v3) f |= CPU_X86_64_V3;
    if (v4) f |= CPU_X86_64_V4;
#else
    if (__builtin_cpu_supports("x86-64-v2")) f |= CPU_X86_64_V2;
    if (__builtin_cpu_supports("x86-64-v3")) f |= CPU_X86_64_V3;
    if (__builtin_cpu_supports("x86-64-v4")) f |= CPU_X86_64_V4;
#endif
    if (__builtin_cpu_supports("avx512bf16")) f |= CPU_AVX512BF16;
    if (__builtin_cpu_supports("avx512vnni")) f |= CPU_AVX512VNNI;
#elif defined(__aarch64__)
    f |= CPU_NEON;
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & (1UL << 20)) f |= CPU_DOTPROD; // HWCAP_ASIMDDP
    if ((hw & (1UL << 9)) && (hw & (1UL << 10))) f |= CPU_FP16; // HWCAP_FPHP, HWCAP_ASIMDHP
    if (hw2 & (1UL << 14)) f |= CPU_BF16;   // HWCAP2_BF16
    if (hw2 & (1UL << 13)) f |= CPU_I8MM;   // HWCAP2_I8MM
#elif defined(__APPLE__)
    if (sysctl_flag("hw.optional.arm.FEAT_DotProd")) f |= CPU_DOTPROD;
    if (sysctl_flag("hw.optional.arm.FEAT_FP16")) f |= CPU_FP16;
    if (sysctl_flag("hw.optional.arm.FEAT_BF16")) f |= CPU_BF16;
    if (sysctl_flag("hw.optional.arm.FEAT_I8MM")) f |= CPU_I8MM;
#endif
#endif
    return f;
}

// Trims the spaces at both ends of s in place.
static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

const char *platform_cpu_name(void) {
    static char name[128];
    if (name[0]) return name;
#if defined(__x86_64__) || defined(__i386__)
    unsigned r[12];
    if ((unsigned)__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) { // int in clang's cpuid.h
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        char b[49];
        memcpy(b, r, 48);
        b[48] = 0;
        snprintf(name, sizeof name, "%s", trim(b));
    }
#elif defined(__APPLE__)
    size_t len = sizeof name;
    if (sysctlbyname("machdep.cpu.brand_string", name, &len, NULL, 0) != 0) name[0] = 0;
#elif defined(__linux__)
    // aarch64 Linux has no model name: the implementer and part numbers of the first core
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256], impl[32] = "", part[32] = "";
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!c) continue;
        *c = 0;
        const char *key = trim(line), *val = trim(c + 1);
        if (!strcmp(key, "model name") && !name[0]) snprintf(name, sizeof name, "%s", val);
        if (!strcmp(key, "CPU implementer") && !impl[0]) snprintf(impl, sizeof impl, "%s", val);
        if (!strcmp(key, "CPU part") && !part[0]) snprintf(part, sizeof part, "%s", val);
    }
    if (f) fclose(f);
    if (!name[0] && impl[0])
        snprintf(name, sizeof name, "%s CPU (implementer %s, part %s)", CTERP_ARCH_NAME, impl, part);
#endif
    if (!name[0]) snprintf(name, sizeof name, "unknown CPU");
    return name;
}

int64_t platform_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#if defined(__APPLE__)
    return (int64_t)ru.ru_maxrss; // bytes there
#else
    return (int64_t)ru.ru_maxrss * 1024; // KiB on Linux
#endif
}

void platform_keep_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

void platform_default_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_MAX, 65536);             // glibc's default
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);  // glibc's default
#endif
}

void platform_reexec(char **argv) {
#if defined(__linux__)
    execv("/proc/self/exe", argv);
#else
    (void)argv; // elsewhere: carry on as we are
#endif
}
