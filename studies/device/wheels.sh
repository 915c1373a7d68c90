#!/usr/bin/env bash
# Downloads the wheels that the lent GPU machine lacks (its image: Python 3.12, torch 2.11, transformers 5.17, no
# network) into .whl/ (nnsight, GGUF, ROUGE and what they need: ~11 MB), .whl-tf/ (transformers: ~14 MB) and
# .whl-train/ (DPO: trl, datasets: ~2 MB), all ignored by git: a call carries at most 64 MiB with the tracked tree
# (42 MB on 2026-12-08), so transformers travels in a call of its own. studies/device/setup.sh installs whichever
# of them a call carries:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /root/site \
#       .whl/*.whl [.whl-tf/*.whl] [.whl-train/*.whl] && export PYTHONPATH=$PWD:/root/site
# The pins are the versions the project is tested with here (transformers 5.24: the GGUF conversion of 5.17-5.22
# builds a broken Gemma-3 tokenizer, studies/real_models/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
D=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
   --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
mkdir -p .whl .whl-tf .whl-train
# nnsight, and what it needs that the image lacks; gguf (GGUF loading); rouge-score (Wu's rule); einops is in the image
"${D[@]}" -d .whl nnsight==0.8.1 greenlet pydantic==2.14.4 pydantic-core==2.50.5 \
    annotated-types typing-inspection typing-extensions websocket-client zstandard gguf==0.19.0 rouge-score nltk
"${D[@]}" -d .whl-tf transformers==5.24.0
# DPO (the image has accelerate, peft, pyarrow, xxhash, pandas)
"${D[@]}" -d .whl-train trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
du -sh .whl .whl-tf .whl-train
