#!/usr/bin/env python3
"""The demo's key differences side by side for several model instances (README: "across model
instances"). Each argument is a `vmoer demo` output folder; its table.json is read, nothing is
recomputed: every number is a mean over the demo's seeds, Δ the paired difference from the
deterministic router (OOD: the method's declared score against the deterministic max-prob) with the
demo's 95 % bootstrap interval; a Δ is marked + (better) or - (worse) only when that interval
excludes zero, = otherwise.

usage: python3 scripts/demo_instances.py OUT_DIR [OUT_DIR ...] [--names A,B,...]
"""
import json
import sys

# (label, method, metric path, sign: +1 when a larger value is better)
ROWS = [
    ("ECE", "vglr-mf", ("ece",), -1), ("ECE", "vglr-fc", ("ece",), -1), ("ECE", "vtsr", ("ece",), -1),
    ("NLL", "map", ("nll",), -1), ("NLL", "swag", ("nll",), -1), ("NLL", "vglr-mf", ("nll",), -1),
    ("Jaccard@0.01", "vglr-mf", ("jaccard",), +1), ("Jaccard@0.01", "vtsr", ("jaccard",), +1),
]
OOD = [("vglr-mf", "ilv"), ("vglr-fc", "ilv"), ("vtsr", "gate_entropy"), ("swag", "prob_var")]


def fmt(x: dict, sign: int) -> str:
    lo, hi = x["diff_ci"]
    if lo is None or hi is None:
        return "n/a"
    mark = "=" if lo <= 0 <= hi else ("+" if (x["diff"] > 0) == (sign > 0) else "-")
    return f"{x['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] {mark}"


def main(argv: list) -> int:
    names = None
    if "--names" in argv:
        i = argv.index("--names")
        names = argv[i + 1].split(",")
        argv = argv[:i] + argv[i + 2:]
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    tables = []
    for d in argv:
        try:
            with open(f"{d}/table.json") as f:
                tables.append(json.load(f))
        except (OSError, ValueError) as e:
            print(f"demo_instances: {d}/table.json: {e}", file=sys.stderr)
            return 1
    names = names or argv
    if len(names) != len(tables):
        print("demo_instances: --names must name every folder", file=sys.stderr)
        return 2
    print("| Δ vs deterministic | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    print("| layers replaced | " + " | ".join(", ".join(map(str, t["layers"])) for t in tables) + " |")
    print("| random-routing cost (nats/token) | " + " | ".join(
        f"+{t['model']['random_routing_cost']:.3f}" if "random_routing_cost" in t.get("model", {}) else "?"
        for t in tables) + " |")
    meth = [{m["name"]: m for m in t["methods"]} for t in tables]
    for kind in ("vglr-mf", "vglr-fc", "vtsr"):
        print(f"| {kind} fits improved on init | " + " | ".join(
            f"{m[kind].get('seeds_improved', '?')}/{m[kind]['n_seeds']}" for m in meth) + " |")
    for label, method, path, sign in ROWS:
        cells = []
        for m in meth:
            x = m[method]
            for k in path:
                x = x[k]
            cells.append(fmt(x, sign))
        print(f"| {label}, {method} | " + " | ".join(cells) + " |")
    for s in ("tinyshakespeare", "wikitext2"):
        for method, score in OOD:
            cells = [fmt(m[method]["auroc"][s][score], +1) if score in m[method]["auroc"][s] else "n/a" for m in meth]
            print(f"| OOD AUROC {s}, {method} {score} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
