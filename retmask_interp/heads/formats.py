"""Head lists in and out of other formats, TransformerLens masking hooks, and masked-checkpoint export.

Import (all return ``HeadScores``; ``load_any_head_list`` picks the reader by extension, then by content):

- ``.json``: our format or Wu et al.'s / the RetMask repo's (``heads.scores.load_head_scores``);
- ``.tsv`` or a directory holding ``full_attention_heads.tsv``: DuoAttention gates (``load_duo_attention``);
- ``.yaml`` / ``.yml``: QRHead configs and other YAML head lists (``load_yaml_heads``, shapes listed there);
- ``.csv``: a header with ``layer``, ``head`` and optionally ``score`` (``load_csv_heads``).

Export: ``export_head_list`` (our JSON, Wu JSON, CSV), ``head_dataframe`` (pandas); ``kv_head_scores`` reduces
query-head scores to KV heads.

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

from retmask_interp.core.io import InputError, atomic_write_text, refuse_overwrite
from retmask_interp.heads.scores import (
    Head,
    HeadScores,
    check_geometry,
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
    they are. Published gates stray slightly outside [0, 1] (e.g. -1e-4); they are clipped to [0, 1].
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
    if not (num_layers or geo):
        log.info(
            "%s: geometry not given; assuming %d layers x %d heads from the listed heads", source, nl, nh
        )
    hs = HeadScores(scores, int(nl), int(nh), model=model, method=source_format, source=source)
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


def load_any_head_list(path: str | Path, **kwargs) -> HeadScores:
    """Read a head list in any supported format (module docstring). Keyword arguments go to the reader that
    accepts them (``num_layers``, ``num_heads``, ``geometry``, ``group_size``, ``unscored``); the others are
    ignored, so one set of options serves a mix of files. A shipped head list's name (``shipped_head_lists``)
    stands for its file."""
    from retmask_interp.heads.scores import head_list_path

    path = head_list_path(path)
    suffix = path.suffix.lower()
    reader: Callable[..., HeadScores]
    if path.is_dir() or suffix == ".tsv":
        reader = load_duo_attention
    elif suffix in (".yaml", ".yml"):
        reader = load_yaml_heads
    elif suffix == ".csv":
        reader = load_csv_heads
    elif suffix == ".json":
        reader = _load_json
    else:
        with path.open("rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace").lstrip()
        if head.startswith("{"):
            reader = _load_json
        elif head[:6].lower().startswith(("layer,", "layer ")):
            reader = load_csv_heads
        else:
            raise InputError(
                f"{path}: unknown head-list format; use .json (ours / Wu et al.), .tsv (DuoAttention), "
                ".yaml (QRHead) or .csv (layer,head,score)"
            )
    accepted = set(inspect.signature(reader).parameters)
    known = {"num_layers", "num_heads", "geometry", "group_size", "unscored"}
    unknown = set(kwargs) - known
    if unknown:
        raise TypeError(f"load_any_head_list got unknown options {sorted(unknown)}; known: {sorted(known)}")
    return reader(path, **{k: v for k, v in kwargs.items() if k in accepted and v is not None})


# -- export ----------------------------------------------------------------------------------------------
def head_dataframe(hs: HeadScores):
    """All heads as a DataFrame: ``layer, head, score, rank, model, method`` (rank 1 = highest score)."""
    df = hs.to_dataframe()
    df["model"] = hs.model
    df["method"] = hs.method
    return df


def export_head_list(
    hs: HeadScores, path: str | Path, *, format: str | None = None, overwrite: bool = False
) -> Path:
    """Write a head list as ``"retmask"`` (our JSON, with provenance), ``"wu"`` (Wu et al.'s JSON) or ``"csv"``
    (``layer,head,score,rank``, every head, ranked; no provenance). ``format`` defaults from the extension
    (``.csv`` -> csv, otherwise our JSON)."""
    path = Path(path)
    format = format or ("csv" if path.suffix.lower() == ".csv" else "retmask")
    if format in ("retmask", "wu"):
        return save_head_scores(hs, path, overwrite=overwrite, format=format)
    if format != "csv":
        raise InputError(f"unknown export format {format!r}; use 'retmask', 'wu' or 'csv'")
    refuse_overwrite(path, overwrite, "head list")
    lines = ["layer,head,score,rank"]
    lines += [f"{layer},{head},{score!r},{i + 1}" for i, (layer, head, score) in enumerate(hs.ranked())]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def kv_head_scores(hs: HeadScores, group_size: int, reduce: str = "max") -> HeadScores:
    """Per-KV-head scores: query heads ``[g*group_size, (g+1)*group_size)`` reduced to KV head ``g`` by ``"max"``
    or ``"mean"`` (to compare query-head scores with per-KV-head lists such as DuoAttention's)."""
    if group_size < 1 or hs.num_heads % group_size:
        raise InputError(f"group_size {group_size} does not divide the {hs.num_heads} heads per layer")
    if reduce not in ("max", "mean"):
        raise InputError(f"reduce={reduce!r}: use 'max' or 'mean'")
    grouped = hs.matrix().reshape(hs.num_layers, hs.num_heads // group_size, group_size)
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
