#!/bin/sh
# One-command set-up: install what is missing, build, and run the main job on the embedded default:
# `vmoer demo`, the whole VMoER experiment on the bundled MoE model (data/models/stories-moe.gguf)
# and the story-cloze task (data/cloze), about 5-6 minutes on 2 cores. Output: out/demo/.
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -j"$(nproc)"
./build/vmoer demo -o out/demo
