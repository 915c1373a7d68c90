#!/usr/bin/env bash
# A work call on the GPU machine: copies the chunks carried in this call to /root/stage, assembles and checks a GGUF
# once all its chunks are there, then runs, side by side, (SMOL=1) the SmolLM2 RetMask final runs UNITS through
# parallel_runs.py, K at a time, and (GEMMA=1) the Gemma-3 real-model study resumed from studies/real_models/gemma3;
# (GEMMA_PAR=1) the study's masking, top-k and attention stages as three processes (GEMMA_STAGES), and
# (SMOLSTUDY=1) SmolLM2's real-model study into /root/smol (SMOLSTUDY=after: in the masking process's place once
# Gemma-3's masking stage ends); all stop in time for the results to come back:
# $OUT/run.tar.gz (the RetMask run, no weights), $OUT/gemma.tar.gz, $OUT/smol.tar.gz, $OUT/logs/. Argument: the
# seconds this call may use (<= 560 under the 600 s limit).
#   K=2 UNITS=random:0,retmask:1 bash studies/device/go.sh 540         # carry: the last chunk(s) if any
#   SMOL=0 GEMMA_PAR=1 SMOLSTUDY=1 bash studies/device/go.sh 540
set -uo pipefail
T=${1:-540}
t0=$(date +%s)
left() { echo $(( T - ($(date +%s) - t0) )); }
mkdir -p /root/stage "$OUT/logs"
for f in .stage/sm/part* .stage/gm/part*; do
    if [ -f "$f" ]; then cp "$f" "/root/stage/$(basename "$(dirname "$f")").$(basename "$f")"; fi
done
if [ -d .stage/essays/PaulGrahamEssays ]; then cp -r .stage/essays/PaulGrahamEssays /root/stage/; fi
if [ "${GEMMA:-0}${GEMMA_PAR:-0}${SMOLSTUDY:-0}" != 000 ] && [ ! -d /root/stage/PaulGrahamEssays ]; then
    # (2026-12-03: a call without them spent its GPU time converting the model, then stopped at the haystack)
    echo "the essay haystack is not staged: carry .stage/essays in this call"; exit 2
fi
S=/root/stage/SmolLM2-135M-Instruct.Q4_1.gguf
G=/root/stage/gemma-3-270m-q4_k_m.gguf
export PYTHONPATH=$PWD:/root/site RETMASK_CACHE=/root/cache PYTHONUNBUFFERED=1
sha() { python3 -c "from retmask_interp.core.real_models import get_spec; print(get_spec('$1').sha256)"; }
assemble() {  # target, chunk prefix, registry name: once all chunks are staged (their sizes add up to the file's)
    local want have
    want=$(python3 -c "from retmask_interp.core.real_models import get_spec; print(get_spec('$3').size)")
    have=$(cat /root/stage/"$2".part* 2>/dev/null | wc -c)
    if [ ! -f "$1" ] && [ "$have" = "$want" ]; then
        cat /root/stage/"$2".part* > "$1"
        echo "$(sha "$3")  $1" | sha256sum -c - || { rm -f "$1"; ls -la /root/stage; exit 3; }
    fi
}
assemble $S sm smollm2-135m-instruct
assemble $G gm gemma-3-270m
convert() { python3 -c "from retmask_interp.core.real_models import real_model_dir; print(real_model_dir('$1'))"; }
GP=""
PIDS=()
study() {  # one real_model_study.py process: its log name, then its arguments; cut in time, exit status logged
    local log=$1; shift
    timeout $(( $(left) - 25 )) python3 studies/real_models/real_model_study.py "$@" >> "$OUT/logs/$log.log" 2>&1
    echo "$log exit $?" >> "$OUT/logs/$log.log"
}
gemma() {  # one process of the Gemma-3 study (resumed from studies/real_models/gemma3) on the stages given
    local log=$1; shift
    study "$log" --model $G --model-name gemma-3-270m \
        --out /root/gemma --haystack /root/stage/PaulGrahamEssays --haystack synthetic:0 \
        --style continuation --style qa --dtype bfloat16 --dtype float32 --masking-batch-size 16 "$@"
}
if [ "${GEMMA:-0}" = 1 ] || [ "${GEMMA_PAR:-0}" = 1 ]; then
    convert $G > "$OUT/logs/gemma_convert.log" 2>&1
    [ -d /root/gemma ] || cp -r studies/real_models/gemma3 /root/gemma
fi
smolstudy() {  # SmolLM2's study (balanced masking subset, three prompt styles, every head's single-head effect),
    # resumed from studies/real_models/smollm2 (or /root/smol if the machine still holds it)
    [ -d /root/smol ] || cp -r studies/real_models/smollm2 /root/smol
    convert $S > "$OUT/logs/smol_convert.log" 2>&1
    study smol --model $S --model-name smollm2-135m-instruct --out /root/smol \
        --haystack /root/stage/PaulGrahamEssays --haystack synthetic:0 --style chat --style qa --style continuation
}
if [ "${GEMMA:-0}" = 1 ]; then
    gemma gemma &
    GP=$!
elif [ "${GEMMA_PAR:-0}" = 1 ]; then
    # the stages side by side (each keeps its finished units in *.partial.jsonl, so a cut one resumes next call)
    # (GEMMA_STAGES picks: masking, topk, attention, detection; default the first three). detection (the float32
    # run at 32K: about 120 GiB) needs the GPU to itself: beside two other processes it ran out of memory
    for st in ${GEMMA_STAGES:-masking topk attention}; do
        if [ "$st" = attention ] || [ "$st" = detection ]; then
            gemma "gemma_$st" --stage "$st" --stage organisation & PIDS+=($!)
        elif [ "$st" = masking ] && [ "${SMOLSTUDY:-0}" = after ]; then
            # SmolLM2's study takes this process's place once Gemma-3's masking stage is done
            ( gemma gemma_masking --stage masking; smolstudy ) & PIDS+=($!)
        else
            gemma "gemma_$st" --stage "$st" & PIDS+=($!)
        fi
    done
fi
if [ "${SMOLSTUDY:-0}" = 1 ]; then
    smolstudy & PIDS+=($!)
fi
if [ "${SMOL:-1}" = 1 ]; then
    convert $S
    python3 studies/device/parallel_runs.py --seconds $(( $(left) - 25 )) --units "${UNITS:-}" --parallel "${K:-2}" \
        2>&1 | tee "$OUT/parallel_runs.log"
fi
if [ -n "$GP" ]; then wait "$GP"; tail -5 "$OUT/logs/gemma.log"; fi
for pid in "${PIDS[@]}"; do wait "$pid"; done
tail -n 3 "$OUT"/logs/gemma_*.log "$OUT"/logs/smol.log 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv,noheader
if [ "${SMOL:-1}" = 1 ]; then
    cp /root/run/logs/*.log "$OUT/logs/" 2>/dev/null
    tar --exclude='*.safetensors' --exclude='checkpoints' -czf "$OUT/run.tar.gz" -C /root/run .
fi
if [ -d /root/gemma ]; then tar --exclude='*.bfloat16.samples.jsonl' -czf "$OUT/gemma.tar.gz" -C /root gemma; fi
if [ -d /root/smol ]; then tar --exclude='*.samples.jsonl' -czf "$OUT/smol.tar.gz" -C /root smol; fi
echo "total $(( $(date +%s) - t0 )) s"
