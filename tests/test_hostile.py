"""Hostile and broken inputs (issue 22's probe, case by case): each gets one clear line, a
non-zero exit, nothing written outside the intended place and nothing lost."""

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import yaml

from speedy.artifact import (
    MANIFEST,
    Artifact,
    directory_files,
    files_digest,
)
from speedy.audio.io import write_audio
from speedy.cli import error_line
from speedy.errors import SpeedyError
from speedy.outputs import atomic_dir
from speedy.parity import max_abs_error
from speedy.reports import ParityCase, ParityReport
from speedy.scratch import claim, scratch
from tests.conftest import TINY_RECIPE
from tests.test_cli_errors import assert_clean_error
from tests.test_integrity import _copy


def _dead_pid() -> int:
    """A process id no process has now (that of a finished child)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _mel(tiny_build: dict, path: Path, value: float | None = None) -> Path:
    mel = tiny_build["ctx"].examples[0][:, :40].copy()
    if value is not None:
        mel[3, 5] = value
    np.save(path, mel)
    return path


# 1. Parity passes NaN.
def test_nan_never_passes_parity() -> None:
    reference = np.zeros((1, 100), np.float32)
    candidate = reference.copy()
    candidate[0, 99] = np.nan
    assert max_abs_error(reference, candidate) == math.inf

    def report(*errors: float) -> ParityReport:
        cases = [ParityCase(graph="g", sizes={}, max_abs_error={"y": e}, snr_db={}) for e in errors]
        return ParityReport(atol=1e-4, passed=False, cases=cases)

    assert report(0.0, math.nan).worst == math.inf  # max() would say 0.0 in one order
    assert report(math.nan, 0.0).worst == math.inf


# 2. A manifest runs code.
def test_a_manifest_naming_code_does_not_run_it(
    speedy_cli, tiny_build: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = _copy(tiny_build["torch"], tmp_path / "torch")
    raw = json.loads((copy / MANIFEST).read_text())
    raw["model"]["factory"] = "evilfactory:make"
    (copy / MANIFEST).write_text(json.dumps(raw))
    marker = tmp_path / "ran"
    (tmp_path / "evilfactory.py").write_text(
        f"def make():\n    open({str(marker)!r}, 'w').close()\n    return 1\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SPEEDY_TRUST_FACTORY", raising=False)
    mel = _mel(tiny_build, tmp_path / "mel.npy")
    code, _, err = speedy_cli("infer", copy, "-i", mel, "-o", tmp_path / "out.wav", "--no-verify")
    assert_clean_error(code, err, "'evilfactory:make'", "runs no code", "--model evilfactory:make")
    assert not marker.exists() and not (tmp_path / "out.wav").exists()

    monkeypatch.setenv("SPEEDY_TRUST_FACTORY", "evilfactory:make")  # the user names it: it runs
    code, _, err = speedy_cli("infer", copy, "-i", mel, "-o", tmp_path / "out.wav", "--no-verify")
    assert_clean_error(code, err, "returned int, not a torch module")
    assert marker.exists()


# 3. The model path escapes the artifact (`..` and absolute paths: tests/test_integrity.py).
def test_a_model_file_linked_outside_is_refused(tiny_build: dict, tmp_path: Path) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "copy")
    outside = tmp_path / "outside.onnx"
    (copy / "model.onnx").rename(outside)
    (copy / "model.onnx").symlink_to(outside)
    with pytest.raises(SpeedyError, match="outside its directory"):
        Artifact.open(copy, verify=False)


def test_a_constant_with_external_data_outside_is_refused(tmp_path: Path) -> None:
    from speedy.onnx_io import load_onnx

    value = onnx.helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [1.0])
    value.data_location = onnx.TensorProto.EXTERNAL
    value.ClearField("float_data")
    value.external_data.add(key="location", value="../secret.bin")
    node = onnx.helper.make_node("Constant", [], ["y"], value=value)
    out = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [], [out]))
    (tmp_path / "m").mkdir()
    onnx.save_model(model, str(tmp_path / "m" / "model.onnx"))
    with pytest.raises(SpeedyError, match=r"points outside the model directory \(\.\./secret"):
        load_onnx(tmp_path / "m" / "model.onnx")


# 4. NaN / Inf input.
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_mel_is_refused(speedy_cli, tiny_build: dict, tmp_path: Path, value) -> None:
    mel = _mel(tiny_build, tmp_path / "bad.npy", value)
    out = tmp_path / "out.wav"
    code, _, err = speedy_cli("infer", tiny_build["simplify"].path, "-i", mel, "-o", out)
    assert_clean_error(code, err, "bad.npy holds 1 NaN or infinite value(s)")
    assert not out.exists()


def test_non_finite_wav_is_refused(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    wave = np.zeros(22050, np.float32)
    wave[100] = np.nan
    sf.write(tmp_path / "bad.wav", wave, 22050, subtype="FLOAT")
    out = tmp_path / "out.wav"
    code, _, err = speedy_cli(
        "infer", tiny_build["simplify"].path, "-i", tmp_path / "bad.wav", "-o", out
    )
    assert_clean_error(code, err, "holds 1 NaN or infinite value(s)")
    assert not out.exists()


def test_non_finite_audio_is_not_written(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    out.write_bytes(b"the user's earlier file")
    with pytest.raises(SpeedyError, match="produced 1 NaN or infinite sample"):
        write_audio(out, np.array([0.0, np.nan, 0.1], np.float32), 22050)
    assert out.read_bytes() == b"the user's earlier file"
    assert list(tmp_path.iterdir()) == [out]


# 6. Concurrent writers.
def test_an_output_published_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    meanwhile = "written by another process while this one ran"
    with pytest.raises(SpeedyError, match=meanwhile), atomic_dir(out, force=False) as first:
        (first / MANIFEST).write_text("first")
        with atomic_dir(out, force=False) as second:  # a second writer finishes first
            (second / MANIFEST).write_text("second")
    assert (out / MANIFEST).read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# 7. --force deletes any directory.
def test_force_replaces_only_speedys_outputs(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "src").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", mine, "--force")
    assert_clean_error(code, err, "speedy cannot prove it wrote it", "move that one away")
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "src").is_dir()


@pytest.mark.parametrize("output", [".", ".."])
def test_the_current_directory_is_never_an_output(
    speedy_cli, tiny_build: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", output, "--force")
    assert_clean_error(code, err, "the current directory")
    assert list((tmp_path / "here").iterdir()) == []


# 8. A recipe name that is a path.
@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "a/b"])
def test_a_recipe_name_is_not_a_path(speedy_cli, tmp_path: Path, name: str) -> None:
    raw = yaml.safe_load(TINY_RECIPE.read_text()) | {"name": name}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    code, _, err = speedy_cli("run", recipe, "--build-dir", tmp_path / "build")
    assert_clean_error(code, err, "name:", "is not a plain name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


# 9. What killed processes leave.
def test_leftovers_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    partial = tmp_path / f".out.{dead}.x1y2.partial"
    partial.mkdir()
    claim(partial, dead)
    live = tmp_path / f".out.{os.getppid()}.z3.partial"  # a running writer's: kept
    live.mkdir()
    claim(live, os.getppid())
    replacing = tmp_path / f".out.{dead}.r5.partial"  # killed while replacing out: put back
    (replacing / "old").mkdir(parents=True)
    claim(replacing, dead)
    previous = '{"files": {}}'
    (replacing / "old" / MANIFEST).write_text(previous)
    with pytest.raises(SpeedyError, match="already exists"), atomic_dir(tmp_path / "out", False):
        pass
    assert (tmp_path / "out" / MANIFEST).read_text() == previous
    with atomic_dir(tmp_path / "out", force=True) as work:
        (work / MANIFEST).write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]


def test_scratch_directories_of_dead_processes_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"speedy-torch-{_dead_pid()}-abc"
    stale.mkdir()
    claim(stale, int(stale.name.split("-")[2]))
    other = tmp_path / "speedy-notes"  # not claimed: not ours to judge
    other.mkdir()
    with scratch("bench") as work:
        assert work.name.startswith(f"speedy-bench-{os.getpid()}-")
        assert not stale.exists() and other.exists()
    assert not work.exists()


def test_published_directories_follow_the_umask(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "out", force=False) as work:
        (work / MANIFEST).write_text("{}")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~mask


# 10. Errors that were "unexpected".
@pytest.mark.parametrize("size", [-4, 100_000_000])
def test_impossible_network_sizes(speedy_cli, tmp_path: Path, size: int) -> None:
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["network"]["upsample_initial_channel"] = size
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    code, _, err = speedy_cli("export", recipe, "-o", tmp_path / "out")
    assert_clean_error(code, err, "network cannot be built", "under `network:`")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "cannot read"),
        (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "cannot read"),
        (lambda p: np.save(p, np.ones((80, 40), np.complex64)), "holds complex64 values"),
    ],
)
def test_unreadable_npy(speedy_cli, tiny_build: dict, tmp_path: Path, content, phrase) -> None:
    path = tmp_path / "bad.npy"
    content(path)
    out = tmp_path / "out.wav"
    code, _, err = speedy_cli("infer", tiny_build["simplify"].path, "-i", path, "-o", out)
    assert_clean_error(code, err, phrase)
    assert not out.exists()


def test_a_wav_too_short_for_a_mel(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 22050)
    code, _, err = speedy_cli(
        "infer", tiny_build["simplify"].path, "-i", tmp_path / "short.wav", "-o", tmp_path / "o.wav"
    )
    assert_clean_error(code, err, "100 samples is too short", "at least 385 samples")


def test_memory_and_os_errors_name_the_problem() -> None:
    line = error_line(MemoryError("Unable to allocate 29.1 TiB"))
    assert "unexpected" not in line and "out of memory" in line and "smaller sizes" in line
    line = error_line(PermissionError(13, "Permission denied", "/read-only/out"))
    assert "unexpected" not in line and "/read-only/out: Permission denied" in line


# 11. Compile with external data of any name.
def test_compile_keeps_external_data_of_any_name(
    speedy_cli, tiny_build: dict, tmp_path: Path
) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "art")
    model = onnx.load(str(copy / "model.onnx"))
    onnx.save_model(
        model, str(copy / "model.onnx"), save_as_external_data=True, location="weights.bin"
    )
    raw = json.loads((copy / MANIFEST).read_text())
    raw["files"] = directory_files(copy)
    raw["digest"] = files_digest(raw["files"])
    raw["graphs"]["model"]["files"] = ["model.onnx", "weights.bin"]
    (copy / MANIFEST).write_text(json.dumps(raw))
    out = tmp_path / "compiled"
    code, _, err = speedy_cli("compile", copy, "--backend", "ort", "-o", out)
    assert code == 0, err
    assert Artifact.open(out).manifest.graphs["model"].files == ["model.onnx", "model.onnx.data"]


def test_a_crashed_bench_worker_leaves_its_log(tiny_build: dict, tmp_path: Path) -> None:
    from speedy.bench.pool import WorkerProcess
    from speedy.bench.protocol import Load

    inputs = tmp_path / "inputs.npz"
    np.savez(inputs)
    artifact = tiny_build["simplify"].path
    worker = WorkerProcess("no/such", artifact, "cpu", 1, inputs, tmp_path / "0.log")
    worker.process.kill()  # as the OOM killer would
    with pytest.raises(SpeedyError, match="stopped: exit code -9") as caught:
        worker.call(Load())
    worker.close()
    kept = Path(caught.value.fix.removeprefix("read "))
    assert kept.name == "bench-worker-no_such.log" and kept.is_file()


def test_a_tensor_declaring_more_than_its_file_holds(tmp_path: Path) -> None:
    from speedy.onnx_io import load_onnx

    weight = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[2**20, 2**20])
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="w.bin")
    (tmp_path / "w.bin").write_bytes(bytes(16))
    node = onnx.helper.make_node("Identity", ["w"], ["y"])
    out = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = onnx.helper.make_graph([node], "g", [], [out], initializer=[weight])
    onnx.save_model(onnx.helper.make_model(graph), str(tmp_path / "model.onnx"))
    with pytest.raises(SpeedyError, match=r"declares 4,398,046,511,104 bytes.* holds 16 "):
        load_onnx(tmp_path / "model.onnx")


def test_yaml_aliases_and_escape_sequences(speedy_cli, tmp_path: Path) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    recipe = tmp_path / "laughs\x1b[2J.yaml"
    recipe.write_text(laughs + "name: x\n")
    code, _, err = speedy_cli("run", recipe, "--build-dir", tmp_path / "build")
    assert_clean_error(code, err, "uses YAML aliases", "\\x1b[2J")
    assert "\x1b" not in err


# 5. Bench workers import from the current directory.
def test_bench_workers_import_nothing_from_the_current_directory(
    tiny_build: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from speedy.bench.pool import WorkerProcess
    from speedy.bench.protocol import Ready

    marker = tmp_path / "imported"
    for module in ("numpy", "onnxruntime"):
        (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs)
    worker = WorkerProcess("w", tiny_build["simplify"].path, "cpu", 1, inputs, tmp_path / "0.log")
    try:
        worker.receive(Ready)  # the worker has imported numpy and onnxruntime
    finally:
        worker.close()
    assert not marker.exists()
