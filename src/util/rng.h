// Explicit random streams (xoshiro256**) so every sampled result is reproducible for a seed.
#pragma once
#include <stdint.h>
#include "vmoer.h"   // the public declarations of some of these (exported from libvmoer.so)

typedef struct vm_rng { uint64_t s[4]; } vm_rng;

void vm_rng_seed(vm_rng *r, uint64_t seed);
// An independent stream derived from (seed, stream id): per layer, per thread, per example.
void vm_rng_seed2(vm_rng *r, uint64_t seed, uint64_t stream);
uint64_t vm_rng_u64(vm_rng *r);
double vm_rng_uniform(vm_rng *r);   // [0, 1)
float vm_rng_normal(vm_rng *r);     // N(0, 1), Box-Muller
float vm_rng_gumbel(vm_rng *r);     // Gumbel(0, 1)
