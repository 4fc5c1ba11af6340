"""Windowed streaming: features in, audio chunks out, identical to running the whole utterance.

Each chunk of `chunk` feature frames runs inside a window that adds the model's receptive field
as context (left: frames before, right: frames after); the context's audio is cut away, so
windows overlap by the context and the kept pieces tile the utterance exactly. With the full
receptive field as context every kept sample sees the same inputs as in the whole-utterance run,
so the seams are exact up to floating-point rounding. The receptive field is the family's,
derived from its layers and recorded in the model's task settings.

Rounding is the one thing the context cannot match. ONNX Runtime's CPU matrix product (MLAS
SGEMM, under its Conv and ConvTranspose) sums the inner dimension in blocks of 128 when a call has
65 or more output columns and in longer blocks below that, so the frame-rate layers of a window
shorter than 65 frames round differently from the whole run. In FP32 that moves the audio by under
one 16-bit step. In a statically quantized model a float layer feeding a QuantizeLinear turns a
last-bit difference into a whole quantization step (HiFi-GAN V1 mixed INT8: up to 1,418 steps of
16-bit audio), so such a model streams in windows of at least `EXACT_WINDOW` frames
(`exact_window`), which makes its chunks bit-identical to the whole run on one thread (HiFi-GAN V1
up to 4 threads; benchmarks/stream_seams.py). With more threads MLAS also splits a layer's columns
between threads, and a share under 65 columns rounds differently again. Dynamic INT8 is not exact
at any window length: it scales each run's activations by that run's own range.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from speedy.artifact import Precision
from speedy.errors import SpeedyError
from speedy.specs import DimRange


@dataclass(frozen=True)
class Context:
    """Feature frames that one output frame depends on: `left` before it and `right` after it."""

    left: int
    right: int


EXACT_WINDOW = 65  # frames: MLAS SGEMM sums in blocks of 128 from 65 output columns up


def exact_window(precision: Precision) -> int:
    """The shortest window to stream a graph of this precision in: `EXACT_WINDOW`
    frames for static INT8 (float layers feed QuantizeLinear, where a rounding difference flips a
    quantization step); 1 otherwise, where it would only cost time (float: under one 16-bit step
    either way, at up to twice the compute for 0.1-0.25 s chunks; dynamic INT8: no window length
    gives a window the whole run's scales)."""
    return EXACT_WINDOW if precision in ("int8", "int8+fp32", "int8+fp16") else 1


def stream_windows(
    run: Callable[[np.ndarray], np.ndarray],
    pieces: Iterable[np.ndarray],
    chunk: int,
    context: Context,
    limits: DimRange,
    min_window: int = 1,
) -> Iterator[np.ndarray]:
    """Yield the audio of consecutive feature `pieces` (time last) chunk by chunk, `chunk`
    frames at a time; `run(window)` is the audio of a window of features.

    Only the frames still needed as context are kept, so memory stays bounded however long the
    stream. A chunk is yielded as soon as its right context has arrived. A window shorter than
    `min_window` frames (`exact_window`) is widened over frames already known, leftwards first.
    """
    if chunk < 1:
        raise SpeedyError(f"chunk of {chunk} frames", "stream at least one frame per chunk")
    if context.left + chunk + context.right > limits.max:
        raise SpeedyError(
            f"a window of {context.left} + {chunk} + {context.right} frames exceeds the model's "
            f"limit of {limits.max}",
            "use a shorter chunk",
        )
    width = min(max(limits.min, min_window), limits.max)  # the shortest window run
    buffer = np.zeros(0, dtype=np.float32)  # frames [offset, offset + buffer.shape[-1])
    offset = done = 0  # done: frames whose audio has been yielded

    def vocode(stop: int, known: int) -> np.ndarray:
        begin, end = max(0, done - context.left), min(known, stop + context.right)
        begin = max(0, min(begin, end - width))  # widen short windows leftwards,
        end = max(end, min(known, begin + width))  # then rightwards over the frames known
        audio = run(buffer[..., begin - offset : end - offset])
        hop = audio.size // (end - begin)
        return audio[(done - begin) * hop : (stop - begin) * hop]

    for piece in pieces:
        buffer = piece if buffer.size == 0 else np.concatenate([buffer, piece], axis=-1)
        known = offset + buffer.shape[-1]
        while known >= done + chunk + context.right:
            yield vocode(done + chunk, known)
            done += chunk
            drop = max(0, done - context.left - width) - offset
            buffer, offset = buffer[..., max(0, drop) :], offset + max(0, drop)
    known = offset + buffer.shape[-1]
    while done < known:
        stop = min(done + chunk, known)
        yield vocode(stop, known)
        done = stop
