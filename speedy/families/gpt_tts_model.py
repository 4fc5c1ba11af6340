"""GPT-TTS: an IndexTTS2-style autoregressive text-to-speech-codes GPT, export-ready, torch only.

This module imports only torch and the standard library so that it runs on a machine that has
nothing else (the GPU benchmark loads it by file path, without the `speedy` package).

Network (modelled on IndexTTS2's `UnifiedVoice`, written from its published design):

* a GPT-2 stack `gpt`: pre-LN blocks (`ln_1`, fused `attn.c_attn` qkv projection, causal
  self-attention, `attn.c_proj`; `ln_2`, `mlp.c_fc`, tanh-GELU, `mlp.c_proj`; residuals) and its
  final `gpt.ln_f`; linear layers keep HF GPT-2's `Conv1D` layout (weight [in, out]); GPT-2's own
  token and position tables (`wte`, `wpe`) are absent, as upstream deletes them;
* learned tables: `text_embedding` (12,000 text tokens + 1), `mel_embedding` (8,192 codes + start
  8,192 + stop 8,193), `text_pos_embedding.emb` (600 + 2 rows), `mel_pos_embedding.emb`
  (1,815 + 2 + 1 rows), `speed_emb` (2 rows, duration control);
* `final_norm` (after `gpt.ln_f`, as upstream), `text_head` and `mel_head`.

Sequence layout (upstream's inference layout, right-padded instead of left-padded):

    [speaker latents + emotion] x cond, speed_emb[1], speed_emb[0],      # conditioning prefix
    start_text, text_1 .. text_n, stop_text, (pad ..),                   # text, positions 0..n+1
    start_speech,                                                        # speech position 0
    code_1, code_2, ...                                                  # speech positions 2, 3..

Text positions index `text_pos_embedding`, speech positions `mel_pos_embedding`; the
conditioning rows have none. GPT-2 itself adds no positional information, so a masked padding gap
between an item's stop_text and the start_speech token changes nothing for that item: every
item of a batch puts its start_speech token at the same (last) index and its stop_text right after
its own text. Speech positions skip 1 by default (`decode_position_offset` = 2): upstream's
HF-generate inference model embeds each fed-back code at `attention_mask.shape[1] - mel_len`,
which is 2 for the first generated code; set the offset to 1 for the training layout.

Graphs (explicit tensors only; symbolic dims: batch, cond, text, past, total; past of Prefill's
outputs = cond + text + 5):

* `Prefill(speaker_latents f32[batch, cond, d], emotion f32[batch, d], text_ids i64[batch, text],
  attention_mask i64[batch, text])` -> `logits` f32[batch, speech_vocab] (at start_speech),
  `hidden` f32[batch, d] (final_norm output there), `cache_mask` i64[batch, past] (1 = real cache
  entry, 0 = a padding slot), `present_key_{i}`, `present_value_{i}` f32[batch, heads, past,
  head_dim]. `text_ids` hold the text tokens without start/stop (the graph adds both); padding
  slots (attention_mask 0, which must be a right padding) may hold any id.
* `Decode(token i64[batch, 1], position i64[batch, 1], attention_mask i64[batch, total],
  past_key_{i}, past_value_{i} f32[batch, heads, past, head_dim])`, total = past + 1 ->
  `logits` f32[batch, speech_vocab], `hidden` f32[batch, d], `present_key_{i}`,
  `present_value_{i}` f32[batch, heads, total, head_dim] (past concatenated with the new step).
  `attention_mask` is Prefill's `cache_mask` with a 1 appended per decoded step, so padding slots
  stay masked for the whole generation; `position` is the speech position (offset + step).
* `StaticDecode`: the same step over preallocated [batch, heads, max_len, head_dim] buffers,
  written in place with `index_copy_` at `cache_position`, attending under a [batch, max_len] key
  mask, so torch.compile / CUDA graphs capture one fixed-shape step.

Weights: `build(config)` makes seeded weights (no trained weights are available); see `build` for
the initialisation that keeps greedy decoding moving. State-dict names are upstream's, so real
UnifiedVoice weights load after `from_upstream`; `UPSTREAM_IGNORED` lists the upstream parts this
module does not build (conditioning encoders and perceivers, the emotion projections, aliases).
Generation itself runs outside the graphs (`speedy.tasks.speech_codes`); `GptTts.forward`,
`Decode` and `StaticDecode` are the references and GPU paths it is measured against.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "UPSTREAM_IGNORED",
    "Decode",
    "GptTts",
    "GptTtsConfig",
    "Prefill",
    "SlotDecode",
    "StaticDecode",
    "build",
    "from_upstream",
]


@dataclass(frozen=True)
class GptTtsConfig:
    """Shape of the network (defaults: IndexTTS2's GPT); the family's `network:` settings, which
    pydantic reads into it (extra keys refused), add how many codes a run makes."""

    __pydantic_config__: ClassVar[dict] = {"extra": "forbid"}  # a dict: no pydantic import
    COUNTS: ClassVar[tuple[str, ...]] = ("layers", "d_model", "heads", "text_vocab",
        "speech_codes", "max_text_tokens", "max_speech_tokens", "max_conditioning_inputs",
        "cond_latents")  # fmt: skip

    layers: int = 24
    d_model: int = 1280
    heads: int = 20
    text_vocab: int = 12_001  # number_text_tokens (12,000) * types (1) + 1
    start_text_token: int = 0
    stop_text_token: int = 1
    speech_codes: int = 8_192
    max_text_tokens: int = 600
    max_speech_tokens: int = 1_815  # upstream max_mel_tokens
    max_conditioning_inputs: int = 1
    cond_latents: int = 32  # perceiver latents per speaker
    decode_position_offset: int = 2  # speech position of the first fed-back code (see module doc)
    layer_norm_eps: float = 1e-5
    seed: int = 0
    special_logit_bias: float = -30.0  # seeded mel_head bias of start/stop: never chosen

    def __post_init__(self) -> None:
        if small := [name for name in self.COUNTS if getattr(self, name) < 1]:
            raise ValueError(f"{small[0]} must be positive, got {getattr(self, small[0])}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.decode_position_offset < 1:
            raise ValueError("decode_position_offset must be >= 1 (0 is the start token's)")

    @property
    def start_speech_token(self) -> int:
        return self.speech_codes

    @property
    def stop_speech_token(self) -> int:
        return self.speech_codes + 1

    @property
    def speech_vocab(self) -> int:
        return self.speech_codes + 2

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def text_positions(self) -> int:
        """Rows of `text_pos_embedding` (text plus start and stop)."""
        return self.max_text_tokens + 2

    @property
    def speech_positions(self) -> int:
        """Rows of `mel_pos_embedding` (upstream: max_mel_tokens + 2 + max_conditioning_inputs)."""
        return self.max_speech_tokens + 2 + self.max_conditioning_inputs

    @property
    def max_new_tokens(self) -> int:
        """Most codes one generation can produce before the speech positions run out."""
        return self.speech_positions - self.decode_position_offset + 1

    def prefix_length(self, text: int, cond: int | None = None) -> int:
        """Cache length after Prefill: cond + 2 speed rows + start/text/stop + start_speech."""
        return (self.cond_latents if cond is None else cond) + text + 5

    @classmethod
    def indextts2(cls, **overrides) -> GptTtsConfig:
        """IndexTTS2's GPT: 24 layers, d 1,280, 20 heads."""
        return replace(cls(), **overrides)

    @classmethod
    def mid(cls, **overrides) -> GptTtsConfig:
        """GPT-2 small sized: 12 layers, d 768, 12 heads."""
        return replace(cls(layers=12, d_model=768, heads=12), **overrides)

    @classmethod
    def tiny(cls, **overrides) -> GptTtsConfig:
        """Test size: 4 layers, d 256, 4 heads, short position tables."""
        base = cls(layers=4, d_model=256, heads=4, max_text_tokens=126, max_speech_tokens=509)
        return replace(base, **overrides)


class Conv1D(nn.Module):
    """HF GPT-2's linear layer: weight [in, out], y = x @ weight + bias."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return flat.view(*x.shape[:-1], self.weight.shape[1])


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (q, k, v blocks of d each)."""

    def __init__(self, config: GptTtsConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.c_attn = Conv1D(config.d_model, 3 * config.d_model)
        self.c_proj = Conv1D(config.d_model, config.d_model)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query, key and value [batch, heads, seq, head_dim] of `x` [batch, seq, d]."""
        batch, seq = x.shape[0], x.shape[1]
        qkv = self.c_attn(x).view(batch, seq, 3, self.heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Attention of `q` over `k`, `v` under a boolean `mask` (True = may attend)."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        batch, seq = out.shape[0], out.shape[2]
        return self.c_proj(out.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, config: GptTtsConfig) -> None:
        super().__init__()
        self.c_fc = Conv1D(config.d_model, 4 * config.d_model)
        self.c_proj = Conv1D(4 * config.d_model, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's gelu_new


class Block(nn.Module):
    """Pre-LN GPT-2 block."""

    def __init__(self, config: GptTtsConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.mlp = Mlp(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        past_key: torch.Tensor | None = None,
        past_value: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`x` [batch, seq, d] after `past` cached steps -> (x, key, value incl. the past)."""
        q, k, v = self.attn.qkv(self.ln_1(x))
        if past_key is not None and past_value is not None:
            k = torch.cat([past_key, k], dim=2)
            v = torch.cat([past_value, v], dim=2)
        x = x + self.attn.attend(q, k, v, mask)
        return x + self.mlp(self.ln_2(x)), k, v

    def forward_static(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        cache_key: torch.Tensor,
        cache_value: torch.Tensor,
        cache_position: torch.Tensor,
    ) -> torch.Tensor:
        """One step: write its key/value at `cache_position` in place, attend over the buffers."""
        q, k, v = self.attn.qkv(self.ln_1(x))
        cache_key.index_copy_(2, cache_position, k)
        cache_value.index_copy_(2, cache_position, v)
        x = x + self.attn.attend(q, cache_key, cache_value, mask)
        return x + self.mlp(self.ln_2(x))

    def forward_slots(
        self,
        x: torch.Tensor,
        cache_key: torch.Tensor,
        cache_value: torch.Tensor,
        slot_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step over cache slots it does not write: attend over the slots `slot_mask`
        [batch, 1, 1, slots] marks and the step's own key; -> (x, key, value) of the step."""
        q, k, v = self.attn.qkv(self.ln_1(x))
        scale = self.attn.head_dim**-0.5
        cached = (q @ cache_key.transpose(-1, -2)) * scale  # [batch, heads, 1, slots]
        cached = cached.masked_fill(~slot_mask, float("-inf"))
        own = (q * k).sum(-1, keepdim=True) * scale  # [batch, heads, 1, 1]
        weights = torch.softmax(torch.cat([cached, own], dim=-1), dim=-1)
        out = weights[..., :-1] @ cache_value + weights[..., -1:] * v
        batch = out.shape[0]
        attended = self.attn.c_proj(out.transpose(1, 2).reshape(batch, 1, -1))
        x = x + attended
        return x + self.mlp(self.ln_2(x)), k, v


class Gpt2(nn.Module):
    """The GPT-2 stack without token/position tables (upstream deletes `wte` and `wpe`)."""

    def __init__(self, config: GptTtsConfig) -> None:
        super().__init__()
        self.h = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)


class LearnedPositions(nn.Module):
    """Upstream's LearnedPositionEmbeddings: a table under `.emb`, indexed by position ids."""

    def __init__(self, rows: int, d_model: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(rows, d_model)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.emb(positions)


def causal_mask(key_mask: torch.Tensor, queries: int) -> torch.Tensor:
    """[batch, 1, queries, keys] boolean mask: the last `queries` keys are the queries' own steps;
    a query sees real keys (`key_mask` [batch, keys]) at or before its own index."""
    keys = key_mask.shape[1]
    k_idx = torch.arange(keys, device=key_mask.device)
    q_idx = torch.arange(queries, device=key_mask.device) + (keys - queries)
    causal = k_idx.unsqueeze(0) <= q_idx.unsqueeze(1)
    return causal.unsqueeze(0).unsqueeze(0) & key_mask.unsqueeze(1).unsqueeze(2)


class GptTts(nn.Module):
    """The UnifiedVoice GPT parts: embeddings, GPT-2 stack, norms and heads."""

    def __init__(self, config: GptTtsConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.text_embedding = nn.Embedding(config.text_vocab, d)
        self.mel_embedding = nn.Embedding(config.speech_vocab, d)
        self.gpt = Gpt2(config)
        self.mel_pos_embedding = LearnedPositions(config.speech_positions, d)
        self.text_pos_embedding = LearnedPositions(config.text_positions, d)
        self.final_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.text_head = nn.Linear(d, config.text_vocab)
        self.mel_head = nn.Linear(d, config.speech_vocab)
        self.speed_emb = nn.Embedding(2, d)

    # -- embeddings ---------------------------------------------------------------------------

    def conditioning(self, speaker_latents: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        """[batch, cond + 2, d]: latents + emotion, then speed_emb rows 1 (duration control) and
        0 (duration free), as upstream's inference_speech orders them."""
        batch = speaker_latents.shape[0]
        d = self.config.d_model
        speed = self.speed_emb.weight.flip(0).unsqueeze(0).expand(batch, 2, d)
        return torch.cat([speaker_latents + emotion.unsqueeze(1), speed.to(emotion.dtype)], dim=1)

    def text_block(
        self, text_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings [batch, text + 2, d] of start_text, the text, stop_text (at each item's own
        end) and padding (stop ids), and which of those rows are real [batch, text + 2]."""
        cfg = self.config
        lengths = attention_mask.to(torch.int64).sum(dim=1, keepdim=True)
        ids = F.pad(text_ids, (1, 1), value=cfg.start_text_token)
        idx = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        ids = torch.where(idx >= lengths + 1, cfg.stop_text_token, ids)
        emb = self.text_embedding(ids) + self.text_pos_embedding(idx)
        return emb, idx <= lengths + 1

    def speech_embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Speech codes [batch, n] at speech positions [batch, n] -> [batch, n, d]."""
        return self.mel_embedding(tokens) + self.mel_pos_embedding(positions)

    def prefix(
        self,
        speaker_latents: torch.Tensor,
        emotion: torch.Tensor,
        text_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt [batch, cond + text + 5, d] ending with start_speech, and its key mask."""
        cond = self.conditioning(speaker_latents, emotion)
        text, text_real = self.text_block(text_ids, attention_mask)
        start = torch.full_like(text_ids[:, :1], self.config.start_speech_token)
        start = self.speech_embed(start, torch.zeros_like(start))
        x = torch.cat([cond, text.to(cond.dtype), start.to(cond.dtype)], dim=1)
        ones = torch.ones_like(text_real[:, :1])
        key_mask = torch.cat([ones.expand(-1, cond.shape[1]), text_real, ones], dim=1)
        return x, key_mask

    # -- transformer --------------------------------------------------------------------------

    def run(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        past: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The stack over `x` under a [batch, 1, seq, keys] mask; `past` = (key_0, value_0, ...).
        Returns final_norm(ln_f(x)) and the presents, flat (key_0, value_0, key_1, ...)."""
        presents: list[torch.Tensor] = []
        for i, block in enumerate(self.gpt.h):
            past_key = past[2 * i] if past is not None else None
            past_value = past[2 * i + 1] if past is not None else None
            x, k, v = block(x, mask, past_key, past_value)
            presents += [k, v]
        return self.final(x), presents

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_norm(self.gpt.ln_f(x))

    def forward(
        self,
        speaker_latents: torch.Tensor,
        emotion: torch.Tensor,
        text_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        speech_tokens: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """No-cache full forward: the prompt then `speech_tokens` [batch, n] (the codes fed back,
        without start_speech). Returns mel logits [batch, n + 1, speech_vocab] and hidden
        [batch, n + 1, d] at start_speech and each code."""
        x, key_mask = self.prefix(speaker_latents, emotion, text_ids, attention_mask)
        n = speech_tokens.shape[1]
        positions = torch.arange(n, device=x.device) + self.config.decode_position_offset
        speech = self.speech_embed(speech_tokens, positions.unsqueeze(0).expand_as(speech_tokens))
        x = torch.cat([x, speech.to(x.dtype)], dim=1)
        key_mask = torch.cat([key_mask, torch.ones_like(speech_tokens, dtype=torch.bool)], dim=1)
        hidden, _ = self.run(x, causal_mask(key_mask, x.shape[1]))
        hidden = hidden[:, x.shape[1] - n - 1 :]
        return self.mel_head(hidden), hidden


# -- graphs -----------------------------------------------------------------------------------


class Prefill(nn.Module):
    """The prompt pass. Inputs: speaker_latents f32[batch, cond, d], emotion f32[batch, d],
    text_ids i64[batch, text], attention_mask i64[batch, text] (1 = real token, right padding).
    Outputs: logits f32[batch, speech_vocab] and hidden f32[batch, d] at start_speech,
    cache_mask i64[batch, past], then present_key_i, present_value_i f32[batch, heads, past,
    head_dim] per layer, past = cond + text + 5."""

    def __init__(self, model: GptTts) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        speaker_latents: torch.Tensor,
        emotion: torch.Tensor,
        text_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        x, key_mask = m.prefix(speaker_latents, emotion, text_ids, attention_mask)
        hidden, presents = m.run(x, causal_mask(key_mask, x.shape[1]))
        last = hidden[:, -1]
        return (m.mel_head(last), last, key_mask.to(torch.int64), *presents)


class Decode(nn.Module):
    """One decoding step. Inputs: token i64[batch, 1], position i64[batch, 1] (speech position),
    attention_mask i64[batch, total] (cache_mask + one 1 per step, this step's included), then
    past_key_i, past_value_i f32[batch, heads, past, head_dim], total = past + 1.
    Outputs: logits f32[batch, speech_vocab], hidden f32[batch, d], then present_key_i,
    present_value_i f32[batch, heads, total, head_dim] (the past with this step appended)."""

    def __init__(self, model: GptTts) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        token: torch.Tensor,
        position: torch.Tensor,
        attention_mask: torch.Tensor,
        *past: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        x = m.speech_embed(token, position).to(past[0].dtype)
        mask = attention_mask.to(torch.bool).unsqueeze(1).unsqueeze(2)
        hidden, presents = m.run(x, mask, past)
        last = hidden[:, 0]
        return (m.mel_head(last), last, *presents)


class SlotDecode(nn.Module):
    """One decoding step over preallocated cache slots, which it reads but never copies.

    Inputs: token i64[batch, 1], position i64[batch, 1] (speech position), cache_mask
    i64[batch, slots] (1 = the slot holds a key: Prefill's cache_mask, then one 1 per step),
    then key_cache_i, value_cache_i f32[batch, heads, slots, head_dim] per layer. Outputs:
    logits f32[batch, speech_vocab], hidden f32[batch, d], then new_key_i, new_value_i
    f32[batch, heads, 1, head_dim]: the step's own key and value, which the caller writes into
    the next free slot. Attention runs over the marked slots and the step's own key, in two parts
    (the slots, then itself), so the graph holds no concatenation of the cache: a runtime that
    keeps the slots in one buffer per layer pays for reading the cache, not for copying it.
    """

    def __init__(self, model: GptTts) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        token: torch.Tensor,
        position: torch.Tensor,
        cache_mask: torch.Tensor,
        *caches: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        x = m.speech_embed(token, position).to(caches[0].dtype)
        slot_mask = cache_mask.to(torch.bool).unsqueeze(1).unsqueeze(2)
        news: list[torch.Tensor] = []
        for i, block in enumerate(m.gpt.h):
            x, k, v = block.forward_slots(x, caches[2 * i], caches[2 * i + 1], slot_mask)
            news += [k, v]
        hidden = m.final(x)[:, 0]
        return (m.mel_head(hidden), hidden, *news)


class StaticDecode(nn.Module):
    """Decode over preallocated caches, for torch.compile / CUDA graphs.

    Buffers `key_{i}`, `value_{i}` [batch, heads, max_len, head_dim] and `key_mask` bool
    [batch, max_len]. `load(presents, cache_mask)` copies Prefill's outputs into the first `past`
    slots. `forward(token i64[batch, 1], position i64[batch, 1], cache_position i64[1])` marks slot
    `cache_position` real, writes the step's key/value there (`index_copy_`, no reallocation),
    attends over all `max_len` slots under `key_mask` (unwritten slots are False), and returns
    (logits [batch, speech_vocab], hidden [batch, d]). Every shape is fixed, so one captured step
    replays for the whole generation; the caller advances `position` and `cache_position`.
    """

    def __init__(
        self,
        model: GptTts,
        batch: int,
        max_len: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        weight = model.mel_head.weight
        dtype = dtype or weight.dtype
        device = device or weight.device
        self.max_len = max_len
        shape = (batch, cfg.heads, max_len, cfg.head_dim)
        for i in range(cfg.layers):
            self.register_buffer(f"key_{i}", torch.zeros(shape, dtype=dtype, device=device))
            self.register_buffer(f"value_{i}", torch.zeros(shape, dtype=dtype, device=device))
        mask = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.register_buffer("key_mask", mask)

    def caches(self) -> list[torch.Tensor]:
        return [
            getattr(self, f"{kind}_{i}")
            for i in range(self.model.config.layers)
            for kind in ("key", "value")
        ]

    @torch.no_grad()
    def load(self, presents: Sequence[torch.Tensor], cache_mask: torch.Tensor) -> int:
        """Copy Prefill's presents into slots [0, past) and reset the rest; returns past."""
        past = cache_mask.shape[1]
        if past >= self.max_len:
            raise ValueError(f"prompt of {past} steps does not fit a cache of {self.max_len}")
        for buffer, present in zip(self.caches(), presents, strict=True):
            buffer[:, :, :past].copy_(present)
            buffer[:, :, past:].zero_()
        self.key_mask.zero_()
        self.key_mask[:, :past].copy_(cache_mask.to(torch.bool))
        return past

    def forward(
        self, token: torch.Tensor, position: torch.Tensor, cache_position: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        self.key_mask.index_fill_(1, cache_position, True)
        mask = self.key_mask.unsqueeze(1).unsqueeze(2)
        x = m.speech_embed(token, position).to(self.key_0.dtype)
        for i, block in enumerate(m.gpt.h):
            key, value = getattr(self, f"key_{i}"), getattr(self, f"value_{i}")
            x = block.forward_static(x, mask, key, value, cache_position)
        last = m.final(x)[:, 0]
        return m.mel_head(last), last


# -- weights ----------------------------------------------------------------------------------


@torch.no_grad()
def build(config: GptTtsConfig) -> GptTts:
    """A GptTts with seeded weights (eval mode, float32).

    Plain GPT-2 initialisation (std 0.02 everywhere) makes greedy decoding lock onto one code:
    the residual stream barely depends on the fed-back token, so the argmax repeats. Here the
    token, position and speed tables are N(0, 1) (std 0.5 for positions), the qkv/fc projections
    N(0, 1/d_in) (unit gain), the output projections N(0, 1/(d_in * 2 * layers)) (GPT-2's residual
    scaling, so the stack adds O(1) to the stream in total), LayerNorm gains 1 + N(0, 0.1), and
    the heads N(0, 1/d) (logit std ~1; greedy decoding only depends on the argmax). So each code
    depends strongly on the fed-back code, its position and the attended context: greedy decoding
    walks through many distinct codes (hundreds in 200 steps at the tiny shape). The start and
    stop codes get a `special_logit_bias` (-30) bias so greedy never emits them unless a caller
    raises that bias. `torch.manual_seed(config.seed)` is set, and every draw comes from a
    generator seeded with `config.seed`, so weights depend on the config only.
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = GptTts(config)
    d, layers = config.d_model, config.layers

    def normal(param: torch.Tensor, std: float, mean: float = 0.0) -> None:
        param.copy_(torch.randn(param.shape, generator=gen) * std + mean)

    normal(model.text_embedding.weight, 1.0)
    normal(model.mel_embedding.weight, 1.0)
    normal(model.text_pos_embedding.emb.weight, 0.5)
    normal(model.mel_pos_embedding.emb.weight, 0.5)
    normal(model.speed_emb.weight, 1.0)
    for block in model.gpt.h:
        for layer, std in (
            (block.attn.c_attn, d**-0.5),
            (block.attn.c_proj, (d * 2 * layers) ** -0.5),
            (block.mlp.c_fc, d**-0.5),
            (block.mlp.c_proj, (4 * d * 2 * layers) ** -0.5),
        ):
            normal(layer.weight, std)
            normal(layer.bias, 0.02)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    for norm in norms:
        normal(norm.weight, 0.1, mean=1.0)
        normal(norm.bias, 0.02)
    normal(model.text_head.weight, d**-0.5)
    model.text_head.bias.zero_()
    normal(model.mel_head.weight, d**-0.5)
    model.mel_head.bias.zero_()
    model.mel_head.bias[config.start_speech_token] = config.special_logit_bias
    model.mel_head.bias[config.stop_speech_token] = config.special_logit_bias
    return model.eval()


# Upstream UnifiedVoice keys this module does not build (regular expressions, full match).
UPSTREAM_IGNORED = (
    r"conditioning_encoder\..*",  # speaker conditioning encoder (conformer / attention blocks)
    r"perceiver_encoder\..*",  # speaker perceiver resampler -> the 32 latents we take as input
    r"emo_conditioning_encoder\..*",  # emotion conformer
    r"emo_perceiver_encoder\..*",  # emotion perceiver
    r"emovec_layer\..*",  # emotion perceiver output (1,024) -> d; we take the emotion vector
    r"emo_layer\..*",  # second emotion projection; likewise
    r"gst_encoder\..*",  # "gst" conditioning variant
    r"inference_model\..*",  # HF-generate wrapper: aliases of gpt/mel tables/final_norm/mel_head
    r"gpt\.wte\..*",  # alias of mel_embedding set by post_init_gpt2_config
    r"gpt\.wpe\..*",  # deleted upstream (null position embeddings)
    r"gpt\.h\.\d+\.attn\.(bias|masked_bias)",  # HF GPT-2's causal-mask buffers
    r"(mel|text)_solo_embedding",  # train_solo_embeddings variant (0 when unused)
    r"(mel|text)_layer_pos_embedding\..*",
)


def _ignored(key: str) -> bool:
    return any(re.fullmatch(pattern, key) for pattern in UPSTREAM_IGNORED)


def from_upstream(
    state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An upstream UnifiedVoice state dict (optionally under a `module.` / `model.` prefix) ->
    (state dict for GptTts, ignored keys). The layouts are identical (Conv1D weights stay
    [in, out]); unknown keys raise in strict mode."""
    ours: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in state_dict.items():
        name = re.sub(r"^(module|model)\.", "", key)
        if _ignored(name):
            ignored.append(key)
        elif name in _OUR_KEYS or re.fullmatch(r"gpt\.h\.\d+\..*", name):
            ours[name] = value
        elif strict:
            raise KeyError(f"unexpected upstream key {key!r}")
        else:
            ignored.append(key)
    return ours, ignored


_OUR_KEYS = frozenset(
    [
        "text_embedding.weight",
        "mel_embedding.weight",
        "gpt.ln_f.weight",
        "gpt.ln_f.bias",
        "mel_pos_embedding.emb.weight",
        "text_pos_embedding.emb.weight",
        "final_norm.weight",
        "final_norm.bias",
        "text_head.weight",
        "text_head.bias",
        "mel_head.weight",
        "mel_head.bias",
        "speed_emb.weight",
    ]
)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
