"""CPU benchmark: the masking sweeps of notebook 02 (and the demo's NIAH outcomes) on the embedded organism.

Times, with whatever ``retmask_interp`` is first on ``PYTHONPATH``, the calls notebook 02 makes on its quick grid
(2 lengths x 3 depths x 4 needles, 16 new tokens): ``masking_outcomes`` (unmasked, retrieval, 2 random seeds),
``topk_curve`` (k = 0, 2, 4, 8, one random seed), ``single_head_effects`` (the top 8 heads), and the demo's
``niah_outcomes`` (unmasked, retrieval, 2 random seeds). Prints one JSON line: seconds per call (wall and this
process's CPU time) and a digest of the outcomes, so that two versions can be compared on the same machine:

    for i in 1 2 3; do
        PYTHONPATH=/path/to/old python3 benchmarks/cpu_sweep.py --tag old
        PYTHONPATH=/path/to/new python3 benchmarks/cpu_sweep.py --tag new
    done
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", default="")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import retmask_interp
    from retmask_interp.core.models import load_model
    from retmask_interp.interventions.controls import random_controls
    from retmask_interp.measure.attention import single_head_effects
    from retmask_interp.measure.detect import DetectConfig, detect_heads
    from retmask_interp.measure.outcomes import (
        masking_outcomes,
        niah_outcomes,
        random_condition_sets,
        topk_curve,
    )
    from retmask_interp.workflows.paper_figures import FigureConfig, niah_samples

    rm = load_model("organism")
    grid = FigureConfig.quick(max_new_tokens=16)
    samples = niah_samples(rm, grid)
    hs = detect_heads(rm, samples, DetectConfig(max_new_tokens=16, batch_size=8), progress=False)
    retrieval = hs.above(0.1) or hs.top_k(4)
    conds = random_condition_sets(rm, retrieval, n_seeds=2, seed=0)
    controls = random_controls(rm, retrieval, n_seeds=2, seed=0)
    calls = {
        "masking_outcomes": lambda: masking_outcomes(rm, samples, conds, max_new_tokens=16, batch_size=8),
        "topk_curve": lambda: topk_curve(
            rm, samples, hs, ks=[0, 2, 4, 8], n_random=1, max_new_tokens=16, batch_size=8
        ),  # fmt: skip
        "single_head_effects": lambda: single_head_effects(rm, samples, hs, heads=8, n_resamples=200),
        "niah_outcomes (demo)": lambda: [
            niah_outcomes(rm, samples, h, max_new_tokens=16, batch_size=8) for h in ([], retrieval, *controls)
        ],  # fmt: skip
    }
    out: dict = {"tag": args.tag, "package": retmask_interp.__file__, "samples": len(samples), "seconds": {},
                 "cpu_seconds": {}, "digest": {}}  # fmt: skip
    for name, fn in calls.items():
        w0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        out["seconds"][name] = round(time.perf_counter() - w0, 3)
        out["cpu_seconds"][name] = round(time.process_time() - c0, 3)
        text = res.to_csv(index=False) if hasattr(res, "to_csv") else json.dumps(res, default=str)
        if name == "masking_outcomes":
            text = res[["condition", "sample_id", "success", "generated"]].to_csv(index=False)
            out["answer_logprob"] = [round(float(x), 5) for x in res.answer_logprob]
        out["digest"][name] = hashlib.sha1(text.encode()).hexdigest()[:10]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
