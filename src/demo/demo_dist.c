// `mpirun -np N vmoer demo` (vm_demo_opts.distributed): every rank loads the model and the items and
// computes the frozen prefix itself; the (method, seed) jobs of each phase are split over the ranks
// by a fixed assignment, and after the phase every rank receives every job's result (the records
// below, in job order) and every adapter file, so the next phase and the outputs see what one
// process would have computed. Only rank 0 writes the output folder; the others keep their adapters
// in a private folder under $TMPDIR that is removed at the end.
#include "demo/demo_internal.h"
#include "train/adapter.h"
#include "util/dist.h"
#include "util/fileio.h"
#include "util/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A growing byte buffer (the records of one rank); ok goes 0 on the first failed allocation.
typedef struct bbuf { unsigned char *p; size_t n, cap; int ok; } bbuf;

static void put(bbuf *b, const void *x, size_t n) {
    if (!b->ok) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) { b->ok = 0; return; }
        b->p = q; b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, x, n);
    b->n += n;
}

// Reads n bytes at *at of a record of `len` bytes; -1 when the record is too short.
static int get(const unsigned char *p, size_t len, size_t *at, void *x, size_t n) {
    if (*at + n > len) return -1;
    if (n) memcpy(x, p + *at, n);
    *at += n;
    return 0;
}

int dm_dist_begin(dm *d) {
    d->rank = d->dist ? vm_dist_rank() : 0;
    d->size = d->dist ? vm_dist_size() : 1;
    if (d->rank == 0) return dm_stage_dir_open(d);
    // another rank's adapters: a private folder (any node's local disk), removed by dm_dist_end
    const char *tmp = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/vmoer-demo-rank%d", tmp && *tmp ? tmp : "/tmp", d->rank);
    d->adir = vm_malloc(sizeof *d->adir);
    if (!d->adir) return -1;
    static const char *const names[] = { "adapters", NULL };
    if (vm_adir_open(d->adir, path, names)) { free(d->adir); d->adir = NULL; return vm_err_prefix("demo: rank %d", d->rank); }
    snprintf(d->stage_dir, sizeof d->stage_dir, "%s", d->adir->tmp);
    char sub[4300];
    snprintf(sub, sizeof sub, "%s/adapters", d->adir->tmp);
    return vm_mkdir_p(sub) ? vm_err_prefix("demo: rank %d", d->rank) : 0;
}

// The options that decide the results (paths, verbosity and the output folder aside).
static uint64_t opts_hash(const vm_demo_opts *o) {
    vm_demo_opts c;
    memcpy(&c, o, sizeof c);
    c.model_path = c.data_dir = c.outdir = NULL;
    c.verbose = 0;
    c.distributed = 0;
    return vm_fnv1a(VM_FNV1A_INIT, &c, sizeof c);
}

int dm_dist_same(dm *d) {
    if (d->size == 1) return 0;
    uint64_t data = VM_FNV1A_INIT;
    for (int s = 0; s < DM_N_SETS(d); s++) {
        const uint64_t f = vm_dataset_fingerprint(&d->sets[s].ds);
        data = vm_fnv1a(data, &f, sizeof f);
    }
    if (vm_dist_same_u64(vm_model_identity(d->wk[0].m), "demo: the model") ||
        vm_dist_same_u64(data, "demo: the data sets") || vm_dist_same_u64(opts_hash(d->o), "demo: the options"))
        return -1;
    return 0;
}

void dm_dist_assign(dm *d, dm_job *jobs, int n) {
    // largest first, each to the least loaded rank (lowest on ties): the same on every rank
    double load[d->size > 0 ? d->size : 1];
    int done[n > 0 ? n : 1];
    memset(done, 0, sizeof done);
    for (int r = 0; r < d->size; r++) load[r] = 0;
    for (int k = 0; k < n; k++) {
        int b = -1, w = 0;
        for (int i = 0; i < n; i++) if (!done[i] && (b < 0 || jobs[i].units > jobs[b].units)) b = i;
        for (int q = 1; q < d->size; q++) if (load[q] < load[w]) w = q;
        done[b] = 1; jobs[b].rank = w; load[w] += jobs[b].units;
    }
}

// The local path of a fit's adapter, and whether the job wrote one (a reused grid fit did not).
static int job_adapter(const dm *d, const dm_job *j, char *path, size_t n) {
    const dm_method *me = &dm_methods[j->method];
    if (j->grid >= 0) { dm_adapter_path(d, path, n, me->kind, 0, j->grid); return 1; }
    if (!me->fit) return 0;
    if (j->reuse >= 0) { dm_adapter_path(d, path, n, me->kind, 0, j->reuse); return 0; }
    dm_adapter_path(d, path, n, me->kind, j->seed_idx, -1);
    return 1;
}

static void put_file(bbuf *b, const char *path) {
    size_t len = 0;
    char *data = vm_read_file(path, &len);
    if (!data) { b->ok = 0; return; }
    const uint64_t n = len;
    put(b, &n, sizeof n);
    put(b, data, len);
    free(data);
}

static int get_file(const unsigned char *p, size_t len, size_t *at, const char *path) {
    uint64_t n;
    if (get(p, len, at, &n, sizeof n) || *at + n > len) return -1;
    vm_afile a;
    if (vm_afile_open(&a, path)) return -1;
    if (n && fwrite(p + *at, 1, n, a.f) != n) { vm_afile_abort(&a); return vm_err("demo: cannot write %s", path); }
    *at += n;
    return vm_afile_commit(&a);
}

static void put_stab(bbuf *b, const vm_stability *s) {
    const int32_t h[3] = { s->n_gamma, s->n_layer, s->n_items };
    const size_t gl = (size_t)s->n_gamma * s->n_layer;
    put(b, h, sizeof h);
    put(b, &s->L_bar, sizeof s->L_bar);
    put(b, &s->n_tokens, sizeof s->n_tokens);
    put(b, s->gamma, (size_t)s->n_gamma * sizeof(double));
    put(b, s->layers, (size_t)s->n_layer * sizeof(int));
    put(b, s->jac, gl * sizeof(double));
    put(b, s->jac_mean, (size_t)s->n_gamma * sizeof(double));
    put(b, s->changed, (size_t)s->n_gamma * sizeof(double));
    put(b, s->jac_item, (size_t)s->n_items * gl * sizeof(double));
    put(b, s->item_tokens, (size_t)s->n_items * sizeof(int));
}

static int get_stab(const unsigned char *p, size_t len, size_t *at, vm_stability *s) {
    int32_t h[3];
    memset(s, 0, sizeof *s);
    if (get(p, len, at, h, sizeof h) || h[0] < 0 || h[1] < 0 || h[2] < 0) return -1;
    s->n_gamma = h[0]; s->n_layer = h[1]; s->n_items = h[2];
    const size_t gl = (size_t)s->n_gamma * s->n_layer;
    if (get(p, len, at, &s->L_bar, sizeof s->L_bar) || get(p, len, at, &s->n_tokens, sizeof s->n_tokens)) return -1;
    // each array at least one byte, so an empty one is not mistaken for a failed allocation
    s->gamma = vm_malloc((size_t)s->n_gamma * sizeof(double) + 1);
    s->layers = vm_malloc((size_t)s->n_layer * sizeof(int) + 1);
    s->jac = vm_malloc(gl * sizeof(double) + 1);
    s->jac_mean = vm_malloc((size_t)s->n_gamma * sizeof(double) + 1);
    s->changed = vm_malloc((size_t)s->n_gamma * sizeof(double) + 1);
    s->jac_item = vm_malloc((size_t)s->n_items * gl * sizeof(double) + 1);
    s->item_tokens = vm_malloc((size_t)s->n_items * sizeof(int) + 1);
    if (!s->gamma || !s->layers || !s->jac || !s->jac_mean || !s->changed || !s->jac_item || !s->item_tokens) return -1;
    return get(p, len, at, s->gamma, (size_t)s->n_gamma * sizeof(double)) ||
           get(p, len, at, s->layers, (size_t)s->n_layer * sizeof(int)) ||
           get(p, len, at, s->jac, gl * sizeof(double)) ||
           get(p, len, at, s->jac_mean, (size_t)s->n_gamma * sizeof(double)) ||
           get(p, len, at, s->changed, (size_t)s->n_gamma * sizeof(double)) ||
           get(p, len, at, s->jac_item, (size_t)s->n_items * gl * sizeof(double)) ||
           get(p, len, at, s->item_tokens, (size_t)s->n_items * sizeof(int)) ? -1 : 0;
}

// One finished job of this rank: its index, its fit record or run, and the adapter it wrote.
static void put_job(bbuf *b, const dm *d, const dm_job *jobs, int i) {
    const dm_job *j = &jobs[i];
    const int32_t ji = i;
    put(b, &ji, sizeof ji);
    char path[4400];
    const int wrote = job_adapter(d, j, path, sizeof path);
    if (j->grid >= 0) {
        put(b, &d->grid[j->method][j->grid], sizeof(dm_fit));
    } else {
        const dm_run *r = &d->runs[j->method][j->seed_idx];
        put(b, &r->fit, sizeof r->fit);
        const int32_t h[2] = { r->seed_idx, r->done };
        put(b, h, sizeof h);
        put(b, &r->T, sizeof r->T);
        put(b, &r->flops_ratio, sizeof r->flops_ratio);
        put(b, &r->params_extra, sizeof r->params_extra);
        put(b, &r->sec_eval, sizeof r->sec_eval);
        for (int s = 0; s < DM_N_SETS(d); s++) {
            const int32_t has = (r->res[s] ? 1 : 0) | (r->ts[s] ? 2 : 0);
            put(b, &has, sizeof has);
            if (r->res[s]) put(b, r->res[s], (size_t)d->sets[s].n * sizeof(dm_res));
            if (r->ts[s]) put(b, r->ts[s], (size_t)d->sets[s].n * sizeof(dm_res));
        }
        put_stab(b, &r->stab);
    }
    if (wrote) put_file(b, path);
}

static int get_res(const dm *d, int s, const unsigned char *p, size_t len, size_t *at, dm_res **out) {
    const size_t n = (size_t)d->sets[s].n * sizeof(dm_res);
    if (!(*out = vm_malloc(n ? n : 1))) return -1;
    return get(p, len, at, *out, n);
}

static int get_job(dm *d, dm_job *jobs, int n_jobs, int rank, const unsigned char *p, size_t len, size_t *at) {
    int32_t ji;
    if (get(p, len, at, &ji, sizeof ji) || ji < 0 || ji >= n_jobs || jobs[ji].rank != rank) return -1;
    const dm_job *j = &jobs[ji];
    char path[4400];
    const int wrote = job_adapter(d, j, path, sizeof path);
    dm_fit *f;
    if (j->grid >= 0) {
        f = &d->grid[j->method][j->grid];
        if (get(p, len, at, f, sizeof *f)) return -1;
    } else {
        dm_run *r = &d->runs[j->method][j->seed_idx];
        f = &r->fit;
        int32_t h[2];
        if (get(p, len, at, f, sizeof *f) || get(p, len, at, h, sizeof h) || get(p, len, at, &r->T, sizeof r->T) ||
            get(p, len, at, &r->flops_ratio, sizeof r->flops_ratio) || get(p, len, at, &r->params_extra, sizeof r->params_extra) ||
            get(p, len, at, &r->sec_eval, sizeof r->sec_eval))
            return -1;
        r->seed_idx = h[0]; r->done = h[1];
        for (int s = 0; s < DM_N_SETS(d); s++) {
            int32_t has;
            if (get(p, len, at, &has, sizeof has)) return -1;
            if ((has & 1) && get_res(d, s, p, len, at, &r->res[s])) return -1;
            if ((has & 2) && get_res(d, s, p, len, at, &r->ts[s])) return -1;
        }
        if (get_stab(p, len, at, &r->stab)) return -1;
    }
    // the fit's adapter in this rank's folder: the next phase (a reused grid fit, swag from map) loads it
    if (dm_methods[j->method].fit) snprintf(f->path, sizeof f->path, "%s", path);
    return wrote ? get_file(p, len, at, path) : 0;
}

int dm_dist_gather(dm *d, dm_job *jobs, int n, int rc) {
    if (d->size == 1) return rc;
    bbuf b = { .ok = 1 };
    for (int i = 0; i < n && rc == 0; i++) if (jobs[i].rank == d->rank) put_job(&b, d, jobs, i);
    if (rc == 0 && !b.ok) rc = vm_err("demo: rank %d: cannot pack its results", d->rank);
    if ((rc = vm_dist_check(rc, "demo"))) { free(b.p); return rc; }
    void *all = NULL;
    size_t counts[d->size];
    rc = vm_dist_allgatherv(b.p, b.n, &all, counts);
    free(b.p);
    size_t base = 0;
    for (int r = 0; r < d->size && rc == 0; r++) {
        const unsigned char *p = (const unsigned char *)all + base;
        size_t at = 0;
        // this rank's own results are in place; the others' in job order
        while (r != d->rank && at < counts[r] && rc == 0)
            if (get_job(d, jobs, n, r, p, counts[r], &at))
                rc = vm_err("demo: the results of rank %d do not match its jobs (%s)", r, vm_errmsg());
        base += counts[r];
    }
    free(all);
    return rc;
}

void dm_dist_end(dm *d, int rc) {
    if (d->rank == 0) {
        if (rc) dm_stage_dir_abort(d);
        return;
    }
    dm_stage_dir_abort(d);   // another rank's private adapters: never an output
}
