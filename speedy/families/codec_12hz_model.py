"""12.5 Hz neural speech codec (after Kyutai's Mimi / Qwen3-TTS-Tokenizer-12Hz), export-ready.

Pure PyTorch: imports only torch, numpy and the standard library, so that it runs on a machine
with nothing else. No trained weights exist here; `build(params)` makes seeded ones, and the
state-dict keys below are laid out so that real ones can be dropped in.

Signal path (24 kHz mono, 1,920 samples per frame, 12.5 frames/s)::

    audio [B, 1, 1920 F]
      -> encoder: SEANet causal conv stack, strides 4, 5, 6, 8 (x960) -> [B, D, 2F] at 25 Hz
      -> encoder_transformer: causal, windowed (last `window` tokens), RoPE, layer scale
      -> downsample: causal conv, kernel 4, stride 2 -> [B, D, F] at 12.5 Hz
      -> quantizer: split RVQ, 1 semantic codebook on in_proj(x) + (K-1) acoustic codebooks
         residually on another in_proj(x); nearest entry by ||x||^2 - 2 x E^T + ||E||^2,
         ArgMin, Gather -> codes int64 [B, K, F]
    codes
      -> quantizer.decode: semantic out_proj(E_s[c_0]) + acoustic out_proj(sum_k E_k[c_k])
      -> upsample: depthwise causal transposed conv, kernel 4, stride 2 -> [B, D, 2F]
      -> decoder_transformer: as the encoder's
      -> decoder: causal conv D -> 16C, then per ratio (8, 6, 5, 4): Snake, causal transposed
         conv (kernel 2r, stride r, channels halved), ConvNeXt blocks (depthwise causal conv,
         LayerNorm, 4x pointwise MLP with GELU, layer scale); Snake, causal conv -> 1 channel
      -> audio [B, 1, 1920 F]

Everything is causal: convolutions are padded on the left only (the downsample repeats its first
sample, as Mimi does; every other conv pads zeros), transposed convolutions drop their last
`kernel - stride` samples, attention sees keys at distances 0 .. window - 1. So the decoder
streams exactly: `DecoderStep` carries, as explicit tensors, the left context of every causal
conv, the not-yet-complete overlap of every transposed conv, and the last `window - 1` keys and
values of every attention layer (unrotated; RoPE is applied with positions relative to the chunk,
which gives the same scores as absolute positions) plus a 0/1 mask of which of them exist yet.

Graph wrappers (explicit tensors only, no Python-side state, no value-dependent shapes):

* `Encoder`: audio float [B, 1, 1920 F] -> codes int64 [B, K, F].
* `Decoder`: codes int64 [B, K, F] -> audio float [B, 1, 1920 F].
* `DecoderStep`: (codes int64 [B, K, chunk], state_in_* ...) -> (audio [B, 1, 1920 chunk],
  state_out_* ...), chunk >= 1 frames; `state_specs` (or the module-level `state_specs(params)`)
  gives the names, shapes, dtypes and meanings in graph order, `initial_state` the zeros. The
  states, all the model's float dtype, fixed size given the batch:
  `upsample` [B, D, 2] (transposed-conv overlap), `attn_valid` [B, window - 1] (0/1: which cache
  slots hold a token), `attn_k{i}` / `attn_v{i}` [B, heads, window - 1, D / heads] per layer,
  `decoder_conv_in` [B, D, 6], per stage j `decoder_stage{j}_upsample` [B, C_j, r_j] and
  `decoder_stage{j}_block{b}_dwconv` [B, C_j, 6 d_b], `decoder_conv_out` [B, C, 2].

`receptive_field(params)` derives, from kernels, dilations, strides and the attention window,
how many past frames a chunk's audio depends on (`frames`: 1,002 for `mimi()`, of which the
transformer's 8 x 249 tokens are nearly all; 16 for `tiny()`): the left context a stateless
chunked decode needs to be exact.

State-dict keys (`D` = dim, `Q` = codebook_dim, `N` = codebook_size, `C` = seanet_filters;
`i` over layers; the encoder, transformer and up/downsample keys and shapes follow Hugging
Face's `MimiModel` (same names, RoPE convention, window and padding), so its weights should load
key for key (not tried on a real checkpoint); `fold_weight_norm` first for checkpoints that keep
weight_g / weight_v)::

    encoder.layers.0.conv.{weight,bias}                   conv 1 -> C, kernel 7
    encoder.layers.{1,4,7,10}.block.{1,3}.conv.{weight,bias}  SEANet residual units
    encoder.layers.{3,6,9,12}.conv.{weight,bias}          strided convs (ELU at 2, 5, 8, 11, 13)
    encoder.layers.14.conv.{weight,bias}                  conv 16C -> D, kernel 3
    encoder_transformer.layers.i.input_layernorm.{weight,bias}
    encoder_transformer.layers.i.self_attn.{q,k,v,o}_proj.weight
    encoder_transformer.layers.i.self_attn_layer_scale.scale
    encoder_transformer.layers.i.post_attention_layernorm.{weight,bias}
    encoder_transformer.layers.i.mlp.{fc1,fc2}.weight
    encoder_transformer.layers.i.mlp_layer_scale.scale
    downsample.conv.weight                                [D, D, 4]
    quantizer.semantic.{input_proj,output_proj}.weight    [Q, D, 1], [D, Q, 1]
    quantizer.semantic.codebooks                          [1, N, Q]
    quantizer.acoustic.{input_proj,output_proj}.weight    [Q, D, 1], [D, Q, 1]
    quantizer.acoustic.codebooks                          [K - 1, N, Q]
    upsample.conv.weight                                  [D, 1, 4]
    decoder_transformer.layers.i.*                        as encoder_transformer
    decoder.conv_in.conv.{weight,bias}                    conv D -> 16C, kernel 7
    decoder.stages.j.snake.alpha                          [channels in]
    decoder.stages.j.upsample.conv.{weight,bias}          transposed conv, kernel 2 r_j
    decoder.stages.j.blocks.b.dwconv.conv.{weight,bias}   depthwise, kernel 7
    decoder.stages.j.blocks.b.norm.{weight,bias}
    decoder.stages.j.blocks.b.{pwconv1,pwconv2}.{weight,bias}
    decoder.stages.j.blocks.b.gamma
    decoder.snake_out.alpha, decoder.conv_out.conv.{weight,bias}

Mimi's codebooks are stored as `embed_sum / cluster_usage.clamp(min=1e-5)[:, None]` per layer
(`quantizer.{semantic,acoustic}_residual_vector_quantizer.layers.k.codebook.*`); stack them into
`codebooks`, and rename its `input_proj` / `output_proj` accordingly. The decoder after the
transformer is this project's design (Snake + ConvNeXt, as in Qwen3-TTS-Tokenizer-12Hz's decoder),
not Mimi's ELU + residual-unit SEANet decoder.

Whole-signal attention (`decode`, `Decoder`, the encoder) builds the full [T, T] score matrix
(masked to the window) over the T = 2F tokens: fine for utterances (10 s: 250 tokens), but
memory grows as T^2 (8 heads x 15,000^2 x 4 bytes = 7.2 GB for 10 minutes); decode long audio
with DecoderStep, whose attention is [chunk, window - 1 + chunk].

`Encoder` and `encode` want a whole number of frames: `encode` pads other lengths on the right
with zeros to the next multiple of 1,920 (the last frame then codes the audio plus silence), the
`Encoder` graph takes exactly 1920 * frames samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 24_000
MASKED = -3.0e4  # attention score of a masked key: finite in FP16, exp() is exactly 0
SNAKE_MIN_ALPHA = 1e-4  # Snake's 1/alpha stays <= 1e4, finite in FP16


@dataclass(frozen=True)
class Codec12HzParams:
    """Network shape (also the family's `network:` settings, which pydantic reads into it, extra
    keys refused). `mimi()` and `tiny()` give the two used here."""

    __pydantic_config__: ClassVar[dict] = {"extra": "forbid"}  # a dict: no pydantic import

    sample_rate: int = SAMPLE_RATE
    seanet_filters: int = 64  # C: first conv's channels, doubled at each encoder stride
    ratios: tuple[int, ...] = (8, 6, 5, 4)  # decoder upsampling; the encoder strides reversed
    kernel: int = 7  # the encoder's first conv, the decoder's conv_in
    last_kernel: int = 3
    residual_kernel: int = 3  # encoder SEANet residual units
    residual_layers: int = 1  # per encoder stage, dilations 2**j
    dilation_base: int = 2
    compress: int = 2  # residual units' hidden channels = channels / compress
    dim: int = 512  # D: latent and transformer width
    heads: int = 8
    transformer_layers: int = 8
    ffn: int = 2048
    window: int = 250  # attention sees this many keys (itself and the window - 1 before)
    rope_max_period: float = 10_000.0
    layer_scale: float = 0.01  # transformer layer-scale initial value
    codebooks: int = 16  # K: 1 semantic + K - 1 acoustic
    semantic_codebooks: int = 1
    codebook_size: int = 2048
    codebook_dim: int = 256
    convnext_dilations: tuple[int, ...] = (1,)  # ConvNeXt blocks per decoder stage
    convnext_kernel: int = 7
    convnext_expansion: int = 4
    convnext_scale: float = 0.1  # ConvNeXt layer-scale (gamma) initial value
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():  # sizes, counts and strides: all but the seed
            values = value if isinstance(value, tuple) else (value,)
            if name != "seed" and any(isinstance(v, int) and v < 1 for v in values):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError("dim / heads must be an even integer (RoPE rotates pairs)")
        if self.window < 2:
            raise ValueError("window must be >= 2")
        if not 0 < self.semantic_codebooks < self.codebooks:
            raise ValueError("need 0 < semantic_codebooks < codebooks")

    @property
    def hop(self) -> int:
        """Audio samples per 25 Hz token (the conv stack's stride product)."""
        return math.prod(self.ratios)

    @property
    def frame_samples(self) -> int:
        """Audio samples per code frame (12.5 Hz: twice the conv stack's stride)."""
        return 2 * self.hop

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.frame_samples

    def to_dict(self) -> dict:
        return asdict(self)


def mimi(**overrides) -> Codec12HzParams:
    """The published sizes: Mimi's SEANet (64 filters, ratios 8-6-5-4, kernels 7/3/3, compress
    2, one residual unit per stage), its transformers (8 layers, width 512, 8 heads, FFN 2048,
    context 250 tokens at 25 Hz, RoPE 10,000, layer scale 0.01), codebooks of 2,048 x 256, and
    Qwen3-TTS-Tokenizer-12Hz's 16 codebooks (1 semantic + 15 acoustic). Decoder: ~50 M params."""
    return Codec12HzParams(**overrides)


def tiny(**overrides) -> Codec12HzParams:
    """~5 M parameters for tests: 1 + 7 codebooks of 2,048 entries, a 2-layer transformer with a
    10-token window (short enough that test clips cross it)."""
    settings = {
        "seanet_filters": 16,
        "dim": 192,
        "heads": 4,
        "transformer_layers": 2,
        "ffn": 768,
        "window": 10,
        "layer_scale": 0.1,
        "codebooks": 8,
        "codebook_dim": 64,
        "convnext_dilations": (1, 3),
    }
    return Codec12HzParams(**(settings | overrides))


# ----------------------------------------------------------------------------------------------
# Streaming state plumbing


@dataclass(frozen=True)
class StateSpec:
    """One state tensor of `DecoderStep`: graph input `state_in_<name>`, output
    `state_out_<name>`, shape with "batch" as its first (symbolic) dim."""

    name: str
    shape: tuple  # ("batch", int, ...)
    dtype: torch.dtype = torch.float32
    meaning: str = ""

    @property
    def input_name(self) -> str:
        return f"state_in_{self.name}"

    @property
    def output_name(self) -> str:
        return f"state_out_{self.name}"

    def concrete(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.shape[1:])

    def as_dict(self) -> dict:
        """Plain values (dtype as its name, e.g. "float32"), for code that has no torch."""
        return {"name": self.name, "input": self.input_name, "output": self.output_name,
                "shape": list(self.shape), "dtype": str(self.dtype).removeprefix("torch."),
                "meaning": self.meaning}  # fmt: skip


@dataclass
class _Specs:
    """Collects (name, shape without batch, meaning) in the order `step` consumes them."""

    items: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)

    def add(self, name: str, shape: tuple[int, ...], meaning: str) -> None:
        self.items.append((name, shape, meaning))


class _Streamable(nn.Module):
    """A module with a stateless `forward` (whole signal, zero history) and an exact streaming
    `step(x, states, new_states)` that consumes its input states from the iterator in the order
    `specs` lists them and appends its output states to `new_states` in the same order."""

    def specs(self, prefix: str, out: _Specs) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, x: torch.Tensor, states: Iterator[torch.Tensor], new: list) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface


# ----------------------------------------------------------------------------------------------
# Layers


class CausalConv1d(_Streamable):
    """Conv1d padded on the left by (kernel - 1) * dilation + 1 - stride: output t sees inputs up
    to t * stride + stride - 1. A length that is a multiple of the stride gives length / stride
    outputs. Streaming (stride 1 only): the state is the last (kernel - 1) * dilation inputs."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        pad_mode: str = "constant",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, dilation=dilation, groups=groups,
                              bias=bias)  # fmt: skip
        self.padding = (kernel - 1) * dilation + 1 - stride
        self.context = (kernel - 1) * dilation  # streamed inputs kept (stride 1)
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding > 0:
            x = F.pad(x, (self.padding, 0), mode=self.pad_mode)
        return self.conv(x)

    def specs(self, prefix: str, out: _Specs) -> None:
        if self.context:
            out.add(prefix, (self.conv.in_channels, self.context),
                    f"last {self.context} inputs of a causal conv (left context)")  # fmt: skip

    def step(self, x: torch.Tensor, states: Iterator[torch.Tensor], new: list) -> torch.Tensor:
        if self.conv.stride[0] != 1 or self.pad_mode != "constant":
            raise NotImplementedError("only stride-1, zero-padded convs stream")
        if not self.context:
            return self.conv(x)
        x = torch.cat([next(states), x], dim=-1)
        new.append(x[..., -self.context :])
        return self.conv(x)


class CausalConvTranspose1d(_Streamable):
    """ConvTranspose1d whose last kernel - stride outputs are dropped (the causal trim): T inputs
    give T * stride outputs, output t depends on inputs up to t // stride. Streaming keeps the
    dropped tail (partial sums, without bias) and adds it to the next chunk's head."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1, bias: bool = True
    ) -> None:
        super().__init__()
        if kernel < stride:
            raise ValueError("kernel must be >= stride")
        self.conv = nn.ConvTranspose1d(c_in, c_out, kernel, stride, groups=groups, bias=bias)
        self.stride = stride
        self.overlap = kernel - stride

    def _full(self, x: torch.Tensor) -> torch.Tensor:
        """All (T - 1) * stride + kernel outputs, without bias."""
        return F.conv_transpose1d(x, self.conv.weight, None, self.stride,
                                  groups=self.conv.groups)  # fmt: skip

    def _bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.conv.bias is None else y + self.conv.bias[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._full(x)
        if self.overlap:
            y = y[..., : y.shape[-1] - self.overlap]
        return self._bias(y)

    def specs(self, prefix: str, out: _Specs) -> None:
        if self.overlap:
            out.add(prefix, (self.conv.out_channels, self.overlap),
                    f"last {self.overlap} partial outputs of a transposed conv (overlap-add "
                    "tail, no bias)")  # fmt: skip

    def step(self, x: torch.Tensor, states: Iterator[torch.Tensor], new: list) -> torch.Tensor:
        y = self._full(x)
        if not self.overlap:
            return self._bias(y)
        head = y[..., : self.overlap] + next(states)
        y = torch.cat([head, y[..., self.overlap :]], dim=-1)
        new.append(y[..., -self.overlap :])
        return self._bias(y[..., : y.shape[-1] - self.overlap])


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha, per channel. alpha is clamped to >= 1e-4 so that 1/alpha is
    finite in FP16 (for smaller alpha the term is ~alpha x^2, negligible either way)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.clamp(min=SNAKE_MIN_ALPHA)[:, None]
        return x + torch.sin(alpha * x).square() * alpha.reciprocal()


class ResidualUnit(nn.Module):
    """SEANet residual unit (encoder): x + conv1x1(ELU(conv_k(ELU(x)))), identity shortcut."""

    def __init__(self, channels: int, kernel: int, dilation: int, compress: int) -> None:
        super().__init__()
        hidden = channels // compress
        self.block = nn.ModuleList([
            nn.ELU(),
            CausalConv1d(channels, hidden, kernel, dilation=dilation),
            nn.ELU(),
            CausalConv1d(hidden, channels, 1),
        ])  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.block:
            y = layer(y)
        return x + y


class ConvNeXtBlock(_Streamable):
    """x + gamma * pwconv2(GELU(pwconv1(LayerNorm(dwconv(x))))), dwconv causal depthwise."""

    def __init__(self, channels: int, kernel: int, dilation: int, expansion: int) -> None:
        super().__init__()
        self.dwconv = CausalConv1d(channels, channels, kernel, dilation=dilation, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = nn.Linear(channels, expansion * channels)
        self.pwconv2 = nn.Linear(expansion * channels, channels)
        self.gamma = nn.Parameter(torch.ones(channels))

    def _pointwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y.transpose(1, 2)))))
        return x + (self.gamma * y).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pointwise(x, self.dwconv(x))

    def specs(self, prefix: str, out: _Specs) -> None:
        self.dwconv.specs(prefix + "_dwconv", out)

    def step(self, x: torch.Tensor, states: Iterator[torch.Tensor], new: list) -> torch.Tensor:
        return self._pointwise(x, self.dwconv.step(x, states, new))


def rope_table(
    positions: torch.Tensor, head_dim: int, max_period: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [T, head_dim / 2] of RoPE at `positions` [T] (int64, may be negative),
    computed in FP32 whatever the model's dtype."""
    half = head_dim // 2
    exponent = torch.arange(half, device=positions.device, dtype=torch.float32) / half
    angles = positions.to(torch.float32)[:, None] * torch.pow(max_period, -exponent)[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, table: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """RoPE, rotate-half convention (Hugging Face's Mimi), of x [B, H, T, Dh]."""
    cos, sin = table
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


@dataclass
class Positions:
    """What every attention layer of one call shares: RoPE tables of the queries and keys, and
    which keys each query may see ([Tq, Tk], or [B, 1, Tq, Tk] with a cache)."""

    queries: tuple[torch.Tensor, torch.Tensor]
    keys: tuple[torch.Tensor, torch.Tensor]
    allowed: torch.Tensor


class Attention(nn.Module):
    """Causal windowed multi-head self-attention with RoPE, no biases."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # [B, H, T, Dh]

    def forward(
        self,
        x: torch.Tensor,
        where: Positions,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """x [B, T, D] -> [B, T, D]. With `cache` (unrotated keys and values of the last
        window - 1 tokens, [B, H, window - 1, Dh], oldest first), x follows those tokens, and the
        cache after x comes back too."""
        q, k, v = (self._split(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        new_cache = None
        if cache is not None:
            kept = cache[0].shape[2]
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            new_cache = (k[:, :, -kept:], v[:, :, -kept:])
        q, k = rotate(q, where.queries), rotate(k, where.keys)
        scores = (q @ k.transpose(-1, -2)).float() * self.head_dim**-0.5
        weights = torch.where(where.allowed, scores, MASKED).softmax(dim=-1).to(v.dtype)
        out = self.o_proj((weights @ v).transpose(1, 2).flatten(2))
        return out, new_cache


class LayerScale(nn.Module):
    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, p: Codec12HzParams) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(p.dim)
        self.self_attn = Attention(p.dim, p.heads)
        self.self_attn_layer_scale = LayerScale(p.dim, p.layer_scale)
        self.post_attention_layernorm = nn.LayerNorm(p.dim)
        self.mlp = Mlp(p.dim, p.ffn)
        self.mlp_layer_scale = LayerScale(p.dim, p.layer_scale)

    def forward(
        self,
        x: torch.Tensor,
        where: Positions,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        attn, new_cache = self.self_attn(self.input_layernorm(x), where, cache)
        x = x + self.self_attn_layer_scale(attn)
        x = x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))
        return x, new_cache


class Transformer(_Streamable):
    """Layers of windowed causal attention + GELU MLP, on [B, D, T] (conv layout) in and out.
    A query at position i sees the keys at positions i - window + 1 .. i."""

    def __init__(self, p: Codec12HzParams) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(p) for _ in range(p.transformer_layers))
        self.window, self.max_period = p.window, p.rope_max_period
        self.cached = p.window - 1
        self.heads, self.head_dim = p.heads, p.dim // p.heads

    def _positions(
        self, q_pos: torch.Tensor, k_pos: torch.Tensor, dtype: torch.dtype
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The keys' RoPE table and which keys each query sees [Tq, Tk]."""
        distance = q_pos[:, None] - k_pos[None, :]
        allowed = (distance >= 0) & (distance < self.window)
        table = rope_table(k_pos, self.head_dim, self.max_period, dtype)
        return table, allowed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        positions = torch.arange(x.shape[1], device=x.device)
        table, allowed = self._positions(positions, positions, x.dtype)
        where = Positions(table, table, allowed)
        for layer in self.layers:
            x, _ = layer(x, where)
        return x.transpose(1, 2)

    def specs(self, prefix: str, out: _Specs) -> None:
        out.add(f"{prefix}_valid", (self.cached,),
                "1 where the attention caches hold a past token, 0 before the start "
                "(shared by all layers)")  # fmt: skip
        shape = (self.heads, self.cached, self.head_dim)
        for i in range(len(self.layers)):
            out.add(f"{prefix}_k{i}", shape, f"layer {i}: keys of the last {self.cached} tokens "
                    "(before RoPE), oldest first")  # fmt: skip
            out.add(f"{prefix}_v{i}", shape, f"layer {i}: values of the last {self.cached} "
                    "tokens, oldest first")  # fmt: skip

    def step(self, x: torch.Tensor, states: Iterator[torch.Tensor], new: list) -> torch.Tensor:
        """The chunk's tokens get positions 0 .. T - 1, the cached ones -(window - 1) .. -1:
        RoPE scores depend only on the difference, so they equal the whole-signal ones."""
        x = x.transpose(1, 2)
        valid = next(states)
        valid = torch.cat([valid, torch.ones_like(valid[:, :1]).expand(-1, x.shape[1])], dim=1)
        new.append(valid[:, -self.cached :])
        q_pos = torch.arange(x.shape[1], device=x.device)
        k_pos = torch.arange(valid.shape[1], device=x.device) - self.cached
        k_table, allowed = self._positions(q_pos, k_pos, x.dtype)
        q_table = (k_table[0][self.cached :], k_table[1][self.cached :])
        allowed = allowed & (valid > 0.5)[:, None, None, :]  # [B, 1, T, window - 1 + T]
        where = Positions(q_table, k_table, allowed)
        for layer in self.layers:
            x, cache = layer(x, where, (next(states), next(states)))
            new.extend(cache)
        return x.transpose(1, 2)


class SeanetEncoder(nn.Module):
    """Mimi's SEANet encoder (ELU activations; flat `layers` list as in Hugging Face's Mimi)."""

    def __init__(self, p: Codec12HzParams) -> None:
        super().__init__()
        channels = p.seanet_filters
        layers: list[nn.Module] = [CausalConv1d(1, channels, p.kernel)]
        for ratio in reversed(p.ratios):
            for j in range(p.residual_layers):
                layers.append(ResidualUnit(channels, p.residual_kernel, p.dilation_base**j,
                                           p.compress))  # fmt: skip
            layers += [nn.ELU(), CausalConv1d(channels, 2 * channels, 2 * ratio, stride=ratio)]
            channels *= 2
        layers += [nn.ELU(), CausalConv1d(channels, p.dim, p.last_kernel)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class DecoderStage(_Streamable):
    def __init__(self, c_in: int, ratio: int, p: Codec12HzParams) -> None:
        super().__init__()
        c_out = c_in // 2
        self.snake = Snake(c_in)
        self.upsample = CausalConvTranspose1d(c_in, c_out, 2 * ratio, ratio)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(c_out, p.convnext_kernel, d, p.convnext_expansion)
            for d in p.convnext_dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(self.snake(x))
        for block in self.blocks:
            x = block(x)
        return x

    def specs(self, prefix: str, out: _Specs) -> None:
        self.upsample.specs(prefix + "_upsample", out)
        for b, block in enumerate(self.blocks):
            block.specs(f"{prefix}_block{b}", out)

    def step(self, x: torch.Tensor, states: Iterator[torch.Tensor], new: list) -> torch.Tensor:
        x = self.upsample.step(self.snake(x), states, new)
        for block in self.blocks:
            x = block.step(x, states, new)
        return x


class WaveDecoder(_Streamable):
    """Causal conv, (Snake, transposed conv, ConvNeXt blocks) per ratio, Snake, causal conv."""

    def __init__(self, p: Codec12HzParams) -> None:
        super().__init__()
        channels = p.seanet_filters * 2 ** len(p.ratios)
        self.conv_in = CausalConv1d(p.dim, channels, p.kernel)
        stages = []
        for ratio in p.ratios:
            stages.append(DecoderStage(channels, ratio, p))
            channels //= 2
        self.stages = nn.ModuleList(stages)
        self.snake_out = Snake(channels)
        self.conv_out = CausalConv1d(channels, 1, p.last_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(self.snake_out(x))

    def specs(self, prefix: str, out: _Specs) -> None:
        self.conv_in.specs(prefix + "_conv_in", out)
        for j, stage in enumerate(self.stages):
            stage.specs(f"{prefix}_stage{j}", out)
        self.conv_out.specs(prefix + "_conv_out", out)

    def step(self, x: torch.Tensor, states: Iterator[torch.Tensor], new: list) -> torch.Tensor:
        x = self.conv_in.step(x, states, new)
        for stage in self.stages:
            x = stage.step(x, states, new)
        return self.conv_out.step(self.snake_out(x), states, new)


def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row: x [..., Q], codebook [N, Q] -> int64 [...].
    ||x||^2 - 2 x E^T + ||E||^2, ArgMin (no cdist): MatMul, ReduceSum, ArgMin in ONNX."""
    distances = (
        x.square().sum(-1, keepdim=True) - 2.0 * (x @ codebook.T) + codebook.square().sum(-1)
    )
    return distances.argmin(dim=-1)


class ResidualQuantizer(nn.Module):
    """RVQ in a projected space: input_proj (1x1 conv D -> Q), codebooks [n, N, Q] applied
    residually, output_proj (1x1 conv Q -> D) of the sum of the chosen entries."""

    def __init__(self, dim: int, codebook_dim: int, n: int, size: int) -> None:
        super().__init__()
        self.input_proj = nn.Conv1d(dim, codebook_dim, 1, bias=False)
        self.output_proj = nn.Conv1d(codebook_dim, dim, 1, bias=False)
        self.codebooks = nn.Parameter(torch.zeros(n, size, codebook_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D, T] -> codes int64 [B, n, T]."""
        residual = self.input_proj(x).transpose(1, 2)  # [B, T, Q]
        codes = []
        for codebook in self.codebooks:
            index = nearest(residual, codebook)
            residual = residual - F.embedding(index, codebook)
            codes.append(index)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n, T] -> [B, D, T]."""
        total = F.embedding(codes[:, 0], self.codebooks[0])
        for k in range(1, self.codebooks.shape[0]):
            total = total + F.embedding(codes[:, k], self.codebooks[k])
        return self.output_proj(total.transpose(1, 2))


class SplitQuantizer(nn.Module):
    """Mimi's split RVQ: semantic and acoustic quantizers both read the latent; their decoded
    vectors add up."""

    def __init__(self, p: Codec12HzParams) -> None:
        super().__init__()
        self.n_semantic = p.semantic_codebooks
        self.semantic = ResidualQuantizer(p.dim, p.codebook_dim, p.semantic_codebooks,
                                          p.codebook_size)  # fmt: skip
        self.acoustic = ResidualQuantizer(p.dim, p.codebook_dim,
                                          p.codebooks - p.semantic_codebooks,
                                          p.codebook_size)  # fmt: skip

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.semantic.encode(x), self.acoustic.encode(x)], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        n = self.n_semantic
        return self.semantic.decode(codes[:, :n]) + self.acoustic.decode(codes[:, n:])


# ----------------------------------------------------------------------------------------------
# The codec


class _EncoderPart(nn.Module):
    """encode / encode_frames, from the `encoder`, `encoder_transformer`, `downsample` and
    `quantizer` submodules (shared with the Codec12Hz it came from)."""

    params: Codec12HzParams
    encoder: SeanetEncoder
    encoder_transformer: Transformer
    downsample: CausalConv1d
    quantizer: SplitQuantizer

    def encode_frames(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, 1, 1920 F] (a whole number of frames) -> codes int64 [B, K, F]."""
        x = self.encoder(audio)
        x = self.encoder_transformer(x)
        return self.quantizer.encode(self.downsample(x))

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, 1, samples] -> codes int64 [B, K, ceil(samples / 1920)]: a length that is not
        a multiple of 1,920 is padded on the right with zeros (silence) first."""
        extra = -audio.shape[-1] % self.params.frame_samples
        if extra:
            audio = F.pad(audio, (0, extra))
        return self.encode_frames(audio)


class _DecoderPart(nn.Module):
    """decode / decode_step and the streaming state, from the `quantizer`, `upsample`,
    `decoder_transformer` and `decoder` submodules."""

    params: Codec12HzParams
    quantizer: SplitQuantizer
    upsample: CausalConvTranspose1d
    decoder_transformer: Transformer
    decoder: WaveDecoder

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes int64 [B, K, F] -> audio [B, 1, 1920 F] (no history: the stream's start)."""
        x = self.upsample(self.quantizer.decode(codes))
        x = self.decoder_transformer(x)
        return self.decoder(x)

    def state_specs(self, dtype: torch.dtype | None = None) -> list[StateSpec]:
        """DecoderStep's state tensors in graph order (dtype: the model's by default)."""
        dtype = dtype or next(self.decoder.parameters()).dtype
        out = _Specs()
        self.upsample.specs("upsample", out)
        self.decoder_transformer.specs("attn", out)
        self.decoder.specs("decoder", out)
        return [StateSpec(n, ("batch", *s), dtype, m) for n, s, m in out.items]

    def initial_state(self, batch: int, device=None, dtype=None) -> list[torch.Tensor]:
        """Zeros: the state before the first chunk (the model's device and dtype by default)."""
        param = next(self.decoder.parameters())
        device = device or param.device
        return [torch.zeros(s.concrete(batch), dtype=s.dtype, device=device)
                for s in self.state_specs(dtype or param.dtype)]  # fmt: skip

    def decode_step(
        self, codes: torch.Tensor, state: list[torch.Tensor] | tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """codes [B, K, chunk] and the state after the previous chunks -> audio
        [B, 1, 1920 chunk] and the state after this one (same shapes)."""
        states, new = iter(state), []
        x = self.upsample.step(self.quantizer.decode(codes), states, new)
        x = self.decoder_transformer.step(x, states, new)
        audio = self.decoder.step(x, states, new)
        if next(states, None) is not None:
            raise ValueError("more state tensors than state_specs lists")
        return audio, new


class Codec12Hz(_EncoderPart, _DecoderPart):
    """The whole codec; `encode` / `decode` / `decode_step` for eager use, the graph wrappers
    (which share its submodules, and hold only those their graph uses) for export."""

    def __init__(self, params: Codec12HzParams) -> None:
        super().__init__()
        p = self.params = params
        self.encoder = SeanetEncoder(p)
        self.encoder_transformer = Transformer(p)
        self.downsample = CausalConv1d(p.dim, p.dim, 4, stride=2, bias=False,
                                       pad_mode="replicate")  # fmt: skip
        self.quantizer = SplitQuantizer(p)
        self.upsample = CausalConvTranspose1d(p.dim, p.dim, 4, 2, groups=p.dim, bias=False)
        self.decoder_transformer = Transformer(p)
        self.decoder = WaveDecoder(p)


# ----------------------------------------------------------------------------------------------
# Graph wrappers


class Encoder(_EncoderPart):
    """audio float [batch, 1, 1920 * frames] -> codes int64 [batch, codebooks, frames]."""

    def __init__(self, model: Codec12Hz) -> None:
        super().__init__()
        self.params = model.params
        self.encoder = model.encoder
        self.encoder_transformer = model.encoder_transformer
        self.downsample = model.downsample
        self.quantizer = model.quantizer
        self.train(model.training)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encode_frames(audio)


def _share_decoder(wrapper: _DecoderPart, model: Codec12Hz) -> None:
    wrapper.params = model.params
    wrapper.quantizer = model.quantizer
    wrapper.upsample = model.upsample
    wrapper.decoder_transformer = model.decoder_transformer
    wrapper.decoder = model.decoder
    wrapper.train(model.training)


class Decoder(_DecoderPart):
    """codes int64 [batch, codebooks, frames] -> audio float [batch, 1, 1920 * frames]."""

    def __init__(self, model: Codec12Hz) -> None:
        super().__init__()
        _share_decoder(self, model)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decode(codes)


class DecoderStep(_DecoderPart):
    """(codes int64 [batch, codebooks, chunk], *state_in) -> (audio [batch, 1, 1920 * chunk],
    *state_out): state_in / state_out in `state_specs()` order, same shapes; chunk >= 1."""

    def __init__(self, model: Codec12Hz) -> None:
        super().__init__()
        _share_decoder(self, model)

    def input_names(self) -> list[str]:
        return ["codes", *(s.input_name for s in self.state_specs())]

    def output_names(self) -> list[str]:
        return ["audio", *(s.output_name for s in self.state_specs())]

    def forward(self, codes: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        audio, new = self.decode_step(codes, state)
        return (audio, *new)


# ----------------------------------------------------------------------------------------------
# Construction, weights, receptive field


def _init_weights(model: Codec12Hz, p: Codec12HzParams) -> None:
    """Seeded weights (call under a seeded RNG): fan-in-scaled normals, so that activations
    keep their scale through the stack; codebooks spread like the latent they quantize; the
    output scaled to speech level (~0.1 RMS)."""
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose1d):
            c_in, _, kernel = module.weight.shape
            fan_in = c_in // module.groups * kernel / module.stride[0]
            nn.init.normal_(module.weight, std=fan_in**-0.5)
        elif isinstance(module, nn.Conv1d | nn.Linear):
            fan_in = module.weight[0].numel()
            nn.init.normal_(module.weight, std=fan_in**-0.5)
        elif isinstance(module, Snake):
            nn.init.uniform_(module.alpha, 0.5, 1.5)
            continue
        elif isinstance(module, ConvNeXtBlock):
            nn.init.constant_(module.gamma, p.convnext_scale)
            continue
        else:
            continue
        if module.bias is not None:
            nn.init.normal_(module.bias, std=0.01)
    with torch.no_grad():
        # Codebook entries at the scale of what they quantize: the projected latent of a
        # seeded test signal (noise plus a few harmonics, 4 frames).
        t = torch.arange(4 * p.frame_samples) / p.sample_rate
        probe = 0.05 * torch.randn(1, 1, t.numel()) + sum(
            0.1 / h * torch.sin(2 * math.pi * 150.0 * h * t) for h in (1, 2, 3)
        )
        latent = model.downsample(model.encoder_transformer(model.encoder(probe)))
        for rvq in (model.quantizer.semantic, model.quantizer.acoustic):
            projected = rvq.input_proj(latent)
            centre = projected.mean(dim=(0, 2))
            spread = projected.std(dim=(0, 2)).clamp(min=1e-3)
            rvq.codebooks.copy_(centre + spread * torch.randn_like(rvq.codebooks))
        # Output at speech level: 0.1 RMS for seeded random codes.
        codes = torch.randint(0, p.codebook_size, (1, p.codebooks, 4))
        rms = model.decode(codes).square().mean().sqrt().item()
        conv = model.decoder.conv_out.conv
        conv.weight.mul_(0.1 / rms)
        conv.bias.mul_(0.1 / rms)


def build(params: Codec12HzParams | None = None) -> Codec12Hz:
    """The codec with seeded weights (params.seed), in eval mode, on the CPU, FP32."""
    params = params or tiny()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        model = Codec12Hz(params)
        _init_weights(model, params)
    return model.eval()


def state_specs(params: Codec12HzParams, dtype: torch.dtype = torch.float32) -> list[StateSpec]:
    """DecoderStep's state tensors for `params`, without building weights (in the order of the
    graph's inputs after `codes`, and of its outputs after `audio`)."""
    with torch.device("meta"):
        return Codec12Hz(params).state_specs(dtype)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def part_parameters(model: Codec12Hz) -> dict[str, int]:
    """Parameters of the encoder side, the decoder side (both count the codebooks, which they
    share) and the whole."""
    q = model.quantizer
    books = q.semantic.codebooks.numel() + q.acoustic.codebooks.numel()
    encoder = sum(parameter_count(m) for m in (model.encoder, model.encoder_transformer,
                                                model.downsample))  # fmt: skip
    encoder += q.semantic.input_proj.weight.numel() + q.acoustic.input_proj.weight.numel()
    decoder = sum(parameter_count(m) for m in (model.upsample, model.decoder_transformer,
                                                model.decoder))  # fmt: skip
    decoder += q.semantic.output_proj.weight.numel() + q.acoustic.output_proj.weight.numel()
    return {"encoder": encoder + books, "decoder": decoder + books, "codebooks": books,
            "total": parameter_count(model)}  # fmt: skip


def fold_weight_norm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace weight-norm pairs by plain weights: `X.weight_g` / `X.weight_v` (old
    `torch.nn.utils.weight_norm`) and `X.parametrizations.weight.original0` / `original1` (the
    parametrize version) become `X.weight = g * v / ||v||` (norm over all dims but 0). The modules
    here have no weight norm, so checkpoints that have one load after this."""
    pairs = (
        ("weight_g", "weight_v"),
        ("parametrizations.weight.original0", "parametrizations.weight.original1"),
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for g_name, v_name in pairs:
            if (stem := _key_stem(key, g_name)) is not None:
                v = state_dict[stem + v_name]
                norm = v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
                out[stem + "weight"] = value.reshape(norm.shape) * v / norm
                break
            if _key_stem(key, v_name) is not None:
                break
        else:
            out[key] = value
    return out


def _key_stem(key: str, name: str) -> str | None:
    """The stem "a.b." of key "a.b.<name>", "" of key "<name>", else None."""
    if key == name:
        return ""
    return key[: -len(name)] if key.endswith("." + name) else None


def remove_weight_norm(module: nn.Module) -> nn.Module:
    """Strip weight norm (either implementation) from every submodule, in place."""
    from torch.nn.utils import parametrize

    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
        for hook in list(getattr(sub, "_forward_pre_hooks", {}).values()):
            if type(hook).__name__ == "WeightNorm":
                torch.nn.utils.remove_weight_norm(sub)
    return module


def _transposed_context(context: int, kernel: int, stride: int) -> int:
    """Inputs before the current one that a span of `context` + 1 outputs (ending anywhere) of a
    causally trimmed transposed conv depends on."""
    worst = 0
    for t in range(stride):  # the pattern repeats every `stride` outputs
        first = -((context + kernel - 1 - t) // stride)  # ceil((t - context - kernel + 1) / s)
        worst = max(worst, t // stride - first)
    return worst


def receptive_field(params: Codec12HzParams) -> dict[str, int]:
    """Left context of the decoder, derived from its layers: how many frames before the first
    frame of a chunk influence that chunk's audio. A stateless chunked decode (no DecoderStep
    state) is exact when each chunk is decoded with at least `frames` frames of codes before
    it; DecoderStep needs none (its state carries all of it). Walks the decoder backwards from
    the output: a causal conv adds (kernel - 1) * dilation, a transposed conv maps a context
    of c outputs to ceil-ish (c + kernel - 1) / stride inputs, an attention layer adds
    window - 1 tokens. `wave_tokens`: the part after the transformer, in 25 Hz tokens."""
    p = params
    context = p.last_kernel - 1  # conv_out, in samples
    for ratio in reversed(p.ratios):
        for dilation in reversed(p.convnext_dilations):
            context += (p.convnext_kernel - 1) * dilation
        context = _transposed_context(context, 2 * ratio, ratio)
    context += p.kernel - 1  # conv_in, in 25 Hz tokens
    wave_tokens = context
    context += p.transformer_layers * (p.window - 1)
    tokens = context
    frames = _transposed_context(context, 4, 2)
    return {"frames": frames, "tokens": tokens, "wave_tokens": wave_tokens,
            "attention_tokens": p.transformer_layers * (p.window - 1),
            "seconds": round(frames * p.frame_samples / p.sample_rate, 3)}  # fmt: skip
