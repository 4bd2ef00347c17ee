#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

cterp_status file_atomic_commit(file_atomic *w) {
    FILE *f = (FILE *)w->fp;
    int bad = w->failed || fflush(f) != 0 || fsync(fileno(f)) != 0;
    if (fclose(f) != 0) bad = 1;
    w->fp = NULL;
    if (bad) {
        cterp_status s = cterp_error(CTERP_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
        unlink(w->tmp);
        atomic_cleanup(w);
        return s;
    }
    if (rename(w->tmp, w->path) != 0) {
        cterp_status s = cterp_error(CTERP_EIO, "%s: cannot rename into place: %s", w->path,
                                     strerror(errno));
        unlink(w->tmp);
        atomic_cleanup(w);
        return s;
    }
    atomic_cleanup(w);
    return CTERP_OK;
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
