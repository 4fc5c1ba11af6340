"""Bring your own model, on tiny seeded models built here: FP16 and INT8 of graphs whose compute
sits in If branches, the default quality budget of every precision, audio budgets of models
without a family, sequence-first and multi-layer recurrent layers under `--rewrite lstm`, `--io`
names, and quantization tables that name layers by module."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from speedy.artifact import Artifact
from speedy.quality import parse_budget
from speedy.tasks import TASKS
from tests.test_cli_errors import assert_clean_error
from tests.test_import_generic import cli

SHAPES = ("--shapes", "T:8,32,64", "--shapes", "N:1,1,2")


# ----------------------------------------------------------------------------------------------
# ONNX graphs made elsewhere (`speedy import --task generic`)


def _conv(name: str, x: str, weight: str, output: str, pads: int = 0) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, weight], [output], pads=[pads, pads], name=name)


def _branch(name: str, nodes: list[onnx.NodeProto]) -> onnx.GraphProto:
    output = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
    return helper.make_graph(nodes, name, [], [output])


def _save(path: Path, nodes: list, weights: dict[str, np.ndarray], channels: int) -> Path:
    """A graph of `nodes` from x [N, 8, T] to y [N, channels, T], opset 17."""
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "T"])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def branchy(path: Path) -> Path:
    """Every convolution inside If branches (as a scripted `if` exports): two Ifs chosen by the
    sign of the input's mean, the first one's branches sharing the weight `shared`."""
    rng = np.random.default_rng(0)
    loud = _branch(
        "loud",
        [
            _conv("a", "x", "wa", "a", 1),
            helper.make_node("Relu", ["a"], ["ra"]),
            _conv("sa", "ra", "shared", "ha"),
        ],
    )
    quiet = _branch(
        "quiet",
        [
            _conv("b", "x", "wb", "b", 1),
            helper.make_node("Tanh", ["b"], ["tb"]),
            _conv("sb", "tb", "shared", "hb"),
        ],
    )
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m1"], keepdims=0),
        helper.make_node("Greater", ["m1", "zero"], ["c1"]),
        helper.make_node("If", ["c1"], ["h"], then_branch=loud, else_branch=quiet),
        helper.make_node("ReduceMean", ["h"], ["m2"], keepdims=0),
        helper.make_node("Greater", ["m2", "zero"], ["c2"]),
        helper.make_node(
            "If",
            ["c2"],
            ["y"],
            then_branch=_branch("up", [_conv("c", "h", "wc", "yc")]),
            else_branch=_branch("down", [_conv("d", "h", "wd", "yd")]),
        ),
    ]
    shapes = {"wa": (8, 8, 3), "wb": (8, 8, 3), "shared": (8, 8, 1), "wc": (4, 8, 1)}
    weights = {n: rng.normal(0, 0.3, s).astype(np.float32) for n, s in shapes.items()}
    weights |= {"wd": -weights["wc"], "zero": np.array(0, np.float32)}
    return _save(path, nodes, weights, 4)


def cancelling(path: Path) -> Path:
    """Two convolutions with nearly the same weights, subtracted: INT8 rounds away most of the
    small difference (tensor SNR about 12 dB), FP16 keeps it (about 45 dB)."""
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.3, (8, 8, 3)).astype(np.float32)
    near = weight + rng.normal(0, 0.015, weight.shape).astype(np.float32)
    nodes = [
        _conv("a", "x", "w", "a", 1),
        _conv("b", "x", "near", "b", 1),
        helper.make_node("Sub", ["a", "b"], ["y"]),
    ]
    return _save(path, nodes, {"w": weight, "near": near}, 8)


@pytest.fixture(scope="module")
def branchy_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The If-branch graph imported, and simplified by onnxslim."""
    work = tmp_path_factory.mktemp("branchy")
    cli("import", branchy(work / "branchy.onnx"), *SHAPES, "-o", work / "import")
    cli("simplify", work / "import", "-o", work / "simplify")
    return {"import": work / "import", "simplify": work / "simplify"}


def test_fp16_of_a_simplified_graph_with_if_branches(speedy_cli, branchy_build, tmp_path) -> None:
    simplified = onnx.load(str(branchy_build["simplify"] / "model.onnx"))
    branches = [a.g for n in simplified.graph.node if n.op_type == "If" for a in n.attribute]
    names = [t.name for graph in branches for t in graph.initializer]
    assert names.count("shared") == 2  # onnxslim's copies, on which the FP16 converter asserted
    out = tmp_path / "fp16"
    code, _, err = speedy_cli(
        "quantize", branchy_build["simplify"], "--precision", "fp16", "-o", out
    )
    assert code == 0, err
    branches = [a.g for n in onnx.load(str(out / "model.onnx")).graph.node for a in n.attribute]
    types = {t.data_type for graph in branches for t in graph.initializer}
    assert types == {TensorProto.FLOAT16}
    quality = Artifact.open(out).manifest.reports["quality"]
    assert quality["budget"] == ["tensor_snr>=30"] and quality["metrics"]["tensor_snr"] > 40


@pytest.mark.parametrize("precision", ["int8", "mixed"])
@pytest.mark.parametrize("stage", ["import", "simplify"])
def test_quantize_that_changes_no_compute_node_fails(
    speedy_cli, branchy_build, tmp_path, stage: str, precision: str
) -> None:
    out = tmp_path / "q"
    args = ("quantize", branchy_build[stage], "--precision", precision, "-o", out)
    code, _, err = speedy_cli(*args, "--calib-size", "2")
    assert_clean_error(
        code, err, f"--precision {precision} would change no compute node", "If/Loop/Scan"
    )
    assert not out.exists()


@pytest.fixture(scope="module")
def cancelling_import(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cancelling")
    cli("import", cancelling(work / "cancelling.onnx"), *SHAPES, "-o", work / "import")
    return work / "import"


def test_every_precision_meets_its_task_budget_or_fails(
    speedy_cli, cancelling_import: Path, tmp_path
) -> None:
    int8 = ("quantize", cancelling_import, "--precision", "int8", "--calib-size", "2")
    code, _, err = speedy_cli(*int8, "-o", tmp_path / "int8")
    assert_clean_error(code, err, "misses the quality budget", "needs tensor_snr>=30")
    assert "--no-budget" in err and not (tmp_path / "int8").exists()

    code, _, err = speedy_cli(*int8, "--no-budget", "-o", tmp_path / "kept")
    assert code == 0, err
    quality = Artifact.open(tmp_path / "kept").manifest.reports["quality"]
    assert quality["budget"] == [] and quality["verdict"] == "unchecked (--no-budget)"
    assert quality["metrics"]["tensor_snr"] < 30

    fp16 = ("quantize", cancelling_import, "--precision", "fp16", "-o", tmp_path / "fp16")
    code, _, err = speedy_cli(*fp16)
    assert code == 0, err
    quality = Artifact.open(tmp_path / "fp16").manifest.reports["quality"]
    assert quality["budget"] == ["tensor_snr>=30"] and quality["verdict"] == "ok"


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        (("--precision", "int8", "--budget", "tensor_snr>=20"), "contradict each other"),
        (("--precision", "mixed"), "mixed precision searches under a quality budget"),
    ],
)
def test_no_budget_goes_with_neither_a_budget_nor_mixed(
    speedy_cli, cancelling_import: Path, tmp_path, options: tuple[str, ...], phrase: str
) -> None:
    out = tmp_path / "q"
    code, _, err = speedy_cli("quantize", cancelling_import, *options, "--no-budget", "-o", out)
    assert_clean_error(code, err, phrase)


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_has_a_default_budget(name: str) -> None:
    task = TASKS.get(name)
    assert parse_budget(task.default_budget, task.metrics)


# ----------------------------------------------------------------------------------------------
# A family-free network with an audio output and an ISTFT (`--rewrite istft`)


class Denoiser(nn.Module):
    """wave (batch, samples) -> STFT -> a gain per bin from the log magnitude -> ISTFT."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(256))
        self.conv = nn.Conv1d(129, 32, 3, padding=1)
        self.mix = nn.Linear(32, 129)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(wave, 256, 64, window=self.window, return_complex=True)
        hidden = torch.relu(self.conv(torch.log1p(spectrum.abs())))
        gain = torch.sigmoid(self.mix(hidden.transpose(1, 2))).transpose(1, 2)
        return torch.istft(spectrum * gain, 256, 64, window=self.window)


def denoiser() -> nn.Module:
    torch.manual_seed(0)
    return Denoiser()


DENOISER_IO = {
    "inputs": [
        {"name": "wave", "dtype": "float32", "shape": ["batch", "samples"], "fill": "audio"}
    ],
    "outputs": ["audio"],
    "dims": {
        "batch": {"min": 1, "opt": 1, "max": 2},
        "samples": {"min": 4096, "opt": 16000, "max": 48000},
    },
    "audio": {"output": "audio", "sample_rate": 16000},
    "parity": {"sizes": [{"samples": 8000}, {"batch": 2, "samples": 12345}], "atol": 1.0e-4},
}


@pytest.fixture(scope="module")
def denoiser_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The denoiser exported (ISTFT rewritten), simplified, then quantized mixed under an
    audio budget."""
    work = tmp_path_factory.mktemp("denoiser")
    io = yaml.safe_dump(DENOISER_IO)
    model = ("--model", "tests.test_byom:denoiser", "--io", io, "--rewrite", "istft")
    cli("export", *model, "-o", work / "export")
    cli("simplify", work / "export", "-o", work / "simplify")
    budget = ("--budget", "pesq>=4.0", "--calib-size", "4")
    cli("quantize", work / "simplify", *budget, "-o", work / "mixed")
    return {name: work / name for name in ("simplify", "mixed")}


def test_audio_budget_of_an_exported_model(denoiser_build: dict[str, Path]) -> None:
    reports = Artifact.open(denoiser_build["mixed"]).manifest.reports
    quality = reports["quality"]
    assert quality["budget"] == ["pesq>=4"] and quality["verdict"] == "ok"
    assert quality["metrics"]["pesq"] >= 4.0 and "tensor_snr" in quality["metrics"]
    assert reports["quantize"]["model"]["search"]  # the search measured PESQ too


def test_audio_budget_of_an_imported_model(denoiser_build: dict[str, Path], tmp_path) -> None:
    source = denoiser_build["simplify"] / "model.onnx"
    audio = ("--fill", "wave=audio", "--audio-output", "audio")
    cli("import", source, *audio, "--shapes", "samples:4096,16000,48000", "-o", tmp_path / "i")
    fp16 = ("--precision", "fp16", "--budget", "pesq>=4.0")
    cli("quantize", tmp_path / "i", *fp16, "-o", tmp_path / "fp16")
    quality = Artifact.open(tmp_path / "fp16").manifest.reports["quality"]
    assert quality["budget"] == ["pesq>=4"] and quality["metrics"]["pesq"] >= 4.0


def test_quantization_table_names_modules_and_keeps_dft_bases_float(
    denoiser_build: dict[str, Path],
) -> None:
    report = Artifact.open(denoiser_build["mixed"]).manifest.reports["quantize"]["model"]
    assert [row["group"] for row in report["table"]] == ["conv", "mix"]  # not `val_5`
    model = onnx.load(str(denoiser_build["mixed"] / "model.onnx"))
    weights = {t.name: t.data_type for t in model.graph.initializer}
    fixed = [node for node in model.graph.node if node.name in report["fixed_float"]]
    assert {node.op_type for node in fixed} == {"Conv", "ConvTranspose"}  # STFT, ISTFT
    for node in fixed:  # read straight from a float32 initializer, no DequantizeLinear
        assert ".dft_" in node.input[1] and weights[node.input[1]] == TensorProto.FLOAT


# ----------------------------------------------------------------------------------------------
# Recurrent layers (`--rewrite lstm`) and `--io` names


class SLSTM(nn.Module):
    """EnCodec's SLSTM over the frames of (batch, channels, frames): a sequence-first two-layer
    LSTM with a skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 16, 3, padding=1)
        self.lstm = nn.LSTM(16, 16, num_layers=2)
        self.out = nn.Conv1d(16, 4, 1)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(frames, batch, 16) after the LSTM."""
        h = self.conv(x).permute(2, 0, 1)
        return self.lstm(h)[0] + h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.frames(x).permute(1, 2, 0))


class Recurrent(SLSTM):
    """The SLSTM, then a sequence-first bidirectional two-layer GRU."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(16, 8, num_layers=2, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.gru(self.frames(x))[0].permute(1, 2, 0))


def slstm() -> nn.Module:
    torch.manual_seed(0)
    return SLSTM()


def recurrent() -> nn.Module:
    torch.manual_seed(0)
    return Recurrent()


RECURRENT_IO = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 8, "frames"]}],
    "outputs": ["y"],
    "dims": {"batch": {"min": 1, "opt": 1, "max": 3}, "frames": {"min": 8, "opt": 64, "max": 400}},
}


def export(
    speedy_cli, factory: str, out: Path, *options: str, io: dict = RECURRENT_IO
) -> tuple[int, str]:
    code, _, err = speedy_cli(
        "export", "--model", f"tests.test_byom:{factory}", "--io", yaml.safe_dump(io), "-o", out,
        *options,
    )  # fmt: skip
    return code, err


@pytest.mark.slow
def test_sequence_first_multi_layer_lstm_and_gru_export_with_the_rewrite(
    speedy_cli, tmp_path
) -> None:
    code, err = export(speedy_cli, "recurrent", tmp_path / "out", "--rewrite", "lstm")
    assert code == 0, err
    assert "rewrote lstm:lstm, lstm:gru" in err and "falling back" not in err
    assert Artifact.open(tmp_path / "out").manifest.reports["exporter"] == {"model": "dynamo"}
    session = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"))
    network = recurrent().eval()
    for batch, frames in [(2, 57), (3, 211)]:  # traced at 1 x 64
        x = np.random.default_rng(frames).standard_normal((batch, 8, frames)).astype(np.float32)
        (got,) = session.run(None, {"x": x})
        with torch.no_grad():
            want = network(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


@pytest.mark.slow
def test_recurrent_export_failure_names_the_layer_and_the_rewrite(speedy_cli, tmp_path) -> None:
    code, err = export(speedy_cli, "slstm", tmp_path / "out")
    assert_clean_error(code, err, "export failed: dynamo:", "'lstm' (LSTM)", "--rewrite lstm")
    assert "torchscript" not in err  # no slow fallback that fails the same way
    assert not (tmp_path / "out").exists()


def test_io_names_forward_does_not_take_are_one_line(speedy_cli, tmp_path) -> None:
    inputs = [{"name": "mel", "dtype": "float32", "shape": ["batch", 8, "frames"]}]
    code, err = export(speedy_cli, "slstm", tmp_path / "out", io=RECURRENT_IO | {"inputs": inputs})
    assert_clean_error(code, err, "--io names the inputs mel", "forward takes (x)")
    assert "falling back" not in err and not (tmp_path / "out").exists()


def test_export_help_shows_bracketed_names(speedy_cli) -> None:
    code, out, _ = speedy_cli("export", "--help")
    assert code == 0 and "[names]" in out  # not taken for rich markup
