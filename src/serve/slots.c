// The slots of `vmoer serve` and the queue in front of them (serve_internal.h).
//
// Kernel threads: the slots share --threads cores. Each slot thread sets its own OpenMP team size
// (the ICV is per thread in libgomp) to max(1, threads / P): with P = 1 one request uses every
// core; with P >= cores each slot runs its kernels on one thread and the slots themselves fill
// the cores, with no OpenMP team waiting on another slot's core.
#include "serve/serve_internal.h"
#include "train/adapter.h"
#include "util/err.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_job_release(srv *s, srv_job *j) {
    (void)s;
    if (--j->refs == 0) srv_job_free(j);
}

int srv_job_emit(srv *s, srv_job *j, const char *bytes, size_t n) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (j->out_len + n + 1 > j->out_cap) {
        size_t cap = j->out_cap ? j->out_cap : 4096;
        while (cap < j->out_len + n + 1) cap *= 2;
        char *p = realloc(j->out, cap);
        if (p) { j->out = p; j->out_cap = cap; }
        else rc = vm_err("serve: out of memory");
    }
    if (!rc) {
        memcpy(j->out + j->out_len, bytes, n);
        j->out_len += n;
        j->out[j->out_len] = 0;
    }
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int srv_enqueue(srv *s, srv_job *j) {
    pthread_mutex_lock(&s->mu);
    // P requests run and `queue` more wait; a request that finds a slot free waits for no one
    if (s->draining || s->stopping || s->busy + s->q_len >= s->n_slots + s->o.queue) {
        s->n_rejected++;
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    j->refs++;
    s->q[(s->q_head + s->q_len) % (s->n_slots + s->o.queue)] = j;
    s->q_len++;
    s->n_requests++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void *slot_main(void *arg) {
    srv_slot *sl = arg;
    srv *s = sl->s;
    const int per = s->o.threads / s->n_slots;
    omp_set_num_threads(per > 1 ? per : 1);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->q_len && !s->stopping) pthread_cond_wait(&s->work, &s->mu);
        if (!s->q_len) break;   // stopping, nothing left
        srv_job *j = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % (s->n_slots + s->o.queue);
        s->q_len--;
        if (j->cancelled) {   // its client left while it waited
            s->n_cancelled++;
            if (!s->o.quiet) fprintf(stderr, "vmoer serve: %s: client gone while queued: dropped\n", j->id);
            j->done = 1;
            j->finish = "cancelled";
            pthread_cond_broadcast(&j->cond);
            srv_job_release(s, j);
            continue;
        }
        s->busy++;
        j->slot = sl->idx;
        pthread_mutex_unlock(&s->mu);
        srv_run_job(s, sl, j);
        pthread_mutex_lock(&s->mu);
        s->busy--;
        if (j->cancelled) {
            s->n_cancelled++;
            if (!s->o.quiet)
                fprintf(stderr, "vmoer serve: %s: client gone: stopped after %d tokens, slot %d free\n", j->id, j->n_gen, sl->idx);
        }
        j->done = 1;
        pthread_cond_broadcast(&j->cond);
        srv_job_release(s, j);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int srv_slots_start(srv *s) {
    if (!(s->slots = vm_calloc((size_t)s->n_slots, sizeof *s->slots)) ||
        !(s->q = vm_calloc((size_t)(s->n_slots + s->o.queue), sizeof *s->q))) return -1;
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        sl->s = s;
        sl->idx = i;
        // one model handle per slot: routers keep per-call state; the file is mapped, not copied
        if (!(sl->m = vm_model_load(s->o.model_path))) return -1;
        if (s->o.adapter_path && vm_adapter_apply(sl->m, s->o.adapter_path)) return -1;
        if (i == 0) {
            if (!(s->tok = vm_tokenizer_from_gguf(sl->m->gguf))) return -1;
            s->m0 = sl->m;
            s->n_ctx = s->o.n_ctx > 0 && (s->o.n_ctx < sl->m->hp.n_ctx_train || sl->m->hp.n_ctx_train <= 0)
                           ? s->o.n_ctx : sl->m->hp.n_ctx_train;
            if (s->n_ctx <= 0) return vm_err("serve: the model gives no context length; set --ctx");
        }
        if (!(sl->g = vm_gen_new(sl->m, s->tok, s->n_ctx))) return -1;
    }
    for (int i = 0; i < s->n_slots; i++) {
        if (pthread_create(&s->slots[i].th, NULL, slot_main, &s->slots[i])) return vm_err("serve: cannot start slot threads");
        s->slots[i].started = 1;
    }
    return 0;
}

void srv_slots_stop(srv *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; s->slots && i < s->n_slots; i++)
        if (s->slots[i].started) pthread_join(s->slots[i].th, NULL);
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        vm_gen_free(s->slots[i].g);
        if (s->slots[i].m) vm_model_free(s->slots[i].m);
    }
    if (s->tok) vm_tokenizer_free((vm_tokenizer *)s->tok);
    free(s->slots);
    free(s->q);
    s->slots = NULL;
    s->q = NULL;
}
