// Loader helpers shared by model.c and the arch_<name>.c files (not part of the public interface).
#pragma once
#include "model/model.h"
#include "model/train.h"
#include "gguf/tensor_names.h"

// Looks up `name` and checks its shape against ne (n_dims entries; trailing dims must be 1) and
// that vmoer can compute its type. Returns 0 (found, *out filled), 1 (absent and !required) or
// -1 with a one-line error naming the tensor and the expected shape.
int vm_model_tensor(const vm_model *m, vm_tensor *out, const char *name, int n_dims,
                    const int64_t *ne, int required);
// A norm weight vector of n values as f32: points into the mapping when stored as aligned f32,
// otherwise converted once into m->f32_store at *used (advanced). Returns 0 or -1.
// The token embedding (which sets hp.n_vocab from its rows) and the output matrix, tied to the
// embedding when the file has none: the same in every architecture. 0 or -1.
int vm_model_embd_output(vm_model *m);
int vm_model_norm(vm_model *m, const char *name, int64_t n, const float **out, size_t *used);

// Hyper-parameter keys "<arch>.<suffix>": 0 found, 1 absent (default kept), -1 error.
int vm_model_key_int(const vm_model *m, const char *suffix, int *out, int required, int lo, int hi);
int vm_model_key_f32(const vm_model *m, const char *suffix, float *out, int required);

// Per architecture: fills m->hp, allocates m->layers / m->routers / m->f32_store and the views.
int vm_arch_llama_load(vm_model *m);
int vm_arch_granitemoe_load(vm_model *m);
int vm_arch_qwen2moe_load(vm_model *m);
int vm_arch_qwen3moe_load(vm_model *m);
int vm_arch_olmoe_load(vm_model *m);
int vm_arch_deepseek_load(vm_model *m);
int vm_arch_deepseek2_load(vm_model *m);   // arch_deepseek2.c (+ attn_mla.c)
// Pieces of the llama loader the other families reuse (arch_llama.c): the common hyper-parameter
// keys (rope_neox 0, gate_conv softmax-selected: the caller overrides) and one layer's experts
// (stacked *_exps or per-expert), into ly->exp_gate/up/down.
int vm_arch_llama_hparams(vm_model *m);
int vm_arch_load_experts(vm_model *m, int il, vm_layer *ly);

// What differs between the llama-like MoE families, for the shared loader (arch_moe.c).
typedef struct vm_arch_moe_spec {
    int norm_default;     // renormalise the K gates when expert_weights_norm is absent
    int norm_selected;    // renormalised means softmax over the selected logits (same numbers;
                          // the convention name method.md uses for the family)
    int shexp;            // 0 none, 1 optional (tensors present => used), 2 required
    int shexp_gated;      // the shared expert has a sigmoid gate ffn_gate_inp_shexp
    int ff_exp_default;   // expert_feed_forward_length absent: 0 = n_ff, 1 = n_ff / n_expert_used
} vm_arch_moe_spec;
// Reads the MoE keys (expert_weights_norm/scale, leading_dense_block_count, shared expert sizes),
// then every tensor: llama's plus optional QKV biases, Q/K norms (hp.qk_norm set by the caller),
// dense leading blocks and the shared expert. hp.rope_neox and the µP scales are set by the caller.
int vm_arch_moe_load(vm_model *m, const vm_arch_moe_spec *spec);

// ---- the decoder block, shared by inference (model.c) and training (backward.c)

// Where one block reads and writes its activations for B tokens at positions n_past .. n_past+B-1.
// Inference points every layer at the same scratch and aliases the residual stream
// (x_in == x_mid == x_out) and the SwiGLU output (hs == hb); training gives each layer its own
// slices and keeps them for the backward pass (keep = 1).
typedef struct vm_block_io {
    const float *x_in;      // (B,D) residual stream entering the block
    float *x_mid;           // (B,D) x_in + attention output ("ffn_inp"); may alias x_in
    float *x_out;           // (B,D) x_mid + FFN output ("l_out"); may alias x_mid
    float *xb_att;          // (B,D) attn_norm(x_in)
    float *q;               // (B,qd) queries after rope
    float *kc, *vc;         // (n_past+B, kvd) keys (after rope) and values; rows n_past.. are written
    float *att;             // (B,qd) attention output before wo
    float *ao;              // (B,D) scratch: attention output, then FFN output
    float *xb_ffn;          // (B,D) ffn_norm(x_mid): the FFN input and the router input u
    float *hb, *hb2;        // (rows,F) gate pre-activation and up projection; rows = B (dense),
                            // per expert B (inference) or B*K slots (keep)
    float *hs;              // (rows,F) silu(hb) * hb2; may alias hb when nothing is kept
    float *q_pre, *k_pre;   // (B,qd), (B,kvd) Q and K projections before their RMSNorm (hp.qk_norm),
                            // kept for the backward; NULL: normalised in place
    // shared expert (ly->has_shexp): out = g * down(silu(gate u) * up u), g = sigmoid(w . u) or 1
    float *sh_hb, *sh_hb2;  // (B,Fs) its gate pre-activation and up projection
    float *sh_hs;           // (B,Fs) silu(sh_hb) * sh_hb2; may alias sh_hb
    float *sh_y;            // (B,D) its output before the gate
    float *sh_g;            // (B) the gate g
    // MoE only
    float *r_logits, *r_probs, *r_gates;   // (B,N), (B,N), (B,K) router outputs
    int32_t *r_sel;                        // (B,K)
    float *r_unc;                          // (B,VM_UNC_COUNT) the router's read-outs (trace point
                                           // "ffn_moe_unc"; NaN where the kind has none), or NULL
    float *xe;              // (B,D) scratch: the tokens routed to one expert
    float *ye;              // (rows,D) expert outputs per slot
    int32_t *slot_tk;       // (rows) slot -> t*K + k (token t's k-th choice)
    int32_t *e_off;         // (N+1) keep: slots of expert e are [e_off[e], e_off[e+1]); else NULL
    float *mla;             // (B, vm_mla_scratch(m)) deepseek2 attention scratch; NULL elsewhere
    int keep;               // 1: slots are not reused across experts
    const int32_t *pos;     // (B) positions
    int n_past;
    const vm_tree *tree;    // B rows of a tree batch (n_past 0): attention per segment (tree.c); NULL: causal
    float *tree_kv;         // with tree: vm_tree_attn_scratch(B, kvd) floats
    vm_trace_fn trace;      // trace points (NULL: none)
    void *ud;
} vm_block_io;

// One pre-norm decoder block (attention, then dense SwiGLU FFN or routed SwiGLU experts).
int vm_block_forward(const vm_model *m, int il, const vm_block_io *io, int B, vm_rng *rng);
// The attention's q.k scale: attention.scale when the family has one (granitemoe), else 1/sqrt(head_dim).
float vm_model_kq_scale(const vm_hparams *hp);
// logits (B, n_vocab) /= logit_scale (granitemoe µP; 1 elsewhere).
void vm_model_scale_logits(const vm_model *m, float *logits, int B);

// ---- attention over a tree batch (tree.c; the tree layout is train.h's vm_tree)
// Floats of scratch the two functions below need for T rows of kvd key floats.
size_t vm_tree_attn_scratch(int T, size_t kvd);
// out, q (T, n_head*hd); kc, vc (T, n_head_kv*hd) keys after rope and values of every row (vc may
// be kc). Each segment's queries attend over its ancestors' rows, then its own rows causally.
void vm_tree_attention_forward(const vm_tree *t, float *out, const float *q, const float *kc,
                               const float *vc, int n_head, int n_head_kv, int hd, float scale,
                               float *scratch);
// Backward (same arguments): dq += ..., dk, dv (T, n_head_kv*hd) += ... (dv distinct from dk).
void vm_tree_attention_backward(const vm_tree *t, float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *kc, const float *vc, int n_head,
                                int n_head_kv, int hd, float scale, float *scratch);
