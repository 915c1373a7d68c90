#!/usr/bin/env bash
# A work call on the GPU machine: copies the chunks carried in this call to /root/stage, assembles and checks a GGUF
# once all its chunks are there, then runs, side by side, (SMOL=1) the SmolLM2 RetMask final runs UNITS through
# parallel_runs.py, K at a time, and (GEMMA=1) the Gemma-3 real-model study resumed from docs/real_models/gemma3;
# both stop in time for the results to come back: $OUT/run.tar.gz (the RetMask run, no weights), $OUT/gemma.tar.gz,
# $OUT/logs/. Argument: the seconds this call may use (<= 560 under the 600 s limit).
#   K=2 UNITS=random:0,retmask:1 bash scripts/device/go.sh 540         # carry: the last chunk(s) if any
set -uo pipefail
T=${1:-540}
t0=$(date +%s)
left() { echo $(( T - ($(date +%s) - t0) )); }
mkdir -p /root/stage "$OUT/logs"
for f in .stage/sm/part* .stage/gm/part*; do
    if [ -f "$f" ]; then cp "$f" "/root/stage/$(basename "$(dirname "$f")").$(basename "$f")"; fi
done
S=/root/stage/SmolLM2-135M-Instruct.Q4_1.gguf
G=/root/stage/gemma-3-270m-q4_k_m.gguf
export PYTHONPATH=$PWD:/root/site RETMASK_CACHE=/root/cache PYTHONUNBUFFERED=1
sha() { python3 -c "from retmask_interp.core.real_models import get_spec; print(get_spec('$1').sha256)"; }
assemble() {  # target, chunk prefix, last chunk, registry name
    if [ ! -f "$1" ] && [ -f "/root/stage/$2.$3" ]; then
        cat /root/stage/"$2".part* > "$1"
        echo "$(sha "$4")  $1" | sha256sum -c - || { rm -f "$1"; ls -la /root/stage; exit 3; }
    fi
}
assemble $S sm part03 smollm2-135m-instruct
assemble $G gm part08 gemma-3-270m
convert() { python3 -c "from retmask_interp.core.real_models import real_model_dir; print(real_model_dir('$1'))"; }
GP=""
if [ "${GEMMA:-0}" = 1 ]; then
    (
        convert $G > "$OUT/logs/gemma_convert.log" 2>&1
        [ -d /root/gemma ] || cp -r docs/real_models/gemma3 /root/gemma
        timeout $(( $(left) - 25 )) python3 scripts/real_model_study.py --model $G --model-name gemma-3-270m \
            --out /root/gemma --haystack /root/stage/PaulGrahamEssays --haystack synthetic:0 \
            --style continuation --style qa --dtype bfloat16 --dtype float32 --masking-batch-size 16 \
            >> "$OUT/logs/gemma.log" 2>&1
        echo "gemma exit $?" >> "$OUT/logs/gemma.log"
    ) &
    GP=$!
fi
if [ "${SMOL:-1}" = 1 ]; then
    convert $S
    python3 scripts/device/parallel_runs.py --seconds $(( $(left) - 25 )) --units "${UNITS:-}" --parallel "${K:-2}" \
        2>&1 | tee "$OUT/parallel_runs.log"
fi
if [ -n "$GP" ]; then wait "$GP"; tail -5 "$OUT/logs/gemma.log"; fi
cp /root/run/logs/*.log "$OUT/logs/" 2>/dev/null
tar --exclude='*.safetensors' --exclude='checkpoints' -czf "$OUT/run.tar.gz" -C /root/run .
if [ -d /root/gemma ]; then tar --exclude='*.samples.jsonl' -czf "$OUT/gemma.tar.gz" -C /root gemma; fi
echo "total $(( $(date +%s) - t0 )) s"
