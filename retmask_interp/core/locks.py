"""One writer per output: an exclusive run lock held for the whole of a run.

``run_lock(path, ...)`` takes an OS file lock (``fcntl.flock``, exclusive, non-blocking) on ``.<name>.lock`` beside
each output ``path`` (a file or a directory) and holds it until the ``with`` block ends, however it ends. A second
run that wants the same output is refused at once with ``RunLocked`` (an ``InputError``, printed by ``retmask`` as
one line) naming the process that holds it (its pid and command line). The OS releases the lock when its process
dies (a crash, SIGKILL), so a lock file left behind by a killed run is stale and the next run simply takes it; a run
that ends normally removes its lock file.

Locks are re-entrant within a process (a command that locks its output and then calls a library function that
locks it again does not refuse itself) and are taken in sorted order, all or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from retmask_interp.core.io import InputError

try:  # POSIX; elsewhere runs are not locked (a warning is logged once)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLocked", "run_lock", "lock_path", "lock_holder"]


class RunLocked(InputError):
    """Another running process holds the output this run wants to write."""


_held: dict[str, tuple[int, int]] = {}  # lock file -> (fd, depth), this process
_guard = threading.Lock()


def lock_path(path: str | Path) -> Path:
    """The lock file of an output: ``.<name>.lock`` in the same directory."""
    path = Path(path).expanduser().absolute()
    return path.with_name(f".{path.name}.lock")


def lock_holder(path: str | Path) -> dict | None:
    """What the lock file of ``path`` says about its holder (``pid``, ``command``), or None."""
    try:
        info = json.loads(lock_path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _wait_for_holder(target: Path, seconds: float = 2.0) -> dict | None:
    """The holder's record; a holder that has just taken the lock writes it a moment later, so wait for it a little
    (``seconds`` at most) rather than name "another process"."""
    deadline = time.monotonic() + seconds
    while True:
        info = lock_holder(target)
        if (info and "pid" in info) or time.monotonic() >= deadline:
            return info
        time.sleep(0.02)


def _describe(info: dict | None) -> str:
    if not info or "pid" not in info:
        return "another process"
    return f"process {info['pid']} ({info.get('command') or '?'})"


def _acquire(lock: Path, target: Path, what: str) -> int:
    """Open and lock ``lock``; the fd. Retries when the file was replaced (removed by a finishing holder)."""
    for _ in range(100):
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise InputError(
                f"cannot create the run lock {lock} of {what} {target} ({err.strerror}); choose another output "
                "path or fix its permissions"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _describe(_wait_for_holder(target))
            raise RunLocked(
                f"{what} {target} is being written by {holder}, which is still running; wait for it to finish "
                f"(or stop it), or give another output path"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file after we opened it: ours is then orphaned
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise RunLocked(f"could not lock {lock} (it keeps being replaced); is another run starting and stopping?")


def _release(lock: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        lock.unlink()  # while still locked: a run waiting on this inode re-opens the path (see _acquire)
    os.close(fd)


@contextlib.contextmanager
def run_lock(*paths: str | Path | None, what: str = "output", command: str | None = None) -> Iterator[None]:
    """Hold exclusive run locks on ``paths`` (None entries are ignored) for the ``with`` block.

    Raises ``RunLocked`` naming the holder if another process holds any of them (nothing is locked then).
    ``command`` is recorded for the refusal message of others (default: this process's command line).
    """
    targets = sorted({Path(p).expanduser().absolute() for p in paths if p is not None})
    if fcntl is None or not targets:  # pragma: no cover
        yield
        return
    info = {"pid": os.getpid(), "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    taken: list[Path] = []
    try:
        for target in targets:
            lock = lock_path(target)
            key = str(lock)
            with _guard:
                if key in _held:
                    fd, depth = _held[key]
                    _held[key] = (fd, depth + 1)
                    taken.append(lock)
                    continue
                fd = _acquire(lock, target, what)
                _held[key] = (fd, 1)
                taken.append(lock)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        yield
    finally:
        with _guard:
            for lock in reversed(taken):
                fd, depth = _held[str(lock)]
                if depth > 1:
                    _held[str(lock)] = (fd, depth - 1)
                else:
                    del _held[str(lock)]
                    _release(lock, fd)
