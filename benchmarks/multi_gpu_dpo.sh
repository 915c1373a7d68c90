#!/bin/bash
# DPO of SmolLM2 on 1 GPU and under `accelerate launch` on 2 GPUs with the same effective batch, loss curves side by
# side, in one device call (kind nvidia-h200-x2):
#
#   run(kind="nvidia-h200-x2", carry=[".whl", ".whl-train"], timeout_s=600,
#       command="bash benchmarks/multi_gpu_dpo.sh /root/stage/SmolLM2-135M-Instruct.Q4_1.gguf [PAIRS.jsonl]")
#
# MODEL: a .gguf path, a registry name or a Hugging Face directory; it is resolved (a GGUF dequantized once, ~30 s)
# before either run, so that the two ranks never convert it at the same time, and loaded in float32 (the `train`
# default; bf16 autocast on the GPU). PAIRS: a pairs JSONL (`retmask pairs`); without it, N_PAIRS (512) synthetic
# conversational pairs from benchmarks/compare_dpo_runs.py. Both runs: `retmask train` with --effective-batch-size
# EFFECTIVE (32) and --per-device-batch-size PER_DEVICE (4), so 1 GPU accumulates 8 steps and 2 GPUs 4; --epochs
# EPOCHS (1), --lr LR (5e-6), --max-length MAX_LENGTH (1024), --logging-steps 1; EXTRA_ARGS go to both.
#
# .whl/ and .whl-train/ (studies/device/wheels.sh; ignored by git) go to /tmp/site: transformers 5.24 and gguf, and
# trl, datasets (the image has accelerate and torch). Work files go to /tmp/dpo2gpu; what comes back (7 files, under
# the 8-file limit) goes to $OUT: nvidia.txt, gpu1.log, gpu2.log, summary_1gpu.json and summary_2gpu.json (each run's
# training_summary.json: settings, processes, accumulation, the whole log history), compare.json and table.md (the
# side-by-side loss / reward margin / reward accuracy per optimizer step, from compare_dpo_runs.py).
#
# CPU try of the plumbing (no GPU; nvidia-smi lines fail; 2 processes over gloo):
#   SKIP_INSTALL=1 N_PAIRS=32 EFFECTIVE=8 PER_DEVICE=2 MAX_LENGTH=256 LR=1e-4 EPOCHS=2 \
#       OUT=/tmp/dpo2cpu bash benchmarks/multi_gpu_dpo.sh organism
#
# Time: install ~30 s, model conversion <= 1 min, each run start-up ~30 s plus seconds of training (SmolLM2-135M,
# 16 optimizer steps of 32 short pairs). Every step has a timeout; the whole is kept under TOTAL_S (480 s).
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
left() { echo $(( ${TOTAL_S:-480} - ($(date +%s) - T0) )); }
# NVLink multicast stays off (KINDS.md: a program that uses it can take the host's shared GPUs out of service)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
MODEL=${1:-/root/stage/SmolLM2-135M-Instruct.Q4_1.gguf}
PAIRS=${2:-}
OUT=${OUT:-/tmp/dpo2gpu_out}
W=/tmp/dpo2gpu
mkdir -p "$OUT"
rm -rf "$W" && mkdir -p "$W"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then  # SKIP_INSTALL=1: the packages are there already (a CPU try of this script)
  timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl .whl-train/*.whl || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
echo "installed at $(( $(date +%s) - T0 )) s"
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv | tee "$OUT/nvidia.txt"
python3 -c "import torch, transformers, trl, accelerate; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'trl', trl.__version__, 'accelerate', accelerate.__version__, 'gpus', torch.cuda.device_count())" \
  | tee -a "$OUT/nvidia.txt"
env | grep -E "^(NCCL_NVLS_ENABLE|TORCH_SYMM_MEM_DISABLE_MULTICAST|NVSHMEM_DISABLE_NVLS)=" | tee -a "$OUT/nvidia.txt"

# the model, resolved once (a GGUF is dequantized into the cache here, not by two ranks at once)
MODEL_DIR=$(timeout 150 python3 -c "import sys
from retmask_interp.core.real_models import resolve_real_model
print(resolve_real_model(sys.argv[1]) or sys.argv[1])" "$MODEL" 2>>"$OUT/nvidia.txt" | tail -1)
[ -n "$MODEL_DIR" ] || { echo "model $MODEL could not be resolved (see nvidia.txt)"; exit 1; }
echo "model $MODEL -> $MODEL_DIR at $(( $(date +%s) - T0 )) s" | tee -a "$OUT/nvidia.txt"
if [ -z "$PAIRS" ]; then
  PAIRS=$W/pairs.jsonl
  python3 benchmarks/compare_dpo_runs.py pairs "$PAIRS" --n "${N_PAIRS:-512}" | tee -a "$OUT/nvidia.txt"
fi

TRAIN=(-m retmask_interp.cli train "$MODEL_DIR" --pairs "$PAIRS" --effective-batch-size "${EFFECTIVE:-32}"
       --per-device-batch-size "${PER_DEVICE:-4}" --epochs "${EPOCHS:-1}" --lr "${LR:-5e-6}"
       --max-length "${MAX_LENGTH:-1024}" --logging-steps 1 --overwrite ${EXTRA_ARGS:-})
T1=$(( $(left) - 180 )); [ "$T1" -gt 240 ] && T1=240
echo "== 1 GPU (timeout ${T1} s)"
CUDA_VISIBLE_DEVICES=${ONE_GPU:-0} timeout "$T1" python3 "${TRAIN[@]}" --out "$W/gpu1" > "$OUT/gpu1.log" 2>&1
echo "1 GPU rc=$? at $(( $(date +%s) - T0 )) s"; grep -E "^INFO|Error" "$OUT/gpu1.log" | tail -3

T2=$(( $(left) - 15 )); [ "$T2" -gt 240 ] && T2=240
echo "== 2 GPUs under accelerate launch (timeout ${T2} s)"
# --multi_gpu: on a machine without GPUs (the CPU try) it still starts 2 processes, which join over gloo;
# `--cpu --num_processes 2` would start only one
timeout "$T2" python3 -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 \
  --mixed_precision no --dynamo_backend no --main_process_port "${PORT:-29531}" "${TRAIN[@]}" --out "$W/gpu2" \
  > "$OUT/gpu2.log" 2>&1
echo "2 GPUs rc=$? at $(( $(date +%s) - T0 )) s"; grep -E "^INFO|Error" "$OUT/gpu2.log" | tail -3

cp "$W/gpu1/training_summary.json" "$OUT/summary_1gpu.json" 2>/dev/null
cp "$W/gpu2/training_summary.json" "$OUT/summary_2gpu.json" 2>/dev/null
if [ -f "$W/gpu1/training_summary.json" ] && [ -f "$W/gpu2/training_summary.json" ]; then
  python3 benchmarks/compare_dpo_runs.py compare "$W/gpu1" "$W/gpu2" --names 1gpu 2gpu \
    --out "$OUT/compare.json" --table "$OUT/table.md"
  echo "compare rc=$? (3: the effective batches or the logged steps differ)"
else
  echo "no comparison (a run did not finish)"
fi
echo "done at $(( $(date +%s) - T0 )) s"
