"""Build the replication's per-example table (``scores.csv``), its tables (``tables.json``) and its report
(``README.md``) from the run states, on the CPU:

    python studies/retmask_replication/build.py                     # all of it
    python studies/retmask_replication/build.py --report-only       # README and tables from scores.csv alone

Sources: the 2026-12-03 run (``docs/experiments/smollm2_retmask/run_state.tar.gz`` or its moved copy: scores of every
unit, predictions of all but the untrained model and RetMask seed 0) and this study's run state(s)
(``studies/retmask_replication/run_state*.tar.gz``: the directories of ``run.py``). Every prediction is scored again
against its example, regenerated with SmolLM2's tokenizer (``data.tasks`` is deterministic in task, seed, split,
index and length); a rescored example that disagrees with its recorded score stops the build.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

import pandas as pd

from retmask_interp.core.io import atomic_write_json, atomic_write_text, read_jsonl
from retmask_interp.retmask import replication as R

log = logging.getLogger("replication.build")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OLD = [
    REPO / "studies/smollm2_retmask/run_state.tar.gz",
    REPO / "docs/experiments/smollm2_retmask/run_state.tar.gz",
]
MODEL = "smollm2-135m-instruct"
GEMMA = "gemma-3-270m"  # the plan's section 6 arm: run.py's gemma3/ directories
ARM_DIRS = {MODEL: "", GEMMA: "gemma3"}
HEAD_LISTS = {
    MODEL: "studies/smollm2_retmask/heads_2026-11-28.json",
    GEMMA: "retmask_interp/data/heads/gemma-3-270m.json",
}
ORGANISMS = REPO / "studies/organism_retmask/experiment_results.json"  # run A: the paper's general prompts
LENGTHS = (2048, 4096, 7000)
KEEP = (*R.PRIMARY_TASKS, "short_qa", "ppl_nll")


def _untar(path: Path, into: Path) -> Path:
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return into


def _unit_rows(csv: Path, unit: dict, source: str, model: str = MODEL) -> tuple[pd.DataFrame, dict]:
    """Score rows of one evaluated model (``retmask.report`` CSV) as replication rows, and its predictions."""
    df = pd.read_csv(csv, keep_default_na=False)
    df = df[df["task"].isin(KEEP)].copy()
    for k, v in unit.items():
        df[k] = v
    df["model"], df["source"] = model, source
    for c in R.OPTIONAL:
        df[c] = float("nan")
    preds_path = csv.with_suffix(".predictions.jsonl")
    preds = {}
    if preds_path.exists():
        preds = {
            (r["task"], int(r["length"]), int(r["example"])): r["prediction"] for r in read_jsonl(preds_path)
        }
    return df[list(R.COLUMNS)], preds


NAME = re.compile(r"^(?P<cond>[a-z]+)_lr(?P<lr>[0-9.e+-]+)_s(?P<seed>\d+)$")


def old_units(run: Path) -> list[tuple[pd.DataFrame, dict]]:
    """The 2026-12-03 run: the untrained model, RetMask and the random control (draw d0), all on pair and evaluation
    seed 0 (seeds 1 and 2 changed only the DPO shuffle)."""
    out = []
    for csv in sorted((run / "eval").glob("*.csv")):
        if csv.stem == "none":
            unit = {
                "condition": "none",
                "control_draw": "",
                "seed": -1,
                "pair_seed": -1,
                "eval_seed": 0,
                "lr": 0.0,
            }
        else:
            m = NAME.match(csv.stem)
            if not m:
                continue
            cond = m["cond"]
            unit = {
                "condition": cond,
                "control_draw": "d0" if cond == "random" else "",
                "seed": int(m["seed"]),
            }
            unit |= {"pair_seed": 0, "eval_seed": 0, "lr": float(m["lr"])}
        out.append(_unit_rows(csv, unit, "2026-12-03"))
    return out


DIR = re.compile(r"^s(?P<seed>\d+)(?:_d(?P<draw>\d+)|_(?P<top>top\d+)|_(?P<out>out))?$")


def new_units(root: Path, source: str, model: str = MODEL) -> list[tuple[pd.DataFrame, dict]]:
    """This study's unit directories (``run.py``) of ``model`` under ``root``: ``s<S>`` (untrained on eval seed S,
    RetMask, self-DPO), ``s<S>_d<K>`` (random draw K), ``s<S>_top<k>`` (dose); and the masked-niah units of
    ``harm_run``."""
    out = []
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        m = DIR.match(d.name)
        if not m:
            continue
        s = int(m["seed"])
        for csv in sorted((d / "eval").glob("*.csv")):
            if csv.stem == "none":
                if m["draw"] or m["top"] or m["out"]:
                    continue  # the seed's own directory holds its untrained evaluation
                unit = {"condition": "none", "control_draw": "", "seed": -1, "pair_seed": -1, "eval_seed": s}
                unit["lr"] = 0.0
            else:
                n = NAME.match(csv.stem)
                if not n or not (d / "stages" / "eval" / f"{csv.stem}.json").exists():
                    continue
                cond = n["cond"]
                draw = ""
                if m["draw"] or m["out"]:
                    if cond != "random":
                        continue  # the draw directories' RetMask run is the seed directory's
                    draw = f"d{m['draw']}" if m["draw"] else "out"
                    cond = "random" if m["draw"] else "random_out"
                elif m["top"]:
                    if cond != "retmask":
                        continue
                    cond = m["top"]
                elif cond == "random":
                    continue
                unit = {"condition": cond, "control_draw": draw, "seed": int(n["seed"]), "pair_seed": s}
                unit |= {"eval_seed": s, "lr": float(n["lr"])}
            out.append(_unit_rows(csv, unit, source, model))
    harm = root / "harm_run" / "harm"
    for f in sorted(harm.glob("*.jsonl")) if harm.exists() else []:
        recs = list(read_jsonl(f))
        df = pd.DataFrame(
            [
                {
                    "model": model,
                    "condition": "masked",
                    "control_draw": f.stem,
                    "seed": -1,
                    "pair_seed": -1,
                    "eval_seed": 0,
                    "lr": 0.0,
                    "task": r["task"],
                    "length": r["length"],
                    "example": r["example"],
                    "score": r["score"],
                    "score_len_controlled": float("nan"),
                    "token_f1": float("nan"),
                    "answer_words": float("nan"),
                    "score_first15": float("nan"),
                    "source": source,
                }
                for r in recs
            ]  # fmt: skip
        )
        out.append(
            (df[list(R.COLUMNS)], {(r["task"], r["length"], r["example"]): r["prediction"] for r in recs})
        )
    return out


REAL_MODEL_RUN = REPO / "studies/real_models/smollm2/masking_outcomes.csv.gz"
# Measurements outside the plan's run states, read as ``run.py`` writes them (NOTES.md says what each is and why):
# (model, directory holding ``harm_run/harm/<set>.jsonl``, source label).
PILOTS = [(GEMMA, HERE / "cpu_pilot_2026-12-08", "CPU pilot 2026-12-08")]


def real_model_harm(path: Path = REAL_MODEL_RUN, draws: int = 5) -> list[tuple[pd.DataFrame, dict]]:
    """What each of the plan's draws removes, from the committed real-model study of SmolLM2 (2026-12-03): its
    layer-matched random sets 0-4 are this plan's d0-d4 head for head (``random_heads(..., exclude=retrieval,
    like=retrieval, seed=k)``; checked here), masked by zeroing on its balanced NIAH subset (48 samples, 1K-8K tokens,
    Wu's success rule). Rows: ``condition`` ``masked``, ``control_draw`` ``none`` (unmasked), ``retrieval``, ``d0``..,
    task ``niah_grid``, ``length`` the context length, ``example`` the sample's index within its length."""
    import ast

    from retmask_interp.interventions.controls import random_heads

    df = pd.read_csv(path)
    df = df[df["mode"] == "zero"]
    order = {
        sid: i for _, g in df.groupby("context_length") for i, sid in enumerate(sorted(set(g["sample_id"])))
    }
    retrieval = ast.literal_eval(df[df["kind"] == "retrieval"]["heads"].iloc[0])
    geometry = type("G", (), {"geometry": type("g", (), {"num_layers": 30, "num_heads": 9})})
    units = [("unmasked", 0, "none"), ("retrieval", 0, "retrieval")]
    units += [("matched", k, f"d{k}") for k in range(draws)]
    out = []
    for kind, seed, name in units:
        g = df[(df["kind"] == kind) & (df["seed"] == seed)]
        if kind == "matched":
            heads = ast.literal_eval(g["heads"].iloc[0])
            want = random_heads(geometry, len(retrieval), exclude=retrieval, seed=seed, like=retrieval)
            if sorted(heads) != sorted(want):
                raise SystemExit(f"the real-model study's matched set {seed} is not this plan's draw d{seed}")
        rows = pd.DataFrame(
            {
                "model": MODEL,
                "condition": "masked",
                "control_draw": name,
                "seed": -1,
                "pair_seed": -1,
                "eval_seed": -1,
                "lr": 0.0,
                "task": "niah_grid",
                "length": g["context_length"].astype(int),
                "example": g["sample_id"].map(order).astype(int),
                "score": g["success"].astype(float),
                "source": "real_models/smollm2 2026-12-03",
            }  # fmt: skip
        )
        for c in R.OPTIONAL:
            rows[c] = float("nan")
        out.append((rows[list(R.COLUMNS)], {}))
    return out


def rescore_all(units: list[tuple[pd.DataFrame, dict]], tokenizer) -> pd.DataFrame:
    """Every unit's rows (of one model, whose ``tokenizer`` made the examples) with the length-controlled score,
    token F1 and answer words filled from its predictions; N per task from that model's untrained predictions on
    evaluation seed 0 (this study's evaluation)."""
    from retmask_interp.data.tasks import generate_examples

    cache: dict[tuple[str, int, int], list] = {}

    def examples(task: str, length: int, eval_seed: int, n: int) -> list:
        key = (task, length, eval_seed)
        if key not in cache or len(cache[key]) < n:
            log.info("regenerating %s at %d, eval seed %d", task, length, eval_seed)
            cache[key] = generate_examples(task, n, seed=eval_seed, split="eval", num_tokens=length,
                                           tokenizer=tokenizer)  # fmt: skip
        return cache[key]

    words: dict[str, list[float]] = defaultdict(list)
    for df, preds in units:
        none0 = df[(df["condition"] == "none") & (df["eval_seed"] == 0)]
        if len(none0) and preds:
            for r in none0[none0["task"].isin(R.PRIMARY_TASKS)].itertuples():
                words[r.task].append(R.answer_words(preds[(r.task, r.length, r.example)]))
    budget = R.length_budget(words)
    log.info("length budget N per task (untrained median words, eval seed 0): %s", budget)
    frames = []
    for df, preds in units:
        df = df.copy()
        if preds:
            for i, r in df.iterrows():
                key = (r["task"], int(r["length"]), int(r["example"]))
                if key not in preds:
                    continue
                pred = preds[key]
                df.at[i, "answer_words"] = float(R.answer_words(pred))
                if r["task"] not in R.PRIMARY_TASKS:
                    continue
                cell = df[(df["task"] == r["task"]) & (df["length"] == r["length"])]
                ex = examples(
                    r["task"], int(r["length"]), int(r["eval_seed"]), int(cell["example"].max()) + 1
                )
                s = R.rescore(ex[int(r["example"])], pred, budget.get(r["task"]))
                if abs(s["score"] - float(r["score"])) > 1e-9:
                    raise SystemExit(
                        f"rescoring {r['condition']} {key} gives {s['score']}, recorded {r['score']}"
                    )
                for c in ("score_len_controlled", "token_f1"):
                    df.at[i, c] = s[c]
                df.at[i, "score_first15"] = R.rescore(ex[int(r["example"])], pred, 15)["score_len_controlled"]
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["length_budget"] = budget
    return out


SESSION = 1_796_601_600  # 2026-12-07 00:00 UTC: markers older than this were copied from the 2026-12-03 run


def stage_timings(root: Path, label: str = "") -> dict[str, float]:
    """GPU wall seconds per stage of this study's runs, from the unit directories' stage markers: each marker made
    in this study counted once (a marker copied into a draw's directory has the same name and time as its source;
    markers of the 2026-12-03 run, copied into ``s0``, are older than this study and left out); ``harm`` per set;
    and the unit totals of ``run.py`` (``timings/``)."""
    seen: set[tuple[str, float]] = set()
    out: dict[str, float] = {}
    for marker in sorted(root.glob("*/stages/**/*.json")):
        if marker.name.endswith((".started.json", ".units.json")) or marker.stat().st_mtime < SESSION:
            continue
        rec = json.loads(marker.read_text(encoding="utf-8"))
        if "wall_s" not in rec:
            continue
        name, wall = rec["name"], float(rec["wall_s"])
        if (name, wall) in seen:
            continue
        seen.add((name, wall))
        directory = marker.relative_to(root).parts[0]
        out[f"{label}{directory}: {name}"] = wall
    for f in sorted((root / "timings").glob("*.json")) if (root / "timings").exists() else []:
        rec = json.loads(f.read_text(encoding="utf-8"))
        out[f"unit total: {rec['unit']}"] = float(rec["wall_s"])
    if not label and (root / "gemma3").is_dir():  # Gemma-3's arm: its directories, under gemma3/
        for k, v in stage_timings(root / "gemma3", "gemma3/").items():
            out.setdefault(k, v)
    return out


def concentration_inputs() -> dict:
    """The x axis of gain against concentration: each real model's concentration (the head list its runs masked),
    and the organisms' RetMask gains from their study's run A (RetMask DPO at lr 5e-5, one seed; the gain pools the
    three lengths, CI from its paired bootstrap), for ``replication.concentration_table``."""
    from retmask_interp.analysis.metrics import organization_metrics
    from retmask_interp.heads.formats import load_any_head_list

    keep = ("gini", "effective_heads", "n_ge_0.1")
    models = {}
    for model, rel in HEAD_LISTS.items():
        m = organization_metrics(load_any_head_list(str(REPO / rel)))
        models[model] = {k: m[k] for k in keep} | {"heads_file": rel}
    organisms = []
    res = json.loads(ORGANISMS.read_text(encoding="utf-8"))
    lr = res["settings"]["lr"][0]  # run A's conditions are its first lr; variants hold the others
    for name, o in sorted(res["organisms"].items()):
        pooled = next(r for r in o["conditions"]["retmask"]["vs_none_by_task"] if r["task"] == "all")
        organisms.append({"model": f"organism {name}", **{k: o["metrics"][k] for k in keep},
                          "gain": pooled["delta"], "ci_low": pooled["ci_low"], "ci_high": pooled["ci_high"],
                          "source": f"studies/organism_retmask run A (RetMask lr {lr:g}, one seed, 6 tasks, 1K-3K)"})  # fmt: skip
    return {"models": models, "organisms": organisms}


def concentration_figures(conc: dict) -> dict:
    """Gain (RetMask minus untrained, 95 % CI) against the Gini and the effective number of retrieval heads, one
    point per model (both real models and the organisms), from a ready ``concentration_table``; {} when not ready."""
    from retmask_interp.workflows.paper_figures import fig_gain_vs_concentration

    if not conc.get("ready"):
        return {}
    rows = [
        {"model": r["model"], "condition": "retmask", "gain": r["gain"], "ci_low": r["gain_ci_low"],
         "ci_high": r["gain_ci_high"], "gini": r["gini"], "effective_heads": r["effective_heads"]}
        for r in conc["rows"] if r.get("gain") is not None
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    return {f"gain_vs_{x}": fig_gain_vs_concentration(df, x=x) for x in ("gini", "effective_heads")}


def build_table(out_csv: Path, states: list[Path]) -> pd.DataFrame:
    from transformers import AutoTokenizer

    from retmask_interp.core.real_models import real_model_dir

    old = next((p for p in OLD if p.exists()), None)
    if old is None:
        raise SystemExit(f"the 2026-12-03 run state is not at {' or '.join(map(str, OLD))}")
    units: dict[str, list] = {MODEL: [], GEMMA: []}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        units[MODEL] += old_units(_untar(old, Path(tmp) / "old"))
        units[MODEL] += real_model_harm()
        for model, d, label in PILOTS:
            units[model] += new_units(d, label, model)
        for i, state in enumerate(states):
            root = _untar(state, Path(tmp) / f"new{i}")
            root = root / "replication" if (root / "replication").is_dir() else root
            for model, sub in ARM_DIRS.items():
                units[model] += new_units(root / sub if sub else root, "2026-12-07", model)
            timings |= stage_timings(root)
        frames, budget = [], {}
        for model, us in units.items():
            if not us:
                continue
            tok = AutoTokenizer.from_pretrained(str(real_model_dir(model)))  # the examples are per tokenizer
            part = rescore_all(us, tok)
            budget[model] = part.attrs["length_budget"]
            frames.append(part)
        df = pd.concat(frames, ignore_index=True)
    R.write_table(df, out_csv)
    atomic_write_json(out_csv.with_name("length_budget.json"), budget)
    atomic_write_json(out_csv.with_name("timings.json"), timings)
    return R.read_table(out_csv)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(HERE))
    p.add_argument(
        "--states", nargs="*", default=None, help="run-state tarballs (default: run_state*.tar.gz here)"
    )
    p.add_argument(
        "--report-only", action="store_true", help="tables and README from the existing scores.csv"
    )
    p.add_argument("--resamples", type=int, default=10_000)
    a = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr, force=True
    )
    out = Path(a.out)
    csv = out / "scores.csv"
    if a.report_only:
        df = R.read_table(csv)
    else:
        states = (
            [Path(s) for s in a.states] if a.states is not None else sorted(HERE.glob("run_state*.tar.gz"))
        )
        df = build_table(csv, states)
    atomic_write_json(out / "concentration.json", concentration_inputs())
    extra = {}
    for name in ("timings", "length_budget", "concentration"):
        f = out / f"{name}.json"
        extra[name] = json.loads(f.read_text(encoding="utf-8")) if f.exists() else None
    tables, text = R.render_report(df, HERE / "NOTES.md", n_resamples=a.resamples, **extra)
    atomic_write_json(out / "tables.json", tables)
    atomic_write_text(out / "README.md", text)
    from retmask_interp.analysis.export import save_figure

    for name, fig in concentration_figures(tables.get("concentration", {})).items():
        log.info(
            "wrote %s", save_figure(fig, out / name, formats=("html", "png"), html="cdn", overwrite=True)
        )
    log.info("wrote %s, tables.json, README.md (%d rows)", csv, len(df))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
