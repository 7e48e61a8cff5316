// Files: read-only memory maps, and atomic output (temp file in the same folder, fsync, rename),
// so an interrupted command never leaves a half-written file under the final name.
#pragma once
#include <stdio.h>
#include <stddef.h>

typedef struct vm_mmap { void *data; size_t size; } vm_mmap;

int vm_mmap_open(vm_mmap *m, const char *path);   // 0 ok; an empty file maps to data=NULL,size=0
void vm_mmap_close(vm_mmap *m);

typedef struct vm_afile {
    FILE *f;
    char *path;   // final name
    char *tmp;    // "<path>.tmp.<pid>"
} vm_afile;

int vm_afile_open(vm_afile *a, const char *path);
// Flushes, fsyncs and renames into place; on any failure removes the temp file. Returns 0 or -1.
int vm_afile_commit(vm_afile *a);
void vm_afile_abort(vm_afile *a);   // removes the temp file (safe after commit: no-op)

// mkdir -p: creates path and its missing parents; 0, or -1 with "cannot create folder 'X': why" or
// "'X' is not a folder".
int vm_mkdir_p(const char *path);
// Whole-file read into a NUL-terminated heap buffer (small text files: config, datasets).
char *vm_read_file(const char *path, size_t *len);
