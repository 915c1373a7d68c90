"""GPU benchmark of the real-model studies' masking sweeps: the packed path against the old per-condition path.

For one study directory (``studies/real_models/smollm2`` or ``gemma3``: its ``config.json``, ``heads.json`` and the
committed per-sample tables) and the model it was run with, this rebuilds the study's samples and conditions exactly
as the study did (``workflows.studies.real_models``: the grid, the balanced 48 masking / 24 attention samples, the retrieval
heads at the threshold, the seeded random and per-layer matched controls, the top-k conditions) and times three
stages, new next to old, interleaved, ``--repeats`` times in one process:

    masking   zero mode, every condition (unmasked, retrieval, 10 random, 10 matched) x the masking samples
    topk      every top-k condition (k = 0; the top k and 5 random sets at each k) x the masking samples
    single    every head alone (and the unmasked baseline), teacher-forced, x the attention samples

new: ``masking_outcomes`` / ``topk_curve`` / ``single_head_effects`` as they are now (rows of all conditions packed
into batches sized by free memory, each row masked by its own heads; one prefill for the score and the generation).
old: the algorithm they replaced, on the same primitives: every condition its own batches of at most the study's
``masking_batch_size`` samples, the teacher-forced score (``teacher_forced``) and the generation (``niah_outcomes``)
as two prefills; a single head is ``teacher_forced`` with that head.

The timed subset (stated in the output): the samples of ONE prompt length of the grid (``--length``, default the
longest), with every condition for the new path. Both paths batch each length separately, so the batch shapes are
those of the full stage at that length. The old path runs ``--old-conditions`` conditions (its conditions run one
after another with identical shapes, so its time for all of them is that time x conditions / old-conditions,
reported as ``old`` next to the measured part). ``--check`` then runs the new path once over the FULL stages (all
lengths; masking in all three modes) and compares with the study's committed tables: per-sample success agreement,
each summary mean inside the committed 95 % interval, the top-k curve, the single-head ranking (the same top heads),
and the shared prefill's bf16 numerics against one teacher-forced forward.

Compute floor of each timed unit: FLOPs of its prefills (2 x non-embedding parameters x tokens, plus attention,
sliding windows counted), the answer extension and the decode steps over the card's bf16 dense peak, and the bytes
of its decode steps (weights once per step per batch, the KV cache of every row) over the card's bandwidth; the
floor is the prefill compute time plus the larger of the decode's compute and memory times.

Usage (GPU machine, the GGUF converted, the essays in /root/stage):
    python3 benchmarks/masking_sweep.py --study studies/real_models/smollm2 \
        --model /root/stage/SmolLM2-135M-Instruct.Q4_1.gguf --repeats 3 --check --out $OUT/smollm2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.floors import card, model_floor_inputs, sweep_floor  # noqa: E402
from benchmarks.timing import Clock, sync  # noqa: E402
from retmask_interp.core.models import load_model  # noqa: E402
from retmask_interp.heads.scores import load_head_scores  # noqa: E402
from retmask_interp.measure.attention import answer_tokens, single_head_effects, teacher_forced  # noqa: E402
from retmask_interp.measure.outcomes import (  # noqa: E402
    masking_outcomes,
    niah_outcomes,
    random_condition_sets,
    summarize_outcomes,
    topk_curve,
)


# --------------------------------------------------------------------------------------------- the study's inputs
def study_inputs(study: Path, model: str, haystack: str | None, device: str = "cuda"):
    from retmask_interp.workflows.studies import real_models as rmw
    from retmask_interp.workflows.studies.real_models.grid import build_samples

    raw = json.loads((study / "config.json").read_text())
    known = {f.name for f in fields(rmw.StudyConfig)}
    cfg = rmw.StudyConfig(**{k: v for k, v in raw.items() if k in known})
    cfg.model = model
    if haystack:
        cfg.haystacks = [haystack, *cfg.haystacks[1:]]
    rm = load_model(model, device=device, dtype=cfg.dtypes[0] if device == "cuda" else "float32")
    rm.name = cfg.model_name or rm.name
    samples = build_samples(rm, cfg, cfg.haystacks[0], cfg.styles[0])
    msamples = rmw.spread_subset(samples, cfg.masking_samples)
    asamples = rmw.spread_subset(samples, cfg.attention_samples)
    hs = load_head_scores(study / "heads.json")
    retrieval = hs.above(cfg.threshold)
    conds = random_condition_sets(rm, retrieval, n_seeds=cfg.seeds, exclude=retrieval)
    try:
        matched = random_condition_sets(
            rm, retrieval, n_seeds=cfg.seeds, exclude=retrieval, match_per_layer=True, unmasked=False
        )
        conds |= {k.replace("random#", "matched#"): v for k, v in matched.items() if k.startswith("random#")}
    except ValueError:
        pass  # no per-layer matched control (as the study)
    return rm, cfg, samples, msamples, asamples, hs, retrieval, conds


def topk_conditions(rm, cfg, hs) -> list[tuple[str, list]]:
    """The top-k stage's conditions, as ``topk_curve`` draws them (for the old path)."""
    from retmask_interp.heads.scores import ranked_heads
    from retmask_interp.interventions.controls import random_controls

    n_heads = rm.geometry.num_layers * rm.geometry.num_heads
    ks = sorted({0, *(k for k in cfg.ks if k <= n_heads)})
    ranked, _ = ranked_heads(hs)
    out = []
    for k in ks:
        top = ranked[:k]
        out.append(("retrieval", top))
        if k:
            controls = random_controls(rm, top, n_seeds=cfg.topk_seeds, seed=0, exclude=ranked[: ks[-1]])
            out += [(f"random#{i}", c) for i, c in enumerate(controls)]
    return out, ks


# --------------------------------------------------------------------------------------------- the two paths
def old_condition(rm, samples, heads, mode, cfg, mean_values=None) -> None:
    """One condition the old way: teacher forcing and generation as two prefills, batches of the study's size."""
    b = cfg.masking_batch_size
    teacher_forced(rm, samples, heads=heads, mode=mode, batch_size=b, mean_values=mean_values)
    niah_outcomes(rm, samples, heads, mode=mode, max_new_tokens=cfg.max_new_tokens, batch_size=b,
                  mean_values=mean_values)  # fmt: skip


def old_single(rm, samples, heads, cfg) -> None:
    for h in heads:
        teacher_forced(rm, samples, heads=h, batch_size=cfg.masking_batch_size)


def workload(rm, samples, conds: int, max_new: int, answers, generated) -> tuple[list, list]:
    """The rows and the packed batches of a unit, for the floor: one batch per prompt length (what the new path ran
    when the rows fit, the case here), decode steps = the longest generation of the batch."""
    rows, by_len = [], {}
    for i, s in enumerate(samples):
        for c in range(conds):
            gen = generated[c][i] if generated is not None else 0
            rows.append((len(s.input_ids), len(answers[i]), gen))
            by_len.setdefault(len(s.input_ids), []).append(gen)
    batches = [(len(g), p, max(g)) for p, g in by_len.items()]
    return rows, batches


def generated_tokens(rm, df: pd.DataFrame, conds: list[str], samples, max_new: int) -> list[list[int]]:
    """Tokens generated per (condition, sample): the decoded answer's tokens plus the stop token, capped."""
    out = []
    for c in conds:
        part = df[df.condition == c].set_index("sample_id")
        out.append([min(max_new, len(rm.tokenizer.encode(str(part.loc[s.sample_id, "generated"]),
                                                         add_special_tokens=False)) + 1) for s in samples])  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------- main
def ctx(sample) -> int:
    return int(getattr(sample, "context_length", None) or len(sample.input_ids))


def table(paths: list[Path]) -> str:
    """The markdown table of ``docs/benchmarks.md`` from the JSON files of runs (``--table A.json B.json``)."""
    out = ["| model | card | stage | units | old s (median [min, max]) | new s (median [min, max]) | ratio old/new "
           "| floor s | new / floor |", "|---|---|---|---:|---|---|---:|---:|---:|"]  # fmt: skip
    for path in paths:
        res = json.loads(Path(path).read_text())
        for stage, s in res["stages"].items():
            fl = s["floor"]["floor_s"]
            out.append(f"| {res['model']} | {res['card']} | {stage} | {s['units']} | {s['old_median']:.2f} "
                       f"[{s['old_spread'][0]:.2f}, {s['old_spread'][1]:.2f}] | {s['new_median']:.2f} "
                       f"[{s['new_spread'][0]:.2f}, {s['new_spread'][1]:.2f}] | {s['ratio']:.1f}x | {fl:.3f} "
                       f"| {s['new_median'] / fl:.0f}x |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    if sys.argv[1:2] == ["--table"]:
        sys.stdout.write(table([Path(x) for x in sys.argv[2:]]) + "\n")
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", required=True, type=Path)
    ap.add_argument("--model", required=True)
    ap.add_argument("--haystack", default=None, help="the essays' path here (default: the study's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--length", type=int, default=-1, help="index into the grid's sorted lengths (default longest)"
    )
    ap.add_argument("--old-conditions", type=int, default=3)
    ap.add_argument("--stages", default="masking,topk,single")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry", type=int, default=0, help="a trial of the script: N samples and N conditions")
    args = ap.parse_args()
    stages = args.stages.split(",")
    name, peak, bw = card()
    clock = Clock(args.device)
    t_load, _, (rm, cfg, samples, msamples, asamples, hs, retrieval, conds) = clock.run(
        lambda: study_inputs(args.study, args.model, args.haystack, args.device)
    )
    if args.dry:
        msamples, asamples = msamples[: args.dry], asamples[: args.dry]
        conds = dict(list(conds.items())[: args.dry])
        cfg.ks, cfg.topk_seeds, cfg.modes, cfg.max_new_tokens, cfg.single_heads = (
            [1],
            1,
            ["zero"],
            4,
            args.dry,
        )
    print(f"{rm.name} on {name}: {len(msamples)} masking / {len(asamples)} attention samples, "
          f"{len(retrieval)} retrieval heads, {len(conds)} masking conditions (load {t_load:.1f} s)", flush=True)  # fmt: skip
    committed = pd.read_csv(args.study / "masking_outcomes.csv.gz")
    same_samples = sorted(committed.sample_id.unique()) == sorted(s.sample_id for s in msamples)
    print(f"samples identical to the study's: {same_samples}", flush=True)
    lengths = sorted({ctx(s) for s in msamples})
    length = lengths[args.length]
    msub = [s for s in msamples if ctx(s) == length]
    asub = [s for s in asamples if ctx(s) == length] or asamples[:3]
    print(f"prompt tokens of the subset: {sorted(len(s.input_ids) for s in msub)}", flush=True)
    tk_conds, ks = topk_conditions(rm, cfg, hs)
    heads_all = [(layer, h) for layer in range(rm.geometry.num_layers) for h in range(rm.geometry.num_heads)]
    n_old = args.old_conditions
    mc = list(conds.items())
    new_fns = {
        "masking": lambda: masking_outcomes(rm, msub, conds, mode="zero", max_new_tokens=cfg.max_new_tokens),
        "topk": lambda: topk_curve(
            rm,
            msub,
            hs,
            ks,
            n_random=cfg.topk_seeds,
            return_outcomes=True,
            mode="zero",
            max_new_tokens=cfg.max_new_tokens,
        ),  # fmt: skip
        "single": lambda: single_head_effects(rm, asub, hs, cfg.single_heads, n_resamples=200),
    }
    old_fns = {
        "masking": lambda: [old_condition(rm, msub, h, "zero", cfg) for _, h in mc[:n_old]],
        "topk": lambda: [old_condition(rm, msub, h, "zero", cfg) for _, h in tk_conds[:n_old]],
        "single": lambda: old_single(rm, asub, [[]] + [[h] for h in heads_all[: n_old - 1]], cfg),
    }
    total_units = {
        "masking": len(mc),
        "topk": len(tk_conds),
        "single": (cfg.single_heads or len(heads_all)) + 1,
    }
    print(f"timed subset: the {len(msub)} masking / {len(asub)} attention samples of length {length} "
          f"(grid lengths {lengths}); old path on {n_old} of the conditions, scaled", flush=True)  # fmt: skip
    # warm-ups: kernels, allocator, nnsight's source reads (not timed)
    old_condition(rm, msub[:1], retrieval, "zero", cfg)
    masking_outcomes(rm, msub[:1], {"a": [], "b": retrieval}, max_new_tokens=cfg.max_new_tokens)
    res: dict = {"card": name, "model": rm.name, "length": length, "n_masking_samples": len(msub),
                 "n_attention_samples": len(asub), "old_conditions": n_old, "stages": {}}  # fmt: skip
    last: dict = {}
    for stage in stages:
        res["stages"][stage] = {"new": [], "old_part": [], "units": total_units[stage]}
    for r in range(args.repeats):
        for stage in stages:
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for which in order:
                t, _, out = clock.run(new_fns[stage] if which == "new" else old_fns[stage])
                res["stages"][stage]["new" if which == "new" else "old_part"].append(t)
                if which == "new":
                    last[stage] = out
            s = res["stages"][stage]
            print(f"repeat {r}: {stage}: new {s['new'][-1]:.2f} s, old {s['old_part'][-1]:.2f} s for {n_old} of "
                  f"{s['units']} units", flush=True)  # fmt: skip
    # floors of the timed units (new path's rows; generated tokens from its outcomes)
    for stage in stages:
        s = res["stages"][stage]
        s["old"] = [t * s["units"] / n_old for t in s["old_part"]]
        s["new_median"] = statistics.median(s["new"])
        s["old_median"] = statistics.median(s["old"])
        s["ratio"] = s["old_median"] / s["new_median"]
        s["new_spread"] = [min(s["new"]), max(s["new"])]
        s["old_spread"] = [min(s["old"]), max(s["old"])]
        if stage in ("masking", "topk"):
            df = last[stage] if stage == "masking" else last[stage][1]
            if stage == "topk":  # k = 0 runs once; the curve counts it for both kinds
                df = df[~((df.k == 0) & (df.kind == "random"))]
            names = list(dict.fromkeys(df.condition + "@" + df.n_heads.astype(str)))
            df = df.assign(condition=df.condition + "@" + df.n_heads.astype(str))
            answers = [answer_tokens(x, rm.tokenizer) for x in msub]
            gen = generated_tokens(rm, df, names, msub, cfg.max_new_tokens)
            rows, batches = workload(rm, msub, len(names), cfg.max_new_tokens, answers, gen)
        else:
            answers = [answer_tokens(x, rm.tokenizer) for x in asub]
            rows, batches = workload(rm, asub, s["units"], 0, answers, None)
        s["floor"] = sweep_floor(
            **model_floor_inputs(rm), rows=rows, batches=batches, peak=peak, bandwidth=bw
        )
        print(f"{stage}: new {s['new_median']:.2f} s [{s['new_spread'][0]:.2f}, {s['new_spread'][1]:.2f}], old "
              f"{s['old_median']:.2f} s [{s['old_spread'][0]:.2f}, {s['old_spread'][1]:.2f}], ratio "
              f"{s['ratio']:.1f}x, floor {s['floor']['floor_s']:.3f} s", flush=True)  # fmt: skip
    if args.out:  # the timings first: a check cut by the call's limit leaves them
        args.out.write_text(json.dumps(res, indent=1, default=float))
    if args.check:
        res["check"] = check(rm, cfg, args.study, msamples, asamples, hs, conds, ks)
        if args.out:
            args.out.write_text(json.dumps(res, indent=1, default=float))


# --------------------------------------------------------------------------------------------- conclusions
def check(rm, cfg, study: Path, msamples, asamples, hs, conds, ks) -> dict:
    """The new path over the full stages once, against the study's committed tables."""
    from retmask_interp.measure.experiment import grid_mean_values

    out: dict = {}
    committed = pd.read_csv(study / "masking_outcomes.csv.gz")
    summary = pd.read_csv(study / "masking_summary.csv")
    means = grid_mean_values(rm, msamples) if "mean" in cfg.modes else None
    parts, t0 = [], time.perf_counter()
    for mode in cfg.modes:
        df = masking_outcomes(rm, msamples, conds, mode=mode, max_new_tokens=cfg.max_new_tokens,
                              mean_values=means if mode == "mean" else None)  # fmt: skip
        parts.append(df.assign(mode=mode))
    sync()
    new = pd.concat(parts, ignore_index=True)
    out["masking_full_s"] = time.perf_counter() - t0
    key = ["mode", "condition", "sample_id"]
    both = new.merge(committed, on=key, suffixes=("", "_ref"))
    out["masking_rows_compared"] = len(both)
    out["masking_success_agreement"] = float((both.success == both.success_ref).mean())
    out["masking_logprob_abs_diff_mean"] = float((both.answer_logprob - both.answer_logprob_ref).abs().mean())
    out["masking_logprob_abs_diff_max"] = float((both.answer_logprob - both.answer_logprob_ref).abs().max())
    mine = summarize_outcomes(new, by=("mode", "kind"), metrics=("success", "rouge", "answer_logprob"))
    j = mine.merge(summary, on=["mode", "kind", "metric"], suffixes=("", "_ref"))
    j["inside"] = (j["mean"] >= j.ci_low_ref - 1e-9) & (j["mean"] <= j.ci_high_ref + 1e-9)
    out["masking_summary"] = j[["mode", "kind", "metric", "mean", "mean_ref", "ci_low_ref", "ci_high_ref",
                                "inside"]].to_dict("records")  # fmt: skip
    print(f"masking, full ({out['masking_full_s']:.1f} s): success agrees on "
          f"{out['masking_success_agreement']:.3f} of {len(both)} rows; |d logprob| mean "
          f"{out['masking_logprob_abs_diff_mean']:.4f} max {out['masking_logprob_abs_diff_max']:.3f}; summary means "
          f"inside the committed intervals: {int(j.inside.sum())}/{len(j)}", flush=True)  # fmt: skip
    # the shared prefill against one teacher-forced forward, same rows (bf16)
    for name in [n for n in ("unmasked", "retrieval") if n in conds]:
        tf = teacher_forced(rm, msamples, heads=conds[name], batch_size=cfg.masking_batch_size)
        sg = new[(new["mode"] == "zero") & (new.condition == name)].answer_logprob.to_numpy()
        d = np.abs(sg - np.array([r["answer_logprob"] for r in tf]))
        out[f"shared_prefill_vs_forced_{name}"] = {"mean": float(d.mean()), "max": float(d.max())}
        print(f"shared prefill vs one teacher-forced forward ({name}): |d answer_logprob| mean {d.mean():.4f}, "
              f"max {d.max():.4f}", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    curve = topk_curve(
        rm, msamples, hs, ks, n_random=cfg.topk_seeds, mode="zero", max_new_tokens=cfg.max_new_tokens
    )
    sync()
    out["topk_full_s"] = time.perf_counter() - t0
    ref = pd.read_csv(study / "topk_curve.csv")
    c = curve.merge(ref, on=["k", "kind"], suffixes=("", "_ref"))
    c["inside"] = (c.success >= c.ci_low_ref - 1e-9) & (c.success <= c.ci_high_ref + 1e-9)
    out["topk"] = c[["k", "kind", "success", "success_ref", "ci_low_ref", "ci_high_ref", "inside"]].to_dict(
        "records"
    )
    print(f"top-k, full ({out['topk_full_s']:.1f} s): success inside the committed intervals "
          f"{int(c.inside.sum())}/{len(c)}; max |d success| {float((c.success - c.success_ref).abs().max()):.3f}",
          flush=True)  # fmt: skip
    t0 = time.perf_counter()
    single = single_head_effects(rm, asamples, hs, cfg.single_heads)
    sync()
    out["single_full_s"] = time.perf_counter() - t0
    ref = pd.read_csv(study / "single_head_effects.csv")
    s = single.merge(ref, on=["layer", "head"], suffixes=("", "_ref"))

    def top(d, col):
        return [tuple(x) for x in d.sort_values(col, ascending=False)[["layer", "head"]].head(5).values]

    out["single_top5"] = top(s, "effect")
    out["single_top5_ref"] = top(s, "effect_ref")
    out["single_effect_abs_diff_max"] = float((s.effect - s.effect_ref).abs().max())
    out["single_effect_corr"] = float(np.corrcoef(s.effect, s.effect_ref)[0, 1])
    out["single_spearman"] = single.attrs.get("spearman")
    print(f"single heads, full ({out['single_full_s']:.1f} s): top-5 by effect {out['single_top5']} "
          f"(committed {out['single_top5_ref']}); max |d effect| {out['single_effect_abs_diff_max']:.4f}, "
          f"correlation {out['single_effect_corr']:.4f}; Spearman(score, effect) {out['single_spearman']:.3f}",
          flush=True)  # fmt: skip
    return out


if __name__ == "__main__":
    main()
