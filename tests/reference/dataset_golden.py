#!/usr/bin/python3
"""Writes tests/golden/dataset/spot.json: row counts and a few decoded items of every real
multiple-choice file in ../shared/data/mcqa, read with Python's json and csv modules (the formats'
published definitions), never with vmoer. Run once from the repo root: /usr/bin/python3 <this>.

Per file: n (records), and items at indices first/middle/last with the fields vmoer must produce:
question, choices, labels, answer (0-based), id, subject, line (1-based line where the record starts).
SciQ choice order depends on vmoer's seeded shuffle, so only the sorted choice set, the correct
answer text and the support are recorded. MedMCQA cop is 1-based (1 = opa) in the official file."""
import csv, glob, json, os, sys

SHARED = os.environ.get("VMOER_SHARED", "../shared")
ROOT = os.path.join(SHARED, "data/mcqa")
MMLU_SPOT = {"anatomy", "college_mathematics", "global_facts", "high_school_european_history",
             "abstract_algebra"}

def name_of(path):
    parent = os.path.basename(os.path.dirname(path))
    stem = os.path.basename(path)
    for ext in (".jsonl", ".csv"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return parent + "/" + stem

def jsonl(path, fmt):
    items = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            d = json.loads(line)
            it = {"line": i + 1}
            if fmt in ("obqa", "arc"):
                ch = d["question"]["choices"]
                it.update(question=d["question"]["stem"], choices=[c["text"] for c in ch],
                          labels=[c["label"] for c in ch], id=d["id"],
                          answer=[c["label"] for c in ch].index(d["answerKey"]))
            elif fmt == "medmcqa":
                it.update(question=d["question"], choices=[d[k] for k in ("opa", "opb", "opc", "opd")],
                          labels=list("ABCD"), answer=d["cop"] - 1, id=d["id"], subject=d["subject_name"])
            elif fmt == "sciq":
                opts = [d["distractor1"], d["distractor2"], d["distractor3"], d["correct_answer"]]
                it.update(question=d["question"], choice_set=sorted(opts), correct=d["correct_answer"],
                          support=d["support"] or None, id=name_of(path) + ":%d" % (i + 1))
            items.append(it)
    return items

def mmlu(path):
    subject = os.path.basename(path).rsplit("_", 1)[0]
    items = []
    with open(path, encoding="utf-8", newline="") as f:
        r = csv.reader(f)
        prev = 0
        for row in r:
            start = prev + 1
            prev = r.line_num
            if not row:
                continue
            items.append({"line": start, "question": row[0], "choices": row[1:5], "labels": list("ABCD"),
                          "answer": "ABCD".index(row[5]), "subject": subject,
                          "id": name_of(path) + ":%d" % start})
    return items

def spot(items):
    n = len(items)
    idx = sorted({0, n // 2, n - 1})
    return [dict(index=k, **items[k]) for k in idx]

out = {"files": []}
for folder, fmt in (("openbookqa", "obqa"), ("arc-challenge", "arc"), ("arc-easy", "arc"),
                    ("sciq", "sciq"), ("medmcqa", "medmcqa")):
    for path in sorted(glob.glob(os.path.join(ROOT, folder, "*.jsonl"))):
        items = jsonl(path, fmt)
        out["files"].append({"path": os.path.relpath(path, SHARED), "format": fmt, "n": len(items),
                             "spot": spot(items)})
for split in ("dev", "val", "test"):
    total = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "mmlu", split, "*.csv"))):
        items = mmlu(path)
        total += len(items)
        subject = items[0]["subject"]
        entry = {"path": os.path.relpath(path, SHARED), "format": "mmlu", "n": len(items)}
        if subject in MMLU_SPOT:
            entry["spot"] = spot(items)
        out["files"].append(entry)
    out["files"].append({"path": os.path.relpath(os.path.join(ROOT, "mmlu", split), SHARED),
                         "format": "mmlu", "n": total, "folder": True})
# MedMCQA subject counts for the subject filter test.
subj = {}
with open(os.path.join(ROOT, "medmcqa/dev.jsonl"), encoding="utf-8") as f:
    for line in f:
        s = json.loads(line)["subject_name"]
        subj[s] = subj.get(s, 0) + 1
out["medmcqa_subjects"] = subj

os.makedirs("tests/golden/dataset", exist_ok=True)
with open("tests/golden/dataset/spot.json", "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=0)
    f.write("\n")
print("wrote tests/golden/dataset/spot.json:", len(out["files"]), "entries", file=sys.stderr)
