"""Property tests of every file reader: any bytes give a valid object or ``InputError`` (with a message), never
another exception, a hang (hypothesis deadline) or a huge allocation (geometry bound)."""

from __future__ import annotations

import json
import math

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from retmask_interp.core.io import InputError  # noqa: E402
from retmask_interp.heads.scores import MAX_HEADS, HeadScores  # noqa: E402

FUZZ = settings(
    max_examples=150,
    deadline=10_000,  # a hang, not a slow example on a loaded 2-core machine (2 s failed there under load)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

KEYS = [
    "scores", "model", "geometry", "num_layers", "num_heads", "schema_version", "per_sample_scores", "method",
    "params", "samples", "total", "counted", "name", "0-0", "1-2", "0-1", "3000-3000", "-1-2", "a-b", "layer",
    "head", "score", "attn_head_set", "heads", "prompt", "chosen", "rejected", "needle", "question",
    "real_needle", "sample_id", "input_ids", "answer_span", "generated_ids", "counted", "config", "settings",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["0-1", "1-0", "full_heads", "0-1,1-0", "nan", "inf", "3000-3000", "0.5"])
)
keys = st.sampled_from(KEYS) | st.text(max_size=6)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(keys, c, max_size=5), max_leaves=20
)
json_bytes = json_values.map(lambda v: json.dumps(v).encode())
jsonl_bytes = st.lists(json_values.map(json.dumps), max_size=5).map(lambda ls: "\n".join(ls).encode())
csv_bytes = st.lists(
    st.lists(st.sampled_from(["layer", "head", "score", "0", "1", "2", "nan", "inf", "-1", "x", "", "3000"]),
             min_size=1, max_size=4).map(",".join), max_size=5,
).map(lambda rows: "\n".join(rows).encode())  # fmt: skip
tsv_bytes = st.lists(
    st.lists(st.sampled_from(["0", "1", "0.5", "-1e-4", "nan", "inf", "x", ""]), min_size=1, max_size=4).map(
        "\t".join
    ),
    max_size=4,
).map(lambda rows: "\n".join(rows).encode())
any_bytes = st.binary(max_size=300) | json_bytes | jsonl_bytes


def _check_heads(hs):
    assert isinstance(hs, HeadScores)
    assert 1 <= hs.num_layers * hs.num_heads <= MAX_HEADS
    m = hs.matrix()
    assert m.shape == (hs.num_layers, hs.num_heads)
    assert all(math.isfinite(v) for v in hs.scores.values())


def _run(tmp_path, name, data, reader, check=None):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        out = reader(path)
    except InputError as err:
        assert str(err), "an InputError needs a message"
        return
    if check is not None:
        check(out)


@FUZZ
@given(data=any_bytes | json_bytes)
def test_head_json_reader(tmp_path, data):
    from retmask_interp.heads.scores import load_head_scores

    _run(tmp_path, "h.json", data, load_head_scores, _check_heads)


@FUZZ
@given(data=st.binary(max_size=200) | json_bytes, geo=st.sampled_from([None, (2, 4), (40, 40)]))
def test_head_json_reader_with_geometry(tmp_path, data, geo):
    from retmask_interp.heads.formats import load_any_head_list

    kw = {"geometry": {"num_layers": geo[0], "num_heads": geo[1]}} if geo else {}
    _run(tmp_path, "h.json", data, lambda p: load_any_head_list(p, **kw), _check_heads)


@FUZZ
@given(data=st.binary(max_size=200) | tsv_bytes, group=st.sampled_from([1, 2]))
def test_duo_attention_reader(tmp_path, data, group):
    from retmask_interp.heads.formats import load_duo_attention

    _run(tmp_path, "full_attention_heads.tsv", data, lambda p: load_duo_attention(p, group_size=group),
         _check_heads)  # fmt: skip


@FUZZ
@given(data=st.binary(max_size=200) | json_bytes | st.text(max_size=80).map(str.encode))
def test_yaml_reader(tmp_path, data):
    from retmask_interp.heads.formats import load_yaml_heads

    _run(tmp_path, "h.yaml", data, load_yaml_heads, _check_heads)


@FUZZ
@given(data=st.binary(max_size=200) | csv_bytes)
def test_csv_reader(tmp_path, data):
    from retmask_interp.heads.formats import load_csv_heads

    _run(tmp_path, "h.csv", data, load_csv_heads, _check_heads)


@FUZZ
@given(data=any_bytes)
def test_any_head_list_by_content(tmp_path, data):
    from retmask_interp.heads.formats import load_any_head_list

    _run(tmp_path, "heads.txt", data, load_any_head_list, _check_heads)


@FUZZ
@given(data=any_bytes)
def test_needles_reader(tmp_path, data):
    from retmask_interp.data.niah import read_needles

    def check(needles):
        assert needles and all(isinstance(n["needle"], str) and n["real_needle"] for n in needles)

    _run(tmp_path, "needles.jsonl", data, read_needles, check)


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_haystack_reader(tmp_path, data):
    from retmask_interp.data.niah import load_haystack

    _run(tmp_path, "hay.txt", data, load_haystack, lambda h: h.text.strip() and "\x00" not in h.text)


@FUZZ
@given(data=any_bytes)
def test_prompts_reader(tmp_path, data):
    from retmask_interp.retmask.pairs import load_prompts

    _run(tmp_path, "prompts.jsonl", data, load_prompts, lambda ps: all(p.text.strip() for p in ps))


@settings(FUZZ, deadline=None, max_examples=100)  # datasets' first import is slow; bounded by the file size
@given(data=any_bytes)
def test_pairs_reader(tmp_path, data):
    pytest.importorskip("datasets")
    from retmask_interp.retmask.training import load_pairs_dataset

    _run(tmp_path, "pairs.jsonl", data, load_pairs_dataset, lambda ds: len(ds) > 0)


@FUZZ
@given(data=any_bytes)
def test_samples_reader(tmp_path, data):
    from retmask_interp.measure.detect import check_samples_file, load_sample_results

    _run(tmp_path, "s.jsonl", data, load_sample_results)
    _run(tmp_path, "s.jsonl", data, check_samples_file)
