#!/usr/bin/env bash
# One GPU work call of the replication (PLAN.md section 7), after studies/device/setup.sh and the chunk calls
# (README.md here, "How to resume"): studies/device/go.sh stages the carried chunks and assembles and checks each
# GGUF whose chunks are all staged (SmolLM2 for the SmolLM2 units, Gemma-3 for the gemma3: units); the run state
# carried as .stage/rep/run_state.tar.gz is restored (if the machine does not hold /root/replication already); the
# LANES of run.py run side by side for SECONDS_; $OUT/run_state.tar.gz (no weights) and the lane logs come back.
#   LANES="self:s0;random:d1:s0;harm" SECONDS_=450 bash studies/retmask_replication/device_work.sh
#   LANES="gemma3:retmask:s0;gemma3:random:d0:s0;gemma3:harm" SECONDS_=450 bash studies/retmask_replication/device_work.sh
set -uo pipefail
T=${SECONDS_:-450}
LANES=${LANES:-self:s0;random:d1:s0;harm}
t0=$(date +%s)
SMOL=0 bash studies/device/go.sh 60 > /dev/null || { echo "staging the GGUFs failed"; ls -la /root/stage; exit 3; }
export PYTHONPATH=$PWD:/root/site RETMASK_CACHE=/root/cache PYTHONUNBUFFERED=1
if [ ! -d /root/replication ] && [ -f .stage/rep/run_state.tar.gz ]; then tar -xzf .stage/rep/run_state.tar.gz -C /root; fi
need() {  # the GGUF a lane list needs must be here; convert it once (kept in /root/cache while the machine is warm)
    [ -f "$1" ] || { echo "$1 is not assembled: stage its chunks first (studies/device/README.md)"; exit 3; }
    python3 -c "from retmask_interp.core.real_models import real_model_dir; print(real_model_dir('$1'))" 2>&1 | tail -1
}
if echo "$LANES" | tr ';,' '\n\n' | grep -qv '^gemma3:'; then need /root/stage/SmolLM2-135M-Instruct.Q4_1.gguf; fi
if echo "$LANES" | grep -q 'gemma3:'; then need /root/stage/gemma-3-270m-q4_k_m.gguf; fi
echo "staged and converted in $(( $(date +%s) - t0 )) s"
timeout $(( T + 30 )) python3 studies/retmask_replication/run.py lanes --root /root/replication \
    --seconds $(( T - ($(date +%s) - t0) )) --batch "${BATCH:-48}" --lanes "$LANES"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
mkdir -p "$OUT/logs" && cp /root/replication/logs/*.log "$OUT/logs/" 2>/dev/null
tar --exclude='*.safetensors' --exclude='checkpoints' -czf "$OUT/run_state.tar.gz" -C /root replication
tail -n 15 /root/replication/logs/lane*.log | cut -c1-250
echo "total $(( $(date +%s) - t0 )) s"
