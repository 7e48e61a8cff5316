// Adapter files: the trained router parameters of some layers of one base model, as a GGUF.
//   general.type = "adapter", general.architecture = the base arch
//   vmoer.router.kind (str), vmoer.router.layers (u32 array, ascending), vmoer.router.beta (f32),
//   vmoer.router.samples, .hidden, .members (u32), .temp, .dropout, .member_noise (f32): the options
//   the routers are re-created with (vm_router_opts); swag adapters also .swag_rank (u32) and
//   .swag_scale (f32)
//   vmoer.base.arch (str), vmoer.base.n_layer, .n_embd, .n_expert, .n_expert_used, .n_vocab (u32),
//   vmoer.base.checksum (u64, vm_model_router_checksum)
//   tensors blk.<layer>.<param name> (f32), one per router parameter (e.g. blk.3.vglr.w_t).
//   Optional LoRA on attention Q/K/V (model/lora.h), when the model carries one: vmoer.lora.rank
//   (u32), vmoer.lora.alpha (f32), vmoer.lora.layers (u32 array) and tensors blk.<layer>.lora.q.a,
//   .q.b, .k.a, .k.b, .v.a, .v.b.
// vm_adapter_apply refuses an adapter whose base keys or checksum differ from the model's.
#pragma once
#include <stdint.h>
#include "gguf/gguf.h"
#include "model/model.h"
#include "router/router.h"

#define VM_ADAPTER_MAX_LAYERS 512

typedef struct vm_adapter_info {
    char kind[32];
    int n_layers;
    int layers[VM_ADAPTER_MAX_LAYERS];
    vm_router_opts opts;   // beta = the weight actually used (>= 0)
    int lora_rank;         // 0: no LoRA in the adapter
    float lora_alpha;
    int n_lora;
    int lora_layers[VM_ADAPTER_MAX_LAYERS];
} vm_adapter_info;

// Identity of a base model's routing without reading the whole file: FNV-1a 64 over the
// architecture name, n_layer, n_embd, n_expert, n_expert_used, n_vocab and gate convention, then
// for every MoE layer its index, W_r's type, shape and raw bytes (only the router tensors are read).
uint64_t vm_model_router_checksum(const vm_model *m);
// Identity of a model as loaded, for ranks of one job to compare (util/dist.h): the file's sampled
// checksum (gguf.h vm_gguf_sample_checksum: size, header, windows of every tensor), the routing
// above, and the routers now installed (an adapter's or a fresh kind's: kind and parameters).
uint64_t vm_model_identity(const vm_model *m);

// Writes the parameters of m's routers at a->layers (the routers must be of kind a->kind and have
// parameters), and every LoRA m carries (a->lora_* are ignored: taken from the model). extra (may be NULL) adds more keys (e.g. fit statistics) before writing. Atomic.
int vm_adapter_write(const vm_model *m, const vm_adapter_info *a, const char *path,
                     void (*extra)(vm_gguf_writer *w, void *ud), void *ud);
// Reads an adapter, checks it belongs to m, creates the routers and loads their parameters, and
// installs them. samples > 0 overrides the stored inference sample count. info may be NULL.
// On failure m is unchanged.
int vm_adapter_apply_ex(vm_model *m, const char *path, int samples, vm_adapter_info *info);
int vm_adapter_apply(vm_model *m, const char *path);
