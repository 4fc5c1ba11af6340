"""Bad input gets one clear line naming the problem and the fix, a non-zero exit, no traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speedy.stages import simplify as simplify_stage
from tests.conftest import TINY_RECIPE


def assert_clean_error(code: int, err: str, *phrases: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1, err
    assert "fix:" in error_lines[0]
    for phrase in phrases:
        assert phrase in error_lines[0], error_lines[0]


def test_unknown_recipe(speedy_cli) -> None:
    code, _, err = speedy_cli("run", "no_such_recipe")
    assert_clean_error(code, err, "unknown recipe 'no_such_recipe'", "hifigan_v1")


def test_missing_checkpoint(speedy_cli, tmp_path: Path) -> None:
    code, _, err = speedy_cli(
        "export", TINY_RECIPE, "--checkpoint", tmp_path / "absent.pt", "-o", tmp_path / "out"
    )
    assert_clean_error(code, err, "checkpoint not found")
    assert not (tmp_path / "out").exists()


def test_corrupt_checkpoint(speedy_cli, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"definitely not a zip archive" * 10)
    code, _, err = speedy_cli("export", TINY_RECIPE, "--checkpoint", corrupt, "-o", tmp_path / "o")
    assert_clean_error(code, err, "not a readable PyTorch file")


def test_checkpoint_of_another_network(speedy_cli, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"generator": {"conv_pre.weight": torch.zeros(3, 3, 3)}}, other)
    code, _, err = speedy_cli("export", TINY_RECIPE, "--checkpoint", other, "-o", tmp_path / "o")
    assert_clean_error(code, err, "does not fit the hifigan network")


def test_mel_with_81_bins(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    mel = tmp_path / "mel81.npy"
    np.save(mel, np.zeros((81, 100), dtype=np.float32))
    code, _, err = speedy_cli(
        "infer", tiny_build["export"].path, "-i", mel, "-o", tmp_path / "a.wav"
    )
    assert_clean_error(code, err, "input 'mel' has size 81 on axis 1, the model needs 80")
    assert not (tmp_path / "a.wav").exists()


def test_frames_outside_declared_range(speedy_cli, tiny_build: dict, tmp_path: Path):
    mel = tmp_path / "mel.npy"
    np.save(mel, np.zeros((80, 4000), dtype=np.float32))
    code, _, err = speedy_cli(
        "infer", tiny_build["simplify"].path, "-i", mel, "-o", tmp_path / "a.wav"
    )
    assert_clean_error(code, err, "frames=4000 is outside the declared range 8..2048")


def test_a_mel_shorter_than_the_model_takes_is_padded(speedy_cli, tiny_build, tmp_path: Path):
    mel = tmp_path / "mel.npy"
    np.save(mel, np.full((80, 3), -11.5, dtype=np.float32))  # under the 8-frame minimum
    code, _, err = speedy_cli(
        "infer", tiny_build["simplify"].path, "-i", mel, "-o", tmp_path / "a.wav"
    )
    assert code == 0, err
    assert sf.info(str(tmp_path / "a.wav")).frames == 3 * 256  # the mel's own length


def test_corrupt_onnx(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    source = tiny_build["export"]
    (broken / "speedy.json").write_bytes((source.path / "speedy.json").read_bytes())
    (broken / "model.onnx").write_bytes(source.file("model").read_bytes()[:5000])
    code, _, err = speedy_cli("simplify", broken, "-o", tmp_path / "out")
    assert_clean_error(code, err, "model.onnx of artifact", "was changed after it was written")
    code, _, err = speedy_cli("simplify", broken, "--no-verify", "-o", tmp_path / "out")
    assert_clean_error(code, err, "is not a valid ONNX file")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_force(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    out = tmp_path / "simplified"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", out)
    assert_clean_error(code, err, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", out, "--force")
    assert_clean_error(code, err, "cannot prove it wrote it")  # --force: speedy's outputs only
    assert (out / "keep.txt").read_text() == "mine"
    artifact = tmp_path / "artifact"
    assert speedy_cli("simplify", tiny_build["export"].path, "-o", artifact)[0] == 0
    code, _, _ = speedy_cli("simplify", tiny_build["export"].path, "-o", artifact, "--force")
    assert code == 0 and (artifact / "speedy.json").is_file()


def test_not_an_artifact(speedy_cli, tmp_path: Path) -> None:
    code, _, err = speedy_cli("inspect", tmp_path)
    assert_clean_error(code, err, "is not a speedy artifact")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "SPEEDY_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "speedy", "--debug", "run", "no_such_recipe"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "SpeedyError" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_export_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    """Stop `speedy export` while it writes: no output dir and no temporary dir remain, one line
    says so, and the process ends by the signal that stopped it."""
    out = tmp_path / "exported"
    env = {**os.environ, "SPEEDY_CACHE_DIR": str(tmp_path / "cache")}
    process = subprocess.Popen(
        [sys.executable, "-m", "speedy", "export", str(TINY_RECIPE), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".exported.") for p in tmp_path.iterdir()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -sig  # ended by the signal: a shell sees 128 + signal
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []


WRAPS_AN_INTERRUPT = """
import os, signal, sys

def interrupted(*args):
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    except KeyboardInterrupt as exc:
        raise RuntimeError("failed") from exc
"""


@pytest.mark.parametrize(
    ("command", "patch"),
    [
        ("export", "from speedy.stages import export; export._export = interrupted"),
        (
            "simplify",
            "from speedy.stages import simplify as s; s.SIMPLIFIERS['onnxslim'] = interrupted",
        ),
    ],
    ids=["export", "simplify"],
)
def test_an_interrupt_a_library_reported_as_its_failure(
    command: str, patch: str, tiny_build: dict, tmp_path: Path
) -> None:
    """A library may catch the KeyboardInterrupt and raise its own error (torch's exporter does):
    the run still ends as interrupted, without an error line, a fallback or an output."""
    source = TINY_RECIPE if command == "export" else tiny_build["export"].path
    argv = ["speedy", command, str(source), "-o", str(tmp_path / "out")]
    script = (
        f"{WRAPS_AN_INTERRUPT}\n{patch}\nsys.argv = {argv!r}\nfrom speedy.cli import main\nmain()"
    )
    env = {**os.environ, "SPEEDY_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == -signal.SIGINT, result.stderr
    assert "interrupted" in result.stderr, result.stderr
    assert "error:" not in result.stderr and "falling back" not in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []


@pytest.mark.parametrize("message", ["simulated\nsecond line", ""])
def test_an_unexpected_error_gets_one_line(
    speedy_cli, tiny_build: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    def broken(model: object, fold_limit: int | None) -> None:
        raise RuntimeError(message)

    monkeypatch.setitem(simplify_stage.SIMPLIFIERS, "onnxslim", broken)
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", tmp_path / "out")
    assert_clean_error(code, err, "unexpected RuntimeError", "--debug")
    assert "second line" not in err
