#!/bin/bash
# Sharded detection on 2 GPUs against 1 (benchmarks/multi_gpu_detect.py), the whole protocol in one command for the
# device machine (kind nvidia-h200-x2): install the wheels, run the 600-sample grid on GPU 0 alone, then on both GPUs
# under torchrun, compare the merged head list with the one-GPU list and print the throughput ratio (target >= 1.8x).
#
#   run(kind="nvidia-h200-x2", carry=[".whl"], timeout_s=600, command="bash benchmarks/multi_gpu.sh")
#
# .whl/ (in the repository root, ignored) holds the wheels of benchmarks/gpu_issue14.sh (transformers 5.24, nnsight
# and their needs); they go to /tmp/site. Work files go to /tmp/mgpu; what comes back (7 files, under the 8-file
# limit) goes to $OUT: nvidia.txt, gpu1.log, gpu2.log, timing_1gpu.json, timing_2gpu.json, compare.json,
# heads_1gpu.json (the 2-GPU head list equals it when compare.json says so; it stays in /tmp/mgpu otherwise).
#
# CPU try of the plumbing (no GPU; nvidia-smi lines fail): SKIP_INSTALL=1 EXTRA_ARGS="--tiny" bash benchmarks/multi_gpu.sh
#
# Time (GPU 0 alone ran gpu_detect's grid, the same work, in 125-158 s with the eager loop; this runs the default,
# the static cache + CUDA graphs): install ~30 s, one GPU ~3 min with start-up, two GPUs ~1.5 min, about 5 min in
# all. Every step has a timeout, and the whole is kept under TOTAL_S (540 s) so that it ends inside one 600 s call:
# the one-GPU step gets what is left less 150 s, the two-GPU step the rest.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
left() { echo $(( ${TOTAL_S:-540} - ($(date +%s) - T0) )); }
# NVLink multicast stays off (KINDS.md: a program that uses it can take the host's shared GPUs out of service)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/mgpu_out}
W=/tmp/mgpu
mkdir -p "$OUT"
rm -rf "$W" && mkdir -p "$W"
if [ "${SKIP_INSTALL:-0}" != 1 ]; then  # SKIP_INSTALL=1: the packages are there already (a CPU try of this script)
  timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1  # one thread a process, as torchrun sets
echo "installed at $(( $(date +%s) - T0 )) s"
nvidia-smi --query-gpu=index,name,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia.txt"
nvidia-smi topo -m >> "$OUT/nvidia.txt" 2>&1
python3 -c "import torch, transformers, nnsight; print(torch.__version__, transformers.__version__, nnsight.__version__,
'nccl', torch.cuda.nccl.version() if torch.cuda.is_available() else None, 'gpus', torch.cuda.device_count())" \
  | tee -a "$OUT/nvidia.txt"
env | grep -E "^(NCCL_NVLS_ENABLE|TORCH_SYMM_MEM_DISABLE_MULTICAST|NVSHMEM_DISABLE_NVLS)=" | tee -a "$OUT/nvidia.txt"

BENCH="benchmarks/multi_gpu_detect.py --no-progress ${EXTRA_ARGS:-}"
T1=$(( $(left) - 150 )); [ "$T1" -gt 330 ] && T1=330
echo "== 1 GPU (timeout ${T1} s)"
CUDA_VISIBLE_DEVICES=0 timeout "$T1" python3 $BENCH --out "$W/gpu1" > "$OUT/gpu1.log" 2>&1
echo "1 GPU rc=$? at $(( $(date +%s) - T0 )) s"; grep -vE "Warning|warn" "$OUT/gpu1.log" | tail -4

T2=$(( $(left) )); [ "$T2" -gt 300 ] && T2=300
CMP=""; [ -f "$W/gpu1/heads.json" ] && CMP="--compare $W/gpu1/heads.json"
echo "== 2 GPUs under torchrun (timeout ${T2} s)"
timeout "$T2" python3 -m torch.distributed.run --standalone --nproc-per-node 2 $BENCH --out "$W/gpu2" $CMP \
  > "$OUT/gpu2.log" 2>&1
echo "2 GPUs rc=$? (not 0: a rank failed, or rank 0 exited 3 because the head lists differ) at $(( $(date +%s) - T0 )) s"
grep -vE "Warning|warn|\*\*\*\*|OMP_NUM_THREADS" "$OUT/gpu2.log" | tail -8

cp "$W/gpu1/timing.json" "$OUT/timing_1gpu.json" 2>/dev/null
cp "$W/gpu1/heads.json" "$OUT/heads_1gpu.json" 2>/dev/null
cp "$W/gpu2/timing.json" "$OUT/timing_2gpu.json" 2>/dev/null
cp "$W/gpu2/compare.json" "$OUT/compare.json" 2>/dev/null
python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
t = {n: json.loads((out / f"timing_{n}gpu.json").read_text()) for n in (1, 2) if (out / f"timing_{n}gpu.json").is_file()}
for n, r in sorted(t.items()):
    gib = lambda x: f" ({x['peak_gib']:.1f} GiB)" if x.get("peak_gib") is not None else ""
    ranks = ", ".join(f"{x['device']} {x['scoring_s']:.1f}s{gib(x)}" for x in r["ranks"])
    print(f"{n} GPU(s): {r['samples']} samples in {r['wall_s']:.1f}s = {r['samples_per_s']:.2f} samples/s "
          f"(scoring {ranks}; merge {r['merge_s']:.1f}s)")
if len(t) == 2:
    ratio = t[2]["samples_per_s"] / t[1]["samples_per_s"]
    print(f"throughput ratio 2 GPUs / 1 GPU: {ratio:.3f}x (target >= 1.8x: {'met' if ratio >= 1.8 else 'MISSED'})")
c = out / "compare.json"
if c.is_file():
    c = json.loads(c.read_text())
    print(f"head lists equal: {c['equal']} (max abs diff {c.get('max_abs_diff')}, same top-{c['top']}: "
          f"{c.get('equal_top')}, nonzero heads {c.get('nonzero_heads')})")
else:
    print("no comparison (a run did not finish)")
EOF
echo "done at $(( $(date +%s) - T0 )) s"
