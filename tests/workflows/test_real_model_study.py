"""The real-model study workflow: configuration checks, resumability and the keys of its results.

Runs on the embedded organism with a two-sample grid (detection and organisation only: the masking stages are
the package's own functions, tested in tests/measure); nothing here needs SmolLM2 or Gemma-3."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retmask_interp.core.stages import StageMismatch
from retmask_interp.heads.scores import HeadScores
from retmask_interp.organism import available_organisms
from retmask_interp.workflows.studies import real_models as rmw
from retmask_interp.workflows.studies.real_models import StudyConfig, StudyConfigError, resolve_config

needs_organism = pytest.mark.skipif(
    "concentrated" not in available_organisms(), reason="organism weights missing"
)


def test_full_grid_follows_the_window():
    smol = resolve_config(StudyConfig(), max_context=8192, chat=True, cuda=True)
    assert (smol.min_length, smol.max_length) == (1000, 8000)
    assert smol.styles == ["chat"] and smol.dtypes == ["bfloat16", "float32"]
    assert smol.seeds >= 10 and smol.topk_seeds >= 5 and smol.ks == [1, 2, 4, 8, 16, 32]
    gemma = resolve_config(StudyConfig(model="gemma-3-270m"), max_context=32768, chat=False, cuda=True)
    assert gemma.max_length == 32000 and gemma.styles == ["continuation", "qa"]
    cpu = resolve_config(StudyConfig(grid="small"), max_context=8192, chat=True, cuda=False)
    assert cpu.dtypes == ["float32"] and cpu.max_length == 1000 and cpu.single_heads is not None
    # a GPU study's results re-read on a CPU (organisation, stability, summary): no model runs, bf16 is fine
    reread = StudyConfig(dtypes=["bfloat16", "float32"], stages=["organisation"])
    assert resolve_config(reread, max_context=8192, chat=True, cuda=False).dtypes == ["bfloat16", "float32"]


@pytest.mark.parametrize(
    "kwargs, cuda, chat, message",
    [
        ({"grid": "huge"}, False, True, "grid must be one of 'full', 'small', got 'huge'"),
        ({"dtypes": ["bfloat16"]}, False, True, "need a GPU"),
        ({"styles": ["chat"]}, False, False, "chat template"),
        ({"modes": ["zero", "bogus"]}, False, True, "every value of modes must be one of .*, got 'bogus'"),
        ({"modes": []}, False, True, "no masking mode"),
        ({"styles": ["Chat"]}, False, True, "every value of styles must be one of"),
        ({"stages": ["detect"]}, False, True, r"every value of stages .* \(CLI: --stage\)"),
        ({"seeds": 0}, False, True, "seeds must be >= 1"),
        ({"min_length": 5000, "max_length": 1000}, False, True, "lengths"),
        ({"haystacks": ["synthetic:0", "synthetic:0"]}, False, True, "duplicates"),
        ({"threshold": 0.0}, False, True, "threshold"),
    ],
)
def test_invalid_configs_are_refused(kwargs, cuda, chat, message):
    with pytest.raises(StudyConfigError, match=message):
        resolve_config(StudyConfig(**kwargs), max_context=8192, chat=chat, cuda=cuda)


def test_detection_conditions_primary_first():
    cfg = resolve_config(
        StudyConfig(haystacks=["essays", "synthetic:0"], styles=["qa", "continuation"]),
        max_context=32768, chat=False, cuda=True,
    )  # fmt: skip
    conds = rmw.detection_conditions(cfg)
    assert conds[0] == ("essays", "qa", "bfloat16")
    assert len(conds) == 2 * 2 + 1 and conds[-1] == ("essays", "qa", "float32")
    assert len({rmw.tag(*c) for c in conds}) == len(conds)  # one file per condition


def _hs(seed: int) -> HeadScores:
    m = np.random.default_rng(seed).random((4, 3)) ** 4
    return HeadScores({(a, b): float(m[a, b]) for a in range(4) for b in range(3)}, 4, 3, model="x")


def test_stability_and_organisation_keys():
    pairs = rmw.stability(_hs(0), {"other": _hs(1), "same": _hs(0)}, ks=(2, 5))
    assert [p["condition"] for p in pairs] == ["other", "same"]
    assert pairs[1]["spearman"] == pytest.approx(1.0) and pairs[1]["top5_overlap"] == 5
    assert {"spearman", "top2_overlap", "top5_jaccard"} <= set(pairs[0])
    org = rmw.organisation({"a": _hs(0)})
    assert {"gini", "n_ge_0.1", "effective_heads", "layer_mass_share"} <= set(org["a"])


def test_spread_subset_covers_the_grid():
    assert rmw.spread_subset(list(range(10)), 20) == list(range(10))
    sub = rmw.spread_subset(list(range(100)), 10)
    assert sub == list(range(0, 100, 10))


def test_spread_subset_balances_lengths_depths_and_needles():
    """The study's grid is needle-major (needle, length, depth); 48 of 8 lengths x 5 depths x 3 needles must use
    every depth (evenly spaced indices took only depths 0 and 50: the SmolLM2 run of 2026-12-02)."""
    from collections import Counter
    from types import SimpleNamespace

    grid = [
        SimpleNamespace(needle={"text": f"n{n}"}, needle_index=n, context_length=1000 * (i + 1), depth=d)
        for n in range(3)
        for i in range(8)
        for d in (0.0, 25.0, 50.0, 75.0, 100.0)
    ]
    sub = rmw.spread_subset(grid, 48)
    assert len(sub) == 48 and len({id(s) for s in sub}) == 48
    assert [grid.index(s) for s in sub] == sorted(grid.index(s) for s in sub)  # grid order kept
    for attr, n_values in (("context_length", 8), ("depth", 5), ("needle_index", 3)):
        c = Counter(getattr(s, attr) for s in sub)
        assert len(c) == n_values, attr
        assert max(c.values()) - min(c.values()) <= 1, (attr, c)
    old = [grid[int(i * 2.5)] for i in range(48)]  # the previous rule, for the record
    assert {s.depth for s in old} == {0.0, 50.0}


def _tiny(**kw) -> StudyConfig:
    base = dict(
        model="organism", grid="small", haystacks=["synthetic:0", "synthetic:1"], min_length=200,
        max_length=200, num_lengths=1, num_depths=2, needles=1, max_new_tokens=12,
        stages=["detection", "organisation"],
    )  # fmt: skip
    return StudyConfig(**(base | kw))


def _probe(cfg):
    return 2048, True, False


@needs_organism
def test_study_resumes_and_refuses_changed_parameters(tmp_path, monkeypatch):
    out = tmp_path / "study"
    summary = rmw.run_study(out, _tiny(), probe=_probe)
    assert set(summary) >= {"model", "detection", "stability", "retrieval_heads", "organisation", "config"}
    tags = list(summary["detection"])
    assert tags == ["synthetic-0.chat.float32", "synthetic-1.chat.float32"]
    d = summary["detection"][tags[0]]
    assert d["num_samples"] == 2 and 0 <= d["counted_rate"] <= 1
    assert (out / "heads.json").exists() and (out / "summary.md").exists()
    assert json.loads((out / "stability.json").read_text())["pairs"][0]["condition"] == tags[1]
    for tag in tags:
        assert (out / "detect" / f"{tag}.samples.jsonl").exists()

    # a finished stage is not recomputed
    def boom(*a, **k):
        raise AssertionError("detection ran again")

    monkeypatch.setattr("retmask_interp.measure.detect.detect_heads", boom)
    monkeypatch.setattr("retmask_interp.core.models.load_model", boom)  # nor is the model loaded for it
    markers = {p: p.read_text() for p in (out / "stages").rglob("*.json")}
    again = rmw.run_study(out, _tiny(), probe=_probe)
    assert again["detection"] == summary["detection"] and again["timings_s"] == summary["timings_s"]
    assert {p: p.read_text() for p in (out / "stages").rglob("*.json")} == markers  # not counted again
    # changed parameters are refused naming them, and overwrite starts afresh
    with pytest.raises(
        StageMismatch, match=r"stage 'detect/synthetic-0.chat.float32' .* num_depths was 2, now 3"
    ):
        rmw.run_study(out, _tiny(num_depths=3), probe=_probe)
    # a directory made before the stage runner (config.json and result files, no stages/): resumed with the same
    # settings (its result files adopted, nothing run again), refused naming the setting with others
    import shutil

    shutil.rmtree(out / "stages")
    with pytest.raises(StageMismatch, match="before the stage runner .*num_depths was 2, now 3"):
        rmw.run_study(out, _tiny(num_depths=3), probe=_probe)
    assert rmw.run_study(out, _tiny(), probe=_probe)["detection"] == summary["detection"]
    assert json.loads((out / "stages" / "detect" / f"{tags[0]}.json").read_text())["result"] == {
        "adopted": True
    }
    monkeypatch.undo()
    again = rmw.run_study(out, _tiny(num_depths=3, overwrite=True), probe=_probe)
    assert again["detection"][tags[0]]["num_samples"] == 3


@needs_organism
def test_detection_resumes_from_the_samples_file(tmp_path):
    out = tmp_path / "study"
    rmw.run_study(out, _tiny(haystacks=["synthetic:0"]), probe=_probe)
    tag = "synthetic-0.chat.float32"
    (out / "detect" / f"{tag}.heads.json").unlink()
    lines = (out / "detect" / f"{tag}.samples.jsonl").read_text().splitlines()
    (out / "detect" / f"{tag}.samples.jsonl").write_text(lines[0] + "\n")  # one of two samples done
    summary = rmw.run_study(out, _tiny(haystacks=["synthetic:0"]), probe=_probe)
    assert summary["detection"][tag]["num_samples"] == 2
    assert len((out / "detect" / f"{tag}.samples.jsonl").read_text().splitlines()) == 2


@needs_organism
def test_interrupted_stages_resume_to_the_same_results(tmp_path, monkeypatch):
    """Masking, top-k and attention stages keep finished units in their unit checkpoints: a study killed inside the
    top-k stage resumes to the uninterrupted study's tables, and no partial file is left once a stage is done."""
    import pandas as pd

    cfg = _tiny(
        haystacks=["synthetic:0"], num_depths=3, stages=list(rmw.STAGES), seeds=2, topk_seeds=1, ks=[1, 2],
        masking_samples=3, attention_samples=2, single_heads=2, threshold=0.05,
    )  # fmt: skip
    from retmask_interp.core.io import KeyedCheckpoint

    full = rmw.run_study(tmp_path / "a", cfg, probe=_probe)
    assert full["masking"] and full["topk"], "the stages under test did not run"
    assert not list((tmp_path / "a").rglob("*.units.jsonl"))

    real_put = KeyedCheckpoint.put

    def dies_in_topk(self, key, value):
        """Keeps the unit, then kills the run once the top-k stage has kept its first condition."""
        real_put(self, key, value)
        if self.path is not None and self.path.name == "topk.units.jsonl":
            raise KeyboardInterrupt

    monkeypatch.setattr(KeyedCheckpoint, "put", dies_in_topk)
    with pytest.raises(KeyboardInterrupt):
        rmw.run_study(tmp_path / "b", cfg, probe=_probe)
    partial = tmp_path / "b" / "stages" / "topk.units.jsonl"
    assert len(partial.read_text().splitlines()) == 1 and (tmp_path / "b" / "masking_summary.csv").exists()
    monkeypatch.setattr(KeyedCheckpoint, "put", real_put)
    rmw.run_study(tmp_path / "b", cfg, probe=_probe)
    assert not list((tmp_path / "b").rglob("*.units.jsonl"))
    for name in ("masking_outcomes.csv", "topk_curve.csv", "topk_outcomes.csv", "single_head_effects.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "b" / name), pd.read_csv(tmp_path / "a" / name), obj=name
        )
    # cut during the single heads: the compensation table written before them is read back, not recomputed
    (tmp_path / "b" / "single_head_effects.csv").unlink()

    def no_compensation(*a, **k):
        raise AssertionError("compensation recomputed")

    monkeypatch.setattr("retmask_interp.measure.attention.compensation", no_compensation)
    rmw.run_study(tmp_path / "b", cfg, probe=_probe)
    for name in ("compensation.csv", "single_head_effects.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "b" / name), pd.read_csv(tmp_path / "a" / name), obj=name
        )
