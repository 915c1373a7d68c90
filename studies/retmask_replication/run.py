"""Run the pre-registered RetMask replication (``PLAN.md``) as resumable units on the RetMask study's stages.

Each unit is one evaluated model, run by the RetMask study (``run_study`` up to ``eval``) in its own directory
under ``--root``; a unit's directory starts with copies of the finished stages it shares with its seed's directory
(``s<seed>``: prompts, the normal and RetMask sides, the RetMask pairs and run that the study's lr "sweep" of one lr
trains, the untrained model's evaluation), so a draw or a seed never samples or trains the same thing twice:

- ``self:s<S>``, ``retmask:s<S>``: directory ``s<S>`` (conditions ``retmask``, ``self``; pair, DPO and evaluation seed
  ``S``; the self-DPO side samples with ``S + 1000``);
- ``random:d<K>:s<S>``: directory ``s<S>_d<K>`` (the random control drawn with ``random_seed`` ``K``);
- ``top4:s<S>``, ``top34:s<S>``: directory ``s<S>_top<k>`` (the study's ``retmask`` condition with the threshold at
  the k-th best head's score, so that exactly the top k heads are masked);
- ``harm``: the untrained model's niah score with each head set zeroed (what a control removes), ``harm/``.

Gemma-3-270M's arm (PLAN.md section 6): the same units with the prefix ``gemma3:`` (``gemma3:retmask:s0``,
``gemma3:self:s0``, ``gemma3:random:d1:s0``, ``gemma3:harm``), under ``--root``'s ``gemma3/``, with Gemma-3's shipped
head list, its training prompts written into ``Question: {prompt}\nAnswer:`` and its responses cut at
``\nQuestion:`` (a base model writes the next question itself), and its random draws per-layer matched where a
layer has free heads and from layers of the same attention window where not (layer 5's four heads are all
retrieval heads: README's deviations). Nothing of it is prepared from an earlier run.

``prepare`` lays out ``s0`` from the 2026-12-03 run state (its normal and RetMask sides rebuilt exactly from its pair
files, which keep every response; the RetMask seed-0 run's marker, so it is not trained again). ``lanes`` runs lists
of units as side-by-side processes inside one GPU call's time. ``python studies/retmask_replication/run.py -h``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from retmask_interp.core.io import atomic_write_json, atomic_write_text, read_jsonl
from retmask_interp.retmask.pairs import PLAIN_QA, QA_STOP
from retmask_interp.retmask.replication import PRIMARY_TASKS
from retmask_interp.workflows.studies.retmask import StudyConfig, run_name, run_study

log = logging.getLogger("replication")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HEADS = "studies/smollm2_retmask/heads_2026-11-28.json"
GGUF = "/root/stage/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_HEADS = "retmask_interp/data/heads/gemma-3-270m.json"
GEMMA_GGUF = "/root/stage/gemma-3-270m-q4_k_m.gguf"
LR = 5e-6  # PLAN.md section 2: one lr for every condition, not tuned again
SELF_OFFSET = 1000
OLD_STATE = "studies/smollm2_retmask/run_state.tar.gz"
HARM_SETS = ("retrieval", "d0", "d1", "d2", "d3", "d4", "out", "top4", "top34")


@dataclasses.dataclass(frozen=True)
class Arm:
    """A model of the replication and what differs between models (PLAN.md sections 2 and 6)."""

    name: str
    model: str  # the GGUF on the GPU machine
    heads: str  # the head list, relative to the repository
    conditions: tuple[str, ...]  # the unit conditions it runs
    harm_sets: tuple[str, ...]
    template: str = "{prompt}"  # the study's prompt_template (plain pairs)
    stop: tuple[str, ...] = ()
    random_layers: str = "matched"
    subdir: str = ""  # its directory under --root


ARMS = {
    "smollm2": Arm("smollm2", GGUF, HEADS, ("retmask", "self", "random", "random_out", "top4", "top34"), HARM_SETS),
    "gemma3": Arm("gemma3", GEMMA_GGUF, GEMMA_HEADS, ("retmask", "self", "random"),
                  ("retrieval", "d0", "d1", "d2", "d3", "d4"), PLAIN_QA, QA_STOP, "matched_or_window", "gemma3"),
}  # fmt: skip


# -- units -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Unit:
    condition: str  # retmask, self, random, top4, top34
    seed: int
    draw: int | None = None
    arm: str = "smollm2"

    @classmethod
    def parse(cls, text: str) -> Unit:
        arm, rest = (
            ("gemma3", text.removeprefix("gemma3:")) if text.startswith("gemma3:") else ("smollm2", text)
        )
        parts = rest.split(":")
        unit = None
        try:
            if parts[0] == "random" and len(parts) == 3 and parts[1].startswith("d"):
                unit = cls("random", int(parts[2].removeprefix("s")), int(parts[1][1:]), arm)
            elif parts[0] == "random_out" and len(parts) == 2:
                unit = cls("random_out", int(parts[1].removeprefix("s")), 0, arm)
            elif parts[0] in ("retmask", "self", "top4", "top34") and len(parts) == 2:
                unit = cls(parts[0], int(parts[1].removeprefix("s")), None, arm)
        except ValueError:
            pass
        if unit is None or unit.condition not in ARMS[arm].conditions:
            raise SystemExit(
                f"unknown unit {text!r}: use retmask:s0, self:s1, random:d2:s0, random_out:s0, top4:s0, top34:s1 or "
                "harm; for Gemma-3 gemma3:retmask:s0, gemma3:self:s0, gemma3:random:d1:s0 or gemma3:harm"
            )
        return unit

    @property
    def name(self) -> str:
        base = (
            f"random:d{self.draw}:s{self.seed}"
            if self.condition == "random"
            else f"{self.condition}:s{self.seed}"
        )
        return base if self.arm == "smollm2" else f"{self.arm}:{base}"

    @property
    def directory(self) -> str:
        if self.condition == "random":
            base = f"s{self.seed}_d{self.draw}"
        elif self.condition in ("top4", "top34"):
            base = f"s{self.seed}_{self.condition}"
        elif self.condition == "random_out":
            base = f"s{self.seed}_out"
        else:
            base = f"s{self.seed}"
        sub = ARMS[self.arm].subdir
        return f"{sub}/{base}" if sub else base

    @property
    def seed_directory(self) -> str:
        """The directory of its seed (``s<S>``), whose finished stages it shares."""
        return Unit("retmask", self.seed, None, self.arm).directory

    @property
    def study_condition(self) -> str:
        return {"self": "self", "random": "random", "random_out": "random"}.get(self.condition, "retmask")


def top_k_threshold(k: int, heads: str = HEADS) -> float:
    """The score of the k-th best head (a threshold that selects exactly the top k; refuses a tie at the edge)."""
    from retmask_interp.heads.formats import load_any_head_list

    scores = sorted(load_any_head_list(str(REPO / heads)).scores.values(), reverse=True)
    if scores[k - 1] == scores[k]:
        raise SystemExit(
            f"heads {k} and {k + 1} tie at {scores[k]}: no threshold selects exactly the top {k}"
        )
    return float(scores[k - 1])


def unit_config(
    unit: Unit, root: Path, *, model: str | None = None, device: str = "cuda", batch: int = 64
) -> StudyConfig:
    """The RetMask study's settings for one unit (PLAN.md sections 2-4 and, for Gemma-3, 6); ``model`` replaces the
    arm's GGUF (tests)."""
    arm = ARMS[unit.arm]
    s = unit.seed
    conditions = {
        "retmask": ("retmask", "self"),
        "self": ("retmask", "self"),
        "random": ("retmask", "random"),
    }
    conditions["random_out"] = ("retmask", "random")
    kw = dict(
        out=str(root / unit.directory),
        model=model or arm.model,
        heads=arm.heads,
        device=device,
        pair_seed=s,
        self_seed_offset=SELF_OFFSET,
        random_seed=unit.draw or 0,
        conditions=conditions.get(unit.condition, ("retmask",)),
        lrs=(LR,),
        sweep_seed=s,
        seeds=(s,),
        tasks=PRIMARY_TASKS,
        eval_seed=s,
        eval_batch_size=batch,
        prune_weights=True,
        only=(f"{unit.study_condition}:{s}",),
    )
    if unit.condition == "random_out":
        kw["random_layers"] = "outside"
    elif arm.random_layers != "matched":
        kw["random_layers"] = arm.random_layers
    if unit.condition in ("top4", "top34"):
        kw["head_threshold"] = top_k_threshold(int(unit.condition[3:]))
    if arm.template != "{prompt}" or arm.stop:
        kw |= {"prompt_template": arm.template, "stop": arm.stop, "title": "RetMask on Gemma-3-270M"}
    return StudyConfig(**kw)  # type: ignore[arg-type]


# -- sharing finished stages between a seed's directories ---------------------------------------------------------
def _copy(src: Path, dst: Path, rel: str) -> bool:
    a, b = src / rel, dst / rel
    if not a.exists() or b.exists():
        return False
    b.parent.mkdir(parents=True, exist_ok=True)
    if a.is_dir():
        shutil.copytree(a, b)
    else:
        shutil.copy2(a, b)
    return True


def share(unit: Unit, root: Path) -> list[str]:
    """Copy into the unit's directory the finished stages of its seed's directory that it would otherwise redo."""
    src, dst = root / unit.seed_directory, root / unit.directory
    if src == dst or not src.exists():
        return []
    rels = ["stages/prompts.json", "prompts"]
    for split in ("train", "heldout"):
        rels += [f"stages/responses/normal.{split}.json", f"responses/normal.{split}.jsonl"]
        rels += [f"responses/normal.{split}.params.json"]
    if unit.condition in ("random", "random_out"):  # the same RetMask side, pairs and run (one-lr "sweep")
        name = run_name("retmask", LR, unit.seed)
        for split in ("train", "heldout"):
            rels += [
                f"stages/responses/masked_retmask.{split}.json",
                f"responses/masked_retmask.{split}.jsonl",
            ]
            rels += [f"responses/masked_retmask.{split}.params.json", f"stages/pairs/retmask.{split}.json"]
            rels += [f"pairs/retmask.{split}.{x}" for x in ("jsonl", "dropped.jsonl", "stats.json")]
        rels += [f"stages/train/{name}.json", f"train/{name}/training_summary.json"]
    rels += ["stages/eval/none.json", "eval/none.csv", "eval/none.predictions.jsonl"]
    done = [r for r in rels if _copy(src, dst, r)]
    if "stages/eval/none.json" in done and not (dst / "eval/none.csv").exists():
        (dst / "stages/eval/none.json").unlink()
    return done


def prepare_s0(root: Path, old_state: Path = REPO / OLD_STATE) -> list[str]:
    """``s0`` from the 2026-12-03 run: prompts, heads, the normal and RetMask sides (rebuilt from the pair files:
    chosen = normal, rejected = RetMask, dropped pairs included), the RetMask pairs and the RetMask seed-0 run's
    marker. Stage markers keep their recorded settings, so the study checks them against this run's."""
    dst = root / "s0"
    if (dst / "stages").exists():
        return []
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp)
        with tarfile.open(old_state) as tar:
            tar.extractall(old, filter="data")
        rels = ["stages/prompts.json", "prompts", "stages/heads.json"]
        name = run_name("retmask", LR, 0)
        rels += [f"stages/train/{name}.json", f"train/{name}/training_summary.json"]
        for split in ("train", "heldout"):
            rels += [f"stages/pairs/retmask.{split}.json"]
            rels += [f"pairs/retmask.{split}.{x}" for x in ("jsonl", "dropped.jsonl", "stats.json")]
            for side in ("normal", "masked_retmask"):
                rels += [f"stages/responses/{side}.{split}.json", f"responses/{side}.{split}.params.json"]
        done = [r for r in rels if _copy(old, dst, r)]
        for split in ("train", "heldout"):
            recs = list(read_jsonl(old / "pairs" / f"retmask.{split}.jsonl"))
            dropped = old / "pairs" / f"retmask.{split}.dropped.jsonl"
            recs += list(read_jsonl(dropped)) if dropped.exists() else []
            n = json.loads((old / "stages" / "responses" / f"normal.{split}.json").read_text())["result"]["n"]
            if len(recs) != n or len({r["prompt_index"] for r in recs}) != n:
                raise SystemExit(
                    f"the old {split} pairs hold {len(recs)} records for {n} prompts: cannot rebuild"
                )
            for side, key in (("normal", "chosen"), ("masked_retmask", "rejected")):
                lines = []
                for r in sorted(recs, key=lambda r: r["prompt_index"]):
                    text = r[key][0]["content"] if isinstance(r[key], list) else r[key]
                    rec = {"prompt_index": r["prompt_index"], "text": text, "tokens": r[f"{key}_tokens"]}
                    rec |= {"finished": r[f"{key}_finished"], "sample_seed": r["sample_seed"]}
                    lines.append(json.dumps(rec) + "\n")
                atomic_write_text(dst / "responses" / f"{side}.{split}.jsonl", "".join(lines))
                done.append(f"responses/{side}.{split}.jsonl")
    return done


# -- what each head set removes ----------------------------------------------------------------------------------
def head_sets(rm, arm: str = "smollm2", threshold: float = 0.1) -> dict[str, list[tuple[int, int]]]:
    """The retrieval heads, the draws d0-d4 (layer-matched, as the study draws its control for ``arm``), the
    outside-layers draw and the top 4 / 34."""
    from retmask_interp.heads.formats import load_any_head_list
    from retmask_interp.interventions.controls import attention_groups, random_heads

    a = ARMS[arm]
    groups = attention_groups(rm) if a.random_layers == "matched_or_window" else None
    hs = load_any_head_list(str(REPO / a.heads))
    retrieval = sorted(hs.select(threshold=threshold))
    n = len(retrieval)
    layers = {a for a, _ in retrieval}
    outside = [x for x in range(rm.geometry.num_layers) if x not in layers]
    ranked = [h for h, _ in sorted(hs.scores.items(), key=lambda kv: -kv[1])]
    sets = {"none": [], "retrieval": retrieval}
    for k in range(5):
        sets[f"d{k}"] = random_heads(rm, n, exclude=retrieval, seed=k, like=retrieval, groups=groups)
    sets["out"] = random_heads(rm, n, exclude=retrieval, seed=0, layers=outside)
    sets["top4"], sets["top34"] = sorted(ranked[:4]), sorted(ranked[:34])
    return {k: [(int(x), int(y)) for x, y in v] for k, v in sets.items()}


HARM_LENGTHS = (2048, 4096, 7000)


def run_harm(
    root: Path, *, arm: str = "smollm2", model: str | None = None, device: str = "cuda", batch: int = 64,
    n: int = 100, lengths: tuple[int, ...] = HARM_LENGTHS, sets: tuple[str, ...] | None = None,
) -> dict:  # fmt: skip
    """Per head set of ``arm`` (``sets``: default the arm's ``harm_sets``; ``none`` masks nothing), a stage
    ``harm/<set>``: the untrained model's niah (eval seed 0, ``n`` examples a length) with the set zeroed;
    predictions and scores in ``harm/<set>.jsonl`` (Gemma-3: under ``gemma3/``)."""
    from retmask_interp.core.models import load_model
    from retmask_interp.core.stages import Stages
    from retmask_interp.heads.formats import load_any_head_list
    from retmask_interp.retmask.evaluation import evaluate

    a = ARMS[arm]
    model = model or a.model
    names = a.harm_sets if sets is None else sets
    st = Stages(root / a.subdir / "harm_run")
    rm = load_model(model, device=device, dtype="auto")
    all_sets = head_sets(rm, arm)
    unknown = [x for x in names if x not in all_sets]
    if unknown:
        raise ValueError(f"unknown head set(s) {unknown}; choose from {sorted(all_sets)}")
    hs = load_any_head_list(str(REPO / a.heads))
    out = {}
    for name in names:
        heads = all_sets[name]
        settings = {"model": model, "heads": heads, "lengths": list(lengths), "n": n, "eval_seed": 0}

        def work(ctx, heads=heads, name=name) -> dict:
            df = evaluate(rm, tasks=("niah",), lengths=lengths, n_per_cell=n, seed=0, batch_size=batch,
                          ppl_length=None, heads=heads, progress=False)  # fmt: skip
            recs = [{"task": r.task, "length": int(r.length), "example": int(r.index), "score": float(r.score),
                     "prediction": r.prediction} for r in df.itertuples()]  # fmt: skip
            atomic_write_text(ctx.path("harm", f"{name}.jsonl"), "".join(json.dumps(r) + "\n" for r in recs))
            return {
                "mean": float(df["score"].mean()),
                "retrieval_score_sum": sum(hs.scores.get(h, 0.0) for h in heads),
            }

        out[name] = st.run(f"harm/{name}", settings, work, outputs=[f"harm/{name}.jsonl"])
    return out


# -- commands ----------------------------------------------------------------------------------------------------
def run_unit(unit: Unit, root: Path, args) -> None:
    if unit.seed == 0 and unit.arm == "smollm2":
        prepare_s0(root)
    shared = share(unit, root)
    if shared:
        log.info("%s: shared from s%d: %s", unit.name, unit.seed, ", ".join(shared))
    config = unit_config(unit, root, model=args.model, device=args.device, batch=args.batch)
    t0 = time.time()
    run_study(config, until="eval")
    atomic_write_json(root / "timings" / f"{unit.name.replace(':', '_')}.json", {"unit": unit.name,
                      "wall_s": time.time() - t0, "host": __import__("socket").gethostname()})  # fmt: skip


def lanes(args) -> int:
    """Each ``;``-separated lane is a comma-separated list of units (or ``harm``) run one after another in its own
    process; a unit starts only when the call has the time it needs (``--need`` seconds)."""
    root = Path(args.root)
    for item in (x.strip() for lane in args.lanes.split(";") for x in lane.split(",") if x.strip()):
        if item not in ("harm", "gemma3:harm"):
            Unit.parse(item)  # a misspelt unit stops the call now, not when its lane reaches it
    (root / "logs").mkdir(parents=True, exist_ok=True)
    prepare_s0(root)  # once, before the lanes (two lanes preparing it at once would race)
    t0 = time.time()
    procs = []
    for i, lane in enumerate(x for x in args.lanes.split(";") if x.strip()):
        cmd = [sys.executable, __file__, "lane", "--root", str(root), "--units", lane, "--deadline",
               str(t0 + args.seconds), "--need", str(args.need), "--device", args.device,
               "--batch", str(args.batch)] + (["--model", args.model] if args.model else [])  # fmt: skip
        log_file = open(root / "logs" / f"lane{i}.log", "a")  # noqa: SIM115 - the child's log
        procs.append(subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT))

    def stop(signum, frame) -> None:  # timeout(1) stops the lanes with the call: stop the units with them
        for p in procs:
            p.terminate()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    for p in procs:
        p.wait()
    return max((p.returncode for p in procs), default=0)


def lane(args) -> int:
    root = Path(args.root)
    for item in args.units.split(","):
        item = item.strip()
        left = args.deadline - time.time()
        harm = item in ("harm", "gemma3:harm")
        need = 150.0 if harm else args.need
        if left < need:
            log.info("%s: not started, %.0f s left < %.0f s", item, left, need)
            continue
        t = time.time()
        log.info("%s: start (%.0f s left)", item, left)
        if harm:
            arm = "gemma3" if item.startswith("gemma3:") else "smollm2"
            run_harm(root, arm=arm, model=args.model, device=args.device, batch=args.batch)
        else:
            run_unit(Unit.parse(item), root, args)
        log.info("%s: done in %.0f s", item, time.time() - t)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("unit", "lanes", "lane", "prepare", "harm"):
        q = sub.add_parser(name)
        q.add_argument("--root", default="/root/replication")
        q.add_argument("--model", default=None, help="replaces every unit's model (default: each arm's GGUF)")
        q.add_argument("--device", default="cuda")
        q.add_argument(
            "--batch", type=int, default=64, help="evaluation batch (two processes fit an H100 at 64)"
        )
        if name == "unit":
            q.add_argument("unit")
        if name == "harm":
            q.add_argument("--arm", default="smollm2", choices=tuple(ARMS))
            q.add_argument("--n", type=int, default=100, help="examples a length")
            q.add_argument("--lengths", default=",".join(map(str, HARM_LENGTHS)), help="'2048,4096,7000'")
            q.add_argument("--sets", default=None, help="'none,retrieval,d0' (default: the arm's harm sets)")
        if name == "lanes":
            q.add_argument("--lanes", required=True, help="'harm,random:d1:s0;self:s0,random:d2:s0'")
            q.add_argument("--seconds", type=float, required=True)
            q.add_argument("--need", type=float, default=330.0, help="seconds a unit needs beside another")
        if name == "lane":
            q.add_argument("--units", required=True)
            q.add_argument("--deadline", type=float, required=True)
            q.add_argument("--need", type=float, default=330.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    root = Path(args.root)
    if args.cmd == "prepare":
        log.info("prepared: %s", prepare_s0(root))
    elif args.cmd == "unit":
        run_unit(Unit.parse(args.unit), root, args)
    elif args.cmd == "harm":
        lengths = tuple(int(x) for x in args.lengths.split(","))
        sets = tuple(x.strip() for x in args.sets.split(",")) if args.sets else None
        log.info("%s", json.dumps(run_harm(root, arm=args.arm, model=args.model, device=args.device,
                                           batch=args.batch, n=args.n, lengths=lengths, sets=sets)))  # fmt: skip
    elif args.cmd == "lanes":
        return lanes(args)
    elif args.cmd == "lane":
        return lane(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
