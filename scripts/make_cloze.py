#!/usr/bin/env python3
"""Builds data/cloze/: story-cloze multiple-choice sets from real held-out text.

Task: the question is the first k sentences of a text unit (a TinyStories story, a speech of
tinyshakespeare, a WikiText-2 paragraph); the four choices are the true next sentence and three
sentences taken from OTHER units of the same set at a similar position, with similar length.
A language model answers by the log-likelihood of " " + choice after the question (lm-eval style).

In-distribution: TinyStories validation stories (shared/data/text/tinystories-valid.txt), split
by story into train / validation / test. Out-of-distribution, same form: tinyshakespeare and
WikiText-2 validation. Python 3 standard library only; seeded; the output depends only on the
input files (the three texts and ../shared/models/tok512.bin, read to count stories260K tokens)
and the constants below (no set/dict-order or hash-randomisation effects). Statistics go to stdout.

Usage (from the repository root):
    python3 scripts/make_cloze.py [--shared ../shared] [--out data/cloze]
"""
import argparse
import json
import math
import os
import random
import re
import sys

SEED = 6                 # issue 6
N_CHOICES = 4
SPLIT_SIZES = [("test", 500), ("validation", 300), ("train", 2000)]  # filled in this order
OOD_SIZE = 500
MIN_K = 2                # the passage has at least this many sentences ..
PASSAGE_MIN_CHARS = 40   # .. and this many characters
MAX_TOKENS = 300         # BOS + passage + " " + choice, in stories260K tokens (tok512; context 512)
CHOICE_MAX_TOKENS = 60   # so a passage may have up to MAX_TOKENS - 1 - 60 tokens
CHOICE_MIN_CHARS = 20    # too short = generic ("The end.", "Yes!"),
CHOICE_MAX_CHARS = 160   # too long = easy to spot and eats the context
LEN_BIN = 1.15           # choices of an item share one length bin [1.15^b, 1.15^(b+1)) chars
POS_WINDOW = 1           # distractors come from sentence index k +- 1 ..
MAX_POS_WINDOW = 6       # .. widened up to k +- 6 when that bin has too few, then to the bins
                         # either side, then to any position (rare: long sentences in the small
                         # splits, deep WikiText positions; counted on stderr)

ABBREV = ("Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr")


def norm(s):
    """Key for duplicate detection: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


# ---------------------------------------------------------------- stories260K token counts

class Tok512:
    """Token counts under the llama2.c tokenizer tok512.bin (the stories260K vocabulary), written
    from llama2.c's published encoder: a leading space, one symbol per UTF-8 code point (bytes,
    id = byte + 3, when the code point is not a piece), then merge the adjacent pair whose text is
    the best-scoring piece until none is. No piece holds a space after its first byte, so no merge
    crosses a space: the count of a text is the sum of the counts of its ' word' segments, which
    are cached. Checked against the C tokenizer by tests/test_cloze.c (prompts <= MAX_TOKENS)."""

    def __init__(self, path):
        import struct
        raw = open(path, "rb").read()
        off, self.score = 4, {}
        while off < len(raw):
            sc, n = struct.unpack_from("<fi", raw, off)
            off += 8
            self.score.setdefault(raw[off:off + n], sc)
            off += n
        assert all(b" " not in p[1:] for p in self.score), "a piece spans a space"
        self.cache = {}

    def _segment(self, seg):
        b = seg.encode("utf-8")
        syms, i = [], 0
        while i < len(b):
            j = i + 1
            while j < len(b) and (b[j] & 0xC0) == 0x80:
                j += 1
            syms.extend([b[i:j]] if b[i:j] in self.score else [b[x:x + 1] for x in range(i, j)])
            i = j
        while True:
            best, at = None, -1
            for k in range(len(syms) - 1):
                sc = self.score.get(syms[k] + syms[k + 1])
                if sc is not None and (best is None or sc > best):
                    best, at = sc, k
            if at < 0:
                return len(syms)
            syms[at:at + 2] = [syms[at] + syms[at + 1]]

    def count(self, text):
        """Tokens of text without BOS (llama2.c adds the leading space)."""
        n = 0
        for seg in re.findall(r" [^ ]*", " " + text):
            c = self.cache.get(seg)
            if c is None:
                c = self.cache[seg] = self._segment(seg)
            n += c
        return n


TOK = None   # set in main()


# ---------------------------------------------------------------- sentence splitting

def split_prose(p):
    """Sentences of one paragraph of prose with dialogue. A sentence ends at . ! ? (plus a closing
    quote) followed by a space and an upper-case letter or an opening quote, outside quotes, and not
    after a title abbreviation. Quotes are ignored in a paragraph with an odd number of them."""
    use_q = p.count('"') % 2 == 0
    out, start, inq, i, n = [], 0, False, 0, len(p)
    while i < n:
        c = p[i]
        if c == '"' and use_q:
            inq = not inq
        elif c in ".!?":
            j = i + 1
            while j < n and p[j] in ".!?":
                j += 1
            if j < n and p[j] == '"' and inq:
                inq = False
                j += 1
            word = re.search(r"(\w+)$", p[start:i])
            ends = (j < n and p[j] == " " and not inq and j + 1 < n
                    and (p[j + 1].isupper() or p[j + 1] == '"')
                    and not (c == "." and word and word.group(1) in ABBREV))
            if ends:
                out.append(p[start:j].strip())
                start = j + 1
            i = j
            continue
        i += 1
    tail = p[start:].strip()
    if tail:
        out.append(tail)
    return out


# ---------------------------------------------------------------- sources -> units

STORY_START = re.compile(r"^(Once upon a time|Once,? there (was|were|lived)|There (was|were|lived) once"
                         r"|There once (was|were|lived)|Long,? long ago|Long ago|One upon a time)")


def units_tinystories(path):
    """Stories: the file has no end-of-text markers, paragraphs are separated by blank lines, and
    a story starts at a paragraph that opens like a fairy tale (STORY_START); the partial story at
    the top of the file is dropped. Sentences never cross paragraphs. Mojibake (double-encoded
    UTF-8 such as 'a-euro-oe') is left in the units but sentences with non-ASCII are never used."""
    text = open(path, encoding="utf-8").read()
    paras = [p.strip() for p in text.split("\n\n") if p.strip()]
    stories, cur = [], None
    for p in paras:
        p = " ".join(p.split())
        if STORY_START.match(p):
            cur = []
            stories.append(cur)
        if cur is not None:
            cur.extend(split_prose(p))
    # Every passage starts with its story's first MIN_K sentences; two stories that open alike
    # could put one passage (or a passage and its extension) into two splits, so keep the first.
    seen, units = set(), []
    for i, s in enumerate(stories):
        key = norm(" ".join(s[:MIN_K]))
        if key in seen:
            continue
        seen.add(key)
        units.append(("story%04d" % i, s))
    return units


def units_shakespeare(path):
    """Speeches: blocks separated by blank lines whose first line is the speaker ('Name:'); the
    verse lines are joined with single spaces (runs of spaces squeezed). Speaker names are not
    part of the text."""
    text = open(path, encoding="utf-8").read()
    units = []
    for b, block in enumerate(text.split("\n\n")):
        lines = [l.strip() for l in block.strip().split("\n")]
        if len(lines) < 2 or not lines[0].endswith(":"):
            continue
        body = " ".join(" ".join(lines[1:]).split())
        sents = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", body) if s]
        units.append(("speech%05d" % b, sents))
    return units


def wt_detok(toks):
    """WikiText-2 tokens -> plain text: '@-@' '@,@' '@.@' join their neighbours, punctuation and
    clitics attach to the left, '(' to the right, straight double quotes alternate open/close."""
    out, glue, quote_open = "", True, False
    for t in toks:
        if t in ("@-@", "@,@", "@.@"):
            out += {"@-@": "-", "@,@": ",", "@.@": "."}[t]
            glue = True
            continue
        if t == '"':
            if quote_open:
                out += '"'
                glue = False
            else:
                out += ('' if glue else ' ') + '"'
                glue = True
            quote_open = not quote_open
            continue
        left = t in (",", ".", ";", ":", "!", "?", ")", "%", "'s", "'", "n't", "'re", "'ve", "'ll", "'d", "'m")
        out += t if (glue or left) else " " + t
        glue = t == "("
    return out


def units_wikitext(path):
    """Paragraphs: non-empty lines that are not ' = heading = ' lines. The text is tokenised with
    the sentence-final period as its own token, so sentences end at a standalone '.', '!' or '?'
    token (abbreviations such as 'H.' stay attached). Sentences are detokenised (wt_detok);
    sentences containing <unk> are kept in the unit but never used."""
    units = []
    for ln, line in enumerate(open(path, encoding="utf-8")):
        line = line.strip()
        if not line or line.startswith("="):
            continue
        sents, cur = [], []
        for t in line.split():
            cur.append(t)
            if t in (".", "!", "?"):
                sents.append(wt_detok(cur))
                cur = []
        if cur:
            sents.append(wt_detok(cur))
        units.append(("line%05d" % (ln + 1), sents))
    return units


# ---------------------------------------------------------------- items

def usable(s, ascii_only, choice):
    """A passage sentence may hold WikiText's own '<unk>' markers (two thirds of its sentences do);
    a choice may not, or the marker alone would tell true from false; nor may a choice hold an
    unbalanced double quote (a sentence cut out of a longer quotation)."""
    if choice and ("<unk>" in s or s.count('"') % 2):
        return False
    if ascii_only and any(ord(c) > 127 for c in s):
        return False
    return True


def choice_ok(s, ascii_only):
    return (CHOICE_MIN_CHARS <= len(s) <= CHOICE_MAX_CHARS and usable(s, ascii_only, True)
            and TOK.count(s) <= CHOICE_MAX_TOKENS)


def positions(sents, ascii_only, window):
    """Valid (i, k) of a unit: passage = sents[i:k] (k - i >= MIN_K), continuation = sents[k]. The
    passage leaves room for BOS, the space and any choice: tokens <= MAX_TOKENS - 1 -
    CHOICE_MAX_TOKENS. Without `window`, i = 0 (the first sentences of the unit); with it, i is the
    smallest start that fits (WikiText paragraphs are too long to always start at their beginning)."""
    budget = MAX_TOKENS - 1 - CHOICE_MAX_TOKENS
    ntok = [TOK.count(s) for s in sents]
    out, i = [], 0
    for k in range(len(sents)):
        if window:
            while i < k and sum(ntok[i:k]) > budget:
                i += 1
        elif sum(ntok[:k]) > budget:
            break
        if k - i < MIN_K or len(" ".join(sents[i:k])) < PASSAGE_MIN_CHARS or not choice_ok(sents[k], ascii_only):
            continue
        if all(usable(s, ascii_only, False) for s in sents[i:k]):
            out.append((i, k))
    return out


def len_bin(s):
    return int(math.floor(math.log(len(s)) / math.log(LEN_BIN)))


def distractor_pool(units, ascii_only):
    """{(sentence index, length bin): [(unit index, text)]} of every sentence that could be a choice."""
    pool = {}
    for u, (_, sents) in enumerate(units):
        for j, s in enumerate(sents):
            if j >= MIN_K and choice_ok(s, ascii_only):
                pool.setdefault((j, len_bin(s)), []).append((u, s))
    return pool


def pick_distractors(rng, pool, u, k, true, unit_keys, fallbacks):
    """Three sentences of other units, at sentence index k +- w (w = POS_WINDOW, widened up to
    MAX_POS_WINDOW when too few) and in the SAME log-length bin as the true one, so that the true
    sentence and the distractors are drawn from one length population: choosing 'closest to the true
    length' instead would leave the true one in the middle of the lengths 3 times in 4, a cue.
    Never a sentence of the item's own unit, never two equal choices (after norm())."""
    b = len_bin(true)
    stages = [(0, w) for w in range(POS_WINDOW, MAX_POS_WINDOW + 1)] + [(1, MAX_POS_WINDOW), (1, None)]
    for db, w in stages:
        ok, seen = [], set()
        keys = sorted(pool) if w is None else [(j, bb) for j in range(k - w, k + w + 1)
                                                 for bb in range(b - db, b + db + 1)]
        for key in keys:
            if abs(key[1] - b) <= db:
                for (cu, s) in pool.get(key, []):
                    nk = norm(s)
                    if cu == u or nk in unit_keys or nk in seen:
                        continue
                    seen.add(nk)
                    ok.append(s)
        if len(ok) >= N_CHOICES - 1:
            if w != POS_WINDOW or db:
                fallbacks[0] += 1
            return rng.sample(ok, N_CHOICES - 1)
    raise SystemExit("make_cloze: not enough distractors for a sentence of %d chars at %d" % (len(true), k))


def make_items(rng, units, unit_ids, target, ascii_only, used_passages, source, tag, window=False):
    """Round-robin over the units (one position per unit per pass, in shuffled order) so items are
    spread over as many units as possible; a passage already used anywhere is skipped."""
    sub = [units[i] for i in unit_ids]
    pool = distractor_pool(sub, ascii_only)
    fallbacks = [0]
    cand = []
    for u, (_, sents) in enumerate(sub):
        ks = positions(sents, ascii_only, window)
        rng.shuffle(ks)
        ks.sort(key=lambda ik: ik[0] != 0)   # passages from the unit's start first
        cand.append(ks)
    order = list(range(len(sub)))
    rng.shuffle(order)
    picked, r = [], 0
    while len(picked) < target:
        any_left = False
        for u in order:
            if r >= len(cand[u]):
                continue
            any_left = True
            i, k = cand[u][r]
            passage = " ".join(sub[u][1][i:k])
            key = norm(passage)
            if key in used_passages:
                continue
            used_passages.add(key)
            picked.append((u, i, k))
            if len(picked) == target:
                break
        if not any_left:
            raise SystemExit("make_cloze: %s: only %d items for %d" % (tag, len(picked), target))
        r += 1
    # Answer positions exactly balanced over the four slots, then shuffled.
    slots = [i % N_CHOICES for i in range(target)]
    rng.shuffle(slots)
    items = []
    for n, ((u, i, k), a) in enumerate(zip(picked, slots)):
        uid, sents = sub[u]
        true = sents[k]
        unit_keys = set(norm(s) for s in sents)
        dis = pick_distractors(rng, pool, u, k, true, unit_keys, fallbacks)
        choices = dis[:a] + [true] + dis[a:]
        items.append({"id": "%s-%04d" % (tag, n), "question": " ".join(sents[i:k]), "choices": choices,
                      "answer": a, "subject": source, "unit": uid, "first": i, "k": k})
    if fallbacks[0]:
        print("%s: %d items took distractors from beyond k +- %d or the neighbouring length bins"
              % (tag, fallbacks[0], POS_WINDOW), file=sys.stderr)
    return items


def write_jsonl(path, items):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False, sort_keys=False) + "\n")


def stats(name, items):
    n = len(items)
    tl = sum(len(it["choices"][it["answer"]]) for it in items) / n
    dl = sum(len(c) for it in items for i, c in enumerate(it["choices"]) if i != it["answer"]) / (3 * n)
    longest = sum(max(range(4), key=lambda i: len(it["choices"][i])) == it["answer"] for it in items) / n
    shortest = sum(min(range(4), key=lambda i: len(it["choices"][i])) == it["answer"] for it in items) / n
    pos = [sum(it["answer"] == i for it in items) for i in range(4)]
    ql = max(len(it["question"]) for it in items)
    mt = max(1 + TOK.count(it["question"] + " " + c) for it in items for c in it["choices"])
    units = len(set(it["unit"] for it in items))
    print("%-22s n=%4d units=%4d answer slots=%s mean chars true %.1f distractor %.1f  "
          "pick-longest %.3f pick-shortest %.3f  max question chars %d  max prompt tokens %d"
          % (name, n, units, pos, tl, dl, longest, shortest, ql, mt))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared", help="shared data folder (default ../shared)")
    ap.add_argument("--out", default="data/cloze", help="output folder (default data/cloze)")
    a = ap.parse_args()
    text = os.path.join(a.shared, "data", "text")
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(SEED)
    global TOK
    TOK = Tok512(os.path.join(a.shared, "models", "tok512.bin"))

    # In-distribution: stories shuffled, then divided between the splits in proportion to their
    # sizes, so every story (and all its passages and distractors) lives in exactly one split.
    ts = units_tinystories(os.path.join(text, "tinystories-valid.txt"))
    order = list(range(len(ts)))
    rng.shuffle(order)
    total = sum(n for _, n in SPLIT_SIZES)
    used, start, out = set(), 0, {}
    for i, (split, n) in enumerate(SPLIT_SIZES):
        cnt = len(order) - start if i == len(SPLIT_SIZES) - 1 else round(len(order) * n / total)
        ids = sorted(order[start:start + cnt])
        start += cnt
        out[split] = make_items(rng, ts, ids, n, True, used, "tinystories", "ts-" + split)
        if split in ("train", "validation"):
            # The split's whole stories as plain text for language-model training (`vmoer train`:
            # the bundled model, issue 6), one story per paragraph; test stories never appear.
            with open(os.path.join(a.out, split + "-stories.txt"), "w", encoding="utf-8", newline="\n") as f:
                f.write("\n\n".join(" ".join(ts[u][1]) for u in ids) + "\n")
    for split, _ in SPLIT_SIZES:
        write_jsonl(os.path.join(a.out, split + ".jsonl"), out[split])
        stats(split, out[split])

    # Out-of-distribution sets, each its own pool of units and distractors.
    for name, fn, fname in (("ood-tinyshakespeare", units_shakespeare, "tinyshakespeare.txt"),
                            ("ood-wikitext2", units_wikitext, "wikitext2-valid.txt")):
        units = fn(os.path.join(text, fname))
        items = make_items(rng, units, list(range(len(units))), OOD_SIZE, False, set(),
                           fname.split(".")[0].split("-")[0], name.replace("ood-", ""),
                           window=fn is units_wikitext)
        write_jsonl(os.path.join(a.out, name + ".jsonl"), items)
        stats(name, items)
    print("stories: %d units (after removing duplicates)" % len(ts), file=sys.stderr)


if __name__ == "__main__":
    main()
