"""The CLI through main(argv): detect on the real stories260K checkpoint, resume, refusal to overwrite, heads."""

from __future__ import annotations

import json

import pytest

from retmask_interp.cli import main
from retmask_interp.heads.scores import load_head_scores


def _detect_args(model, out, *extra):
    return [
        "detect", str(model), "--out", str(out), "--prompt-style", "continuation",
        "--lengths", "150", "250", "--num-depths", "2", "--max-new-tokens", "6",
        "--rouge-threshold", "0", "--no-progress", "--device", "cpu", *extra,
    ]  # fmt: skip


def test_detect_resume_and_overwrite(stories_path, tmp_path, capsys):
    out = tmp_path / "heads.json"
    samples = tmp_path / "samples.jsonl"
    # a run "interrupted" after one length: its samples file is what a killed run leaves
    assert main(_detect_args(stories_path, tmp_path / "partial.json", "--save-samples", str(samples),
                             "--lengths", "150")) == 0  # fmt: skip
    first = samples.read_text().splitlines()
    assert len(first) == 6 * 2  # 6 default needles x 2 depths
    assert main(_detect_args(stories_path, out, "--save-samples", str(samples))) == 0
    lines = samples.read_text().splitlines()
    assert lines[: len(first)] == first, "finished samples are kept as they were"
    ids = [json.loads(x)["sample_id"] for x in lines]
    assert len(ids) == len(set(ids)) == 6 * 2 * 2
    hs = load_head_scores(out)
    assert (hs.num_layers, hs.num_heads) == (5, 8)
    assert hs.num_samples == 24 and hs.num_counted == 24
    assert hs.params["lengths"] == [150, 250] and hs.model.endswith("stories260K")
    assert "rank" in capsys.readouterr().out
    # a finished result is not overwritten without --overwrite
    assert main(_detect_args(stories_path, out, "--save-samples", str(samples))) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(_detect_args(stories_path, out, "--save-samples", str(samples), "--overwrite")) == 0
    assert len(samples.read_text().splitlines()) == 24  # started over, not appended


def test_detect_bad_input_messages(stories_path, tmp_path, capsys):
    assert main(_detect_args(stories_path, tmp_path / "h.json", "--haystack", str(tmp_path / "missing"))) == 2
    assert "haystack" in capsys.readouterr().err
    assert main(_detect_args(stories_path, tmp_path / "h.json", "--lengths", "5000")) == 2
    assert "window of 512" in capsys.readouterr().err
    # stories260K has no chat template: the chat style names the fix
    args = _detect_args(stories_path, tmp_path / "h.json")
    args[args.index("continuation")] = "chat"
    assert main(args) == 2
    assert "prompt-style" in capsys.readouterr().err


def test_heads_command(shared_dir, capsys):
    path = shared_dir / "data/head_scores/retmask2026/Llama-3.1-8B-Instruct.json"
    assert main(["heads", str(path), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "heads with score >= 0.1: 33" in out
    assert len([line for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]) == 5


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("detect", "heads", "demo", "analyze", "export-masked"):
        assert cmd in out


def test_every_cli_group_imports_and_a_broken_one_is_not_hidden(monkeypatch):
    """Every name in ``cli._GROUPS`` is a module with ``register``; a missing or broken group module raises
    (a renamed group must not vanish from ``retmask --help`` silently)."""
    import importlib
    import sys
    import types

    from retmask_interp import cli

    for group in cli._GROUPS:
        assert callable(importlib.import_module(f"retmask_interp._cli.{group}").register), group
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"detect", "figures", "demo", "pairs", "train"} <= set(commands), sorted(commands)
    monkeypatch.setattr(cli, "_GROUPS", [*cli._GROUPS, "nosuch"])
    with pytest.raises(ModuleNotFoundError, match="nosuch"):
        cli.build_parser()
    broken = types.ModuleType("retmask_interp._cli.broken")

    def register(sub):
        import retmask_interp._cli.gone  # noqa: F401  (a group whose own import fails)

    broken.register = register
    monkeypatch.setitem(sys.modules, "retmask_interp._cli.broken", broken)
    monkeypatch.setattr(cli, "_GROUPS", [*cli._GROUPS[:-1], "broken"])
    with pytest.raises(ModuleNotFoundError, match="gone"):
        cli.build_parser()


def test_heads_takes_a_shipped_head_list_by_name(capsys):
    from retmask_interp.cli import main

    assert main(["heads", "gemma-3-270m", "--top", "2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[:3] for r in rows[:2]] == [["1", "5", "1"], ["2", "11", "2"]]


def test_model_is_given_with_model_everywhere_and_the_old_positional_still_works(capsys):
    from retmask_interp.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    for name, p in sub.items():  # every command that loads a model takes --model, with the installable names
        if any(a.dest == "model_positional" for a in p._actions) or name == "demo":
            opt = next(a for a in p._actions if "--model" in a.option_strings)
            assert name == "demo" or "smollm2-135m-instruct" in opt.help, name
    args = parser.parse_args(["detect", "--model", "organism:distributed", "--out", "h.json"])
    assert args.model == "organism:distributed"
    args = parser.parse_args(["detect", "organism:distributed", "--out", "h.json"])  # the old form
    assert args.model == "organism:distributed" and args.model_positional == "organism:distributed"
    assert parser.parse_args(["detect", "--out", "h.json"]).model == "organism"  # the default
    assert main(["train", "--pairs", "p.jsonl", "--out", "o"]) == 2
    assert "needs a model: --model NAME" in capsys.readouterr().err
    assert main(["detect", "organism", "--model", "gemma-3-270m", "--out", "h.json"]) == 2
    assert "given twice" in capsys.readouterr().err


def test_every_command_has_a_description_and_every_option_a_help():
    import argparse

    from retmask_interp.cli import build_parser

    missing = []

    def walk(parser, prefix):
        for group in [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]:
            for name, sub in group.choices.items():
                full = f"{prefix} {name}"
                if not sub.description:
                    missing.append(f"{full}: no description")
                for action in sub._actions:
                    if (
                        not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
                        and not action.help
                    ):
                        missing.append(f"{full} {action.option_strings or action.dest}: no help")
                sub.format_help()  # every help renders (no stray % in a help string)
                walk(sub, full)

    walk(build_parser(), "retmask")
    assert not missing, missing


def test_detect_and_demo_options_are_their_configs(stories_path, tmp_path):
    """`retmask detect` and `retmask demo` take one option per field of DetectConfig / DemoConfig (generated, as
    every command with a config): an option given reaches the run, a bad choice is a usage error."""
    import dataclasses

    from retmask_interp._cli.options import config_from_args
    from retmask_interp.cli import build_parser
    from retmask_interp.measure.detect import DetectConfig
    from retmask_interp.workflows.demo import DemoConfig

    parser = build_parser()
    for command, cls in (("detect", DetectConfig), ("demo", DemoConfig)):
        sub = parser._subparsers._group_actions[0].choices[command]
        dests = {a.dest for a in sub._actions}
        cli = [f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
        # mask_heads, a list of heads, is given in Python only
        missing = [n for n in cli if n not in dests and n != "mask_heads"]
        assert not missing, f"{command} lacks options for {missing}"
    args = parser.parse_args(["demo", "--num-needles", "2", "--no-progress", "--mask-mode", "uniform"])
    want = DemoConfig(num_needles=2, progress=False, mask_mode="uniform")
    assert config_from_args(DemoConfig, args) == want
    with pytest.raises(SystemExit):
        parser.parse_args(["detect", "--out", "x.json", "--stop", "newlines"])

    out = tmp_path / "heads.json"
    argv = _detect_args(stories_path, out, "--lengths", "150", "--num-depths", "1", "--stop", "eos", "--rouge",
                        "simple", "--max-new-tokens", "3")  # fmt: skip
    assert main(argv) == 0
    recs = [json.loads(x) for x in (tmp_path / "heads.json.samples.jsonl").read_text().splitlines()]
    assert recs and all(r["settings"]["stop"] == "eos" and r["settings"]["rouge"] == "simple" for r in recs)
    assert all(r["settings"]["max_new_tokens"] == 3 for r in recs)
