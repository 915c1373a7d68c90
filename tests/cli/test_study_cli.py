"""``retmask study ...``: parsers generated from the studies' config dataclasses (help from field metadata, range
checks, presets under the given options), one generator for every config."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from retmask_interp._cli.options import add_config_arguments, config_from_args
from retmask_interp.cli import build_parser, main
from retmask_interp.core.options import option


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["study", *argv])


def test_retmask_options_lie_over_the_preset():
    from retmask_interp.workflows.studies.retmask import PRESETS, StudyConfig

    args = _parse(
        "retmask", "--preset", "tiny", "--lrs", "1e-5", "2e-5", "--seeds", "3", "--no-prune-weights"
    )
    config = config_from_args(StudyConfig, args, PRESETS[args.preset])
    assert config.lrs == (1e-5, 2e-5) and config.seeds == (3,) and config.prune_weights is False
    assert config.n_prompts == PRESETS["tiny"]["n_prompts"] and config.beta == StudyConfig().beta
    assert args.until == "report"


def test_real_model_repeatable_singular_flags():
    from retmask_interp.workflows.studies.real_models import StudyConfig

    args = _parse(
        "real-model", "--out", "d", "--haystack", "synthetic:0", "--haystack", "essays", "--mode", "zero"
    )
    config = config_from_args(StudyConfig, args)
    assert config.haystacks == ["synthetic:0", "essays"] and config.modes == ["zero"]
    assert config.stages == list(StudyConfig().stages) and config.threshold == 0.1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["retmask", "--n-per-cell", "0"], "must be >= 1, got 0"),
        (["retmask", "--top-p", "1.5"], "must be in (0, 1]"),
        (["retmask", "--conditions", "bogus"], "invalid choice: 'bogus'"),
        (["real-model", "--out", "d", "--threshold", "nan"], "must be a finite number"),
        (["real-model", "--out", "d", "--style", "poem"], "invalid choice: 'poem'"),
    ],
)
def test_bad_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        _parse(*argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_help_comes_from_the_field_metadata(capsys):
    with pytest.raises(SystemExit):
        main(["study", "retmask", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--max-ppl-increase MAX_PPL_INCREASE lr criterion: held-out perplexity may rise by at most" in out
    assert "(default: 2048 4096 7000)" in out


def test_generator_on_a_plain_dataclass():
    @dataclasses.dataclass
    class C:
        n: int = option(2, "count", minimum=1)
        name: str | None = None
        flags: tuple[str, ...] = ("a",)
        on: bool = False
        skipped: dict = dataclasses.field(default_factory=dict)  # not a command-line type

    p = argparse.ArgumentParser()
    assert add_config_arguments(p, C, flags={"name": "label"}) == ["n", "name", "flags", "on"]
    assert config_from_args(C, p.parse_args(["--label", "x", "--on"])) == C(name="x", on=True)
    assert config_from_args(C, p.parse_args([]), {"n": 5}, flags=("b",)) == C(n=5, flags=("b",))


def test_a_changed_setting_is_one_line(tmp_path, capsys):
    """A resumed study with another setting: exit 2 and one line naming the setting (no traceback)."""
    from retmask_interp.core.stages import Stages

    Stages(tmp_path).run("prompts", {"prompt_seed": 0, "n_prompts": 16, "n_heldout": 8}, lambda ctx: {})
    code = main(["study", "retmask", "--preset", "tiny", "--out", str(tmp_path), "--prompt-seed", "4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "prompt_seed was 0, now 4" in err
