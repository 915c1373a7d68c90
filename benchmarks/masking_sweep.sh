#!/usr/bin/env bash
# The GPU work call of benchmarks/masking_sweep.py, once the wheels are installed in /root/site and the GGUF chunks
# staged in /root/stage (studies/device/README.md, steps 1-3; carry the last small chunks and .stage/essays here):
# studies/device/go.sh with nothing to run assembles and checks the GGUFs and copies the essays, then each model's
# benchmark runs (timings, then with CHECK=1 the full stages against the committed tables) into $OUT/NAME.json and
# $OUT/NAME.log.   MODELS="smollm2 gemma3" REPEATS=3 CHECK=1 bash benchmarks/masking_sweep.sh
set -uo pipefail
SMOL=0 bash studies/device/go.sh 60 || exit 1
export PYTHONPATH=$PWD:/root/site RETMASK_CACHE=/root/cache PYTHONUNBUFFERED=1
declare -A GGUF=([smollm2]=/root/stage/SmolLM2-135M-Instruct.Q4_1.gguf [gemma3]=/root/stage/gemma-3-270m-q4_k_m.gguf)
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
for m in ${MODELS:-smollm2 gemma3}; do
    check=()
    if [ "${CHECK:-1}" = 1 ]; then check=(--check); fi
    python3 benchmarks/masking_sweep.py --study "studies/real_models/$m" --model "${GGUF[$m]}" \
        --repeats "${REPEATS:-3}" "${check[@]}" --out "$OUT/$m.json" 2>&1 | grep -v 'it/s\]' | tee "$OUT/$m.log"
done
