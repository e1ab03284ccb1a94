"""Model references: GGUF files, folders holding one, hub ids with a file name; the conversion cache.

The conversion itself is exercised on the real Gemma file in tests/test_real_model.py (slow);
here a stand-in converter makes the cache's rules testable in milliseconds.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from infuse.models import ModelError, sources
from infuse.models.sources import (
    PROVENANCE_FILE,
    GgufFile,
    converted_folder,
    find_gguf,
    gguf_provenance,
    is_gguf_reference,
    model_source,
)


def _fake_gguf(path: Path, payload: bytes = b"GGUF fake weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """Record conversions instead of running transformers; the cache goes to tmp_path."""
    calls: list[Path] = []

    def convert(path: Path, out: Path) -> None:
        calls.append(path)
        (out / "config.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(sources, "_convert", convert)
    monkeypatch.setenv(sources.CACHE_ENV, str(tmp_path / "cache"))
    return calls


def test_references_that_name_gguf_files(tmp_path: Path) -> None:
    model = _fake_gguf(tmp_path / "models" / "m.gguf")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}", encoding="utf-8")
    assert is_gguf_reference(str(model)) and is_gguf_reference(str(model.parent))
    assert is_gguf_reference("owner/repo:model-Q4_K_M.gguf")
    assert not is_gguf_reference(str(tmp_path / "hf")) and not is_gguf_reference("google/gemma-3-270m")
    assert find_gguf(str(model.parent)).path == model


def test_a_folder_with_several_gguf_files_names_them(tmp_path: Path) -> None:
    _fake_gguf(tmp_path / "a.gguf")
    _fake_gguf(tmp_path / "b.gguf")
    with pytest.raises(ModelError, match=r"2 \.gguf files \(a\.gguf, b\.gguf\); pass the file itself"):
        find_gguf(str(tmp_path))


def test_a_missing_gguf_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found: give a local .gguf file"):
        find_gguf(str(tmp_path / "nope.gguf"))


def test_conversion_runs_once_and_is_cached_by_content(tmp_path: Path, conversions: list[Path]) -> None:
    model = _fake_gguf(tmp_path / "m.gguf")
    first = model_source(str(model))
    assert model_source(str(model)) == first and len(conversions) == 1
    assert json.loads((Path(first) / PROVENANCE_FILE).read_text())["gguf"] == str(model.resolve())
    assert gguf_provenance(first) is not None and gguf_provenance(tmp_path) is None
    _fake_gguf(model, b"GGUF other weights")  # same name, new content: a new folder
    second = model_source(str(model))
    assert second != first and len(conversions) == 2


def test_a_failed_conversion_leaves_nothing_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path, out: Path) -> None:
        (out / "half-written.safetensors").write_bytes(b"x")
        raise ModelError("boom")

    monkeypatch.setattr(sources, "_convert", broken)
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="boom"):
        converted_folder(GgufFile(_fake_gguf(tmp_path / "m.gguf"), "m.gguf"), cache)
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []  # no folder, not even a staging one


def test_missing_gguf_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_gguf(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "gguf":
            raise ImportError("No module named 'gguf'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gguf)
    with pytest.raises(ModelError, match=r"needs the gguf package: pip install 'infuse\[gguf\]'"):
        converted_folder(GgufFile(_fake_gguf(tmp_path / "m.gguf"), "m.gguf"), tmp_path / "cache")


def test_plain_references_pass_through(tmp_path: Path) -> None:
    assert model_source("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    (tmp_path / "model").mkdir()
    assert model_source(str(tmp_path / "model")) == str(tmp_path / "model")
