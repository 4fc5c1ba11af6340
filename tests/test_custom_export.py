"""Family-free export: the user's own network (`--model module:function` from the current
directory) and a typed I/O spec (`--io`), no recipe."""

import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from speedy.artifact import Artifact
from tests.test_cli_errors import assert_clean_error

NETWORK = '''
import torch
from torch import nn


class Denoiser(nn.Module):
    """mel (batch, 20, frames) -> a 2-D waveform (batch, 4 * frames)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(20, 16, 3, padding=1)
        self.up = nn.ConvTranspose1d(16, 1, 8, stride=4, padding=2)

    def forward(self, mel):
        return torch.tanh(self.up(torch.relu(self.conv(mel)))).squeeze(1)


def make():
    return Denoiser()
'''
IO = textwrap.dedent(
    """
    inputs:
      - {name: mel, dtype: float32, shape: [batch, 20, frames], fill: normal}
    outputs: [audio]
    dims: {batch: {min: 1, opt: 1, max: 3}, frames: {min: 8, opt: 24, max: 200}}
    audio: {output: audio, sample_rate: 16000}
    """
)


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding the user's network module, made the current directory."""
    (tmp_path / "byom_net.py").write_text(NETWORK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "byom_net", raising=False)
    return tmp_path


def test_own_network_exports_without_a_recipe(speedy_cli, user_dir: Path) -> None:
    sys.path.insert(0, str(user_dir))  # to build the reference network here
    import byom_net

    torch.manual_seed(1)
    network = byom_net.make().eval()  # random weights, handed over as a checkpoint
    torch.save(network.state_dict(), user_dir / "weights.pt")
    (user_dir / "io.yaml").write_text(IO)
    code, _, err = speedy_cli(
        "export", "--model", "byom_net:make", "--io", "io.yaml", "--checkpoint", "weights.pt",
        "-o", "out",
    )  # fmt: skip
    assert code == 0, err
    manifest = Artifact.open(user_dir / "out").manifest
    assert manifest.model.family == "custom" and manifest.model.task == "generic"
    assert manifest.graphs["model"].outputs[0].shape == ["audio_d0", "audio_d1"]
    assert manifest.model.audio.sample_rate == 16000 and manifest.reports["parity"]["passed"]
    mel = np.random.default_rng(0).standard_normal((2, 20, 77)).astype(np.float32)  # not 24
    session = ort.InferenceSession(str(user_dir / "out" / "model.onnx"))
    (audio,) = session.run(None, {"mel": mel})
    with torch.no_grad():
        want = network(torch.from_numpy(mel)).numpy()
    assert audio.shape == want.shape == (2, 308)
    assert np.abs(audio - want).max() < 1e-5
    code, out, err = speedy_cli("inspect", "out")
    assert code == 0, err
    assert '"family": "custom"' in out and "graph model: onnx" in out
    assert "checkpoint: weights.pt" in out


@pytest.mark.parametrize(
    ("io", "phrase"),
    [
        (IO.replace("frames], fill: normal", "frames], fill: gauss"), "--io inputs.0.fill"),
        (IO.replace("batch: {min: 1, opt: 1, max: 3}, ", ""), "dims has no range for ['batch']"),
        (IO.replace("output: audio,", "output: wave,"), "audio.output 'wave' is not one"),
        ("absent.yaml", "--io file not found: absent.yaml"),
    ],
)
def test_bad_io_spec_is_one_line_naming_the_field(speedy_cli, user_dir, io, phrase) -> None:
    code, _, err = speedy_cli("export", "--model", "byom_net:make", "--io", io, "-o", "out")
    assert_clean_error(code, err, phrase)
    assert not (user_dir / "out").exists()


def test_export_without_recipe_needs_model_and_io(speedy_cli, user_dir) -> None:
    code, _, err = speedy_cli("export", "--model", "byom_net:make", "-o", "out")
    assert_clean_error(code, err, "export needs a recipe, a torch artifact, or --model with --io")


def test_unimportable_factory_says_where_modules_are_found(speedy_cli, user_dir) -> None:
    code, _, err = speedy_cli("export", "--model", "nowhere:make", "--io", IO, "-o", "out")
    assert_clean_error(code, err, "cannot import model factory 'nowhere:make'", "current directory")
