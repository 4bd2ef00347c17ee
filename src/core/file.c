#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

cterp_status file_read_all(const char *path, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cterp_error(CTERP_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return cterp_error(CTERP_EIO, "%s: cannot seek", path);
    }
    long n = ftell(f);
    if (n < 0) {
        fclose(f);
        return cterp_error(CTERP_EIO, "%s: cannot tell size", path);
    }
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return cterp_error(CTERP_ENOMEM, "%s: cannot allocate %ld bytes", path, n);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return cterp_error(CTERP_EIO, "%s: short read (%zu of %ld bytes)", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = (size_t)n;
    return CTERP_OK;
}

cterp_status file_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path) {
    uint8_t *b = buf;
    while (n > 0) {
        const ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return cterp_error(CTERP_EIO, "%s: cannot read %zu bytes at offset %llu: %s", path, n,
                               (unsigned long long)off,
                               r < 0 ? strerror(errno) : "unexpected end of file");
        b += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return CTERP_OK;
}

cterp_status file_same(const char *a, const char *b, size_t block, int *same) {
    *same = 0;
    if (!block) block = (size_t)1 << 20;
    const char *path[2] = {a, b};
    int fd[2] = {-1, -1};
    uint64_t size[2] = {0, 0};
    cterp_status s = CTERP_OK;
    for (int i = 0; i < 2 && !s; i++) {
        struct stat sb;
        if ((fd[i] = open(path[i], O_RDONLY)) < 0)
            s = cterp_error(CTERP_EIO, "%s: cannot open: %s", path[i], strerror(errno));
        else if (fstat(fd[i], &sb) != 0 || !S_ISREG(sb.st_mode))
            s = cterp_error(CTERP_EIO, "%s: not a regular file", path[i]);
        else
            size[i] = (uint64_t)sb.st_size;
    }
    uint8_t *x = NULL, *y = NULL;
    if (!s && size[0] == size[1]) {
        x = malloc(block), y = malloc(block);
        if (!x || !y) s = cterp_error(CTERP_ENOMEM, "out of memory (2 x %zu bytes)", block);
        int eq = 1;
        for (uint64_t off = 0; !s && eq && off < size[0]; off += block) {
            const size_t n = size[0] - off < block ? (size_t)(size[0] - off) : block;
            if (!(s = file_pread_all(fd[0], x, n, off, a)) && !(s = file_pread_all(fd[1], y, n, off, b)))
                eq = !memcmp(x, y, n);
        }
        *same = !s && eq;
    }
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0) close(fd[i]);
    free(x), free(y);
    return s;
}

cterp_status file_map_open(file_map *m, const char *path) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cterp_error(CTERP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return cterp_error(CTERP_EIO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cterp_error(CTERP_EIO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return cterp_error(CTERP_EIO, "%s: cannot mmap: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return CTERP_OK;
}

// Whether a copy of `size` bytes may go to huge pages here (file_map_open_huge).
static int huge_pages_wanted(uint64_t size) {
#ifndef MADV_HUGEPAGE
    (void)size;
    return 0; // not Linux: no transparent huge pages to ask for
#else
    const char *e = getenv("CTERP_HUGE_PAGES");
    if ((e && !strcmp(e, "0")) || size < ((uint64_t)4 << 20)) return 0; // under 2 huge pages: no gain
    char buf[256] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    const int got = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!got || strstr(buf, "[never]")) return 0;
    unsigned long long avail_kb = 0;
    if (!(f = fopen("/proc/meminfo", "r"))) return 0;
    while (fgets(buf, sizeof buf, f))
        if (sscanf(buf, "MemAvailable: %llu kB", &avail_kb) == 1) break;
    fclose(f);
    return avail_kb > 0 && size <= (uint64_t)avail_kb * 1024 / 2;
#endif
}

cterp_status file_map_open_huge(file_map *m, const char *path, int *huge) {
    if (huge) *huge = 0;
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cterp_error(CTERP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    const int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!ok || st.st_size == 0 || !huge_pages_wanted((uint64_t)st.st_size)) {
        close(fd);
        return file_map_open(m, path);
    }
    // [a, a + len): len the file's size in whole 4 KiB pages, a on a 2 MiB boundary (the extra
    // head and tail of an over-sized mapping given back), so file_map_close's munmap of size
    // bytes frees all of it
    const size_t size = (size_t)st.st_size, H = (size_t)2 << 20, len = (size + 4095) & ~(size_t)4095;
    uint8_t *p = mmap(NULL, len + H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return file_map_open(m, path);
    }
    uint8_t *a = (uint8_t *)(((uintptr_t)p + H - 1) & ~(uintptr_t)(H - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    munmap(a + len, (size_t)(p + len + H - (a + len)));
#ifdef MADV_HUGEPAGE
    madvise(a, len, MADV_HUGEPAGE);
#endif
    cterp_status s = CTERP_OK;
    for (size_t off = 0; off < size && !s;) { // 64 MiB reads
        const size_t n = size - off < ((size_t)64 << 20) ? size - off : ((size_t)64 << 20);
        s = file_pread_all(fd, a + off, n, off, path);
        off += n;
    }
    close(fd);
    if (s) {
        munmap(a, len);
        return s;
    }
    mprotect(a, len, PROT_READ); // read-only, as the mapping
    m->data = a;
    m->size = size;
    if (huge) *huge = 1;
    return CTERP_OK;
}

void file_map_close(file_map *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

cterp_status file_atomic_open(file_atomic *w, const char *path) {
    memset(w, 0, sizeof *w);
    size_t n = strlen(path) + 32;
    w->path = strdup(path);
    w->tmp = malloc(n);
    if (!w->path || !w->tmp) {
        free(w->path);
        free(w->tmp);
        return cterp_error(CTERP_ENOMEM, "%s: out of memory", path);
    }
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        cterp_status s = cterp_error(CTERP_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
        free(w->path);
        free(w->tmp);
        w->path = w->tmp = NULL;
        return s;
    }
    return CTERP_OK;
}

cterp_status file_atomic_write(file_atomic *w, const void *buf, size_t n) {
    if (w->failed) return CTERP_EIO;
    if (n && fwrite(buf, 1, n, (FILE *)w->fp) != n) {
        w->failed = 1;
        return cterp_error(CTERP_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    }
    file_test_point("write");
    return CTERP_OK;
}

static void atomic_cleanup(file_atomic *w) {
    free(w->path);
    free(w->tmp);
    w->path = w->tmp = NULL;
    w->fp = NULL;
}

void file_atomic_abort(file_atomic *w) {
    if (!w->tmp) return;
    if (w->fp) fclose((FILE *)w->fp);
    unlink(w->tmp);
    atomic_cleanup(w);
}

// CTERP_TEST_ENOSPC_AFTER: 1 when committing `n` more bytes would pass the injected budget.
static int injected_enospc(long n) {
    static long long budget = -2, used = 0;
    if (budget == -2) {
        const char *e = getenv("CTERP_TEST_ENOSPC_AFTER");
        budget = e && *e ? atoll(e) : -1;
    }
    if (budget < 0 || n < 0) return 0;
    if (used + n > budget) return 1;
    used += n;
    return 0;
}

cterp_status file_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cterp_error(CTERP_EIO, "%s: cannot open the directory: %s", dir, strerror(errno));
    int bad = fsync(fd) != 0 && errno != EINVAL; // EINVAL: a file system without directory fsync
    int err = errno;
    close(fd);
    if (bad)
        return cterp_error(CTERP_EIO, "%s: cannot fsync the directory: %s", dir, strerror(err));
    return CTERP_OK;
}

// fsyncs the directory that holds `path`.
static cterp_status fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return file_fsync_dir(".");
    if (slash == path) return file_fsync_dir("/");
    char *d = strndup(path, (size_t)(slash - path));
    if (!d) return cterp_error(CTERP_ENOMEM, "out of memory");
    cterp_status s = file_fsync_dir(d);
    free(d);
    return s;
}

cterp_status file_atomic_commit(file_atomic *w) {
    FILE *f = (FILE *)w->fp;
    int err = 0;
    if (w->failed)
        err = EIO;
    else if (fflush(f) != 0)
        err = errno;
    if (!err && injected_enospc(ftell(f))) err = ENOSPC;
    if (!err && fsync(fileno(f)) != 0) err = errno;
    if (fclose(f) != 0 && !err) err = errno;
    w->fp = NULL;
    if (err) {
        cterp_status s = cterp_error(CTERP_EIO, "%s: write failed: %s%s", w->path, strerror(err),
                                     err == ENOSPC ? " (the file is not written; the previous one, "
                                                     "if any, is unchanged)"
                                                   : "");
        unlink(w->tmp);
        atomic_cleanup(w);
        return s;
    }
    file_test_point("commit"); // written and synced, not yet in place
    if (rename(w->tmp, w->path) != 0) {
        cterp_status s = cterp_error(CTERP_EIO, "%s: cannot rename into place: %s", w->path,
                                     strerror(errno));
        unlink(w->tmp);
        atomic_cleanup(w);
        return s;
    }
    cterp_status s = fsync_parent(w->path);
    atomic_cleanup(w);
    return s;
}

cterp_status file_write_all(const char *path, const void *buf, size_t n) {
    file_atomic w;
    cterp_status s = file_atomic_open(&w, path);
    if (s) return s;
    if ((s = file_atomic_write(&w, buf, n))) {
        file_atomic_abort(&w);
        return s;
    }
    return file_atomic_commit(&w);
}

cterp_status file_mkdirs(const char *path) {
    char *p = strdup(path);
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    for (char *c = p + 1;; c++) {
        if (*c == '/' || *c == 0) {
            char save = *c;
            *c = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                cterp_status s = cterp_error(CTERP_EIO, "%s: cannot create directory: %s", p,
                                             strerror(errno));
                free(p);
                return s;
            }
            *c = save;
            if (!save) break;
        }
    }
    free(p);
    if (!file_is_dir(path)) return cterp_error(CTERP_EIO, "%s: exists and is not a directory", path);
    return CTERP_OK;
}

cterp_status file_lock_dir(const char *dir, const char *what, int *fd) {
    *fd = -1;
    char *p = file_join(dir, ".cterp.lock");
    if (!p) return cterp_error(CTERP_ENOMEM, "out of memory");
    int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) {
        cterp_status s =
            cterp_error(CTERP_EIO, "%s: cannot open the lock file: %s", p, strerror(errno));
        free(p);
        return s;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char buf[32] = "";
        ssize_t n = pread(f, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        close(f);
        cterp_status s =
            err == EWOULDBLOCK
                ? cterp_error(CTERP_EIO,
                              "%s: in use by another cterp process (pid %s holds %s): one %s "
                              "per output directory",
                              dir, *buf ? buf : "unknown", p, what)
                : cterp_error(CTERP_EIO, "%s: cannot lock: %s", p, strerror(err));
        free(p);
        return s;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)n, 0) != n) {
        cterp_status s = cterp_error(CTERP_EIO, "%s: cannot write: %s", p, strerror(errno));
        close(f);
        free(p);
        return s;
    }
    free(p);
    *fd = f;
    return CTERP_OK;
}

// The file stays: removing it would let a third process lock a new inode while a second one
// still waits on the old.
void file_unlock_dir(int fd) {
    if (fd >= 0) close(fd);
}

void file_test_point(const char *point) {
    static int parsed;
    static char name[64];
    static long target, count;
    if (!parsed) {
        parsed = 1;
        const char *e = getenv("CTERP_TEST_KILL_AT");
        if (e && *e) {
            snprintf(name, sizeof name, "%s", e);
            char *c = strchr(name, ':');
            target = 1;
            if (c) *c = 0, target = atol(c + 1);
        }
    }
    if (!name[0] || strcmp(name, point) || ++count != target) return;
    fprintf(stderr, "CTERP_TEST_KILL_AT: SIGKILL at %s:%ld\n", point, target);
    raise(SIGKILL);
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int file_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *file_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *out = malloc(a + b + 2);
    if (!out) return NULL;
    memcpy(out, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') out[k++] = '/';
    memcpy(out + k, name, b + 1);
    return out;
}

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
