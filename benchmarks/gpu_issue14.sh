#!/bin/bash
# Issue 14 on a lent GPU: install the wheels, run the static-decode equivalence tests there (CUDA graphs on), then
# the benchmark. Staging (on the project machine): copy retmask_interp/ (without organism/weights), benchmarks/,
# tests/{conftest.py,reference_impl.py,measure/} and pytest + pluggy + iniconfig wheels (pytestwhl/) into
# /work/main/.stage/perf/, then run `bash .stage/perf/benchmarks/gpu_issue14.sh` with carry [".whl", ".stage/perf"].
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  ../../.whl/*.whl pytestwhl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
# the image's own pytest plugins (entry points) break a newer pytest at start-up: load none
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia.txt"
python3 -c "import torch, transformers, nnsight; print(torch.__version__, transformers.__version__, nnsight.__version__)" \
  | tee -a "$OUT/nvidia.txt"
# the stage lies inside the checkout: without an ini file of its own pytest reads the repository's pyproject.toml,
# whose addopts need nbmake (not on the image)
[ -f pytest.ini ] || printf '[pytest]\n' > pytest.ini
RETMASK_TEST_DEVICE=cuda timeout "${TEST_S:-150}" python3 -m pytest -c pytest.ini -q --maxfail=4 -p no:cacheprovider \
  tests/measure/test_static_decode.py --durations=3 > "$OUT/gpu_tests.log" 2>&1
echo "tests rc=$? at $(( $(date +%s) - T0 )) s"; grep -E "passed|failed|Error|FAILED" "$OUT/gpu_tests.log" | head -30
timeout "${BENCH_S:-400}" python3 benchmarks/gpu_detect.py --sections ${SECTIONS:-static stepprof grid} \
  --repeats "${REPEATS:-5}" --no-wu --deadline "${DEADLINE:-300}" --out "$OUT/gpu_h200.json" > "$OUT/gpu_h200.log" 2>&1
echo "bench rc=$? at $(( $(date +%s) - T0 )) s"
grep -E "^\[|^  |ceilings|model:" "$OUT/gpu_h200.log" | grep -vE "round [0-9]|warm-up|aten::|^\s*-|Name |Self CPU" | tail -70
