"""Small file helpers: atomic writes, refusal to overwrite, append-safe JSONL, and the input-error type.

``InputError`` (a ``ValueError``) is what every reader of a user file raises for a file it cannot use; its
message names the file (and line) and says what was expected. The CLI prints it as one line.

JSONL files are read in one of two ways. Input files (prompts, pairs to train on, needles) are read strictly: any
malformed line is an error naming ``file:line``. Files the package appends itself (detection samples, pairs being
made) may end in a torn record left by a killed run (``torn_tail=True``): it is skipped on reading and cut off by
``repair_jsonl_tail`` / ``append_jsonl`` before anything is appended.

Atomic writes go through ``.<name>.tmp-<pid>-<random>.tmp`` beside the target; a temp file of the same target
whose process is gone (a write killed before its rename) is removed by the next write of that target.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "InputError",
    "repair_jsonl_tail",
    "check_writable",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "refuse_overwrite",
    "read_jsonl",
    "append_jsonl",
    "settings_diff",
    "KeyedCheckpoint",
]


class InputError(ValueError):
    """A user-supplied file or option cannot be used; the message names it, the problem, and the fix."""


def check_writable(path: str | Path, what: str = "output") -> None:
    """Fail early (before any computing) if ``path`` cannot be created or written: names the directory."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give a file path")
    parent = path.parent
    probe = parent
    while not probe.exists():  # the first existing ancestor must let us create the missing directories
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot write {what} {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(
            f"cannot write {what} {path}: {path if path.exists() else probe} is not writable; "
            "choose another output path or fix its permissions"
        )


def refuse_overwrite(path: str | Path, overwrite: bool, what: str = "result") -> None:
    """Raise ``FileExistsError`` if ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; refusing to overwrite a finished {what}. "
            "Pass overwrite=True (CLI: --overwrite) or choose another path."
        )


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or unknown: leave its file alone
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete ``.<name>.tmp-<pid>-*.tmp`` files of ``path`` left by a process that no longer runs."""
    prefix = f".{path.name}.tmp-"
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            entry.unlink(missing_ok=True)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_jsonl(path: str | Path, *, torn_tail: bool = False) -> Iterator[dict]:
    """Yield the records (JSON objects) of a JSONL file; blank lines are skipped.

    Strict by default: a line that is not UTF-8, not JSON, or not an object raises ``InputError`` naming
    ``file:line``. ``torn_tail=True`` (only for files this package appends itself) skips a malformed *last*
    line: a record whose write was interrupted, redone on resume. A missing file yields nothing.
    """
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir():
        raise InputError(f"{path} is a directory; expected a JSONL file")
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict):
                raise TypeError(type(rec).__name__)
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, RecursionError) as err:
            if torn_tail and i == last:
                continue  # interrupted write of the last record: it is redone on resume
            if isinstance(err, UnicodeDecodeError):
                why = "is not UTF-8 text"
            elif isinstance(err, TypeError):
                why = f"is a JSON {err}, not an object"
            else:
                why = "is not valid JSON"
            raise InputError(
                f"{path}:{i + 1} {why}; every line must be one JSON object (fix or remove that line)"
            ) from None
        yield rec


def _last_line_start(fh, size: int) -> int:
    """Offset of the first byte after the last newline that precedes the final byte (0 if none)."""
    pos, chunk = size - 1, 1 << 16  # skip the final byte: it may be the line's own newline
    while pos > 0:
        start = max(0, pos - chunk)
        fh.seek(start)
        data = fh.read(pos - start)
        cut = data.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def repair_jsonl_tail(path: str | Path) -> bool:
    """Cut a torn last record (no final newline, not valid JSON, or NUL padding) off a JSONL file this package
    appends to. Returns whether anything was cut. Reads only the tail of the file."""
    path = Path(path)
    if not path.exists() or not path.stat().st_size:
        return False
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = _last_line_start(fh, size)
        fh.seek(start)
        tail = fh.read()
        if not tail.strip(b" \t\r\n"):
            if start == 0 or tail.endswith(b"\n"):
                return False
        ok = tail.endswith(b"\n")
        if ok:
            try:
                ok = isinstance(json.loads(tail.decode("utf-8")), dict)
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                ok = False
        if ok:
            return False
        fh.truncate(start)
    return True


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Append records, each as one line, flushed and fsynced so that a crash loses at most a partial line.
    A torn last line left by an interrupted run is cut off first (``repair_jsonl_tail``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_jsonl_tail(path)
    with path.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def settings_diff(old: dict, new: dict) -> str:
    """``"key was A, now B; ..."`` for every setting that differs (for errors refusing to mix results)."""
    keys = sorted(set(old) | set(new), key=str)
    return "; ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k))


class KeyedCheckpoint:
    """Finished units of a long computation (a masking condition, a head), one JSONL record each, so that an
    interrupted run redoes only the unit it was in. Records are ``{"key", "settings", "value"}``; ``key`` and
    ``value`` are JSON values, ``settings`` the parameters that determine every value. A record with other settings is
    refused (``InputError`` naming the settings), never mixed: a file holds the units of one run; whoever writes the
    finished result deletes the file. ``path=None``: nothing is kept (``get`` finds nothing, ``put`` does nothing).
    """

    def __init__(self, path: str | Path | None, settings: dict[str, Any]):
        self.path = None if path is None else Path(path)
        self.settings = json.loads(json.dumps(settings, default=str))  # as it reads back from the file
        self._done: dict[str, Any] = {}
        if self.path is None:
            return
        fix = f"delete {self.path} to recompute, or give another output directory"
        for i, rec in enumerate(read_jsonl(self.path, torn_tail=True)):
            if not {"key", "settings", "value"} <= set(rec):
                raise InputError(
                    f"{self.path}: record {i + 1} is not a checkpoint record of this package; {fix}"
                )
            if rec["settings"] != self.settings:
                raise InputError(
                    f"{self.path} holds {rec['key']!r} computed with other settings "
                    f"({settings_diff(rec['settings'], self.settings)}); they cannot be mixed with this run: {fix}"
                )
            self._done[self._key(rec["key"])] = rec["value"]

    @staticmethod
    def _key(key: Any) -> str:
        return json.dumps(key, sort_keys=True, default=str)

    def __len__(self) -> int:
        return len(self._done)

    def get(self, key: Any) -> Any | None:
        """The value stored for ``key``, or ``None``."""
        return self._done.get(self._key(key))

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` for ``key`` (appended and fsynced at once)."""
        if self.path is None:
            return
        rec = {"key": key, "settings": self.settings, "value": value}
        append_jsonl(self.path, [rec])
        self._done[self._key(key)] = json.loads(json.dumps(value, default=str))
