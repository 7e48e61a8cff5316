"""Loading libvmoer.so and declaring the C API (include/vmoer.h) for ctypes.

Nothing here is compiled: the structs below mirror the header's field by field, so a change to a
public struct in vmoer.h must be repeated here (tests/python/test_vmoer.py checks the enum counts,
and every struct's size and field offsets through the C compiler, against the repository's header).

The library is looked for, in this order (the first that loads wins):

1. ``$VMOER_LIB``: an explicit path (a build elsewhere, a sanitizer-free copy, ...);
2. ``../../build/libvmoer.so`` next to this package, i.e. the build of the repository the package
   was imported from with ``PYTHONPATH=python``;
3. ``LIBDIR/libvmoer.so.0`` where ``LIBDIR`` is the library folder ``make install`` wrote into
   ``_install.py`` (so an installed package finds its own prefix without LD_LIBRARY_PATH);
4. ``libvmoer.so.0`` through the dynamic loader (ld.so.cache, LD_LIBRARY_PATH), then
   ``ctypes.util.find_library("vmoer")``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int32,
                    c_long, c_longlong, c_size_t, c_uint, c_uint64, c_void_p)
from typing import List, Optional

SONAME = "libvmoer.so.0"

# enum counts of vmoer.h (vm_unc, vm_gen_score, vm_eval_unc) and VM_GEN_MAX_TOP
UNC_COUNT = 6
GS_COUNT = 8
EVAL_UNC_COUNT = 9
GEN_MAX_TOP = 20


class Error(RuntimeError):
    """A failure of the vmoer library or of an argument: the message is the library's one line."""


def _candidates() -> List[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    env = os.environ.get("VMOER_LIB")
    if env:
        out.append(env)
    out.append(os.path.normpath(os.path.join(here, "..", "..", "build", "libvmoer.so")))
    try:
        from . import _install  # written by `make install`
        out.append(os.path.join(_install.LIBDIR, SONAME))
    except ImportError:
        pass
    out.append(SONAME)
    found = ctypes.util.find_library("vmoer")
    if found:
        out.append(found)
    return out


def _load() -> "tuple[ctypes.CDLL, str]":
    tried = []
    env = os.environ.get("VMOER_LIB")
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            if path == env:  # an explicit path that is wrong is an error, not a fallback
                raise Error(f"VMOER_LIB={env}: no such file")
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            if path == env:
                raise Error(f"VMOER_LIB={env}: {e}") from None
            tried.append(f"{path} ({e})")
    raise Error("libvmoer.so not found; tried: " + "; ".join(tried) +
                " (build it with make, install it with make install, or set VMOER_LIB)")


# ---------------------------------------------------------------- structs (vmoer.h)

class ModelParams(Structure):
    _fields_ = [("adapter", c_char_p), ("samples", c_int)]


class TraceEv(Structure):
    _fields_ = [("name", c_char_p), ("layer", c_int), ("pos0", c_int), ("n_tokens", c_int),
                ("ne", c_int), ("f", POINTER(c_float)), ("i", POINTER(c_int32))]


TRACE_FN = CFUNCTYPE(None, c_void_p, POINTER(TraceEv))


class GenTok(Structure):
    _fields_ = [("id", c_int32), ("pos", c_int), ("prob", c_float), ("logprob", c_float),
                ("score", c_float * GS_COUNT), ("unc", POINTER(c_float)), ("n_top", c_int),
                ("top_id", c_int32 * GEN_MAX_TOP), ("top_lp", c_float * GEN_MAX_TOP)]


class GenParams(Structure):
    _fields_ = [("max_tokens", c_int), ("temp", c_float), ("top_p", c_float), ("top_k", c_int),
                ("seed", c_uint64), ("n_top", c_int), ("abstain_score", c_int),
                ("abstain_threshold", c_double), ("end_at_control", c_int), ("eval_last", c_int)]


class GenSummary(Structure):
    _fields_ = [("n", c_int), ("sum", c_double * GS_COUNT), ("max", c_double * GS_COUNT),
                ("cnt", c_int * GS_COUNT)]


class GenResult(Structure):
    _fields_ = [("n_prompt", c_int), ("n_gen", c_int), ("finish", c_int), ("withheld", GenTok),
                ("summary", GenSummary), ("ms_prompt", c_double), ("ms_gen", c_double)]


GEN_FN = CFUNCTYPE(c_int, c_void_p, POINTER(GenTok))


class FitParams(Structure):
    _fields_ = [("kind", c_char_p), ("layers", POINTER(c_int)), ("n_layers", c_int),
                ("score", c_char_p), ("chat_template", c_char_p), ("format", c_char_p),
                ("limit", c_long), ("epochs", c_int), ("batch", c_int), ("patience", c_int),
                ("lr", c_float), ("val_frac", c_float), ("beta", c_float), ("samples", c_int),
                ("hidden", c_int), ("members", c_int), ("seed", c_uint64), ("lora_rank", c_int),
                ("verbose", c_int)]


class FitResult(Structure):
    _fields_ = [("n_train", c_int), ("n_val", c_int), ("n_layers", c_int), ("epochs_run", c_int),
                ("best_epoch", c_int), ("steps", c_longlong), ("val_nll_init", c_double),
                ("val_nll_best", c_double), ("val_acc_init", c_double), ("val_acc_best", c_double),
                ("seconds", c_double)]


class EvalParams(Structure):
    _fields_ = [("score", c_char_p), ("chat_template", c_char_p), ("format", c_char_p),
                ("limit", c_long), ("passes", c_int), ("seed", c_uint64), ("bins", c_int)]


class EvalMetrics(Structure):
    _fields_ = [("n", c_int), ("n_skipped", c_int), ("acc", c_double), ("nll", c_double),
                ("brier", c_double), ("ece", c_double), ("unc_mean", c_double * EVAL_UNC_COUNT),
                ("seconds", c_double)]


class EvalReportParams(Structure):
    _fields_ = [("val", c_char_p), ("ood", POINTER(c_char_p)), ("n_ood", c_int), ("score", c_char_p),
                ("chat_template", c_char_p), ("format", c_char_p), ("limit", c_long), ("passes", c_int),
                ("bins", c_int), ("boot", c_int), ("noise_grid", POINTER(c_double)), ("n_noise", c_int),
                ("stability_limit", c_long), ("time_items", c_int), ("seed", c_uint64),
                ("model_label", c_char_p), ("adapter_label", c_char_p), ("verbose", c_int),
                ("distributed", c_int)]


# ---------------------------------------------------------------- functions

def _declare(lib: ctypes.CDLL) -> None:
    P = c_void_p
    sigs = {
        "vmoer_version": (c_char_p, []),
        "vm_errmsg": (c_char_p, []),
        "vm_err_clear": (None, []),
        "vm_set_threads": (c_int, [c_int]),
        "vm_model_default_params": (ModelParams, []),
        "vm_model_load_params": (P, [c_char_p, POINTER(ModelParams)]),
        "vm_model_free": (None, [P]),
        "vm_model_n_vocab": (c_int, [P]),
        "vm_model_n_layer": (c_int, [P]),
        "vm_model_n_expert": (c_int, [P]),
        "vm_model_n_ctx_train": (c_int, [P]),
        "vm_model_is_moe_layer": (c_int, [P, c_int]),
        "vm_model_gguf": (P, [P]),
        "vm_model_router": (P, [P, c_int]),
        "vm_model_set_routers": (c_int, [P, c_char_p, POINTER(c_int), c_int, P]),
        "vm_ctx_init": (P, [P, c_int, c_int]),
        "vm_ctx_free": (None, [P]),
        "vm_ctx_eval": (c_int, [P, POINTER(c_int32), c_int, POINTER(c_float)]),
        "vm_ctx_set_seed": (None, [P, c_uint64]),
        "vm_ctx_set_trace": (None, [P, TRACE_FN, P]),
        "vm_tokenizer_from_gguf": (P, [P]),
        "vm_tokenizer_free": (None, [P]),
        "vm_tokenize": (c_int, [P, c_char_p, c_size_t, c_int, c_int, POINTER(c_int32), c_int]),
        "vm_token_to_piece": (c_int, [P, c_int32, ctypes.c_char_p, c_int]),
        "vm_tokenizer_bos": (c_int32, [P]),
        "vm_tokenizer_eos": (c_int32, [P]),
        "vm_router_kind_names": (POINTER(c_char_p), []),
        "vm_router_kind_ops": (P, [c_char_p]),
        "vm_unc_name": (c_char_p, [c_int]),
        "vm_gen_new": (P, [P, P, c_int]),
        "vm_gen_free": (None, [P]),
        "vm_gen_default_params": (GenParams, []),
        "vm_gen_score_name": (c_char_p, [c_int]),
        "vm_gen_available": (c_uint, [P]),
        "vm_gen_finish_name": (c_char_p, [c_int]),
        "vm_gen_run": (c_int, [P, POINTER(c_int32), c_int, POINTER(GenParams), GEN_FN, P,
                               POINTER(GenResult)]),
        "vm_fit_default_params": (FitParams, []),
        "vm_fit": (c_int, [P, c_char_p, c_char_p, POINTER(FitParams), POINTER(FitResult)]),
        "vm_eval_unc_name": (c_char_p, [c_int]),
        "vm_eval_default_params": (EvalParams, []),
        "vm_evaluate": (P, [P, c_char_p, POINTER(EvalParams)]),
        "vm_evaluation_free": (None, [P]),
        "vm_eval_report_default_params": (EvalReportParams, []),
        "vm_eval_report": (c_int, [P, c_char_p, c_char_p, POINTER(EvalReportParams)]),
        "vm_evaluation_metrics": (c_int, [P, POINTER(EvalMetrics)]),
        "vm_evaluation_n_items": (c_int, [P]),
        "vm_evaluation_item": (c_int, [P, c_int, POINTER(c_int), POINTER(c_int), POINTER(c_int),
                                       POINTER(c_double)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


lib, LIB_PATH = _load()   # LIB_PATH: the candidate that loaded (a file, or the soname)
_declare(lib)


def errmsg(where: str) -> str:
    """The library's last message on this thread, prefixed by the Python call that failed."""
    m = lib.vm_errmsg()
    text = m.decode("utf-8", "replace") if m else ""
    return f"{where}: {text}" if text else f"{where}: failed"


def check(rc: Optional[int], where: str) -> int:
    """Raises Error with the library's message when a call returned -1."""
    if rc is None or rc < 0:
        raise Error(errmsg(where))
    return rc


def seed(v: object, where: str) -> int:
    """A seed as the uint64 the library takes: an int in [0, 2^64), else Error."""
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
        raise Error(f"{where}: bad seed {v!r} (an int in [0, 2^64))")
    return v


def enc(s: Optional[str]) -> Optional[bytes]:
    """A str argument as the C string the library takes (None stays NULL)."""
    if s is None:
        return None
    if not isinstance(s, (str, os.PathLike)):
        raise Error(f"expected a string or path, got {type(s).__name__}")
    b = os.fsencode(s)
    if b"\0" in b:
        raise Error(f"{s!r}: contains a NUL byte")
    return b
