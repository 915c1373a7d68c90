"""The make-up tables of the instruction prompt set, in this study's README and in the data module's docstring, are
what ``instruction_prompts.py`` writes now (``--write-docs`` refreshes them)."""

from __future__ import annotations

import instruction_prompts as script  # this folder's script (pytest puts the folder on sys.path)

from retmask_interp.data.instructions import InstructionConfig


def test_documented_make_up_is_current():
    block = script.make_up(InstructionConfig())
    for path in script.DOCS:
        text = path.read_text(encoding="utf-8")
        assert f"{script.START}\n{block}\n{script.END}" in text, (
            f"{path} is stale: run python studies/instruction_prompts/instruction_prompts.py --write-docs"
        )
