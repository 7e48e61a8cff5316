// Analytic FLOPs of a forward (2 per multiply-add of every matrix product; elementwise work --
// norms, softmax, rope, swiglu -- is not counted): the one place the formulas live, for the cost
// accounting of `vmoer eval` (eval/cost.c) and the router benchmarks of `vmoer bench` (cli/).
// Router FLOPs are each kind's own formula (router.h vm_router_flops). All terms are integers below
// 2^53 except the attention span's, so sums of them are exact in any order.
#include "model/model.h"

double vm_flops_proj(const vm_model *m) {
    const vm_hparams *hp = &m->hp;
    const double D = hp->n_embd, qd = (double)hp->n_head * hp->head_dim, kvd = (double)hp->n_head_kv * hp->head_dim;
    return 2.0 * D * qd + 2.0 * 2.0 * D * kvd + 2.0 * qd * D;   // q, k, v, o
}

double vm_flops_attn(const vm_model *m, double span) {
    const double qd = (double)m->hp.n_head * m->hp.head_dim;
    return 2.0 * 2.0 * qd * span;   // q.k and att.v
}

double vm_flops_ffn(const vm_model *m, int il) {
    const vm_hparams *hp = &m->hp;
    const double D = hp->n_embd;
    if (!m->layers[il].is_moe) return 3.0 * 2.0 * D * hp->n_ff;          // gate, up, down
    return (double)hp->n_expert_used * 3.0 * 2.0 * D * hp->n_ff_exp;     // the K selected experts
}

double vm_flops_output(const vm_model *m) { return 2.0 * m->hp.n_embd * m->hp.n_vocab; }
