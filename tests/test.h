// Minimal test harness: CHECK macros count results; test_done() prints the closing
// "N passed, N failed" line and returns the exit code. Tests compare against references.
#ifndef CTERP_TEST_H
#define CTERP_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_passed, test_failed;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (cond) test_passed++;                                                                 \
        else {                                                                                   \
            test_failed++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
        }                                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                     \
    do {                                                                                         \
        if (cond) test_passed++;                                                                 \
        else {                                                                                   \
            test_failed++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                      \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fprintf(stderr, "\n");                                                               \
        }                                                                                        \
    } while (0)

// |a-b| <= atol + rtol*|b|
#define CHECK_CLOSE(a, b, atol, rtol)                                                            \
    do {                                                                                         \
        double a_ = (double)(a), b_ = (double)(b);                                               \
        CHECK_MSG(fabs(a_ - b_) <= (atol) + (rtol)*fabs(b_), "%s = %.9g, %s = %.9g", #a, a_, #b, \
                  b_);                                                                           \
    } while (0)

// a status-returning call that must succeed
#define CHECK_OK(expr)                                                                           \
    do {                                                                                         \
        int s_ = (int)(expr);                                                                    \
        CHECK_MSG(s_ == 0, "status %d: %s", s_, cterp_last_error());                             \
    } while (0)

static inline int test_done(void) {
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

// Directory of the shared test data, or NULL (with a message) when absent.
static inline const char *test_data_dir(void) {
    const char *d = getenv("CTERP_TESTDATA");
    if (!d || !*d) d = getenv("CTERP_DEFAULT_TESTDATA");
    if (!d) return NULL;
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/README.md", d);
    FILE *f = fopen(probe, "r");
    if (!f) return NULL;
    fclose(f);
    return d;
}

// 1 when running under the sanitizers (slow): tests may shrink their sizes, never their checks.
static inline int test_sanitized(void) { return getenv("CTERP_SANITIZED") != NULL; }

// A temporary directory unique to this test process (created).
static inline const char *test_tmpdir(const char *name) {
    static char buf[512];
    const char *base = getenv("TMPDIR");
    snprintf(buf, sizeof buf, "%s/cterp-%s-%d", base ? base : "/tmp", name, (int)getpid());
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    if (system(cmd) != 0) return NULL;
    return buf;
}

#endif
