#!/usr/bin/python3
"""Writes tests/golden/swag/moments.txt: a recorded SGD trajectory and its SWAG moments, for
tests/test_swag.c. Run from the repo root: /usr/bin/python3 tests/reference/swag_ref.py

Independent of vmoer's C code, written from the definitions of Maddox et al. 2019 ("A Simple
Baseline for Bayesian Uncertainty in Deep Learning", Algorithm 1):
  snapshots theta_1..theta_T (every c-th SGD iterate), theta_bar = mean_t theta_t,
  second moment theta2_bar = mean_t theta_t^2, diagonal variance = theta2_bar - theta_bar^2 (clamped
  at 0), deviation column of snapshot t = theta_t - (mean of snapshots 1..t), of which the last k
  form D (oldest first).
Here every quantity is computed in float64 from the snapshots directly (np.mean over the
stack, not running updates), so the C collector's running form is checked against the plain one.

The trajectory: plain SGD at a constant learning rate on a softmax regression (a router: W (N, D),
p = softmax(W u), loss = -log p_y) over minibatches of a fixed synthetic set, in float32 as the C
fit runs; the iterates are written with 9 significant digits (exact float32 round trip).
"""
import numpy as np

D, N = 4, 3            # W is (N, D): n = 12 parameters, laid out row-major like vmoer's W_r
STEPS, C, K = 37, 3, 5  # 37 steps, a snapshot every 3rd (12 snapshots), k = 5 columns (the ring wraps)
LR, B = np.float32(0.5), 4

rng = np.random.default_rng(20260221)
X = rng.normal(size=(64, D)).astype(np.float32)
W_true = rng.normal(size=(N, D)).astype(np.float32)
y = np.argmax(X @ W_true.T + rng.gumbel(size=(64, N)), axis=1)
W = (0.1 * rng.normal(size=(N, D))).astype(np.float32)

traj = []
for s in range(STEPS):
    idx = rng.choice(64, size=B, replace=False)
    u, t = X[idx], y[idx]
    z = u @ W.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(B), t] -= 1.0                       # d(-log p_y)/dz
    dW = (p.T @ u / B).astype(np.float32)           # (N, D)
    W = (W - LR * dW).astype(np.float32)
    traj.append(W.reshape(-1).copy())
traj = np.array(traj, dtype=np.float32)

snaps = traj[C - 1::C].astype(np.float64)          # the c-th, 2c-th, ... iterates
T = len(snaps)
mean = snaps.mean(axis=0)
var = np.maximum((snaps ** 2).mean(axis=0) - mean ** 2, 0.0)
devs = np.array([snaps[t] - snaps[:t + 1].mean(axis=0) for t in range(T)])
Dk = devs[-K:]                                      # the last k, oldest first

with open("tests/golden/swag/moments.txt", "w") as f:
    f.write("# tests/reference/swag_ref.py: D N steps c k, then the SGD iterates (one per line),\n")
    f.write("# then the mean, the diagonal variance and the k deviation columns (oldest first)\n")
    f.write(f"{D} {N} {STEPS} {C} {K}\n")
    for row in list(traj) + [mean, var] + list(Dk):
        f.write(" ".join(f"{v:.9g}" if isinstance(v, np.float32) else f"{v:.17g}" for v in row) + "\n")
print(f"wrote tests/golden/swag/moments.txt: {STEPS} iterates, {T} snapshots, k = {K}")
