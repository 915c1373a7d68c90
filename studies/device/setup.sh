#!/usr/bin/env bash
# First call on a fresh GPU machine, carrying .whl, .whl-train and .stage/essays; then a second call carrying .whl-tf
# alone (transformers 5.24: the 64 MiB a call carries leaves no room for all of them). Installs the carried wheels
# into /root/site, lays out the SmolLM2 RetMask run state in /root/run (.stage/exp/run.tar.gz when carried, else the
# committed final state) and the essays, if carried, in /root/stage. About 10 s.
set -euo pipefail
t0=$(date +%s)
# .whl-train (trl, datasets: the RetMask runs) may be left out of the call where the tree leaves no room for it
shopt -s nullglob
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /root/site \
    .whl/*.whl .whl-tf/*.whl .whl-train/*.whl 2>&1 | tail -3
mods="nnsight, transformers, gguf, rouge_score"
if [ -d .whl-train ]; then mods="trl, datasets, $mods"; fi
PYTHONPATH=$PWD:/root/site python3 -c "import $mods, transformers; print('ok', transformers.__version__)"
mkdir -p /root/run /root/stage /root/cache
if [ -d .stage/essays/PaulGrahamEssays ]; then cp -r .stage/essays/PaulGrahamEssays /root/stage/; fi
state=studies/smollm2_retmask/run_state.tar.gz
if [ -f .stage/exp/run.tar.gz ]; then state=.stage/exp/run.tar.gz; fi
tar -xzf "$state" -C /root/run && echo "run state: $state"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
echo "setup $(( $(date +%s) - t0 )) s"
