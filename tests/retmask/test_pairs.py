"""RetMask preference pairs: prompts, seeds, dropping, resumption, masking really applied."""

from __future__ import annotations

import json

import pytest
import torch

from retmask_interp.core.io import read_jsonl
from retmask_interp.heads.scores import HeadScores
from retmask_interp.interventions import masking
from retmask_interp.retmask.pairs import (
    PairsConfig,
    Prompt,
    builtin_prompts,
    encode_prompt,
    heads_hash,
    load_prompts,
    make_pairs,
    pair_paths,
    pair_records,
    pairs_from_responses,
    resolve_heads,
    sample_seed,
    task_prompts,
)

HEADS = [(0, 0), (0, 3), (1, 2), (2, 5), (3, 1), (4, 6)]
PROMPTS = [
    "Once upon a time, there was a little dog",
    "Lily went to the park with her mom",
    "Tom had a big red ball",
    "The sun was hot and the bird",
    "One day, a cat found a box",
]
CFG = PairsConfig(max_new_tokens=10, batch_size=2, seed=3)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a shared 2-core machine
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def stories(request):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "stories260K"
    if not path.exists():
        pytest.skip("../shared/models/stories260K is absent")
    from retmask_interp.core.models import load_model

    return load_model(path, device="cpu", dtype="float32")


def _records(path):
    return sorted(read_jsonl(path), key=lambda r: r["prompt_index"])


# -- prompts, heads, seeds ---------------------------------------------------------------------------------------
def test_load_prompts_sources(tmp_path):
    rows = [
        {"text": "hello there", "uid": "a"},
        {"text": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "first turn"}]},
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = load_prompts(path, column="text", id_column="uid")
    assert got == [Prompt(0, "hello there", "a"), Prompt(1, "first turn", None)]
    assert load_prompts(["x", "y", "z"], limit=2) == [Prompt(0, "x"), Prompt(1, "y")]
    from datasets import Dataset

    ds = Dataset.from_list([{"prompt": "q1", "id": 7}, {"prompt": "q2", "id": 8}])
    assert [(p.text, p.id) for p in load_prompts(ds)] == [("q1", 7), ("q2", 8)]
    with pytest.raises(ValueError, match="no 'prompt' field"):
        load_prompts(path)
    with pytest.raises(ValueError, match="empty prompt"):
        load_prompts(["ok", "  "])
    with pytest.raises(FileNotFoundError):
        load_prompts(tmp_path / "missing.jsonl")


def test_builtin_prompts_deterministic_and_short():
    a, b = builtin_prompts(50, seed=1), builtin_prompts(50, seed=1)
    assert a == b and len(a) == 50
    assert builtin_prompts(50, seed=2) != a
    assert all(5 <= len(p.split()) <= 20 for p in a)
    assert len(set(a)) > 40


def test_resolve_heads_and_hash(tmp_path):
    m = torch.zeros(3, 4)
    m[0, 1], m[2, 3], m[1, 0] = 0.9, 0.5, 0.05
    path = HeadScores.from_matrix(m.numpy(), model="toy").save(tmp_path / "h.json")
    assert resolve_heads(head_file=path, top_k=2) == [(0, 1), (2, 3)]
    assert resolve_heads(head_file=path, threshold=0.1) == [(0, 1), (2, 3)]
    assert resolve_heads([(2, 3), [0, 1], (2, 3)]) == [(0, 1), (2, 3)]
    with pytest.raises(ValueError, match="either"):
        resolve_heads()
    assert heads_hash([(2, 3), (0, 1)]) == heads_hash([(0, 1), (2, 3)])
    assert heads_hash([(0, 1)], "zero") != heads_hash([(0, 1)], "uniform")
    assert heads_hash([(0, 1)]) != heads_hash([(0, 2)])


def test_sample_seed_is_stable_and_spread():
    assert sample_seed(0, 0) == sample_seed(0, 0)
    seeds = {sample_seed(s, i) for s in range(3) for i in range(100)}
    assert len(seeds) == 300 and all(0 <= x < 2**64 for x in seeds)


# -- dropping and writing ----------------------------------------------------------------------------------------
def test_drop_reasons_counted(tmp_path):
    prompts = ["p0", "p1", "p2", "p3", "p4", "p5"]
    normal = ["a fine answer", "", "x", "  ", " same ", "kept too"]
    masked = ["a worse answer", "y", "", None, "same", "different"]
    stats = pairs_from_responses(
        prompts, normal, masked, tmp_path / "pairs.jsonl", heads=[(1, 2)], format="plain"
    )
    assert stats.kept == 2 and stats.total_prompts == 6
    assert stats.dropped == {"empty_chosen": 1, "empty_rejected": 1, "empty_both": 1, "identical": 1}
    kept = _records(tmp_path / "pairs.jsonl")
    assert [r["prompt_index"] for r in kept] == [0, 5]
    assert kept[0]["chosen"] == "a fine answer" and kept[0]["rejected"] == "a worse answer"
    assert kept[0]["heads_hash"] == heads_hash([(1, 2)])
    dropped = {r["prompt_index"]: r["reason"] for r in read_jsonl(tmp_path / "pairs.dropped.jsonl")}
    assert dropped == {1: "empty_chosen", 2: "empty_rejected", 3: "empty_both", 4: "identical"}
    on_disk = json.loads((tmp_path / "pairs.stats.json").read_text())
    assert on_disk["kept"] == 2 and on_disk["num_dropped"] == 4
    with pytest.raises(FileExistsError):
        pairs_from_responses(prompts, normal, masked, tmp_path / "pairs.jsonl", format="plain")
    with pytest.raises(ValueError, match="parallel"):
        pairs_from_responses(prompts, normal[:2], masked, tmp_path / "other.jsonl")


def test_conversational_records(tmp_path):
    stats = pairs_from_responses(["hi"], ["hello!"], ["hel"], tmp_path / "c.jsonl", format="conversational")
    rec = next(read_jsonl(tmp_path / "c.jsonl"))
    assert stats.format == "conversational"
    assert rec["prompt"] == [{"role": "user", "content": "hi"}]
    assert rec["chosen"] == [{"role": "assistant", "content": "hello!"}]
    assert rec["rejected"] == [{"role": "assistant", "content": "hel"}]


def test_pair_paths():
    p = pair_paths("/x/run.jsonl")
    assert (p.dropped.name, p.stats.name) == ("run.dropped.jsonl", "run.stats.json")


# -- sampling on a real checkpoint -------------------------------------------------------------------------------
def test_make_pairs_counts_files_and_heads(stories, tmp_path, monkeypatch):
    calls = []
    real = masking.generate

    def spy(model, input_ids, heads=(), mode="zero", **kw):
        calls.append((list(heads), mode, kw["seed"], kw["temperature"], kw["top_p"], kw["max_new_tokens"]))
        return real(model, input_ids, heads, mode, **kw)

    monkeypatch.setattr(masking, "generate", spy)
    out = tmp_path / "pairs.jsonl"
    stats = make_pairs(stories, PROMPTS, HEADS, out, config=CFG, progress=False)
    assert stats.total_prompts == 5 and stats.kept + stats.num_dropped == 5
    assert stats.format == "plain" and stats.heads == [list(h) for h in sorted(HEADS)]
    # every batch: one unmasked and one masked call with identical sampling settings and seed
    assert len(calls) == 6
    for normal, masked_call in zip(calls[::2], calls[1::2]):
        assert normal[0] == [] and masked_call[0] == sorted(HEADS) and masked_call[1] == "zero"
        assert normal[2:] == masked_call[2:] and normal[3:] == (0.6, 1.0, 10)
    recs = _records(out) + list(read_jsonl(pair_paths(out).dropped))
    assert sorted(r["prompt_index"] for r in recs) == [0, 1, 2, 3, 4]
    for r in _records(out):
        assert r["prompt"] == PROMPTS[r["prompt_index"]]
        assert r["chosen"].strip() and r["rejected"].strip() and r["chosen"].strip() != r["rejected"].strip()
        assert 1 <= r["chosen_tokens"] <= 10 and r["seed"] == 3 and r["mode"] == "zero"
    # masking 6 of 40 heads changes what this real model writes
    assert stats.kept >= 3


def test_masked_side_is_masking_generate(stories, tmp_path):
    """The rejected text equals masking.generate's output with the heads masked and the pair's seed."""
    cfg = PairsConfig(max_new_tokens=8, batch_size=1, seed=5)
    make_pairs(stories, PROMPTS[:1], HEADS, tmp_path / "p.jsonl", config=cfg, progress=False)
    rec = pair_records(tmp_path / "p.jsonl")[0]
    ids = encode_prompt(stories.tokenizer, PROMPTS[0], False)
    kw = dict(max_new_tokens=8, do_sample=True, temperature=0.6, top_p=1.0, seed=rec["sample_seed"])
    for side, heads in (("chosen", ()), ("rejected", HEADS)):
        out = masking.generate(stories, [torch.tensor(ids)], heads, **kw)[0].tolist()
        expect = stories.tokenizer.decode(out, skip_special_tokens=True)
        assert expect == stories.tokenizer.decode(ids, skip_special_tokens=True) + rec[side]


def test_seeds_reproduce_and_resume_without_duplicates(stories, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    make_pairs(stories, PROMPTS, HEADS, full, config=CFG, progress=False)
    again = tmp_path / "again.jsonl"
    make_pairs(stories, PROMPTS, HEADS, again, config=CFG, progress=False)
    assert _records(full) == _records(again)

    # interrupted after the first batch
    from retmask_interp.retmask import pairs as pairs_mod

    real = pairs_mod.sample_responses
    n = {"calls": 0}

    def flaky(*a, **k):
        n["calls"] += 1
        if n["calls"] > 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    part = tmp_path / "part.jsonl"
    monkeypatch.setattr(pairs_mod, "sample_responses", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_pairs(stories, PROMPTS, HEADS, part, config=CFG, progress=False)
    monkeypatch.setattr(pairs_mod, "sample_responses", real)
    done = list(read_jsonl(part)) + list(read_jsonl(pair_paths(part).dropped))
    assert len(done) == 2 and not pair_paths(part).stats.exists()
    stats = make_pairs(stories, PROMPTS, HEADS, part, config=CFG, progress=False)
    assert stats.kept + stats.num_dropped == 5
    assert _records(part) == _records(full)  # no duplicates, same samples as the uninterrupted run
    # finished: refuse, then overwrite on request; another seed samples differently
    with pytest.raises(FileExistsError):
        make_pairs(stories, PROMPTS, HEADS, part, config=CFG, progress=False)
    other = PairsConfig(max_new_tokens=10, batch_size=2, seed=4)
    make_pairs(stories, PROMPTS, HEADS, part, config=other, overwrite=True, progress=False)
    assert [r["chosen"] for r in _records(part)] != [r["chosen"] for r in _records(full)]


def test_resume_refuses_other_heads(stories, tmp_path):
    out = tmp_path / "p.jsonl"
    pairs_from_responses(PROMPTS[:2], ["a", "b"], ["c", "d"], out, heads=[(0, 0)], seed=3, format="plain")
    pair_paths(out).stats.unlink()  # pretend the run was interrupted
    with pytest.raises(ValueError, match="heads_hash"):
        make_pairs(stories, PROMPTS, HEADS, out, config=CFG, progress=False)


def test_plain_continuation_keeps_leading_space(stories, tmp_path):
    from retmask_interp.retmask.pairs import _decode_continuation

    tok = stories.tokenizer
    prompt = tok("Once upon a time")["input_ids"]
    full = tok("Once upon a time there was a dog")["input_ids"]
    assert full[: len(prompt)] == prompt
    assert _decode_continuation(tok, prompt, full[len(prompt) :]) == " there was a dog"


def test_conversational_pairs_use_the_chat_template(stories, tmp_path):
    import copy

    tok = copy.deepcopy(stories.tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    from retmask_interp.core.models import RetModel

    rm = RetModel(stories.model, tok, name="stories-chat")
    ids = encode_prompt(tok, "Tell me a story", True)
    assert tok.decode(ids) == "<s>user: Tell me a story\nassistant:"
    stats = make_pairs(rm, PROMPTS[:2], HEADS, tmp_path / "c.jsonl", config=CFG, progress=False)
    assert stats.format == "conversational"
    for rec in pair_records(tmp_path / "c.jsonl"):
        assert rec["prompt"][0]["role"] == "user" and rec["chosen"][0]["role"] == "assistant"
    with pytest.raises(ValueError, match="chat template"):
        make_pairs(
            stories, PROMPTS[:1], HEADS, tmp_path / "x.jsonl", config=PairsConfig(format="conversational")
        )


def test_make_pairs_input_errors(stories, tmp_path):
    with pytest.raises(ValueError, match="no heads"):
        make_pairs(stories, PROMPTS, [], tmp_path / "x.jsonl", config=CFG)
    with pytest.raises(ValueError, match="out of range"):
        make_pairs(stories, PROMPTS, [(9, 0)], tmp_path / "x.jsonl", config=CFG)


def test_task_prompts_hold_a_document_and_a_question():
    from retmask_interp.organism import load_organism

    tok = load_organism().tokenizer
    prompts = task_prompts(10, tokenizer=tok, num_tokens=300)
    assert prompts == task_prompts(10, tokenizer=tok, num_tokens=300)
    assert len(set(prompts)) == 10
    for p in prompts:
        n = len(tok(p, add_special_tokens=False).input_ids)
        assert 150 <= n <= 300 + 80, n  # a document of about the asked size (plus the question)
        assert "?" in p  # and a question about it
    assert task_prompts(2, tasks=("json_kv",), num_tokens=80)[0] != task_prompts(2, num_tokens=80)[0]
    with pytest.raises(ValueError, match="at least one task"):
        task_prompts(1, tasks=())


# -- base models: a prompt template and stop strings -------------------------------------------------------------
TEMPLATE = "Story: {prompt}\nEnd:"


def test_template_and_stop_strings_as_functions():
    from retmask_interp.core.io import InputError
    from retmask_interp.retmask.pairs import PLAIN_QA, apply_template, check_template, cut_at_stop, plain_qa

    assert apply_template("a {b} {prompt} c", PLAIN_QA) == "Question: a {b} {prompt} c\nAnswer:"
    assert plain_qa("x") == "Question: x\nAnswer:"
    assert cut_at_stop("Paris.\nQuestion: next?\nAnswer: no", ("\nQuestion:",)) == ("Paris.", True)
    assert cut_at_stop("a. b! c", ("!", ".")) == ("a", True)  # the earliest of several
    assert cut_at_stop("no stop here", ("\nQuestion:",)) == ("no stop here", False)
    assert cut_at_stop("anything", ()) == ("anything", False)
    for bad in ("no slot", "{prompt} and {prompt}"):
        with pytest.raises(InputError, match="exactly once"):
            check_template(bad)
    with pytest.raises(InputError, match="non-empty"):
        PairsConfig(stop=("",))
    with pytest.raises(InputError, match="exactly once"):
        PairsConfig(template="Question: {text}")


def test_stop_strings_cut_what_the_model_wrote_and_count_its_tokens(stories, monkeypatch):
    """A response sampled with stop strings is the same sample cut before the first stop; its token count is the
    fewest sampled tokens that cover the kept text; and a cut response counts as finished."""
    from retmask_interp.retmask.pairs import _decode_continuation, cut_at_stop, sample_responses

    tok = stories.tokenizer
    ids = [encode_prompt(tok, p, False, TEMPLATE) for p in PROMPTS]
    assert tok.decode(ids[0], skip_special_tokens=True) == "Story: " + PROMPTS[0] + "\nEnd:"
    seeds = [sample_seed(7, i) for i in range(len(PROMPTS))]
    free = sample_responses(stories, ids, seeds, (), PairsConfig(max_new_tokens=24))
    sampled = []
    real = masking.generate

    def keep(*a, **k):
        out = real(*a, **k)
        sampled.append(out)
        return out

    monkeypatch.setattr(masking, "generate", keep)
    stops = (".", " and")
    cut = sample_responses(stories, ids, seeds, (), PairsConfig(max_new_tokens=24, stop=stops))
    width = max(map(len, ids))
    n_cut = 0
    for prompt, row, (text, n, done), (ctext, cn, cdone) in zip(ids, sampled[0].tolist(), free, cut):
        want, hit = cut_at_stop(text, stops)
        assert ctext == want
        if not hit:
            assert (cn, cdone) == (n, done)
            continue
        n_cut += 1
        assert cdone and not any(x in ctext for x in stops)
        new = row[width:]
        assert _decode_continuation(tok, prompt, new[:cn]).startswith(ctext)
        assert len(_decode_continuation(tok, prompt, new[: cn - 1])) < len(ctext)
    assert n_cut >= 3  # these stories have sentences: the rule ran, not only its no-op branch


def test_make_pairs_writes_the_templated_prompt_and_records_the_settings(stories, tmp_path):
    cfg = PairsConfig(max_new_tokens=16, batch_size=2, seed=3, template=TEMPLATE, stop=(".",))
    out = tmp_path / "t.jsonl"
    stats = make_pairs(stories, PROMPTS, HEADS, out, config=cfg, progress=False)
    recs = _records(out) + list(read_jsonl(pair_paths(out).dropped))
    assert len(recs) == 5
    for r in recs:
        assert r["prompt"] == "Story: " + PROMPTS[r["prompt_index"]] + "\nEnd:"  # what DPO will see
        assert "." not in r["chosen"] and "." not in r["rejected"]
        assert r["run"]["template"] == TEMPLATE and r["run"]["stop"] == ["."]
    assert stats.sampling["template"] == TEMPLATE and stats.sampling["stop"] == ["."]
    # defaults are not recorded: pairs files made before these settings existed resume as before
    plain = tmp_path / "p.jsonl"
    make_pairs(stories, PROMPTS[:2], HEADS, plain, config=CFG, progress=False)
    rec = (_records(plain) + list(read_jsonl(pair_paths(plain).dropped)))[0]
    assert "template" not in rec["run"] and "stop" not in rec["run"]
    # an interrupted templated run resumes to the same records; one with another template is refused, naming it
    first = _records(out), _records(pair_paths(out).dropped)
    stats_path = pair_paths(out).stats
    for path in (out, pair_paths(out).dropped):  # keep the first batch (the two longest prompts) only
        keep = [r for r in read_jsonl(path) if r["prompt_index"] in (0, 1)]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    stats_path.unlink()
    again = make_pairs(stories, PROMPTS, HEADS, out, config=cfg, progress=False)
    assert again.kept == stats.kept and (_records(out), _records(pair_paths(out).dropped)) == first
    stats_path.unlink()
    other = PairsConfig(max_new_tokens=16, batch_size=2, seed=3, template="Tale: {prompt}\nEnd:", stop=(".",))
    with pytest.raises(ValueError, match="template"):
        make_pairs(stories, PROMPTS, HEADS, out, config=other, progress=False)


def test_a_template_with_a_chat_model_is_refused(stories, tmp_path):
    import copy

    from retmask_interp.core.io import InputError
    from retmask_interp.core.models import RetModel

    tok = copy.deepcopy(stories.tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    rm = RetModel(stories.model, tok, name="stories-chat")
    cfg = PairsConfig(max_new_tokens=4, template=TEMPLATE)
    with pytest.raises(InputError, match="format='plain'"):
        make_pairs(rm, PROMPTS[:1], HEADS, tmp_path / "c.jsonl", config=cfg, progress=False)
    forced = PairsConfig(max_new_tokens=4, template=TEMPLATE, format="plain")
    make_pairs(rm, PROMPTS[:1], HEADS, tmp_path / "f.jsonl", config=forced, progress=False)
    rec = pair_records(tmp_path / "f.jsonl")[0]
    assert rec["prompt"] == "Story: " + PROMPTS[0] + "\nEnd:"


def test_pairs_from_responses_write_the_templated_prompt(tmp_path):
    from retmask_interp.core.io import InputError

    out = tmp_path / "v.jsonl"
    stats = pairs_from_responses(PROMPTS[:2], ["a", "b"], ["c", "b"], out, heads=[(0, 0)], format="plain",
                                 template=TEMPLATE)  # fmt: skip
    rec = list(read_jsonl(out))[0]
    assert rec["prompt"] == "Story: " + PROMPTS[0] + "\nEnd:" and stats.sampling == {"template": TEMPLATE}
    assert stats.kept == 1 and stats.dropped["identical"] == 1
    with pytest.raises(InputError, match="plain pairs"):
        pairs_from_responses(PROMPTS[:1], ["a"], ["c"], tmp_path / "w.jsonl", template=TEMPLATE)
