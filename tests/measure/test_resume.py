"""Resumed detection never mixes results: every setting that changes a sample, the model and the prompts are
compared on resume, and a mismatch names what changed. Samples files that are not ours are never touched."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import NiahSample as _Sample
from helpers import WordTokenizer as _Tok
from helpers import make_tiny_model

from retmask_interp.cli import main
from retmask_interp.core.io import InputError
from retmask_interp.heads.scores import load_head_scores
from retmask_interp.measure.detect import DetectConfig, detect_heads


def _samples(seed: int = 0, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    return [
        _Sample(f"s{i}", torch.randint(0, 64, (24,), generator=g).tolist(), (2, 12), {"real_needle": "t1"})
        for i in range(n)
    ]


@pytest.fixture
def rm():
    from retmask_interp.core.models import as_model

    return as_model(make_tiny_model("llama"), _Tok())


def _partial(rm, tmp_path, cfg):
    path = tmp_path / "samples.jsonl"
    detect_heads(rm, _samples()[:2], cfg, samples_path=path, progress=False)
    return path


def test_resume_with_another_rouge_threshold_is_refused_and_named(rm, tmp_path):
    path = _partial(rm, tmp_path, DetectConfig(max_new_tokens=4, rouge_threshold=0))
    with pytest.raises(InputError, match=r"rouge_threshold was 0, now 0\.3"):
        detect_heads(rm, _samples(), DetectConfig(max_new_tokens=4, rouge_threshold=0.3), samples_path=path)


def test_resume_with_another_model_is_refused_and_named(rm, tmp_path):
    from retmask_interp.core.models import as_model

    path = _partial(rm, tmp_path, DetectConfig(max_new_tokens=4, rouge_threshold=0))
    other = as_model(make_tiny_model("llama", seed=1), _Tok())  # same name and config, other weights
    assert other.name == rm.name
    with pytest.raises(InputError, match=r"model_hash was '[0-9a-f]+', now '[0-9a-f]+'"):
        detect_heads(other, _samples(), DetectConfig(max_new_tokens=4, rouge_threshold=0), samples_path=path)


def test_resume_with_another_prompt_for_the_same_id_is_refused(rm, tmp_path):
    cfg = DetectConfig(max_new_tokens=4, rouge_threshold=0)
    path = _partial(rm, tmp_path, cfg)
    with pytest.raises(InputError, match=r"sample 's0' was scored on a different prompt"):
        detect_heads(rm, _samples(seed=5), cfg, samples_path=path)


def test_bad_detect_settings_are_refused():
    with pytest.raises(InputError, match=r"rouge_threshold must be in \[0, 1\)"):
        DetectConfig(rouge_threshold=2)
    with pytest.raises(InputError, match="batch_size"):
        DetectConfig(batch_size=0)
    with pytest.raises(InputError, match="max_new_tokens"):
        DetectConfig(max_new_tokens=0)


def test_torn_last_line_ending_in_newline_is_repaired_on_resume(rm, tmp_path):
    cfg = DetectConfig(max_new_tokens=4, rouge_threshold=0)
    full = detect_heads(rm, _samples(), cfg, progress=False)
    path = _partial(rm, tmp_path, cfg)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1][: len(lines[1]) // 2] + b"\n")  # torn, then a newline
    resumed = detect_heads(rm, _samples(), cfg, samples_path=path, progress=False)
    recs = [json.loads(x) for x in path.read_text().splitlines()]  # every line valid again
    assert sorted(r["sample_id"] for r in recs) == ["s0", "s1", "s2"]
    assert resumed.scores == pytest.approx(full.scores)


# -- through the CLI, on the organism ------------------------------------------------------------------------
def _args(out, *extra):
    return [
        "detect", "organism", "--out", str(out), "--lengths", "200", "--num-depths", "2",
        "--max-new-tokens", "6", "--no-progress", "--device", "cpu", *extra,
    ]  # fmt: skip


@pytest.fixture
def organism():
    from retmask_interp.core.models import available_organisms

    if not {"concentrated", "distributed"} <= set(available_organisms()):
        pytest.skip("the organisms' weights are not installed")


def test_cli_resume_with_another_organism_or_haystack_content(organism, tmp_path, capsys):
    hay = tmp_path / "hay.txt"
    from retmask_interp.data.synthetic import haystack_text

    hay.write_text(haystack_text(2000, seed=0))
    samples = tmp_path / "s.jsonl"
    common = ("--save-samples", str(samples), "--haystack", str(hay))
    assert main(_args(tmp_path / "a.json", *common)) == 0
    before = samples.read_bytes()
    # another model on the same samples file
    other = _args(tmp_path / "b.json", *common)
    other[1] = "organism:distributed"
    assert main(other) == 2
    err = capsys.readouterr().err
    assert "model was 'retmask-organism-concentrated', now 'retmask-organism-distributed'" in err
    # the same haystack file name with other text in it
    hay.write_text(haystack_text(2000, seed=1))
    assert main(_args(tmp_path / "c.json", *common)) == 2
    assert "haystack_sha256 was" in capsys.readouterr().err
    assert samples.read_bytes() == before  # nothing appended by the refused runs


def test_cli_save_samples_never_touches_a_foreign_file(organism, tmp_path, capsys):
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text('{"my": "data"}\nnot even json, and no final newline')
    original = foreign.read_bytes()
    for extra in ((), ("--overwrite",)):
        assert main(_args(tmp_path / "h.json", "--save-samples", str(foreign), *extra)) == 2
        assert "not a samples file of `retmask detect`" in capsys.readouterr().err
        assert foreign.read_bytes() == original
    assert main(_args(tmp_path / "h.json", "--save-samples", str(tmp_path))) == 2
    assert "is a directory" in capsys.readouterr().err
    assert not (tmp_path / "h.json").exists()


def test_cli_rejects_bad_numbers_before_loading(tmp_path, capsys):
    for bad in (
        ["--rouge-threshold", "2"], ["--batch-size", "0"], ["--num-depths", "0"], ["--num-depths", "-3"],
        ["--max-new-tokens", "0"], ["--lengths", "-5"],
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(_args(tmp_path / "h.json", *bad))
        assert exc.value.code == 2
        assert "argument" in capsys.readouterr().err
    assert main(_args(tmp_path / "h.json", "--device", "gpu0")) == 2
    assert "--device 'gpu0' is not a device" in capsys.readouterr().err


def test_cli_head_file_is_the_same_after_resume(organism, tmp_path):
    assert main(_args(tmp_path / "full.json")) == 0
    samples = tmp_path / "p.json.samples.jsonl"
    assert main(_args(tmp_path / "half.json", "--save-samples", str(samples), "--depths", "0")) == 0
    assert main(_args(tmp_path / "p.json", "--save-samples", str(samples))) == 0
    a, b = load_head_scores(tmp_path / "full.json"), load_head_scores(tmp_path / "p.json")
    assert a.scores == b.scores and a.per_sample == b.per_sample
