"""vmoer.fit and vmoer.evaluate: the library's vm_fit / vm_evaluate, i.e. what ``vmoer fit`` and
``vmoer eval`` do, on multiple-choice data files (JSONL, OBQA, ARC, SciQ, MedMCQA, MMLU).

An option left at None takes the library's default (``vm_fit_default_params`` /
``vm_eval_default_params``), so Python, C and the CLI cannot disagree on one.
"""
from __future__ import annotations

import os
from ctypes import byref, c_double, c_int
from typing import Any, Dict, Optional, Sequence, Union

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
             router: Optional[str] = None, *, score: Optional[str] = None, limit: int = 0,
             passes: Optional[int] = None, seed: int = 0, bins: Optional[int] = None,
             format: Optional[str] = None, chat_template: Optional[str] = None,
             threads: Optional[int] = None) -> Dict[str, Any]:
    """Scores every multiple-choice item of ``data`` with the model's routers, as ``vmoer eval``
    does for its in-distribution set. ``model`` is a path (then ``adapter`` or ``router``, a kind
    set fresh on every MoE layer, may be given) or an open ``Model`` (its routers as they are).

    Returns the headline numbers of ``metrics.json`` (the same values): ``{"n", "n_skipped",
    "acc", "nll", "brier", "ece", "unc_mean": {score: mean}, "seconds", "items"}`` where
    ``items`` holds per-question NumPy arrays ``answer``, ``pred``, ``n_choices`` and
    ``unc`` ({score: float64 array}; ``-unc["neg_maxprob"]`` is the confidence).
    """
    if adapter is not None and router is not None:
        raise Error("evaluate: adapter and router exclude each other")
    if isinstance(model, Model):
        if adapter is not None or router is not None:
            raise Error("evaluate: adapter/router apply to a model path, not an open Model")
        return _evaluate(model, data, score, limit, passes, seed, bins, format, chat_template)
    with Model(model, adapter=adapter, threads=threads) as m:
        if router is not None:
            m.set_router(router)
        return _evaluate(m, data, score, limit, passes, seed, bins, format, chat_template)


def _evaluate(m: Model, data: PathLike, score: Optional[str], limit: int, passes: Optional[int],
              seed: int, bins: Optional[int], format: Optional[str],
              chat_template: Optional[str]) -> Dict[str, Any]:
    h = m._handle("evaluate")
    p = lib.vm_eval_default_params()
    if not isinstance(limit, int) or limit < 0:
        raise Error(f"evaluate: bad limit {limit!r}")
    _lib.seed(seed, "evaluate")
    _set(p, "evaluate", score=enc(score), limit=limit, passes=passes, seed=seed, bins=bins,
         format=enc(format), chat_template=enc(chat_template))
    e = lib.vm_evaluate(h, enc(data), byref(p))
    if not e:
        raise Error(_lib.errmsg("evaluate"))
    try:
        mt = _lib.EvalMetrics()
        check(lib.vm_evaluation_metrics(e, byref(mt)), "evaluate")
        n = check(lib.vm_evaluation_n_items(e), "evaluate")
        answer = np.zeros(n, np.int32)
        pred = np.zeros(n, np.int32)
        n_choices = np.zeros(n, np.int32)
        unc = np.zeros((n, _lib.EVAL_UNC_COUNT), np.float64)
        a, pr, nc = c_int(), c_int(), c_int()
        row = (c_double * _lib.EVAL_UNC_COUNT)()
        for i in range(n):
            check(lib.vm_evaluation_item(e, i, byref(a), byref(pr), byref(nc), row), "evaluate")
            answer[i], pred[i], n_choices[i] = a.value, pr.value, nc.value
            unc[i] = row[:]
    finally:
        lib.vm_evaluation_free(e)
    return {
        "n": mt.n, "n_skipped": mt.n_skipped, "acc": mt.acc, "nll": mt.nll, "brier": mt.brier,
        "ece": mt.ece,
        "unc_mean": {EVAL_UNC_NAMES[u]: mt.unc_mean[u] for u in range(_lib.EVAL_UNC_COUNT)},
        "seconds": mt.seconds,
        "items": {"answer": answer, "pred": pred, "n_choices": n_choices,
                  "unc": {EVAL_UNC_NAMES[u]: np.ascontiguousarray(unc[:, u])
                          for u in range(_lib.EVAL_UNC_COUNT)}},
    }
