#!/usr/bin/python3
"""Golden values for src/eval/metrics.* (tests/test_metrics.c).

Written from the definitions in shared/docs/method.md §5.2 and the conventions documented in
src/eval/metrics.h, never from the C code. Independent oracles where they exist:
scikit-learn (roc_auc_score, average_precision_score, roc_curve, log_loss, brier_score_loss,
accuracy_score), scipy (Mann-Whitney U, brentq / bounded minimisation for temperature scaling).
The bootstrap replays the published xoshiro256** / splitmix64 generators to get the same resamples.

Run once from the repository root:  /usr/bin/python3 tests/reference/metrics_ref.py
Writes tests/golden/metrics/{cls,ood,aurc,boot,temp}.json. Non-finite values are written as null
(= NaN), the ROC threshold +inf as the string "inf".
"""
import json
import math
import os

import numpy as np
import scipy.optimize
import scipy.stats
from sklearn.metrics import (accuracy_score, average_precision_score, brier_score_loss, log_loss,
                             roc_auc_score, roc_curve)

OUT = os.path.join("tests", "golden", "metrics")
NLL_CLAMP = 1e-12
T_MIN, T_MAX = 0.01, 100.0


def close(a, b, tol, what):
    assert abs(a - b) <= tol, f"{what}: {a!r} vs {b!r}"


def jnum(x):
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def jlist(a):
    return [jnum(v) for v in np.asarray(a, dtype=np.float64).ravel()]


# ------------------------------------------------------------------------------------------------
# Classification metrics, from method.md §5.2

def top_label(p, y):
    pred = np.argmax(p, axis=1)          # first maximum wins
    conf = p[np.arange(len(y)), pred]
    return conf, (pred == y).astype(np.float64)


def eq_width_bins(c, M):
    return np.minimum(np.floor(c * M), M - 1).astype(np.int64)


def binned_stats(c, hit, M):
    b = eq_width_bins(c, M)
    cnt = np.bincount(b, minlength=M)
    acc = np.zeros(M)
    conf = np.zeros(M)
    for m in range(M):
        if cnt[m]:
            acc[m] = hit[b == m].mean()
            conf[m] = c[b == m].mean()
    return cnt, acc, conf


def ece_from(cnt, acc, conf, n, kind):
    ne = cnt > 0
    gap = acc[ne] - conf[ne]
    w = cnt[ne] / n
    if kind == "ece":
        return float(np.sum(w * np.abs(gap)))
    if kind == "mce":
        return float(np.max(np.abs(gap)))
    return float(np.sum(w * gap))


def adaptive_ece(c, hit, M):
    n = len(c)
    order = np.argsort(c, kind="stable")
    c, hit = c[order], hit[order]
    s = 0.0
    for m in range(M):
        lo, hi = (m * n) // M, ((m + 1) * n) // M
        if hi > lo:
            s += (hi - lo) / n * abs(hit[lo:hi].mean() - c[lo:hi].mean())
    return s


def classwise_ece(p, y, M):
    n, C = p.shape
    tot = 0.0
    for k in range(C):
        cnt, acc, conf = binned_stats(p[:, k], (y == k).astype(np.float64), M)
        tot += ece_from(cnt, acc, conf, n, "ece")
    return tot / C


def cls_case(name, p, y, M):
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n, C = p.shape
    conf, hit = top_label(p, y)
    py = p[np.arange(n), y]
    nll = float(np.mean(-np.log(np.maximum(py, NLL_CLAMP))))
    onehot = np.eye(C)[y]
    brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    acc = float(hit.mean())
    # independent cross-checks where scikit-learn's definition coincides with ours
    close(acc, accuracy_score(y, np.argmax(p, axis=1)), 0, f"{name} acc")
    if C >= 2 and np.all(py >= NLL_CLAMP) and np.allclose(p.sum(1), 1, atol=1e-15) and np.all(p < 1):
        close(nll, log_loss(y, p, labels=list(range(C))), 1e-12, f"{name} nll")
    if C == 2:
        close(brier, 2 * brier_score_loss((y == 1).astype(int), p[:, 1]), 1e-12, f"{name} brier")
    cnt, bacc, bconf = binned_stats(conf, hit, M)
    return {
        "name": name, "n": n, "C": C, "M": M, "p": jlist(p), "y": [int(v) for v in y],
        "acc": acc, "nll": nll, "brier": brier,
        "ece": ece_from(cnt, bacc, bconf, n, "ece"),
        "mce": ece_from(cnt, bacc, bconf, n, "mce"),
        "ece_signed": ece_from(cnt, bacc, bconf, n, "signed"),
        "ece_adaptive": adaptive_ece(conf, hit, M),
        "ece_classwise": classwise_ece(p, y, M),
        "bin_count": [int(v) for v in cnt], "bin_acc": jlist(bacc), "bin_conf": jlist(bconf),
    }


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def make_cls(rng, n, C, scale, calibrated):
    z = rng.normal(size=(n, C)) * scale
    p = softmax(z)
    if calibrated:
        y = np.array([rng.choice(C, p=row) for row in p])
    else:
        y = rng.integers(0, C, size=n)
    return p, y


def cls_cases():
    rng = np.random.default_rng(20240601)
    out = []
    p, y = make_cls(rng, 200, 4, 2.0, True)
    out.append(cls_case("rand_n200_C4_M10_calibrated", p, y, 10))
    out.append(cls_case("rand_n200_C4_M15_calibrated", p, y, 15))
    p, y = make_cls(rng, 137, 5, 3.0, False)
    out.append(cls_case("rand_n137_C5_M10_overconfident", p, y, 10))
    p, y = make_cls(rng, 500, 4, 1.0, True)
    out.append(cls_case("rand_n500_C4_M10", p, y, 10))
    p, y = make_cls(rng, 7, 3, 1.5, False)
    out.append(cls_case("rand_n7_C3_M10_fewer_than_bins", p, y, 10))
    p, y = make_cls(rng, 64, 2, 2.0, True)
    out.append(cls_case("rand_n64_C2_M10_binary", p, y, 10))
    # confidence exactly on bin edges, 1.0 (closed last bin), probability 0 on the true class
    # (NLL clamp), tied maxima (first class predicted)
    p = [[0.5, 0.5], [0.5, 0.5], [0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1], [1.0, 0.0],
         [0.0, 1.0], [1.0, 0.0], [0.3, 0.7]]
    y = [0, 1, 0, 1, 0, 0, 1, 1, 0, 1]
    out.append(cls_case("edges_M10", p, y, 10))
    out.append(cls_case("edges_M5", p, y, 5))
    out.append(cls_case("edges_M1", p, y, 1))
    # uniform rows: confidence 0.25 everywhere, predictions all class 0
    out.append(cls_case("uniform_rows", [[0.25] * 4] * 6, [0, 1, 2, 3, 0, 0], 10))
    # unnormalised rows are accepted as given: an all-zero row has confidence exactly 0
    out.append(cls_case("zero_confidence", [[0.0, 0.0, 0.0], [0.2, 0.5, 0.3], [0.0, 1.0, 0.0]], [2, 1, 1], 10))
    out.append(cls_case("single_class_C1", [[1.0], [1.0], [1.0]], [0, 0, 0], 10))
    out.append(cls_case("single_example", [[0.1, 0.2, 0.7]], [1], 15))
    return out


# ------------------------------------------------------------------------------------------------
# OOD detection: OOD = positive, higher score = more OOD

def ood_case(name, s_in, s_out):
    s_in = np.asarray(s_in, dtype=np.float64)
    s_out = np.asarray(s_out, dtype=np.float64)
    n_in, n_out = len(s_in), len(s_out)
    case = {"name": name, "s_in": jlist(s_in), "s_out": jlist(s_out)}
    s = np.concatenate([s_in, s_out])
    lab = np.concatenate([np.zeros(n_in, int), np.ones(n_out, int)])
    if n_in and n_out:
        auroc = roc_auc_score(lab, s)
        u = scipy.stats.mannwhitneyu(s_out, s_in, alternative="two-sided").statistic
        close(auroc, u / (n_in * n_out), 1e-12, f"{name} auroc vs Mann-Whitney")
        fpr, tpr, thr = roc_curve(lab, s, drop_intermediate=False)
        fpr95 = fpr[np.argmax(tpr >= 0.95)]
        case.update(auroc=jnum(auroc), aupr=jnum(average_precision_score(lab, s)), fpr95=jnum(fpr95))
        thr = thr.astype(np.float64).copy()
        thr[0] = np.inf  # scikit-learn 1.2 writes max+1 here; our convention is +inf
        case.update(roc_fpr=jlist(fpr), roc_tpr=jlist(tpr), roc_thr=jlist(thr))
    else:
        # documented conventions for one empty side
        aupr = 1.0 if n_out else math.nan
        if n_out:
            close(average_precision_score(lab, s), 1.0, 0, f"{name} aupr all positive")
        case.update(auroc=None, aupr=jnum(aupr), fpr95=None)
        uniq = np.unique(s)[::-1]
        thr = np.concatenate([[np.inf], uniq])
        fpr = [0.0] + [float(np.sum(s_in >= t)) / n_in for t in uniq] if n_in else [math.nan] * len(thr)
        tpr = [0.0] + [float(np.sum(s_out >= t)) / n_out for t in uniq] if n_out else [math.nan] * len(thr)
        case.update(roc_fpr=jlist(fpr), roc_tpr=jlist(tpr), roc_thr=jlist(thr))
    return case


def ood_cases():
    rng = np.random.default_rng(7)
    out = [ood_case("gauss_300_200", rng.normal(0, 1, 300), rng.normal(1, 1, 200)),
           ood_case("gauss_50_500", rng.normal(0, 1, 50), rng.normal(0.3, 2, 500)),
           ood_case("int_ties", rng.integers(0, 6, 120).astype(float), rng.integers(2, 8, 80).astype(float)),
           ood_case("all_tied", [0.5] * 10, [0.5] * 7),
           ood_case("perfect", [0.0, 0.1, 0.2], [0.3, 0.4]),
           ood_case("inverted", [0.3, 0.4], [0.0, 0.1, 0.2]),
           # exactly 19 of 20 OOD above every ID score: TPR reaches 0.95 with FPR 0
           ood_case("tpr95_boundary", [0.0, 0.1, 0.2, 0.3, 0.4], [0.05] + [1.0 + i for i in range(19)]),
           # the 95% TPR threshold falls in a tie group mixing ID and OOD
           ood_case("tpr95_tie_group", [0.0, 0.5, 0.5, 0.5, 2.0], [0.5] * 3 + [1.0 + i for i in range(17)]),
           ood_case("no_ood", [0.1, 0.2, 0.2], []),
           ood_case("no_id", [], [0.3, 0.1, 0.3]),
           ood_case("one_each_tied", [1.0], [1.0])]
    return out


# ------------------------------------------------------------------------------------------------
# Selective prediction: AURC with tie groups kept whole (metrics.h)

def risk_coverage(conf, loss):
    conf = np.asarray(conf, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    n = len(conf)
    cov, risk = [], []
    for t in np.unique(conf)[::-1]:
        keep = conf >= t
        k = int(keep.sum())
        cov.append(k / n)
        risk.append(float(loss[keep].sum()) / k)
    ends = np.round(np.array(cov) * n).astype(int)
    widths = np.diff(np.concatenate([[0], ends]))
    aurc = float(np.sum(widths / n * np.array(risk)))
    return cov, risk, aurc


def geifman_aurc(conf, loss):
    order = np.argsort(-np.asarray(conf), kind="stable")
    l = np.asarray(loss, dtype=np.float64)[order]
    return float(np.mean(np.cumsum(l) / np.arange(1, len(l) + 1)))


def aurc_case(name, conf, loss):
    cov, risk, aurc = risk_coverage(conf, loss)
    if len(np.unique(conf)) == len(conf):
        close(aurc, geifman_aurc(conf, loss), 1e-12, f"{name} aurc vs Geifman")
    return {"name": name, "conf": jlist(conf), "loss": jlist(loss), "aurc": aurc,
            "coverage": jlist(cov), "risk": jlist(risk)}


def aurc_cases():
    rng = np.random.default_rng(99)
    c = rng.uniform(size=300)
    err = (rng.uniform(size=300) > c).astype(float)  # confident examples err less
    cr = np.round(c, 1)
    return [aurc_case("rand_300_no_ties", c, err),
            aurc_case("rand_300_rounded_ties", cr, err),
            aurc_case("all_tied", [0.7] * 6, [1, 0, 0, 1, 0, 0]),
            aurc_case("real_loss", rng.uniform(size=40), rng.exponential(size=40)),
            aurc_case("single", [0.9], [1.0]),
            aurc_case("all_correct", rng.uniform(size=10), [0.0] * 10)]


# ------------------------------------------------------------------------------------------------
# Bootstrap: xoshiro256** seeded by splitmix64 (src/util/rng.h documents the generator)

M64 = (1 << 64) - 1


class Xoshiro:
    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def u64(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.u64() >> 11) * 2.0 ** -53


def bootstrap(metric, n, B, level, seed):
    rng = Xoshiro(seed)
    point = metric(np.arange(n))
    vals = []
    for _ in range(B):
        idx = np.array([min(int(rng.uniform() * n), n - 1) for _ in range(n)])
        v = metric(idx)
        if not math.isnan(v):
            vals.append(v)
    vals = np.array(vals)
    return {"point": jnum(point), "lo": float(np.percentile(vals, 100 * (1 - level) / 2)),
            "hi": float(np.percentile(vals, 100 * (1 + level) / 2)), "n_valid": len(vals)}


def boot_cases():
    rng = np.random.default_rng(5)
    out = []
    p, y = make_cls(rng, 120, 4, 2.0, True)
    conf, hit = top_label(p, y)

    def acc(idx):
        return float(hit[idx].mean())

    def ece(idx):
        cnt, a, c = binned_stats(conf[idx], hit[idx], 10)
        return ece_from(cnt, a, c, len(idx), "ece")

    def nll(idx):
        return float(np.mean(-np.log(np.maximum(p[idx, y[idx]], NLL_CLAMP))))

    base = {"n": 120, "C": 4, "p": jlist(p), "y": [int(v) for v in y]}
    out.append(dict(base, name="acc_B200", kind="acc", M=10, B=200, level=0.95, seed=12345,
                    **bootstrap(acc, 120, 200, 0.95, 12345)))
    out.append(dict(base, name="ece_B100", kind="ece", M=10, B=100, level=0.9, seed=7,
                    **bootstrap(ece, 120, 100, 0.9, 7)))
    out.append(dict(base, name="nll_B50", kind="nll", M=10, B=50, level=0.95, seed=2**62 + 11,
                    **bootstrap(nll, 120, 50, 0.95, 2**62 + 11)))
    # OOD: few OOD examples so that some resamples have none (NaN, skipped)
    s_in, s_out = rng.normal(0, 1, 30), rng.normal(1.5, 1, 2)
    allsc = np.concatenate([s_in, s_out])
    lab = np.concatenate([np.zeros(30, int), np.ones(2, int)])

    def auroc(idx):
        if lab[idx].min() == lab[idx].max():
            return math.nan
        return float(roc_auc_score(lab[idx], allsc[idx]))

    out.append({"name": "auroc_B300_sparse_ood", "kind": "auroc", "s_in": jlist(s_in), "s_out": jlist(s_out),
                "B": 300, "level": 0.95, "seed": 3, **bootstrap(auroc, 32, 300, 0.95, 3)})
    assert out[-1]["n_valid"] < 300
    return out


# ------------------------------------------------------------------------------------------------
# Temperature scaling: minimise mean NLL of softmax(z / T) over T in [T_MIN, T_MAX]

def nll_T(z, y, T):
    t = z / T
    t = t - t.max(axis=1, keepdims=True)
    lse = np.log(np.exp(t).sum(axis=1))
    return float(np.mean(lse - t[np.arange(len(y)), y]))


def dnll_dbeta(z, y, beta):
    p = softmax(beta * z)
    return float(np.mean((p * z).sum(axis=1) - z[np.arange(len(y)), y]))


def fit_T(z, y):
    lo, hi = 1 / T_MAX, 1 / T_MIN
    if dnll_dbeta(z, y, lo) >= 0:
        return T_MAX
    if dnll_dbeta(z, y, hi) <= 0:
        return T_MIN
    beta = scipy.optimize.brentq(lambda b: dnll_dbeta(z, y, b), lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps,
                                 maxiter=500)
    T = 1 / beta
    # cross-check with a plain bounded minimisation of the NLL over log T
    r = scipy.optimize.minimize_scalar(lambda u: nll_T(z, y, math.exp(u)), bounds=(math.log(T_MIN), math.log(T_MAX)),
                                       method="bounded", options={"xatol": 1e-10})
    close(T, math.exp(r.x), 1e-4 * T, "temperature vs bounded minimisation")
    return T


def temp_case(name, z, y):
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    T = fit_T(z, y)
    return {"name": name, "n": z.shape[0], "C": z.shape[1], "logits": jlist(z), "y": [int(v) for v in y],
            "T": T, "nll_T": nll_T(z, y, T), "nll_1": nll_T(z, y, 1.0),
            "p_T": jlist(softmax(z / T)), "p_half": jlist(softmax(z / 0.5))}


def temp_cases():
    rng = np.random.default_rng(11)
    out = []
    z = rng.normal(size=(300, 4)) * 3
    y = np.array([rng.choice(4, p=row) for row in softmax(z / 2.0)])  # model over-confident by ~2x
    out.append(temp_case("overconfident_T2", z, y))
    z = rng.normal(size=(200, 5))
    y = np.array([rng.choice(5, p=row) for row in softmax(z / 0.5)])  # under-confident
    out.append(temp_case("underconfident_Thalf", z, y))
    z = rng.normal(size=(50, 3)) * 4 + 20  # large offsets: the softmax must subtract the max
    y = np.array([rng.choice(3, p=row) for row in softmax(z - 20)])
    out.append(temp_case("offset_logits", z, y))
    # perfectly separable: NLL keeps falling as T -> 0, so the lower bound
    out.append(temp_case("separable", [[3.0, 0.0], [0.0, 2.0], [1.0, -1.0]], [0, 1, 0]))
    # always wrong with a margin: NLL keeps falling as T -> inf, so the upper bound
    out.append(temp_case("always_wrong", [[3.0, 0.0], [0.0, 2.0], [1.0, -1.0]], [1, 0, 1]))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, cases in [("cls", cls_cases()), ("ood", ood_cases()), ("aurc", aurc_cases()),
                        ("boot", boot_cases()), ("temp", temp_cases())]:
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump({"source": "tests/reference/metrics_ref.py", "cases": cases}, f, allow_nan=False)
            f.write("\n")
        print(f"{name}: {len(cases)} cases")


if __name__ == "__main__":
    main()
