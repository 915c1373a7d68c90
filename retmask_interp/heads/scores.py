"""Head lists: retrieval scores per (layer, query head), with provenance, in our JSON or Wu et al.'s.

Our format (``schema_version`` 1)::

    {"schema": "retmask-interp/head-scores", "schema_version": 1,
     "model": {"name": ..., "revision": ..., "geometry": {"num_layers": ..., "num_heads": ..., ...}},
     "method": {"name": "wu2024-copy-paste", "params": {...}},
     "samples": {"total": N, "counted": M},
     "package_version": "...", "created": "...",
     "scores": {"<layer>-<head>": mean score, ...},          # every head, 0-indexed
     "ranked": [{"layer": l, "head": h, "score": s}, ...],    # descending
     "per_sample_scores": {"<layer>-<head>": [score per counted sample, ...]}}

Wu et al.'s format (and the RetMask repo's) is ``{"<layer>-<head>": [score per counted sample, ...]}``;
the mean of each list is the head's score. ``load_head_scores`` reads either.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retmask_interp.core.io import InputError, atomic_write_json, refuse_overwrite
from retmask_interp.core.notation import Head, head_key, parse_head_key

__all__ = [
    "HeadScores",
    "load_head_scores",
    "save_head_scores",
    "shipped_head_lists",
    "head_list_path",
    "parse_head_key",
    "head_key",
    "SCHEMA",
    "SCHEMA_VERSION",
]

SCHEMA = "retmask-interp/head-scores"
SCHEMA_VERSION = 1

# A head list read from a file may name at most this many heads (layers x heads per layer): real models have
# ~16k (128 x 128); a file claiming more (e.g. the key "3000-3000") is refused instead of allocating its matrix.
MAX_HEADS = 1_000_000


def by_layer(heads: Iterable[Head]) -> dict[int, list[int]]:
    """Heads grouped by layer: ``{layer: [head, ...]}``, layers and heads sorted, duplicates removed."""
    out: dict[int, list[int]] = {}
    for layer, head in sorted({(int(layer), int(head)) for layer, head in heads}):
        out.setdefault(layer, []).append(head)
    return out


def check_geometry(num_layers: int, num_heads: int, source: str = "head file") -> tuple[int, int]:
    """Positive integer geometry of at most ``MAX_HEADS`` heads, else ``InputError`` naming ``source``."""
    try:
        nl, nh = int(num_layers), int(num_heads)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{source}: geometry {num_layers!r} x {num_heads!r} is not two integers") from None
    if nl < 1 or nh < 1:
        raise InputError(f"{source}: geometry {nl} layers x {nh} heads must be positive")
    if nl * nh > MAX_HEADS:
        raise InputError(
            f"{source}: {nl} layers x {nh} heads is more than the {MAX_HEADS:,} heads this package reads from a "
            "file; a head key or the geometry is wrong (keys are '<layer>-<head>', 0-indexed)"
        )
    return nl, nh


def _check_inside(heads: Iterable[Head], nl: int, nh: int, source: str) -> None:
    bad = sorted(h for h in heads if h[0] >= nl or h[1] >= nh)
    if bad:
        raise InputError(
            f"{source}: head {head_key(*bad[0])} is outside the geometry of {nl} layers x {nh} heads "
            f"({len(bad)} such heads); is it the head list of another model?"
        )


@dataclass(repr=False)
class HeadScores:
    """Mean retrieval score of every head of one model, with provenance.

    ``scores`` maps ``(layer, head)`` to the mean score; heads missing from a file count as 0.
    ``per_sample`` (optional) keeps each head's score on every counted sample. ``top(k)`` gives the best heads,
    ``heatmap()`` draws them, ``save(path)`` writes any supported format (``heads.formats``); in a notebook the
    object shows as a short summary (model, counted samples, top heads).
    """

    scores: dict[Head, float]
    num_layers: int
    num_heads: int
    model: str = ""
    revision: str | None = None
    geometry: dict[str, int] = field(default_factory=dict)
    method: str = "wu2024-copy-paste"
    params: dict[str, Any] = field(default_factory=dict)
    num_samples: int | None = None
    num_counted: int | None = None
    per_sample: dict[Head, list[float]] | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_matrix(cls, matrix, **kwargs) -> HeadScores:
        arr = np.asarray(matrix, dtype=float)
        if arr.ndim != 2:
            raise InputError(f"expected a [layers, heads] matrix, got shape {arr.shape}")
        scores = {(li, hi): float(arr[li, hi]) for li in range(arr.shape[0]) for hi in range(arr.shape[1])}
        return cls(scores, arr.shape[0], arr.shape[1], **kwargs)

    @classmethod
    def from_per_sample(
        cls, per_sample: Mapping[Head, list[float]], num_layers: int, num_heads: int, **kwargs
    ) -> HeadScores:
        scores = {h: (float(np.mean(v)) if len(v) else 0.0) for h, v in per_sample.items()}
        return cls(
            scores, num_layers, num_heads, per_sample={h: list(v) for h, v in per_sample.items()}, **kwargs
        )

    # -- views -------------------------------------------------------------------------------------
    def matrix(self) -> np.ndarray:
        """``[num_layers, num_heads]`` array of mean scores (0 where a head is absent)."""
        out = np.zeros((self.num_layers, self.num_heads))
        for (layer, head), s in self.scores.items():
            out[layer, head] = s
        return out

    def ranked(self) -> list[tuple[int, int, float]]:
        """All heads as ``(layer, head, score)``, highest score first (ties: lower layer, then head)."""
        m = self.matrix()
        flat = m.ravel()
        order = np.lexsort((np.arange(flat.size), -flat))  # row-major index = (layer, head) order
        nh = m.shape[1]
        return [(int(i) // nh, int(i) % nh, float(flat[i])) for i in order]

    def _check_k(self, k: int) -> None:
        n = self.num_layers * self.num_heads
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InputError(f"top-k must be an integer >= 0, got {k!r}")
        if k > n:
            raise InputError(
                f"top-k {k} is more than the {n} heads of {self.source or self.model or 'the head list'} "
                f"({self.num_layers} layers x {self.num_heads} heads); use at most {n}"
            )

    def top_k(self, k: int) -> list[Head]:
        """The ``k`` best heads; ``k`` must be in ``[0, num_layers * num_heads]`` (larger is an error, not
        clamped: asking for more heads than exist is a mistake in the command, e.g. another model's k)."""
        self._check_k(k)
        return [(layer, head) for layer, head, _ in self.ranked()[:k]]

    def top(self, k: int = 10) -> list[Head]:
        """The ``k`` best heads as ``(layer, head)`` pairs, best first (``top_k``)."""
        return self.top_k(k)

    def above(self, threshold: float) -> list[Head]:
        """Heads with mean score >= ``threshold``, ranked."""
        return [(layer, head) for layer, head, s in self.ranked() if s >= threshold]

    def per_layer(self, k: int) -> dict[int, list[Head]]:
        """The ``k`` best heads of every layer."""
        m = self.matrix()
        out = {}
        for layer in range(self.num_layers):
            order = sorted(range(self.num_heads), key=lambda h: (-m[layer, h], h))[:k]
            out[layer] = [(layer, h) for h in order]
        return out

    def select(self, *, top_k: int | None = None, threshold: float | None = None) -> list[Head]:
        """Heads by top-k, by threshold, or both (the intersection). One of them must be given."""
        if top_k is None and threshold is None:
            raise InputError("give top_k or threshold (CLI: --top-k or --threshold) to choose heads")
        if top_k is not None:
            self._check_k(top_k)
        if threshold is not None and not math.isfinite(threshold):
            raise InputError(f"threshold must be a finite number, got {threshold}")
        heads = self.ranked()
        if threshold is not None:
            heads = [h for h in heads if h[2] >= threshold]
        if top_k is not None:
            heads = heads[:top_k]
        return [(layer, head) for layer, head, _ in heads]

    def to_dataframe(self):
        import pandas as pd

        rows = [
            {"layer": layer, "head": head, "score": s, "rank": i + 1}
            for i, (layer, head, s) in enumerate(self.ranked())
        ]
        return pd.DataFrame(rows)

    # -- display -----------------------------------------------------------------------------------
    def _summary(self, top: int = 5) -> tuple[str, str, list[tuple[str, float]]]:
        name = self.model or (Path(self.source).name if self.source else "unnamed")
        if self.num_counted is not None and self.num_samples is not None:
            samples = f"{self.num_counted}/{self.num_samples} samples counted"
        elif self.num_counted is not None:
            samples = f"{self.num_counted} samples counted"
        else:
            samples = "samples not recorded"
        best = [(head_key(layer, head), s) for layer, head, s in self.ranked()[:top]]
        return name, samples, best

    def __repr__(self) -> str:
        name, samples, best = self._summary()
        heads = ", ".join(f"{k} {s:.2f}" for k, s in best)
        return (
            f"HeadScores({name!r}, {self.num_layers} layers x {self.num_heads} heads, {self.method}, {samples}; "
            f"top: {heads})"
        )

    def _repr_html_(self) -> str:
        from html import escape

        name, samples, best = self._summary(top=10)
        rows = "".join(
            f"<tr><td>{i}</td><td><code>{k}</code></td><td>{s:.3f}</td></tr>"
            for i, (k, s) in enumerate(best, 1)
        )
        return (
            f"<div><b>HeadScores</b> {escape(name)}: {self.num_layers} layers x {self.num_heads} heads, "
            f"{escape(self.method)}, {escape(samples)}; {len(self.above(0.1))} heads &ge; 0.1"
            "<table><thead><tr><th>rank</th><th>head</th><th>score</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )

    def heatmap(self, *, threshold: float | None = 0.1, annotate_top: int = 10, title: str | None = None):
        """Layer x head heatmap of the scores, a plotly figure (``heads.plots.head_heatmap``)."""
        from retmask_interp.heads.plots import head_heatmap

        return head_heatmap(self, threshold=threshold, annotate_top=annotate_top, title=title)

    # -- serialisation -----------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        from retmask_interp import __version__

        geometry = dict(self.geometry) or {"num_layers": self.num_layers, "num_heads": self.num_heads}
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model": {"name": self.model, "revision": self.revision, "geometry": geometry},
            "method": {"name": self.method, "params": self.params},
            "samples": {"total": self.num_samples, "counted": self.num_counted},
            "package_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "scores": {head_key(layer, head): s for (layer, head), s in sorted(self.scores.items())},
            "ranked": [{"layer": layer, "head": head, "score": s} for layer, head, s in self.ranked()],
        }
        if self.per_sample is not None:
            out["per_sample_scores"] = {head_key(*h): v for h, v in sorted(self.per_sample.items())}
        out.update(self.extra)
        return out

    def to_wu_dict(self) -> dict[str, list[float]]:
        """Wu et al.'s format: per-sample lists (or a one-element list with the mean if none were kept)."""
        if self.per_sample is not None:
            return {head_key(*h): list(v) for h, v in sorted(self.per_sample.items())}
        return {head_key(*h): [s] for h, s in sorted(self.scores.items())}

    def save(self, path: str | Path, *, format: str | None = None, overwrite: bool = False) -> Path:
        """Write the head list to ``path`` in the format of its suffix, or ``format=`` (``heads.formats.FORMATS``:
        ``"retmask"`` our JSON with provenance, ``"wu"``, ``"duo"``, ``"qrhead"``, ``"csv"``); an unknown suffix is
        refused, an existing file needs ``overwrite=True``."""
        from retmask_interp.heads.formats import export_head_list

        return export_head_list(self, path, format=format, overwrite=overwrite)


def save_head_scores(
    hs: HeadScores, path: str | Path, *, overwrite: bool = False, format: str = "retmask"
) -> Path:
    """Write atomically as ``"retmask"`` (ours) or ``"wu"`` JSON; an existing file needs ``overwrite=True``."""
    refuse_overwrite(path, overwrite, "head list")
    if format == "retmask":
        return atomic_write_json(path, hs.to_json_dict())
    if format == "wu":
        return atomic_write_json(path, hs.to_wu_dict(), indent=None)
    raise InputError(f"unknown head-list format {format!r}; use 'retmask' or 'wu'")


def _finite(values: Iterable, source: str, key: str) -> list[float]:
    out = []
    for v in values:
        try:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        except OverflowError:
            ok = False
        if not ok:
            raise InputError(f"{source}: head {key!r} has a non-numeric or non-finite score {v!r:.40}")
        out.append(float(v))
    return out


def _from_wu(obj: Mapping[str, Any], source: str, num_layers=None, num_heads=None) -> HeadScores:
    per_sample: dict[Head, list[float]] = {}
    for key, values in obj.items():
        head = parse_head_key(key, source=source)
        if isinstance(values, (int, float)) and not isinstance(values, bool):
            values = [values]
        if not isinstance(values, list):
            raise InputError(f"{source}: head {key!r} should map to a list of per-sample scores")
        per_sample[head] = _finite(values, source, key)
    if not per_sample:
        raise InputError(f"{source}: no heads found (empty JSON object)")
    nl = num_layers or max(h[0] for h in per_sample) + 1
    nh = num_heads or max(h[1] for h in per_sample) + 1
    nl, nh = check_geometry(nl, nh, source)
    _check_inside(per_sample, nl, nh, source)
    counts = {len(v) for v in per_sample.values()}
    counted = counts.pop() if len(counts) == 1 else None
    hs = HeadScores.from_per_sample(per_sample, nl, nh, method="wu2024-copy-paste", source=source)
    hs.num_counted = counted
    return hs


def _section(obj: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = obj.get(key) or {}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise InputError(f"{source}: {key!r} should be an object, got {type(value).__name__}")
    return dict(value)


def _from_ours(obj: Mapping[str, Any], source: str) -> HeadScores:
    version = obj.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{source}: schema_version should be an integer, got {version!r:.40}")
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{source}: schema_version {obj['schema_version']} is newer than this package reads "
            f"({SCHEMA_VERSION}); upgrade retmask-interp"
        )
    model = _section(obj, "model", source)
    geometry = _section(model, "geometry", f"{source}: model")
    for k in ("num_layers", "num_heads"):
        if k in geometry and (isinstance(geometry[k], bool) or not isinstance(geometry[k], int)):
            raise InputError(f"{source}: model.geometry.{k} should be an integer, got {geometry[k]!r:.40}")
    raw = obj["scores"]
    if not isinstance(raw, Mapping):
        raise InputError(f"{source}: 'scores' should be an object of '<layer>-<head>': score")
    scores = {parse_head_key(k, source=source): _finite([v], source, k)[0] for k, v in raw.items()}
    if not scores:
        raise InputError(f"{source}: 'scores' is empty")
    nl = geometry.get("num_layers") or max(h[0] for h in scores) + 1
    nh = geometry.get("num_heads") or max(h[1] for h in scores) + 1
    nl, nh = check_geometry(nl, nh, source)
    _check_inside(scores, nl, nh, source)
    per_sample = None
    if isinstance(obj.get("per_sample_scores"), Mapping):
        per_sample = {}
        for k, v in obj["per_sample_scores"].items():
            if not isinstance(v, list):
                raise InputError(f"{source}: per_sample_scores[{k!r}] should be a list of scores")
            per_sample[parse_head_key(k, source=source)] = _finite(v, source, k)
        _check_inside(per_sample, nl, nh, source)
    method = _section(obj, "method", source)
    params = method.get("params") or {}
    if not isinstance(params, Mapping):
        raise InputError(f"{source}: method.params should be an object")
    samples = _section(obj, "samples", source)
    for k in ("total", "counted"):
        if samples.get(k) is not None and (isinstance(samples[k], bool) or not isinstance(samples[k], int)):
            raise InputError(f"{source}: samples.{k} should be an integer, got {samples[k]!r:.40}")
    known = {"schema", "schema_version", "model", "method", "samples", "package_version", "created", "scores"}
    known |= {"ranked", "per_sample_scores"}
    return HeadScores(
        scores=scores,
        num_layers=int(nl),
        num_heads=int(nh),
        model=str(model.get("name") or ""),
        revision=model.get("revision") if isinstance(model.get("revision"), str) else None,
        geometry=geometry,
        method=str(method.get("name") or "unknown"),
        params=dict(params),
        num_samples=samples.get("total"),
        num_counted=samples.get("counted"),
        per_sample=per_sample,
        source=source,
        extra={k: v for k, v in obj.items() if k not in known},
    )


def shipped_head_lists() -> dict[str, Path]:
    """Head lists shipped with the package (``retmask_interp/data/heads/NAME.json``), by model name."""
    from importlib.resources import files

    folder = Path(str(files("retmask_interp.data").joinpath("heads")))
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def head_list_path(path: str | Path) -> Path:
    """``path`` as an existing file or folder, or the file of the shipped head list it names
    (``shipped_head_lists``); ``FileNotFoundError`` listing the shipped names otherwise."""
    shipped = shipped_head_lists()
    if not Path(path).exists() and str(path) in shipped:
        return shipped[str(path)]
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"head file {path} does not exist (head lists shipped with the package: {', '.join(sorted(shipped))})"
        )
    return path


def load_head_scores(
    path: str | Path, *, num_layers: int | None = None, num_heads: int | None = None
) -> HeadScores:
    """Read a head list in our JSON format or in Wu et al.'s; other formats live in ``retmask_interp.heads.formats``.

    ``path`` may also name a head list shipped with the package (``shipped_head_lists()``: the real models'
    registry names, e.g. ``"smollm2-135m-instruct"``), so that a model can be masked without running detection."""
    path = head_list_path(path)
    if path.is_dir():
        raise InputError(f"head file {path} is a directory; give a .json file")
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start}); expected a JSON head list") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise InputError(
            f"{path} is not valid JSON ({str(err)[:80]}); expected a head list from `retmask detect`"
        ) from None
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    if "scores" in obj and isinstance(obj["scores"], Mapping):
        hs = _from_ours(obj, str(path))
    else:
        hs = _from_wu(obj, str(path), num_layers, num_heads)
        hs.model = path.stem
    if num_layers or num_heads:
        nl, nh = check_geometry(num_layers or hs.num_layers, num_heads or hs.num_heads, str(path))
        _check_inside(hs.scores, nl, nh, f"{path} (for the given geometry)")
        hs.num_layers, hs.num_heads = nl, nh
    return hs


# -- inputs ----------------------------------------------------------------------------------------------
def score_matrix(head_scores: HeadScores | np.ndarray | Mapping | Sequence) -> np.ndarray:
    """``[layers, heads]`` float array of scores, negatives clipped to 0.

    Accepts a ``HeadScores``, a 2-D array (rows = layers), or a dict ``(layer, head) -> score`` (absent heads
    are 0; the shape is ``max index + 1`` in each direction).
    """
    if isinstance(head_scores, HeadScores):
        m = head_scores.matrix()
    elif isinstance(head_scores, Mapping):
        if not head_scores:
            raise InputError("empty score mapping: expected {(layer, head): score, ...}")
        keys = [(int(k[0]), int(k[1])) for k in head_scores]
        m = np.zeros((max(k[0] for k in keys) + 1, max(k[1] for k in keys) + 1))
        for (layer, head), value in zip(keys, head_scores.values()):
            m[layer, head] = float(value)
    else:
        m = np.asarray(head_scores, dtype=float)
        if m.ndim != 2:
            raise InputError(
                f"expected a [layers, heads] score matrix, got shape {m.shape}; "
                "pass HeadScores, a 2-D array or a {(layer, head): score} dict"
            )
    if m.size == 0:
        raise InputError("no heads: the score matrix is empty")
    if not np.all(np.isfinite(m)):
        raise InputError("scores contain NaN or infinity; clean the head list (retrieval scores are >= 0)")
    return np.clip(m, 0.0, None)


def ranked_heads(head_scores) -> tuple[list[Head], np.ndarray]:
    """All heads by score, highest first (ties by layer, then head), and the score matrix."""
    m = score_matrix(head_scores)
    flat = m.ravel()
    order = np.lexsort((np.arange(flat.size), -flat))
    return [divmod(int(i), m.shape[1]) for i in order], m
