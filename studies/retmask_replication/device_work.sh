#!/usr/bin/env bash
# One GPU work call of the replication (PLAN.md section 7), after studies/device/setup.sh and the SmolLM2 chunk calls
# (README.md here, "How to resume"): stages a carried last chunk, assembles and checks the GGUF, restores the run
# state carried as .stage/rep/run_state.tar.gz (if the machine does not hold /root/replication already), runs the
# LANES of run.py side by side for SECONDS, and returns $OUT/run_state.tar.gz (no weights) and the lane logs.
#   LANES="self:s0;random:d1:s0;harm" SECONDS_=450 bash studies/retmask_replication/device_work.sh
set -uo pipefail
T=${SECONDS_:-450}
G=/root/stage/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p /root/stage
for f in .stage/sm/part*; do [ -f "$f" ] && cp "$f" "/root/stage/sm.$(basename "$f")"; done
if [ ! -f $G ]; then
    cat /root/stage/sm.part* > $G
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $G" | sha256sum -c - || { rm -f $G; ls -la /root/stage; exit 3; }
fi
export PYTHONPATH=$PWD:/root/site RETMASK_CACHE=/root/cache PYTHONUNBUFFERED=1
if [ ! -d /root/replication ] && [ -f .stage/rep/run_state.tar.gz ]; then tar -xzf .stage/rep/run_state.tar.gz -C /root; fi
t0=$(date +%s)
python3 -c "from retmask_interp.core.real_models import real_model_dir; print(real_model_dir('$G'))" 2>&1 | tail -1
echo "convert $(( $(date +%s) - t0 )) s"
timeout $(( T + 30 )) python3 studies/retmask_replication/run.py lanes --root /root/replication \
    --seconds $(( T - ($(date +%s) - t0) )) --batch "${BATCH:-48}" --lanes "${LANES:-self:s0;random:d1:s0;harm}"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
mkdir -p "$OUT/logs" && cp /root/replication/logs/*.log "$OUT/logs/" 2>/dev/null
tar --exclude='*.safetensors' --exclude='checkpoints' -czf "$OUT/run_state.tar.gz" -C /root replication
tail -n 15 /root/replication/logs/lane*.log | cut -c1-250
echo "total $(( $(date +%s) - t0 )) s"
