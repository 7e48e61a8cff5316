// Files: read-only memory maps, and atomic output (temp file in the same folder, fsync, rename),
// so an interrupted command never leaves a half-written file under the final name; a set of files
// that belong together (an eval folder) is written into a temporary folder swapped in as a whole.
#pragma once
#include <stdio.h>
#include <stddef.h>

// Input files: 0 when path names a regular file (symlinks followed); else -1 with "<path>: why".
// Checked with stat before anything opens the path: opening a FIFO for reading blocks until a writer
// comes, and a device or folder is never a model, dataset or checkpoint.
int vm_input_check(const char *path);
// Output files, checked before a command does its work and again when the file is written: the
// path must not be empty, end with '/', or name something that exists and is not a regular file
// (folder, FIFO, device, socket; a symlink is judged by its target: the rename replaces whatever
// the path is, so /dev/null would become a regular file), and its folder must exist and be
// writable. 0, or -1 with one line naming the path and the problem.
int vm_output_check(const char *path);
// Output folders that are replaced as a whole (vm_adir): not empty, not "." or "..", not an
// existing non-folder; when it exists it may hold only entries named in `names` (NULL-terminated;
// NULL: anything), so replacing it never deletes files another program put there. Its parent
// folders need not exist yet (they are created).
int vm_output_dir_check(const char *path, const char *const *names);

typedef struct vm_mmap { void *data; size_t size; } vm_mmap;

int vm_mmap_open(vm_mmap *m, const char *path);   // 0 ok; an empty file maps to data=NULL,size=0
void vm_mmap_close(vm_mmap *m);
// Drops the pages of [p, p + n) that lie in m's mapping from the process's resident set (the data
// stays in the file, and in the page cache while the system keeps it there; a later access faults it
// back in). For a pass that reads a whole mapped file once (the non-finite weight check) without
// leaving it all resident. No-op for memory outside the mapping (a GGUF opened from a buffer).
void vm_mmap_release(const vm_mmap *m, const void *p, size_t n);

typedef struct vm_afile {
    FILE *f;
    char *path;   // final name
    char *tmp;    // "<path>.tmp.<pid>"
} vm_afile;

// Refuses what vm_output_check refuses.
int vm_afile_open(vm_afile *a, const char *path);
// Flushes, fsyncs and renames into place; on any failure removes the temp file. Returns 0 or -1.
int vm_afile_commit(vm_afile *a);
void vm_afile_abort(vm_afile *a);   // removes the temp file (safe after commit: no-op)

// An output folder written as a set: files go into `tmp` ("<path>.tmp.<pid>", beside path, so the
// rename stays in one file system); commit puts it in place in one step (rename, or an atomic
// exchange with the existing folder, whose old files are then removed), so readers see the old
// set or the new one, never a mix. On any failure before the swap the old folder stays whole.
typedef struct vm_adir {
    char *path;   // final name (trailing '/' removed)
    char *tmp;
} vm_adir;

// Checks path with vm_output_dir_check(path, names), creates its missing parents and the empty
// temporary folder.
int vm_adir_open(vm_adir *d, const char *path, const char *const *names);
int vm_adir_commit(vm_adir *d);   // 0, or -1 (the temporary folder removed, the old one kept)
void vm_adir_abort(vm_adir *d);   // removes the temporary folder and its files (no-op after commit)

// mkdir -p: creates path and its missing parents; 0, or -1 with "cannot create folder 'X': why" or
// "'X' is not a folder".
int vm_mkdir_p(const char *path);
// Whole-file read into a NUL-terminated heap buffer (small text files: config, datasets).
char *vm_read_file(const char *path, size_t *len);
