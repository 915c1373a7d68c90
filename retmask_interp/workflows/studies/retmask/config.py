"""The RetMask study's settings: ``StudyConfig``, its presets, and the tables of conditions and response sides.

A *side* is one response per prompt, sampled from the model as it is or with a head set masked; a *condition* is a
DPO pair type, (chosen side, rejected side). New conditions are new rows of ``SIDES`` and ``CONDITION_SIDES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retmask_interp.core.options import option
from retmask_interp.core.ranges import POSITIVE, SEED, TOP_P, check_fields

__all__ = ["CONDITION_SIDES", "LONG_TASKS", "PRESETS", "SIDES", "STAGES", "Side", "StudyConfig"]

LONG_TASKS = ("niah", "multi_needle", "json_kv", "rag_qa", "rerank", "cite")
STAGES = ("prompts", "heads", "responses", "pairs", "train", "eval", "report")


@dataclass(frozen=True)
class Side:
    """How one side's responses are sampled: ``heads`` names the head set masked (a key of the ``heads`` stage's
    result; ``None``: the model as it is); ``alt_seed``: with ``pair_seed + self_seed_offset``, not ``pair_seed``."""

    heads: str | None = None
    alt_seed: bool = False


SIDES: dict[str, Side] = {
    "normal": Side(),
    "masked_retmask": Side(heads="retmask"),
    "masked_random": Side(heads="random"),
    "normal_alt": Side(alt_seed=True),
}
CONDITION_SIDES: dict[str, tuple[str, str]] = {
    "retmask": ("normal", "masked_retmask"),
    "random": ("normal", "masked_random"),
    "self": ("normal", "normal_alt"),
}


@dataclass
class StudyConfig:
    """Every setting of the RetMask study (defaults: the full-size run of issue 13)."""

    out: str = option("runs/smollm2_retmask", "working directory (resumable stages)")
    model: str = option("smollm2-135m-instruct", "registry name, .gguf path, HF directory, or 'organism'")
    heads: str | None = option(
        None, "retrieval-head list of the model (JSON); heads >= --head-threshold are masked"
    )
    head_threshold: float = option(0.1, "retrieval heads: score >= this", minimum=0.0, maximum=1.0)
    device: str = option("auto", "cpu, cuda or auto")
    eval_dtype: str = option("auto", "dtype of sampling and evaluation (DPO always trains float32 weights)")
    threads: int | None = option(None, "torch CPU threads", minimum=1)
    # prompts
    prompt_seed: int = option(0, "seed of the instruction prompt set", range=SEED)
    n_prompts: int | None = option(None, "training prompts (train split), default all", minimum=1)
    n_heldout: int | None = option(
        None, "held-out prompts (eval split) for the held-out pairs, default all", minimum=1
    )
    # pairs
    temperature: float = option(0.6, "sampling temperature of the responses", minimum=0.0)
    top_p: float = option(1.0, "nucleus sampling of the responses", range=TOP_P)
    max_new_tokens: int = option(512, "longest response (tokens)", minimum=1)
    pair_batch_size: int = option(256, "prompts per sampling batch", minimum=1)
    prompt_template: str = option(
        "{prompt}", "plain pairs (no chat template): the text a training prompt is written into, '{prompt}' where "
        "it goes; base models: 'Question: {prompt}\\nAnswer:' (in bash: $'Question: {prompt}\\nAnswer:')",
    )  # fmt: skip
    stop: tuple[str, ...] = option(
        (), "strings that end a sampled response (cut before the first); a base model under the Q/A template: "
        "$'\\nQuestion:'",
    )  # fmt: skip
    pair_seed: int = option(0, "sampling seed of both sides (common random numbers)", range=SEED)
    self_seed_offset: int = option(1, "the self-DPO side samples with pair_seed + this", range=SEED)
    random_seed: int = option(0, "seed of the random control head set", range=SEED)
    random_layers: str = option(
        "matched",
        "the random control's layers: 'matched' (as many heads in each layer as the retrieval heads), "
        "'matched_or_window' (so, and where a layer has too few heads left, the rest from the layers of its "
        "attention window: Gemma-3's layer 5 is all retrieval heads) or 'outside' (the layers that hold no "
        "retrieval head)",
        choices=("matched", "matched_or_window", "outside"),
    )
    conditions: tuple[str, ...] = option(
        ("retmask", "random", "self"), "pair conditions trained", choices=tuple(CONDITION_SIDES)
    )
    # DPO
    lrs: tuple[float, ...] = option((1e-6, 5e-6, 2e-5), "learning rates of the sweep", range=POSITIVE)
    sweep_seed: int = option(0, "DPO seed of the lr sweep", range=SEED)
    seeds: tuple[int, ...] = option((0, 1, 2), "DPO seeds at the chosen lr", range=SEED)
    beta: float = option(0.1, "DPO beta", range=POSITIVE)
    epochs: float = option(2.0, "DPO epochs", range=POSITIVE)
    effective_batch_size: int = option(64, "DPO pairs per optimizer step", minimum=1)
    per_device_batch_size: int = option(16, "DPO pairs per forward pass", minimum=1)
    max_length: int = option(1024, "prompt + response tokens in DPO", minimum=1)
    max_ppl_increase: float = option(
        0.05, "lr criterion: held-out perplexity may rise by at most this fraction", minimum=0.0
    )
    # evaluation. 8K: the suite's rag_qa / rerank / cite prompts come out ~13 % longer than asked (chat template
    # included), so 7,000 keeps every prompt plus its answer budget inside SmolLM2's 8,192 tokens (checked first)
    lengths: tuple[int, ...] = option(
        (2048, 4096, 7000), "context lengths of the long-context suite (tokens)", minimum=1
    )
    n_per_cell: int = option(100, "examples per task x length", minimum=1)
    tasks: tuple[str, ...] = option(LONG_TASKS, "long-context generation tasks", choices=LONG_TASKS)
    eval_seed: int = option(0, "seed of the evaluation examples", range=SEED)
    eval_batch_size: int = option(32, "evaluation batch size", minimum=1)
    eval_max_new_tokens: int | None = option(
        None, "cap on the suite's per-task answer budgets (tiny runs)", minimum=1
    )
    n_short_qa: int | None = option(None, "short-QA items, default all", minimum=1)
    n_ppl: int | None = option(None, "perplexity texts, default all", minimum=1)
    heldout_batch_size: int = option(16, "batch size of the held-out log-probabilities", minimum=1)
    prune_weights: bool = option(False, "delete a trained model's weights once it is evaluated")
    only: tuple[str, ...] = option(
        (),
        "final runs CONDITION:SEED this process trains and evaluates (e.g. random:1), to share one --out "
        "between processes or GPUs; run once more without it for the report",
    )
    # report
    report_dir: str | None = option(
        None, "where scores.csv, tables.json and README.md go (default <out>/report)"
    )
    bootstrap: int = option(2000, "bootstrap resamples of the confidence intervals", minimum=1)
    title: str = option("RetMask on SmolLM2-135M-Instruct", "title of the report")

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("conditions", "lrs", "seeds", "lengths", "tasks", "only", "stop"):
            setattr(self, name, tuple(getattr(self, name)))
        from retmask_interp.retmask.pairs import check_template

        check_template(self.prompt_template, self.stop)
        if "retmask" not in self.conditions:
            raise ValueError("conditions must include 'retmask' (the lr sweep trains on its pairs)")
        if not self.lrs or not self.seeds:
            raise ValueError("give at least one learning rate and one seed")
        finals = {f"{c}:{s}" for c in self.conditions for s in self.seeds}
        stray = [o for o in self.only if o not in finals]
        if stray:
            raise ValueError(
                f"only {stray} names no final run; give CONDITION:SEED from conditions {list(self.conditions)} "
                f"and seeds {list(self.seeds)}, e.g. {sorted(finals)[0]!r}"
            )

    def sides(self) -> list[str]:
        """The sides the conditions need, in ``SIDES`` order."""
        return [s for s in SIDES if any(s in CONDITION_SIDES[c] for c in self.conditions)]

    def side_seed(self, side: str) -> int:
        return self.pair_seed + (self.self_seed_offset if SIDES[side].alt_seed else 0)

    def final_runs(self) -> list[tuple[str, int]]:
        """(condition, seed) of the final runs this process trains and evaluates (``only`` applied)."""
        runs = [(c, s) for c in self.conditions for s in self.seeds]
        return [(c, s) for c, s in runs if not self.only or f"{c}:{s}" in self.only]


PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "tiny": dict(
        n_prompts=16,
        n_heldout=8,
        max_new_tokens=32,
        pair_batch_size=16,
        lrs=(5e-6,),
        seeds=(0, 1),
        effective_batch_size=8,
        per_device_batch_size=4,
        max_length=256,
        lengths=(512, 1024),
        n_per_cell=3,
        eval_batch_size=3,
        eval_max_new_tokens=24,
        n_short_qa=6,
        n_ppl=4,
        heldout_batch_size=8,
        bootstrap=200,
        prune_weights=True,
        device="cpu",
    ),
}
