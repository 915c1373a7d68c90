"""paper_figures / `retmask figures`: every figure from tiny models and a fake published-data directory, the
numbers behind the figures, determinism, the published files (when ../shared exists), and notebook hygiene."""

from __future__ import annotations

import filecmp
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import make_tiny_model

from retmask_interp.analysis.export import save_figure
from retmask_interp.analysis.metrics import gini
from retmask_interp.cli import main
from retmask_interp.heads.scores import HeadScores
from retmask_interp.measure.stats import spearman
from retmask_interp.workflows import paper_figures as pf

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "retmask_interp" / "organism" / "tokenizer"
NOTEBOOKS = REPO / "notebooks"
NOTEBOOK_NAMES = [
    "01_finding_retrieval_heads.ipynb",
    "02_masking.ipynb",
    "03_organisation_across_models.ipynb",
    "04_retmask_training.ipynb",
    "05_paper_figures.ipynb",
    "06_real_model.ipynb",
]
# 2 samples, 3 new tokens, no success filter
TINY = dict(
    lengths=[100],
    num_depths=2,
    num_needles=1,
    max_new_tokens=3,
    rouge_threshold=0.0,
    topk=[2],
    seeds=1,
)


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


@pytest.fixture(scope="module")
def tiny_models(tok):
    from retmask_interp.core.models import as_model

    return {"a": as_model(make_tiny_model("llama", vocab_size=len(tok)), tok)}


@pytest.fixture(scope="module")
def results_a(tiny_models):
    # random models never copy the needle (all scores 0): give scores, so that there are heads to mask
    scores = HeadScores.from_matrix(np.array([[0.0, 0.5, 0.01, 0.0], [0.3, 0.0, 0.0, 0.05]]), model="a")
    return pf.run_model(tiny_models["a"], pf.FigureConfig(**TINY), name="a", head_scores=scores)


def _fake_shared(root: Path) -> dict[str, np.ndarray]:
    """A published-data directory: two Wu-format score files and one DuoAttention gate file."""
    rng = np.random.default_rng(0)
    mats = {"Llama-3.1-8B-Instruct": rng.random((4, 8)) ** 4, "Other-Model": rng.random((3, 4)) ** 2}
    for name, m in mats.items():
        per_sample = {
            f"{i}-{j}": [float(m[i, j]), float(m[i, j])] for i in range(m.shape[0]) for j in range(m.shape[1])
        }
        path = root / "head_scores" / "retmask2026" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(per_sample))
    gates = (
        root
        / "head_patterns"
        / "duo_attention"
        / "Meta-Llama-3.1-8B-Instruct"
        / "run"
        / "full_attention_heads.tsv"
    )
    gates.parent.mkdir(parents=True)
    mats["gates"] = rng.random((4, 2))
    np.savetxt(gates, mats["gates"], delimiter="\t")
    return mats


def _panel_z(fig, name: str) -> np.ndarray:
    return np.asarray(next(t.z for t in fig.data if t.type == "heatmap" and t.name == name))


def test_regenerate_all_writes_every_figure_deterministically(tmp_path, tiny_models, monkeypatch):
    _fake_shared(tmp_path / "shared")
    config = pf.FigureConfig(**TINY, formats=("html",))
    out1 = tmp_path / "one"
    man = pf.regenerate_all(out1, shared=tmp_path / "shared", config=config, models=tiny_models)
    stems = {e["stem"] for e in man["figures"]}
    assert stems == {
        "heatmaps_organisms",
        "heatmaps_retmask2026",
        "concentration_curves",
        "concentration_metrics",
        "niah_masking_a",
        "topk_masking",
        "duo_agreement_Llama-3.1-8B-Instruct",
    }
    assert all(e["description"] and e["files"] == [f"{e['stem']}.html"] for e in man["figures"])
    assert any("gain" in n for n in man["notes"])  # no results JSON: that figure is skipped with a note
    for kind in ("heads", "niah", "topk"):  # the numbers behind the figures
        assert (out1 / "data" / f"{kind}_a.csv").exists()
    assert (out1 / "data" / "metrics.csv").exists() and (out1 / "index.md").read_text().count("| [") == 7

    # a second, complete run gives byte-identical files
    out2 = tmp_path / "two"
    pf.regenerate_all(out2, shared=tmp_path / "shared", config=config, models=tiny_models)
    cmp = filecmp.dircmp(out1, out2)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert not filecmp.dircmp(out1 / "data", out2 / "data").diff_files

    # reuse_data re-draws from data/ without running a model, and gives the same files again
    monkeypatch.setattr(pf, "run_model", lambda *a, **k: pytest.fail("reuse_data must not recompute"))
    out3 = tmp_path / "three"
    shutil.copytree(out1 / "data", out3 / "data")
    pf.regenerate_all(out3, shared=tmp_path / "shared", config=config, models=tiny_models, reuse_data=True)
    assert not filecmp.dircmp(out1, out3).diff_files
    assert not filecmp.dircmp(out1 / "data", out3 / "data").diff_files  # the numbers round-trip exactly
    # other settings: the saved numbers are not reused
    with pytest.raises(pytest.fail.Exception):
        pf.regenerate_all(
            out3,
            config=pf.FigureConfig(**TINY | {"max_new_tokens": 2}),
            models=tiny_models,
            reuse_data=True,
            overwrite=True,
        )


def test_figures_show_the_numbers(tmp_path, results_a):
    mats = _fake_shared(tmp_path)
    r = results_a
    assert r.retrieval == [(0, 1), (1, 0)]  # score >= 0.1, ranked
    assert sorted(set(r.niah["kind"])) == ["random", "retrieval", "unmasked"] and len(r.niah) == 3 * 2
    assert r.niah.groupby("kind")["n_heads"].first().to_dict() == {
        "unmasked": 0,
        "retrieval": len(r.retrieval),
        "random": len(r.retrieval),
    }
    assert sorted(r.topk["k"].unique()) == [0, 2] and set(r.topk["kind"]) == {"retrieval", "random"}
    unmasked = r.niah[r.niah["kind"] == "unmasked"]
    assert (r.topk[r.topk["k"] == 0]["success"] == unmasked["success"].mean()).all()
    published = pf.published_head_scores(tmp_path)
    assert list(published) == ["retmask2026"] and sorted(published["retmask2026"]) == [
        "Llama-3.1-8B-Instruct",
        "Other-Model",
    ]
    figs, notes = pf.render_figures({"a": r}, published=published, duo=pf.duo_pairs(tmp_path))
    np.testing.assert_allclose(_panel_z(figs["heatmaps_organisms"], "organism: a"), r.heads.matrix())
    np.testing.assert_allclose(_panel_z(figs["heatmaps_retmask2026"], "Other-Model"), mats["Other-Model"])
    curves = [t for t in figs["concentration_curves"].data if t.name == "Other-Model"]
    np.testing.assert_allclose(curves[0].y, np.sort(mats["Other-Model"].ravel())[::-1])
    # DuoAttention: retrieval scores reduced to KV heads (max over each group of 4 query heads) vs the gates
    kv = mats["Llama-3.1-8B-Instruct"].reshape(4, 2, 4).max(-1)
    duo = figs["duo_agreement_Llama-3.1-8B-Instruct"]
    np.testing.assert_allclose(duo.data[0].x, kv.ravel())
    np.testing.assert_allclose(duo.data[0].y, mats["gates"].ravel())
    assert f"Spearman {spearman(kv, mats['gates']):.2f}" in duo.layout.title.text
    top = figs["topk_masking"]
    assert {t.name for t in top.data} == {"a: top-k retrieval heads", "a: k random heads"}
    titles = [a.text for a in figs["niah_masking_a"].layout.annotations]
    n = len(r.retrieval)
    assert titles == ["unmasked", f"{n} retrieval heads masked", f"{n} random heads masked (1 seed)"]


def _experiment_json(gains: dict, ci: dict, gini_: dict) -> dict:
    """The shape of studies/organism_retmask/experiment_results.json (studies/organism_retmask/retmask_experiment.py)."""
    return {
        "organisms": {
            name: {
                "metrics": {"gini": gini_[name]},
                "weights_sha256": "0" * 64,
                "conditions": {
                    "none": {"long_context_score": 0.2},
                    **{
                        cond: {
                            "gain": gains[name][cond],
                            "vs_none_by_task": [
                                {"task": "all", "ci_low": ci[name][cond][0], "ci_high": ci[name][cond][1]}
                            ],
                        }
                        for cond in gains[name]
                    },
                },
            }
            for name in gains
        }
    }


def test_gain_results_shapes_and_figure(tmp_path):
    records = [{"model": "x", "gain": 1.5, "gini": 0.2}, {"model": "y", "delta": -0.5}]
    for i, obj in enumerate([records, {"models": records}, {"results": records}]):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps(obj))
        df = pf.load_gain_results(path)
        assert df["model"].tolist() == ["x", "y"] and df["gain"].tolist() == [1.5, -0.5]
        assert df["condition"].tolist() == ["retmask", "retmask"]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a_notes.json").write_text(json.dumps({"unrelated": "file"}))
    (tmp_path / "d" / "b.json").write_text(json.dumps(records))
    assert pf.load_gain_results(tmp_path / "d").attrs["source"] == "b.json"  # the first file with gains
    assert pf.load_gain_results(tmp_path / "missing") is None and pf.load_gain_results(None) is None
    # y has no concentration metric: it is taken from the head list of that name
    y = HeadScores.from_matrix(np.array([[0.9, 0.0], [0.0, 0.1]]), model="y")
    figs, _ = pf.render_figures(
        {}, published={"g": {"y": y}}, gains=pf.load_gain_results(tmp_path / "r0.json")
    )
    point = figs["gain_vs_concentration"].data[0]
    assert list(point.text) == ["x", "y"]
    np.testing.assert_allclose(point.x, [0.2, gini(y.matrix())])
    np.testing.assert_allclose(point.y, [1.5, -0.5])

    # the experiment script's JSON: one row per organism and trained condition, with the pooled CI
    gains = {"c": {"retmask": 0.03, "random": 0.01}, "d": {"retmask": 0.0, "random": 0.02}}
    ci = {n: {k: (v - 0.02, v + 0.03) for k, v in g.items()} for n, g in gains.items()}
    (tmp_path / "exp.json").write_text(json.dumps(_experiment_json(gains, ci, {"c": 0.9, "d": 0.5})))
    df = pf.load_gain_results(tmp_path / "exp.json")
    assert sorted(zip(df.model, df.condition, df.gain)) == sorted(
        (n, c, v) for n, g in gains.items() for c, v in g.items()
    )
    fig = pf.fig_gain_vs_concentration(df)
    retmask, random = fig.data[0], fig.data[1]
    assert retmask.name == "RetMask DPO" and random.name == "random (control)"
    np.testing.assert_allclose(retmask.x, [0.9, 0.5])
    np.testing.assert_allclose(retmask.y, [0.03, 0.0])
    np.testing.assert_allclose(retmask.error_y.array, [0.03, 0.03])
    np.testing.assert_allclose(retmask.error_y.arrayminus, [0.02, 0.02])


def test_cli_figures(tmp_path, capsys):
    _fake_shared(tmp_path / "shared")
    (tmp_path / "gains.json").write_text(json.dumps([{"model": "Other-Model", "gain": 2.0}]))
    out = tmp_path / "figs"
    argv = ["-q", "figures", "--out", str(out), "--shared", str(tmp_path / "shared"), "--organisms"]
    code = main(argv + ["--formats", "html", "--results", str(tmp_path / "gains.json")])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    stems = {e["stem"] for e in manifest["figures"]}
    assert {"heatmaps_retmask2026", "gain_vs_concentration", "concentration_curves"} <= stems
    assert "heatmaps_organisms" not in stems and manifest["gains_source"] == "gains.json"
    assert "gain_vs_concentration" in capsys.readouterr().out
    assert main(["figures", "--out", str(out), "--shared", str(tmp_path / "nope"), "--organisms"]) == 2
    nothing = [
        "-q",
        "figures",
        "--out",
        str(tmp_path / "empty"),
        "--organisms",
        "--results",
        str(tmp_path / "no"),
        "--real-study",  # alone: no real-model studies (by default studies/real_models/* are re-drawn)
    ]
    (tmp_path / "no").mkdir()  # a directory without results files
    assert main(nothing + ["--formats", "html"]) == 2  # no input at all: a one-line error, nothing written
    assert not (tmp_path / "empty" / "manifest.json").exists()


def test_cli_figures_refuses_to_overwrite(tmp_path, capsys):
    """An output directory that holds figures is refused before any work; --overwrite replaces them."""
    _fake_shared(tmp_path / "shared")
    out = tmp_path / "figs"
    argv = ["-q", "figures", "--out", str(out), "--shared", str(tmp_path / "shared"), "--organisms"]
    argv += ["--formats", "html", "--results", str(tmp_path / "shared")]
    assert main(argv) == 0
    (out / "index.md").write_text("my notes\n")
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err and (out / "index.md").read_text() == "my notes\n"
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "index.md").read_text().startswith("# Figures")


def test_cli_figures_results_file_is_used_or_refused(tmp_path, capsys):
    """``--results FILE`` is read (not replaced by the default docs/ search); a FILE that is missing or holds no
    gains is an error that names it."""
    _fake_shared(tmp_path / "shared")
    argv = ["-q", "figures", "--shared", str(tmp_path / "shared"), "--organisms", "--formats", "html"]
    gains = tmp_path / "mine.json"
    gains.write_text(json.dumps({"results": [{"model": "Other-Model", "delta": 1.0}]}))
    assert main(argv + ["--out", str(tmp_path / "a"), "--results", str(gains)]) == 0
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["gains_source"] == "mine.json"
    capsys.readouterr()
    assert main(argv + ["--out", str(tmp_path / "b"), "--results", str(tmp_path / "typo.json")]) == 2
    assert "typo.json does not exist" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"unrelated": 1}))
    assert main(argv + ["--out", str(tmp_path / "c"), "--results", str(other)]) == 2
    assert "holds no RetMask gains" in capsys.readouterr().err


def test_cli_figures_unknown_organism(tmp_path, capsys):
    code = main(["-q", "figures", "--out", str(tmp_path / "o"), "--organisms", "nosuch", "--formats", "html"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown organism 'nosuch'" in err and "concentrated" in err
    assert "not installed" not in err


def test_gain_results_errors_are_not_swallowed(tmp_path, monkeypatch):
    """Only "not JSON" and "not a results file" are passed over in a directory; a results file with a malformed
    entry is an error naming it, and a bug in the reader propagates instead of becoming "no RetMask results"."""
    from retmask_interp.workflows import published

    d = tmp_path / "d"
    d.mkdir()
    (d / "a.json").write_text("not json")
    (d / "b.json").write_text(json.dumps({"unrelated": [1, 2]}))
    (d / "c.json").write_text(json.dumps({"models": 5}))
    (d / "e.json").write_text(json.dumps([{"model": "x", "gain": 1.0}]))
    assert pf.load_gain_results(d).attrs["source"] == "e.json"
    (d / "bad.json").write_text(json.dumps({"organisms": {"x": ["not", "an", "object"]}}))
    with pytest.raises(ValueError, match="bad.json.*organisms"):
        pf.load_gain_results(d)
    (d / "bad.json").unlink()

    def broken(obj, source):
        raise AttributeError("a bug in the reader")

    monkeypatch.setattr(published, "_gain_records", broken)
    with pytest.raises(AttributeError, match="a bug"):
        pf.load_gain_results(d)


def test_static_export(tmp_path):
    if not (shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chromium-browser")):
        pytest.skip("static export needs Chrome/Chromium")
    fig = pf.fig_heatmaps({"m": HeadScores.from_matrix(np.eye(3), model="m")})
    files = save_figure(fig, tmp_path / "h", formats=("png", "svg", "html"), html="cdn")
    assert [f.name for f in files] == ["h.png", "h.svg", "h.html"]
    again = save_figure(fig, tmp_path / "again" / "h", formats=("png", "svg", "html"), html="cdn")
    for a, b in zip(files, again):  # plotly.js's random element ids are fixed: the same bytes every time
        assert a.read_bytes() == b.read_bytes(), a.name
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "h.svg").read_bytes()[:400]
    html = (tmp_path / "h.html").read_text()
    assert "cdn.plot.ly" in html and len(html) < 200_000  # plotly.js is not embedded


def test_published_files(shared_dir):
    published = pf.published_head_scores(shared_dir / "data")
    assert sorted(published) == ["retmask2026", "wu2024"] and len(published["wu2024"]) == 7
    counts = {name: len(hs.above(0.1)) for name, hs in published["retmask2026"].items()}
    assert counts == {
        "Llama-3.1-8B-Instruct": 33,
        "Qwen3-8B": 57,
        "Olmo-3-7B-Think": 46,
    }  # METHOD_NOTES table
    pairs = pf.duo_pairs(shared_dir)  # the parent of data/ is accepted too
    assert sorted(pairs) == ["Llama-3.1-8B-Instruct", "Mistral-7B-v0.2"]
    for kv, gates in pairs.values():
        assert kv.matrix().shape == gates.matrix().shape == (32, 8)
    kv, gates = pairs["Llama-3.1-8B-Instruct"]
    assert spearman(kv.matrix(), gates.matrix()) == pytest.approx(0.481, abs=0.005)


# ---------------------------------------------------------------------------------------------- notebooks
def _notebooks():
    nbformat = pytest.importorskip("nbformat")
    return {p.name: nbformat.read(p, as_version=4) for p in sorted(NOTEBOOKS.glob("*.ipynb"))}


def test_notebooks_are_committed_clean():
    nbs = _notebooks()
    assert sorted(nbs) == NOTEBOOK_NAMES
    for name, nb in nbs.items():
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs"
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", name
        md = [c for c in nb.cells if c.cell_type == "markdown"]
        assert len(md) >= 5 and md[0].source.startswith("# "), f"{name}: explain what is measured and why"


def test_notebooks_import_rather_than_copy_helpers():
    defined: dict[str, str] = {}
    for name, nb in _notebooks().items():
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "retmask_interp" in code, name
        for fn in re.findall(r"^def (\w+)", code, flags=re.M):
            assert fn not in defined, (
                f"{fn} is defined in {defined.get(fn)} and {name}: move it to the library"
            )
            defined[fn] = name


def test_gains_measured_on_other_weights_are_flagged(tmp_path, tiny_models, results_a, monkeypatch):
    config = pf.FigureConfig(**TINY, formats=("html",))
    key = f"{config.experiment_key()}-{'a' * 12}"  # the installed weights' fingerprint
    monkeypatch.setattr(pf, "default_models", lambda cfg: (tiny_models, {"a": key}, []))
    monkeypatch.setattr(pf, "run_model", lambda *a, **k: results_a)
    exp = _experiment_json({"a": {"retmask": 0.1}}, {"a": {"retmask": (0.0, 0.2)}}, {"a": 0.5})
    for sha, flagged in (("a" * 64, False), ("b" * 64, True)):
        exp["organisms"]["a"]["weights_sha256"] = sha
        (tmp_path / f"{sha[0]}.json").write_text(json.dumps(exp))
        man = pf.regenerate_all(tmp_path / sha[0], config=config, results=tmp_path / f"{sha[0]}.json")
        assert any("other weights" in n for n in man["notes"]) == flagged
        assert "gain_vs_concentration" in {e["stem"] for e in man["figures"]}
    saved = json.loads((tmp_path / "a" / "data" / "results_a.json").read_text())
    assert saved["experiment_key"] == key  # saved numbers carry the weights' fingerprint


def test_static_only_figures_write_no_html(tmp_path):
    """A figure that gets no HTML (not interactive) goes through the figure writer with static formats only."""
    _fake_shared(tmp_path / "shared")
    config = pf.FigureConfig(**TINY, formats=("svg",), html="cdn")
    man = pf.regenerate_all(tmp_path / "out", shared=tmp_path / "shared", config=config, models={})
    files = {e["stem"]: e["files"] for e in man["figures"]}
    assert "concentration_curves" in files and "heatmaps_retmask2026" in files
    assert not any(f.endswith(".html") for f in files["concentration_curves"])
    assert "heatmaps_retmask2026.html" in files["heatmaps_retmask2026"]  # interactive: HTML as well
