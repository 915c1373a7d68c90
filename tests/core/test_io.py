"""core.io: strict input JSONL vs torn-tail tolerance of our own files, tail repair, stale temp files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from retmask_interp.core.io import (
    InputError,
    append_jsonl,
    atomic_write_text,
    check_writable,
    read_jsonl,
    repair_jsonl_tail,
)


def _write(path, text: bytes):
    path.write_bytes(text)
    return path


def test_strict_reading_refuses_a_torn_last_line(tmp_path):
    path = _write(tmp_path / "prompts.jsonl", b'{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c')
    with pytest.raises(InputError, match=r"prompts.jsonl:3 is not valid JSON"):
        list(read_jsonl(path))
    assert [r["prompt"] for r in read_jsonl(path, torn_tail=True)] == ["a", "b"]


def test_strict_reading_names_non_utf8_and_non_object_lines(tmp_path):
    path = _write(tmp_path / "p.jsonl", b'{"prompt": "a"}\n\n{"prompt": "\xff"}\n')
    with pytest.raises(InputError, match=r"p.jsonl:3 is not UTF-8"):
        list(read_jsonl(path))
    path = _write(tmp_path / "q.jsonl", b'{"prompt": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match=r"q.jsonl:2 is a JSON list, not an object"):
        list(read_jsonl(path))


def test_a_damaged_middle_line_is_an_error_even_with_torn_tail(tmp_path):
    path = _write(tmp_path / "s.jsonl", b'{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(InputError, match=r"s.jsonl:2"):
        list(read_jsonl(path, torn_tail=True))


@pytest.mark.parametrize(
    "tail",
    [b'{"a": 2', b'{"a": 2\n', b"\x00\x00\x00\x00", b"\x00\x00\n", b'{"a": 2}garbage\n', b"[3]\n"],
    ids=["no-newline", "torn-with-newline", "nul-padding", "nul-newline", "junk", "not-object"],
)
def test_append_repairs_a_torn_tail_first(tmp_path, tail):
    path = _write(tmp_path / "s.jsonl", b'{"a": 1}\n' + tail)
    append_jsonl(path, [{"a": 3}])
    assert path.read_bytes() == b'{"a": 1}\n{"a": 3}\n'
    assert [r["a"] for r in read_jsonl(path)] == [1, 3]  # strictly readable again


def test_repair_leaves_good_files_alone(tmp_path):
    good = b'{"a": 1}\n{"a": 2}\n'
    path = _write(tmp_path / "s.jsonl", good)
    assert repair_jsonl_tail(path) is False and path.read_bytes() == good
    long = json.dumps({"ids": list(range(40_000))}).encode() + b"\n"  # longer than one read chunk
    path = _write(tmp_path / "l.jsonl", long + long[:-5])
    assert repair_jsonl_tail(path) is True and path.read_bytes() == long
    assert repair_jsonl_tail(tmp_path / "missing.jsonl") is False


def test_stale_temp_file_of_a_killed_write_is_removed(tmp_path):
    target = tmp_path / "heads.json"
    # a process that dies between writing its temp file and the rename
    code = (
        "import os, sys, tempfile\n"
        f"fd, tmp = tempfile.mkstemp(prefix='.heads.json.tmp-' + str(os.getpid()) + '-', suffix='.tmp', "
        f"dir={str(tmp_path)!r})\n"
        "os.write(fd, b'partial'); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    other = tmp_path / ".other.json.tmp-1-x.tmp"  # another target's temp file: not ours to delete
    other.write_text("x")
    live = tmp_path / f".heads.json.tmp-{os.getpid()}-live.tmp"  # a live process's write in progress
    live.write_text("x")
    assert len(list(tmp_path.glob(".heads.json.tmp-*.tmp"))) == 2
    atomic_write_text(target, "done")
    assert target.read_text() == "done"
    assert [p.name for p in tmp_path.glob(".heads.json.tmp-*.tmp")] == [live.name]
    assert other.exists()


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new" / "dir" / "out.json")  # missing directories are created later: fine
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="is a file, not a directory"):
        check_writable(blocker / "out.json")
    if os.geteuid() == 0:
        pytest.skip("root can write to read-only directories")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match="not writable"):
            check_writable(ro / "sub" / "out.json")
    finally:
        ro.chmod(0o755)


def test_keyed_checkpoint_resumes_and_refuses_other_settings(tmp_path):
    from retmask_interp.core.io import InputError, KeyedCheckpoint

    path = tmp_path / "part.jsonl"
    ck = KeyedCheckpoint(path, {"mode": "zero", "n": 3})
    assert ck.get(["a", [[0, 1]]]) is None and len(ck) == 0
    ck.put(["a", [[0, 1]]], [{"x": 1.5, "t": "text"}])
    ck.put(["b", []], {"lp": [0.1, -2.0]})
    again = KeyedCheckpoint(path, {"n": 3, "mode": "zero"})  # the same settings, in another order
    assert len(again) == 2
    assert again.get(["a", [[0, 1]]]) == [{"x": 1.5, "t": "text"}]
    assert again.get(["b", []]) == {"lp": [0.1, -2.0]} and again.get(["a", [[0, 2]]]) is None
    with pytest.raises(InputError, match="mode was 'zero', now 'mean'"):
        KeyedCheckpoint(path, {"mode": "mean", "n": 3})
    with path.open("a") as fh:  # a record torn by a killed run is skipped, then cut off by the next put
        fh.write('{"key": ["c", []], "settings": {"mo')
    torn = KeyedCheckpoint(path, {"mode": "zero", "n": 3})
    assert len(torn) == 2
    torn.put(["c", []], 7)
    assert len(KeyedCheckpoint(path, {"mode": "zero", "n": 3})) == 3
    (tmp_path / "other.jsonl").write_text('{"sample_id": "s0"}\n')
    with pytest.raises(InputError, match="not a checkpoint record"):
        KeyedCheckpoint(tmp_path / "other.jsonl", {})
    off = KeyedCheckpoint(None, {"mode": "zero"})
    off.put("a", 1)
    assert off.get("a") is None
