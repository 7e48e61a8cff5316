"""The Python package against the CLI on the bundled model: logits and traces bit for bit, fit
writes the same adapter bytes and evaluate gives the numbers of metrics.json, errors raise
vmoer.Error, a closed model refuses calls, repeated long logits calls do not leak.

Run by tests/cli/python.sh (VMOER_LIB, VMOER_CLI, PYTHONPATH=python set there).
"""
import json
import os
import re
import subprocess
import tempfile
import unittest

import numpy as np

import vmoer

MODEL = "data/models/stories-moe.gguf"
TRAIN = "data/cloze/train.jsonl"
TEST = "data/cloze/test.jsonl"
CLI = os.environ.get("VMOER_CLI", "build/vmoer")
PROMPT = "Once upon a time, there was a little girl named Lily."
VAL = "data/cloze/validation.jsonl"
OOD = "data/cloze/ood-tinyshakespeare.jsonl"
# the evaluation of the metrics tests, as CLI flags and as evaluate() options: a validation set
# (temperature scaling), an OOD set, a small stability grid, a bootstrap interval, one timed prompt
EVAL_FLAGS = ("--limit", "16", "--score", "pmi", "--val", VAL, "--ood", "tiny=" + OOD, "--noise-grid", "0,0.01",
              "--stability-limit", "4", "--boot", "200", "--time-items", "1", "--seed", "3")
EVAL_OPTS = dict(limit=16, score="pmi", val=VAL, ood={"tiny": OOD}, noise_grid=[0, 0.01], stability_limit=4,
                 boot=200, time_items=1, seed=3)
# wall-clock fields: the only ones two runs of the same evaluation may differ in
TIMING = {("cost", "sec_pass_base"), ("cost", "sec_pass_method"), ("cost", "time_ratio_per_pass"),
          ("cost", "time_ratio_per_question")}


def without_timing(m: dict) -> dict:
    """metrics.json with its wall-clock fields (cost timings, each set's seconds) removed."""
    m = json.loads(json.dumps(m))
    for sec, key in TIMING:
        m.get(sec, {}).pop(key, None)
    for st in m.get("config", {}).get("sets", {}).values():
        st.pop("seconds", None)
    return m


def read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


def cli(*args: str) -> str:
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"vmoer {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def ctypes_sizeof(t) -> int:
    import ctypes
    return ctypes.sizeof(t)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.T = cls.tmp.name

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def assert_trace_equals_cli(self, tr: dict, path: str, ids: list) -> None:
        """Every line of a `vmoer trace` JSONL equals the Python trace as float32, bit for bit."""
        lines = [json.loads(l) for l in read(path).splitlines()]
        self.assertEqual(len(lines), len(ids) * len(tr))
        for o in lines:
            lt = tr[o["layer"]]
            t = o["pos"]
            self.assertEqual(o["token"], ids[t])
            for key, arr in (("logits", lt.logits), ("probs", lt.probs), ("gates", lt.gates)):
                want = np.array([np.nan if v is None else v for v in o[key]], dtype=np.float32)
                self.assertEqual(want.tobytes(), arr[t].tobytes(), f"{key} at pos {t} layer {o['layer']}")
            self.assertEqual(o["experts"], lt.experts[t].tolist())
            self.assertEqual(sorted(o["unc"]), sorted(lt.readouts))
            for name, v in o["unc"].items():
                got = lt.unc[name][t]
                if v is None:
                    self.assertTrue(np.isnan(got))
                else:
                    self.assertEqual(np.float32(v).tobytes(), got.tobytes(), f"{name} at pos {t}")


class TestModel(Base):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.m = vmoer.Model(MODEL, threads=2)
        cls.ids = cls.m.tokenize(PROMPT)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.m.close()
        super().tearDownClass()

    def test_enum_counts_match_header(self) -> None:
        """The ctypes structs mirror vmoer.h: its enum counts are the package's."""
        h = read("include/vmoer.h")

        def count(enum: str) -> int:
            body = re.search(r"typedef enum %s \{(.*?)\}" % enum, h, re.S).group(1)
            body = re.sub(r"//[^\n]*", "", body)
            return len([x for x in body.split(",") if x.strip() and "COUNT" not in x])
        from vmoer import _lib
        self.assertEqual(count("vm_unc"), _lib.UNC_COUNT)
        self.assertEqual(count("vm_gen_score"), _lib.GS_COUNT)
        self.assertEqual(count("vm_eval_unc"), _lib.EVAL_UNC_COUNT)
        self.assertIn("#define VM_GEN_MAX_TOP %d" % _lib.GEN_MAX_TOP, h)
        self.assertEqual(vmoer.version(), re.search(r'#define VMOER_VERSION "(.*)"', h).group(1))

    def test_struct_layouts_match_header(self) -> None:
        """Every struct the package mirrors has the size and field offsets the C compiler gives."""
        import shutil
        from vmoer import _lib
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler")
        structs = {"vm_model_params": _lib.ModelParams, "vm_trace_ev": _lib.TraceEv, "vm_gen_tok": _lib.GenTok,
                   "vm_gen_params": _lib.GenParams, "vm_gen_summary": _lib.GenSummary,
                   "vm_gen_result": _lib.GenResult, "vm_fit_params": _lib.FitParams,
                   "vm_fit_result": _lib.FitResult, "vm_eval_params": _lib.EvalParams,
                   "vm_eval_metrics": _lib.EvalMetrics, "vm_eval_report_params": _lib.EvalReportParams}
        lines, want = [], []
        for cname, py in structs.items():
            lines.append(f'printf("%zu\\n", sizeof({cname}));')
            want.append(ctypes_sizeof(py))
            for f in py._fields_:
                lines.append(f'printf("%zu\\n", offsetof({cname}, {f[0]}));')
                want.append(getattr(py, f[0]).offset)
        src = os.path.join(self.T, "layout.c")
        with open(src, "w") as f:
            f.write("#include <stddef.h>\n#include <stdio.h>\n#include <vmoer.h>\nint main(void) {\n"
                    + "\n".join(lines) + "\nreturn 0;\n}\n")
        exe = os.path.join(self.T, "layout")
        subprocess.run([cc, "-std=c11", "-Iinclude", src, "-o", exe], check=True)
        got = [int(x) for x in subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()]
        self.assertEqual(got, want)

    def test_shape_and_kinds(self) -> None:
        self.assertGreater(self.m.n_vocab, 0)
        self.assertEqual(self.m.n_ctx, 512)
        self.assertTrue(self.m.moe_layers)
        self.assertEqual(self.m.router(self.m.moe_layers[0]), "deterministic")
        self.assertIn("vglr-mf", vmoer.router_kinds())
        m = vmoer.Model(MODEL)
        self.assertIn("context 512", repr(m))
        m.close()
        self.assertIn("(closed)", repr(m))

    def test_tokenize_matches_cli(self) -> None:
        want = [int(x) for x in cli("tokenize", "--bos", MODEL, "--", PROMPT).split()]
        self.assertEqual(self.ids, want)
        self.assertEqual(self.m.detokenize(self.ids).strip(), PROMPT)
        self.assertEqual(self.m.detokenize([]), "")

    def test_logits_equal_cli_npy(self) -> None:
        out = os.path.join(self.T, "l.npy")
        cli("logits", MODEL, "--ids", ",".join(map(str, self.ids)), "-o", out)
        want = np.load(out)
        got = self.m.logits(self.ids)
        self.assertEqual(got.dtype, np.float32)
        self.assertEqual(got.shape, (len(self.ids), self.m.n_vocab))
        self.assertEqual(got.tobytes(), want.tobytes())
        # a prompt string is tokenized as `vmoer logits -p` does
        cli("logits", MODEL, "-p", PROMPT, "-o", out)
        self.assertEqual(self.m.logits(PROMPT).tobytes(), np.load(out).tobytes())
        # numpy ids of another int type give the same
        self.assertEqual(self.m.logits(np.array(self.ids, np.int64)).tobytes(), got.tobytes())

    def test_trace_equals_cli_jsonl(self) -> None:
        out = os.path.join(self.T, "t.jsonl")
        cli("trace", MODEL, "--ids", ",".join(map(str, self.ids)), "-o", out)
        tr = self.m.trace(self.ids)
        self.assertEqual(sorted(tr), self.m.moe_layers)
        lt = tr[self.m.moe_layers[0]]
        self.assertEqual(lt.logits.shape, (len(self.ids), self.m.n_expert))
        self.assertEqual(lt.experts.dtype, np.int32)
        self.assertTrue(np.all(np.isfinite(lt.gate_entropy)))
        self.assertTrue(np.all(np.isnan(lt.ilv)))   # the pretrained router has no ILV
        self.assert_trace_equals_cli(tr, out, self.ids)

    def test_generate(self) -> None:
        gen = self.m.generate(PROMPT, max_tokens=5)
        toks = list(gen)
        self.assertEqual(len(toks), 5)
        # greedy: the first token is the argmax of the prompt's last logits
        self.assertEqual(toks[0].id, int(np.argmax(self.m.logits(PROMPT)[-1])))
        self.assertIn("gate_entropy", toks[0].scores)
        self.assertIn("nll", toks[0].scores)
        self.assertTrue(all(0 < t.prob <= 1 for t in toks))
        ids = self.m.tokenize(PROMPT) + [t.id for t in toks]
        self.assertTrue(self.m.detokenize(ids).strip().startswith(PROMPT))
        # the generator's value: the finish reason
        g = self.m.generate(PROMPT, max_tokens=2)
        with self.assertRaises(StopIteration) as cm:
            while True:
                next(g)
        self.assertEqual(cm.exception.value["finish"], "length")
        self.assertEqual(cm.exception.value["n_gen"], 2)
        # sampling is reproducible by seed
        a = [t.id for t in self.m.generate(PROMPT, max_tokens=6, temperature=1.0, seed=3)]
        b = [t.id for t in self.m.generate(PROMPT, max_tokens=6, temperature=1.0, seed=3)]
        self.assertEqual(a, b)

    def test_generate_streams(self) -> None:
        """Tokens come one by one: the model can be called inside the loop, leaving the loop stops the
        generation, and closing the model stops one left suspended."""
        n = 0
        for tok in self.m.generate(PROMPT, max_tokens=4):
            self.assertEqual(self.m.logits(self.ids).shape[0], len(self.ids))   # the worker waits meanwhile
            n += 1
        self.assertEqual(n, 4)
        for tok in self.m.generate(PROMPT, max_tokens=100):
            break
        self.assertEqual(len(list(self.m.generate(PROMPT, max_tokens=3))), 3)
        import threading
        m = vmoer.Model(MODEL)
        g = m.generate(PROMPT, max_tokens=50)
        next(g)
        self.assertEqual(sum(t.name == "vmoer-generate" for t in threading.enumerate()), 1)
        m.close()   # closes g first: its worker ends before the model is freed
        self.assertEqual(sum(t.name == "vmoer-generate" for t in threading.enumerate()), 0)
        with self.assertRaises(StopIteration):
            next(g)
        # a prompt longer than the context: the library's message, from the iteration
        with self.assertRaises(vmoer.Error):
            list(self.m.generate([1] * 600))

    def test_generate_equals_cli_run(self) -> None:
        """Greedy generation: the tokens and scores of `vmoer run --uncertainty --jsonl`."""
        lines = [json.loads(l) for l in cli("run", MODEL, "-p", PROMPT, "-n", "6", "--temp", "0", "--seed", "0",
                                             "--uncertainty", "--jsonl").splitlines()]
        toks = list(self.m.generate(PROMPT, max_tokens=6, temperature=0.0, seed=0))
        rows = [o for o in lines if "token" in o]
        self.assertEqual([o["token"] for o in rows], [t.id for t in toks])
        ro = lines[-1]["info"]["readout_layers"]
        ge = vmoer.UNC_NAMES.index("gate_entropy")
        for o, t in zip(rows, toks):
            self.assertEqual(o["text"], t.text)
            self.assertEqual(np.float32(o["prob"]), np.float32(t.prob))
            for name in lines[-1]["info"]["scores"]:
                self.assertEqual(np.float32(o[name]), np.float32(t.scores[name]), name)
            self.assertEqual(t.unc.shape, (self.m.n_layer, len(vmoer.UNC_NAMES)))
            self.assertEqual([np.float32(v) for v in o["layers"]["gate_entropy"]], [t.unc[l, ge] for l in ro])

    def test_bad_arguments_raise(self) -> None:
        V = self.m.n_vocab
        for bad, msg in (([V], "out of range"), ([-1], "out of range"), ([], "no tokens"),
                         ([[1, 2]], "1-D"), ([1.5], "1-D"), ([1] * 513, "exceed the context length 512")):
            with self.assertRaises(vmoer.Error) as cm:
                self.m.logits(bad)
            self.assertIn(msg, str(cm.exception))
            self.assertTrue(str(cm.exception).startswith("Model.logits: "))
        with self.assertRaises(vmoer.Error):
            self.m.trace([V + 5])
        with self.assertRaises(vmoer.Error):
            self.m.generate(PROMPT, max_tokens=-1)
        with self.assertRaises(vmoer.Error):
            self.m.tokenize(b"bytes")
        for call in (lambda: self.m.trace(self.ids, seed=-1), lambda: self.m.generate(PROMPT, seed=1.5),
                     lambda: vmoer.evaluate(MODEL, TEST, seed=-2), lambda: vmoer.fit(MODEL, TRAIN, "x", seed=2 ** 64)):
            with self.assertRaises(vmoer.Error) as cm:
                call()
            self.assertIn("bad seed", str(cm.exception))
        with self.assertRaises(vmoer.Error) as cm:
            vmoer.fit(MODEL, TRAIN, os.path.join(self.T, "y.gguf"), lr="fast", limit=4)
        self.assertIn("bad lr", str(cm.exception))
        with self.assertRaises(vmoer.Error) as cm:
            self.m.set_router("no-such-kind")
        self.assertIn("no-such-kind", str(cm.exception))

    def test_bad_paths_raise(self) -> None:
        with self.assertRaises(vmoer.Error) as cm:
            vmoer.Model(os.path.join(self.T, "missing.gguf"))
        self.assertIn("missing.gguf", str(cm.exception))
        with self.assertRaises(vmoer.Error) as cm:
            vmoer.Model(MODEL, adapter=os.path.join(self.T, "missing-adapter.gguf"))
        self.assertIn("missing-adapter.gguf", str(cm.exception))
        with self.assertRaises(vmoer.Error):
            vmoer.Model(TEST)   # not a GGUF file
        with self.assertRaises(vmoer.Error):
            vmoer.Model(MODEL, threads=0)
        with self.assertRaises(vmoer.Error) as cm:
            vmoer.evaluate(MODEL, os.path.join(self.T, "missing.jsonl"), limit=2)
        self.assertIn("missing.jsonl", str(cm.exception))
        with self.assertRaises(vmoer.Error):
            vmoer.fit(MODEL, TRAIN, os.path.join(self.T, "x.gguf"), router="deterministic", limit=4)
        with self.assertRaises(vmoer.Error):
            vmoer.fit(MODEL, TRAIN, os.path.join(self.T, "x.gguf"), layers=[99], limit=4)
        with self.assertRaises(vmoer.Error):
            vmoer.evaluate(MODEL, TEST, score="no-such-mode", limit=2)

    def test_closed_model_refuses_calls(self) -> None:
        with vmoer.Model(MODEL) as m:
            lg = m.logits(self.ids)
            tr = m.trace(self.ids[:4])
        self.assertTrue(m.closed)
        for call in (lambda: m.logits(self.ids), lambda: m.trace(self.ids), lambda: m.tokenize("x"),
                     lambda: m.generate("x"), lambda: m.n_vocab, lambda: m.detokenize([1]),
                     lambda: vmoer.evaluate(m, TEST, limit=2)):
            with self.assertRaises(vmoer.Error) as cm:
                call()
            self.assertIn("closed", str(cm.exception))
        m.close()   # idempotent
        # what it returned is NumPy's own memory: still readable
        self.assertEqual(lg.shape[0], len(self.ids))
        self.assertTrue(np.all(np.isfinite(lg)) and float(np.abs(lg).sum()) > 0)
        self.assertTrue(np.all(np.isfinite(next(iter(tr.values())).probs)))

    def test_logits_memory_stable(self) -> None:
        """A million tokens of logits in full-context calls (1954 x 512) with bounded RSS growth: each
        call's context and output are freed (the output array by NumPy once dropped). About 10 s
        on 2 idle cores; on a loaded machine it stops after VMOER_PY_MEM_SECONDS (20) once 200
        calls (100k tokens) have run, so the suite stays well under a minute."""
        import time
        n_ctx = self.m.n_ctx
        rng = np.random.default_rng(0)
        ids = rng.integers(0, self.m.n_vocab, size=n_ctx, dtype=np.int32)
        for _ in range(10):   # warm-up: allocator pools, OpenMP threads
            self.m.logits(ids)
        before = rss_kb()
        calls = int(os.environ.get("VMOER_PY_MEM_CALLS", "1954"))   # 1954 * 512 >= 1e6 tokens
        budget = float(os.environ.get("VMOER_PY_MEM_SECONDS", "20"))
        total, t0, mid, done = 0, time.monotonic(), None, 0
        for i in range(calls):
            out = self.m.logits(ids)
            total += out.shape[0]
            done = i + 1
            if i == 50:
                mid = rss_kb()
            if done >= 200 and time.monotonic() - t0 > budget:
                break
        grown, late = rss_kb() - before, rss_kb() - mid
        self.assertEqual(total, done * n_ctx)
        # one call's output is 512 x 512 floats (1 MB): a leak of it, or of the call's context
        # (KV cache, activations), would grow RSS by hundreds of MB
        self.assertLess(grown, 8 * 1024, f"RSS grew by {grown} kB over {done} calls ({total} tokens)")
        self.assertLess(late, 4 * 1024, f"RSS grew by {late} kB over the last {done - 51} calls")
        if done < calls:
            print(f"\n    memory test: {done} calls ({total} tokens) in the time budget", end=" ")


class TestDocs(Base):
    """The README's Python section and examples/notebook.py run as written."""

    def run_py(self, *args: str) -> str:
        import sys
        r = subprocess.run([sys.executable, *args], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        return r.stdout

    def test_readme_python_section(self) -> None:
        readme = read("README.md")
        sec = readme[readme.index("## Python"):]
        code = re.search(r"```python\n(.*?)```", sec, re.S).group(1)
        code = code.replace("/tmp/a.gguf", os.path.join(self.T, "a.gguf"))   # not a shared path
        out = self.run_py("-c", code)
        res, stab, q = out.strip().splitlines()[-3:]
        self.assertRegex(res, r"^0\.\d+ \d+\.\d+ 0\.\d+ \[0\.\d+, 0\.\d+\] [01]\.\d+$")   # acc nll ece ci auroc
        self.assertRegex(stab, r"^[01]\.\d+ 1\.\d+$")                                   # jaccard, FLOPs ratio
        self.assertRegex(q, r"^\(48, 4\) 0\.\d+ \[[0-9. ]+\]$")
        self.assertIn("PYTHONPATH=python python3 examples/notebook.py", sec)

    def test_notebook_example(self) -> None:
        out = self.run_py("examples/notebook.py", self.T)
        self.assertIn("vglr-mf    acc", out)
        try:
            import matplotlib  # noqa: F401
            self.assertTrue(os.path.getsize(os.path.join(self.T, "reliability.png")) > 1000)
        except ImportError:
            self.assertIn("matplotlib not installed", out)


class TestFitEvaluate(Base):
    """fit + evaluate through Python and through the CLI: same adapter bytes, same metrics."""
    LAYER = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with vmoer.Model(MODEL) as m:
            cls.LAYER = m.moe_layers[-1]
        cls.opts = dict(limit=32, epochs=1, batch=8, lr=1e-2, seed=1, score="pmi")
        cls.py_adapter = os.path.join(cls.T, "py.gguf")
        cls.cli_adapter = os.path.join(cls.T, "cli.gguf")
        cls.fit_result = vmoer.fit(MODEL, TRAIN, cls.py_adapter, router="vglr-mf", layers=[cls.LAYER],
                                   threads=2, **cls.opts)
        cli("fit", MODEL, "--data", TRAIN, "--router", "vglr-mf", "--layers", str(cls.LAYER), "--limit", "32",
            "--epochs", "1", "--batch", "8", "--lr", "0.01", "--seed", "1", "--score", "pmi", "--quiet",
            "--threads", "2", "-o", cls.cli_adapter)

    def test_fit_same_adapter_bytes(self) -> None:
        self.assertEqual(read(self.py_adapter, "rb"), read(self.cli_adapter, "rb"))
        r = self.fit_result
        self.assertEqual(r["n_layers"], 1)
        self.assertEqual(r["n_train"] + r["n_val"], 32)
        self.assertGreater(r["steps"], 0)
        self.assertEqual(r["adapter"], self.py_adapter)

    def check_metrics(self, got: dict, outdir: str) -> None:
        """evaluate's dict is metrics.json of the CLI's run (every number, timings aside), plus the
        rows of its questions.jsonl."""
        mj = json.loads(read(os.path.join(outdir, "metrics.json")))
        questions = got.pop("questions")
        self.assertIsNone(got.pop("output"))
        self.assertEqual(without_timing(got), without_timing(mj))
        self.assertEqual(questions, [json.loads(l) for l in read(os.path.join(outdir, "questions.jsonl")).splitlines()])
        for key in ("ece_ci", "mce", "aurc", "ood"):   # what the headline-only evaluate lacked
            self.assertIn(key, got["results"][got["methods"][0]])
        self.assertIn("auroc", got["results"][got["methods"][0]]["ood"]["tiny"]["entropy"])
        self.assertEqual(len(got["stability"]["gamma"]), 2)
        self.assertEqual(len(got["methods"]), 2)   # the routers and their temperature-scaled twin
        qa = vmoer.question_arrays(dict(got, questions=questions))
        self.assertEqual(len(qa["pred"]), 16)
        self.assertAlmostEqual(float(np.mean(qa["correct"])), got["results"][got["methods"][0]]["acc"], places=9)
        self.assertTrue(np.all((qa["pred"] == qa["answer"]) == qa["correct"]))
        conf = -qa["scores"]["neg_maxprob"]
        self.assertTrue(np.all((conf > 0) & (conf <= 1)))
        self.assertEqual(len(vmoer.question_arrays(dict(got, questions=questions), set="tiny")["pred"]), 16)
        with self.assertRaises(vmoer.Error):
            vmoer.question_arrays(dict(got, questions=questions), method="nope")

    def test_evaluate_adapter_matches_cli(self) -> None:
        got = vmoer.evaluate(MODEL, TEST, adapter=self.py_adapter, threads=2, **EVAL_OPTS)
        out = os.path.join(self.T, "eval-a")
        cli("eval", MODEL, "--adapter", self.py_adapter, "--data", TEST, "--threads", "2", *EVAL_FLAGS, "-o", out)
        self.check_metrics(got, out)
        self.assertEqual(got["config"]["adapter"], self.py_adapter)
        self.assertEqual(got["methods"][0], "vglr-mf")

    def test_evaluate_pretrained_matches_cli(self) -> None:
        with vmoer.Model(MODEL, threads=2) as m:
            got = vmoer.evaluate(m, TEST, **EVAL_OPTS)
        out = os.path.join(self.T, "eval-d")
        cli("eval", MODEL, "--data", TEST, "--threads", "2", *EVAL_FLAGS, "-o", out)
        self.check_metrics(got, out)
        self.assertEqual(got["methods"][0], "deterministic")

    def test_evaluate_writes_the_cli_folder(self) -> None:
        """output=: the folder `vmoer eval -o` writes, file for file (timings aside)."""
        out_py, out_cli = os.path.join(self.T, "eval-py"), os.path.join(self.T, "eval-cli")
        got = vmoer.evaluate(MODEL, TEST, router="vglr-mf", output=out_py, threads=2, **EVAL_OPTS)
        cli("eval", MODEL, "--router", "vglr-mf", "--data", TEST, "--threads", "2", *EVAL_FLAGS, "-o", out_cli)
        self.assertEqual(got["output"], out_py)
        self.assertEqual(sorted(os.listdir(out_py)), sorted(os.listdir(out_cli)))
        for name in os.listdir(out_cli):
            if name in ("metrics.json", "report.html"):   # they print the timings
                continue
            self.assertEqual(read(os.path.join(out_py, name), "rb"), read(os.path.join(out_cli, name), "rb"), name)
        with self.assertRaises(vmoer.Error) as cm:   # a folder holding other files is not replaced
            vmoer.evaluate(MODEL, TEST, output=self.T, limit=2, noise_grid=[])
        self.assertIn(self.T, str(cm.exception))

    def test_evaluate_bad_options_raise(self) -> None:
        for kw, text in ((dict(ood=["nothing"]), "NAME=PATH"), (dict(ood="tiny=x"), "ood must be"),
                         (dict(ood={"id": OOD}), "reserved"), (dict(val=TEST), "evaluation set itself"),
                         (dict(bins=0), "bins"), (dict(noise_grid=[-1]), "noise level"),
                         (dict(noise_grid="0.1"), "noise_grid")):
            with self.assertRaises(vmoer.Error, msg=str(kw)) as cm:
                vmoer.evaluate(MODEL, TEST, limit=2, **kw)
            self.assertIn(text, str(cm.exception))

    def test_trace_with_adapter_equals_cli(self) -> None:
        with vmoer.Model(MODEL, adapter=self.py_adapter) as m:
            ids = m.tokenize(PROMPT)
            self.assertEqual(m.router(self.LAYER), "vglr-mf")
            tr = m.trace(ids, seed=7)
        out = os.path.join(self.T, "ta.jsonl")
        cli("trace", MODEL, "--adapter", self.cli_adapter, "--ids", ",".join(map(str, ids)), "--seed", "7",
            "-o", out)
        self.assertIn("ilv", tr[self.LAYER].readouts)
        self.assertTrue(np.all(np.isfinite(tr[self.LAYER].ilv)))
        self.assert_trace_equals_cli(tr, out, ids)


if __name__ == "__main__":
    unittest.main()
