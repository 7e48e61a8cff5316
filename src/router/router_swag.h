// SWA-Gaussian (Maddox et al. 2019) pieces of the swag router kind (router_swag.c) that tests reach
// directly: the moment collector over a flat parameter vector and the per-token logit sampler.
#pragma once
#include <stdint.h>
#include "router/router.h"
#include "util/rng.h"

// Running SWAG moments of a parameter vector theta (n) over the snapshots theta_1..theta_T:
//   mean_T = mean_{t<=T} theta_t, sq_T = mean_{t<=T} theta_t^2 (running, in double), and the
//   deviation column of snapshot t, dev_t = theta_t - mean_t (the mean INCLUDING theta_t, as in
//   the authors' code), of which the last k are kept (a ring).
typedef struct vm_swag_moments {
    int64_t n;           // parameters
    int k;               // deviation columns kept
    int64_t count;       // snapshots seen
    double *mean, *sq;   // (n) each
    float *dev;          // (k, n) ring: column count-1 at slot (count-1) % k
} vm_swag_moments;

int vm_swag_moments_init(vm_swag_moments *m, int64_t n, int k);
void vm_swag_moments_free(vm_swag_moments *m);
void vm_swag_moments_add(vm_swag_moments *m, const float *theta);
// The moments as stored: mean (n), var (n) = max(sq - mean^2, 0) (the diagonal variance), and
// dev (k, n): the kept columns oldest first, zero columns after them when fewer than k snapshots
// were seen. Returns the number of filled columns, min(count, k).
int vm_swag_moments_get(const vm_swag_moments *m, float *mean, float *var, float *dev);

// The logits of one token u (D) under S samples W_s = mean + sqrt(scale) (1/sqrt2 diag(sqrt var) z1
// + 1/sqrt(2(k-1)) Dev z2) of a swag router r on layer L, drawn from g exactly as its inference
// forward draws them: out (S, N). (The inference path of router_swag.c, exposed for the sampling
// statistics test.) 0 or -1.
int vm_swag_token_logits(const vm_router *r, const vm_router_layer *L, const float *u, int S, vm_rng *g,
                         float *out);
