// Ranks of one job: MPI when compiled in (VM_MPI) and launched by mpirun, else one process.
#include "util/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

#ifdef VM_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
#ifdef VM_MPI
static int g_joined = 0;
#endif

void vm_dist_shard(int n, int rank, int size, int *lo, int *hi) {
    const int q = n / size, r = n % size;
    *lo = rank * q + (rank < r ? rank : r);
    *hi = *lo + q + (rank < r);
}

int vm_dist_owner(int n, int size, int i) {
    const int q = n / size, r = n % size;   // the first r blocks hold q + 1 items
    return i < r * (q + 1) ? i / (q + 1) : r + (i - r * (q + 1)) / q;
}

int vm_dist_rank(void) { return g_rank; }
int vm_dist_size(void) { return g_size; }

#ifdef VM_MPI
// mpirun (Open MPI's ORTE/PRRTE) and other PMIx launchers set these in every rank's environment.
static int launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

// A failing collective returns its code (MPI_ERRORS_RETURN) and becomes one error line here.
static int mpi_fail(int rc, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    return vm_err("rank %d of %d: MPI %s failed: %.*s", g_rank, g_size, what, n, s);
}

int vm_dist_init(int *argc, char ***argv) {
    if (g_joined || !launched_by_mpi()) return 0;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return vm_err("MPI_Init_thread failed (code %d)", rc);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_joined = 1;
    return 0;
}

void vm_dist_finalize(void) {
    if (!g_joined) return;
    MPI_Finalize();
    g_joined = 0;
}

const char *vm_dist_library(void) {
    static char s[MPI_MAX_LIBRARY_VERSION_STRING];
    int n = 0;
    if (!s[0]) {
        MPI_Get_library_version(s, &n);
        s[strcspn(s, "\n,")] = 0;   // its first line, up to the build details
    }
    return s;
}
#else
int vm_dist_init(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }
void vm_dist_finalize(void) {}
const char *vm_dist_library(void) { return NULL; }
#endif

// Every rank passes n bytes (the same n on every rank); all receives size * n bytes, rank 0's first.
// Without MPI (or with one rank) g_size is 1 and the MPI branches are never taken.
static int allgather(const void *mine, size_t n, void *all) {
    if (g_size == 1) { if (n) memmove(all, mine, n); return 0; }
#ifdef VM_MPI
    if (n > INT_MAX) return vm_err("rank %d: %zu bytes are too many for one MPI message", g_rank, n);
    const int rc = MPI_Allgather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(rc, "allgather");
#else
    return vm_err("no MPI in this build, yet %d ranks", g_size);
#endif
}

int vm_dist_allgatherv(const void *mine, size_t n, void **all, size_t *counts) {
    *all = NULL;
    if (g_size == 1) {
        counts[0] = n;
        if (!(*all = vm_malloc(n ? n : 1))) return -1;
        if (n) memcpy(*all, mine, n);
        return 0;
    }
#ifdef VM_MPI
    uint64_t n64 = n, *c64 = vm_malloc((size_t)g_size * sizeof *c64);
    int *cnt = vm_malloc((size_t)g_size * sizeof *cnt), *disp = vm_malloc((size_t)g_size * sizeof *disp);
    int rc = -1;
    if (!c64 || !cnt || !disp) goto done;
    if (allgather(&n64, sizeof n64, c64)) goto done;
    uint64_t total = 0;
    for (int r = 0; r < g_size; r++) {
        if (total + c64[r] > INT_MAX) { vm_err("rank %d: %llu bytes gathered are too many for one MPI message", g_rank, (unsigned long long)(total + c64[r])); goto done; }
        disp[r] = (int)total; cnt[r] = (int)c64[r]; counts[r] = (size_t)c64[r];
        total += c64[r];
    }
    if (!(*all = vm_malloc(total ? total : 1))) goto done;
    const int e = MPI_Allgatherv(mine, (int)n, MPI_BYTE, *all, cnt, disp, MPI_BYTE, MPI_COMM_WORLD);
    if (e != MPI_SUCCESS) { mpi_fail(e, "allgatherv"); free(*all); *all = NULL; goto done; }
    rc = 0;
done:
    free(c64); free(cnt); free(disp);
    return rc;
#else
    return vm_err("no MPI in this build, yet %d ranks", g_size);
#endif
}

int vm_dist_same_u64(uint64_t v, const char *what) {
    if (g_size == 1) return 0;
    uint64_t *all = vm_malloc((size_t)g_size * sizeof *all);
    if (!all) return -1;
    if (allgather(&v, sizeof v, all)) { free(all); return -1; }
    for (int r = 1; r < g_size; r++)
        if (all[r] != all[0]) {
            const int rr = r;
            const uint64_t a = all[r], b = all[0];
            free(all);
            return vm_err("%s differs across ranks: rank %d has %016llx, rank 0 %016llx", what, rr,
                          (unsigned long long)a, (unsigned long long)b);
        }
    free(all);
    return 0;
}

// The logical OR of every rank's flag; *any_rank receives the lowest rank whose flag is set, or -1.
static int any_rank_set(int flag, int *any_rank) {
    *any_rank = flag ? g_rank : -1;
    if (g_size == 1) return 0;
    int *all = vm_malloc((size_t)g_size * sizeof *all);
    if (!all) return -1;
    const int f = flag != 0;
    if (allgather(&f, sizeof f, all)) { free(all); return -1; }
    *any_rank = -1;
    for (int r = 0; r < g_size && *any_rank < 0; r++)
        if (all[r]) *any_rank = r;
    free(all);
    return 0;
}

int vm_dist_check(int rc, const char *what) {
    int bad = -1;
    if (g_size == 1) return rc ? -1 : 0;
    if (any_rank_set(rc != 0, &bad)) return -1;
    if (bad < 0) return 0;
    // the failing rank's message travels to every rank (one allgatherv: lengths are per rank)
    const char *msg = rc ? vm_errmsg() : "";
    char mine[512];
    snprintf(mine, sizeof mine, "%s", msg);
    void *all = NULL;
    size_t *counts = vm_malloc((size_t)g_size * sizeof *counts);
    if (!counts || vm_dist_allgatherv(mine, rc ? strlen(mine) + 1 : 0, &all, counts)) {
        free(counts);
        return vm_err("%s: rank %d failed", what, bad);
    }
    size_t at = 0;
    for (int r = 0; r < bad; r++) at += counts[r];
    char text[512];
    snprintf(text, sizeof text, "%s", (const char *)all + at);
    free(all); free(counts);
    return vm_err("%s: rank %d: %s", what, bad, text);
}
