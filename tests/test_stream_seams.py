"""Streamed vocoder audio equals the whole-utterance audio within 1 LSB of 16-bit audio, for
FP32 and for mixed INT8, on inputs no other test uses.

Mixed INT8 keeps some layers float (the tiny model's counterparts of the real recipe's plan);
where a float layer feeds a QuantizeLinear, a last-bit rounding difference between the stream's
window and the whole run can move a value across a quantization step. ONNX Runtime's CPU GEMM
sums differently below 65 output columns, so a statically quantized model streams in windows of
at least `EXACT_WINDOW` frames (`exact_window`); `test_short_windows_round_differently` pins that
mechanism. Runs use one thread (`speedy serve`'s default): with more, ORT also splits a layer's
columns between threads when it has more columns than channels, and each thread's share must reach
65 too; the tiny model (32 channels at the frame rate) would need 146-frame windows at 2 threads,
while HiFi-GAN V1 (512) streams exactly at 1 to 4 threads (benchmarks/stream_seams.py).
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.io import read_audio
from speedy.tasks import task_for
from speedy.tasks.streaming import EXACT_WINDOW, exact_window, stream_windows

LSB = 1 / 32768  # one step of 16-bit audio: the tolerance for FP32 and INT8 streams alike
CHUNKS = (0.1, 0.25, 0.5)  # seconds
CLIP = Path(__file__).parents[1] / "calibration" / "ljspeech" / "LJ001-0014.wav"  # 856 frames
FLOAT_GROUPS = ["conv_pre", "ups.0", "ups.2", "ups.3", "conv_post"]  # as hifigan_v1's plan
BUDGET = "mel<=0.5"


@pytest.fixture(scope="module")
def tiny_mixed(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """Mixed INT8 of the tiny model: its resblocks in INT8, the real plan's float groups float."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    options = {
        "budget": BUDGET,
        "calib_size": 4,
        "plan": {"budget": BUDGET, "float_groups": FLOAT_GROUPS},
    }
    out = tmp_path_factory.mktemp("seams") / "mixed"
    return execute(make_stage("quantize", options), tiny_build["simplify"], out, tiny_build["ctx"])


@pytest.fixture(scope="module")
def mels(tiny_build: dict) -> dict[str, np.ndarray]:
    """A real clip's log-mel (a calibration clip of the real recipe, not the tiny's data), noise
    from a seed used nowhere else, and an utterance shorter than `EXACT_WINDOW`."""
    task = tiny_build["ctx"].task
    noise = np.random.default_rng(60_217).standard_normal((80, 1500)) * 2 - 5
    return {
        "clip": task.features(read_audio(CLIP, task.audio.sample_rate)),
        "noise": noise.astype(np.float32),
        "short": noise[:, :40].astype(np.float32),
    }


def seam_error(model, mel: np.ndarray, seconds: float, min_window: int | None = None) -> float:
    """The largest |streamed - whole| sample in 16-bit steps; windows of at least `min_window`
    frames (default: `exact_window` of the model's precision)."""
    task = task_for(model.manifest.model)
    (whole,) = task.waveforms(model.run(task.inputs(mel)))
    streamer = task.streamer(seconds)
    if min_window is None:
        min_window = exact_window(model.manifest.precision)

    def run(window: np.ndarray) -> np.ndarray:
        return task.waveforms(model.run(task.inputs(window)))[0]

    pieces = stream_windows(
        run, [mel], streamer.chunk, streamer.context, streamer.limits, min_window
    )
    streamed = np.concatenate(list(pieces))
    assert streamed.shape == whole.shape
    return float(np.abs(streamed - whole).max() / LSB)


def test_mixed_keeps_float_layers_before_quantize_nodes(tiny_mixed: Artifact) -> None:
    """The artifact under test is the kind that streamed inexactly: float Conv layers and
    static QuantizeLinear nodes, no dynamic quantization."""
    assert tiny_mixed.manifest.precision == "int8+fp32"
    ops = {n.op_type for n in onnx.load(str(tiny_mixed.file("model"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "ConvTranspose"} <= ops
    assert "DynamicQuantizeLinear" not in ops


@pytest.mark.parametrize("source", ["clip", "noise", "short"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_stream_equals_whole_response(
    tiny_build: dict, tiny_mixed: Artifact, mels: dict, precision: str, source: str
) -> None:
    artifact = tiny_build["simplify"] if precision == "fp32" else tiny_mixed
    model = runtime.load(artifact.path, threads=1)
    errors = {seconds: seam_error(model, mels[source], seconds) for seconds in CHUNKS}
    assert max(errors.values()) <= 1, errors


def test_short_windows_round_differently(tiny_build: dict, tiny_mixed: Artifact, mels) -> None:
    """Without the minimum window (each window only as long as chunk and context), FP32 is no
    longer bit-exact, and in mixed INT8 those last-bit differences flip quantization steps
    worth tens of 16-bit steps."""
    fp32 = runtime.load(tiny_build["simplify"].path, threads=1)
    mixed = runtime.load(tiny_mixed.path, threads=1)
    assert exact_window(mixed.manifest.precision) == EXACT_WINDOW
    assert seam_error(fp32, mels["clip"], 0.25, EXACT_WINDOW) == 0
    assert 0 < seam_error(fp32, mels["clip"], 0.25) < 1  # FP32 streams in the shortest windows
    assert seam_error(mixed, mels["clip"], 0.25, min_window=1) > 10


def test_dynamic_int8_streams_are_not_exact(tiny_build: dict, tmp_path: Path, mels: dict) -> None:
    """Dynamic INT8 scales each run's activations by that run's own range, so a window and the
    whole utterance quantize differently at any window length: its streams are not exact."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    stage = make_stage("quantize", {"precision": "dynamic"})
    artifact = execute(stage, tiny_build["simplify"], tmp_path / "dynamic", tiny_build["ctx"])
    model = runtime.load(artifact.path, threads=1)
    assert exact_window(model.manifest.precision) == 1
    assert seam_error(model, mels["clip"], 0.25, EXACT_WINDOW) > 10


def test_served_int8_stream_is_its_whole_response(
    sambert_build: dict, tiny_mixed: Artifact
) -> None:
    """Over HTTP: the tiny Sambert through the mixed-INT8 vocoder, streamed in 0.1 s chunks,
    gives the bytes of its whole response."""
    pytest.importorskip("uvicorn", reason="serving needs the [serve] extra")
    from tests.serve_client import JSON, spawn

    request = {"text": "窗外的雨声渐渐停了。The rain stopped at last.", "speaker": 3}
    args = [str(sambert_build["simplify"].path), str(tiny_mixed.path), "--chunk-seconds", "0.1"]
    with spawn(args) as server:
        whole = server.call("POST", "/v1/tts", request).body
        connection = server.connect()
        connection.request("POST", "/v1/tts?stream=1", json.dumps(request), JSON)
        streamed = connection.getresponse().read()
    samples = [np.frombuffer(body[44:], "<i2").astype(int) for body in (whole, streamed)]
    assert samples[0].size == samples[1].size > 22050
    assert np.abs(samples[0] - samples[1]).max() <= 1
