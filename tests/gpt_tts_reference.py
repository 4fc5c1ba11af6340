"""Test support for the gpt_tts network (`speedy.families.gpt_tts_model`): the wrappers' I/O
names for exporting them directly, the upstream UnifiedVoice round trip, and a greedy reference
generation in PyTorch (no cache, a concatenated cache, or a static one) that the cached paths are
checked against."""

import re
from collections.abc import Mapping
from typing import Any

import torch

from speedy.families.gpt_tts import names
from speedy.families.gpt_tts_model import (
    Decode,
    GptTts,
    GptTtsConfig,
    Prefill,
    StaticDecode,
    from_upstream,
)


def io_names(module: Prefill | Decode) -> tuple[list[str], list[str]]:
    """Input and output names of a Prefill or Decode wrapper (per layer: key, then value)."""
    config = module.model.config
    presents = names(config, "present")
    if isinstance(module, Prefill):
        inputs = ["speaker_latents", "emotion", "text_ids", "attention_mask"]
        return inputs, ["logits", "hidden", "cache_mask", *presents]
    inputs = ["token", "position", "attention_mask", *names(config, "past")]
    return inputs, ["logits", "hidden", *presents]


def upstream_config(
    state_dict: Mapping[str, torch.Tensor], heads: int, **overrides: Any
) -> GptTtsConfig:
    """The config of an upstream UnifiedVoice state dict (heads cannot be read from it)."""
    layers = len({m.group(1) for k in state_dict if (m := re.match(r"gpt\.h\.(\d+)\.", k))})
    text_vocab, d_model = state_dict["text_embedding.weight"].shape
    speech_vocab = state_dict["mel_embedding.weight"].shape[0]
    text_rows = state_dict["text_pos_embedding.emb.weight"].shape[0]
    speech_rows = state_dict["mel_pos_embedding.emb.weight"].shape[0]
    found = {
        "layers": layers,
        "d_model": d_model,
        "heads": heads,
        "text_vocab": text_vocab,
        "speech_codes": speech_vocab - 2,
        "max_text_tokens": text_rows - 2,
        "max_speech_tokens": speech_rows - 2 - GptTtsConfig.max_conditioning_inputs,
    }
    return GptTtsConfig(**{**found, **overrides})


def load_upstream(
    state_dict: Mapping[str, torch.Tensor], heads: int, **overrides
) -> tuple[GptTts, list[str]]:
    """A GptTts holding upstream UnifiedVoice weights (float32, eval), and the ignored keys."""
    ours, ignored = from_upstream(state_dict)
    model = GptTts(upstream_config(ours, heads, **overrides))
    model.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)
    return model.eval(), ignored


def to_upstream(model: GptTts) -> dict[str, torch.Tensor]:
    """The model's weights under upstream UnifiedVoice names (the same names: a plain copy)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def generate(
    model: GptTts,
    speaker_latents: torch.Tensor,
    emotion: torch.Tensor,
    text_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int = 200,
    stop: bool = True,
    cache: str = "dynamic",
    max_len: int | None = None,
) -> torch.Tensor:
    """Greedy codes [batch, n] (n <= max_new_tokens), start_speech excluded.

    cache: "dynamic" (Prefill, then Decode steps concatenating the cache), "static"
    (StaticDecode over buffers of `max_len`, default prompt + max_new_tokens) or "none" (the
    whole sequence recomputed every step: the no-cache baseline). With `stop`, an item that
    emits the stop code keeps emitting it and generation ends once every item has; the stop code
    is included in the output.
    """
    cfg = model.config
    if max_new_tokens > cfg.max_new_tokens:
        raise ValueError(f"max_new_tokens {max_new_tokens} > {cfg.max_new_tokens} positions")
    if attention_mask is None:
        attention_mask = torch.ones_like(text_ids)
    batch, device = text_ids.shape[0], text_ids.device
    stop_id = cfg.stop_speech_token
    done = torch.zeros(batch, 1, dtype=torch.bool, device=device)
    codes: list[torch.Tensor] = []

    def pick(logits: torch.Tensor) -> torch.Tensor:
        nonlocal done
        token = logits.argmax(dim=-1, keepdim=True)
        if stop:
            token = torch.where(done, stop_id, token)
            done = done | (token == stop_id)
        codes.append(token)
        return token

    def finished() -> bool:
        return len(codes) >= max_new_tokens or (stop and bool(done.all()))

    def position(step: int) -> torch.Tensor:
        return torch.full((batch, 1), cfg.decode_position_offset + step, device=device)

    if cache == "none":
        fed = text_ids[:, :0]  # no codes fed back yet
        while True:
            logits, _ = model(speaker_latents, emotion, text_ids, attention_mask, fed)
            pick(logits[:, -1])
            if finished():
                return torch.cat(codes, dim=1)
            fed = torch.cat(codes, dim=1)

    logits, _, cache_mask, *presents = Prefill(model)(
        speaker_latents, emotion, text_ids, attention_mask
    )
    token = pick(logits)
    if cache == "dynamic":
        decode = Decode(model)
        mask = cache_mask
        while not finished():
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            logits, _, *presents = decode(token, position(len(codes) - 1), mask, *presents)
            token = pick(logits)
    elif cache == "static":
        length = cache_mask.shape[1]
        step = StaticDecode(model, batch, max_len or length + max_new_tokens, presents[0].dtype)
        step.load(presents, cache_mask)
        while not finished():
            slot = torch.tensor([length + len(codes) - 1], device=device)
            logits, _ = step(token, position(len(codes) - 1), slot)
            token = pick(logits)
    else:
        raise ValueError(f"unknown cache {cache!r}: use dynamic, static or none")
    return torch.cat(codes, dim=1)
