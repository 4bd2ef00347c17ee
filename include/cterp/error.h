// cterp error reporting: every library call returns a cterp_status; on failure a message naming
// the file or field, what was expected and what was found is kept per thread.
#ifndef CTERP_ERROR_H
#define CTERP_ERROR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CTERP_OK = 0,
    CTERP_EINVAL = 1,   // an argument or config value out of range
    CTERP_EIO = 2,      // a file could not be opened, read or written
    CTERP_EFORMAT = 3,  // a file is corrupt, truncated or of the wrong kind
    CTERP_ENOMEM = 4,   // an allocation failed
    CTERP_ENAN = 5,     // NaN or Inf in inputs or loss
    CTERP_ENOTFOUND = 6 // a named thing (tensor, hook, key) does not exist
} cterp_status;

// The message of the last failure on this thread ("" if none). Never NULL.
const char *cterp_last_error(void);

// Short name of a status code ("invalid argument", ...).
const char *cterp_status_str(cterp_status s);

// Records a message for this thread and returns `s` (printf-style format).
cterp_status cterp_error(cterp_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Clears the message of this thread.
void cterp_clear_error(void);

// Progress of a long phase (eval, the feature pass, ...): `done` of `total` units (`unit`:
// "windows", "examples"; total 0 when unknown) after `seconds`. Called when the phase starts
// (done 0), as it goes, and once with done == total at its end.
typedef void (*cterp_progress_fn)(const char *what, int64_t done, int64_t total, const char *unit,
                                  double seconds, void *user);

#ifdef __cplusplus
}
#endif
#endif
