#include "cterp/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char err_msg[2048];

const char *cterp_last_error(void) { return err_msg; }

void cterp_clear_error(void) { err_msg[0] = 0; }

const char *cterp_status_str(cterp_status s) {
    switch (s) {
    case CTERP_OK: return "ok";
    case CTERP_EINVAL: return "invalid argument";
    case CTERP_EIO: return "i/o error";
    case CTERP_EFORMAT: return "bad file format";
    case CTERP_ENOMEM: return "out of memory";
    case CTERP_ENAN: return "non-finite value";
    case CTERP_ENOTFOUND: return "not found";
    }
    return "unknown error";
}

cterp_status cterp_error(cterp_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return s;
}
