"""Streaming vocoding: features in, audio chunks out, identical to vocoding the whole utterance.

Each chunk of `chunk_frames` feature frames is vocoded inside a window that adds the model's
receptive field as context (left: frames before, right: frames after); the context's audio is
cut away, so windows overlap by the context and the kept pieces tile the utterance exactly. With
the full receptive field as context every kept sample sees the same inputs as in the
whole-utterance run, so the seams are exact up to floating-point rounding. The receptive field is
derived once per network from its layers by autograd and stored in the cache directory.

A quantized model streams less exactly: float kernels round differently at different window
lengths, and where a float result feeds a QuantizeLinear a last-bit difference can flip a whole
quantization step. The streamed audio then differs from the whole-utterance audio by about as much
as another draw of the quantization noise (HiFi-GAN V1 mixed INT8: 25-40 dB), and scores the same
SNR and PESQ against the FP32 model.

Features have time on their last axis (a vocoder's mel: `(n_mels, frames)`); the family turns a
window of them into model inputs (`utterance`) and the outputs into a waveform (`waveform`).
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from speedy.audio.cache import default_cache_dir
from speedy.errors import SpeedyError
from speedy.identity import code_version
from speedy.model_spec import ModelSpec
from speedy.runtime.base import Session
from speedy.specs import DimRange


@dataclass(frozen=True)
class Context:
    """Feature frames that one output frame depends on: `left` before it and `right` after it."""

    left: int
    right: int


def chunk_frames(seconds: float, spec: ModelSpec) -> int:
    """The number of feature frames closest to `seconds` of audio (at least one)."""
    if not seconds > 0:
        raise SpeedyError(f"chunk length must be positive, got {seconds} s", "pass e.g. 0.25")
    return max(1, round(seconds * spec.audio.sample_rate / spec.audio.hop_length))


def _frames(spec: ModelSpec) -> DimRange:
    """The declared range of the features' time axis (the first input's last dim), for models
    that turn mels into audio; a clear error for others."""
    family = spec.adapter()
    dim = spec.inputs()[0].shape[-1]
    if (family.consumes, family.produces) != ("mel", "audio") or dim not in spec.dims:
        raise SpeedyError(
            f"a {spec.family} model cannot be streamed here: it does not turn mels into audio",
            "stream vocoders (mel in, audio out)",
        )
    return spec.dims[str(dim)]


def _dependencies(spec: ModelSpec, frames: int) -> tuple[int, int]:
    """First and last input frame that the audio of the middle frame depends on (autograd)."""
    family = spec.adapter()
    module = spec.build_module()
    noise = np.random.default_rng(0).standard_normal(frames * spec.audio.hop_length)
    features = family.features(noise.astype(np.float32))[..., :frames]
    feeds, _ = family.utterance(features)
    args = [torch.from_numpy(feeds[s.name]).requires_grad_(True) for s in spec.inputs()]
    audio = module(*args)
    audio = (audio[0] if isinstance(audio, tuple | list) else audio).reshape(-1)
    hop, rest = divmod(audio.numel(), frames)
    if rest:
        raise SpeedyError(
            f"{audio.numel()} output samples for {frames} frames is not a whole hop",
            "stream only models whose output length is a multiple of the input frames",
        )
    middle = frames // 2
    audio[middle * hop : (middle + 1) * hop].sum().backward()
    gradient = args[0].grad
    assert gradient is not None
    used = np.flatnonzero(gradient.abs().reshape(-1, frames).sum(0).numpy())
    return int(used[0]), int(used[-1])


def receptive_field(spec: ModelSpec) -> Context:
    """The network's receptive field in frames, computed once and kept in the cache directory."""
    identity = spec.model_dump_json(include={"family", "network", "audio", "factory"})
    key = hashlib.sha256(f"{identity}|{code_version()}".encode()).hexdigest()
    entry = default_cache_dir() / "receptive_field" / f"{key}.json"
    if entry.is_file():
        return Context(**json.loads(entry.read_text()))
    frames, largest = 64, _frames(spec).max
    while True:
        first, last = _dependencies(spec, frames)
        if first > 0 and last < frames - 1:  # not cut off by either end: the full field
            break
        if frames >= largest:
            raise SpeedyError(
                f"the receptive field of {spec.recipe} is wider than {largest} frames",
                "stream with an explicit context, or widen the time dim's range",
            )
        frames = min(2 * frames, largest)
    context = Context(left=frames // 2 - first, right=last - frames // 2)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps(asdict(context)))
    return context


def stream(
    session: Session,
    features: np.ndarray | Iterable[np.ndarray],
    chunk: int,
    context: Context | None = None,
) -> Iterator[np.ndarray]:
    """Yield the waveform of `features` (time last) chunk by chunk, `chunk` frames at a time.

    `features` is one array or an iterable of consecutive pieces (e.g. from an acoustic model
    that emits frames as it goes); only the frames still needed as context are kept, so memory
    stays bounded however long the stream. A chunk is yielded as soon as its right context has
    arrived. `context` defaults to the model's receptive field (exact seams); less context
    lowers latency and compute at the price of seam error.
    """
    spec = session.manifest.model
    family = spec.adapter()
    context = context or receptive_field(spec)
    limits = _frames(spec)
    if chunk < 1:
        raise SpeedyError(f"chunk of {chunk} frames", "stream at least one frame per chunk")
    if context.left + chunk + context.right > limits.max:
        raise SpeedyError(
            f"a window of {context.left} + {chunk} + {context.right} frames exceeds the model's "
            f"limit of {limits.max}",
            "use a shorter chunk",
        )
    pieces = [features] if isinstance(features, np.ndarray) else features
    buffer = np.zeros(0, dtype=np.float32)  # frames [offset, offset + buffer.shape[-1])
    offset = done = 0  # done: frames whose audio has been yielded

    def vocode(stop: int, known: int) -> np.ndarray:
        begin, end = max(0, done - context.left), min(known, stop + context.right)
        begin = max(0, min(begin, end - limits.min))  # widen short windows leftwards
        window = buffer[..., begin - offset : end - offset]
        feeds, _ = family.utterance(window)
        audio = family.waveform(session.run(feeds))
        hop = audio.size // (end - begin)
        return audio[(done - begin) * hop : (stop - begin) * hop]

    for piece in pieces:
        buffer = piece if buffer.size == 0 else np.concatenate([buffer, piece], axis=-1)
        known = offset + buffer.shape[-1]
        while known >= done + chunk + context.right:
            yield vocode(done + chunk, known)
            done += chunk
            drop = max(0, done - context.left - limits.min) - offset
            buffer, offset = buffer[..., max(0, drop) :], offset + max(0, drop)
    known = offset + buffer.shape[-1]
    while done < known:
        stop = min(done + chunk, known)
        yield vocode(stop, known)
        done = stop
