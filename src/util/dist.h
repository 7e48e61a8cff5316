// Several processes of one job (MPI ranks, `mpirun -np N vmoer ...`) or, without MPI, one.
//
// Built with MPI (make MPI=1, or found by pkg-config ompi) the program joins MPI only when a
// launcher started it (mpirun sets OMPI_COMM_WORLD_SIZE / PMIX_RANK): a plain `vmoer fit` stays one
// process and never touches MPI, and so does the library loaded into another program (Python),
// which never calls vm_dist_init. Every function below works in the one-process case (rank 0 of
// 1), so callers write the sharded code once.
//
// Determinism is the callers' contract: nothing here reduces floating-point numbers (an MPI sum's
// order depends on the number of ranks); ranks exchange bytes in rank order and each caller adds
// them up in its own fixed order, so results are bit-identical for every N.
// Only the thread that called vm_dist_init may call these (MPI_THREAD_FUNNELED).
#pragma once
#include <stddef.h>
#include <stdint.h>

// Joins the job when launched by an MPI launcher; 0, or -1 with an error. Idempotent.
int vm_dist_init(int *argc, char ***argv);
// Leaves the job (after the last collective); a no-op in one process.
void vm_dist_finalize(void);
int vm_dist_rank(void);
int vm_dist_size(void);
// A description of the MPI library compiled in ("Open MPI v4.1.4, ..."), or NULL without MPI.
const char *vm_dist_library(void);

// [*lo, *hi): rank r's contiguous block of n items (the first n % size ranks take one more).
void vm_dist_shard(int n, int rank, int size, int *lo, int *hi);
// The rank whose vm_dist_shard block of n items holds item i.
int vm_dist_owner(int n, int size, int i);

// Every rank passes its own n bytes; *all (vm_malloc'd, caller frees) receives every rank's bytes in
// rank order and counts[size] (caller's array) their lengths. With one rank a copy of mine.
int vm_dist_allgatherv(const void *mine, size_t n, void **all, size_t *counts);
// Refuses a job whose ranks disagree on v (a model's or a dataset's checksum, an option): -1 with
// "<what> differs across ranks: rank R has ..., rank 0 ..." on every rank.
int vm_dist_same_u64(uint64_t v, const char *what);
// After a step every rank ran on its own share: 0 when rc is 0 on every rank, else -1 on every rank
// with "<what>: rank R: <R's error>" (the lowest failing rank), so rank 0 can report a failure that
// happened elsewhere and no rank waits in a later collective for one that gave up.
int vm_dist_check(int rc, const char *what);
