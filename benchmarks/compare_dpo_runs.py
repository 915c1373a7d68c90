"""DPO on one process against DPO on several: synthetic pairs, and the two loss curves side by side.

Two subcommands, used by the CPU proof in docs/benchmarks.md ("Two processes: DPO") and by
``benchmarks/multi_gpu_dpo.sh``:

``pairs OUT [--n 32] [--format conversational|plain]``
    Writes a deterministic pairs file through the package's own writer (``pairs_from_responses``): short synthetic
    recall prompts ("Item 7 has the code K3Q9. What is the code of item 7?"), ``chosen`` the right answer,
    ``rejected`` a wrong or evasive one. No model is sampled; the strings depend on ``--seed`` only.

``compare RUN_A RUN_B [--out compare.json] [--table table.md]``
    Reads both runs' ``training_summary.json`` (``retmask train --out RUN``), checks that they used the same
    effective batch, prints their processes, per-device batch and gradient accumulation, and a table of the
    per-step loss, reward margin and reward accuracy of both (the Trainer's log history; train with
    ``--logging-steps 1`` for one row per optimizer step) with the absolute differences. Exit status 0 when the
    effective batches and step counts agree, 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

KEYS = ("loss", "rewards/margins", "rewards/accuracies")
WORDS = ["red", "blue", "green", "amber", "violet", "silver", "olive", "coral", "ivory", "teal"]
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def synthetic_responses(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """(prompts, chosen, rejected): ``n`` short recall questions with a right and a wrong answer."""
    rng = random.Random(seed)
    prompts, chosen, rejected = [], [], []
    for i in range(n):
        code = "".join(rng.choice(LETTERS) for _ in range(4))
        other = "".join(rng.choice(LETTERS) for _ in range(4))
        colour = rng.choice(WORDS)
        prompts.append(
            f"Item {i} is {colour} and has the code {code}. Item {i + 1} has the code {other}. "
            f"What is the code of item {i}?"
        )
        chosen.append(f"The code of item {i} is {code}.")
        rejected.append(
            rng.choice(
                [f"The code of item {i} is {other}.", "I do not know the code.", f"Item {i} is {colour}."]
            )
        )
    return prompts, chosen, rejected


def make_pairs(out: Path, n: int, seed: int, fmt: str) -> dict:
    from retmask_interp.retmask.pairs import pairs_from_responses

    prompts, chosen, rejected = synthetic_responses(n, seed)
    stats = pairs_from_responses(
        prompts,
        chosen,
        rejected,
        out,
        heads=[],
        seed=seed,
        format=fmt,
        model="synthetic",
        overwrite=True,
    )
    return stats.to_dict()


def step_rows(summary: dict) -> dict[int, dict]:
    """{optimizer step: {loss, rewards/margins, rewards/accuracies}} from a summary's log history."""
    rows: dict[int, dict] = {}
    for rec in summary.get("log_history", []):
        if "loss" in rec and "step" in rec:
            rows[int(rec["step"])] = {k: float(rec[k]) for k in KEYS if k in rec}
    return rows


def compare(a: dict, b: dict) -> dict:
    ra, rb = step_rows(a), step_rows(b)
    steps = sorted(set(ra) | set(rb))
    table = []
    for s in steps:
        row: dict = {"step": s}
        for k in KEYS:
            va, vb = ra.get(s, {}).get(k), rb.get(s, {}).get(k)
            row[f"{k}_a"], row[f"{k}_b"] = va, vb
            row[f"{k}_absdiff"] = abs(va - vb) if va is not None and vb is not None else None
        table.append(row)

    def worst(k: str):
        d = [r[f"{k}_absdiff"] for r in table if r[f"{k}_absdiff"] is not None]
        return max(d) if d else None

    runs = {}
    for name, s in (("a", a), ("b", b)):
        runs[name] = {
            k: s.get(k)
            for k in (
                "num_processes",
                "gradient_accumulation_steps",
                "effective_batch_size",
                "optimizer_steps",
            )
        }
        runs[name]["per_device_batch_size"] = s.get("settings", {}).get("per_device_batch_size")
        runs[name]["final"] = s.get("final", {})
    same_batch = runs["a"]["effective_batch_size"] == runs["b"]["effective_batch_size"]
    same_steps = runs["a"]["optimizer_steps"] == runs["b"]["optimizer_steps"] and set(ra) == set(rb)
    final_diff = {
        k: abs(runs["a"]["final"][k] - runs["b"]["final"][k])
        for k in ("train_loss",) + KEYS
        if k in runs["a"]["final"] and k in runs["b"]["final"]
    }
    return {
        "runs": runs,
        "same_effective_batch": same_batch,
        "same_steps": same_steps,
        "max_abs_diff": {k: worst(k) for k in KEYS},
        "final_abs_diff": final_diff,
        "steps": table,
    }


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.6f}"


def _dfmt(v) -> str:
    return "-" if v is None else f"{v:.1e}"


def markdown(result: dict, names: tuple[str, str]) -> str:
    a, b = names
    lines = []
    for key, name in (("a", a), ("b", b)):
        r = result["runs"][key]
        lines.append(
            f"- {name}: {r['num_processes']} process(es) x per-device batch {r['per_device_batch_size']} x "
            f"accumulation {r['gradient_accumulation_steps']} = effective batch {r['effective_batch_size']}, "
            f"{r['optimizer_steps']} optimizer steps"
        )
    lines.append("")
    lines.append(
        f"| step | loss {a} | loss {b} | abs diff | margin {a} | margin {b} | abs diff | acc {a} | acc {b} |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["steps"]:
        lines.append(
            f"| {r['step']} | {_fmt(r['loss_a'])} | {_fmt(r['loss_b'])} | {_dfmt(r['loss_absdiff'])} | "
            f"{_fmt(r['rewards/margins_a'])} | {_fmt(r['rewards/margins_b'])} | "
            f"{_dfmt(r['rewards/margins_absdiff'])} | {_fmt(r['rewards/accuracies_a'])} | "
            f"{_fmt(r['rewards/accuracies_b'])} |"
        )
    m = result["max_abs_diff"]
    lines.append("")
    lines.append(
        f"max abs diff per step: loss {_dfmt(m['loss'])}, margin {_dfmt(m['rewards/margins'])}, "
        f"accuracy {_dfmt(m['rewards/accuracies'])}; final (last logged step / train_loss): "
        + ", ".join(f"{k} {_dfmt(v)}" for k, v in result["final_abs_diff"].items())
    )
    lines.append(
        f"same effective batch: {result['same_effective_batch']}; same logged steps: {result['same_steps']}"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("pairs", help="write a deterministic synthetic pairs file")
    q.add_argument("out", type=Path)
    q.add_argument("--n", type=int, default=32)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--format", choices=["conversational", "plain"], default="conversational")
    c = sub.add_parser("compare", help="side-by-side loss table of two `retmask train` runs")
    c.add_argument("run_a", type=Path)
    c.add_argument("run_b", type=Path)
    c.add_argument("--names", nargs=2, default=None, help="column names (default: the directory names)")
    c.add_argument("--out", type=Path, default=None, help="write the comparison as JSON")
    c.add_argument("--table", type=Path, default=None, help="write the markdown table")
    args = p.parse_args(argv)

    if args.cmd == "pairs":
        stats = make_pairs(args.out, args.n, args.seed, args.format)
        print(f"{stats['kept']} pairs ({args.format}) -> {args.out}")
        return 0
    summaries = [json.loads((r / "training_summary.json").read_text()) for r in (args.run_a, args.run_b)]
    result = compare(*summaries)
    names = tuple(args.names) if args.names else (args.run_a.name, args.run_b.name)
    text = markdown(result, names)  # type: ignore[arg-type]
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.table:
        args.table.write_text(text)
    return 0 if result["same_effective_batch"] and result["same_steps"] else 3


if __name__ == "__main__":
    raise SystemExit(main())
