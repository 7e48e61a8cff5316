"""vmoer: Bayesian routing for Mixture-of-Experts language models, from Python.

A thin ctypes binding of libvmoer's public C API (include/vmoer.h): nothing to compile, NumPy for
arrays. Logits, routing traces and uncertainty read-outs come back as NumPy arrays that own their
memory; errors raise ``vmoer.Error`` carrying the library's one-line message.

    import vmoer
    with vmoer.Model("data/models/stories-moe.gguf") as m:
        ids = m.tokenize("Once upon a time")
        logits = m.logits(ids)                 # float32 (n_tokens, n_vocab)
        tr = m.trace(ids)                      # {layer: LayerTrace}
        for tok in m.generate("Once upon a time", max_tokens=8):
            print(tok.text, tok.scores)
    vmoer.fit(model_path, "train.jsonl", "a.gguf", router="vglr-mf", layers=[4], limit=48)
    metrics = vmoer.evaluate(model_path, "test.jsonl", adapter="a.gguf", limit=24)

The shared library is found as described in ``vmoer._lib`` ($VMOER_LIB, the repository's
build/, the prefix ``make install`` used, then the system loader).
"""
from ._lib import Error
from ._lib import lib as _clib
from .model import SCORE_NAMES, UNC_NAMES, LayerTrace, Model, Token
from .tasks import EVAL_UNC_NAMES, evaluate, fit, question_arrays

__all__ = ["Error", "Model", "LayerTrace", "Token", "fit", "evaluate", "question_arrays", "router_kinds", "version",
           "UNC_NAMES", "SCORE_NAMES", "EVAL_UNC_NAMES"]


def version() -> str:
    """The loaded library's version (``vmoer_version()``)."""
    return _clib.vmoer_version().decode()


def router_kinds() -> list:
    """The library's router kinds, in its fixed order (deterministic, map, ..., swag)."""
    names = _clib.vm_router_kind_names()
    out = []
    i = 0
    while names[i]:
        out.append(names[i].decode())
        i += 1
    return out


__version__ = version()
