"""The model cache verifies itself (issue 28): a converted directory with a manifest of its files (sizes, hashes),
written last; a damaged entry is converted again into a fresh directory and swapped in; an unusable RETMASK_CACHE
is one line naming it and the fix. The conversion is faked (a tiny GGUF header, a fake converter that writes the
files), so these run in a second; the real conversion's own tests are in test_real_models.py."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from helpers import tiny_gguf

from retmask_interp.core import real_models as rmod
from retmask_interp.core.real_models import (
    ModelCacheError,
    UnsupportedGGUFError,
    entry_problem,
    real_model_dir,
)

gguf = pytest.importorskip("gguf")
pytest.importorskip("transformers")

FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"W" * 4096, "tokenizer.json": b"{}"}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RETMASK_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_convert(gguf_path, out_dir, tokenizer_facts=None):
        calls.append(Path(out_dir))
        for name, data in FILES.items():
            (Path(out_dir) / name).write_bytes(data)
        return Path(out_dir)

    monkeypatch.setattr(rmod, "convert_gguf", fake_convert)
    return tmp_path / "cache", calls


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in (root / f"hf-v{rmod.CONVERSION_FORMAT}").iterdir())


def _damage_missing(d, name):
    (d / name).unlink()


def _damage_truncated(d, name):
    data = (d / name).read_bytes()
    (d / name).write_bytes(data[: len(data) // 2])


def _damage_same_size(d, name):
    data = bytearray((d / name).read_bytes())
    data[0] ^= 0xFF
    st = (d / name).stat()
    (d / name).write_bytes(bytes(data))  # same size, another mtime: the hash tells
    os.utime(d / name, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # (coarse file-system clocks)


def _damage_record(d, name):
    (d / rmod.SOURCE_FILE).write_text("{not json")


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json"])
@pytest.mark.parametrize("damage", [_damage_missing, _damage_truncated, _damage_same_size, _damage_record])
def test_a_damaged_entry_is_converted_again_and_swapped_in(cache, tmp_path, name, damage):
    root, calls = cache
    path = tiny_gguf(tmp_path / "tiny.gguf")
    entry = real_model_dir(path)
    record = json.loads((entry / rmod.SOURCE_FILE).read_text())
    assert set(record["files"]) == set(FILES) and entry_problem(entry) is None
    assert record["files"]["model.safetensors"]["size"] == 4096
    assert real_model_dir(path) == entry and len(calls) == 1  # intact: a cache hit
    damage(entry, name)
    assert entry_problem(entry) is not None
    assert real_model_dir(path) == entry and len(calls) == 2  # repaired in place of the damaged one
    assert {p.name: p.read_bytes() for p in entry.iterdir() if p.name != rmod.SOURCE_FILE} == FILES
    assert entry_problem(entry, verify=True) is None
    assert _entries(root) == [entry.name]  # no temporary or damaged directory left


def test_an_entry_without_a_manifest_is_converted_again(cache, tmp_path):
    root, calls = cache
    path = tiny_gguf(tmp_path / "tiny.gguf")
    entry = real_model_dir(path)
    record = json.loads((entry / rmod.SOURCE_FILE).read_text())
    del record["files"]  # as an older version wrote it
    (entry / rmod.SOURCE_FILE).write_text(json.dumps(record))
    assert "no manifest" in entry_problem(entry)
    real_model_dir(path)
    assert len(calls) == 2 and entry_problem(entry) is None
    entry.rename(entry.with_name("x"))  # a file where the entry should be
    (root / f"hf-v{rmod.CONVERSION_FORMAT}" / entry.name).write_text("junk")
    assert real_model_dir(path) == entry and entry_problem(entry) is None


def test_a_corrupt_digest_record_is_only_a_rehash(cache, tmp_path):
    root, calls = cache
    path = tiny_gguf(tmp_path / "tiny.gguf")
    entry = real_model_dir(path)
    for memo in (root / "digests").iterdir():
        for junk in ("[1, 2]", '{"stamp": 3}', "\x00\x01", '{"stamp": null, "sha256": 5}'):
            memo.write_text(junk)
            assert real_model_dir(path) == entry
    assert len(calls) == 1


@pytest.mark.parametrize("kind", ["file", "below_a_file"])
def test_retmask_cache_that_is_a_file(tmp_path, monkeypatch, kind, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    where = blocker if kind == "file" else blocker / "cache"
    monkeypatch.setenv("RETMASK_CACHE", str(where))
    path = tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(
        ModelCacheError, match=r"\(RETMASK_CACHE\) (is not a directory|is below .*a file); set"
    ):
        real_model_dir(path)
    from retmask_interp.cli import main

    assert main(["detect", "--model", str(path), "--out", str(tmp_path / "h.json"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RETMASK_CACHE" in err[0], err


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_retmask_cache_read_only_or_full(cache, tmp_path, monkeypatch, code):
    root, _ = cache
    path = tiny_gguf(tmp_path / "tiny.gguf")

    def full(gguf_path, out_dir, tokenizer_facts=None):
        (Path(out_dir) / "model.safetensors").write_bytes(b"partial")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(rmod, "convert_gguf", full)
    with pytest.raises(ModelCacheError, match=r"RETMASK_CACHE\) could not take the converted model.*; set"):
        real_model_dir(path)
    assert _entries(root) == []  # nothing half-written left behind

    def no_dir(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(rmod.tempfile, "mkdtemp", no_dir)
    with pytest.raises(ModelCacheError, match=r"RETMASK_CACHE\) cannot be written"):
        real_model_dir(path)


def test_a_valid_entry_is_used_from_a_read_only_cache(cache, tmp_path, monkeypatch):
    root, calls = cache
    path = tiny_gguf(tmp_path / "tiny.gguf")
    entry = real_model_dir(path)
    monkeypatch.setattr(rmod.tempfile, "mkdtemp", lambda *a, **k: pytest.fail("wrote into the cache"))
    assert real_model_dir(path) == entry and len(calls) == 1


def test_gguf_missing_what_transformers_needs_is_one_clear_error(tmp_path, monkeypatch):
    """A tiny GGUF of a supported architecture but without its tokenizer and tensors: transformers' reader fails
    with KeyError; the conversion says what is wrong instead (no conversion is faked here)."""
    monkeypatch.setenv("RETMASK_CACHE", str(tmp_path / "cache"))
    path = tiny_gguf(tmp_path / "tiny.gguf", tokens=True)
    with pytest.raises(UnsupportedGGUFError, match="transformers cannot convert it: the GGUF lacks 'scores'"):
        real_model_dir(path)
    assert _entries(tmp_path / "cache") == []
