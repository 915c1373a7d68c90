"""Head lists: our JSON and Wu's, round trips on the published files, selection helpers, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retmask_interp.heads.scores import HeadScores, load_head_scores, parse_head_key, save_head_scores


def _hs():
    m = np.array([[0.0, 0.5, 0.1], [0.3, 0.05, 0.2]])
    return HeadScores.from_matrix(m, model="toy", params={"k": 1})


def test_selection_helpers():
    hs = _hs()
    assert hs.ranked()[0] == (0, 1, 0.5)
    assert hs.top_k(2) == [(0, 1), (1, 0)]
    assert hs.above(0.1) == [(0, 1), (1, 0), (1, 2), (0, 2)]
    assert hs.per_layer(1) == {0: [(0, 1)], 1: [(1, 0)]}
    assert hs.select(top_k=2, threshold=0.4) == [(0, 1)]
    with pytest.raises(ValueError, match="top_k or threshold"):
        hs.select()


def test_our_json_round_trip(tmp_path):
    hs = HeadScores.from_per_sample(
        {(0, 0): [0.1, 0.3], (0, 1): [0.0, 0.0], (1, 0): [1.0, 0.5]},
        2,
        2,
        model="toy",
        geometry={"num_layers": 2, "num_heads": 2},
    )
    path = save_head_scores(hs, tmp_path / "h.json")
    obj = json.loads(path.read_text())
    assert obj["schema_version"] == 1 and obj["scores"]["1-0"] == pytest.approx(0.75)
    assert obj["ranked"][0] == {"layer": 1, "head": 0, "score": 0.75}
    back = load_head_scores(path)
    assert back.model == "toy" and back.per_sample[(0, 0)] == [0.1, 0.3]
    np.testing.assert_allclose(back.matrix(), hs.matrix())
    with pytest.raises(FileExistsError, match="overwrite"):
        save_head_scores(hs, path)
    save_head_scores(hs, path, overwrite=True)


def test_wu_round_trip_on_published_files(shared_dir, tmp_path):
    files = sorted((shared_dir / "data" / "head_scores").glob("*/*.json"))
    assert len(files) == 10
    for f in files:
        raw = json.loads(f.read_text())
        hs = load_head_scores(f)
        # mean of each list is the head's score
        for key, values in list(raw.items())[:50]:
            assert hs.scores[parse_head_key(key)] == pytest.approx(float(np.mean(values)) if values else 0.0)
        out = save_head_scores(hs, tmp_path / f.name, format="wu")
        assert json.loads(out.read_text()) == {k: [float(x) for x in v] for k, v in raw.items()}
    llama = load_head_scores(shared_dir / "data/head_scores/retmask2026/Llama-3.1-8B-Instruct.json")
    assert (llama.num_layers, llama.num_heads) == (32, 32)
    assert len(llama.above(0.1)) == 33  # METHOD_NOTES' table


@pytest.mark.parametrize(
    "content, match",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"3x4": [0.1]}', "layer>-<head"),
        ('{"1-2": ["a"]}', "non-numeric"),
        ("{}", "no heads"),
        ('{"scores": {}}', "empty"),
    ],
)
def test_bad_head_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_head_scores(path)


def test_missing_head_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_head_scores(tmp_path / "nope.json")
