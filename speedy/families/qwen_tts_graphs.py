"""Qwen3-TTS's talker and code predictor as export-ready graphs over the installed `qwen-tts`
modules (`Qwen3TTSTalkerForConditionalGeneration`): every weight, norm, MLP, rotary table and rotary
function is upstream's; only the cache handling is written here, as explicit tensors.

* `Embed`: text ids -> projected text embeddings (`text_projection(text_embedding(ids))`) and
  codec ids -> codec embeddings: what the generation loop assembles upstream's prompt from.
* `Prefill`: the prompt's embeddings (left padding, as upstream batches) -> the first codebook's
  logits and the normed hidden state at the last position, the cache mask and every layer's keys
  and values.
* `Decode`: one frame: the previous frame's codes (all codebooks) and its text embedding (the
  streamed text, or the pad embedding once the text is spent), summed as upstream does, over
  cache slots it reads but never copies -> logits, hidden, the step's own keys and values.
* `CodePredictor`: the code predictor over one frame, all its steps in one graph: the talker's
  hidden state and the first code -> the other codebooks' codes (greedy or sampled inside the
  graph from the caller's uniform draws, or fed: teacher forcing) and their logits.

Grouped-query attention reads the cache per key head (queries grouped), never repeated.
"""

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch
from torch import nn

Rotate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _heads(attn: nn.Module, x: torch.Tensor, rotate: Rotate) -> tuple[torch.Tensor, ...]:
    """Queries [batch, kv_heads, groups, seq, dim], keys and values [batch, kv_heads, seq, dim]
    of `x` [batch, seq, hidden], normed and rotated as upstream's attention does."""
    batch, seq = x.shape[:2]
    dim = attn.head_dim
    q = attn.q_norm(attn.q_proj(x).view(batch, seq, -1, dim)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(batch, seq, -1, dim)).transpose(1, 2)
    v = attn.v_proj(x).view(batch, seq, -1, dim).transpose(1, 2)
    q, k = rotate(q, k)
    kv_heads = k.shape[1]
    return q.view(batch, kv_heads, -1, seq, dim), k, v


def _out(attn: nn.Module, weights_v: torch.Tensor) -> torch.Tensor:
    """[batch, kv_heads, groups, seq, dim] -> o_proj of [batch, seq, heads * dim]."""
    batch, _, _, seq, dim = weights_v.shape
    merged = weights_v.reshape(batch, -1, seq, dim).transpose(1, 2).reshape(batch, seq, -1)
    return attn.o_proj(merged)


def attend(
    attn: nn.Module,
    x: torch.Tensor,
    rotate: Rotate,
    mask: torch.Tensor,
    past: Sequence[torch.Tensor] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention of `x` over the keys `past` (concatenated) and its own, under `mask`
    [batch, 1, 1, seq, keys] (True: may attend); -> (output, keys, values incl. the past)."""
    q, k, v = _heads(attn, x, rotate)
    if past:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
    scores = (q @ k.unsqueeze(2).transpose(-1, -2)) * attn.scaling
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return _out(attn, weights @ v.unsqueeze(2)), k, v


def attend_slots(
    attn: nn.Module,
    x: torch.Tensor,
    rotate: Rotate,
    slot_mask: torch.Tensor,
    cache_key: torch.Tensor,
    cache_value: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """One step over cache slots (marked by `slot_mask` [batch, 1, 1, 1, slots]) and its own key,
    in two parts, so that the cache is read, never concatenated; -> (output, key, value)."""
    q, k, v = _heads(attn, x, rotate)
    cached = (q @ cache_key.unsqueeze(2).transpose(-1, -2)) * attn.scaling
    cached = cached.masked_fill(~slot_mask, float("-inf"))  # [batch, kv, groups, 1, slots]
    own = (q * k.unsqueeze(2)).sum(-1, keepdim=True) * attn.scaling
    weights = torch.softmax(torch.cat([cached, own], dim=-1), dim=-1)
    out = weights[..., :-1] @ cache_value.unsqueeze(2) + weights[..., -1:] * v.unsqueeze(2)
    return _out(attn, out), k, v


def matmul_head(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """`head` of `hidden` [batch, 1, hidden] -> [batch, vocab]: over three dims the exporter
    writes a MatMul, which the quantizers take, where a 2-D input would make a Gemm."""
    return head(hidden)[:, 0]


def layer(
    block: nn.Module,
    x: torch.Tensor,
    attention: Callable[..., tuple[torch.Tensor, ...]],
    *args: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An upstream decoder layer (pre-norm attention, then pre-norm MLP) with `attention`."""
    attended, k, v = attention(block.self_attn, block.input_layernorm(x), *args)
    x = x + attended
    return x + block.mlp(block.post_attention_layernorm(x)), k, v


class Talker(nn.Module):
    """What the talker's graphs share: its modules and its rotary positions."""

    def __init__(self, talker: nn.Module, modeling: ModuleType) -> None:
        super().__init__()
        self.talker = talker
        self.modeling = modeling

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> Rotate:
        """Upstream's multimodal rotation at `positions` [batch, seq] (the three position rows
        of a text-and-speech sequence are equal)."""
        cos, sin = self.talker.model.rotary_emb(x, positions.unsqueeze(0).expand(3, -1, -1))
        scaling = self.talker.config.rope_scaling

        def rotate(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.modeling.apply_multimodal_rotary_pos_emb(
                q, k, cos, sin, scaling["mrope_section"], scaling["interleaved"]
            )

        return rotate

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first code's logits and the normed hidden state at the last position."""
        hidden = self.talker.model.norm(x)[:, -1:]
        return matmul_head(self.talker.codec_head, hidden), hidden[:, 0]


class Embed(Talker):
    """text_ids i64[batch, text], codec_ids i64[batch, codec] -> text_embeds f32[batch, text,
    hidden] (projected), codec_embeds f32[batch, codec, hidden]."""

    def forward(self, text_ids: torch.Tensor, codec_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = self.talker
        return t.text_projection(t.get_text_embeddings()(text_ids)), t.get_input_embeddings()(
            codec_ids
        )


class Prefill(Talker):
    """embeds f32[batch, seq, hidden], attention_mask i64[batch, seq] (1 = real, left padding)
    -> logits f32[batch, vocab], hidden f32[batch, hidden], cache_mask i64[batch, seq], then
    present_key_i, present_value_i f32[batch, kv_heads, seq, head_dim] per layer. Positions count
    the real entries, as upstream's `get_rope_index`."""

    def forward(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        real = attention_mask.to(torch.bool)
        positions = (attention_mask.cumsum(-1) - 1).masked_fill(~real, 1)
        seq = embeds.shape[1]
        index = torch.arange(seq, device=embeds.device)
        causal = index[None, :] <= index[:, None]
        # a padding query sees itself (its row is never used), so no row is all -inf
        mask = (causal & real[:, None, :]) | torch.eye(seq, dtype=torch.bool, device=embeds.device)
        mask = mask[:, None, None]
        rotate, x, presents = self.rotate(embeds, positions), embeds, []
        for block in self.talker.model.layers:
            x, k, v = layer(block, x, attend, rotate, mask)
            presents += [k, v]
        logits, hidden = self.head(x)
        return (logits, hidden, attention_mask, *presents)


class Decode(Talker):
    """codes i64[batch, groups] (the previous frame), text f32[batch, hidden] (its text
    embedding), position i64[batch, 1], cache_mask i64[batch, slots], then cache_key_i,
    cache_value_i f32[batch, kv_heads, slots, head_dim] -> logits, hidden, then new_key_i,
    new_value_i f32[batch, kv_heads, 1, head_dim] (the caller writes them into a free slot)."""

    def forward(
        self,
        codes: torch.Tensor,
        text: torch.Tensor,
        position: torch.Tensor,
        cache_mask: torch.Tensor,
        *caches: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        t = self.talker
        tables = t.code_predictor.get_input_embeddings()
        rows = [t.get_input_embeddings()(codes[:, :1])]
        rows += [table(codes[:, i + 1 : i + 2]) for i, table in enumerate(tables)]
        x = torch.cat(rows, dim=1).sum(1, keepdim=True) + text[:, None]
        slot_mask = cache_mask.to(torch.bool)[:, None, None, None]
        rotate, news = self.rotate(x, position), []
        for i, block in enumerate(t.model.layers):
            x, k, v = layer(
                block, x, attend_slots, rotate, slot_mask, caches[2 * i], caches[2 * i + 1]
            )
            news += [k, v]
        logits, hidden = self.head(x)
        return (logits, hidden, *news)


class CodePredictor(nn.Module):
    """The code predictor over one frame, every step in one graph: hidden f32[batch, hidden]
    (the talker's, at the frame), code i64[batch, 1] (the frame's first code), forced
    i64[batch, groups - 1] (codes fed instead of chosen, teacher forcing; -1: choose), noise
    f32[batch, groups - 1] (a uniform draw per step, for sampling), temperature f32[1] (0:
    greedy), top_k i64[1] (0: no limit), top_p f32[1] -> codes i64[batch, groups - 1] and logits
    f32[batch, groups - 1, codebook] of the other codebooks. Each step uses its codebook's own
    head and embedding table; the cache of at most `groups` positions grows inside the graph."""

    def __init__(self, talker: nn.Module, modeling: ModuleType) -> None:
        super().__init__()
        self.talker = talker
        self.predictor = talker.code_predictor
        self.modeling = modeling

    def forward(
        self,
        hidden: torch.Tensor,
        code: torch.Tensor,
        forced: torch.Tensor,
        noise: torch.Tensor,
        temperature: torch.Tensor,
        top_k: torch.Tensor,
        top_p: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([hidden[:, None], self.talker.get_input_embeddings()(code)], dim=1)
        heads, tables = self.predictor.lm_head, self.predictor.get_input_embeddings()
        past, codes, logits = (), [], []
        for group, head in enumerate(heads):
            last, past = self.run(x, past)
            step = matmul_head(head, last)
            chosen = choose(step, noise[:, group], temperature, top_k, top_p)
            codes.append(torch.where(forced[:, group] >= 0, forced[:, group], chosen))
            logits.append(step)
            if group + 1 < len(heads):  # the last code's embedding is the talker's to take
                x = tables[group](codes[-1][:, None])
        return torch.stack(codes, 1), torch.stack(logits, 1)

    def run(
        self, x: torch.Tensor, past: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The predictor over `x` (talker-sized embeddings) after `past` cached positions; the
        normed hidden state at the last position [batch, 1, hidden], and the keys and values so
        far."""
        p = self.predictor
        x = p.small_to_mtp_projection(x)
        batch, seq = x.shape[:2]
        start = past[0].shape[2] if past else 0
        positions = (torch.arange(seq, device=x.device) + start)[None].expand(batch, -1)
        cos, sin = p.model.rotary_emb(x, positions)

        def rotate(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.modeling.apply_rotary_pos_emb(q, k, cos, sin)

        keys = torch.arange(start + seq, device=x.device)
        mask = (keys[None, :] <= positions[0][:, None])[None, None, None]
        presents: list[torch.Tensor] = []
        for i, block in enumerate(p.model.layers):
            x, k, v = layer(block, x, attend, rotate, mask, past[2 * i : 2 * i + 2])
            presents += [k, v]
        return p.model.norm(x)[:, -1:], tuple(presents)


def choose(
    logits: torch.Tensor,
    noise: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
) -> torch.Tensor:
    """Each item's code from `logits` [batch, vocab]: the argmax at temperature 0, else the
    code where its uniform draw `noise` [batch] falls in the cumulative distribution, after
    temperature, top-k and top-p (nucleus), as `speedy.tasks.sampling.pick` draws it."""
    vocab = logits.shape[-1]
    scaled = logits / temperature.clamp_min(1e-6)
    ordered = scaled.sort(dim=-1, descending=True).values
    kth = ordered.index_select(-1, torch.where(top_k > 0, top_k, vocab).clamp(max=vocab) - 1)
    scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probabilities = torch.softmax(scaled, dim=-1)
    ordered = probabilities.sort(dim=-1, descending=True).values
    kept = (ordered.cumsum(-1) - ordered < top_p).sum(-1, keepdim=True)
    probabilities = probabilities.masked_fill(probabilities < ordered.gather(-1, kept - 1), 0.0)
    cdf = probabilities.cumsum(-1)
    sampled = (cdf <= noise[:, None] * cdf[:, -1:]).sum(-1).clamp(max=vocab - 1)
    return torch.where(temperature > 0, sampled, logits.argmax(-1))
