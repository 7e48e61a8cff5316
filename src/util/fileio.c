#include "util/fileio.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int vm_mmap_open(vm_mmap *m, const char *path) {
    m->data = NULL; m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vm_err("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); return vm_err("%s: %s", path, strerror(e)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return vm_err("%s: not a regular file", path); }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { int e = errno; close(fd); return vm_err("%s: mmap: %s", path, strerror(e)); }
        m->data = p; m->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void vm_mmap_close(vm_mmap *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL; m->size = 0;
}

int vm_afile_open(vm_afile *a, const char *path) {
    memset(a, 0, sizeof *a);
    size_t n = strlen(path) + 32;
    a->path = vm_strdup(path);
    a->tmp = vm_malloc(n);
    if (!a->path || !a->tmp) { free(a->path); free(a->tmp); return -1; }
    snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        int e = errno;
        free(a->path); free(a->tmp); a->path = a->tmp = NULL;
        return vm_err("%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int vm_afile_commit(vm_afile *a) {
    int rc = 0;
    if (!a->f) return vm_err("%s: not open", a->path ? a->path : "?");
    if (fflush(a->f) != 0 || ferror(a->f)) rc = vm_err("%s: write failed: %s", a->path, strerror(errno));
    if (rc == 0 && fsync(fileno(a->f)) != 0) rc = vm_err("%s: fsync failed: %s", a->path, strerror(errno));
    if (fclose(a->f) != 0 && rc == 0) rc = vm_err("%s: close failed: %s", a->path, strerror(errno));
    a->f = NULL;
    if (rc == 0 && rename(a->tmp, a->path) != 0) rc = vm_err("%s: rename failed: %s", a->path, strerror(errno));
    if (rc != 0) remove(a->tmp);
    free(a->tmp); free(a->path); a->tmp = a->path = NULL;
    return rc;
}

void vm_afile_abort(vm_afile *a) {
    if (a->f) { fclose(a->f); a->f = NULL; }
    if (a->tmp) remove(a->tmp);
    free(a->tmp); free(a->path); a->tmp = a->path = NULL;
}

char *vm_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { vm_err("%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = vm_malloc(cap);
    if (!buf) { fclose(f); return NULL; }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); vm_err("%s: out of memory", path); return NULL; }
            buf = nb; cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); vm_err("%s: read error", path); return NULL; }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int vm_mkdir_p(const char *path) {
    char buf[4096];
    if (!path || !*path || strlen(path) >= sizeof buf) return vm_err("bad output folder '%s'", path ? path : "");
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            const char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return vm_err("cannot create folder '%s': %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return vm_err("'%s' is not a folder", path);
    return 0;
}
