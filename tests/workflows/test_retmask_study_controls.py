"""The RetMask study's random control drawn per layer (the default, as every earlier run) or from the layers without
a retrieval head (``random_layers="outside"``, issue 27's outside-layers draw), on the organism."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.parametrize("layers", ["matched", "outside"])
def test_random_control_layers(tmp_path, layers):
    from retmask_interp.heads.scores import HeadScores, save_head_scores
    from retmask_interp.workflows.studies.retmask import StudyConfig, run_study

    m = np.zeros((6, 8))
    for a, b, s in ((4, 4, 0.8), (4, 5, 0.7), (5, 5, 0.6)):
        m[a, b] = s
    heads = save_head_scores(HeadScores.from_matrix(m, model="organism"), tmp_path / "heads.json")
    config = StudyConfig(out=str(tmp_path / "run"), model="organism", heads=str(heads), device="cpu",
                         n_prompts=2, n_heldout=1, random_layers=layers)  # fmt: skip
    res = run_study(config, until="heads")["heads"]
    retrieval = [tuple(h) for h in res["retmask"]]
    control = [tuple(h) for h in res["random"]]
    assert sorted(retrieval) == [(4, 4), (4, 5), (5, 5)] and len(control) == 3
    assert not set(control) & set(retrieval)
    if layers == "matched":
        assert sorted(a for a, _ in control) == [4, 4, 5]
    else:
        assert all(a not in (4, 5) for a, _ in control)
    settings = json.loads((tmp_path / "run" / "stages" / "heads.json").read_text())["settings"]
    # the default is not recorded, so that the markers of runs made before the option still match
    assert ("random_layers" in settings) == (layers == "outside")
