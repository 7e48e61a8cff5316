"""What a notebook does with vmoer, as a plain script: logits, routing and per-token uncertainty
as NumPy arrays, a VGLR adapter fitted and evaluated, and a reliability diagram.

    PYTHONPATH=python python3 examples/notebook.py [OUT_DIR]

Uses the bundled model and the cloze data of the repository (run it from the repository's root);
writes OUT_DIR/adapter.gguf and, when matplotlib is installed, OUT_DIR/reliability.png
(OUT_DIR default: a new temporary folder). A minute or less on 2 cores.
"""
import os
import sys
import tempfile

import numpy as np

import vmoer

MODEL = "data/models/stories-moe.gguf"
TRAIN, TEST = "data/cloze/train.jsonl", "data/cloze/test.jsonl"


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = 10):
    """Per confidence bin: mean confidence, accuracy and count (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            rows.append((conf[sel].mean(), correct[sel].mean(), int(sel.sum())))
    return rows


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="vmoer-notebook-")
    os.makedirs(out, exist_ok=True)
    print("vmoer", vmoer.version(), "router kinds:", ", ".join(vmoer.router_kinds()))

    with vmoer.Model(MODEL) as m:
        print(m)
        ids = m.tokenize("Once upon a time, there was a little girl named Lily.")
        logits = m.logits(ids)                              # (n_tokens, n_vocab) float32
        print("logits", logits.shape, logits.dtype, "next token:", repr(m.detokenize([int(logits[-1].argmax())])))
        tr = m.trace(ids)                                   # {layer: LayerTrace}
        last = m.moe_layers[-1]
        print(f"layer {last}: experts of the first 4 positions {tr[last].experts[:4].tolist()}, "
              f"mean gate entropy {np.nanmean(tr[last].gate_entropy):.3f} nats")
        for tok in m.generate("Once upon a time", max_tokens=6):
            print(f"  {tok.text!r:14} p={tok.prob:.3f}  gate_entropy={tok.scores['gate_entropy']:.3f}")

    adapter = os.path.join(out, "adapter.gguf")
    fit = vmoer.fit(MODEL, TRAIN, adapter, router="vglr-mf", layers=[last], limit=64, epochs=1, batch=8,
                    lr=1e-2, seed=1, score="pmi")
    print(f"fit: {fit['n_train']} items, {fit['steps']} steps, val nll {fit['val_nll_init']:.4f} -> "
          f"{fit['val_nll_best']:.4f}")
    for name, kw in (("pretrained", {}), ("vglr-mf", {"adapter": adapter})):
        # the whole `vmoer eval`: metrics.json as a dict (small stability grid to keep this quick)
        r = vmoer.evaluate(MODEL, TEST, limit=48, score="pmi", noise_grid=[0, 0.01], **kw)
        res = r["results"][r["methods"][0]]
        lo, hi = res["ece_ci"]
        print(f"{name:10} acc {res['acc']:.3f}  nll {res['nll']:.4f}  ece {res['ece']:.4f} [{lo:.4f}, {hi:.4f}]  "
              f"stability {r['stability']['jaccard_headline']:.3f}")

    q = vmoer.question_arrays(r)                           # per-question NumPy arrays
    print(f"mean ILV {np.nanmean(q['scores']['ilv']):.4f} over {len(q['pred'])} questions")
    conf = -q["scores"]["neg_maxprob"]                     # the predicted answer's probability
    correct = q["correct"].astype(float)
    rows = reliability(conf, correct)
    print("reliability (confidence, accuracy, n):", [(round(c, 3), round(a, 3), n) for c, a, n in rows])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (apt install python3-matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot([c for c, _, _ in rows], [a for _, a, _ in rows], "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("vglr-mf reliability")
    path = os.path.join(out, "reliability.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print("wrote", path)


if __name__ == "__main__":
    main()
