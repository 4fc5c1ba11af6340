"""`codec_12hz`: the 12.5 Hz speech codec (after Qwen3-TTS-Tokenizer-12Hz / Kyutai's Mimi) as three
graphs: `encoder` (audio -> codes), `decoder` (codes -> audio) and `decoder_step` (a chunk of codes
and the explicit streaming state -> the chunk's audio and the next state).

The network is `codec_12hz_model` (pure PyTorch; its docstring has the signal path, the state
tensors and the state-dict keys). This adapter names the graphs' I/O for speedy's stages, maps
checkpoints (weight norm folded, Mimi's per-layer codebooks stacked) and hands the `codec` task
what it needs without the network: frame size, codebooks, the state tensors and the left context
(in frames) that makes a stateless chunked encode or decode exact, both derived from the layers.

Dims: `batch`, `frames` (code frames, 12.5 per second; the audio is `frames*1920` samples) and
`chunk` (frames per `decoder_step` call). The state tensors have fixed sizes for a given network.
"""

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, RootModel

from speedy.families import codec_12hz_model as net
from speedy.families.base import Family, GraphDef
from speedy.specs import Feeds, TensorSpec

AUDIO, CODES = "audio", "codes"
ENCODER, DECODER, STEP = "encoder", "decoder", "decoder_step"
# Where the encoder's nearest-entry search begins (its input projections): from there to the codes
# (||x||^2 - 2xE^T + ||E||^2, ArgMin, Gather, the residual) quantization keeps it in float, as
# reduced precision turns near ties into other codes.
FLOAT_FROM = ("quantizer.",)


class Codec12HzParams(RootModel[net.Codec12HzParams]):
    """The `network:` settings: the network's own `codec_12hz_model.Codec12HzParams`, its fields
    and defaults (Mimi's published sizes), checked by it."""

    model_config = ConfigDict(frozen=True)


def _earliest(position: int, kernel: int, stride: int = 1, dilation: int = 1) -> int:
    """First input of a causal conv (left padding (kernel - 1) * dilation + 1 - stride) that
    output `position` depends on."""
    return position * stride + stride - 1 - (kernel - 1) * dilation


def encoder_earliest(p: net.Codec12HzParams, frame: int) -> int:
    """The first audio sample the code of `frame` depends on (negative: before the start): the
    encoder walked back from one code frame, through the downsample, the transformer's
    window - 1 tokens per layer, the last conv, each stage's strided conv and residual units,
    and the first conv."""
    token = _earliest(frame, 4, 2)  # downsample: kernel 4, stride 2
    token -= p.transformer_layers * (p.window - 1)
    sample = _earliest(token, p.last_kernel)
    for ratio in p.ratios:  # the encoder's strides, from its last stage back to its first
        sample = _earliest(sample, 2 * ratio, ratio)
        for j in reversed(range(p.residual_layers)):
            sample = _earliest(sample, p.residual_kernel, dilation=p.dilation_base**j)
    return _earliest(sample, p.kernel)


def encoder_context(p: net.Codec12HzParams) -> int:
    """Frames of audio before a frame that its code depends on (the encoder's receptive field):
    a chunk encoded with at least this many frames of audio before it gets the codes of the whole
    signal."""
    frame = 10 * (p.transformer_layers * p.window + 100)  # far from the start: no clipping
    return -(-(frame * p.frame_samples - encoder_earliest(p, frame)) // p.frame_samples)


def stack_codebooks(state: dict[str, Any]) -> dict[str, Any]:
    """Mimi-style quantizer keys mapped onto this network's: per-layer codebooks
    (`quantizer.{semantic,acoustic}_residual_vector_quantizer.layers.k.codebook.embed_sum /
    cluster_usage`) become the stacked `quantizer.{semantic,acoustic}.codebooks`, their
    `input_proj` / `output_proj` move along; other keys are kept."""
    out: dict[str, Any] = {}
    books: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in state.items():
        for part in ("semantic", "acoustic"):
            prefix = f"quantizer.{part}_residual_vector_quantizer."
            if not key.startswith(prefix):
                continue
            rest = key.removeprefix(prefix)
            if rest.startswith("layers.") and rest.endswith(".codebook.embed_sum"):
                index = int(rest.split(".")[1])
                usage = state[key.removesuffix("embed_sum") + "cluster_usage"]
                books.setdefault(part, {})[index] = value / usage.clamp(min=1e-5)[:, None]
            elif not rest.startswith("layers."):
                out[f"quantizer.{part}.{rest}"] = value
            break
        else:
            out[key] = value
    for part, found in books.items():
        out[f"quantizer.{part}.codebooks"] = torch.stack([found[k] for k in sorted(found)])
    return out


class Codec12Hz(Family):
    """Adapter of the 12.5 Hz codec: encoder, decoder and streaming decoder step graphs."""

    name: ClassVar[str] = "codec_12hz"
    Params: ClassVar[type[BaseModel]] = Codec12HzParams
    task: ClassVar[str] = "codec"

    @property
    def shape(self) -> net.Codec12HzParams:
        assert isinstance(self.params, Codec12HzParams)
        return self.params.root

    def build(self) -> torch.nn.Module:
        return net.build(self.shape)

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
        return net.fold_weight_norm(stack_codebooks(state))

    def state_specs(self) -> list[net.StateSpec]:
        return net.state_specs(self.shape)

    def graphs(self) -> list[GraphDef]:
        p = self.shape
        return codec_graphs(p.frame_samples, p.codebooks, self.state_specs())

    def graph_module(self, network: torch.nn.Module, graph: str) -> torch.nn.Module:
        assert isinstance(network, net.Codec12Hz)
        wrapper = {ENCODER: net.Encoder, DECODER: net.Decoder, STEP: net.DecoderStep}[graph]
        return wrapper(network)

    def task_settings(self) -> dict[str, Any]:
        p = self.shape
        return {
            "samples_per_frame": p.frame_samples,
            "codebooks": p.codebooks,
            "codebook_size": p.codebook_size,
            "encoder_context": encoder_context(p),
            "decoder_context": net.receptive_field(p)["frames"],
            "step_graph": STEP,
            "state": [s.as_dict() for s in self.state_specs()],
            "float_tails": {ENCODER: list(FLOAT_FROM)},
        }

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        p = self.shape
        return tracing_feeds(graph, sizes, seed, (p.frame_samples, p.codebooks, p.codebook_size),
                             self.state_specs())  # fmt: skip


def codec_graphs(hop: int, codebooks: int, states: list[net.StateSpec]) -> list[GraphDef]:
    """A codec's three graphs: `encoder` (audio of `hop` samples per frame -> codes),
    `decoder` (codes -> audio) and `decoder_step` (a chunk of codes and `states` -> its audio
    and the next states)."""
    audio = TensorSpec(name=AUDIO, dtype="float32", shape=["batch", 1, f"frames*{hop}"])
    codes = TensorSpec(name=CODES, dtype="int64", shape=["batch", codebooks, "frames"])
    chunk = TensorSpec(name=CODES, dtype="int64", shape=["batch", codebooks, "chunk"])
    piece = TensorSpec(name=AUDIO, dtype="float32", shape=["batch", 1, f"chunk*{hop}"])
    state_in, state_out = (
        [TensorSpec(name=getattr(s, side), dtype="float32", shape=list(s.shape)) for s in states]
        for side in ("input_name", "output_name")
    )
    return [
        GraphDef(ENCODER, [audio], [codes]),
        GraphDef(DECODER, [codes], [audio]),
        GraphDef(STEP, [chunk, *state_in], [piece, *state_out]),
    ]


def tracing_feeds(
    graph: str,
    sizes: dict[str, int],
    seed: int,
    framing: tuple[int, int, int],
    states: list[net.StateSpec],
) -> Feeds:
    """Tracing inputs of a codec's `graph` (never parity inputs): speech-level noise, random
    codes, zero states; `framing` is (samples per frame, codebooks, codebook size)."""
    hop, codebooks, size = framing
    rng, batch = np.random.default_rng(seed), sizes.get("batch", 1)
    if graph == ENCODER:
        audio = 0.1 * rng.standard_normal((batch, 1, sizes["frames"] * hop))
        return {AUDIO: audio.astype(np.float32)}
    frames = sizes["chunk" if graph == STEP else "frames"]
    codes = {CODES: rng.integers(0, size, (batch, codebooks, frames))}
    if graph == DECODER:
        return codes
    return codes | {s.input_name: np.zeros(s.concrete(batch), np.float32) for s in states}
