"""Head-list formats in and out, TransformerLens masking, and the masked-checkpoint export."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from helpers import make_tiny_model

from retmask_interp.analysis import metrics as analysis
from retmask_interp.cli import main
from retmask_interp.core.models import as_model
from retmask_interp.heads.formats import (
    check_head_list_matches,
    export_head_list,
    head_dataframe,
    kv_head_scores,
    load_any_head_list,
    load_csv_heads,
    load_duo_attention,
    load_yaml_heads,
)
from retmask_interp.heads.scores import HeadScores
from retmask_interp.interventions import masking
from retmask_interp.interventions.lens import tl_bridge, tl_mask_hooks, tl_run_masked
from retmask_interp.interventions.weights import MASKED_HEADS_FILE, export_masked
from retmask_interp.measure import stats as _measure_stats

DUO_MISTRAL = "data/head_patterns/duo_attention/Mistral-7B-Instruct-v0.2"
WU_MISTRAL = "data/head_scores/wu2024/Mistral-7B-v0.2-hf.json"


def tiny_tokenizer():
    """A word-level tokenizer over the tiny models' 64-token vocabulary, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(64)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0", pad_token="w1", eos_token="w2")


# -- DuoAttention ----------------------------------------------------------------------------------------
def test_duo_attention_expansion_known_values(tmp_path):
    gates = np.array([[0.0, 1.0], [0.25, -1e-4], [1.0002, 0.5]])
    path = tmp_path / "run" / "full_attention_heads.tsv"
    path.parent.mkdir()
    np.savetxt(path, gates, delimiter="\t")
    (path.parent / "config.json").write_text(
        json.dumps({"model_name": "models/Toy-7B", "lr": 0.02, "seed": 1})
    )
    hs = load_duo_attention(path, group_size=3)
    expected = np.repeat(np.clip(gates, 0, 1), 3, axis=1)
    np.testing.assert_array_equal(hs.matrix(), expected)
    assert (hs.num_layers, hs.num_heads, hs.model, hs.params) == (3, 6, "Toy-7B", {"lr": 0.02})
    prov = hs.extra["provenance"]
    assert (
        prov["expanded_to_query_heads"] and prov["group_size"] == 3 and prov["clipped_to_unit_interval"] == 2
    )
    assert hs.geometry == {"num_layers": 3, "num_heads": 6, "num_kv_heads": 2}
    # the same through num_heads, geometry, the directory and load_any_head_list
    np.testing.assert_array_equal(load_duo_attention(path.parent, num_heads=6).matrix(), expected)
    geo = {"num_layers": 3, "num_heads": 6, "num_kv_heads": 2, "head_dim": 8}
    np.testing.assert_array_equal(load_any_head_list(path, geometry=geo).matrix(), expected)
    with pytest.raises(ValueError, match="group_size"):
        load_duo_attention(path)
    with pytest.raises(ValueError, match="KV heads"):
        load_duo_attention(path, geometry=dict(geo, num_kv_heads=4))
    with pytest.raises(ValueError, match="multiple"):
        load_duo_attention(path, num_heads=5)
    # saved in our format, the provenance survives a round trip
    export_head_list(hs, tmp_path / "duo.json")
    back = load_any_head_list(tmp_path / "duo.json")
    assert back.extra["provenance"]["group_size"] == 3 and back.method == "duo-attention-gate"


def test_duo_attention_real_file(shared_dir):
    hs = load_any_head_list(shared_dir / DUO_MISTRAL, group_size=4)
    m = hs.matrix()
    assert m.shape == (32, 32) and m.min() >= 0 and m.max() <= 1
    np.testing.assert_array_equal(m[:, 0::4], m[:, 3::4])  # four query heads share each KV gate
    assert hs.params["reg_weight"] == 0.05 and hs.model == "Mistral-7B-Instruct-v0.2"


def test_wu_vs_duo_attention_agreement_on_mistral(shared_dir, caplog):
    """Wu et al.'s scores (Mistral-7B-v0.2 base) vs DuoAttention gates (Mistral-7B-Instruct-v0.2)."""
    wu = load_any_head_list(shared_dir / WU_MISTRAL)
    duo = load_any_head_list(shared_dir / DUO_MISTRAL, group_size=4)
    with caplog.at_level(logging.INFO):
        out = analysis.agreement(wu, duo)
    # measured on the published files: positive but weak rank agreement; 440 heads have gate 1.0, so
    # duo's top-k sets are ties and the tie-robust share is the meaningful overlap
    assert out["spearman"] == pytest.approx(0.3541, abs=1e-3)
    assert out["top10_boundary_ties"] > 0
    assert (out["top10_a_in_b"], out["top20_a_in_b"], out["top50_a_in_b"]) == pytest.approx((1.0, 0.85, 0.84))
    assert out["top10_jaccard"] == 0.0  # tie-break artefact: duo's first 10 "1.0" heads are layer 0-1 heads
    # per KV head (Wu's query-head scores reduced by max over each group of 4), the agreement is stronger
    kv = _measure_stats.spearman(kv_head_scores(wu, 4).matrix(), kv_head_scores(duo, 4).matrix())
    assert kv == pytest.approx(0.5057, abs=1e-3)
    assert np.array_equal(kv_head_scores(duo, 4).matrix(), duo.matrix()[:, ::4])


# -- YAML / CSV ------------------------------------------------------------------------------------------
YAML_SHAPES = {
    "qrhead": 'attn_head_set: "1-2,0-3,2-0"\nmodel_name_or_path: "org/Toy"\n',
    "pairs": "- [1, 2]\n- [0, 3]\n- [2, 0]\n",
    "strings": "heads: ['1-2', '0-3', '2-0']\n",
    "layer_map": "retrieval_heads: {1: [2], 0: [3], 2: [0]}\n",
}


@pytest.mark.parametrize("shape", list(YAML_SHAPES))
def test_yaml_unscored_shapes_are_ranked(tmp_path, shape):
    path = tmp_path / "heads.yaml"
    path.write_text(YAML_SHAPES[shape])
    hs = load_any_head_list(path, num_layers=3, num_heads=4)
    assert hs.top_k(3) == [(1, 2), (0, 3), (2, 0)]
    assert hs.scores[(1, 2)] == 1.0 and hs.scores[(2, 0)] == pytest.approx(1 / 3)
    assert hs.matrix().shape == (3, 4) and hs.extra["provenance"]["scores"].startswith("rank")
    if shape == "qrhead":
        assert hs.model == "org/Toy"
    binary = load_yaml_heads(path, unscored="binary")
    assert set(binary.scores.values()) == {1.0} and binary.matrix().shape == (3, 4)  # inferred from max index


def test_yaml_scored_shapes_and_errors(tmp_path):
    path = tmp_path / "h.yml"
    for text in (
        "- [1, 2, 0.5]\n- [0, 3, 0.9]\n",
        "heads:\n  - {layer: 1, head: 2, score: 0.5}\n  - {layer: 0, head: 3, score: 0.9}\n",
        "scores: {'1-2': 0.5, '0-3': 0.9}\n",
    ):
        path.write_text(text)
        hs = load_yaml_heads(path)
        assert hs.scores == {(1, 2): 0.5, (0, 3): 0.9} and hs.extra["provenance"]["scores"] == "from file"
    bad = {
        'attn_head_set: "full_heads"\n': "every head",
        "- [1, 2]\n- [1, 2]\n": "more than once",
        "- [1, 2, 0.5]\n- [0, 3]\n": "some entries",
        "- [1, 2]\n": "outside",
        "- {layer: 1}\n": "layer",
    }
    for text, message in bad.items():
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_yaml_heads(path, num_layers=1, num_heads=4) if message == "outside" else load_yaml_heads(
                path
            )


def test_csv_and_json_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    hs = HeadScores.from_matrix(rng.random((3, 4)), model="toy")
    export_head_list(hs, tmp_path / "h.csv")
    back = load_any_head_list(tmp_path / "h.csv")
    np.testing.assert_array_equal(back.matrix(), hs.matrix())  # repr() keeps every bit
    assert back.ranked() == hs.ranked()
    for fmt in ("retmask", "wu"):
        export_head_list(hs, tmp_path / f"{fmt}.json", format=fmt)
        np.testing.assert_allclose(load_any_head_list(tmp_path / f"{fmt}.json").matrix(), hs.matrix())
    with pytest.raises(FileExistsError):
        export_head_list(hs, tmp_path / "h.csv")
    (tmp_path / "noscore.csv").write_text("Layer,Head,note\n2,1,x\n0,0,y\n")
    assert load_csv_heads(tmp_path / "noscore.csv").top_k(2) == [(2, 1), (0, 0)]
    (tmp_path / "bad.csv").write_text("l,h\n1,2\n")
    with pytest.raises(ValueError, match="'layer' and 'head'"):
        load_any_head_list(tmp_path / "bad.csv")
    df = head_dataframe(hs)
    assert list(df.columns) == ["layer", "head", "score", "rank", "model", "method"] and len(df) == 12
    assert df["score"].is_monotonic_decreasing
    with pytest.raises(ValueError, match="unknown head-list format"):
        (tmp_path / "x.txt").write_text("hello")
        load_any_head_list(tmp_path / "x.txt")
    with pytest.raises(TypeError, match="unknown options"):
        load_any_head_list(tmp_path / "h.csv", groupsize=4)


def test_check_head_list_matches():
    model = make_tiny_model("llama")
    check_head_list_matches(HeadScores.from_matrix(np.zeros((2, 4))), model)
    with pytest.raises(ValueError, match="another model"):
        check_head_list_matches(HeadScores.from_matrix(np.zeros((2, 8))), model)


# -- TransformerLens ---------------------------------------------------------------------------------------
def test_tl_mask_hooks_structure():
    hooks = tl_mask_hooks([(1, 3), (0, 1), (1, 0), (1, 3)])
    assert [name for name, _ in hooks] == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]
    z = torch.ones(2, 5, 4, 3)
    out = hooks[1][1](z, None)
    assert out[:, :, [0, 3]].abs().sum() == 0 and out[:, :, [1, 2]].eq(1).all() and z.eq(1).all()
    with pytest.raises(ValueError, match="zero"):
        tl_mask_hooks([(0, 0)], mode="mean")


def test_tl_masking_equals_nnsight_masking():
    hf = make_tiny_model("llama")  # GQA: 4 query heads over 2 KV heads
    types_before = [type(m) for m in hf.modules()]
    bridge = tl_bridge(hf, tiny_tokenizer())
    ids = torch.tensor([[3, 5, 9, 12, 40, 7, 7, 22], [8, 1, 2, 3, 4, 5, 6, 7]])
    heads = [(0, 1), (1, 0), (1, 3)]
    with torch.no_grad():
        tl_plain = bridge(ids)
        tl_masked = tl_run_masked(bridge, ids, heads)
    torch.testing.assert_close(tl_plain, masking.masked_logits(hf, ids), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        tl_masked, masking.masked_logits(hf, ids, heads, mode="zero"), atol=1e-5, rtol=1e-5
    )
    assert (tl_masked - tl_plain).abs().max() > 1e-2  # the heads mattered
    assert [type(m) for m in hf.modules()] == types_before  # TL edited a copy, not the original


# -- masked checkpoint ---------------------------------------------------------------------------------------
def _reload_logits(path, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        return model(ids).logits


def test_export_masked_tiny_model(tmp_path):
    hf = make_tiny_model("llama")
    rm = as_model(hf, tiny_tokenizer())
    heads = [(1, 2), (0, 0)]
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    out = export_masked(rm, heads, tmp_path / "masked", provenance={"note": "test"})
    assert all(torch.equal(before[k], v) for k, v in hf.state_dict().items())  # original untouched
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    record = json.loads((out / MASKED_HEADS_FILE).read_text())
    assert record["heads"] == [[0, 0], [1, 2]] and record["provenance"] == {"note": "test"}
    ids = torch.tensor([[3, 5, 9, 12, 40, 7, 7, 22]])
    torch.testing.assert_close(
        _reload_logits(out, ids), masking.masked_logits(hf, ids, heads), atol=1e-5, rtol=1e-5
    )
    with pytest.raises(FileExistsError):
        export_masked(rm, heads, out, provenance={})
    export_masked(rm, [(1, 1)], out, provenance={}, overwrite=True)
    assert json.loads((out / MASKED_HEADS_FILE).read_text())["heads"] == [[1, 1]]
    assert not list(tmp_path.glob(".masked*"))  # no temporary directories left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a masked checkpoint"):
        export_masked(rm, heads, tmp_path / "mine", provenance={}, overwrite=True)
    with pytest.raises(ValueError, match="no heads"):
        export_masked(rm, [], tmp_path / "empty", provenance={})


def test_cli_export_masked_real_checkpoint(stories_path, tmp_path):
    """stories260K (5 layers, 8 query / 4 KV heads, SentencePiece): export from a CSV head list via the CLI."""
    from retmask_interp.core.models import load_model

    scores = np.zeros((5, 8))
    scores[4, 7], scores[2, 1], scores[0, 5], scores[3, 3] = 0.9, 0.7, 0.5, 0.05
    heads_csv = tmp_path / "heads.csv"
    export_head_list(HeadScores.from_matrix(scores, model="stories260K"), heads_csv)
    out = tmp_path / "masked"
    argv = [
        "-q",
        "export-masked",
        str(stories_path),
        "--heads",
        str(heads_csv),
        "--top-k",
        "3",
        "--out",
        str(out),
    ]
    assert main(argv + ["--device", "cpu"]) == 0
    record = json.loads((out / MASKED_HEADS_FILE).read_text())
    assert record["heads"] == [[0, 5], [2, 1], [4, 7]] and record["provenance"]["selection"]["top_k"] == 3
    rm = load_model(stories_path, device="cpu", dtype="float32")
    ids = rm.tokenizer("Once upon a time there was a little girl", return_tensors="pt").input_ids
    expected = masking.masked_logits(rm, ids, [(0, 5), (2, 1), (4, 7)])
    torch.testing.assert_close(_reload_logits(out, ids), expected, atol=1e-5, rtol=1e-5)
    assert main(argv + ["--device", "cpu"]) == 2  # refuses to overwrite
    thr = ["-q", "export-masked", str(stories_path), "--heads", str(heads_csv), "--threshold", "0.6"]
    assert main(thr + ["--out", str(tmp_path / "thr"), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "thr" / MASKED_HEADS_FILE).read_text())["heads"] == [[2, 1], [4, 7]]
    wrong = tmp_path / "wrong.csv"
    export_head_list(HeadScores.from_matrix(np.ones((32, 32))), wrong)
    assert main(["-q", "export-masked", str(stories_path), "--heads", str(wrong), "--top-k", "1",
                 "--out", str(tmp_path / "w"), "--device", "cpu"]) == 2  # fmt: skip


# -- every format both ways --------------------------------------------------------------------------------
def _scored(num_layers=4, num_heads=6, num_kv_heads=2, seed=1) -> HeadScores:
    rng = np.random.default_rng(seed)
    m = rng.random((num_layers, num_heads)) * (rng.random((num_layers, num_heads)) > 0.4)  # some exact zeros
    hs = HeadScores.from_matrix(m, model="toy/model")
    hs.geometry = {"num_layers": num_layers, "num_heads": num_heads, "num_kv_heads": num_kv_heads}
    hs.per_sample = {h: [s, s] for h, s in hs.scores.items()}
    return hs


@pytest.mark.parametrize(
    "name, fmt", [("h.json", None), ("wu.json", "wu"), ("h.csv", None), ("h.tsv", None), ("h.yaml", None)]
)
def test_every_format_round_trips(tmp_path, name, fmt):
    hs = _scored()
    path = hs.save(tmp_path / name, format=fmt)
    back = load_any_head_list(path, num_layers=4, num_heads=6, group_size=3)
    assert (back.num_layers, back.num_heads) == (4, 6)
    if path.suffix == ".tsv":  # per KV head: each query head carries the largest score of its group
        want = np.repeat(hs.matrix().reshape(4, 2, 3).max(-1), 3, axis=1)
        np.testing.assert_array_equal(back.matrix(), want)
        assert path.read_text().splitlines()[0].count("\t") == 1  # 2 KV heads a row
    elif path.suffix == ".yaml":  # QRHead: the ranked heads above 0, no scores
        listed = [(layer, head) for layer, head, s in hs.ranked() if s > 0]
        assert back.top_k(len(listed)) == listed
        assert {h for h, s in back.scores.items() if s > 0} == set(listed)
    else:  # scores kept to the last bit
        np.testing.assert_array_equal(back.matrix(), hs.matrix())
        assert back.ranked() == hs.ranked()
    again = load_any_head_list(path, num_layers=4, num_heads=6, group_size=3)  # reading twice is stable
    np.testing.assert_array_equal(again.matrix(), back.matrix())


def test_duo_attention_writer_needs_kv_heads_and_reads_back_exactly(tmp_path):
    hs = _scored()
    hs.geometry = {}
    with pytest.raises(ValueError, match="KV heads.*num_kv_heads"):
        export_head_list(hs, tmp_path / "full_attention_heads.tsv")
    assert not (tmp_path / "full_attention_heads.tsv").exists()
    export_head_list(hs, tmp_path / "full_attention_heads.tsv", num_kv_heads=6)  # no grouping: exact
    back = load_duo_attention(tmp_path / "full_attention_heads.tsv", group_size=1)
    np.testing.assert_array_equal(back.matrix(), hs.matrix())


def test_unknown_suffix_is_refused_and_nothing_written(tmp_path):
    hs = _scored()
    for name in ("heads.txt", "heads", "heads.npy"):
        with pytest.raises(ValueError, match="cannot tell the head-list format"):
            hs.save(tmp_path / name)
        assert not (tmp_path / name).exists()
    with pytest.raises(ValueError, match="unknown head-list format 'duoattention'"):
        hs.save(tmp_path / "h.json", format="duoattention")
    hs.save(tmp_path / "heads.txt", format="csv")  # a name for the format works with any suffix
    assert load_any_head_list(tmp_path / "heads.txt").ranked() == hs.ranked()


def test_save_twice_needs_overwrite(tmp_path):
    hs = _scored()
    for name in ("h.json", "h.csv", "h.tsv", "h.yaml"):
        hs.save(tmp_path / name)
        with pytest.raises(FileExistsError):
            hs.save(tmp_path / name)
        hs.save(tmp_path / name, overwrite=True)


def test_readers_refuse_a_file_that_does_not_fit_the_model(tmp_path, caplog):
    hs = _scored()
    rm = as_model(make_tiny_model("llama"))  # 2 layers x 4 heads (2 KV heads)
    for name in ("h.json", "h.csv", "h.yaml"):
        path = hs.save(tmp_path / name)
        with pytest.raises(ValueError, match="another model|outside"):
            load_any_head_list(path, model=rm)
    with pytest.raises(ValueError, match="layers"):
        load_any_head_list(hs.save(tmp_path / "h.tsv"), model=rm)
    # a QRHead list without a shape: read, with a warning that names the options
    (tmp_path / "qr.yaml").write_text('model_name_or_path: x\nattn_head_set: "1-2,0-3"\n')
    with caplog.at_level(logging.WARNING):
        small = load_any_head_list(tmp_path / "qr.yaml")
    assert (small.num_layers, small.num_heads) == (2, 4) and "--num-layers" in caplog.text
    fitted = load_any_head_list(tmp_path / "qr.yaml", num_layers=30, num_heads=9)
    assert (fitted.num_layers, fitted.num_heads) == (30, 9) and fitted.top_k(2) == [(1, 2), (0, 3)]
    with pytest.raises(ValueError, match="outside"):
        load_any_head_list(tmp_path / "qr.yaml", num_layers=1, num_heads=9)


def test_cli_heads_export_converts(tmp_path, capsys):
    hs = _scored()
    src = hs.save(tmp_path / "heads.json")
    assert main(["heads", str(src), "--export", str(tmp_path / "heads.csv")]) == 0
    assert load_any_head_list(tmp_path / "heads.csv").ranked() == hs.ranked()
    assert main(["heads", str(src), "--export", str(tmp_path / "full_attention_heads.tsv")]) == 0
    assert main(["heads", str(src), "--export", str(tmp_path / "wu.json"), "--format", "wu"]) == 0
    assert set(json.loads((tmp_path / "wu.json").read_text())) == {
        f"{la}-{h}" for la in range(4) for h in range(6)
    }
    assert "wrote" in capsys.readouterr().out
    assert main(["heads", str(src), "--export", str(tmp_path / "heads.txt")]) == 2  # unknown suffix
    assert "cannot tell the head-list format" in capsys.readouterr().err
    assert not (tmp_path / "heads.txt").exists()
    assert main(["heads", str(tmp_path / "heads.csv"), "--num-layers", "4", "--num-heads", "6"]) == 0
