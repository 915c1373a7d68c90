"""Retrieval-head detection: Wu et al.'s copy-paste retrieval score, through nnsight.

For every decode step t the model emits ``w_t`` (greedy). For each query head take the key position
``j* = argmax_j q_t . k_j`` (top-1 attention; the softmax, the scale and Gemma's soft-capping are monotone, so this is
the attention's argmax). It is a *hit* when ``j*`` lies in the answer span ``[s, e)`` and ``token[j*] == w_t``; a hit
adds ``1 / (e - s)``. The first scored step is the one whose query is the last prompt token (it emits the first new
token); the step that emits EOS is scored too, then the sample stops. A sample counts if ROUGE-1 recall of the
answer against the generated text is above the threshold (0 disables the filter); a head's retrieval score is its
mean over counted samples.

How it is computed: the prompt is prefilled with the model's own attention kernel (sdpa/flash; only the last
position's logits are formed), then one nnsight trace per decode step reads, at each layer's attention call, the
post-RoPE query of the current position and the keys of the whole cache. The top-1 key of every head of every layer
is one grouped matmul + argmax per layer (query heads grouped over their KV head; keys are never repeated), hits are
accumulated on the device, and the only host sync per step is the "all sequences finished?" check.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from retmask_interp.core.decode import cap_new_tokens, decode_steps, left_pad
from retmask_interp.core.io import InputError, append_jsonl, read_jsonl, refuse_overwrite, settings_diff
from retmask_interp.core.locks import run_lock
from retmask_interp.core.models import as_model
from retmask_interp.core.notation import MASK_MODES
from retmask_interp.core.options import option
from retmask_interp.core.ranges import POSITIVE_INT, UNIT_INTERVAL, check_fields
from retmask_interp.core.static_decode import BACKENDS, decode_static, resolve_backend, traced_forward
from retmask_interp.heads.scores import HeadScores, head_key, parse_head_key
from retmask_interp.measure.stats import ROUGE_SCORERS, niah_success

__all__ = [
    "DetectConfig",
    "SampleResult",
    "copy_paste_scores",
    "copy_paste_scores_batch",
    "detect_heads",
    "shard_order",
]

log = logging.getLogger(__name__)

Head = tuple[int, int]


def copy_paste_scores_batch(
    model,
    prompts: Sequence[torch.Tensor | Sequence[int]],
    needle_spans: Sequence[tuple[int, int]],
    max_new_tokens: int = 50,
    *,
    eos_token_ids: Iterable[int] | None = None,
    mask_heads: Iterable[Head] | None = None,
    mask_mode: str = "zero",
    mean_values: torch.Tensor | None = None,
    backend: str = "auto",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Greedy-decode a batch of prompts (left-padded) and score every head on each; see ``copy_paste_scores``.

    Returns one ``(generated_ids, scores[num_layers, num_heads])`` pair per prompt, on the CPU.
    ``mask_heads`` masks those heads (``interventions.masking`` modes) while decoding, for ablation studies.
    ``backend``: ``"eager"`` (one nnsight trace per step, a growing cache), ``"static"`` (a static cache; on a GPU
    the step, readout and hit counting included, replays as a CUDA graph) or ``"auto"`` (static on a GPU when the
    model allows it, see ``core.static_decode``); all give the same tokens and scores.
    """
    from retmask_interp.interventions.masking import MaskPlan

    rm = as_model(model)
    if len(prompts) != len(needle_spans):
        raise ValueError(f"{len(prompts)} prompts but {len(needle_spans)} needle spans")
    if not prompts:
        return []
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    device = rm.device
    max_new_tokens = cap_new_tokens(max_new_tokens, [len(p) for p in prompts], rm.max_context)
    batch = left_pad(prompts, max_new_tokens, device)
    for (start, end), p in zip(needle_spans, batch.pad):
        if not (0 <= start < end <= batch.width - p):
            raise ValueError(
                f"needle span ({start}, {end}) does not lie inside a prompt of {batch.width - p} tokens"
            )
    span = torch.tensor([[s + p, e + p] for (s, e), p in zip(needle_spans, batch.pad)], device=device)
    inv_len = 1.0 / (span[:, 1] - span[:, 0]).float()
    eos_ids = sorted(set(eos_token_ids if eos_token_ids is not None else rm.eos_token_ids()))
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    plan = MaskPlan.build(rm, mask_heads or (), mask_mode, mean_values)
    b, g = len(prompts), rm.geometry
    scores = torch.zeros(b, g.num_layers, g.num_heads, device=device)
    n_generated = torch.zeros(b, dtype=torch.long, device=device)
    total = batch.ids.shape[1]

    def greedy(logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def on_step(token: torch.Tensor, tops: torch.Tensor, active: torch.Tensor) -> None:  # device work only
        tops = tops.permute(1, 0, 2)  # [b, layers, heads]
        in_span = (tops >= span[:, 0, None, None]) & (tops < span[:, 1, None, None])
        held = batch.ids.gather(1, tops.reshape(b, -1).clamp(0, total - 1)).reshape_as(tops)
        hit = in_span & (held == token[:, None, None]) & active[:, None, None]
        scores.add_(hit.float() * inv_len[:, None, None])
        n_generated.add_(active.long())

    static, graphs = resolve_backend(backend, rm, total)
    if static:  # static cache, the step (readout and hits included) captured as a CUDA graph on a GPU
        forward = traced_forward(rm, plan, readout=True)
        decode_static(
            rm, batch, max_new_tokens, greedy, eos=eos, forward=forward, on_step=on_step, graphs=graphs
        )
    else:
        for _, token, tops, active in decode_steps(
            rm, batch, max_new_tokens, greedy, eos=eos, mask_plan=plan, readout=True
        ):
            assert tops is not None  # readout=True yields them
            on_step(token, tops, active)
    out = []
    for i in range(b):
        gen = batch.ids[i, batch.width : batch.width + int(n_generated[i])].cpu()
        out.append((gen, scores[i].cpu()))
    return out


def copy_paste_scores(
    model,
    input_ids: torch.Tensor | Sequence[int],
    needle_span: tuple[int, int],
    max_new_tokens: int = 50,
    *,
    eos_token_ids: Iterable[int] | None = None,
    mask_heads: Iterable[Head] | None = None,
    mask_mode: str = "zero",
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wu et al.'s copy-paste retrieval hits of one sample.

    ``model``: a Hugging Face causal LM or ``RetModel``; ``input_ids``: 1-D prompt tokens; ``needle_span``:
    ``(start, end)`` token indices of the answer in the prompt (end exclusive). Greedy-decodes up to
    ``max_new_tokens`` (stopping after an EOS token, which is scored) and returns ``(generated_token_ids, scores)``
    with ``scores`` a ``[num_layers, num_query_heads]`` tensor of summed hits, each hit adding ``1 / (end - start)``.
    """
    ids = torch.as_tensor(input_ids)
    if ids.dim() != 1:
        raise ValueError(f"input_ids must be 1-D (one sample), got shape {tuple(ids.shape)}")
    return copy_paste_scores_batch(
        model,
        [ids],
        [needle_span],
        max_new_tokens,
        eos_token_ids=eos_token_ids,
        mask_heads=mask_heads,
        mask_mode=mask_mode,
        backend=backend,
    )[0]


# --------------------------------------------------------------------------------------------- over a grid
@dataclass
class DetectConfig:
    """Settings of a detection run (those that change the numbers are recorded in the head file)."""

    max_new_tokens: int = option(50, "longest answer decoded per sample", range=POSITIVE_INT)
    # a sample counts if ROUGE-1 recall > threshold (so 1 or more counts nothing); 0 disables the filter
    rouge_threshold: float = option(
        0.5,
        "count a sample if ROUGE-1 recall of the answer > this (0 disables the filter)",
        range=UNIT_INTERVAL,
    )
    batch_size: int = option(1, "samples decoded together (similar lengths)", range=POSITIVE_INT)
    mask_heads: list[Head] = field(default_factory=list)
    mask_mode: str = option("zero", "how mask_heads are masked", choices=MASK_MODES, cli=False)
    stop: str = option(
        "newline",
        "newline: decoding stops at the first generated line break or EOS (Wu et al.); eos: at EOS only",
        choices=("newline", "eos"),
    )
    rouge: str = option(
        "wu", "the success filter's ROUGE-1: wu (rouge-score, Porter stemmer) or simple (no stemming)",
        choices=ROUGE_SCORERS,
    )  # fmt: skip
    backend: str = option(
        "auto", "decode loop: eager, static (static cache, CUDA graphs on a GPU) or auto; the same numbers",
        choices=BACKENDS,
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)

    def settings(self) -> dict[str, Any]:
        """The settings that change a sample's result (recorded with every sample, compared on resume)."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "stop": self.stop,
            "rouge": self.rouge,
            "mask_heads": sorted(map(list, self.mask_heads)),
            "mask_mode": self.mask_mode if self.mask_heads else None,
            "rouge_threshold": self.rouge_threshold,  # decides which samples count
        }

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:12]


def model_identity(model) -> dict[str, Any]:
    """Name, revision, dtype and a hash of the config and of a few weights of a model: enough to tell apart two
    models (or two checkpoints of one) whose samples must not be mixed on resume. Cheap: reads ~2k weights."""
    rm = as_model(model)
    config: Any = rm.model.config
    cfg = config.to_dict()
    drop = {"transformers_version", "dtype", "torch_dtype", "architectures"}
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in drop}
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    params = list(rm.model.parameters())
    dtype = str(params[0].dtype).removeprefix("torch.") if params else None
    for t in (params[0], params[-1]) if params else ():
        h.update(t.detach().reshape(-1)[:1024].float().cpu().numpy().tobytes())
    return {"model": rm.name, "revision": rm.revision, "dtype": dtype, "model_hash": h.hexdigest()[:16]}


@dataclass
class SampleResult:
    """One scored sample, as written to the samples JSONL (``--save-samples``)."""

    sample_id: str
    input_ids: list[int]
    answer_span: tuple[int, int]
    generated_ids: list[int]
    generated_text: str
    rouge: float | None  # None: scored without a tokenizer, nothing decoded (see score_samples)
    counted: bool
    scores: dict[str, float]  # non-zero heads only, "layer-head" -> summed hits / span length
    meta: dict[str, Any] = field(default_factory=dict)
    config: str = ""  # hash of ``settings``
    settings: dict[str, Any] | None = (
        None  # what the sample was made with (DetectConfig.settings + model, inputs)
    )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["answer_span"] = list(self.answer_span)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "samples file") -> SampleResult:
        required = ("sample_id", "input_ids", "answer_span", "generated_ids", "scores", "counted")
        missing = [k for k in required if k not in d] if isinstance(d, dict) else list(required)
        if missing:
            raise InputError(
                f"{source} holds a record without {missing}: it is not a samples file of `retmask detect`; "
                "give another --save-samples path"
            )
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in known}
        try:
            d["answer_span"] = tuple(d["answer_span"])
            return cls(**d)
        except TypeError as err:
            raise InputError(
                f"{source}: a record is malformed ({err}); it is not a samples file of ours"
            ) from None

    def score_matrix(self, num_layers: int, num_heads: int) -> torch.Tensor:
        m = torch.zeros(num_layers, num_heads)
        for k, v in self.scores.items():
            layer, head = parse_head_key(k)
            m[layer, head] = v
        return m


def _sample_meta(sample) -> dict[str, Any]:
    meta = {}
    for attr in ("context_length", "depth", "needle_index", "num_tokens", "needle_position", "style"):
        if hasattr(sample, attr):
            meta[attr] = getattr(sample, attr)
    return meta


def _free_device_bytes(device: torch.device) -> int:
    return int(torch.cuda.mem_get_info(device)[0])


def prefill_batch_limit(model, length: int, *, budget: float = 0.5) -> int:
    """The largest batch whose prefill fits when attention scores are materialised.

    On a GPU in float32 PyTorch's sdpa has no flash kernel and, with the explicit masks of sliding-window models,
    falls back to the math kernel, which materialises ``batch x heads x length^2`` scores for a layer (Gemma-3-270M,
    fp32, 32K, batch 10 asked for one 152 GiB allocation). The batch is capped so that this fits ``budget`` of the
    free device memory; a single prompt that cannot fit is refused with the fix. Elsewhere (CPU, 16-bit) no cap."""
    rm = as_model(model)
    if rm.device.type != "cuda" or next(rm.model.parameters()).dtype != torch.float32:
        return 1 << 30
    per_sample = rm.geometry.num_heads * length * length * 4
    allowed = int(budget * _free_device_bytes(rm.device))
    if per_sample > allowed:
        raise ValueError(
            f"a {length}-token prompt would materialise {rm.geometry.num_heads} x {length}^2 float32 attention "
            f"scores ({per_sample / 2**30:.1f} GiB) in one prefill layer, more than half of the free GPU memory "
            f"({allowed / 2**30:.1f} GiB): run in bfloat16 (--dtype bfloat16) or use shorter lengths"
        )
    limit = max(1, allowed // per_sample)
    return int(limit)


def _fitting_batches(score, batches: list[list[Any]]):
    """``(items, score(items))`` for every batch, halving a batch whose computation runs out of GPU memory (another
    process may take memory after the batch sizes were planned; 2026-12-03, Gemma-3 fp32 beside two other runs) and
    keeping the smaller size for the batches after it. A single sample that does not fit is refused with the fix."""
    cap = max((len(b) for b in batches), default=1)
    queue = [list(b) for b in batches]
    while queue:
        items = queue.pop(0)
        if len(items) > cap:
            queue[:0] = [items[j : j + cap] for j in range(0, len(items), cap)]
            continue
        try:
            results = score(items)
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(items) == 1:
                raise RuntimeError(
                    f"one {len(items[0].input_ids)}-token sample does not fit in the free GPU memory: free the GPU "
                    "(other processes on it), run in bfloat16 (--dtype bfloat16), or use shorter lengths"
                ) from None
            cap = len(items) // 2
            log.warning("out of GPU memory with a batch of %d: going on with batches of %d", len(items), cap)
            queue.insert(0, items)
            continue
        yield items, results


def score_samples(
    model,
    samples: Sequence[Any],
    config: DetectConfig | None = None,
    *,
    progress: bool = True,
    settings: dict[str, Any] | None = None,
) -> Iterable[SampleResult]:
    """Score NIAH samples (objects with ``sample_id``, ``input_ids``, ``answer_span``, ``needle``), yielding results
    in batches of similar length (order of completion, not input order).

    A model without a tokenizer (random token ids, benchmarks) is scored only with the success filter off and EOS as
    the only stop (``DetectConfig(rouge_threshold=0, stop="eos")``): then every sample counts, nothing is decoded
    (``generated_text`` is empty, ``rouge`` None) and ``needle`` is not read. Anything else needs the tokenizer."""
    from tqdm.auto import tqdm

    config = config or DetectConfig()
    rm = as_model(model)
    settings = settings if settings is not None else config.settings()
    fingerprint = settings_hash(settings)
    tok = rm.tokenizer
    if tok is None and (config.rouge_threshold > 0 or config.stop != "eos"):
        raise ValueError(
            "detection over NIAH samples needs the model's tokenizer: to decode answers for the ROUGE success "
            "filter and to know the newline tokens that end an answer (stop='newline'). Without one only "
            "DetectConfig(rouge_threshold=0, stop='eos') runs: every sample counts, no answer is decoded"
        )
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(samples):  # equal lengths batch without padding (the fast causal kernel)
        by_length.setdefault(len(s.input_ids), []).append(i)
    batches = []
    for length, group in sorted(by_length.items()):
        size = min(config.batch_size, prefill_batch_limit(rm, length))
        batches += [group[j : j + size] for j in range(0, len(group), size)]
    bar = tqdm(total=len(samples), desc="detect", unit="sample", disable=not progress)

    def score(items):
        return copy_paste_scores_batch(
            rm,
            [s.input_ids for s in items],
            [tuple(s.answer_span) for s in items],
            config.max_new_tokens,
            mask_heads=config.mask_heads or None,
            mask_mode=config.mask_mode,
            eos_token_ids=rm.stop_token_ids(config.stop),
            backend=config.backend,
        )

    for items, results in _fitting_batches(score, [[samples[i] for i in b] for b in batches]):
        for s, (gen, sc) in zip(items, results):
            if tok is None:  # the filter is off (checked above): every sample counts, nothing to decode
                text, counted, rouge = "", True, None
            else:
                text = tok.decode(gen.tolist(), skip_special_tokens=True).strip()
                counted, rouge = niah_success(
                    s.needle["real_needle"], text, config.rouge_threshold, config.rouge
                )
            nz = sc.nonzero().tolist()
            yield SampleResult(
                sample_id=s.sample_id,
                input_ids=list(map(int, s.input_ids)),
                answer_span=tuple(s.answer_span),
                generated_ids=gen.tolist(),
                generated_text=text,
                rouge=rouge,
                counted=counted,
                scores={head_key(layer, h): float(sc[layer, h]) for layer, h in nz},
                meta=_sample_meta(s),
                config=fingerprint,
                settings=settings,
            )
        bar.update(len(items))
    bar.close()


def aggregate(results: Sequence[SampleResult], num_layers: int, num_heads: int, **provenance) -> HeadScores:
    """Mean score of every head over the counted samples (per-sample lists kept, in the given order)."""
    counted = [r for r in results if r.counted]
    per_sample: dict[Head, list[float]] = {
        (layer, h): [] for layer in range(num_layers) for h in range(num_heads)
    }
    for r in counted:
        m = r.score_matrix(num_layers, num_heads)
        for (layer, h), values in per_sample.items():
            values.append(float(m[layer, h]))
    if not counted:
        log.warning(
            "no sample passed the success filter (%d samples): every score is 0. Check the prompt style, "
            "raise max_new_tokens, or lower --rouge-threshold (0 disables the filter).",
            len(results),
        )
    hs = HeadScores.from_per_sample(per_sample, num_layers, num_heads, **provenance)
    hs.num_samples = len(results)
    hs.num_counted = len(counted)
    return hs


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _read_done(
    path: str | Path,
    config: DetectConfig,
    settings: dict[str, Any] | None = None,
    samples: Sequence[Any] = (),
) -> dict[str, SampleResult]:
    """Samples already scored in ``path``; refuses (naming the setting) a file made with other settings, a
    model other than this one, or prompts that differ from this run's samples of the same id."""
    settings = settings if settings is not None else config.settings()
    path = Path(path)
    if path.is_dir():
        raise InputError(f"samples file {path} is a directory; give a file path (--save-samples)")
    prompts = {s.sample_id: s.input_ids for s in samples}
    done: dict[str, SampleResult] = {}
    fix = "pass --overwrite (API: delete the file) to start over, or give another --save-samples file"
    for rec in read_jsonl(path, torn_tail=True):
        r = SampleResult.from_dict(rec, source=str(path))
        if r.settings is not None:
            if r.settings != settings:
                raise InputError(
                    f"{path} holds samples made with other settings ({settings_diff(r.settings, settings)}); "
                    f"they cannot be mixed with this run: {fix}"
                )
        elif r.config != config.fingerprint():  # a file from before settings were recorded
            raise InputError(
                f"{path} holds samples scored with other settings (max_new_tokens / rouge_threshold / masked "
                f"heads); {fix}"
            )
        if r.sample_id in prompts and list(prompts[r.sample_id]) != list(r.input_ids):
            raise InputError(
                f"{path}: sample {r.sample_id!r} was scored on a different prompt (the haystack text, needles, "
                f"prompt style or tokenizer changed); {fix}"
            )
        done[r.sample_id] = r
    return done


def check_samples_file(path: str | Path) -> None:
    """Refuse a ``--save-samples`` path that is a directory or an existing file that is not ours (before a run
    appends to it or ``--overwrite`` deletes it)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"samples file {path} is a directory; give a file path (--save-samples)")
    if not path.exists() or not path.stat().st_size:
        return
    for rec in read_jsonl(path, torn_tail=True):
        SampleResult.from_dict(rec, source=str(path))
        return
    raise InputError(
        f"{path} exists but holds no samples of `retmask detect` (not our JSONL records); refusing to append to "
        "or delete it: give another --save-samples path"
    )


def shard_path(samples_path: str | Path, rank: int, world_size: int) -> Path:
    """The per-rank samples file of a sharded run: ``NAME.rank{r}-of-{n}.jsonl`` beside ``samples_path``."""
    p = Path(samples_path)
    return p.with_name(f"{p.stem}.rank{rank}-of-{world_size}{p.suffix or '.jsonl'}")


S = TypeVar("S")


def shard_order(samples: Sequence[S], world_size: int) -> list[S]:
    """The order of a sharded detection: rank ``r`` of ``world_size`` scores ``shard_order(samples, w)[r::w]``.

    Detection batches a rank's samples by prompt length, so the samples are grouped by length and whole lengths
    are dealt to the ranks in a snake (ranks 0..w-1, then w-1..0, ...; shortest length first): every rank scores
    the batches a one-process run scores, and on a grid of evenly spaced lengths the ranks' token counts match
    (equal when the number of lengths is a multiple of ``2 * w``). Each sample appears once. When the lengths
    cannot be dealt evenly (their number not a multiple of ``w``, or lengths with unequal sample counts) the
    order is unchanged: the ranks then share every length round-robin.
    """
    groups: dict[int, list[S]] = {}
    for s in samples:
        groups.setdefault(len(s.input_ids), []).append(s)  # type: ignore[attr-defined]
    sizes = {len(v) for v in groups.values()}
    if world_size <= 1 or len(groups) % world_size or len(sizes) != 1:
        return list(samples)
    ranks: list[list[S]] = [[] for _ in range(world_size)]
    for i, (_, group) in enumerate(sorted(groups.items(), key=lambda kv: kv[0])):
        block, pos = divmod(i, world_size)
        ranks[pos if block % 2 == 0 else world_size - 1 - pos].extend(group)
    return [ranks[r][k] for k in range(len(ranks[0])) for r in range(world_size)]


def detect_heads(
    model,
    samples: Sequence[Any],
    config: DetectConfig | None = None,
    *,
    samples_path: str | Path | None = None,
    progress: bool = True,
    params: dict[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    barrier=None,
    inputs: dict[str, Any] | None = None,
) -> HeadScores:
    """Retrieval scores of every head over NIAH ``samples`` (``data.niah.niah_grid``), as ``HeadScores``.

    A head's score is its mean over the samples the model answered (``DetectConfig.rouge_threshold``); when it
    answered none, every score would be 0, and an ``InputError`` says so, with the model's first answers and what
    to change, instead of returning a list that means nothing.

    With ``samples_path`` every finished sample is appended to that JSONL file as soon as it is scored, and a
    re-run with the same file resumes: samples already there are not scored (or written) again. Every sample
    records the settings that change its result (``DetectConfig.settings``, ``model_identity`` of the model, and
    ``inputs``, e.g. the haystack's content hash); a file made with other settings, another model, or a
    different prompt for the same sample id is refused, naming what changed, rather than mixed.

    ``shard=(rank, world_size)`` scores only ``shard_order(samples, world_size)[rank::world_size]`` (whole prompt
    lengths per rank, balanced token load), into ``shard_path(samples_path, rank, world_size)``; after ``barrier()`` (e.g. ``torch.distributed.barrier``) every rank merges every rank's file into
    one head list and returns it (the CLI writes it from rank 0). Each shard resumes on its own.
    """
    config = config or DetectConfig()
    rm = as_model(model)
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise ValueError(
            "samples have duplicate sample_id values; each (needle, length, depth) must be unique"
        )
    rank, world = shard or (0, 1)
    if world > 1:
        if samples_path is None:
            raise ValueError("a sharded run needs samples_path: ranks exchange results through their files")
        mine = shard_order(samples, world)[rank::world]
        path: str | Path | None = shard_path(samples_path, rank, world)
    else:
        mine, path = list(samples), samples_path
    settings = {**config.settings(), **model_identity(rm), **(inputs or {})}
    with run_lock(path, what="detection samples file"):  # one writer per samples file (core.locks)
        if path is not None:
            check_samples_file(path)
        done = _read_done(path, config, settings, mine) if path is not None else {}
        if done:
            log.info("resuming: %d of %d samples already scored in %s", len(done), len(mine), path)
        todo = [s for s in mine if s.sample_id not in done]
        for result in score_samples(rm, todo, config, progress=progress, settings=settings):
            done[result.sample_id] = result
            if path is not None:
                append_jsonl(path, [result.to_dict()])
    if world > 1:
        if barrier is not None:
            barrier()
        assert samples_path is not None  # checked at the top for world > 1
        done = {}
        for r in range(world):
            done.update(_read_done(shard_path(samples_path, r, world), config, settings, samples))
        missing = [i for i in ids if i not in done]
        if missing:
            raise RuntimeError(
                f"{len(missing)} samples are missing from the shard files (first: {missing[0]})"
            )
    results = [done[i] for i in ids]
    if not results:
        raise InputError(
            "no NIAH samples to score: the grid is empty (give lengths above the needles' minimum)"
        )
    if not any(r.counted for r in results):
        raise_no_counted(results, config)
    g = rm.geometry
    run_params = {
        "max_new_tokens": config.max_new_tokens,
        "rouge_threshold": config.rouge_threshold,
        "masked_heads": [list(h) for h in config.mask_heads],
        "mask_mode": config.mask_mode if config.mask_heads else None,
        **(params or {}),
    }
    if world > 1:
        run_params["shards"] = world
    return aggregate(
        results,
        g.num_layers,
        g.num_heads,
        model=rm.name,
        revision=rm.revision,
        geometry=g.as_dict(),
        method="wu2024-copy-paste",
        params=run_params,
    )


def raise_no_counted(results: Sequence[SampleResult], config: DetectConfig) -> None:
    """The error for a run in which no sample counted: what the model answered, and what to change."""
    answers = [repr(r.generated_text[:60]) for r in results[:3]]
    raise InputError(
        f"no NIAH sample counted: the model answered none of the {len(results)} samples (ROUGE-1 recall of the "
        f"needle's answer > {config.rouge_threshold}), so every head's retrieval score would be 0. Its first "
        f"answers: {', '.join(answers)}. Change: a prompt style the model follows (style='qa' or 'continuation' "
        "for a base model, 'chat' for an instruct model), shorter lengths within what it can read, more "
        "max_new_tokens, or rouge_threshold=0 to count every sample"
    )


def load_sample_results(path: str | Path) -> list[SampleResult]:
    """Read a samples JSONL written by ``detect_heads`` / ``retmask detect --save-samples``."""
    return [SampleResult.from_dict(r, source=str(path)) for r in read_jsonl(path, torn_tail=True)]


def write_head_file(hs: HeadScores, path: str | Path, *, overwrite: bool = False) -> Path:
    refuse_overwrite(path, overwrite, "head list")
    return hs.save(path, overwrite=overwrite)
