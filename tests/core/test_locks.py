"""The exclusive run lock (``core.locks``): a second writer is refused at once naming the holder; the lock is
released on any exit (also SIGKILL: a stale lock file does not block); it is re-entrant within a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from retmask_interp.core.io import InputError
from retmask_interp.core.locks import RunLocked, lock_holder, lock_path, run_lock

_HOLD = """
import sys, time
from retmask_interp.core.locks import run_lock
with run_lock(sys.argv[1], command="holder-of-the-lock"):
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(target):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(target)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = _holder(out)
    try:
        with pytest.raises(RunLocked, match=rf"being written by process {proc.pid} \(holder-of-the-lock\)"):
            with run_lock(out, what="pairs file"):
                pass
        assert isinstance(RunLocked("x"), InputError)
        assert lock_holder(out)["pid"] == proc.pid
        with run_lock(tmp_path / "other.jsonl"):  # another output is free
            pass
        # all or none: a free path listed with a held one is not kept locked
        with pytest.raises(RunLocked):
            with run_lock(tmp_path / "a.json", out):
                pass
        assert not lock_path(tmp_path / "a.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_a_stale_lock_that_does_not_block(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_path(out).exists()  # left behind by the killed run
    with run_lock(out):
        assert lock_holder(out)["pid"] == os.getpid()
    assert not lock_path(out).exists()  # a finished run removes its lock file


def test_released_on_an_exception_and_reentrant(tmp_path):
    out = tmp_path / "x.json"
    with pytest.raises(ZeroDivisionError):
        with run_lock(out):
            with run_lock(out):  # the same process again: not refused
                pass
            assert lock_path(out).exists()  # still held after the inner block
            raise ZeroDivisionError
    assert not lock_path(out).exists()
    proc = _holder(out)  # free again for another process
    proc.kill()
    proc.wait()


def test_lock_in_an_unwritable_place_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot create the run lock"):
        with run_lock(blocker / "sub" / "out.json"):
            pass


def test_waiting_for_a_finishing_holder_never_gives_two_holders(tmp_path):
    """The lock file is removed on release; a run that opened it just before sees the file replaced and retries,
    so two processes never hold the lock at once (checked by racing 4 processes for a counter)."""
    counter = tmp_path / "count"
    counter.write_text("0")
    code = f"""
import time, pathlib
from retmask_interp.core.locks import run_lock, RunLocked
c = pathlib.Path({str(counter)!r})
done = 0
t0 = time.time()
while done < 30 and time.time() - t0 < 30:
    try:
        with run_lock(c):
            v = int(c.read_text()); time.sleep(0.001); c.write_text(str(v + 1)); done += 1
    except RunLocked:
        pass
"""
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert int(counter.read_text()) == 120
