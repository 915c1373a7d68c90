"""NIAH samples on the real stories260K tokenizer, a byte-level BPE tokenizer and the real haystacks."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import types
from pathlib import Path

import numpy as np
import pytest

from retmask_interp.data import niah

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]\n{% if think %}<think>{% endif %}{% endif %}"
)
LENGTHS = [300, 777, 1500, 3000]
DEPTHS = niah.wu_depths()


# --------------------------------------------------------------------------------------------- fixtures
@functools.cache
def _stories(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@functools.cache
def _bpe(corpus: str, trim: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=trim)
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|bos|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator([Path(corpus).read_text()], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|bos|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


@functools.cache
def _hay(tok, spec: str) -> niah.TokenizedHaystack:
    return niah.tokenize_haystack(tok, niah.load_haystack(spec))


@pytest.fixture
def stories_tok(stories_path):
    return _stories(str(stories_path))


@functools.cache
def _chat(path: str):
    tok = copy.deepcopy(_stories(path))
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture
def chat_tok(stories_path):
    return _chat(str(stories_path))


@pytest.fixture(params=[True, False], ids=["trim", "notrim"])
def bpe_tok(request, shared_dir):
    """A byte-level BPE tokenizer (GPT-2 style offsets, with and without trimmed spaces) with a chat template."""
    return _bpe(str(shared_dir / "data" / "niah" / "PaulGrahamEssays" / "addiction.txt"), request.param)


@pytest.fixture
def hay_paths(shared_dir):
    base = shared_dir / "data" / "niah"
    return {
        "pg": str(base / "PaulGrahamEssays"),
        "part1": str(base / "haystack_for_detect" / "part1"),
        "base": base,
    }


def norm(text: str) -> str:
    return " ".join(text.split()).lower()


def at_sentence_boundary(before: str) -> bool:
    """Reference check, on text: the prompt text before the needle ends a sentence or a paragraph."""
    stripped = before.rstrip()
    return (
        bool(re.search(r"[.!?][\"'\u201d\u2019)\]\u00bb]*$", stripped))
        or bool(re.search(r"\n[ \t]*\n\s*$", before))
        or stripped.endswith("<book>")
        or stripped == ""
    )


def check_sample(tok, s: niah.NIAHSample, hay: niah.TokenizedHaystack) -> None:
    ids = s.input_ids
    a, b = s.answer_span
    answer = norm(s.needle["real_needle"])
    # the span decodes to the answer (up to whitespace and, for Wu's third needle, case), and is minimal
    assert 0 < a < b <= len(ids)
    assert answer in norm(tok.decode(ids[a:b]))
    assert answer not in norm(tok.decode(ids[a + 1 : b])) and answer not in norm(tok.decode(ids[a : b - 1]))
    assert norm(s.answer_text) == norm(tok.decode(ids[a:b]))
    # length within tolerance (in practice exact)
    assert abs(s.num_tokens - s.context_length) <= niah.LENGTH_TOLERANCE
    assert s.num_tokens == len(ids)
    # the needle's tokens hold the answer's; the text before the needle ends a sentence (or is the start)
    n0, n1 = s.needle_span
    assert n0 <= a and b <= n1
    assert norm(s.needle["needle"]) in norm(tok.decode(ids[n0:n1]))
    assert at_sentence_boundary(tok.decode(ids[:n0], skip_special_tokens=True)), tok.decode(
        ids[max(0, n0 - 20) : n0 + 5]
    )
    # measured depth: never after the target, and before it by at most one sentence (+ merge slack)
    budget = s.num_tokens - niah.min_context_length(tok, s.needle, s.style)  # haystack tokens in the prompt
    gaps = np.diff(np.append(hay.boundaries[hay.boundaries < budget], budget))
    slack = 100.0 * (gaps.max() + 3) / max(1, budget)
    assert -slack <= s.needle_position - s.depth <= 100.0 * 3 / max(1, budget)
    if s.depth == 0:
        assert s.needle_position == 0


# --------------------------------------------------------------------------------------------- pure helpers
def test_depths_and_lengths():
    assert niah.wu_depths() == [0, 11, 22, 33, 44, 56, 67, 78, 89, 100]
    assert niah.wu_depths(3) == [0, 50, 100]
    lengths = niah.linspace_lengths(0, 5000, 20)
    assert len(lengths) == 20 and lengths[:3] == [0, 263, 526] and lengths[-1] == 5000
    assert all(isinstance(x, int) for x in lengths)


def test_default_needles():
    needles = niah.default_needles()
    assert 5 <= len(needles) <= 6
    assert len({n["needle"] for n in needles}) == len(needles)
    for n in needles:
        assert n["real_needle"] in n["needle"]  # exact, case included
        assert n["question"].endswith("?")


def test_answer_char_span_exact_then_case_insensitive():
    n = {
        "needle": "Tom likes red apples because they are sweet.",
        "real_needle": "red apples",
        "question": "?",
    }
    assert niah.answer_char_span(n) == (10, 20)
    n2 = dict(n, real_needle="Because they are sweet.")
    lo, hi = niah.answer_char_span(n2)
    assert n["needle"][lo:hi] == "because they are sweet."
    with pytest.raises(ValueError, match="needle 7.*not a substring"):
        niah.answer_char_span(dict(n, real_needle="green pears"), index=7)


@pytest.mark.parametrize("which", ["pg", "part1"])
def test_boundaries_are_sentence_starts(stories_tok, hay_paths, which):
    """Every boundary token starts a sentence or paragraph; every '. X' sentence start has a boundary."""
    hay = _hay(stories_tok, hay_paths[which])
    text, starts = hay.text, hay.starts
    assert (
        hay.boundaries[0] == 0
        and hay.boundaries[-1] == hay.num_tokens
        and np.all(np.diff(hay.boundaries) > 0)
    )
    for k in hay.boundaries[1:-1]:
        c = int(starts[k])
        ahead = text[c : c + 200]
        nxt = c + len(ahead) - len(ahead.lstrip())  # end of the whitespace run at c
        before = text[max(0, c - 200) : c]  # enough context, and no quadratic slicing
        assert at_sentence_boundary(before) or text[c:nxt].count("\n") >= 2, text[c - 30 : c + 10]
        assert k + 1 == hay.num_tokens or starts[k + 1] > nxt  # the last token starting in the gap
    bset = set(hay.boundaries.tolist())
    found = 0
    for m in re.finditer(r"[a-z][.!?] +(?=[A-Z])", text[:200_000]):
        lo, hi = m.start() + 2, m.end()  # the gap between the punctuation and the capital letter
        i = int(np.searchsorted(starts, hi, side="right")) - 1
        assert starts[i] >= lo and i in bset, text[m.start() - 20 : m.end() + 10]
        found += 1
    assert found > 100


# --------------------------------------------------------------------------------------------- haystacks
def test_load_haystack_directory_file_and_errors(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("Second file.\n")
    (tmp_path / "a.txt").write_text("  First file.")
    (tmp_path / "sub" / "c.txt").write_text("Third file.")
    (tmp_path / "notes.md").write_text("ignored")
    h = niah.load_haystack(tmp_path)
    assert h.text == "First file.\n\nSecond file.\n\nThird file."
    assert h.name == tmp_path.name
    assert niah.load_haystack(tmp_path / "b.txt").text == "Second file."
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        niah.load_haystack(tmp_path / "empty")
    (tmp_path / "blank.txt").write_text("  \n ")
    with pytest.raises(ValueError, match="empty"):
        niah.load_haystack(tmp_path / "blank.txt")
    with pytest.raises(FileNotFoundError, match="synthetic"):
        niah.load_haystack(tmp_path / "missing")
    with pytest.raises(ValueError, match="integer"):
        niah.load_haystack("synthetic:abc")


def test_synthetic_haystack_with_stand_in(monkeypatch):
    from retmask_interp.data import synthetic

    fake = lambda num_words, seed=0, split="eval": " ".join([f"Word{seed}."] * num_words)  # noqa: E731
    monkeypatch.setattr(synthetic, "haystack_text", fake)
    h = niah.load_haystack("synthetic:3", num_words=5)
    assert h == niah.Haystack("synthetic:3", "Word3. Word3. Word3. Word3. Word3.")
    assert niah.load_haystack("synthetic", num_words=2).name == "synthetic:0"


def test_synthetic_haystack_real_module(stories_tok):
    cfg = niah.NIAHConfig(haystack="synthetic:1", lengths=[0, 400, 2000], depths=[0, 50, 100], style="qa")
    samples = cfg.build(stories_tok)
    assert len(samples) == 6 * 2 * 3  # length 0 skipped for every needle
    hay = niah.tokenize_haystack(stories_tok, niah.load_haystack("synthetic:1", num_words=4096))
    for s in samples:
        assert s.haystack_name == "synthetic:1"
        check_sample(stories_tok, s, hay)


# --------------------------------------------------------------------------------------------- samples
@pytest.mark.parametrize("style", ["qa", "continuation"])
@pytest.mark.parametrize("which", ["pg", "part1"])
def test_grid_on_real_haystacks(stories_tok, hay_paths, which, style):
    hay = _hay(stories_tok, hay_paths[which])
    needles = niah.default_needles()
    samples = niah.build_grid(stories_tok, hay, needles, LENGTHS, DEPTHS, style)
    assert len(samples) == len(needles) * len(LENGTHS) * len(DEPTHS)
    assert sum(s.num_tokens == s.context_length for s in samples) >= 0.95 * len(samples)
    for s in samples:
        check_sample(stories_tok, s, hay)
    bos = stories_tok.bos_token_id
    assert all(s.input_ids[0] == bos and s.input_ids.count(bos) == 1 for s in samples)
    s = samples[len(DEPTHS) + 5]
    text = stories_tok.decode(s.input_ids[1:])
    if style == "qa":
        assert text.lstrip().startswith("<book>")
        assert text.endswith(
            f"</book>\nBased on the content of the book, Question: {s.needle['question']}\nAnswer:"
        )
    else:
        lead = s.needle["needle"][: s.needle["needle"].index(s.needle["real_needle"])].rstrip()
        assert text.endswith("\n" + lead)


def test_chat_style(chat_tok, hay_paths):
    hay = _hay(chat_tok, hay_paths["pg"])
    needles = niah.default_needles()[:3]
    samples = niah.build_grid(chat_tok, hay, needles, [250, 1200], DEPTHS, "chat")
    for s in samples:
        check_sample(chat_tok, s, hay)
        assert s.input_ids[0] == chat_tok.bos_token_id and s.input_ids.count(chat_tok.bos_token_id) == 1
        text = chat_tok.decode(s.input_ids)
        assert "[user]\n<book>" in text and text.endswith("Answer:\n[assistant]\n")
    # template arguments reach the template and count in the length
    s = niah.build_sample(chat_tok, hay, needles[0], 900, 50, chat_template_kwargs={"think": True})
    assert chat_tok.decode(s.input_ids).endswith("[assistant]\n<think>") and s.num_tokens == 900


@pytest.mark.parametrize("style", ["chat", "qa", "continuation"])
def test_byte_level_bpe_tokenizer(bpe_tok, hay_paths, style):
    hay = _hay(bpe_tok, hay_paths["part1"])
    samples = niah.build_grid(bpe_tok, hay, niah.default_needles(), [200, 900], DEPTHS, style)
    assert len(samples) == 6 * 2 * len(DEPTHS)
    for s in samples:
        check_sample(bpe_tok, s, hay)


def test_wu_needles_paired_with_parts(stories_tok, hay_paths):
    """Wu et al.'s needle file (third needle: real_needle differs in case), needle i on part i+1."""
    needles = niah.read_needles(hay_paths["base"] / "haystack_for_detect" / "needles.jsonl")
    assert len(needles) == 3
    toks = [_hay(stories_tok, str(hay_paths["base"] / "haystack_for_detect" / f"part{i}")) for i in (1, 2, 3)]
    samples = niah.build_grid(stories_tok, toks, needles, [500, 2000], [0, 33, 67, 100], "qa")
    assert len(samples) == 3 * 2 * 4
    assert [s.haystack_name for s in samples[::8]] == ["part1", "part2", "part3"]
    for s in samples:
        check_sample(stories_tok, s, toks[s.needle_index])
    third = [s for s in samples if s.needle_index == 2]
    assert all(s.answer_text.startswith("because he is a mean person") for s in third)
    assert len({s.sample_id for s in samples}) == len(samples)


def test_repeat_haystack(stories_tok):
    short = "The cat sat down. The dog ran off! Was it raining? Yes."
    with pytest.raises(ValueError, match=r"has \d+ tokens.*repeat"):
        niah.build_sample(stories_tok, short, niah.default_needles()[0], 400, 50, "qa")
    hay = niah.tokenize_haystack(stories_tok, short, min_tokens=400, repeat=True)
    assert hay.num_tokens >= 400
    s = niah.build_sample(stories_tok, hay, niah.default_needles()[0], 400, 50, "qa")
    check_sample(stories_tok, s, hay)


def test_input_ids_are_the_tokenization_of_one_prompt_string(stories_tok, hay_paths, monkeypatch):
    """The ids are a fresh tokenization of the final prompt string (not pieces glued together)."""
    hay = _hay(stories_tok, hay_paths["pg"])
    seen: list[str] = []
    real = niah._encode

    def spy(tok, text, special):
        seen.append(text)
        return real(tok, text, special)

    monkeypatch.setattr(niah, "_encode", spy)
    for needle in niah.default_needles()[:3]:
        for depth in (0, 33, 100):
            seen.clear()
            s = niah.build_sample(stories_tok, hay, needle, 1000, depth, "qa")
            matches = [t for t in seen if stories_tok(t)["input_ids"] == s.input_ids]
            assert matches, "input_ids differ from the tokenization of every prompt string built"
            prompt = matches[0]
            assert prompt.count(needle["needle"]) == 1 and prompt.endswith("\nAnswer:")
            # the answer tokens' character offsets cover exactly the answer's characters, plus token edges
            offsets = stories_tok(prompt, return_offsets_mapping=True)["offset_mapping"]
            a, b = s.answer_span
            lo = prompt.index(needle["needle"]) + needle["needle"].index(needle["real_needle"])
            hi = lo + len(needle["real_needle"])
            assert offsets[a][0] <= lo < offsets[a][1] + 1 and offsets[b - 1][0] < hi <= offsets[b - 1][1]
            assert offsets[a - 1][1] <= lo and offsets[b][0] >= hi


# --------------------------------------------------------------------------------------------- ids and records
def test_sample_ids_stable_unique_and_round_trip(stories_tok, hay_paths):
    hay = _hay(stories_tok, hay_paths["pg"])
    needles = niah.default_needles()
    grid = niah.build_grid(stories_tok, hay, needles, [300, 600], DEPTHS, "qa")
    ids = [s.sample_id for s in grid]
    assert len(set(ids)) == len(ids)
    again = niah.build_grid(stories_tok, hay, needles, [300, 600], DEPTHS, "qa")
    assert [s.to_dict() for s in again] == [s.to_dict() for s in grid]
    # golden value: a sha1 of the needle, not Python's per-process hash()
    assert grid[0].sample_id == niah.sample_id("PaulGrahamEssays", needles[0], 0, 300, 0, "qa")
    assert grid[0].sample_id.startswith("PaulGrahamEssays|n0-") and grid[0].sample_id.endswith("|L300|d0|qa")
    digest = grid[0].sample_id.split("|")[1].split("-")[1]
    assert digest == hashlib.sha1(json.dumps(needles[0], sort_keys=True).encode()).hexdigest()[:8]
    for s in grid[:5]:
        back = niah.NIAHSample.from_dict(json.loads(json.dumps(s.to_dict())))
        assert back == s and isinstance(back.answer_span, tuple)
    assert niah.NIAHSample.from_dict(dict(grid[0].to_dict(), future_field=1)) == grid[0]


# --------------------------------------------------------------------------------------------- errors
def test_errors(stories_tok, chat_tok, hay_paths):
    tok = stories_tok
    hay = _hay(tok, hay_paths["pg"])
    needle = niah.default_needles()[0]
    with pytest.raises(ValueError, match="haystack is empty"):
        niah.tokenize_haystack(tok, "   ")
    with pytest.raises(ValueError, match="model's window of 1000.*allow_overflow"):
        niah.build_sample(tok, hay, needle, 1500, 50, "qa", max_context=1000)
    s = niah.build_sample(tok, hay, needle, 1500, 50, "qa", max_context=1000, allow_overflow=True)
    assert s.num_tokens == 1500
    with pytest.raises(ValueError, match="no chat template.*--prompt-style qa"):
        niah.build_sample(tok, hay, needle, 500, 50, "chat")
    with pytest.raises(ValueError, match="below the .* tokens of the prompt"):
        niah.build_sample(tok, hay, needle, 20, 50, "qa")
    with pytest.raises(ValueError, match="depth"):
        niah.build_sample(tok, hay, needle, 500, 150, "qa")
    with pytest.raises(ValueError, match="unknown prompt style"):
        niah.build_sample(tok, hay, needle, 500, 50, "poem")
    with pytest.raises(ValueError, match="not a substring"):
        niah.build_sample(tok, hay, dict(needle, real_needle="a lost umbrella"), 500, 50, "qa")
    starts_with_answer = dict(needle, real_needle=needle["needle"][:20])
    with pytest.raises(ValueError, match="no lead-in"):
        niah.build_sample(tok, hay, starts_with_answer, 500, 50, "continuation")
    slow = types.SimpleNamespace(is_fast=False)
    with pytest.raises(ValueError, match="slow tokenizer.*offsets"):
        niah.build_sample(slow, hay, needle, 500, 50, "qa")
    with pytest.raises(ValueError, match="2 haystacks for 6 needles"):
        niah.build_grid(tok, [hay, hay], niah.default_needles(), [500], [50], "qa")


def test_needle_file_validation(tmp_path):
    good = {"needle": "The sky is green.", "question": "What colour is the sky?", "real_needle": "green"}
    p = tmp_path / "n.jsonl"
    p.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    assert niah.read_needles(p) == [good, good]
    p.write_text(json.dumps(good) + "\n" + json.dumps(dict(good, question="")) + "\n")
    with pytest.raises(ValueError, match="line 2 has a missing or empty 'question'"):
        niah.read_needles(p)
    p.write_text(json.dumps({"needle": "x", "question": "y"}) + "\n")
    with pytest.raises(ValueError, match="line 1 .*'real_needle'"):
        niah.read_needles(p)
    p.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        niah.read_needles(p)
    p.write_text("")
    with pytest.raises(ValueError, match="no needles"):
        niah.read_needles(p)


def test_grid_skips_short_lengths_with_warning(stories_tok, hay_paths, caplog):
    hay = _hay(stories_tok, hay_paths["pg"])
    with caplog.at_level("WARNING", logger="retmask_interp.data.niah"):
        samples = niah.build_grid(stories_tok, hay, niah.default_needles()[:2], [0, 50, 400], [50], "qa")
    assert [s.context_length for s in samples] == [400, 400]
    assert "below the minimum prompt length" in caplog.text


def test_config_build(stories_tok, hay_paths, tmp_path):
    p = tmp_path / "needles.jsonl"
    p.write_text("\n".join(json.dumps(n) for n in niah.default_needles()[:2]) + "\n")
    cfg = niah.NIAHConfig(haystack=hay_paths["part1"], needles=str(p), lengths=[300, 900], depths=[0, 100])
    with pytest.raises(ValueError, match="no chat template"):
        cfg.build(stories_tok)
    cfg.style = "qa"
    samples = cfg.build(stories_tok, max_context=1000)
    assert len(samples) == 2 * 2 * 2
    cfg.lengths = [300, 1200]
    with pytest.raises(ValueError, match="window"):
        cfg.build(stories_tok, max_context=1000)
    cfg.allow_overflow = True
    assert max(s.num_tokens for s in cfg.build(stories_tok, max_context=1000)) == 1200
    default = niah.NIAHConfig()
    assert default.lengths == niah.linspace_lengths(0, 5000, 20) and default.depths == niah.wu_depths()
    assert default.needles is None and default.style == "chat"
