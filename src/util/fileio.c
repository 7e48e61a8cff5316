#include "util/fileio.h"
#include "util/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------- what a path is

static const char *kind_of(mode_t m) {
    if (S_ISDIR(m)) return "a folder";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int vm_input_check(const char *path) {
    struct stat st;
    if (!path || !*path) return vm_err("empty file name");
    if (stat(path, &st) != 0) return vm_err("%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return vm_err("%s: not a regular file (%s)", path, kind_of(st.st_mode));
    return 0;
}

// Opens an input for reading without ever blocking: checked first, and O_NONBLOCK covers a path
// swapped for a FIFO between the check and the open; the descriptor is checked again.
static int open_input(const char *path) {
    if (vm_input_check(path)) return -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return vm_err("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return vm_err("%s: not a regular file", path); }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

// The folder part of path ("." when there is none) in buf.
static int parent_of(const char *path, char *buf, size_t cap) {
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    if (slash && n == 0) n = 1;   // "/x": the root
    if (n >= cap) return vm_err("'%s': path too long", path);
    memcpy(buf, slash ? path : ".", n);
    buf[n] = 0;
    return 0;
}

int vm_output_check(const char *path) {
    if (!path || !*path) return vm_err("output file name is empty");
    const size_t n = strlen(path);
    if (path[n - 1] == '/') return vm_err("'%s': an output file name cannot end with '/'", path);
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return vm_err("'%s' exists and is %s, not a regular file; outputs never replace one (give another name)",
                          path, kind_of(st.st_mode));
    } else if (errno != ENOENT) {
        return vm_err("'%s': %s", path, strerror(errno));
    }
    char dir[4096];
    if (parent_of(path, dir, sizeof dir)) return -1;
    if (stat(dir, &st) != 0) return vm_err("'%s': folder '%s': %s", path, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return vm_err("'%s': '%s' is not a folder", path, dir);
    if (access(dir, W_OK) != 0) return vm_err("'%s': cannot write in folder '%s': %s", path, dir, strerror(errno));
    return 0;
}

int vm_mmap_open(vm_mmap *m, const char *path) {
    m->data = NULL; m->size = 0;
    int fd = open_input(path);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); return vm_err("%s: %s", path, strerror(e)); }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { int e = errno; close(fd); return vm_err("%s: mmap: %s", path, strerror(e)); }
        m->data = p; m->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void vm_mmap_release(const vm_mmap *m, const void *p, size_t n) {
    const uintptr_t lo = (uintptr_t)m->data, hi = lo + m->size, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + n;
    if (!m->data || !n || a >= hi || b <= lo || page == 0) return;
    if (a < lo) a = lo;
    if (b > hi) b = hi;
    a &= ~(page - 1);   // whole pages: the mapping is read-only and never written, so dropping a page
    b = (b + page - 1) & ~(page - 1);   // shared with a neighbouring tensor only costs a re-fault
    madvise((void *)a, b - a, MADV_DONTNEED);
}

void vm_mmap_close(vm_mmap *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL; m->size = 0;
}

int vm_afile_open(vm_afile *a, const char *path) {
    memset(a, 0, sizeof *a);
    if (vm_output_check(path)) return -1;
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
    if (rc == 0 && vm_output_check(a->path)) rc = -1;   // the path may have changed while we wrote
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
    int fd = open_input(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) { vm_err("%s: %s", path, strerror(errno)); close(fd); return NULL; }
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

// ---------------------------------------------------------------- output folders written as a set

// path without trailing slashes ("/" stays "/"), malloc'd.
static char *strip_slashes(const char *path) {
    char *s = vm_strdup(path);
    if (!s) return NULL;
    for (size_t n = strlen(s); n > 1 && s[n - 1] == '/'; n--) s[n - 1] = 0;
    return s;
}

// "<name>" or "<name>.tmp.<anything>" (a file vm_afile was writing when it was killed) of a list.
static int listed(const char *entry, const char *const *names) {
    for (int i = 0; names[i]; i++) {
        const size_t n = strlen(names[i]);
        if (!strncmp(entry, names[i], n) && (!entry[n] || !strncmp(entry + n, ".tmp.", 5))) return 1;
    }
    return 0;
}

// The first entry of folder `dir` not in names, copied to out; 0 when there is none.
static int foreign_entry(const char *dir, const char *const *names, char *out, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return vm_err("'%s': %s", dir, strerror(errno));
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || listed(e->d_name, names)) continue;
        snprintf(out, cap, "%s", e->d_name);
        found = 1;
    }
    closedir(d);
    return found;
}

int vm_output_dir_check(const char *path, const char *const *names) {
    if (!path || !*path) return vm_err("output folder name is empty");
    char *p = strip_slashes(path);
    if (!p) return -1;
    const char *last = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
    int rc = 0;
    struct stat st;
    if (!*last || !strcmp(last, ".") || !strcmp(last, "..")) {
        rc = vm_err("output folder '%s' cannot be replaced as a whole: name a folder of its own", path);
    } else if (stat(p, &st) == 0) {
        char other[256];
        int f = 0;
        if (!S_ISDIR(st.st_mode)) rc = vm_err("'%s' exists and is %s, not a folder", path, kind_of(st.st_mode));
        else if (names && (f = foreign_entry(p, names, other, sizeof other)) != 0)
            rc = f < 0 ? -1 : vm_err("output folder '%s' holds '%s', which this command does not write; the folder "
                                     "is replaced as a whole, so give a new or empty one", path, other);
    } else if (errno != ENOENT) {
        rc = vm_err("'%s': %s", path, strerror(errno));
    }
    // the nearest existing ancestor must take new entries (the temporary folder goes beside path)
    char dir[4096], cur[4096];
    snprintf(cur, sizeof cur, "%s", p);
    while (!rc) {
        if (parent_of(cur, dir, sizeof dir)) { rc = -1; break; }
        if (stat(dir, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) rc = vm_err("'%s': '%s' is not a folder", path, dir);
            else if (access(dir, W_OK) != 0) rc = vm_err("'%s': cannot write in folder '%s': %s", path, dir, strerror(errno));
            break;
        }
        if (errno != ENOENT) { rc = vm_err("'%s': folder '%s': %s", path, dir, strerror(errno)); break; }
        if (!strcmp(dir, cur)) break;
        memcpy(cur, dir, sizeof cur);
    }
    free(p);
    return rc;
}

// Removes a folder with everything in it. Sub-folders too (the demo's output holds adapters/): a
// folder left half-removed is the leftover this exists to prevent. Symbolic links are removed, never
// followed (unlinkat on the link itself; O_NOFOLLOW on the way down).
static int remove_tree_at(int parent, const char *name, int depth) {
    if (depth > 16) return -1;   // vm_adir writes two levels; anything deeper is not ours
    const int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return unlinkat(parent, name, 0);   // a file or a link
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            if (unlinkat(dirfd(d), e->d_name, 0) != 0) remove_tree_at(dirfd(d), e->d_name, depth + 1);
    closedir(d);
    return unlinkat(parent, name, AT_REMOVEDIR);
}

static int remove_folder(const char *dir) { return remove_tree_at(AT_FDCWD, dir, 0); }

static void adir_free(vm_adir *d) { free(d->path); free(d->tmp); d->path = d->tmp = NULL; }

int vm_adir_open(vm_adir *d, const char *path, const char *const *names) {
    memset(d, 0, sizeof *d);
    if (vm_output_dir_check(path, names)) return -1;
    d->path = strip_slashes(path);
    const size_t n = d->path ? strlen(d->path) + 32 : 0;
    d->tmp = d->path ? vm_malloc(n) : NULL;
    if (!d->tmp) { adir_free(d); return -1; }
    snprintf(d->tmp, n, "%s.tmp.%ld", d->path, (long)getpid());
    char parent[4096];
    if (parent_of(d->path, parent, sizeof parent) || vm_mkdir_p(parent)) { adir_free(d); return -1; }
    remove_folder(d->tmp);   // a leftover of an earlier process with the same id
    if (mkdir(d->tmp, 0777) != 0) {
        int e = errno;
        vm_err("cannot create folder '%s': %s", d->tmp, strerror(e));
        adir_free(d);
        return -1;
    }
    return 0;
}

void vm_adir_abort(vm_adir *d) {
    if (d->tmp) remove_folder(d->tmp);
    adir_free(d);
}

int vm_adir_commit(vm_adir *d) {
    if (!d->tmp) return vm_err("output folder: not open");
    struct stat st;
    int rc = 0;
    if (stat(d->path, &st) != 0) {   // new: one rename
        if (rename(d->tmp, d->path) != 0) rc = vm_err("'%s': rename failed: %s", d->path, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        rc = vm_err("'%s' is %s, not a folder", d->path, kind_of(st.st_mode));
    } else if (renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->path, RENAME_EXCHANGE) == 0) {
        remove_folder(d->tmp);   // now the old set
    } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
        // a file system without atomic exchange: move the old set aside, the new one in, then drop
        // the old one (or put it back when the second rename fails)
        char *old = vm_malloc(strlen(d->path) + 32);
        if (!old) rc = -1;
        else {
            snprintf(old, strlen(d->path) + 32, "%s.old.%ld", d->path, (long)getpid());
            if (rename(d->path, old) != 0) rc = vm_err("'%s': rename failed: %s", d->path, strerror(errno));
            else if (rename(d->tmp, d->path) != 0) {
                rc = vm_err("'%s': rename failed: %s", d->path, strerror(errno));
                rename(old, d->path);
            } else remove_folder(old);
            free(old);
        }
    } else {
        rc = vm_err("'%s': rename failed: %s", d->path, strerror(errno));
    }
    if (rc) remove_folder(d->tmp);
    adir_free(d);
    return rc;
}
