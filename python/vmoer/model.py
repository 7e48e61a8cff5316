"""vmoer.Model: a loaded GGUF model (optionally with a router adapter) and what it computes.

Every array a Model returns is a NumPy array that owns its memory (the library writes into it, or
it is copied out of the library's buffers before the call returns), so nothing returned refers to
memory the library frees: arrays stay valid after ``close()``.
"""
from __future__ import annotations

import ctypes
import os
import queue
import threading
import weakref
from ctypes import POINTER, Structure, byref, c_char_p, c_float, c_int, c_int32, c_uint
from dataclasses import dataclass, field
from typing import Dict, Generator, List, Optional, Sequence, Union

import numpy as np

from . import _lib
from ._lib import Error, check, enc, lib

Ids = Union[Sequence[int], np.ndarray]
_DONE = object()   # the generation worker's last message

#: Names of the routers' per-token read-outs (vm_unc order): ILV, gate entropy, temperature T, ...
UNC_NAMES: List[str] = [lib.vm_unc_name(u).decode() for u in range(_lib.UNC_COUNT)]
#: Names of a generated token's scores (vm_gen_score order), all "higher = less sure".
SCORE_NAMES: List[str] = [lib.vm_gen_score_name(s).decode() for s in range(_lib.GS_COUNT)]


class _RouterOps(Structure):
    # the leading fields of the public vm_router_ops: enough to name a router and its read-outs
    _fields_ = [("name", c_char_p), ("flags", c_uint), ("unc", c_uint)]


@dataclass
class LayerTrace:
    """The routing of one MoE layer for every position of a sequence (``Model.trace``).

    ``logits``/``probs`` are (n_tokens, n_expert) float32, ``experts`` (n_tokens, top_k) int32 best
    first, ``gates`` (n_tokens, top_k) float32, ``unc`` maps each read-out the layer's router kind
    writes (``readouts``) to a (n_tokens,) float32 array; the others are all NaN.
    """
    layer: int
    router: str
    readouts: List[str]
    logits: np.ndarray
    probs: np.ndarray
    experts: np.ndarray
    gates: np.ndarray
    unc: Dict[str, np.ndarray]

    @property
    def ilv(self) -> np.ndarray:
        """Inferred logit variance tr(Sigma) per token (VGLR routers; NaN otherwise)."""
        return self.unc["ilv"]

    @property
    def gate_entropy(self) -> np.ndarray:
        """Entropy (nats) of the routing distribution the experts were chosen from."""
        return self.unc["gate_entropy"]

    @property
    def temperature(self) -> np.ndarray:
        """The router's temperature T(u) per token (VTSR; NaN otherwise)."""
        return self.unc["temperature"]


@dataclass
class Token:
    """One generated token: its id, text, probability and the uncertainty scores available
    (``scores``: nll, entropy and the routers' read-outs averaged over the read-out layers), and
    ``unc``: every layer's read-outs at the position that predicted it, float32
    (n_layer, len(UNC_NAMES)), NaN where a layer's router has none (dense layers included)."""
    id: int
    text: str
    pos: int
    prob: float
    logprob: float
    scores: Dict[str, float] = field(default_factory=dict)
    unc: Optional[np.ndarray] = None


class Model:
    """A GGUF Mixture-of-Experts model loaded by libvmoer, with its routers.

    ``Model(path, adapter=None, threads=None, samples=0)`` maps the file (weights are not
    copied) and applies ``adapter`` (a GGUF written by ``vmoer fit`` / ``vmoer.fit``); ``samples``
    overrides the adapter's inference sample count. ``threads`` sets the worker threads of this
    model's calls (default: OpenMP's, i.e. every core or ``OMP_NUM_THREADS``; it is OpenMP's
    setting of the calling thread, so it stays for later calls of that thread).

    Use it as a context manager (``with vmoer.Model(p) as m: ...``) or call ``close()``: once
    closed, every call raises ``vmoer.Error``; arrays it returned stay valid (they are NumPy's).
    A Model is not safe to use from several threads at once (routers keep per-call state).

    Inputs longer than the model's context (``n_ctx``) are refused with ``vmoer.Error``, as by the
    CLI: the logits of a window are not those of the longer sequence, so windowing is left to the
    caller, who knows whether independent windows are what they want.
    """

    def __init__(self, path: Union[str, os.PathLike], adapter: Optional[Union[str, os.PathLike]] = None,
                 threads: Optional[int] = None, samples: int = 0) -> None:
        self._m: Optional[int] = None
        self._tok: Optional[int] = None
        self._gens: "weakref.WeakSet[Generator]" = weakref.WeakSet()   # generations not yet finished
        self._threads = threads
        self._set_threads("Model")
        p = lib.vm_model_default_params()
        p.adapter = enc(adapter)
        if not isinstance(samples, int) or samples < 0:
            raise Error(f"Model: bad sample count {samples!r}")
        p.samples = samples
        m = lib.vm_model_load_params(enc(path), byref(p))
        if not m:
            raise Error(_lib.errmsg(f"Model({os.fspath(path)!r})"))
        tok = lib.vm_tokenizer_from_gguf(lib.vm_model_gguf(m))
        if not tok:
            msg = _lib.errmsg(f"Model({os.fspath(path)!r})")
            lib.vm_model_free(m)
            raise Error(msg)
        self._m, self._tok = m, tok
        self.path = os.fspath(path)
        self.adapter = os.fspath(adapter) if adapter is not None else None

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Stops any suspended generation, frees the model and its tokenizer (idempotent); later
        calls raise ``vmoer.Error``."""
        for gen in list(getattr(self, "_gens", ())):
            gen.close()
        if self._tok:
            lib.vm_tokenizer_free(self._tok)
        if self._m:
            lib.vm_model_free(self._m)
        self._m = self._tok = None

    @property
    def closed(self) -> bool:
        return self._m is None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        if self.closed:
            return f"<vmoer.Model {self.path!r} (closed)>"
        return (f"<vmoer.Model {self.path!r} vocab {self.n_vocab}, {self.n_layer} layers, "
                f"{self.n_expert} experts, context {self.n_ctx}>")

    def _handle(self, where: str) -> int:
        if self._m is None:
            raise Error(f"Model.{where}: the model is closed")
        self._set_threads(f"Model.{where}")
        return self._m

    def _set_threads(self, where: str) -> None:
        if self._threads is not None:
            if not isinstance(self._threads, int) or isinstance(self._threads, bool):
                raise Error(f"{where}: threads must be an int, got {self._threads!r}")
            check(lib.vm_set_threads(self._threads), where)

    # ------------------------------------------------------------ shape

    @property
    def n_vocab(self) -> int:
        return lib.vm_model_n_vocab(self._handle("n_vocab"))

    @property
    def n_layer(self) -> int:
        return lib.vm_model_n_layer(self._handle("n_layer"))

    @property
    def n_expert(self) -> int:
        """Experts per MoE layer (0 for a dense model)."""
        return lib.vm_model_n_expert(self._handle("n_expert"))

    @property
    def n_ctx(self) -> int:
        """The training context: the longest sequence ``logits``/``trace`` accept."""
        return lib.vm_model_n_ctx_train(self._handle("n_ctx"))

    @property
    def moe_layers(self) -> List[int]:
        m = self._handle("moe_layers")
        return [l for l in range(lib.vm_model_n_layer(m)) if lib.vm_model_is_moe_layer(m, l)]

    def router(self, layer: int) -> str:
        """The router kind of MoE layer ``layer`` ("deterministic", "vglr-mf", ...)."""
        return self._router_ops(layer, "router").name.decode()

    def _router_ops(self, layer: int, where: str) -> _RouterOps:
        m = self._handle(where)
        r = lib.vm_model_router(m, layer)
        if not r:
            raise Error(f"Model.{where}: layer {layer} is not a MoE layer of {self.path}")
        ops = ctypes.cast(r, POINTER(ctypes.c_void_p))[0]   # vm_router.ops is the first field
        return ctypes.cast(ops, POINTER(_RouterOps))[0]

    def set_router(self, kind: str, layers: Optional[Sequence[int]] = None) -> None:
        """Replaces the routers of ``layers`` (default: every MoE layer) by fresh ones of ``kind``
        with the library's default options (all or nothing)."""
        m = self._handle("set_router")
        arr, n = None, 0
        if layers is not None:
            n = len(layers)
            arr = (c_int * max(n, 1))(*[int(l) for l in layers])
        check(lib.vm_model_set_routers(m, enc(kind), arr, n, None), "Model.set_router")

    # ------------------------------------------------------------ tokens

    def tokenize(self, text: str, bos: bool = True, special: bool = False) -> List[int]:
        """Token ids of ``text``; ``bos``: add BOS when the vocabulary asks for it (as ``vmoer
        logits -p`` and ``run`` do); ``special``: parse control tokens written in the text."""
        self._handle("tokenize")
        if not isinstance(text, str):
            raise Error(f"Model.tokenize: expected str, got {type(text).__name__}")
        b = text.encode("utf-8")
        cap = len(b) + 8
        while True:
            out = (c_int32 * cap)()
            n = check(lib.vm_tokenize(self._tok, b, len(b), int(bos), int(special), out, cap),
                      "Model.tokenize")
            if n <= cap:
                return list(out[:n])
            cap = n

    def piece(self, token: int) -> bytes:
        """The bytes token ``token`` stands for (empty for control tokens such as BOS)."""
        self._handle("piece")
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = lib.vm_token_to_piece(self._tok, int(token), buf, size)
            if n < 0:
                raise Error(_lib.errmsg(f"Model.piece({token})"))
            if n <= size:
                return buf.raw[:n]
            size = n

    def detokenize(self, ids: Ids) -> str:
        """The text of ``ids``: their pieces joined (control tokens add nothing), decoded as UTF-8
        with invalid bytes replaced (a cut through a multi-byte character)."""
        arr = self._ids(ids, "detokenize", check_ctx=False, allow_empty=True)
        return b"".join(self.piece(int(t)) for t in arr).decode("utf-8", "replace")

    def _ids(self, ids: Union[Ids, str], where: str, check_ctx: bool = True,
             allow_empty: bool = False) -> np.ndarray:
        """ids as a contiguous int32 array, checked against the vocabulary and the context."""
        m = self._handle(where)
        if isinstance(ids, str):
            ids = self.tokenize(ids)
        try:
            arr = np.asarray(ids)
        except Exception as e:
            raise Error(f"Model.{where}: ids: {e}") from None
        if arr.size == 0:
            if allow_empty:
                return np.zeros(0, np.int32)
            raise Error(f"Model.{where}: no tokens given")
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise Error(f"Model.{where}: ids must be a 1-D sequence of ints, got {arr.dtype} of shape {arr.shape}")
        V = lib.vm_model_n_vocab(m)
        bad = np.flatnonzero((arr < 0) | (arr >= V))
        if bad.size:
            raise Error(f"Model.{where}: token id {int(arr[bad[0]])} at {int(bad[0])} out of range [0, {V})")
        ctx = lib.vm_model_n_ctx_train(m)
        if check_ctx and ctx > 0 and arr.size > ctx:
            raise Error(f"Model.{where}: {arr.size} tokens exceed the context length {ctx}")
        return np.ascontiguousarray(arr, dtype=np.int32)

    # ------------------------------------------------------------ evaluation

    def _ctx(self, m: int, n: int, where: str) -> int:
        # the CLI's context for the same call (vmoer logits / trace): n positions, batches of <= 512
        c = lib.vm_ctx_init(m, n, min(n, 512))
        if not c:
            raise Error(_lib.errmsg(f"Model.{where}"))
        return c

    def logits(self, ids: Union[Ids, str]) -> np.ndarray:
        """Next-token logits of every position: float32 (n_tokens, n_vocab); row t follows token t.

        ``ids`` is evaluated as one sequence from position 0 (a str is tokenized first, with BOS).
        The numbers are those of ``vmoer logits --ids`` bit for bit. At most ``n_ctx`` tokens.
        """
        m = self._handle("logits")
        arr = self._ids(ids, "logits")
        n, V = arr.size, lib.vm_model_n_vocab(m)
        out = np.empty((n, V), dtype=np.float32)
        c = self._ctx(m, n, "logits")
        try:
            rc = lib.vm_ctx_eval(c, arr.ctypes.data_as(POINTER(c_int32)), n,
                                 out.ctypes.data_as(POINTER(c_float)))
            check(rc, "Model.logits")
        finally:
            lib.vm_ctx_free(c)
        return out

    def trace(self, ids: Union[Ids, str], seed: int = 0) -> Dict[int, LayerTrace]:
        """The routing of every MoE layer for every position of ``ids`` (one batch from position 0):
        ``{layer: LayerTrace}`` with router logits, probabilities, chosen experts, gates and the
        read-outs (ILV, gate entropy, temperature T, ...). ``seed`` seeds sampled routers' stream.
        The numbers are those of ``vmoer trace --ids ... --seed`` bit for bit.
        """
        m = self._handle("trace")
        arr = self._ids(ids, "trace")
        _lib.seed(seed, "Model.trace")
        layers = self.moe_layers
        if not layers:
            raise Error(f"Model.trace: {self.path}: dense model (no MoE layers): nothing to trace")
        n, N = arr.size, lib.vm_model_n_expert(m)
        cap: Dict[int, Dict[str, np.ndarray]] = {}
        K = None
        failed: List[BaseException] = []

        def on_event(_ud: object, evp: "ctypes._Pointer[_lib.TraceEv]") -> None:
            try:
                copy(evp[0])
            except BaseException as e:   # an exception cannot cross the C frames: keep it
                failed.append(e)

        def copy(ev: _lib.TraceEv) -> None:
            nonlocal K
            name = ev.name.decode() if ev.name else ""
            if ev.layer not in layers or not name.startswith("ffn_moe_"):
                return
            what = name[8:]
            if what not in ("logits", "probs", "topk", "weights", "unc") or ev.n_tokens <= 0:
                return
            src = ev.i if what == "topk" else ev.f
            if not src:
                return
            if what in ("topk", "weights"):
                K = ev.ne
            d = cap.setdefault(ev.layer, {})
            if what not in d:   # positions no event covers stay NaN (experts: 0)
                d[what] = np.zeros((n, ev.ne), np.int32) if what == "topk" else np.full((n, ev.ne), np.nan, np.float32)
            rows = min(ev.n_tokens, n - ev.pos0)
            if rows > 0:
                d[what][ev.pos0:ev.pos0 + rows] = np.ctypeslib.as_array(src, shape=(ev.n_tokens, ev.ne))[:rows]

        cb = _lib.TRACE_FN(on_event)
        c = self._ctx(m, n, "trace")
        try:
            lib.vm_ctx_set_seed(c, _lib.seed(seed, "Model.trace"))
            lib.vm_ctx_set_trace(c, cb, None)
            check(lib.vm_ctx_eval(c, arr.ctypes.data_as(POINTER(c_int32)), n, None), "Model.trace")
        finally:
            lib.vm_ctx_free(c)
        if failed:
            raise failed[0]
        out: Dict[int, LayerTrace] = {}
        for l in layers:
            d = cap.get(l, {})
            k = K or 0
            unc = d.get("unc", np.full((n, _lib.UNC_COUNT), np.nan, np.float32))
            ops = self._router_ops(l, "trace")
            out[l] = LayerTrace(
                layer=l, router=ops.name.decode(),
                readouts=[UNC_NAMES[u] for u in range(_lib.UNC_COUNT) if ops.unc & (1 << u)],
                logits=d.get("logits", np.full((n, N), np.nan, np.float32)),
                probs=d.get("probs", np.full((n, N), np.nan, np.float32)),
                experts=d.get("topk", np.zeros((n, k), np.int32)),
                gates=d.get("weights", np.full((n, k), np.nan, np.float32)),
                unc={UNC_NAMES[u]: np.ascontiguousarray(unc[:, u]) for u in range(_lib.UNC_COUNT)})
        return out

    # ------------------------------------------------------------ generation

    def generate(self, prompt: Union[str, Ids], max_tokens: int = 16, temperature: float = 0.0,
                 seed: int = 0, top_p: float = 1.0, top_k: int = 0) -> Generator[Token, None, dict]:
        """Generates up to ``max_tokens`` tokens after ``prompt`` (a str gets BOS) and yields each
        as a ``Token`` with its uncertainty scores; ``temperature`` 0 is greedy, ``seed`` seeds
        the sampler and sampled routers. The generator's return value (``StopIteration.value``)
        is ``{"finish": "length"|"stop"|..., "n_prompt", "n_gen"}``.

        Tokens are yielded as they are generated: the library runs in a worker thread that waits,
        inside its per-token callback, until the loop asks for the next token, so the model is idle
        while the loop's body runs (calling the model there is fine). Leaving the loop early
        stops the generation; ``close()`` stops any generation still suspended. Argument errors
        raise here, the library's errors from the iteration.
        """
        self._handle("generate")
        arr = self._ids(prompt, "generate")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise Error(f"Model.generate: bad max_tokens {max_tokens!r}")
        p = lib.vm_gen_default_params()
        try:
            p.max_tokens, p.temp, p.top_p, p.top_k = max_tokens, float(temperature), float(top_p), int(top_k)
        except (TypeError, ValueError):
            raise Error(f"Model.generate: bad temperature {temperature!r}, top_p {top_p!r} or top_k {top_k!r}") from None
        p.seed = _lib.seed(seed, "Model.generate")
        gen = self._stream(arr, p)
        self._gens.add(gen)
        return gen

    def _stream(self, arr: np.ndarray, p: _lib.GenParams) -> Generator[Token, None, dict]:
        m, n_layer = self._m, lib.vm_model_n_layer(self._m)
        out_q: "queue.Queue[object]" = queue.Queue()   # worker -> loop: Token, then _DONE
        go_q: "queue.Queue[bool]" = queue.Queue()      # loop -> worker: next token (True) or stop
        state: Dict[str, object] = {}
        names: List[tuple] = []

        def on_token(_ud: object, tp: "ctypes._Pointer[_lib.GenTok]") -> int:
            try:
                t = tp[0]
                tok = Token(id=t.id, text=self.piece(t.id).decode("utf-8", "replace"), pos=t.pos,
                            prob=float(t.prob), logprob=float(t.logprob),
                            scores={nm: float(t.score[s]) for s, nm in names},
                            unc=np.ctypeslib.as_array(t.unc, shape=(n_layer, _lib.UNC_COUNT)).copy()
                            if t.unc else None)
            except BaseException as e:   # an exception cannot cross the C frames: stop, re-raise
                state["exc"] = e
                return -1
            out_q.put(tok)
            return 0 if go_q.get() else 1

        def work() -> None:
            g = None
            try:
                self._set_threads("Model.generate")   # OpenMP's setting is per thread
                g = lib.vm_gen_new(m, self._tok, 0)
                if not g:
                    state["err"] = _lib.errmsg("Model.generate")
                    return
                avail = lib.vm_gen_available(g)
                names.extend((s, SCORE_NAMES[s]) for s in range(_lib.GS_COUNT) if avail & (1 << s))
                res = _lib.GenResult()
                cb = _lib.GEN_FN(on_token)
                rc = lib.vm_gen_run(g, arr.ctypes.data_as(POINTER(c_int32)), arr.size, byref(p), cb, None,
                                    byref(res))
                if rc < 0 and "exc" not in state:
                    state["err"] = _lib.errmsg("Model.generate")
                state["summary"] = {"finish": lib.vm_gen_finish_name(res.finish).decode(),
                                    "n_prompt": res.n_prompt, "n_gen": res.n_gen}
            except BaseException as e:
                state["exc"] = e
            finally:
                lib.vm_gen_free(g)
                out_q.put(_DONE)

        th = threading.Thread(target=work, name="vmoer-generate", daemon=True)
        th.start()
        finished = False
        try:
            while True:
                item = out_q.get()
                if item is _DONE:
                    finished = True
                    break
                yield item   # type: ignore[misc]
                go_q.put(True)
        finally:
            if not finished:   # left early (break, close, an exception): stop the worker
                go_q.put(False)
                while out_q.get() is not _DONE:
                    go_q.put(False)
            th.join()
        if "exc" in state:
            raise state["exc"]   # type: ignore[misc]
        if "err" in state:
            raise Error(str(state["err"]))
        return state["summary"]   # type: ignore[return-value]
