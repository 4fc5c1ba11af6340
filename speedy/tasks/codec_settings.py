"""What the codec task (`speedy.tasks.codec`) and its streaming (`speedy.tasks.codec_stream`)
share: the graphs' I/O names, the model facts its family records, and the check of codes."""

import numpy as np
from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt

from speedy.errors import SpeedyError

AUDIO, CODES = "audio", "codes"


class StateTensor(BaseModel):
    """One state tensor of the step graph: its input and output names, shape ("batch" first)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    input: str
    output: str
    shape: list[int | str]
    dtype: str = "float32"
    meaning: str = ""


class CodecSettings(BaseModel):
    """How the codec frames audio, how many codes a frame holds, and what chunking and streaming
    need (left contexts in frames: None where the family does not state them)."""

    model_config = ConfigDict(extra="forbid")

    samples_per_frame: PositiveInt
    codebooks: PositiveInt
    codebook_size: PositiveInt
    encoder_context: NonNegativeInt | None = None  # frames of audio a code depends on before it
    decoder_context: NonNegativeInt | None = None  # frames of codes a frame's audio depends on
    step_graph: str | None = None  # the streaming graph (codes chunk + state -> audio + state)
    state: list[StateTensor] = []
    float_tails: dict[str, list[str]] = {}  # graph -> weight prefixes kept float from on


def check_codes(codes: np.ndarray, settings: CodecSettings) -> None:
    """A clear error for codes the model cannot decode: not integers, not (batch, codebooks,
    frames), another codebook count, or a value outside 0 .. codebook_size - 1."""
    fix = "decode codes made by this model's encoder (or its token model)"
    if not np.issubdtype(codes.dtype, np.integer) or codes.ndim != 3:
        raise SpeedyError(
            f"codes must be integers shaped (batch, codebooks, frames), got {codes.dtype} "
            f"{codes.shape}",
            fix,
        )
    if codes.shape[1] != settings.codebooks:
        raise SpeedyError(
            f"codes have {codes.shape[1]} codebooks, this model decodes {settings.codebooks}",
            f"pass all {settings.codebooks} codebooks of each frame (axis 1), from this model",
        )
    bad = (codes < 0) | (codes >= settings.codebook_size)
    if bad.any():
        item, book, frame = (int(i[0]) for i in np.nonzero(bad))
        raise SpeedyError(
            f"code {int(codes[item, book, frame])} (item {item}, codebook {book}, frame {frame}) "
            f"is outside 0..{settings.codebook_size - 1}",
            fix,
        )
