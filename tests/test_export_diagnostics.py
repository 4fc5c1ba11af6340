"""A failed export says why in one line: the cause, the module and source line, what to try;
`--rewrite` then turns the same networks into exports that follow their input's length."""

import inspect
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from tests import speech_blocks
from tests.test_cli_errors import assert_clean_error

IO = yaml.safe_dump(speech_blocks.IO_SPEC)
SOURCE = Path(inspect.getfile(speech_blocks))


def line_of(code: str) -> str:
    """`speech_blocks.py:N`, the line holding `code`."""
    lines = SOURCE.read_text().splitlines()
    return f"{SOURCE.name}:{next(i for i, line in enumerate(lines, 1) if code in line)}"


def export(speedy_cli, factory: str, out: Path, *options: str) -> tuple[int, str]:
    code, _, err = speedy_cli(
        "export", "--model", f"tests.speech_blocks:{factory}", "--io", IO, "-o", out, *options
    )
    return code, err


def assert_one_line_cause(code: int, err: str, *phrases: str) -> None:
    assert_clean_error(code, err, *phrases)
    assert "\x1b[" not in err
    assert "graph(" not in err
    assert not [line for line in err.splitlines() if line.lstrip().startswith("%")]


def test_complex_istft_head_is_named_with_its_line_and_rewrite(speedy_cli, tmp_path) -> None:
    code, err = export(speedy_cli, "vocos", tmp_path / "out")
    error = next(line for line in err.splitlines() if line.startswith("error:"))
    assert_one_line_cause(
        code,
        err,
        "complex-valued tensors",
        "'head' (ISTFTHead)",
        line_of("1j * torch.sin"),
        "--rewrite istft",
    )
    assert "ConvNeXt" not in error
    assert error.index("dynamo:") < error.index("torchscript:")  # both exporters' reasons
    assert not (tmp_path / "out").exists()


def test_lstm_frozen_at_the_tracing_batch_is_caught_at_export(speedy_cli, tmp_path) -> None:
    code, err = export(speedy_cli, "recurrent", tmp_path / "out", "--exporter", "dynamo")
    assert_one_line_cause(
        code,
        err,
        "input 'mel' has axis 0 (batch) fixed at its tracing size 1",
        "'rnn' (LSTM)",
        line_of("self.rnn(self.proj"),
        "--rewrite lstm",
    )
    assert "parity" not in err  # caught before the parity check


def test_data_dependent_count_names_its_source_line(speedy_cli, tmp_path) -> None:
    code, err = export(speedy_cli, "repeater", tmp_path / "out", "--exporter", "dynamo")
    assert_one_line_cause(
        code, err, "data-dependent", "(Repeater)", line_of(".item()"), "cumsum + mask"
    )


def test_torchscript_fallback_that_freezes_a_length_keeps_the_dynamo_reason(
    speedy_cli, tmp_path
) -> None:
    code, err = export(speedy_cli, "repeater", tmp_path / "out")
    assert_one_line_cause(
        code, err, "dynamo: a size or branch taken from tensor values", "torchscript: output"
    )
    error = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "froze a length at the tracing size" in error


def onnx_matches_pytorch(out: Path, network: torch.nn.Module, frames: int) -> float:
    """Largest difference of the artifact's ONNX from `network` at `frames`."""
    mel = np.random.default_rng(3).standard_normal((2, 80, frames)).astype(np.float32)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"mel": mel})
    with torch.no_grad():
        want = network(torch.from_numpy(mel)).numpy()
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


@pytest.mark.parametrize(
    ("factory", "options"),
    [
        ("vocos", ["--rewrite", "istft"]),
        ("recurrent", ["--rewrite", "lstm", "--exporter", "dynamo"]),
    ],
)
def test_rewrite_makes_the_export_follow_the_length(speedy_cli, tmp_path, factory, options):
    code, err = export(speedy_cli, factory, tmp_path / "out", *options)
    assert code == 0, err
    assert f"rewrote {options[1]}:" in err
    network = getattr(speech_blocks, factory)().eval()
    assert onnx_matches_pytorch(tmp_path / "out", network, frames=57) < 1e-4  # traced at 32


def test_a_rewrite_with_nothing_to_replace_says_so(speedy_cli, tmp_path) -> None:
    code, err = export(speedy_cli, "recurrent", tmp_path / "out", "--rewrite", "istft")
    assert_clean_error(code, err, "--rewrite istft: the network has no module whose forward")
    code, err = export(speedy_cli, "recurrent", tmp_path / "out", "--rewrite", "fft")
    assert_clean_error(code, err, "unknown rewrite 'fft'", "istft, lstm")
