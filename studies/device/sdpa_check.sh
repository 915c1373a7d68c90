#!/usr/bin/env bash
# Issue 12's transformers-5.17 trap, levels 3 and 4 of benchmarks/gpu_sdpa_stride0.py, under the image's
# transformers (5.17) and the carried one (5.24). Needs setup.sh's /root/site and Gemma-3's chunks staged (carry
# the last one): the GGUF is assembled and checked by go.sh, converted once with 5.24 (the HF directory both
# versions then load), and each version writes $OUT/sdpa_<version>.json.
set -uo pipefail
SMOL=0 bash studies/device/go.sh 120 || exit $?
G=/root/stage/gemma-3-270m-q4_k_m.gguf
export RETMASK_CACHE=/root/cache PYTHONUNBUFFERED=1
D=$(PYTHONPATH=$PWD:/root/site python3 -c "from retmask_interp.core.real_models import real_model_dir; print(real_model_dir('$G'))" | tail -1)
echo "model dir: $D"
# /root/site without its transformers: the image's 5.17 underneath, the carried nnsight etc. on top
mkdir -p /root/site517
for f in /root/site/*; do
    case $(basename "$f") in transformers|transformers-*) ;; *) ln -sfn "$f" /root/site517/ ;; esac
done
for site in /root/site517 /root/site; do
    v=$(PYTHONPATH=$PWD:$site python3 -c "import transformers; print(transformers.__version__)")
    echo "== transformers $v"
    PYTHONPATH=$PWD:$site timeout 200 python3 benchmarks/gpu_sdpa_stride0.py --levels 3,4 --model-dir "$D" \
        --out "$OUT/sdpa_$v.json" > "$OUT/sdpa_$v.log" 2>&1
    echo "exit $?"; tail -3 "$OUT/sdpa_$v.log"
done
