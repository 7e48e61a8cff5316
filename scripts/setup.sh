#!/bin/sh
# One-command set-up: install what is missing, build, and run the main job on the embedded default.
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -j"$(nproc)"
SHARED=${VMOER_SHARED:-../shared}
mkdir -p models
# Until `vmoer demo` lands: the real stories260K model, converted to GGUF and run greedily.
./build/vmoer convert-llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" models/stories260K.gguf
./build/vmoer info models/stories260K.gguf
./build/vmoer run models/stories260K.gguf -p "Once upon a time" -n 64 --temp 0
