// Files: whole-file reads, read-only mmaps, and atomic writes (temporary file renamed into
// place, so a crash never leaves a half-written file where a good one was).
#ifndef CTERP_CORE_FILE_H
#define CTERP_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"

// Reads all of `path` into a malloc'd buffer (NUL-terminated; *len excludes the NUL).
cterp_status file_read_all(const char *path, char **data, size_t *len);

typedef struct {
    const uint8_t *data; // read-only mapping (NULL for an empty file)
    size_t size;
} file_map;

cterp_status file_map_open(file_map *m, const char *path);
void file_map_close(file_map *m); // no-op on a zeroed map

// Atomic writer: bytes go to "<path>.tmp.<pid>", file_atomic_commit fsyncs and renames.
typedef struct {
    void *fp; // FILE*
    char *path, *tmp;
    int failed;
} file_atomic;

cterp_status file_atomic_open(file_atomic *w, const char *path);
cterp_status file_atomic_write(file_atomic *w, const void *buf, size_t n);
cterp_status file_atomic_commit(file_atomic *w); // closes; on failure removes the temporary
void file_atomic_abort(file_atomic *w);          // closes and removes the temporary

// Writes a whole buffer atomically.
cterp_status file_write_all(const char *path, const void *buf, size_t n);

// mkdir -p (mode 0755).
cterp_status file_mkdirs(const char *path);
int file_exists(const char *path);
int file_is_dir(const char *path);

// Joins a directory and a name into a malloc'd string.
char *file_join(const char *dir, const char *name);

// Seconds from a monotonic clock.
double time_now(void);

#endif
