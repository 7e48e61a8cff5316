"""vmoer.fit and vmoer.evaluate: the library's vm_fit / vm_eval_report, i.e. what ``vmoer fit`` and
``vmoer eval`` do, on multiple-choice data files (JSONL, OBQA, ARC, SciQ, MedMCQA, MMLU).

An option left at None takes the library's default (``vm_fit_default_params`` /
``vm_eval_report_default_params``), so Python, C and the CLI cannot disagree on one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from ctypes import byref, c_char_p, c_double, c_int
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _lib
from ._lib import Error, check, enc, lib
from .model import Model

PathLike = Union[str, os.PathLike]

#: Names of the per-question uncertainty scores (vm_eval_unc order).
EVAL_UNC_NAMES = [lib.vm_eval_unc_name(u).decode() for u in range(_lib.EVAL_UNC_COUNT)]


def _set(p: Any, where: str, **kw: Any) -> None:
    """Sets the options given (not None) on a params struct, type-checked with a one-line error."""
    for k, v in kw.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = int(v)
        try:
            setattr(p, k, v)
        except TypeError:
            raise Error(f"{where}: bad {k} {v!r}") from None


def fit(model_path: PathLike, data: PathLike, out: PathLike, router: str = "vglr-mf",
        layers: Optional[Sequence[int]] = None, *, score: Optional[str] = None, limit: int = 0,
        epochs: Optional[int] = None, batch: Optional[int] = None, patience: Optional[int] = None,
        lr: Optional[float] = None, val_frac: Optional[float] = None, beta: Optional[float] = None,
        samples: Optional[int] = None, hidden: Optional[int] = None, members: Optional[int] = None,
        seed: int = 0, lora_rank: int = 0, format: Optional[str] = None,
        chat_template: Optional[str] = None, threads: Optional[int] = None,
        verbose: bool = False) -> Dict[str, Any]:
    """Fits the routers of ``layers`` (default: the last 5 MoE layers) of the model at
    ``model_path`` on the multiple-choice items of ``data`` and writes the adapter to ``out``, as
    ``vmoer fit MODEL --data DATA --router ROUTER [--layers ..] -o OUT`` does (same bytes for the
    same options). ``score``: "letter" (default), "loglik", "loglik-raw", "pmi"; ``limit``: the
    first N items (0: all). Returns the fit's summary: ``{"n_train", "n_val", "n_layers",
    "epochs_run", "best_epoch", "steps", "val_nll_init", "val_nll_best", "val_acc_init",
    "val_acc_best", "seconds", "adapter"}``.
    """
    p = lib.vm_fit_default_params()
    lay = None
    if layers is not None:
        try:
            lay = (c_int * max(len(layers), 1))(*[int(l) for l in layers])
        except (TypeError, ValueError):
            raise Error(f"fit: layers must be a sequence of ints, got {layers!r}") from None
        p.layers, p.n_layers = lay, len(layers)
    if not isinstance(limit, int) or limit < 0:
        raise Error(f"fit: bad limit {limit!r}")
    _lib.seed(seed, "fit")
    _set(p, "fit", kind=enc(router), score=enc(score), limit=limit, epochs=epochs, batch=batch,
         patience=patience, lr=lr, val_frac=val_frac, beta=beta, samples=samples, hidden=hidden,
         members=members, seed=seed, lora_rank=lora_rank, format=enc(format),
         chat_template=enc(chat_template), verbose=verbose)
    r = _lib.FitResult()
    with Model(model_path, threads=threads) as m:
        check(lib.vm_fit(m._handle("fit"), enc(data), enc(out), byref(p), byref(r)), "fit")
    res = {k: getattr(r, k) for k, _ in _lib.FitResult._fields_}
    res["adapter"] = os.fspath(out)
    return res


def evaluate(model: Union[PathLike, Model], data: PathLike, adapter: Optional[PathLike] = None,
             router: Optional[str] = None, *, val: Optional[PathLike] = None,
             ood: Optional[Union[Mapping[str, PathLike], Sequence[str]]] = None,
             output: Optional[PathLike] = None, score: Optional[str] = None, limit: int = 0,
             passes: Optional[int] = None, seed: int = 0, bins: Optional[int] = None,
             boot: Optional[int] = None, noise_grid: Optional[Sequence[float]] = None,
             stability_limit: Optional[int] = None, time_items: Optional[int] = None,
             format: Optional[str] = None, chat_template: Optional[str] = None,
             threads: Optional[int] = None, verbose: bool = False) -> Dict[str, Any]:
    """The whole evaluation ``vmoer eval`` runs (the library's ``vm_eval_report``): scores every
    multiple-choice item of ``data`` (a file, or a folder name under $VMOER_SHARED/data/mcqa),
    each OOD set and the validation set, measures routing stability and cost, and returns
    ``metrics.json`` as a dict - the same numbers as the CLI with the same options (timings aside):
    ``r["results"][method]`` holds acc, nll, brier, ece with ``ece_ci``, mce, aurc, the
    temperature and ``ood[set][score]`` (auroc, aupr, fpr95); ``r["stability"]``, ``r["cost"]``,
    ``r["config"]``. Added: ``r["questions"]``, the rows of questions.jsonl (per question and
    method: probabilities, prediction, every uncertainty score; see ``question_arrays``), and
    ``r["output"]``, the folder written (None when ``output`` was not given: a temporary one,
    removed).

    ``model`` is a path (then ``adapter`` or ``router``, a kind set fresh on every MoE layer, may be
    given) or an open ``Model`` (its routers as they are). ``val``: adds the method '<router>+ts'
    (temperature fitted there). ``ood``: ``{"name": path}`` or ``["name=path[@subject]", ...]``.
    ``noise_grid``: stability's gamma levels (None: the CLI's default grid; ``[]``: no stability
    runs). Other options as ``vmoer eval --help``; None takes the library's default.
    """
    if adapter is not None and router is not None:
        raise Error("evaluate: adapter and router exclude each other")
    opts = dict(val=val, ood=ood, output=output, score=score, limit=limit, passes=passes, seed=seed,
                bins=bins, boot=boot, noise_grid=noise_grid, stability_limit=stability_limit,
                time_items=time_items, format=format, chat_template=chat_template, verbose=verbose)
    if isinstance(model, Model):
        if adapter is not None or router is not None:
            raise Error("evaluate: adapter/router apply to a model path, not an open Model")
        return _report(model, data, model.path, model.adapter, opts)
    with Model(model, adapter=adapter, threads=threads) as m:
        if router is not None:
            m.set_router(router)
        return _report(m, data, os.fspath(model), os.fspath(adapter) if adapter is not None else None, opts)


def _ood_list(ood: Any) -> List[str]:
    if ood is None:
        return []
    if isinstance(ood, Mapping):
        return [f"{k}={os.fspath(v)}" for k, v in ood.items()]
    if isinstance(ood, (str, bytes)) or not all(isinstance(x, str) for x in ood):
        raise Error(f"evaluate: ood must be a mapping name -> path or a list of 'NAME=PATH' strings, got {ood!r}")
    return list(ood)


def _report(m: Model, data: PathLike, model_label: str, adapter_label: Optional[str],
            a: Dict[str, Any]) -> Dict[str, Any]:
    h = m._handle("evaluate")
    p = lib.vm_eval_report_default_params()
    limit = a["limit"]
    if not isinstance(limit, int) or limit < 0:
        raise Error(f"evaluate: bad limit {limit!r}")
    _lib.seed(a["seed"], "evaluate")
    oods = [enc(x) for x in _ood_list(a["ood"])]
    ood_arr = (c_char_p * max(len(oods), 1))(*oods)
    grid = a["noise_grid"]
    grid_arr = None
    if grid is not None:
        try:
            grid_arr = (c_double * max(len(grid), 1))(*[float(g) for g in grid])
        except (TypeError, ValueError):
            raise Error(f"evaluate: noise_grid must be a sequence of numbers, got {grid!r}") from None
        p.noise_grid, p.n_noise = grid_arr, len(grid)
    p.ood, p.n_ood = ood_arr, len(oods)
    val = a["val"]
    _set(p, "evaluate", val=enc(os.fspath(val)) if val is not None else None, score=enc(a["score"]),
         limit=limit, passes=a["passes"], seed=a["seed"], bins=a["bins"], boot=a["boot"],
         stability_limit=a["stability_limit"], time_items=a["time_items"], format=enc(a["format"]),
         chat_template=enc(a["chat_template"]), model_label=enc(model_label),
         adapter_label=enc(adapter_label), verbose=a["verbose"])
    out = a["output"]
    tmp = None if out is not None else tempfile.mkdtemp(prefix="vmoer-eval-")
    folder = os.fspath(out) if out is not None else os.path.join(tmp, "eval")
    try:
        check(lib.vm_eval_report(h, enc(os.fspath(data)), enc(folder), byref(p)), "evaluate")
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
            r = json.load(f)
        with open(os.path.join(folder, "questions.jsonl"), encoding="utf-8") as f:
            r["questions"] = [json.loads(line) for line in f if line.strip()]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    r["output"] = folder if out is not None else None
    return r


def question_arrays(result: Dict[str, Any], method: Optional[str] = None, set: str = "id") -> Dict[str, Any]:
    """Per-question NumPy arrays of one method on one set of an ``evaluate`` result: ``id``
    (list), ``answer``, ``pred``, ``n_choices`` (int32), ``correct`` (bool), ``probs`` (float64,
    (n, max choices), NaN past an item's choices) and ``scores`` ({name: float64}, NaN where the
    method has none). ``method``: None = the first one (the routers evaluated, not '+ts').
    """
    method = method if method is not None else result["methods"][0]
    rows = [q for q in result["questions"] if q["set"] == set]
    if not rows:
        raise Error(f"question_arrays: no questions of set {set!r}")
    if method not in rows[0]["methods"]:
        raise Error(f"question_arrays: no method {method!r} (have {sorted(rows[0]['methods'])})")
    n, width = len(rows), max(q["n_choices"] for q in rows)
    probs = np.full((n, width), np.nan)
    for i, q in enumerate(rows):
        pr = q["methods"][method]["probs"]
        probs[i, :len(pr)] = pr
    nan = float("nan")
    scores = {k: np.array([nan if q["methods"][method]["scores"][k] is None else q["methods"][method]["scores"][k]
                           for q in rows], np.float64) for k in rows[0]["methods"][method]["scores"]}
    return {"id": [q["id"] for q in rows],
            "answer": np.array([q["answer"] for q in rows], np.int32),
            "pred": np.array([q["methods"][method]["pred"] for q in rows], np.int32),
            "n_choices": np.array([q["n_choices"] for q in rows], np.int32),
            "correct": np.array([q["methods"][method]["correct"] for q in rows], bool),
            "probs": probs, "scores": scores}
