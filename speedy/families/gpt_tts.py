"""GPT-TTS family: an IndexTTS2-style autoregressive GPT over speech codes, exported as two graphs.

`prefill` takes the conditioning (speaker latents and an emotion vector), the text ids and their
mask, and gives the first code's logits, the hidden state, the cache mask and the present keys
and values of every layer; `decode` takes one code, its speech position, a mask over the cache
slots and the slots themselves (keys and values of every layer, in buffers the runtime keeps),
and gives the next logits, the hidden state and the step's own key and value, which the runtime
writes into the next free slot: the graph reads the cache but never copies it. Dims: batch, text,
past (the prompt's cache length) and slots (the buffers' length); positions are inputs, sampling
happens outside the graphs (speedy/tasks/speech_codes.py), and neither graph has an `If`.

The network is `speedy/families/gpt_tts_model.py` (pure PyTorch, upstream UnifiedVoice state-dict
names; see its docstring); no trained weights can be fetched here, so without a checkpoint the
recipe builds seeded weights whose greedy decoding walks through many distinct codes. A trained
UnifiedVoice checkpoint loads as it is (`gpt.h.{i}.attn.c_attn.weight` ...; the conditioning
encoders and perceivers it also holds are skipped: this model takes their outputs as inputs).
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, RootModel

from speedy.families.base import Family, GraphDef
from speedy.families.gpt_tts_model import (
    GptTtsConfig,
    Prefill,
    SlotDecode,
    build,
    from_upstream,
)
from speedy.specs import Feeds, TensorSpec


@dataclass(frozen=True)
class GptTtsNetwork(GptTtsConfig):
    """The network's shape and how many codes a run makes and stands for."""

    codes_per_second: float = 25.0  # the speech codes' rate, for real-time factors
    generate_codes: int = 200  # codes per run in parity, quality and bench runs

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.codes_per_second > 0 and self.generate_codes > 0):
            raise ValueError("codes_per_second and generate_codes must be positive")


class GptTtsParams(RootModel[GptTtsNetwork]):
    """Network settings (the `network:` section of a gpt_tts recipe)."""

    model_config = ConfigDict(frozen=True)


class GptTts(Family):
    """Adapter for IndexTTS2-style GPT text-to-speech-codes models."""

    name: ClassVar[str] = "gpt_tts"
    Params: ClassVar[type[BaseModel]] = GptTtsParams
    task: ClassVar[str] = "speech_codes"

    @property
    def config(self) -> GptTtsNetwork:
        assert isinstance(self.params, GptTtsParams)
        return self.params.root

    def build(self) -> torch.nn.Module:
        return build(self.config)

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        ours, _ = from_upstream(state, strict=False)
        return ours

    def task_settings(self) -> dict[str, Any]:
        c = self.config
        return {
            "layers": c.layers,
            "heads": c.heads,
            "head_dim": c.head_dim,
            "d_model": c.d_model,
            "cond_latents": c.cond_latents,
            "text_vocab": c.text_vocab,
            "speech_vocab": c.speech_vocab,
            "start_code": c.start_speech_token,
            "stop_code": c.stop_speech_token,
            "max_text_tokens": c.max_text_tokens,
            "max_new_codes": c.max_new_tokens,
            "position_offset": c.decode_position_offset,
            "codes_per_second": c.codes_per_second,
            "generate_codes": c.generate_codes,
        }

    def graphs(self) -> list[GraphDef]:
        c = self.config
        prompt_cache = ["batch", c.heads, "past", c.head_dim]
        slots = ["batch", c.heads, "slots", c.head_dim]
        step = ["batch", c.heads, 1, c.head_dim]
        logits = TensorSpec(name="logits", dtype="float32", shape=["batch", c.speech_vocab])
        hidden = TensorSpec(name="hidden", dtype="float32", shape=["batch", c.d_model])
        latents = ["batch", c.cond_latents, c.d_model]
        prefill = GraphDef(
            "prefill",
            [
                TensorSpec(name="speaker_latents", dtype="float32", shape=latents),
                TensorSpec(name="emotion", dtype="float32", shape=["batch", c.d_model]),
                TensorSpec(name="text_ids", dtype="int64", shape=["batch", "text"]),
                TensorSpec(name="attention_mask", dtype="int64", shape=["batch", "text"]),
            ],
            [
                logits,
                hidden,
                TensorSpec(name="cache_mask", dtype="int64", shape=["batch", "past"]),
                *(
                    TensorSpec(name=n, dtype="float32", shape=prompt_cache)
                    for n in names(c, "present")
                ),
            ],
        )
        decode = GraphDef(
            "decode",
            [
                TensorSpec(name="token", dtype="int64", shape=["batch", 1]),
                TensorSpec(name="position", dtype="int64", shape=["batch", 1]),
                TensorSpec(name="cache_mask", dtype="int64", shape=["batch", "slots"]),
                *(TensorSpec(name=n, dtype="float32", shape=slots) for n in names(c, "cache")),
            ],
            [
                logits,
                hidden,
                *(TensorSpec(name=n, dtype="float32", shape=step) for n in names(c, "new")),
            ],
        )
        return [prefill, decode]

    def graph_module(self, network: torch.nn.Module, graph: str) -> torch.nn.Module:
        wrapper = {"prefill": Prefill, "decode": SlotDecode}[graph]
        return wrapper(network)  # type: ignore[arg-type]

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        c, rng = self.config, np.random.default_rng(seed)
        batch = sizes.get("batch", 1)
        if graph == "prefill":
            text = sizes["text"]
            feeds = {
                "speaker_latents": rng.standard_normal((batch, c.cond_latents, c.d_model)),
                "emotion": 0.1 * rng.standard_normal((batch, c.d_model)),
                "text_ids": rng.integers(2, c.text_vocab, (batch, text)),
                "attention_mask": np.ones((batch, text), np.int64),
            }
        else:
            slots = sizes["slots"]
            feeds = {
                "token": rng.integers(0, c.speech_codes, (batch, 1)),
                "position": np.full((batch, 1), c.decode_position_offset, np.int64),
                "cache_mask": (np.arange(slots) < slots - 3)
                .astype(np.int64)[None]
                .repeat(batch, 0),
            }
            for name in names(c, "cache"):
                feeds[name] = rng.standard_normal((batch, c.heads, slots, c.head_dim))
        return {
            k: v.astype(np.float32 if v.dtype.kind == "f" else np.int64) for k, v in feeds.items()
        }


def names(config: GptTtsConfig, prefix: str) -> list[str]:
    """Per-layer tensor names, key then value: `{prefix}_key_0, {prefix}_value_0, ...`."""
    return [f"{prefix}_{kind}_{i}" for i in range(config.layers) for kind in ("key", "value")]
