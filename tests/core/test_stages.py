"""core.stages: finished stages are skipped, other settings are refused by name (also upstream ones), a stage
killed mid-way resumes to the uninterrupted result, and nothing half-written is taken for finished."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from retmask_interp.core.io import InputError, atomic_write_text, read_jsonl
from retmask_interp.core.stages import StageMismatch, Stages


@dataclass
class Squares:
    n: int = 5
    offset: int = 0


class Crash(Exception):
    pass


def squares(calls: list[int], crash_at: int | None = None):
    """A stage of ``n`` units, each checkpointed; writes ``squares.json`` at the end."""

    def fn(ctx):
        out = []
        for i in range(ctx.settings["n"]):
            got = ctx.checkpoint.get(i)
            if got is None:
                if i == crash_at:
                    raise Crash(i)
                calls.append(i)
                got = i * i + ctx.settings["offset"]
                ctx.checkpoint.put(i, got)
            out.append(got)
        atomic_write_text(ctx.path("squares.json"), json.dumps(out))
        return {"sum": sum(out)}

    return fn


def test_a_finished_stage_is_skipped_and_its_result_returned(tmp_path):
    calls: list[int] = []
    st = Stages(tmp_path)
    assert st.run("sq", Squares(), squares(calls), outputs=["squares.json"]) == {"sum": 30}
    assert calls == [0, 1, 2, 3, 4]
    calls.clear()
    assert Stages(tmp_path).run("sq", Squares(), squares(calls), outputs=["squares.json"]) == {"sum": 30}
    assert calls == []  # not called again
    rec = st.record("sq")
    assert (
        rec["settings"] == {"n": 5, "offset": 0} and rec["wall_s"] >= 0 and rec["outputs"] == ["squares.json"]
    )
    assert st.names() == ["sq"] and set(st.timings()) == {"sq"}


def test_other_settings_are_refused_naming_the_setting(tmp_path):
    st = Stages(tmp_path)
    st.run("sq", Squares(), squares([]))
    with pytest.raises(StageMismatch, match=r"stage 'sq' .* other settings: offset was 0, now 7") as err:
        st.run("sq", Squares(offset=7), squares([]))
    assert isinstance(err.value, InputError) and "delete" in str(err.value)
    # nested settings are named by their dotted path
    st.run("nested", {"sampling": {"temperature": 0.6, "top_p": 1.0}}, lambda ctx: 1)
    with pytest.raises(StageMismatch, match=r"sampling\.top_p was 1\.0, now 0\.9"):
        st.run("nested", {"sampling": {"temperature": 0.6, "top_p": 0.9}}, lambda ctx: 1)


def test_an_upstream_change_invalidates_downstream(tmp_path):
    st = Stages(tmp_path)
    with pytest.raises(StageMismatch, match="stage 'up' is not finished"):
        st.run("down", {"k": 1}, lambda ctx: 0, after={"source": "up"})
    st.run("up", {"seed": 0}, lambda ctx: "a")
    st.run("g/one", {"x": 1}, lambda ctx: 1)
    st.run("g/two", {"x": 2}, lambda ctx: 2)
    down = st.run(
        "down", {"k": 1}, lambda ctx: ctx.settings, after={"source": "up", "both": ["g/one", "g/two"]}
    )
    assert down == {"k": 1, "source": {"seed": 0}, "both": [{"x": 1}, {"x": 2}]}
    assert st.run("down", {"k": 1}, lambda ctx: 0, after={"source": "up", "both": ["g/one", "g/two"]}) == down
    # the upstream stage redone with another seed: the downstream stage says which upstream setting changed
    st.remove("up")
    st.run("up", {"seed": 1}, lambda ctx: "b")
    with pytest.raises(StageMismatch, match=r"depends on \(source: up\): source\.seed was 0, now 1"):
        st.run("down", {"k": 1}, lambda ctx: 0, after={"source": "up", "both": ["g/one", "g/two"]})
    with pytest.raises(ValueError, match="settings and after both"):
        st.run("other", {"source": 1}, lambda ctx: 0, after={"source": "up"})
    assert st.timings()["g"] == pytest.approx(st.timings()["g/one"] + st.timings()["g/two"])


def test_a_crash_mid_stage_resumes_to_the_uninterrupted_result(tmp_path):
    whole: list[int] = []
    expected = Stages(tmp_path / "a").run("sq", Squares(n=6), squares(whole), outputs=["squares.json"])
    calls: list[int] = []
    st = Stages(tmp_path / "b")
    with pytest.raises(Crash):
        st.run("sq", Squares(n=6), squares(calls, crash_at=3), outputs=["squares.json"])
    assert calls == [0, 1, 2] and not st.done("sq") and not (tmp_path / "b" / "squares.json").exists()
    # the finished units are kept; a resume with other settings is refused before it mixes them in
    assert len(list(read_jsonl(tmp_path / "b" / "stages" / "sq.units.jsonl"))) == 3
    with pytest.raises(StageMismatch, match="offset was 0, now 1"):
        st.run("sq", Squares(n=6, offset=1), squares(calls), outputs=["squares.json"])
    assert st.run("sq", Squares(n=6), squares(calls), outputs=["squares.json"]) == expected
    assert calls == [0, 1, 2, 3, 4, 5]  # each unit computed once over both attempts
    for name in ("squares.json", "stages/sq.json"):
        assert (tmp_path / "a" / name).read_text().split('"wall_s"')[0] == (
            (tmp_path / "b" / name).read_text().split('"wall_s"')[0]
        )
    assert sorted(p.name for p in (tmp_path / "b" / "stages").iterdir()) == [
        "sq.json"
    ]  # no partial files left


KILLED = """
import os, sys
from retmask_interp.core.stages import Stages
from retmask_interp.core.io import atomic_write_text
def fn(ctx):
    for i in range(4):
        if ctx.checkpoint.get(i) is None:
            if i == 2 and sys.argv[2] == "die":
                os._exit(9)  # a killed process: no exception handler, no cleanup
            ctx.checkpoint.put(i, i)
    atomic_write_text(ctx.path("out.txt"), "done")
    return 4
print(Stages(sys.argv[1]).run("s", {"n": 4}, fn, outputs=["out.txt"]))
"""


def test_a_killed_stage_leaves_nothing_taken_for_finished(tmp_path):
    run = [sys.executable, "-c", KILLED, str(tmp_path)]
    assert subprocess.run([*run, "die"]).returncode == 9
    st = Stages(tmp_path)
    assert not st.done("s") and not (tmp_path / "out.txt").exists()
    assert subprocess.run([*run, "live"], capture_output=True, text=True).stdout.strip() == "4"
    assert st.result("s") == 4 and (tmp_path / "out.txt").read_text() == "done"


def test_a_failed_marker_write_leaves_the_stage_unfinished(tmp_path, monkeypatch):
    import retmask_interp.core.io as cio

    st = Stages(tmp_path)
    real = cio.os.replace

    def fail(src, dst):
        if str(dst).endswith("stages/s.json"):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(cio.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        st.run("s", {"a": 1}, lambda ctx: 1)
    assert not st.done("s") and not list((tmp_path / "stages").glob(".s.json*"))  # no temp file left
    monkeypatch.undo()
    assert st.run("s", {"a": 1}, lambda ctx: 2) == 2


def test_missing_outputs_rerun_and_remove_forgets(tmp_path):
    calls: list[int] = []
    st = Stages(tmp_path)
    st.run("sq", Squares(n=2), squares(calls), outputs=["squares.json"])
    (tmp_path / "squares.json").unlink()
    st.run("sq", Squares(n=2), squares(calls), outputs=["squares.json"])
    assert calls == [0, 1, 0, 1] and (tmp_path / "squares.json").exists()
    st.remove("sq")
    assert not st.done("sq") and not (tmp_path / "squares.json").exists()


def test_old_markers_and_bad_names(tmp_path):
    st = Stages(tmp_path)
    old = {"name": "train/x", "params": {"lr": 1e-5}, "result": {"loss": 0.5}, "wall_s": 3.0}
    (tmp_path / "stages" / "train").mkdir(parents=True)
    (tmp_path / "stages" / "train" / "x.json").write_text(json.dumps(old))
    assert st.run("train/x", {"lr": 1e-5}, lambda ctx: 1 / 0) == {"loss": 0.5}
    with pytest.raises(StageMismatch, match="lr was 1e-05, now 2e-05"):
        st.run("train/x", {"lr": 2e-5}, lambda ctx: 0)
    (tmp_path / "stages" / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not a stage marker"):
        st.run("bad", {}, lambda ctx: 0)
    for name in ("", "../x", "a//b", "/abs"):
        with pytest.raises(ValueError, match="bad stage name"):
            st.run(name, {}, lambda ctx: 0)


def test_adopt_records_outputs_made_before_the_runner(tmp_path):
    (tmp_path / "old.csv").write_text("a\n1\n")
    st = Stages(tmp_path, adopt=True)
    assert st.run("old", {"k": 1}, lambda ctx: 1 / 0, outputs=["old.csv"]) == {"adopted": True}
    assert st.run("new", {"k": 1}, lambda ctx: 5, outputs=["new.csv"]) == 5  # outputs missing: it runs
    assert st.run("none", {"k": 1}, lambda ctx: 6) == 6  # nothing declared: nothing to adopt
    assert Stages(tmp_path).run("old", {"k": 1}, lambda ctx: 1 / 0, outputs=["old.csv"]) == {"adopted": True}
    with pytest.raises(StageMismatch, match="k was 1, now 2"):
        Stages(tmp_path).run("old", {"k": 2}, lambda ctx: 0, outputs=["old.csv"])


HOLDS = """
import sys, time
from pathlib import Path
from retmask_interp.core.stages import Stages
def fn(ctx):
    Path(sys.argv[2]).write_text("in")
    while not Path(sys.argv[3]).exists():
        time.sleep(0.05)
    return 1
Stages(sys.argv[1]).run("s", {"a": 1}, fn)
"""


def test_a_stage_running_in_another_process_is_refused(tmp_path):
    import time

    from retmask_interp.core.locks import RunLocked

    inside, release = tmp_path / "inside", tmp_path / "release"
    proc = subprocess.Popen([sys.executable, "-c", HOLDS, str(tmp_path / "run"), str(inside), str(release)])
    try:
        for _ in range(600):
            if inside.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert inside.exists()
        st = Stages(tmp_path / "run")
        with pytest.raises(RunLocked, match=f"process {proc.pid}"):
            st.run("s", {"a": 1}, lambda ctx: 2)
        assert st.run("other", {"a": 1}, lambda ctx: 3) == 3  # another stage of the directory goes ahead
    finally:
        release.write_text("go")
        proc.wait(timeout=60)
    assert proc.returncode == 0 and st.result("s") == 1 and st.run("s", {"a": 1}, lambda ctx: 2) == 1
