#!/usr/bin/env python3
"""The real-model study: detection, masking, top-k curve, attention effects and organisation of one model.

``retmask study real-model`` (this wrapper passes its arguments on; the stages, their files and resumability are
documented in ``retmask_interp.workflows.studies.real_models``). Examples::

    # SmolLM2 on a GPU: Wu's grid 1K-8K, essay + synthetic haystacks, chat style, bf16 and fp32 detection
    python3 studies/real_models/real_model_study.py --model smollm2-135m-instruct \
        --haystack /work/shared/data/niah/PaulGrahamEssays --haystack synthetic:0 --out runs/smollm2

    # the same pipeline on 2 CPU cores in about 10 minutes (a few short lengths, 3 depths, 2 needles)
    python3 studies/real_models/real_model_study.py --model smollm2-135m-instruct --grid small \
        --haystack /work/shared/data/niah/PaulGrahamEssays --haystack synthetic:0 --out runs/smollm2-small

    # Gemma-3 (base model: qa and continuation styles), a small CPU grid beyond its 512-token sliding window
    python3 studies/real_models/real_model_study.py --model gemma-3-270m --grid small --min-length 1000 --max-length 2000 \
        --haystack /work/shared/data/niah/PaulGrahamEssays --haystack synthetic:0 --out runs/gemma3-small

A re-run into the same directory resumes (finished stages are skipped); changed parameters are refused naming them
unless ``--overwrite`` (which starts the directory afresh).
"""

import sys

from retmask_interp.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["study", "real-model", *sys.argv[1:]]))
