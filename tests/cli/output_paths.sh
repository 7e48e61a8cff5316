#!/bin/sh
# Output paths (util/fileio.h vm_output_check / vm_output_dir_check), through the commands that
# write files: a path that exists and is not a regular file (device node, FIFO, folder, symlink to a
# device), an empty name, a trailing slash, a read-only folder and a full file system must each give
# one stderr line and exit 1, before the command's work, leaving the path as it was and no file or
# temporary file behind. An eval folder is replaced as a set: a second eval that fails on a full
# disk leaves the first one whole, one that succeeds leaves none of its files behind.
# Read-only and full file systems are small tmpfs mounts in a temp folder (root only; as another
# user they are skipped with a note: permission bits do not stop root, so a read-only folder needs a
# read-only mount). Device nodes are made with mknod in the temp folder, never under /dev.
VMOER=${VMOER:-build/vmoer}
M=$(pwd)/data/models/stories-moe.gguf
D=$(pwd)/data/cloze
SH=${VMOER_SHARED:-../shared}
T=$(mktemp -d "${TMPDIR:-/tmp}/vmoer_out.XXXXXX") || exit 1
cleanup() { for m in "$T/ro" "$T/full"; do umount "$m" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
p=0; f=0
ok() { p=$((p + 1)); }
bad() { f=$((f + 1)); echo "FAIL: $1"; }

FIT="fit $M --data $D/train.jsonl --limit 8 --router map --layers 3-4 --epochs 1 --batch 4 --score loglik-raw --chat-template none --val-frac 0 --quiet"
EVAL="eval $M --router map --data $D/test.jsonl --limit 6 --score loglik-raw --chat-template none --boot 10 --time-items 2 --threads 1"

# refuse NAME PATTERN CMD...: exit 1, exactly one stderr line matching PATTERN, nothing on stdout,
# and no checkpoint, temp file or folder left beside the outputs (the work never started)
refuse() {
    name=$1; pat=$2; shift 2
    "$VMOER" "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q -- "$pat" "$T/err" && [ ! -s "$T/out" ] &&
       [ -z "$(find "$T" -name '*.ckpt' -o -name '*.tmp.*')" ]; then ok
    else bad "$name: exit $rc, stderr: $(head -c 300 "$T/err"), stdout: $(head -c 100 "$T/out")"; fi
}

# ---- paths that exist and are not regular files
mknod "$T/null" c 1 3 2>/dev/null || echo "note: mknod failed (not root?): the device-node rows are skipped"
mkfifo "$T/fifo"
mkdir "$T/dir"
ln -s "$T/fifo" "$T/link"
for path in null fifo dir link; do
    [ -e "$T/$path" ] || [ -L "$T/$path" ] || continue
    refuse "fit -o $path" "not a regular file" $FIT -o "$T/$path"
    refuse "logits -o $path" "not a regular file" logits "$M" --ids 1,2 -o "$T/$path"
    refuse "convert-llama2c to $path" "not a regular file" convert-llama2c "$SH/models/stories260K.bin" \
        "$SH/models/tok512.bin" "$T/$path"
done
[ ! -e "$T/null" ] || [ -c "$T/null" ] && ok || bad "the device node was replaced"
[ -p "$T/fifo" ] && [ -d "$T/dir" ] && [ -L "$T/link" ] && ok || bad "a FIFO, folder or symlink was replaced"
refuse "eval -o FIFO" "not a folder" $EVAL -o "$T/fifo"
refuse "fit --ckpt FIFO" "not a regular file" $FIT -o "$T/a.gguf" --ckpt "$T/fifo"
mkdir "$T/dir2.gguf.ckpt"   # the default checkpoint path, written during the fit: checked before it
"$VMOER" $FIT -o "$T/dir2.gguf" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "dir2.gguf.ckpt' exists and is a folder" "$T/err" &&
    [ ! -e "$T/dir2.gguf" ] && [ -d "$T/dir2.gguf.ckpt" ] && ok || bad "checkpoint path is a folder: exit $rc, $(cat "$T/err")"
rmdir "$T/dir2.gguf.ckpt"

# ---- names: empty, trailing slash, missing folder; `fit -o ""` fails at once (no ./.ckpt)
VM_ABS=$(cd "$(dirname "$VMOER")" && pwd)/$(basename "$VMOER")
( cd "$T" && "$VM_ABS" $FIT -o "" >out 2>err; echo $? >rc )
[ "$(cat "$T/rc")" = 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "empty" "$T/err" && [ ! -e "$T/.ckpt" ] && ok ||
    bad "fit -o '': exit $(cat "$T/rc"), $(cat "$T/err"), .ckpt: $(ls -a "$T" | grep -c ckpt)"
rm -f "$T/out" "$T/err" "$T/rc"
refuse "fit -o x/" "cannot end with '/'" $FIT -o "$T/x/"
refuse "logits -o ''" "empty" logits "$M" --ids 1,2 -o ""
refuse "trace -o x/" "cannot end with '/'" trace "$M" -p hi -o "$T/x/"
refuse "fit -o missing/x" "does not exist\|No such file" $FIT -o "$T/missing/x.gguf"
refuse "eval -o ''" "empty" $EVAL -o ""
( cd "$T/dir" && "$VM_ABS" $EVAL -o . >"$T/out" 2>"$T/err"; echo $? >"$T/rc" )   # in a temp folder: an unfixed
[ "$(cat "$T/rc")" = 1 ] && grep -q "replaced as a whole" "$T/err" && [ -z "$(ls "$T/dir")" ] && ok ||   # binary writes the set there
    bad "eval -o .: exit $(cat "$T/rc"), $(cat "$T/err"); left: $(ls "$T/dir")"
rm -f "$T/out" "$T/err" "$T/rc"
refuse "compare -o dir" "not a regular file" compare "$T" -o "$T/dir"

# ---- an eval folder holding someone else's file is not replaced
mkdir "$T/mine" && echo keep >"$T/mine/notes.txt"
refuse "eval into a folder with other files" "notes.txt" $EVAL -o "$T/mine"
[ "$(cat "$T/mine/notes.txt")" = keep ] && ok || bad "notes.txt changed"

# ---- read-only and full file systems (tmpfs mounts; root only)
if [ "$(id -u)" -eq 0 ] && mkdir "$T/ro" && mount -t tmpfs -o ro,size=64k tmpfs "$T/ro" 2>/dev/null; then
    refuse "fit -o read-only" "cannot write in folder" $FIT -o "$T/ro/a.gguf"
    refuse "eval -o read-only" "cannot write in folder" $EVAL -o "$T/ro/ev"
    umount "$T/ro"
else
    echo "note: read-only rows skipped (needs root and tmpfs mounts)"
fi
if [ "$(id -u)" -eq 0 ] && mkdir -p "$T/full" && mount -t tmpfs -o size=1m tmpfs "$T/full" 2>/dev/null; then
    # a complete eval set, then a second one that cannot fit: the first stays whole
    "$VMOER" $EVAL --noise-grid 0,0.01 -o "$T/full/ev" >/dev/null 2>"$T/err" && [ -s "$T/full/ev/stability.csv" ] && ok ||
        bad "first eval into the tmpfs: $(cat "$T/err")"
    (cd "$T/full/ev" && cksum * >"$T/sums")
    dd if=/dev/zero of="$T/full/fill" bs=4k 2>/dev/null   # fills the file system
    "$VMOER" $EVAL --noise-grid none -o "$T/full/ev" >/dev/null 2>"$T/err"; rc=$?   # (eval reports progress on stderr)
    [ $rc -eq 1 ] && tail -1 "$T/err" | grep -q "^vmoer eval: .*No space left" && [ "$(grep -c "No space" "$T/err")" -eq 1 ] && ok ||
        bad "eval on a full disk: exit $rc, $(cat "$T/err")"
    (cd "$T/full/ev" && cksum * | cmp -s - "$T/sums") && ok || bad "the old eval set changed after a failed eval"
    [ "$(ls "$T/full" | tr '\n' ' ')" = "ev fill " ] && ok || bad "left behind on the full disk: $(ls "$T/full")"
    "$VMOER" $FIT -o "$T/full/a.gguf" >/dev/null 2>"$T/err"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "No space" "$T/err" && ok || bad "fit on a full disk: exit $rc, $(cat "$T/err")"
    [ "$(ls "$T/full" | tr '\n' ' ')" = "ev fill " ] && ok || bad "fit left behind on the full disk: $(ls "$T/full")"
    # with room again the second set replaces the first as a whole: no stability.csv of the old run
    rm -f "$T/full/fill"
    "$VMOER" $EVAL --noise-grid none -o "$T/full/ev" >/dev/null 2>"$T/err" && [ -s "$T/full/ev/metrics.json" ] &&
        [ ! -e "$T/full/ev/stability.csv" ] && ok || bad "second eval: $(cat "$T/err"); $(ls "$T/full/ev")"
    [ "$(ls "$T/full" | tr '\n' ' ')" = "ev " ] && ok || bad "left behind after the swap: $(ls "$T/full")"
    umount "$T/full"
else
    echo "note: full-disk rows skipped (needs root and tmpfs mounts)"
fi

echo "$p passed, $f failed"
[ "$f" -eq 0 ]
