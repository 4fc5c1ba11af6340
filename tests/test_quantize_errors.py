"""`speedy quantize` refuses bad input with one line naming the problem and the fix."""

from pathlib import Path

import numpy as np
import pytest

from speedy.artifact import Artifact
from tests.test_cli_errors import assert_clean_error
from tests.test_quantize import tiny_int8  # noqa: F401 (module fixture shared with these tests)


def quantize(speedy_cli, artifact: Path, out: Path, *args: str) -> tuple[int, str, str]:
    return speedy_cli("quantize", artifact, "-o", out, "--calib-size", "2", *args)


def test_empty_calibration_source(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = quantize(
        speedy_cli, tiny_build["simplify"].path, tmp_path / "o", "--calib", tmp_path / "empty"
    )
    assert_clean_error(code, err, "calibration source", "no audio or .npy files")
    assert not (tmp_path / "o").exists()


def test_unreadable_audio_file(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "broken.wav").write_bytes(b"RIFF....WAVEfmt not really a wave file")
    code, _, err = quantize(
        speedy_cli, tiny_build["simplify"].path, tmp_path / "o", "--calib", calib
    )
    assert_clean_error(code, err, "cannot read audio file", "broken.wav")


@pytest.mark.parametrize(
    ("shape", "phrase"),
    [((64, 200), "size 64 on axis 1, the model needs 80"), ((80, 5), "frames=5 is outside")],
)
def test_calibration_inputs_outside_the_declared_dims(
    speedy_cli, tiny_build: dict, tmp_path: Path, shape: tuple[int, int], phrase: str
) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(calib / "good.npy", np.zeros((80, 300), np.float32))
    np.save(calib / "bad.npy", np.zeros(shape, np.float32))
    code, _, err = quantize(
        speedy_cli,
        tiny_build["simplify"].path,
        tmp_path / "o",
        "--calib",
        calib,
        "--precision",
        "int8",
    )
    assert_clean_error(code, err, "calibration input bad.npy", phrase)


def test_budget_with_an_unknown_metric(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    code, _, err = quantize(
        speedy_cli, tiny_build["simplify"].path, tmp_path / "o", "--budget", "loudness>=3"
    )
    assert_clean_error(code, err, "unknown quality metric 'loudness'", "pesq")


def test_an_artifact_that_is_already_quantized(speedy_cli, tiny_int8: Artifact, tmp_path) -> None:  # noqa: F811
    code, _, err = quantize(speedy_cli, tiny_int8.path, tmp_path / "o", "--precision", "fp16")
    assert_clean_error(code, err, "is already quantized", "float32 artifact it was made from")


def test_text_source_for_an_audio_model(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    text = tmp_path / "lines.txt"
    text.write_text("Hello there.\n")
    code, _, err = quantize(
        speedy_cli, tiny_build["simplify"].path, tmp_path / "o", "--calib", text
    )
    assert_clean_error(code, err, "lines.txt is not what a vocoder model's inputs come from")


def test_unknown_named_set(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    code, _, err = quantize(
        speedy_cli, tiny_build["simplify"].path, tmp_path / "o", "--calib", "no_such_set"
    )
    assert_clean_error(code, err, "neither a path nor a named calibration set", "ljspeech_calib")


def test_a_changed_file_of_a_named_set(
    speedy_cli, tiny_build: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.wav").write_bytes(b"not the recorded bytes")
    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "mine.yaml").write_text(f"root: {clips}\nfiles:\n  a.wav: sha256:{'0' * 64}\n")
    monkeypatch.setenv("SPEEDY_CALIBRATION_PATH", str(sets))
    code, _, err = quantize(
        speedy_cli, tiny_build["simplify"].path, tmp_path / "o", "--calib", "mine"
    )
    assert_clean_error(code, err, "differs from the copy calibration set 'mine'")
