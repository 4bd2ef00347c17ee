// Files: whole-file reads, read-only mmaps, durable atomic writes (a temporary file in the same
// directory, fsync, rename, fsync of the directory: a crash or power loss never leaves a
// half-written file where a good one was, and a committed file stays), an advisory lock per
// output directory, and the test hooks that kill or starve a process at a named point.
#ifndef CTERP_CORE_FILE_H
#define CTERP_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "cterp/error.h"

// Reads all of `path` into a malloc'd buffer (NUL-terminated; *len excludes the NUL).
cterp_status file_read_all(const char *path, char **data, size_t *len);

// *same = 1 when files a and b hold the same bytes: their sizes first, then the bytes in pieces
// of `block` bytes (0: 1 MiB) read with pread, so memory is two pieces whatever the files' size.
// A file that cannot be opened or read is an error naming it.
cterp_status file_same(const char *a, const char *b, size_t block, int *same);

// n bytes at offset off of fd into buf, retrying short and interrupted reads; an error (or the
// file's end first) names path.
cterp_status file_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path);

typedef struct {
    const uint8_t *data; // read-only mapping (NULL for an empty file)
    size_t size;
} file_map;

cterp_status file_map_open(file_map *m, const char *path);
void file_map_close(file_map *m); // no-op on a zeroed map

// file_map_open's bytes, read into anonymous memory that the kernel may back with 2 MiB pages
// (madvise MADV_HUGEPAGE, from a 2 MiB boundary) instead of mapped from the page cache in 4 KiB
// pages: a pass over all of it (the single-token decode reads every weight per token) misses
// the TLB 512 times less often and reads faster. The same bytes and the same file_map_close;
// *huge (may be NULL) says which way it went. Mapped as file_map_open does when transparent
// huge pages are off (/sys/kernel/mm/transparent_hugepage/enabled "[never]"), when the file is
// under 4 MiB (nothing to gain) or over half the memory available (MemAvailable: a mapping can
// page, a copy cannot), or when the environment has CTERP_HUGE_PAGES=0.
cterp_status file_map_open_huge(file_map *m, const char *path, int *huge);

// Atomic writer: bytes go to "<path>.tmp.<pid>"; file_atomic_commit fsyncs it, renames it over
// <path> and fsyncs the directory. Every file cterp writes for a reader goes through it.
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

// fsyncs a directory (its entries: a rename or a new file in it survives power loss).
cterp_status file_fsync_dir(const char *dir);

// One writer per output directory: takes an exclusive flock(2) on "<dir>/.cterp.lock" (made if
// absent) and writes this process's pid into it. Held until file_unlock_dir or the process ends
// (the kernel drops a dead process's lock, so a killed run never blocks the next one). When
// another process holds it, fails naming the holder's pid. Returns the lock's fd in *fd.
cterp_status file_lock_dir(const char *dir, const char *what, int *fd);
void file_unlock_dir(int fd); // no-op for fd < 0

// Test hooks (docs/reliability.md), read from the environment once:
// CTERP_TEST_KILL_AT=POINT[:N] raises SIGKILL the Nth time (default 1) this process passes the
// point named POINT; file_test_point is a no-op when the variable is unset or names another.
void file_test_point(const char *point);
// CTERP_TEST_ENOSPC_AFTER=BYTES makes file_atomic_commit fail with "No space left on device"
// once the files this process committed would exceed BYTES in all.

// mkdir -p (mode 0755).
cterp_status file_mkdirs(const char *path);
int file_exists(const char *path);
int file_is_dir(const char *path);

// Joins a directory and a name into a malloc'd string.
char *file_join(const char *dir, const char *name);

// Seconds from a monotonic clock.
double time_now(void);

#endif
