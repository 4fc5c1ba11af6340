"""Streaming vocoding: chunked audio equals whole-utterance audio, memory stays bounded."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from speedy import runtime
from speedy.errors import SpeedyError
from speedy.families.network import build_network
from speedy.quality import snr_db
from speedy.tasks import streamer_of, task_for
from speedy.tasks.streaming import Context
from speedy.tasks.vocoder import VocoderStreamer


def stream(model, mel: np.ndarray, chunk: int, context: Context | None = None):
    """The streamed audio of one mel (or of consecutive pieces of it)."""
    task = task_for(model.manifest.model)
    inputs = task.inputs(mel) if isinstance(mel, np.ndarray) else map(task.inputs, mel)
    return VocoderStreamer(task, chunk, context).stream(model, inputs)


@pytest.fixture(scope="module")
def tiny(tiny_build: dict):
    session = runtime.load(tiny_build["export"].path, threads=2)
    task = tiny_build["ctx"].task
    mel = tiny_build["ctx"].examples[1]  # a real clip's mel
    (whole,) = task.waveforms(session.run(task.inputs(mel)))
    return session, mel, whole


def test_receptive_field_is_recorded_from_the_layers(tiny_build: dict) -> None:
    """The tiny recipe's field (resblock kernels 3 and 7, dilations 1 and 3) is 7 frames each
    way: the family records it, and the network's audio of a frame depends on exactly those mel
    frames (autograd through the network)."""
    spec = tiny_build["ctx"].spec
    assert spec.task_settings["receptive_field"] == {"left": 7, "right": 7}
    assert tiny_build["ctx"].task.streamer(0.25).context == Context(left=7, right=7)
    mel = torch.randn(1, spec.audio.n_mels, 64, requires_grad=True)
    audio = build_network(spec)(mel).reshape(-1)
    hop = spec.audio.hop_length
    audio[32 * hop : 33 * hop].sum().backward()
    assert mel.grad is not None
    used = np.flatnonzero(mel.grad.abs().sum(dim=1)[0].numpy())
    assert (32 - used[0], used[-1] - 32) == (7, 7)


def test_a_model_without_a_recorded_field_does_not_stream(tiny_build: dict) -> None:
    """An artifact made before the field was recorded is served whole; streaming it explicitly
    says how to get one that streams."""
    spec = tiny_build["ctx"].spec
    task = task_for(spec.model_copy(update={"task_settings": {}}))
    assert streamer_of(task, 0.25) is None
    with pytest.raises(SpeedyError, match="records no receptive field"):
        task.streamer(0.25)


def test_streaming_an_onnx_model_imports_no_torch(tiny_build: dict) -> None:
    """The recorded field is all a served vocoder streams with: torch stays unloaded."""
    script = f"""
import sys
import numpy as np
from speedy import runtime
from speedy.tasks import streamer_of, task_for
model = runtime.load({str(tiny_build["export"].path)!r}, threads=1)
task = task_for(model.manifest.model)
mel = np.zeros((model.manifest.model.audio.n_mels, 60), np.float32)
assert len(list(streamer_of(task, 0.25).stream(model, task.inputs(mel)))) == 3
print(sorted(name for name in sys.modules if name.split(".")[0] == "torch")[:1])
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.split("\n")[-2] == "[]"


@pytest.mark.parametrize("chunk", [1, 5, 22, 100])
def test_chunks_tile_the_whole_output(tiny, chunk: int) -> None:
    session, mel, whole = tiny
    pieces = list(stream(session, mel, chunk))
    hop = session.manifest.model.audio.hop_length
    assert [p.size for p in pieces[:-1]] == [chunk * hop] * (len(pieces) - 1)
    streamed = np.concatenate(pieces)
    assert streamed.size == whole.size
    assert snr_db(whole, streamed) >= 100  # exact up to float rounding


def test_pieces_arriving_one_by_one(tiny) -> None:
    """Uneven pieces from an iterator give the same audio; each chunk leaves as soon as its
    right context has arrived."""
    session, mel, whole = tiny
    cuts = np.cumsum([1, 3, 30, 2, 50, 7])
    arrived = []

    def pieces():
        for piece in np.split(mel, cuts, axis=-1):
            arrived.append(piece.shape[-1])
            yield piece

    chunk, context = 22, VocoderStreamer(task_for(session.manifest.model), 22).context
    chunks = stream(session, pieces(), chunk)
    first = next(chunks)
    assert sum(arrived) >= chunk + context.right
    assert sum(arrived[:-1]) < chunk + context.right
    streamed = np.concatenate([first, *chunks])
    assert snr_db(whole, streamed) >= 100


def test_less_context_than_the_field_costs_quality(tiny) -> None:
    session, mel, whole = tiny
    exact = snr_db(whole, np.concatenate(list(stream(session, mel, 22))))
    short = snr_db(whole, np.concatenate(list(stream(session, mel, 22, Context(1, 1)))))
    assert short < exact - 30


def test_chunk_seconds() -> None:
    from speedy.recipe import load_recipe

    task = task_for(load_recipe("hifigan_v1").model_spec())
    assert task.chunk_frames(0.25) == 22  # 0.25 s * 22050 / 256 = 21.5 frames
    with pytest.raises(SpeedyError, match="chunk length must be positive"):
        task.chunk_frames(0)


def test_window_beyond_the_model_range(tiny) -> None:
    session, mel, _ = tiny
    with pytest.raises(SpeedyError, match="exceeds the model's limit of 2048"):
        next(stream(session, mel, 2040))


def test_long_stream_memory_is_bounded(tiny_build: dict) -> None:
    """A minute streamed peaks at (about) the memory of ten seconds, each in a fresh process."""

    def peak(seconds: int) -> dict:
        command = [sys.executable, "-m", "speedy.bench.long_audio", str(tiny_build["export"].path)]
        command += ["--seconds", str(seconds), "--threads", "1"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
        return json.loads(result.stdout.splitlines()[-1])

    short, long = peak(10), peak(60)
    assert abs(long["audio_seconds"] - 60) < 0.1 and long["chunks"] > 200
    assert long["rss_peak"] <= 1.2 * short["rss_peak"]
    assert long["rss_peak"] - long["rss_before_stream"] < 10e6  # 60 s of audio is 5.3 MB


@pytest.mark.slow
@pytest.mark.real
def test_real_hifigan_seams(real_build: dict) -> None:
    """The real HiFi-GAN V1, 0.25 s chunks: streamed audio within 40 dB of the whole output."""
    session = runtime.load(real_build["simplify"].path, threads=2)
    task = real_build["ctx"].task
    inputs = task.inputs(real_build["ctx"].examples[0])
    (whole,) = task.waveforms(session.run(inputs))
    streamer = task.streamer(0.25)
    assert streamer.context == Context(left=13, right=13)
    assert snr_db(whole, np.concatenate(list(streamer.stream(session, inputs)))) >= 40
