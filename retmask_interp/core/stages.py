"""The resumable stage runner every study is built on.

A study is a sequence of *stages* run into one directory. A stage has a name (``"pairs/retmask.train"``: a slash
makes groups), its **settings** (a dict or a dataclass: every parameter its result depends on), optionally the
earlier stages it depends on (``after``) and the **outputs** it writes (paths relative to the directory)::

    runner = Stages("runs/x")
    heads = runner.run("heads", {"threshold": 0.1}, lambda ctx: find_heads(...))
    runner.run("pairs", {"seed": 0}, make_pairs, after={"heads": "heads"}, outputs=["pairs.jsonl"])

What the runner guarantees:

- **Finished stages are skipped.** When a stage's function returns, its result (a JSON value) is written last and
  atomically to ``stages/<name>.json`` with its settings and timings; a later run finds that *marker* and returns
  the stored result without calling the function. A marker whose declared outputs are gone is run again (warning).
- **Other settings are refused, never mixed.** A finished (or a started, unfinished) stage whose recorded settings
  differ from this run's raises ``StageMismatch`` naming each setting that changed (``core.io.settings_diff``, nested
  settings as dotted keys), e.g. ``max_new_tokens was 8, now 9``.
- **Upstream changes invalidate downstream.** ``after={"pairs": "pairs/retmask.train"}`` copies the *recorded*
  settings of that finished stage into this stage's settings under ``"pairs"`` (a value may also be a list or a dict
  of stage names). A downstream stage made from other upstream settings is refused naming the upstream setting
  (``pairs.max_new_tokens was 8, now 9``); a stage whose upstream is not finished is refused naming it.
- **Partial outputs are atomic and resumable.** The function writes its outputs through ``core.io`` (atomic writes,
  appended JSONL); per-unit progress goes to ``ctx.checkpoint`` (a ``core.io.KeyedCheckpoint`` at
  ``stages/<name>.units.jsonl`` bound to the stage's settings), so an interrupted stage redoes only the unit it was
  in. ``stages/<name>.started.json`` records the settings a stage started with: a resume with other settings is
  refused before it appends to the partial outputs. Both files go when the marker is written.
- **One writer per stage.** A stage is locked (``core.locks``) while it runs; a second process that wants the same
  stage is refused naming the holder, while different stages of one directory may run in parallel processes.
- **Timings.** Each marker keeps ``wall_s`` (the finishing attempt), the start and end time and the host;
  ``timings()`` sums them per stage and per group (what the studies report as seconds per stage).

Markers written by the RetMask study before this runner (``{"params": ...}`` instead of ``{"settings": ...}``)
read as the same thing, so its old run directories resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retmask_interp.core.io import InputError, KeyedCheckpoint, atomic_write_json, settings_diff

__all__ = ["StageContext", "StageMismatch", "Stages", "canonical"]

log = logging.getLogger(__name__)

# an ``after`` value: a stage name, or a list / dict of them (their recorded settings take the same shape)
Upstream = str | list | tuple | Mapping


class StageMismatch(InputError):
    """A stage's recorded settings (or those of a stage it depends on) differ from this run's."""


def canonical(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, keys strings, dataclasses dicts)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``), so a diff names the innermost setting."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: obj}


@dataclass
class StageContext:
    """What a stage's function is given: its name, effective settings, the run directory and a per-unit
    checkpoint (``KeyedCheckpoint`` at ``units_path``, created on first use; a function that keeps its own
    checkpoint file, like ``measure``'s ``checkpoint=``, is given ``units_path`` instead: it goes with the stage)."""

    name: str
    settings: dict[str, Any]
    root: Path
    units_path: Path  # the unit checkpoint's file (for functions that keep their own ``checkpoint=`` file)
    _checkpoint: KeyedCheckpoint | None = field(default=None, repr=False)

    @property
    def checkpoint(self) -> KeyedCheckpoint:
        if self._checkpoint is None:
            self._checkpoint = KeyedCheckpoint(self.units_path, self.settings)
        return self._checkpoint

    def path(self, *parts: str) -> Path:
        """A path inside the run directory."""
        return self.root.joinpath(*parts)


class Stages:
    """The stages of one run directory (``root``); markers live in ``root/stages``.

    ``adopt=True`` (a directory made before this runner, whose settings the caller has checked as a whole): a stage
    with no marker whose declared outputs all exist is recorded as finished (result ``{"adopted": true}``) without
    running."""

    def __init__(self, root: str | Path, *, adopt: bool = False):
        self.root = Path(root)
        self.adopt = adopt

    # -- paths ------------------------------------------------------------------------------------------------
    def _file(self, name: str, suffix: str) -> Path:
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") for p in parts) or name.startswith("/"):
            raise ValueError(f"bad stage name {name!r}: use words separated by '/'")
        return self.root / "stages" / f"{name}{suffix}"

    def marker(self, name: str) -> Path:
        """The file that says ``name`` finished (``stages/<name>.json``)."""
        return self._file(name, ".json")

    # -- reading ----------------------------------------------------------------------------------------------
    def record(self, name: str) -> dict | None:
        """The marker of a finished stage (``settings``, ``result``, ``wall_s``, ...), or ``None``."""
        path = self.marker(name)
        if not path.exists():
            return None
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:  # markers are written atomically: not ours
            raise InputError(
                f"{path} is not a stage marker ({err}); delete it to redo stage {name!r}"
            ) from None
        if isinstance(rec, dict) and "settings" not in rec and "params" in rec:
            rec["settings"] = rec.pop("params")  # the RetMask study's markers before this runner
        if not isinstance(rec, dict) or "settings" not in rec:
            raise InputError(f"{path} is not a stage marker; delete it to redo stage {name!r}")
        return rec

    def done(self, name: str) -> bool:
        return self.marker(name).exists()

    def settings(self, name: str) -> dict:
        """The recorded settings of a finished stage (what a stage depending on it records)."""
        rec = self.record(name)
        if rec is None:
            raise StageMismatch(
                f"stage {name!r} is not finished in {self.root}; it has to run before the stages that depend on it"
            )
        return rec["settings"]

    def result(self, name: str) -> Any:
        rec = self.record(name)
        return None if rec is None else rec["result"]

    def names(self) -> list[str]:
        """Every finished stage, in name order."""
        base = self.root / "stages"
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(base).as_posix()[: -len(".json")]
            for p in base.rglob("*.json")
            if not p.name.endswith(".started.json")
        )

    def timings(self) -> dict[str, float]:
        """Wall seconds per finished stage and per group (the part of a name before its first ``/``; a stage named
        like a group counts in it)."""
        times: dict[str, float] = {}
        groups: dict[str, float] = {}
        for name in self.names():
            rec = self.record(name)
            if rec is None or "wall_s" not in rec:
                continue
            times[name] = float(rec["wall_s"])
            group = name.split("/")[0]
            groups[group] = groups.get(group, 0.0) + times[name]
        return times | {g: t for g, t in groups.items() if any(n.startswith(g + "/") for n in times)}

    # -- checking ---------------------------------------------------------------------------------------------
    def _resolve(self, upstream: Upstream) -> Any:
        if isinstance(upstream, str):
            return self.settings(upstream)
        if isinstance(upstream, Mapping):
            return {k: self._resolve(v) for k, v in upstream.items()}
        return [self._resolve(v) for v in upstream]

    def _check(self, name: str, where: Path, old: dict, new: dict, after: Mapping[str, Upstream]) -> None:
        if old == new:
            return
        a, b = _flat(old), _flat(new)
        changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        upstream = sorted({k.split(".")[0] for k in changed} & set(after))
        diff = settings_diff({k: a.get(k) for k in changed}, {k: b.get(k) for k in changed})
        if upstream:
            why = (
                f"stage {name!r} in {self.root} was made from other results of the stages it depends on "
                f"({', '.join(f'{k}: {after[k]}' for k in upstream)}): {diff}"
            )
        else:
            why = f"stage {name!r} in {self.root} was run with other settings: {diff}"
        raise StageMismatch(
            f"{why}. Use another output directory, or delete {where} (and what it made) to redo it"
        )

    def check(self, name: str, settings: Any, *, after: Mapping[str, Upstream] | None = None) -> dict:
        """The effective settings of ``name`` (``settings`` plus its upstream stages' recorded settings); raises
        ``StageMismatch`` if a finished or started run of it had other ones."""
        after = dict(after or {})
        eff = canonical(settings)
        if not isinstance(eff, dict):
            raise TypeError(
                f"settings of stage {name!r} must be a dict or a dataclass, got {type(settings).__name__}"
            )
        clash = set(after) & set(eff)
        if clash:
            raise ValueError(f"stage {name!r}: settings and after both have {sorted(clash)}")
        eff |= canonical({k: self._resolve(v) for k, v in after.items()})
        rec = self.record(name)
        if rec is not None:
            self._check(name, self.marker(name), rec["settings"], eff, after)
        started = self._file(name, ".started.json")
        if rec is None and started.exists():
            old = json.loads(started.read_text(encoding="utf-8"))["settings"]
            self._check(name, started, old, eff, after)
        return eff

    # -- running ----------------------------------------------------------------------------------------------
    def run(
        self,
        name: str,
        settings: Any,
        fn: Callable[[StageContext], Any],
        *,
        after: Mapping[str, Upstream] | None = None,
        outputs: Iterable[str] = (),
    ) -> Any:
        """Run ``fn(ctx)`` as stage ``name`` unless it finished with the same settings (then return its stored
        result). ``outputs``: files or folders (relative to the run directory) the stage makes; a finished stage
        missing one is run again. Returns the result as it reads back from JSON. The stage is locked while it is
        checked and run (``core.locks.run_lock`` on its marker): another process running it at the same time is
        refused (``RunLocked``), while processes running different stages of one directory go side by side."""
        from retmask_interp.core.locks import run_lock

        with run_lock(self.marker(name), what=f"stage {name!r} of {self.root}"):
            return self._run(name, settings, fn, after, [str(o) for o in outputs])

    def _run(self, name: str, settings: Any, fn, after, outputs: list[str]) -> Any:
        eff = self.check(name, settings, after=after)
        rec = self.record(name)
        if rec is not None:
            missing = [o for o in rec.get("outputs", outputs) if not (self.root / o).exists()]
            if not missing:
                log.info("stage %s: done, skipped", name)
                return rec["result"]
            log.warning("stage %s: finished, but %s are gone: running it again", name, missing)
            self.marker(name).unlink()
        started = self._file(name, ".started.json")
        if self.adopt and outputs and not started.exists() and all((self.root / o).exists() for o in outputs):
            log.info("stage %s: adopted (its outputs were made before the stage runner)", name)
            marker = {
                "name": name,
                "settings": eff,
                "result": {"adopted": True},
                "outputs": outputs,
                "wall_s": 0.0,
            }
            atomic_write_json(self.marker(name), marker)
            return marker["result"]
        atomic_write_json(started, {"name": name, "settings": eff})
        log.info("stage %s: running", name)
        ctx = StageContext(name, eff, self.root, self._file(name, ".units.jsonl"))
        begin, t0 = time.time(), time.perf_counter()
        result = canonical(fn(ctx))
        wall = time.perf_counter() - t0
        marker = {"name": name, "settings": eff, "result": result, "outputs": outputs, "wall_s": wall}
        marker |= {
            "started": begin,
            "finished": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        atomic_write_json(self.marker(name), marker)
        started.unlink(missing_ok=True)
        ctx.units_path.unlink(missing_ok=True)
        log.info("stage %s: %.1f s", name, wall)
        return result

    def remove(self, name: str, *paths: str) -> None:
        """Forget stage ``name`` (its marker, start record, unit checkpoint and recorded outputs) and delete
        ``paths`` (relative to the run directory) too, so that the next run redoes it."""
        rec = self.record(name)
        targets = list(paths) + list(rec.get("outputs", []) if rec else [])
        for suffix in (".json", ".started.json", ".units.jsonl"):
            self._file(name, suffix).unlink(missing_ok=True)
        for rel in targets:
            target = self.root / rel
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
