#!/bin/sh
# The cost model of docs/mpi.md: estimated wall time of one epoch of an OpenBookQA-size fit
# (VGLR-mf on 3 MoE layers) of a Granite-3B-shaped and a DeepSeek-16B-shaped MoE on 1, 8 and 64
# nodes, data-parallel, one rank per node. Two ways to exchange the gradients, both allgathers of
# bytes added in a fixed order: per example (the mpifit branch: every rank receives every example's
# gradient, B x G bytes a step, and adds them in batch order, the bits of one process for any N) and
# per rank (each rank first sums its own examples: R x G a step, bits that depend on N).
# Every input is a variable below (override from the environment); docs/mpi.md says where each
# number comes from. Prints the inputs, the per-model derived quantities and the table.
# usage: sh bench/mpi_cost_model.sh
awk -v Q="${Q:-4957}" -v TOK="${TOK:-500000}" -v NL_FIT="${NL_FIT:-3}" -v BATCH="${BATCH:-16}" \
    -v RATE="${RATE:-37.5}" -v CORES="${CORES:-32}" -v EFF="${EFF:-0.75}" \
    -v GBPS="${GBPS:-10}" -v LAT_US="${LAT_US:-50}" -v FIXED="${FIXED:-10}" -v SPAN="${SPAN:-64}" 'BEGIN {
    # name, L, D, heads, kv heads, head dim, experts N, used K, expert ffn, shared-expert ffn (sum),
    # dense layers, dense ffn, vocab
    n = 0
    m[++n] = "Granite-3B-shaped 32 1536 24 8 64 40 8 512 0 0 0 49155"
    m[++n] = "DeepSeek-16B-shaped 28 2048 16 16 128 64 6 1408 2816 1 10944 102400"
    printf "inputs: %d questions, %d tokens through the frozen prefix, VGLR-mf on the top %d MoE layers, one epoch,\n", Q, TOK, NL_FIT
    printf "  global batch max(%d, nodes) questions; %.1f tok/s per core for the Granite-3B-shaped Q8_0 forward\n", BATCH, RATE
    printf "  (other shapes at the same FLOP rate); %d cores a node at %.0f %% parallel efficiency; one rank a node;\n", CORES, 100 * EFF
    printf "  %g Gb/s, %g us per message; fp32 gradients (G per example or per rank); %g s fixed per run\n", GBPS, LAT_US, FIXED
    printf "  (model load, MPI start-up, sigma_p). comm/ex: every example gradient to every rank (B x G a step,\n"
    printf "  bits of one process, the mpifit design); comm/rank: each rank sums its examples first (R x G)\n\n"
    split(m[1], g, " ")
    gflop_ref = flops(g, "full")
    core_flops = RATE * gflop_ref   # FLOP/s of one core, from the measured Granite rate
    printf "%-20s %10s %10s %10s %11s %9s\n", "model", "GFLOP/tok", "prefix", "fit/tok", "grad MB", "tok/s/core"
    for (i = 1; i <= n; i++) {
        split(m[i], a, " ")
        full = flops(a, "full"); pre = flops(a, "prefix"); fit = flops(a, "fit")
        H = int(a[3] / 4); P = a[7]   # vglr-mf: W_t (H x D), W_mu and W_s (N x H)
        G[i] = NL_FIT * (a[3] * H + 2 * H * P) * 4
        name[i] = a[1]; tpre[i] = pre / core_flops; tfit[i] = fit / core_flops
        printf "%-20s %10.3f %10.3f %10.3f %11.2f %9.1f\n", a[1], full / 1e9, pre / 1e9, fit / 1e9, G[i] / 1e6, core_flops / full
    }
    printf "\n%-20s %6s %6s %9s %8s %11s %9s %12s %9s\n", "model", "nodes", "steps", "prefix s", "fit s", "comm/ex s", "total", "comm/rank s", "total"
    for (i = 1; i <= n; i++) {
        split("1 8 64", R, " ")
        for (k = 1; k <= 3; k++) {
            r = R[k]; node = CORES * EFF   # core-equivalents per node
            B = BATCH > r ? BATCH : r
            steps = int((Q + B - 1) / B)
            tp = TOK * tpre[i] / (node * r)
            tf = TOK * tfit[i] / (node * r)
            # ring allgather(v): r - 1 rounds of one latency; a rank receives all bytes but its own share
            te = r > 1 ? steps * ((r - 1) * LAT_US * 1e-6 + B * G[i] * (r - 1) / r * 8 / (GBPS * 1e9)) : 0
            tr = r > 1 ? steps * (r - 1) * (LAT_US * 1e-6 + G[i] * 8 / (GBPS * 1e9)) : 0
            printf "%-20s %6d %6d %9.0f %8.0f %11.1f %9s %12.1f %9s\n", name[i], r, steps, tp, tf, te,
                   hms(FIXED + tp + tf + te), tr, hms(FIXED + tp + tf + tr)
        }
    }
}
# FLOPs per token (2 per multiply-add, as src/model/flops.c): "full" forward, the frozen "prefix"
# (layers below the fitted ones, no output head) or a "fit" step of the fitted layers (forward and
# backward: three forwards of those layers; the loss head at the answer row only, neglected)
function flops(a, what,    L, D, qd, kvd, proj, attn, moe, dense, l, sum, nfit) {
    L = a[2]; D = a[3]; qd = a[4] * a[6]; kvd = a[5] * a[6]
    proj = 2 * D * qd + 4 * D * kvd + 2 * qd * D
    attn = 4 * qd * SPAN
    moe = a[8] * 6 * D * a[9] + 6 * D * a[10] + 2 * D * a[7]   # K experts, shared experts, router
    dense = 6 * D * a[12]
    nfit = NL_FIT
    sum = 0
    for (l = 0; l < L; l++) {
        lay = proj + attn + (l < a[11] ? dense : moe)
        if (what == "full" || (what == "prefix" && l < L - nfit)) sum += lay
        if (what == "fit" && l >= L - nfit) sum += 3 * lay
    }
    if (what == "full") sum += 2 * D * a[13]
    return sum
}
function hms(s) { return s < 60 ? sprintf("%.0fs", s) : s < 3600 ? sprintf("%dm%02ds", s / 60, s % 60) : sprintf("%dh%02dm", s / 3600, (s % 3600) / 60) }'
