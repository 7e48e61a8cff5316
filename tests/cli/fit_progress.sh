#!/bin/sh
# vmoer fit's progress bar (issue 4: "progress bar with loss and ETA"): under a pseudo-terminal
# (script(1) from bsdutils, Essential in Debian) stderr is a tty and the bar is redrawn in place
# with \r, showing steps, loss, tok/s and ETA; it reaches total/total and every other message
# (epoch summaries, the interruption note) starts on a line of its own. With stderr redirected
# to a file, or with --quiet, no bar is drawn.
VMOER=${VMOER:-build/vmoer}
SH=${VMOER_SHARED:-../shared}
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_bar.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
if ! command -v script >/dev/null 2>&1; then
    echo "FAIL: script(1) (bsdutils) not found"; echo "0 passed, 1 failed"; exit 1
fi
"$VMOER" convert-llama2c "$SH/models/stories260K.bin" "$SH/models/tok512.bin" "$T/d.gguf" >/dev/null 2>&1 || bad convert
"$VMOER" upcycle "$T/d.gguf" "$T/moe.gguf" --experts 4 --top-k 2 --noise 0.05 >/dev/null 2>&1 || bad upcycle
FIT="$VMOER fit $T/moe.gguf --data $SH/data/mcqa/openbookqa/train.jsonl --limit 40 --router vglr-mf --layers 3-4 --epochs 2 --batch 4 --threads 1 --patience 5"
# 36 training items / batch 4 = 9 steps per epoch, 18 in all
BAR='\[[#-]{30}\] [0-9]+/18 loss [0-9]+\.[0-9]{4} [0-9]+ tok/s ETA [0-9]+m[0-9]{2}s'

# 1. a terminal: the bar (the pty turns \n into \r\n: drop those \r first)
script -qec "$FIT -o $T/a.gguf" /dev/null </dev/null >"$T/raw" 2>&1 && ok || bad "fit under a pty: $(cat "$T/raw")"
sed 's/\r$//' "$T/raw" >"$T/tty"
tr '\r' '\n' <"$T/tty" | grep -Eq "^$BAR" && ok || bad "no bar with loss, tok/s and ETA: $(cat -A "$T/tty" | head -5)"
tr '\r' '\n' <"$T/tty" | grep -Eq '^\[#{30}\] 18/18 loss [0-9.]+ [0-9]+ tok/s ETA 0m00s' && ok || bad "the bar does not reach 18/18 with ETA 0"
[ "$(tr '\r' '\n' <"$T/tty" | grep -Ec "^$BAR")" -ge 18 ] && ok || bad "fewer than one bar update per step"
# every line that carries the bar ends with a bar update (nothing appended to it) ...
[ "$(grep 'ETA' "$T/tty" | grep -Evc "$BAR  \$")" -eq 0 ] && ok || bad "text appended to a bar line: $(grep ETA "$T/tty" | grep -Ev "$BAR  \$" | cat -A)"
# ... and the summaries stand on their own lines
[ "$(grep -Ec '^epoch [12]/2: train ce' "$T/tty")" -eq 2 ] && ok || bad "epoch lines not at line starts: $(cat -A "$T/tty")"
grep -q "^wrote $T/a.gguf" "$T/tty" && ok || bad "summary line"
[ "$(tail -c 1 "$T/raw" | od -An -c | tr -d ' ')" = '\n' ] && ok || bad "output does not end with a newline"
[ -s "$T/a.gguf" ] && ok || bad "no adapter written under the pty"

# 2. interrupted mid-epoch: the note starts a new line after the bar
script -qec "$FIT --stop-after 3 -o $T/b.gguf" /dev/null </dev/null >"$T/raw" 2>&1 && ok || bad "stop-after under a pty: $(cat "$T/raw")"
sed 's/\r$//' "$T/raw" >"$T/tty"
grep -q '^fit: stopped after 3 steps' "$T/tty" && ok || bad "interruption note appended to the bar: $(cat -A "$T/tty")"
grep 'ETA' "$T/tty" | grep -Eq "$BAR  \$" && ok || bad "interrupted: bar line does not end with the bar"

# 3. --quiet under a terminal: nothing on stderr
script -qec "$FIT --quiet -o $T/c.gguf 2>$T/qerr" /dev/null </dev/null >/dev/null 2>&1
[ -f "$T/qerr" ] && [ ! -s "$T/qerr" ] && ok || bad "--quiet printed: $(cat "$T/qerr")"

# 4. stderr a file (the plain run): epoch lines, no bar, no carriage returns
$FIT -o "$T/d2.gguf" >"$T/out" 2>"$T/err" && ok || bad "plain fit: $(cat "$T/err")"
grep -q 'ETA' "$T/err" && bad "a bar in a file: $(head -3 "$T/err")" || ok
[ "$(tr -cd '\r' <"$T/err" | wc -c)" -eq 0 ] && ok || bad "carriage returns in a file"
[ "$(grep -c '^epoch [12]/2: train ce' "$T/err")" -eq 2 ] && ok || bad "epoch lines in the file: $(cat "$T/err")"
# the bar is presentation only: same adapter with and without it
cmp -s "$T/a.gguf" "$T/d2.gguf" && ok || bad "the adapter written under a pty differs"

echo "$p passed, $f failed"
[ "$f" -eq 0 ]
