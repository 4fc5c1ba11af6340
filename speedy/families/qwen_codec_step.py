"""Streaming decode of Qwen3-TTS-Tokenizer-12Hz's decoder with explicit state, over the upstream
`Qwen3TTSTokenizerV2Decoder`'s own modules and weights.

Upstream decodes a whole code sequence (or overlapping chunks of 300 frames with 25 frames of
left context, which is not exact past 25 frames: see `chunked_decode`). Every part of the
decoder is causal, so a chunk decodes exactly given what it depends on from the past; `DecoderStep`
carries that as tensors, in the order `state_specs` lists them:

* `pre_conv` and every causal conv after it: the last `(kernel - 1) * dilation` input samples;
* every causal transposed conv whose kernel exceeds its stride: the last input frames whose
  output overlaps the next chunk's (one frame for kernel 2r, stride r);
* the transformer: a 0/1 mask of which of its `sliding_window - 1` cache slots hold a token, and
  per layer the keys (not rotated) and values of those tokens. Rotary embeddings are applied
  with positions relative to the oldest slot, which gives the scores of absolute positions.

Each state also records the code frames of history it holds (its samples over the samples per
code frame where it sits), whose sum is the frames of codes a frame's audio depends on.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from speedy.families.codec_12hz_model import MASKED, StateSpec
from speedy.families.qwen_codec_modules import exportable_decoder


@dataclass(frozen=True)
class RatedState:
    """A state tensor's spec and how many code frames of history it holds."""

    spec: StateSpec
    frames: float  # code frames of history it adds to the receptive field (0: counted already)


class StateIO:
    """The states of one step: `take` hands out the next input state (zeros of the asked shape
    while only listing them) and records its spec; `keep` collects the next state, in the same
    order."""

    def __init__(self, given: Sequence[torch.Tensor] | None) -> None:
        self._given: Iterator[torch.Tensor] | None = None if given is None else iter(given)
        self.rated: list[RatedState] = []
        self.kept: list[torch.Tensor] = []

    def take(self, name: str, like: torch.Tensor, shape: tuple[int, ...], frames: float,
             meaning: str) -> torch.Tensor:  # fmt: skip
        self.rated.append(RatedState(StateSpec(name, ("batch", *shape), like.dtype, meaning),
                                     frames))  # fmt: skip
        if self._given is None:
            return like.new_zeros((like.shape[0], *shape))
        return next(self._given)

    def keep(self, tensor: torch.Tensor) -> None:
        self.kept.append(tensor)


def causal_conv(
    conv: nn.Module, x: torch.Tensor, io: StateIO, name: str, rate: int
) -> torch.Tensor:
    """An upstream `CausalConvNet` (stride 1) on a chunk, its left context from the state."""
    context = conv.padding
    if context == 0:
        return conv.conv(x)
    past = io.take(name, x, (x.shape[1], context), context / rate, "causal conv left context")
    full = torch.cat([past, x], -1)
    io.keep(full[..., full.shape[-1] - context :])
    return conv.conv(full)


def causal_transposed_conv(
    tconv: nn.Module, x: torch.Tensor, io: StateIO, name: str, rate: int
) -> torch.Tensor:
    """An upstream `CausalTransConvNet` on a chunk: the input frames whose outputs reach into
    this chunk come from the state, and the outputs that belong to them are dropped."""
    kernel, stride = tconv.conv.kernel_size[0], tconv.conv.stride[0]
    overlap = -(-(kernel - stride) // stride)
    if overlap == 0:
        return tconv(x)
    past = io.take(name, x, (x.shape[1], overlap), overlap / rate, "transposed conv overlap")
    full = torch.cat([past, x], -1)
    io.keep(full[..., full.shape[-1] - overlap :])
    start = overlap * stride
    return tconv.conv(full)[..., start : start + x.shape[-1] * stride]


class DecoderStep(nn.Module):
    """(codes int64 [batch, codebooks, chunk], *state_in) -> (audio [batch, 1, chunk * 1920],
    *state_out), with the upstream decoder's weights; chunk >= 1."""

    def __init__(self, decoder: nn.Module, modeling: ModuleType) -> None:
        super().__init__()
        self.decoder = decoder
        exportable_decoder(decoder)
        self._upstream = modeling  # rotary helpers and layer classes of the installed package

    def forward(self, codes: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        io = StateIO(state)
        audio = self.run(codes, io)
        return (audio, *io.kept)

    def state_specs(self, codebooks: int) -> list[RatedState]:
        """The states in graph order, found by a one-frame pass with zero states."""
        io = StateIO(None)
        with torch.no_grad():
            self.run(torch.zeros(1, codebooks, 1, dtype=torch.long), io)
        return io.rated

    def run(self, codes: torch.Tensor, io: StateIO) -> torch.Tensor:
        d, up = self.decoder, self._upstream
        rate = 1
        h = causal_conv(d.pre_conv, d.quantizer.decode(codes), io, "pre_conv", rate)
        h = self.transformer(h.transpose(1, 2), io).transpose(1, 2)
        for j, (tconv, block) in enumerate(d.upsample):
            h = causal_transposed_conv(tconv, h, io, f"upsample{j}", rate)
            rate *= tconv.conv.stride[0]
            h = self.convnext(block, h, io, f"upsample{j}_dwconv", rate)
        for j, block in enumerate(d.decoder):
            if isinstance(block, up.Qwen3TTSTokenizerV2CausalConvNet):
                h = causal_conv(block, h, io, f"decoder{j}", rate)
            elif isinstance(block, up.SnakeBeta):
                h = block(h)
            else:
                for k, part in enumerate(block.block):
                    name = f"decoder{j}_{k}"
                    if isinstance(part, up.SnakeBeta):
                        h = part(h)
                    elif isinstance(part, up.Qwen3TTSTokenizerV2CausalTransConvNet):
                        h = causal_transposed_conv(part, h, io, name, rate)
                        rate *= part.conv.stride[0]
                    else:  # a residual unit: Snake, dilated causal conv, Snake, 1x1 conv
                        x = causal_conv(part.conv1, part.act1(h), io, f"{name}_conv1", rate)
                        h = h + causal_conv(part.conv2, part.act2(x), io, f"{name}_conv2", rate)
        return h.clamp(min=-1, max=1)

    @staticmethod
    def convnext(block: nn.Module, x: torch.Tensor, io: StateIO, name: str, rate: int):
        h = causal_conv(block.dwconv, x, io, name, rate).permute(0, 2, 1)
        h = block.pwconv2(block.act(block.pwconv1(block.norm(h))))
        return x + (block.gamma * h).permute(0, 2, 1)

    def transformer(self, x: torch.Tensor, io: StateIO) -> torch.Tensor:
        """The sliding-window transformer on a chunk of tokens [batch, chunk, latent]."""
        model = self.decoder.pre_transformer
        window = model.config.sliding_window - 1
        h = model.input_proj(x)
        chunk = h.shape[1]
        valid = io.take("attn_valid", h, (window,), 0, "1 where a cache slot holds a token")
        io.keep(torch.cat([valid, valid.new_ones(valid.shape[0], chunk)], 1)[:, chunk:])
        visible = self._visible(valid, chunk)
        cos, sin = model.rotary_emb(h, torch.arange(window + chunk, device=h.device)[None])
        for i, layer in enumerate(model.layers):
            attended = self.attention(layer.self_attn, layer.input_layernorm(h), visible,
                                      (cos, sin), io, i)  # fmt: skip
            h = h + layer.self_attn_layer_scale(attended)
            h = h + layer.mlp_layer_scale(layer.mlp(layer.post_attention_layernorm(h)))
        return model.output_proj(model.norm(h))

    @staticmethod
    def _visible(valid: torch.Tensor, chunk: int) -> torch.Tensor:
        """[batch, 1, chunk, window + chunk]: the keys each query of the chunk attends to (the
        valid cache slots and the chunk's tokens up to itself, within the window)."""
        window = valid.shape[1]
        query = torch.arange(chunk, device=valid.device)[:, None] + window
        key = torch.arange(window + chunk, device=valid.device)[None, :]
        causal = (key <= query) & (query - key <= window)
        present = torch.cat([valid, valid.new_ones(valid.shape[0], chunk)], 1) > 0
        return causal[None, None] & present[:, None, None, :]

    def attention(self, attn: nn.Module, x: torch.Tensor, visible: torch.Tensor,
                  rotary: tuple[torch.Tensor, torch.Tensor], io: StateIO, layer: int):  # fmt: skip
        up = self._upstream
        batch, chunk, _ = x.shape
        shape = (batch, chunk, -1, attn.head_dim)
        q, k, v = (proj(x).view(shape).transpose(1, 2)
                   for proj in (attn.q_proj, attn.k_proj, attn.v_proj))  # fmt: skip
        window = visible.shape[-1] - chunk
        past_k = io.take(f"attn_k{layer}", k, (k.shape[1], window, k.shape[3]), window, "keys")
        past_v = io.take(f"attn_v{layer}", v, (v.shape[1], window, v.shape[3]), 0, "values")
        keys, values = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        io.keep(keys[:, :, chunk:])
        io.keep(values[:, :, chunk:])
        cos, sin = rotary
        q, _ = up.apply_rotary_pos_emb(q, q, cos[:, window:], sin[:, window:])
        keys, _ = up.apply_rotary_pos_emb(keys, keys, cos, sin)
        keys = up.repeat_kv(keys, attn.num_key_value_groups)
        values = up.repeat_kv(values, attn.num_key_value_groups)
        scores = torch.matmul(q, keys.transpose(2, 3)) * attn.scaling
        scores = scores.masked_fill(~visible, MASKED)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights, values).transpose(1, 2).reshape(batch, chunk, -1)
        return attn.o_proj(out)
