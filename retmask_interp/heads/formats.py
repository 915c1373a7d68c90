"""Head lists in and out of other formats, TransformerLens masking hooks, and masked-checkpoint export.

Import (all return ``HeadScores``; ``load_any_head_list`` picks the reader by extension, then by content):

- ``.json``: our format or Wu et al.'s / the RetMask repo's (``heads.scores.load_head_scores``);
- ``.tsv`` or a directory holding ``full_attention_heads.tsv``: DuoAttention gates (``load_duo_attention``);
- ``.yaml`` / ``.yml``: QRHead configs and other YAML head lists (``load_yaml_heads``, shapes listed there);
- ``.csv``: a header with ``layer``, ``head`` and optionally ``score`` (``load_csv_heads``).

Export: ``export_head_list`` (the format from the suffix or ``format=``: our JSON, Wu JSON, DuoAttention TSV,
QRHead YAML, CSV; an unknown suffix is refused), ``head_dataframe`` (pandas); ``kv_head_scores`` reduces query-head
scores to KV heads (DuoAttention's files are per KV head: a KV head gets the largest score of its query heads).

``tl_mask_hooks`` / ``tl_bridge`` / ``tl_run_masked`` zero heads in a TransformerLens ``TransformerBridge``
(TransformerLens >= 4); ``export_masked`` writes the RetMask *ablated* model as a Hugging Face checkpoint.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from einops import rearrange

from retmask_interp.core.io import InputError, atomic_write_text, refuse_overwrite
from retmask_interp.heads.scores import (
    Head,
    HeadScores,
    check_geometry,
    head_key,
    load_head_scores,
    parse_head_key,
    save_head_scores,
)

__all__ = [
    "load_any_head_list",
    "load_duo_attention",
    "load_yaml_heads",
    "load_csv_heads",
    "export_head_list",
    "format_for",
    "FORMATS",
    "head_dataframe",
    "kv_head_scores",
    "check_head_list_matches",
]

log = logging.getLogger(__name__)

DUO_FILE = "full_attention_heads.tsv"


def _geometry_dict(geometry) -> dict[str, int]:
    """``ModelGeometry`` / ``RetModel`` / HF config / dict -> ``{num_layers, num_heads, num_kv_heads, ...}``."""
    if geometry is None:
        return {}
    if isinstance(geometry, Mapping):
        return {k: int(v) for k, v in geometry.items() if v is not None}
    if hasattr(geometry, "as_dict"):
        return geometry.as_dict()
    if hasattr(geometry, "geometry"):  # RetModel
        return geometry.geometry.as_dict()
    from retmask_interp.core.architectures import ModelGeometry

    return ModelGeometry.from_config(geometry).as_dict()  # a Hugging Face config


# -- DuoAttention ----------------------------------------------------------------------------------------
GATE_TOLERANCE = 0.01  # published DuoAttention gates stray this far outside [0, 1] (rounding); clipped


def load_duo_attention(
    path: str | Path,
    *,
    group_size: int | None = None,
    num_heads: int | None = None,
    geometry=None,
) -> HeadScores:
    """DuoAttention's ``full_attention_heads.tsv`` (rows = layers, columns = KV heads, gate in [0, 1]).

    The gates are per KV head; our head lists are per query head. Each query head ``h`` gets the gate of KV
    head ``h // group_size`` (the Hugging Face grouped-query layout), and the provenance records it. Give the
    number of query heads per KV head as ``group_size``, or ``num_heads`` (query heads per layer), or a
    ``geometry`` (``ModelGeometry``, ``RetModel``, HF config or dict); ``group_size=1`` keeps the KV heads as
    they are. Published gates stray slightly outside [0, 1] (e.g. -1e-4); such strays (within ``GATE_TOLERANCE``) are
    clipped to [0, 1]; a gate further out (5.0, -3.0) is not a gate and the file is refused, naming it.
    ``config.json`` beside the file (the training run's settings) is read into ``params`` when present.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob(DUO_FILE))
        if len(found) != 1:
            raise InputError(
                f"{path}: expected one {DUO_FILE} below it, found {len(found)}; pass the file itself"
            )
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"DuoAttention file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start}); expected {DUO_FILE}") from None
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    try:
        gates = np.array([[float(x) for x in row] for row in rows], dtype=float).reshape(len(rows), -1)
    except ValueError as err:
        raise InputError(
            f"{path}: not a tab-separated matrix of numbers, one row per layer with the same number of columns "
            f"({str(err)[:60]}); expected {DUO_FILE}"
        ) from None
    if gates.size == 0:
        raise InputError(f"{path}: no gates (an empty file); expected {DUO_FILE}")
    if not np.all(np.isfinite(gates)):
        raise InputError(f"{path}: contains NaN or infinite gates")
    far = np.argwhere((gates < -GATE_TOLERANCE) | (gates > 1 + GATE_TOLERANCE))
    if len(far):
        layer, kv = (int(x) for x in far[0])
        raise InputError(
            f"{path}:{layer + 1}: gate {gates[layer, kv]:g} of KV head {kv} (layer {layer}) is outside [0, 1] "
            f"({len(far)} such gates); DuoAttention gates are in [0, 1]: is it a gate file?"
        )
    n_layers, n_kv = gates.shape
    geo = _geometry_dict(geometry)
    if group_size is None and num_heads is None and geo:
        if geo.get("num_kv_heads") not in (None, n_kv):
            raise InputError(
                f"{path} has {n_kv} KV heads per layer but the model geometry says {geo['num_kv_heads']}: "
                "is it the gate file of another model?"
            )
        num_heads = geo.get("num_heads")
    if group_size is None and num_heads is not None:
        if num_heads % n_kv:
            raise InputError(f"{num_heads} query heads are not a multiple of the file's {n_kv} KV heads")
        group_size = num_heads // n_kv
    if group_size is None:
        raise InputError(
            f"{path}: DuoAttention gates are per KV head ({n_kv} per layer). Say how many query heads share "
            "each KV head: group_size=... (e.g. 4 for Mistral-7B / Llama-3-8B: 32 query / 8 KV heads), "
            "num_heads=... or geometry=... (CLI: --group-size); group_size=1 keeps KV heads unexpanded."
        )
    if geo.get("num_layers") not in (None, n_layers):
        raise InputError(f"{path} has {n_layers} layers but the model geometry says {geo['num_layers']}")
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise InputError(f"group_size must be a positive integer, got {group_size!r}")
    check_geometry(n_layers, n_kv * int(group_size), str(path))
    clipped = int(((gates < 0) | (gates > 1)).sum())
    expanded = np.repeat(np.clip(gates, 0.0, 1.0), int(group_size), axis=1)
    params: dict[str, Any] = {}
    model = path.parent.parent.name if "=" in path.parent.name else path.parent.name  # <model>/<run>/file
    config_path = path.parent / "config.json"
    if config_path.exists():
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
        model = Path(str(cfg.get("model_name") or model)).name
        keep: tuple[str, ...] = (
            "lr",
            "reg_weight",
            "num_steps",
            "context_length_min",
            "context_length_max",
            "num_passkeys",
        )
        keep += ("sink_size", "recent_size", "threshold", "dataset_name", "supervision")
        params = {k: cfg[k] for k in keep if k in cfg}
    hs = HeadScores.from_matrix(expanded, model=model, method="duo-attention-gate", params=params)
    hs.source = str(path)
    hs.geometry = {"num_layers": n_layers, "num_heads": n_kv * int(group_size), "num_kv_heads": n_kv}
    hs.extra["provenance"] = {
        "source_format": "duo_attention_tsv",
        "file": str(path),
        "per_kv_head": True,
        "expanded_to_query_heads": int(group_size) > 1,
        "group_size": int(group_size),
        "expansion": "query head h carries the gate of KV head h // group_size",
        "clipped_to_unit_interval": clipped,
    }
    return hs


# -- YAML / CSV lists ------------------------------------------------------------------------------------
_LIST_KEYS = ("attn_head_set", "heads", "retrieval_heads", "head_set", "head_list", "qr_heads", "scores")
_MODEL_KEYS = ("model", "model_name_or_path", "model_name", "model_base_class")


def _int(value: Any, source: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InputError(f"{source}: {what} {value!r:.40} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{source}: {what} {value!r:.40} is not an integer") from None


def _score(value: Any, source: str, head: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{source}: head {head} has a non-numeric score {value!r:.40}") from None
    if not math.isfinite(out):
        raise InputError(f"{source}: head {head} has a non-finite score {value!r:.40} (NaN or infinity)")
    return out


def _entry(item: Any, source: str) -> tuple[Head, float | None]:
    if isinstance(item, str):
        return parse_head_key(item.strip().replace(".", "-").replace(":", "-"), source=source), None
    if isinstance(item, Mapping):
        if "layer" not in item or "head" not in item:
            raise InputError(f"{source}: entry {item!r:.60} needs integer 'layer' and 'head' keys")
        head = _int(item["layer"], source, "layer"), _int(item["head"], source, "head")
        score = item.get("score")
        return head, None if score is None else _score(score, source, head)
    if isinstance(item, (list, tuple)) and len(item) in (2, 3):
        head = _int(item[0], source, "layer"), _int(item[1], source, "head")
        return head, _score(item[2], source, head) if len(item) == 3 else None
    raise InputError(
        f"{source}: cannot read head entry {item!r}; use [layer, head], [layer, head, score] or 'l-h'"
    )


def _entries(obj: Any, source: str) -> list[tuple[Head, float | None]]:
    """The (head, score or None) entries of any accepted shape (see ``load_yaml_heads``)."""
    if isinstance(obj, str):
        if obj.strip() == "full_heads":
            raise InputError(f"{source}: 'full_heads' means every head of the model, not a head list")
        return [_entry(part, source) for part in obj.split(",") if part.strip()]
    if isinstance(obj, Mapping):
        for key in _LIST_KEYS:
            if key in obj:
                return _entries(obj[key], source)
        keys = list(obj)
        if keys and all(isinstance(k, int) and not isinstance(k, bool) for k in keys):  # {layer: [head, ...]}
            if not all(isinstance(obj[k], list) for k in keys):
                raise InputError(
                    f"{source}: a mapping layer: [head, ...] needs a list of heads for every layer"
                )
            return [((int(layer), _int(h, source, "head")), None) for layer in keys for h in obj[layer]]
        out: list[tuple[Head, float | None]] = []
        for k, v in obj.items():  # {"l-h": score}
            head = parse_head_key(str(k), source=source)
            out.append((head, _score(v, source, k)))
        return out
    if isinstance(obj, list):
        return [_entry(item, source) for item in obj]
    raise InputError(f"{source}: cannot find a head list in a {type(obj).__name__}")


def _from_entries(
    entries: list[tuple[Head, float | None]],
    *,
    source: str,
    source_format: str,
    model: str = "",
    num_layers: int | None = None,
    num_heads: int | None = None,
    geometry=None,
    unscored: str = "rank",
) -> HeadScores:
    if not entries:
        raise InputError(f"{source}: the head list is empty")
    heads = [h for h, _ in entries]
    dup = sorted({h for h in heads if heads.count(h) > 1})
    if dup:
        raise InputError(f"{source}: heads {dup[:5]} are listed more than once")
    if any(h[0] < 0 or h[1] < 0 for h in heads):
        raise InputError(f"{source}: negative layer or head index")
    for h, sc in entries:
        if sc is not None:
            _score(sc, source, h)  # NaN / infinity refused as in the JSON reader
    scored = [s is not None for _, s in entries]
    if any(scored) and not all(scored):
        raise InputError(f"{source}: some entries have a score and others not; give all scores or none")
    n = len(entries)
    if all(scored):
        scores = {h: float(s) for h, s in entries if s is not None}
        how = "from file"
    elif unscored == "rank":
        scores = {h: (n - i) / n for i, h in enumerate(heads)}  # first listed = 1, last = 1/n
        how = "rank-derived: (n - i) / n for the i-th listed head, 0 for unlisted heads"
    elif unscored == "binary":
        scores = {h: 1.0 for h in heads}
        how = "binary: 1 for listed heads, 0 for unlisted heads"
    else:
        raise InputError(f"unscored={unscored!r}: use 'rank' or 'binary'")
    geo = _geometry_dict(geometry)
    nl = num_layers or geo.get("num_layers") or max(h[0] for h in heads) + 1
    nh = num_heads or geo.get("num_heads") or max(h[1] for h in heads) + 1
    nl, nh = check_geometry(nl, nh, source)
    if any(h[0] >= nl or h[1] >= nh for h in heads):
        raise InputError(f"{source}: heads fall outside {nl} layers x {nh} heads; is it for another model?")
    if not ((num_layers and num_heads) or geo):
        # the largest listed head is only a lower bound of the model's shape: metrics over all heads depend on it
        log.warning(
            "%s lists heads without the model's shape: assuming %d layers x %d heads from the largest listed head; "
            "give the shape (num_layers= / num_heads= or model=; CLI: --num-layers / --num-heads or --model)",
            source, nl, nh,
        )  # fmt: skip
    hs = HeadScores(scores, int(nl), int(nh), model=model, method=source_format, source=source)
    if (num_layers and num_heads) or geo:
        hs.geometry = {"num_layers": int(nl), "num_heads": int(nh)}
    hs.extra["provenance"] = {"source_format": source_format, "file": source, "scores": how, "n_listed": n}
    return hs


def load_yaml_heads(
    path: str | Path,
    *,
    num_layers: int | None = None,
    num_heads: int | None = None,
    geometry=None,
    unscored: str = "rank",
) -> HeadScores:
    """A YAML head list. Accepted shapes (at the top level or under one of the keys ``attn_head_set``,
    ``heads``, ``retrieval_heads``, ``head_set``, ``head_list``, ``qr_heads``, ``scores``):

    - QRHead's config: ``attn_head_set: "14-22,13-16,..."`` (comma-separated ``layer-head``, ranked), with
      ``model_name_or_path`` naming the model; ``"full_heads"`` (every head) is refused;
    - a ranked list of ``[layer, head]`` pairs, ``[layer, head, score]`` triples or ``"layer-head"`` strings;
    - a list of mappings ``{layer: l, head: h, score: s}`` (score optional);
    - a mapping ``"layer-head": score``, or ``layer: [head, ...]``.

    Lists without scores get ``(n - i) / n`` for the ``i``-th head (``unscored="rank"``, keeps the order for
    top-k) or 1 (``"binary"``); unlisted heads get 0. The geometry is ``num_layers`` x ``num_heads`` (or from
    ``geometry``), else inferred from the largest listed indices.
    """
    import yaml

    path = Path(path)
    try:
        obj = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start}); expected a YAML head list") from None
    except (yaml.YAMLError, RecursionError) as err:
        raise InputError(f"{path} is not valid YAML ({str(err)[:200]})") from None
    model = ""
    if isinstance(obj, Mapping):
        model = next((str(obj[k]) for k in _MODEL_KEYS if isinstance(obj.get(k), str)), "")
    return _from_entries(
        _entries(obj, str(path)),
        source=str(path),
        source_format="yaml",
        model=model,
        num_layers=num_layers,
        num_heads=num_heads,
        geometry=geometry,
        unscored=unscored,
    )


def load_csv_heads(
    path: str | Path,
    *,
    num_layers: int | None = None,
    num_heads: int | None = None,
    geometry=None,
    unscored: str = "rank",
) -> HeadScores:
    """A CSV with a header naming ``layer``, ``head`` and optionally ``score`` (any case, other columns ignored).
    Rows without a score column are ranked as in ``load_yaml_heads``."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text (byte {err.start}); expected a CSV head list") from None
    try:
        return _csv_entries(path, text, num_layers, num_heads, geometry, unscored)
    except csv.Error as err:
        raise InputError(f"{path}: not a readable CSV ({err})") from None


def _csv_entries(path: Path, text: str, num_layers, num_heads, geometry, unscored: str) -> HeadScores:
    if "\x00" in text:
        raise InputError(f"{path}: holds NUL bytes; expected a CSV text file")
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
        if "layer" not in fields or "head" not in fields:
            raise InputError(
                f"{path}: needs a header with 'layer' and 'head' columns (and 'score'), got {list(fields)}"
            )
        entries = []
        for row in reader:
            i = reader.line_num
            try:
                head = int(row[fields["layer"]]), int(row[fields["head"]])
                score = float(row[fields["score"]]) if "score" in fields else None
            except (TypeError, ValueError):
                raise InputError(f"{path}:{i}: cannot read layer/head/score from {row!r:.120}") from None
            if score is not None and not math.isfinite(score):
                raise InputError(f"{path}:{i}: head {head} has a non-finite score {score} (NaN or infinity)")
            entries.append((head, score))
    return _from_entries(
        entries,
        source=str(path),
        source_format="csv",
        model=path.stem,
        num_layers=num_layers,
        num_heads=num_heads,
        geometry=geometry,
        unscored=unscored,
    )


def _load_json(
    path: Path, *, num_layers: int | None = None, num_heads: int | None = None, geometry=None
) -> HeadScores:
    geo = _geometry_dict(geometry)
    if not (num_layers or num_heads) and geo and _json_geometry(path) is None:
        # a list without its own geometry (Wu et al.'s): missing heads are 0, the model gives the shape
        num_layers, num_heads = geo.get("num_layers"), geo.get("num_heads")
    return load_head_scores(path, num_layers=num_layers, num_heads=num_heads)


def _json_geometry(path: Path) -> dict | None:
    """The geometry recorded in one of our head files, or None (Wu et al.'s lists carry none)."""
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None  # load_head_scores says what is wrong
    if isinstance(obj, Mapping) and isinstance(obj.get("scores"), Mapping):
        model = obj.get("model")
        if isinstance(model, Mapping) and isinstance(model.get("geometry"), Mapping) and model["geometry"]:
            return dict(model["geometry"])
    return None


def _reader_for(path: Path, format: str | None) -> Callable[..., HeadScores]:
    if format is not None:
        readers: dict[str, Callable[..., HeadScores]] = {
            "retmask": _load_json,
            "wu": _load_json,
            "duo": load_duo_attention,
            "qrhead": load_yaml_heads,
            "yaml": load_yaml_heads,
            "csv": load_csv_heads,
        }
        if format not in readers:
            raise InputError(f"unknown head-list format {format!r}; use one of {', '.join(FORMATS)}")
        return readers[format]
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".tsv":
        return load_duo_attention
    if suffix in (".yaml", ".yml"):
        return load_yaml_heads
    if suffix == ".csv":
        return load_csv_heads
    if suffix == ".json":
        return _load_json
    with path.open("rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace").lstrip()
    if head.startswith("{"):
        return _load_json
    if head[:6].lower().startswith(("layer,", "layer ")):
        return load_csv_heads
    raise InputError(
        f"{path}: unknown head-list format; use .json (ours / Wu et al.), .tsv (DuoAttention), "
        ".yaml (QRHead) or .csv (layer,head,score), or name it with format=... (CLI: --format)"
    )


def load_any_head_list(path: str | Path, *, format: str | None = None, model=None, **kwargs) -> HeadScores:
    """Read a head list in any supported format (module docstring; ``format=`` overrides the suffix).

    Keyword arguments go to the reader that accepts them (``num_layers``, ``num_heads``, ``geometry``,
    ``group_size``, ``unscored``); the others are ignored, so one set of options serves a mix of files. ``model``
    (a ``RetModel``, HF model or config) gives the shape as ``geometry`` does. Where a shape is given, a file that
    does not fit it is refused: heads outside it, or a recorded geometry that differs. A shipped head list's name
    (``shipped_head_lists``) stands for its file."""
    from retmask_interp.heads.scores import head_list_path

    path = head_list_path(path)
    reader = _reader_for(path, format)
    known = {"num_layers", "num_heads", "geometry", "group_size", "unscored"}
    unknown = set(kwargs) - known
    if unknown:
        raise TypeError(f"load_any_head_list got unknown options {sorted(unknown)}; known: {sorted(known)}")
    if model is not None:
        if kwargs.get("geometry") is not None:
            raise TypeError("give the shape as model= or geometry=, not both")
        kwargs["geometry"] = model
    accepted = set(inspect.signature(reader).parameters)
    hs = reader(path, **{k: v for k, v in kwargs.items() if k in accepted and v is not None})
    geo = _geometry_dict(kwargs.get("geometry"))
    want = (
        kwargs.get("num_layers") or geo.get("num_layers"),
        kwargs.get("num_heads") or geo.get("num_heads"),
    )
    recorded = (hs.geometry.get("num_layers"), hs.geometry.get("num_heads")) if hs.geometry else (None, None)
    checks = [("is for", (hs.num_layers, hs.num_heads)), ("records", recorded)]
    for verb, shape in checks:
        for name, given, have in zip(("layers", "heads per layer"), want, shape):
            if given is not None and have is not None and int(given) != int(have):
                raise InputError(
                    f"{path} {verb} {have} {name} but the model (or --num-layers / --num-heads) has {given}: "
                    "it is the head list of another model"
                )
    return hs


# -- export ----------------------------------------------------------------------------------------------
def head_dataframe(hs: HeadScores):
    """All heads as a DataFrame: ``layer, head, score, rank, model, method`` (rank 1 = highest score)."""
    df = hs.to_dataframe()
    df["model"] = hs.model
    df["method"] = hs.method
    return df


# format name -> the suffixes that select it (``"wu"`` is chosen by name: its files are .json as ours)
FORMATS: dict[str, tuple[str, ...]] = {
    "retmask": (".json",),
    "wu": (),
    "duo": (".tsv",),
    "qrhead": (".yaml", ".yml"),
    "csv": (".csv",),
}


def format_for(path: str | Path, format: str | None = None) -> str:
    """The export format of ``path``: ``format`` if given, else from the suffix; an unknown one is refused."""
    if format is not None:
        if format not in FORMATS:
            raise InputError(f"unknown head-list format {format!r}; use one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    raise InputError(
        f"{path}: cannot tell the head-list format from the suffix {suffix or '(none)'!r}; use .json (ours), "
        ".tsv (DuoAttention), .yaml (QRHead) or .csv, or give format= (CLI: --format) one of "
        f"{', '.join(FORMATS)}"
    )


def _kv_group_size(hs: HeadScores, num_kv_heads: int | None) -> int:
    kv = num_kv_heads or hs.geometry.get("num_kv_heads")
    if not kv:
        raise InputError(
            f"DuoAttention files hold one value per KV head, and the head list of {hs.model or 'this model'} does "
            "not record how many KV heads it has: give num_kv_heads=... (CLI: --num-kv-heads; 8 for "
            "Llama-3-8B, 1 query head per KV head without grouped-query attention)"
        )
    if hs.num_heads % int(kv):
        raise InputError(f"{kv} KV heads do not divide the {hs.num_heads} query heads per layer")
    return hs.num_heads // int(kv)


def duo_attention_text(hs: HeadScores, num_kv_heads: int | None = None) -> str:
    """DuoAttention's ``full_attention_heads.tsv``: one row per layer, one tab-separated value per KV head. A KV
    head's value is the LARGEST score of the query heads that share it (``kv_head_scores(..., "max")``): a KV head
    is kept at full attention when any of its query heads retrieves."""
    kv = kv_head_scores(hs, _kv_group_size(hs, num_kv_heads), "max").matrix()
    return "".join("\t".join(repr(float(v)) for v in row) + "\n" for row in kv)


def qrhead_text(hs: HeadScores, top_k: int | None = None) -> str:
    """QRHead's head list: a YAML config with ``model_name_or_path`` and ``attn_head_set``, the heads as
    ``"layer-head"`` separated by commas, best first. QRHead lists carry no scores: the heads with a score above 0
    are written (or the ``top_k`` best); reading it back ranks them in this order (``load_yaml_heads``)."""
    import yaml

    heads = hs.top_k(top_k) if top_k is not None else [(la, h) for la, h, s in hs.ranked() if s > 0]
    if not heads:
        raise InputError(
            f"no head of {hs.model or 'the head list'} has a score above 0, so the QRHead list would be empty; "
            "give top_k=... (CLI: --top-k)"
        )
    doc = {"model_name_or_path": hs.model or "", "attn_head_set": ",".join(head_key(*h) for h in heads)}
    return yaml.safe_dump(doc, sort_keys=False, width=10**6)


def csv_text(hs: HeadScores) -> str:
    """``layer,head,score,rank``: every head, ranked (rank 1 = best); no provenance."""
    lines = ["layer,head,score,rank"]
    lines += [f"{layer},{head},{score!r},{i + 1}" for i, (layer, head, score) in enumerate(hs.ranked())]
    return "\n".join(lines) + "\n"


def export_head_list(
    hs: HeadScores,
    path: str | Path,
    *,
    format: str | None = None,
    overwrite: bool = False,
    num_kv_heads: int | None = None,
    top_k: int | None = None,
) -> Path:
    """Write a head list for another tool; the format comes from ``path``'s suffix or ``format``:

    - ``"retmask"`` (``.json``): our JSON, with provenance (``heads.scores``);
    - ``"wu"``: Wu et al.'s JSON ``{"layer-head": [per-sample scores]}``, what HeadKV and DeCoRe read;
    - ``"duo"`` (``.tsv``): DuoAttention's ``full_attention_heads.tsv``, layers x KV heads, each KV head the largest
      score of its query heads (``num_kv_heads`` from the list's geometry, or given);
    - ``"qrhead"`` (``.yaml``): QRHead's ``attn_head_set``, the heads above 0 (or ``top_k``) best first;
    - ``"csv"`` (``.csv``): ``layer,head,score,rank``, every head.

    An unknown suffix is refused (nothing is written); an existing file needs ``overwrite=True``."""
    path = Path(path)
    fmt = format_for(path, format)
    if fmt in ("retmask", "wu"):
        return save_head_scores(hs, path, overwrite=overwrite, format=fmt)
    refuse_overwrite(path, overwrite, "head list")
    if fmt == "duo":
        text = duo_attention_text(hs, num_kv_heads)
    elif fmt == "qrhead":
        text = qrhead_text(hs, top_k)
    else:
        text = csv_text(hs)
    return atomic_write_text(path, text)


def kv_head_scores(hs: HeadScores, group_size: int, reduce: str = "max") -> HeadScores:
    """Per-KV-head scores: query heads ``[g*group_size, (g+1)*group_size)`` reduced to KV head ``g`` by ``"max"``
    or ``"mean"`` (to compare query-head scores with per-KV-head lists such as DuoAttention's)."""
    if group_size < 1 or hs.num_heads % group_size:
        raise InputError(f"group_size {group_size} does not divide the {hs.num_heads} heads per layer")
    if reduce not in ("max", "mean"):
        raise InputError(f"reduce={reduce!r}: use 'max' or 'mean'")
    grouped = rearrange(hs.matrix(), "layer (kv group) -> layer kv group", group=group_size)
    out = HeadScores.from_matrix(getattr(grouped, reduce)(axis=-1), model=hs.model, method=hs.method)
    out.params, out.source = dict(hs.params), hs.source
    out.extra["provenance"] = {"reduced_to_kv_heads": {"group_size": int(group_size), "reduce": reduce}}
    return out


def check_head_list_matches(hs: HeadScores, model) -> None:
    """Raise if a head list's geometry differs from a model's (``RetModel`` / HF model / geometry)."""
    from retmask_interp.core.models import as_model

    if hasattr(model, "config") and not hasattr(model, "geometry"):
        model = as_model(model)
    geo = _geometry_dict(model)
    want = (geo.get("num_layers"), geo.get("num_heads"))
    nl, nh = want
    inferred = not hs.geometry  # shape guessed from the largest listed head (sparse: missing = 0)
    if inferred and nl is not None and nh is not None and hs.num_layers <= nl and hs.num_heads <= nh:
        hs.num_layers, hs.num_heads = int(nl), int(nh)
        return
    if (hs.num_layers, hs.num_heads) != want:
        raise InputError(
            f"head list {hs.source or hs.model!r} is for {hs.num_layers} layers x {hs.num_heads} heads but the model "
            f"has {geo.get('num_layers')} x {geo.get('num_heads')}: it was made for another model"
        )


# -- TransformerLens -------------------------------------------------------------------------------------
