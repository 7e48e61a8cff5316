// Scoring one item sequence by sequence (eval/task_score.h).
#include "eval/task_score.h"
#include "util/err.h"

#include <stdlib.h>

int vm_task_score(const vm_model *m, vm_ctx *c, const vm_task_input *in, vm_task_result *r) {
    const int V = vm_model_n_vocab(m);
    if (in->mode == VM_TASK_LETTER) {
        vm_ctx_reset(c);
        if (vm_ctx_eval(c, in->seq[0].tokens, in->seq[0].n, NULL) < 0) return -1;
        vm_task_result_letter(in, vm_ctx_last_logits(c), r);
        return 0;
    }
    int maxn = 0;
    for (int s = 0; s < in->n_seq; s++) if (in->seq[s].n > maxn) maxn = in->seq[s].n;
    size_t sz;
    if (vm_size_mul((size_t)maxn, (size_t)V * sizeof(float), &sz)) return -1;
    float *lg = vm_malloc(sz);
    if (!lg) return -1;
    double ll[VM_TASK_MAX_SEQ];
    for (int s = 0; s < in->n_seq; s++) {
        const vm_task_seq *q = &in->seq[s];
        vm_ctx_reset(c);
        if (vm_ctx_eval(c, q->tokens, q->n, lg) < 0) { free(lg); return -1; }
        ll[s] = vm_task_seq_loglik(in, s, lg + (size_t)(q->n_ctx - 1) * V, V, NULL, 0);
    }
    free(lg);
    vm_task_result_loglik(in, ll, r);
    return 0;
}
