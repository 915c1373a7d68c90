"""Bad inputs get one clear line (problem, file or option, fix) and exit status 2, before any model is loaded
where possible; wrong outcomes of the careful-user report (issue 15) stay fixed. docs/reliability.md lists them."""

from __future__ import annotations

import json

import pytest

from retmask_interp.cli import main
from retmask_interp.core.io import InputError
from retmask_interp.heads.scores import MAX_HEADS, HeadScores, load_head_scores


@pytest.fixture
def heads_file(tmp_path):
    path = tmp_path / "heads.json"
    HeadScores.from_matrix([[0.1 * (4 * layer + h) for h in range(4)] for layer in range(2)]).save(path)
    return path


def _err(capsys) -> str:
    """stderr, whose last line must be the one-line error (``retmask CMD: error: ...``), not a traceback."""
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith("retmask ") and ": error: " in last, err[-3000:]
    return err


# -- head lists ------------------------------------------------------------------------------------------------
def test_top_k_negative_or_beyond_the_heads(heads_file, capsys):
    hs = load_head_scores(heads_file)
    with pytest.raises(InputError, match="top-k must be an integer >= 0"):
        hs.select(top_k=-1)
    with pytest.raises(InputError, match="top-k 1000 is more than the 8 heads"):
        hs.select(top_k=1000)
    with pytest.raises(InputError, match="more than the 8 heads"):
        hs.top_k(9)
    assert len(hs.top_k(8)) == 8
    with pytest.raises(SystemExit):
        main(["heads", str(heads_file), "--top", "-1"])
    assert "must be >= 0" in _err(capsys)
    assert main(["heads", str(heads_file), "--top", "1000"]) == 2
    assert "--top 1000 is more than the 8 heads" in _err(capsys)
    for cmd in (["pairs", "organism", "--heads", str(heads_file), "--builtin-prompts", "2", "--out", "x.jsonl"],
                ["export-masked", "organism", "--heads", str(heads_file), "--out", "x"]):  # fmt: skip
        with pytest.raises(SystemExit):
            main([*cmd, "--top-k", "-1"])
        assert "must be >= 0" in _err(capsys)


@pytest.mark.parametrize(
    "name, text",
    [
        ("h.csv", "layer,head,score\n0,0,0.5\n0,1,nan\n"),
        ("h.csv", "layer,head,score\n0,0,inf\n"),
        ("h.yaml", "heads:\n  - [0, 0, 0.5]\n  - [0, 1, .nan]\n"),
        ("h.yaml", "'0-1': .inf\n"),
        ("h.yaml", "- {layer: 0, head: 1, score: .nan}\n"),
    ],
)
def test_nan_or_infinite_scores_are_refused(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert main(["heads", str(path)]) == 2
    assert "non-finite score" in _err(capsys)


def test_huge_geometry_from_a_tiny_file_is_refused_quickly(tmp_path, capsys):
    path = tmp_path / "h.json"
    path.write_text('{"3000-3000": [0.5]}')
    assert main(["heads", str(path)]) == 2
    assert f"more than the {MAX_HEADS:,} heads" in _err(capsys)
    path.write_text('{"3000-0": [0.5]}')  # 3001 x 1: small, accepted
    assert main(["heads", str(path), "--top", "2"]) == 0


def test_head_key_outside_the_files_geometry(tmp_path, capsys):
    path = tmp_path / "h.json"
    obj = HeadScores.from_matrix([[0.1, 0.2], [0.3, 0.4]]).to_json_dict()
    obj["scores"]["5-0"] = 0.9
    path.write_text(json.dumps(obj))
    assert main(["heads", str(path)]) == 2
    assert "head 5-0 is outside the geometry of 2 layers x 2 heads" in _err(capsys)


def test_sparse_wu_list_is_valid_missing_heads_are_zero(tmp_path):
    from retmask_interp.heads.formats import check_head_list_matches, load_any_head_list

    path = tmp_path / "wu.json"
    path.write_text(json.dumps({"0-1": [0.5, 0.7], "1-0": [0.2, 0.2]}))  # a 4 x 4 model, most heads absent
    geo = {"num_layers": 4, "num_heads": 4}
    hs = load_any_head_list(path, geometry=geo)
    check_head_list_matches(hs, geo)
    assert (hs.num_layers, hs.num_heads) == (4, 4) and hs.matrix()[3, 3] == 0
    hs = load_any_head_list(path)  # geometry inferred from the listed heads, then widened to the model's
    check_head_list_matches(hs, geo)
    assert (hs.num_layers, hs.num_heads) == (4, 4)
    with pytest.raises(InputError, match="another model"):
        check_head_list_matches(load_any_head_list(path), {"num_layers": 1, "num_heads": 4})


# -- inputs read strictly ----------------------------------------------------------------------------------------
def test_prompts_file_with_a_torn_last_line_is_an_error(tmp_path):
    from retmask_interp.retmask.pairs import load_prompts

    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "thr')
    with pytest.raises(InputError, match=r"prompts.jsonl:3 is not valid JSON"):
        load_prompts(path)
    path.write_bytes(b'{"prompt": "one"}\n{"prompt": "\xe9"}\n')
    with pytest.raises(InputError, match=r"prompts.jsonl:2 is not UTF-8"):
        load_prompts(path)
    with pytest.raises(InputError, match="limit must be >= 1"):
        load_prompts(["a"], limit=-1)


def test_pairs_file_with_a_torn_last_line_is_an_error(tmp_path):
    pytest.importorskip("datasets")
    from retmask_interp.retmask.training import load_pairs_dataset

    path = tmp_path / "pairs.jsonl"
    rec = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})
    path.write_text(rec + "\n" + rec[:-3])
    with pytest.raises(InputError, match=r"pairs.jsonl:2 is not valid JSON"):
        load_pairs_dataset(path)


def test_needles_and_haystack_that_are_not_text(tmp_path):
    from retmask_interp.data.niah import NIAHConfig, load_haystack, read_needles

    hay = tmp_path / "random.bin"
    hay.write_bytes(bytes(range(256)) * 800)  # 200 KB of bytes
    with pytest.raises(InputError, match="random.bin is not UTF-8 text"):
        load_haystack(hay)
    hay.write_bytes(b"\x00\x01\x02 text " * 100)
    with pytest.raises(InputError, match="binary data"):
        load_haystack(hay)
    needles = tmp_path / "needles.jsonl"
    good = json.dumps({"needle": "The code is 7.", "question": "What is the code?", "real_needle": "7"})
    needles.write_bytes(good.encode() + b"\n" + b'{"needle": "\xff"}\n')
    with pytest.raises(InputError, match=r"needles.jsonl: line 2 is not UTF-8"):
        read_needles(needles)
    with pytest.raises(InputError, match="not UTF-8"):
        NIAHConfig(haystack=str(hay.with_suffix(".txt")), needles=str(needles)).check()


# -- CLI options, checked before the model is loaded -------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["pairs", "organism", "--heads", "h.json", "--top-k", "2", "--builtin-prompts", "0", "--out", "p.jsonl"],
        ["pairs", "organism", "--heads", "h.json", "--top-k", "2", "--prompts", "p", "--limit", "-1", "--out", "x"],
        ["pairs", "organism", "--heads", "h.json", "--top-k", "2", "--builtin-prompts", "2", "--batch-size", "0",
         "--out", "x"],
        ["evaluate", "organism", "--out", "e.csv", "--n-per-cell", "0"],
        ["evaluate", "organism", "--out", "e.csv", "--batch-size", "0"],
        ["demo", "--seeds", "-1"],
        ["demo", "--seeds", "0"],
        ["demo", "--num-depths", "0"],
    ],
)  # fmt: skip
def test_bad_numbers_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "must be >= " in _err(capsys)


def test_model_names_that_cannot_be_loaded(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "h.json")
    assert main(["detect", str(tmp_path / "no-such-dir"), "--out", out, "--device", "cpu"]) == 2
    assert "does not exist" in _err(capsys)
    assert main(["detect", "./models/llama", "--out", out, "--device", "cpu"]) == 2
    assert "model directory './models/llama' does not exist" in _err(capsys)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["detect", "meta-lama/Llama-3.1-8B-Instruct-typo", "--out", out, "--device", "cpu"]) == 2
    err = _err(capsys)
    assert "in the Hugging Face cache" in err and "cannot be reached" in err
    assert main(["detect", "organism:nosuch", "--out", out, "--device", "cpu"]) == 2
    assert "unknown organism 'nosuch'" in _err(capsys)
    (tmp_path / "file").write_text("")
    assert main(["detect", str(tmp_path / "file"), "--out", out, "--device", "cpu"]) == 2
    assert "not a model directory" in _err(capsys)
    assert not (tmp_path / "h.json").exists()


def test_unwritable_output_fails_before_computing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["detect", "organism", "--out", str(blocker / "h.json"), "--device", "cpu"]) == 2
    assert "is a file, not a directory" in _err(capsys)
    args = ["pairs", "organism", "--heads", "h.json", "--top-k", "2", "--builtin-prompts", "2"]
    assert main([*args, "--out", str(blocker / "p.jsonl"), "--device", "cpu"]) == 2
    assert "is a file, not a directory" in _err(capsys)


def test_detect_validates_haystack_before_loading_the_model(tmp_path, capsys, monkeypatch):
    import retmask_interp._cli.detect as cli_detect

    def no_model(args):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(cli_detect, "load_from_args", no_model)
    hay = tmp_path / "hay.txt"
    hay.write_bytes(bytes(range(256)) * 10)
    assert main(["detect", "organism", "--out", str(tmp_path / "h.json"), "--haystack", str(hay)]) == 2
    assert "is not UTF-8 text" in _err(capsys)


def test_needle_longer_than_the_window(tmp_path, capsys):
    from retmask_interp.core.models import available_organisms

    if "concentrated" not in available_organisms():
        pytest.skip("the organism's weights are not installed")
    needles = tmp_path / "needles.jsonl"
    long = "word " * 5000
    needles.write_text(
        json.dumps({"needle": long + "The code is 7.", "question": "Code?", "real_needle": "7"})
    )
    argv = ["detect", "organism", "--out", str(tmp_path / "h.json"), "--needles", str(needles), "--device", "cpu",
            "--lengths", "300"]  # fmt: skip
    assert main(argv) == 2
    err = _err(capsys)
    assert "more than the model's window of 4096: shorten the needle" in err and "--min-length" not in err


def test_demo_lengths_beyond_the_window(tmp_path, capsys):
    from retmask_interp.core.models import available_organisms

    if "concentrated" not in available_organisms():
        pytest.skip("the organism's weights are not installed")
    assert main(["demo", "--out", str(tmp_path / "d"), "--lengths", "9000", "--device", "cpu"]) == 2
    err = _err(capsys)
    assert "window of 4096" in err and "allow-overflow" not in err


# -- evaluate / compare / analyze ------------------------------------------------------------------------------
def test_evaluate_refuses_another_runs_summary(tmp_path, capsys):
    summary = tmp_path / "new.summary.csv"
    summary.write_text("task,length,mean\nniah,1024,0.5\n")
    assert main(["evaluate", "organism", "--out", str(tmp_path / "new.csv"), "--device", "cpu"]) == 2
    assert "new.summary.csv already exists" in _err(capsys)
    assert summary.read_text() == "task,length,mean\nniah,1024,0.5\n"


def test_compare_missing_columns_and_unknown_by(tmp_path, capsys):
    good = "task,length,index,score\nniah,1,0,1.0\nniah,1,1,0.0\n"
    (tmp_path / "a.csv").write_text(good)
    (tmp_path / "b.csv").write_text(good)
    (tmp_path / "bad.csv").write_text("task,score\nniah,1\n")
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "bad.csv")]) == 2
    assert "bad.csv lacks the columns ['index', 'length']" in _err(capsys)
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--by", "nosuch"]) == 2
    assert "--by nosuch: no such column" in _err(capsys)


def test_analyze_with_a_bad_format_writes_nothing(heads_file, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert main(["analyze", str(heads_file), "--out", str(out), "--formats", "html", "gif"]) == 2
    assert "unknown figure formats ['gif']" in _err(capsys)
    assert not out.exists() or not any(out.iterdir())
    assert main(["analyze", str(heads_file), "--out", str(out), "--formats", "html"]) == 0


def test_offline_notebook_figures_carry_html_with_plotly_js():
    import plotly.graph_objects as go
    import plotly.io as pio

    from retmask_interp.analysis.export import offline_notebook_figures

    old = pio.renderers.default
    try:
        offline_notebook_figures()
        bundle = pio.renderers._build_mime_bundle(go.Figure(go.Bar(y=[1, 2])).to_dict())
        assert "application/vnd.plotly.v1+json" in bundle and "Plotly.newPlot" in bundle["text/html"]
        assert pio.renderers["notebook"].connected is False  # plotly.js embedded, not from a CDN
    finally:
        pio.renderers.default = old


def test_pairs_resume_names_the_changed_setting(tmp_path):
    from retmask_interp.retmask.pairs import pair_paths, pairs_from_responses

    out = tmp_path / "p.jsonl"
    kw = dict(heads=[(0, 0)], seed=3, format="plain")
    pairs_from_responses(["x", "y"], ["a", "b"], ["c", "d"], out, sampling={"temperature": 0.6}, **kw)
    pair_paths(out).stats.unlink()  # an interrupted run
    with pytest.raises(InputError, match=r"temperature was 0\.6, now 0\.7"):
        pairs_from_responses(["x", "y"], ["a", "b"], ["c", "d"], out, sampling={"temperature": 0.7}, **kw)


def test_registry_names_and_gguf_paths_pass_the_model_check(tmp_path):
    """The real models' registry names and .gguf paths are model sources (no hub lookup); a missing .gguf is named."""
    from retmask_interp._cli.validate import check_model_source
    from retmask_interp.core.io import InputError

    check_model_source("smollm2-135m-instruct")
    check_model_source("gemma-3-270m")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    check_model_source(str(gguf))
    with pytest.raises(InputError, match="GGUF file .* does not exist"):
        check_model_source(str(tmp_path / "missing.gguf"))


def test_figures_real_study_that_is_not_one(tmp_path, capsys):
    """`retmask figures --real-study DIR` with no study there: one line naming the option and the fix."""
    assert main(["figures", "--out", str(tmp_path / "f"), "--organisms", "--real-study", str(tmp_path)]) == 2
    err = _err(capsys)
    assert "--real-study" in err and "retmask study real-model" in err


# -- every numeric option of every command has a range (issue 28) -----------------------------------------------
def _commands(parser=None, prefix=()):
    """(command words, parser) of every (sub)command of ``retmask``, walking nested subcommands."""
    import argparse

    from retmask_interp.cli import build_parser

    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def _numeric_options():
    for words, sub in _commands():
        for action in sub._actions:
            default = action.default
            numeric = action.type in (int, float) or (
                isinstance(default, (int, float)) and not isinstance(default, bool)
            )
            if numeric or getattr(action.type, "range", None) is not None:
                yield words, action


def test_every_numeric_option_has_a_range():
    """No option parses numbers with plain int/float: each uses a ``core.ranges`` type, so a new option cannot
    escape the range checks (and the cases below are generated from the parsers)."""
    options = list(_numeric_options())
    assert len(options) > 40 and {w[0] for w, _ in options} >= {
        "detect",
        "pairs",
        "train",
        "evaluate",
        "demo",
    }
    bare = [f"{' '.join(w)} {a.option_strings or a.dest}" for w, a in options if not hasattr(a.type, "range")]
    assert not bare, f"numeric options without a range type (use _cli.validate's types): {bare}"


def _bad_values(rng) -> list[str]:
    bad = ["nan", "inf", "-inf", "x"]
    if rng.low is not None:
        below = rng.low if rng.low_open else rng.low - 1
        if below not in rng.also:
            bad.append(str(int(below)) if rng.integer else str(below))
    if rng.high is not None:
        above = rng.high if rng.high_open else rng.high + 1
        bad.append(str(int(above)) if rng.integer else str(above))
    if rng.integer:
        bad.append("1.5")
    return bad


def _option_cases():
    for words, action in _numeric_options():
        opt = action.option_strings[-1] if action.option_strings else None
        for bad in _bad_values(action.type.range):
            yield pytest.param(words, opt, bad, id=f"{' '.join(words)} {opt or action.dest}={bad}")


@pytest.mark.parametrize("words, opt, bad", list(_option_cases()))
def test_every_numeric_option_refuses_out_of_range(words, opt, bad, capsys):
    argv = [*words, f"{opt}={bad}"] if opt else [*words, bad]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert ("must be" in err or "is not an" in err or "is not a number" in err) and (opt or "") in err, err


def test_issue_28_ranges(capsys, tmp_path):
    """The out-of-range values of issue 28, each refused while parsing; the API's configs refuse the same."""
    from retmask_interp.measure.detect import DetectConfig
    from retmask_interp.retmask.pairs import PairsConfig
    from retmask_interp.retmask.training import DPOSettings
    from retmask_interp.workflows.demo import DemoConfig

    pairs = ["pairs", "organism", "--heads", "h.json", "--top-k", "2", "--builtin-prompts", "2", "--out", "p"]
    for argv, message in [
        ([*pairs, "--top-p", "1.5"], "argument --top-p: must be in (0, 1]"),
        ([*pairs, "--top-p", "0"], "argument --top-p: must be in (0, 1]"),
        (["demo", "--threshold", "nan"], "argument --threshold: must be a finite number, got nan"),
        (["train", "m", "--pairs", "p", "--out", "o", "--epochs", "0"], "argument --epochs: must be > 0"),
        (["train", "m", "--pairs", "p", "--out", "o", "--per-device-batch-size", "0"], "must be >= 1, got 0"),
        (["train", "m", "--pairs", "p", "--out", "o", "--max-length", "0"], "must be >= 1, got 0"),
        (["heads", "h.json", "--group-size", "0"], "argument --group-size: must be >= 1, got 0"),
        (["detect", "--out", "h.json", "--chat-template-kwargs", "[1, 2]"], "must be a JSON object"),
        (["detect", "--out", "h.json", "--depths", "150"], "argument --depths: must be in [0, 100]"),
    ]:
        with pytest.raises(SystemExit):
            main(argv)
        assert message in _err(capsys)
    for make, message in [
        (lambda: PairsConfig(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (lambda: PairsConfig(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (lambda: PairsConfig(temperature=-1.0), "temperature must be >= 0"),
        (lambda: DemoConfig(threshold=float("nan")), "threshold must be a finite number"),
        (lambda: DPOSettings(num_train_epochs=0), "num_train_epochs must be > 0"),
        (lambda: DPOSettings(per_device_batch_size=0), "per_device_batch_size must be >= 1"),
        (lambda: DPOSettings(max_length=0), "max_length must be >= 1"),
        (lambda: DPOSettings(max_steps=0), "max_steps must be >= 1 or -1"),
        (lambda: DetectConfig(max_new_tokens=0), "max_new_tokens must be >= 1"),
    ]:
        with pytest.raises(InputError, match=message):
            make()
    DPOSettings(max_length=None, max_steps=-1)  # optional / "no limit" values stay valid


# -- a failed run leaves nothing that blocks its corrected re-run (issue 28) ------------------------------------
def _fake_published(root):
    """A tiny published-data directory: one Wu et al. score file."""
    path = root / "head_scores" / "wu2024" / "Tiny.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({f"{layer}-{h}": [0.1 * (layer + h)] for layer in range(3) for h in range(4)}))
    return root


def test_figures_with_nothing_to_draw_write_nothing(tmp_path, capsys):
    out = tmp_path / "figs"
    shared = _fake_published(tmp_path / "shared")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    base = ["figures", "--out", str(out), "--organisms", "--real-study", "--results", str(tmp_path / "empty")]
    for extra, message in [
        (["--shared", str(shared), "--formats", "bogus"], "unknown figure formats ['bogus']"),
        (["--shared", str(tmp_path / "afile")], "holds no head_scores/ directory"),
        (["--shared", str(tmp_path / "empty")], "holds no head_scores/ directory"),
        (["--shared", str(shared), "--formats", "html", "--html", "none"], "asks for no file at all"),
        ([], "no figure could be made"),
    ]:
        assert main([*base, *extra]) == 2, extra
        assert message in _err(capsys)
        assert not (out / "manifest.json").exists() and not (out / "index.md").exists()
    assert (
        main([*base, "--shared", str(shared), "--formats", "html"]) == 0
    )  # the corrected run is not refused
    assert (out / "manifest.json").exists()


def test_evaluate_beyond_the_window_writes_nothing(tmp_path, capsys):
    from retmask_interp.core.models import available_organisms

    if "concentrated" not in available_organisms():
        pytest.skip("the organism's weights are not installed")
    out = tmp_path / "e.csv"
    argv = [
        "evaluate",
        "organism",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--tasks",
        "niah",
        "--n-per-cell",
        "1",
    ]
    assert main([*argv, "--lengths", "100000"]) == 2
    assert "--lengths 100000: longer than retmask-organism-concentrated's window of 4096 tokens" in _err(
        capsys
    )
    assert not out.exists() and not (tmp_path / "e.summary.csv").exists()
    assert main([*argv, "--lengths", "4090"]) == 2  # fits the window, but not with room for the answer
    assert "no example fits" in _err(capsys)
    assert not out.exists()
    assert main([*argv, "--lengths", "300", "--no-progress"]) == 0  # the corrected run is not refused
    assert out.exists() and (tmp_path / "e.summary.csv").exists()


# -- unclear messages made clear (issue 28) ----------------------------------------------------------------------
def test_registry_names_one_rule_and_typos(tmp_path, capsys, monkeypatch):
    """One name rule for the CLI and the API (case does not matter); a name one edit from a registry name is a typo,
    answered with the nearest names and without asking the hub."""
    from retmask_interp._cli import validate
    from retmask_interp.core.real_models import registry_name, resolve_real_model

    def no_probe(*a, **k):
        raise AssertionError("the hub was probed for a typo of a registry name")

    monkeypatch.setattr(validate, "_hub_reachable", no_probe)
    monkeypatch.setattr(validate, "_in_hf_cache", lambda *a: False)
    assert registry_name("SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    validate.check_model_source("SmolLM2-135M-Instruct")  # the CLI accepts what the API accepts
    out = str(tmp_path / "h.json")
    for typo, near in (("smollm2-135m-instuct", "smollm2-135m-instruct"), ("gemma-3-270", "gemma-3-270m")):
        assert main(["detect", typo, "--out", out, "--device", "cpu"]) == 2
        assert f"unknown model '{typo}'; did you mean '{near}'?" in _err(capsys)
        with pytest.raises(InputError, match=f"did you mean '{near}'"):
            resolve_real_model(typo)  # the API: the same answer, no hub retries
    assert main(["demo", "--model", "gemma-3-270", "--out", str(tmp_path / "d")]) == 2  # demo checks the name
    assert "did you mean 'gemma-3-270m'" in _err(capsys)
    assert not (tmp_path / "d").exists()


def test_attn_implementation_is_checked(capsys):
    from retmask_interp.core.models import load_model

    with pytest.raises(SystemExit):
        main(["detect", "--out", "h.json", "--attn-implementation", "bogus"])
    assert "argument --attn-implementation: invalid choice: 'bogus'" in _err(capsys)
    with pytest.raises(InputError, match="unknown attention implementation 'bogus'"):
        load_model("organism", attn_implementation="bogus")  # the organism too, not silently sdpa


def test_heads_default_top_never_fails(tmp_path, capsys):
    path = tmp_path / "h.json"
    HeadScores.from_matrix([[0.1, 0.2], [0.3, 0.4]]).save(path)  # 4 heads < the default 20 rows
    assert main(["heads", str(path)]) == 0
    assert "0.4000" in capsys.readouterr().out


def test_pairs_file_with_integer_fields(tmp_path):
    pytest.importorskip("datasets")
    from retmask_interp.retmask.training import load_pairs_dataset

    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": 1, "rejected": "b"}) + "\n")
    with pytest.raises(
        InputError, match=r"pairs.jsonl:1: chosen is int 1; expected a string or a list of chat"
    ):
        load_pairs_dataset(path)


def test_out_that_is_a_directory_is_named_as_one(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    assert main(["detect", "organism", "--out", str(tmp_path / "d"), "--device", "cpu"]) == 2
    assert "is a directory; give a file path" in _err(capsys)
    assert main(["evaluate", "organism", "--out", str(tmp_path / "d"), "--device", "cpu"]) == 2
    assert "is a directory; give a file path" in _err(capsys)


def test_compare_with_an_empty_csv_names_it(tmp_path, capsys):
    (tmp_path / "a.csv").write_text("task,length,index,score\nniah,1,0,1.0\n")
    (tmp_path / "empty.csv").write_text("")
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "empty.csv")]) == 2
    err = _err(capsys)
    assert "empty.csv is not a table of `retmask evaluate`" in err


def test_unwritable_out_of_analyze_and_figures(heads_file, tmp_path, capsys):
    import os

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["analyze", str(heads_file), "--out", str(blocker / "a")]) == 2
    assert "is a file, not a directory" in _err(capsys)
    assert main(["figures", "--out", str(blocker / "f"), "--organisms"]) == 2
    assert "is a file, not a directory" in _err(capsys)
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["analyze", str(heads_file), "--out", str(ro / "a")]) == 2
        assert "is not writable" in _err(capsys)
        assert main(["figures", "--out", str(ro / "f"), "--organisms"]) == 2
        assert "is not writable" in _err(capsys)
    finally:
        ro.chmod(0o700)


def test_duo_attention_gates_far_outside_the_unit_interval(tmp_path, capsys):
    path = tmp_path / "full_attention_heads.tsv"
    for bad in ("5.0", "-3.0"):
        path.write_text(f"0.5\t1.0\n0.2\t{bad}\n")
        assert main(["heads", str(path), "--group-size", "2"]) == 2
        assert (
            f"full_attention_heads.tsv:2: gate {bad.rstrip('0').rstrip('.')} of KV head 1 (layer 1)"
            in _err(capsys)
        )
    path.write_text("0.5\t1.0002\n0.2\t-0.0001\n")  # published rounding strays: clipped, accepted
    assert main(["heads", str(path), "--group-size", "2"]) == 0


def test_max_new_tokens_is_capped_at_the_window(caplog):
    """`--max-new-tokens 1e9` allocated 8 GB up front: generation caps it at what the window leaves and says so;
    generations that fit the window are unchanged by the cap."""
    import logging

    import torch

    from retmask_interp.core.decode import cap_new_tokens
    from retmask_interp.core.models import available_organisms, load_model
    from retmask_interp.interventions.masking import generate
    from retmask_interp.measure.detect import copy_paste_scores_batch

    assert cap_new_tokens(10**9, [10, 30], 4096) == 4086 and cap_new_tokens(50, [10], 4096) == 50
    assert cap_new_tokens(10**9, [10], None) == 10**9  # no known window: nothing to cap at
    if "concentrated" not in available_organisms():
        pytest.skip("the organism's weights are not installed")
    rm = load_model("organism", device="cpu")
    rm.model.config.max_position_embeddings = 24  # a small window, so that the capped run is short
    prompts = [torch.arange(3, 15), torch.arange(3, 11)]
    with caplog.at_level(logging.WARNING):
        out = generate(rm, prompts, max_new_tokens=10**9, eos_token_id=[])
    assert out.shape[1] <= 12 + (24 - 8) and "capped to 16" in caplog.text
    same = generate(rm, prompts, max_new_tokens=4, eos_token_id=[])
    assert torch.equal(out[:, : same.shape[1]], same)  # the first tokens are those of an uncapped short run
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        (ids, _), _ = copy_paste_scores_batch(
            rm, prompts, [(0, 2), (0, 2)], max_new_tokens=10**9, eos_token_ids=[]
        )
    assert len(ids) <= 16 and "capped to 16" in caplog.text
