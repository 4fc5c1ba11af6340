"""`qwen3_tts`: the Qwen3-TTS talker and code predictor (12 Hz, 16 codebooks), built from the
installed `qwen-tts` package's own classes (`Qwen3TTSForConditionalGeneration`), as the
`frame_codes` task's graphs (`speedy.families.qwen_tts_graphs`): `embed`, `prefill`, `decode`
and `predictor`. The audio is the Qwen3-TTS-Tokenizer-12Hz's
(`qwen_tokenizer_12hz`), a model of its own that these codes chain into.

`network:` is a Qwen3-TTS `config.json` (`Qwen3TTSConfig`'s fields), its `generation_config.json`
(`generation`), the text tokenizer (`text_tokenizer`: a `tokenizer.json` text; none: a byte
stand-in) and the `seed` of seeded weights. `--checkpoint DIR` reads a downloaded Qwen3-TTS
directory (CustomVoice, VoiceDesign or Base: config.json, generation_config.json,
model.safetensors, the tokenizer files) from local disk; all of it replaces the recipe's network.
"""

import json
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from speedy.errors import SpeedyError, first_invalid
from speedy.families import hf_directory
from speedy.families.base import Family, GraphDef
from speedy.families.qwen_tts_graphs import CodePredictor, Decode, Embed, Prefill
from speedy.families.qwen_upstream import tts_model
from speedy.specs import Feeds, TensorSpec
from speedy.tasks.frame_codes import SPECIAL_CODES
from speedy.text.subwords import from_checkpoint

MODEL_TYPE = "qwen3_tts"
GENERATION = "generation_config.json"
FRAMES_PER_SECOND = 12.5
GRAPHS = {
    "embed": Embed,
    "prefill": Prefill,
    "decode": Decode,
    "predictor": CodePredictor,
}


class QwenTtsParams(BaseModel):
    """A Qwen3-TTS `config.json`'s fields, its generation defaults, its text tokenizer and the
    seed of seeded weights. Sub-configurations are upstream's, which check them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    talker_config: dict[str, Any] = Field(default_factory=dict)
    speaker_encoder_config: dict[str, Any] = Field(default_factory=dict)
    tokenizer_type: str = "qwen3_tts_tokenizer_12hz"
    tts_model_size: str | None = None
    tts_model_type: str = "custom_voice"
    im_start_token_id: int = 151644
    im_end_token_id: int = 151645
    tts_pad_token_id: int = 151671
    tts_bos_token_id: int = 151672
    tts_eos_token_id: int = 151673
    generation: dict[str, Any] = Field(default_factory=dict)  # generation_config.json
    text_tokenizer: str | None = None
    generate_frames: PositiveInt = 100  # frames per run in parity, quality and bench runs
    seed: int = 0

    @classmethod
    def of_directory(cls, directory: Path) -> "QwenTtsParams":
        config = hf_directory.read_config(directory)
        source = str(directory / hf_directory.CONFIG)
        if (kind := config.get("model_type")) != MODEL_TYPE:
            raise SpeedyError(
                f"{source}: model_type is {kind!r}, not {MODEL_TYPE!r}",
                "pass a Qwen3-TTS model directory (for its speech tokenizer, the "
                "qwen3_tts_tokenizer_12hz recipe)",
            )
        settings = {k: v for k, v in config.items() if k in cls.model_fields}
        if (directory / GENERATION).is_file():
            settings["generation"] = json.loads((directory / GENERATION).read_text())
        settings["text_tokenizer"] = from_checkpoint(directory)
        try:
            return cls.model_validate(settings)
        except ValidationError as exc:
            raise SpeedyError(f"{source}: {first_invalid(exc)}", hf_directory.FIX) from exc


class QwenTts(Family):
    """Adapter of the upstream Qwen3-TTS talker: prompt embeddings, prefill and decode of the
    talker, prefill and decode of its code predictor."""

    name: ClassVar[str] = "qwen3_tts"
    Params: ClassVar[type[BaseModel]] = QwenTtsParams
    task: ClassVar[str] = "frame_codes"
    checkpoint_fix: ClassVar[str] = (
        "pass the Qwen3-TTS directory its weights were saved with (config.json and "
        "model.safetensors written together by save_pretrained)"
    )

    @property
    def settings(self) -> QwenTtsParams:
        assert isinstance(self.params, QwenTtsParams)
        return self.params

    @classmethod
    def checkpoint_network(cls, checkpoint: Path) -> dict[str, Any]:
        return QwenTtsParams.of_directory(checkpoint).model_dump()

    @cached_property
    def config(self) -> Any:
        """The upstream `Qwen3TTSConfig`."""
        _, configuration = tts_model()
        fields = self.settings.model_dump(
            exclude={"generation", "text_tokenizer", "generate_frames", "seed"}
        )
        try:
            config = configuration.Qwen3TTSConfig(**fields)
        except (TypeError, ValueError, KeyError) as exc:
            raise SpeedyError(f"network: {exc}", "fix the Qwen3-TTS configuration") from exc
        talker = config.talker_config
        if talker.vocab_size <= SPECIAL_CODES:
            raise SpeedyError(
                f"network.talker_config.vocab_size {talker.vocab_size} leaves no codes below "
                f"the {SPECIAL_CODES} control codes",
                "set it to the codebook size + 1024, as Qwen3-TTS does (3072)",
            )
        return config

    @property
    def talker(self) -> Any:
        return self.config.talker_config

    def build(self) -> torch.nn.Module:
        modeling, _ = tts_model()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            model = modeling.Qwen3TTSForConditionalGeneration(self.config)
        return model.eval()

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        return state

    def read_checkpoint(self, checkpoint: Path) -> dict[str, torch.Tensor]:
        return hf_directory.read_tensors(checkpoint)

    def graph_module(self, network: torch.nn.Module, graph: str) -> torch.nn.Module:
        modeling, _ = tts_model()
        return GRAPHS[graph](network.talker, modeling)  # type: ignore[attr-defined]

    def graphs(self) -> list[GraphDef]:
        t, p = self.talker, self.talker.code_predictor_config
        hidden, groups = t.hidden_size, t.num_code_groups
        logits = TensorSpec(name="logits", dtype="float32", shape=["batch", t.vocab_size])
        talker_hidden = TensorSpec(name="hidden", dtype="float32", shape=["batch", hidden])

        def kv(prefix: str, length: str | int) -> list[TensorSpec]:
            shape = ["batch", t.num_key_value_heads, length, t.head_dim]
            return [
                TensorSpec(name=n, dtype="float32", shape=shape)
                for n in names(t.num_hidden_layers, prefix)
            ]

        return [
            GraphDef(
                "embed",
                [
                    TensorSpec(name="text_ids", dtype="int64", shape=["batch", "text"]),
                    TensorSpec(name="codec_ids", dtype="int64", shape=["batch", "codec"]),
                ],
                [
                    TensorSpec(
                        name="text_embeds", dtype="float32", shape=["batch", "text", hidden]
                    ),
                    TensorSpec(
                        name="codec_embeds", dtype="float32", shape=["batch", "codec", hidden]
                    ),
                ],
            ),
            GraphDef(
                "prefill",
                [
                    TensorSpec(name="embeds", dtype="float32", shape=["batch", "seq", hidden]),
                    TensorSpec(name="attention_mask", dtype="int64", shape=["batch", "seq"]),
                ],
                [
                    logits,
                    talker_hidden,
                    TensorSpec(name="cache_mask", dtype="int64", shape=["batch", "seq"]),
                    *kv("present", "seq"),
                ],
            ),
            GraphDef(
                "decode",
                [
                    TensorSpec(name="codes", dtype="int64", shape=["batch", groups]),
                    TensorSpec(name="text", dtype="float32", shape=["batch", hidden]),
                    TensorSpec(name="position", dtype="int64", shape=["batch", 1]),
                    TensorSpec(name="cache_mask", dtype="int64", shape=["batch", "slots"]),
                    *kv("cache", "slots"),
                ],
                [logits, talker_hidden, *kv("new", 1)],
            ),
            GraphDef(
                "predictor",
                [
                    talker_hidden,
                    TensorSpec(name="code", dtype="int64", shape=["batch", 1]),
                    TensorSpec(name="forced", dtype="int64", shape=["batch", groups - 1]),
                    TensorSpec(name="noise", dtype="float32", shape=["batch", groups - 1]),
                    TensorSpec(name="temperature", dtype="float32", shape=[1]),
                    TensorSpec(name="top_k", dtype="int64", shape=[1]),
                    TensorSpec(name="top_p", dtype="float32", shape=[1]),
                ],
                [
                    TensorSpec(name="codes", dtype="int64", shape=["batch", groups - 1]),
                    TensorSpec(
                        name="logits", dtype="float32", shape=["batch", groups - 1, p.vocab_size]
                    ),
                ],
            ),
        ]

    def task_settings(self) -> dict[str, Any]:
        s, t, p = self.settings, self.talker, self.talker.code_predictor_config
        return {
            "groups": t.num_code_groups,
            "codebook_size": p.vocab_size,
            "vocab": t.vocab_size,
            "hidden": t.hidden_size,
            "layers": t.num_hidden_layers,
            "kv_heads": t.num_key_value_heads,
            "head_dim": t.head_dim,
            "predictor_layers": p.num_hidden_layers,
            "predictor_kv_heads": p.num_key_value_heads,
            "predictor_head_dim": p.head_dim,
            "codes": {
                name: getattr(t, f"codec_{name}_id")
                for name in ("pad", "bos", "think", "nothink", "think_bos", "think_eos")
            }
            | {"eos": t.codec_eos_token_id},
            "text_tokens": {
                "im_start": s.im_start_token_id,
                "im_end": s.im_end_token_id,
                "pad": s.tts_pad_token_id,
                "bos": s.tts_bos_token_id,
                "eos": s.tts_eos_token_id,
            },
            "languages": dict(t.codec_language_id or {}),
            "speakers": {name: _first(code) for name, code in (t.spk_id or {}).items()},
            "dialects": {k: v for k, v in (t.spk_is_dialect or {}).items() if v},
            "text_tokenizer": s.text_tokenizer,
            "generation": s.generation,
            "frames_per_second": FRAMES_PER_SECOND,
            "generate_frames": s.generate_frames,
        }

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        t, p = self.talker, self.talker.code_predictor_config
        rng, batch = np.random.default_rng(seed), sizes.get("batch", 1)
        codes = lambda *shape: rng.integers(0, p.vocab_size, shape)  # noqa: E731
        if graph == "embed":
            return {
                "text_ids": rng.integers(
                    0, self.config.talker_config.text_vocab_size, (batch, sizes["text"])
                ),
                "codec_ids": rng.integers(0, t.vocab_size, (batch, sizes["codec"])),
            }
        feeds: dict[str, np.ndarray] = {}
        if graph == "prefill":
            seq = sizes["seq"]
            mask = np.ones((batch, seq), np.int64)
            mask[1:, : seq // 3] = 0  # left padding
            feeds = {
                "embeds": rng.standard_normal((batch, seq, t.hidden_size)),
                "attention_mask": mask,
            }
        elif graph == "decode":
            slots = sizes["slots"]
            feeds = {
                "codes": codes(batch, t.num_code_groups),
                "text": 0.1 * rng.standard_normal((batch, t.hidden_size)),
                "position": np.full((batch, 1), slots - 2),
                "cache_mask": (np.arange(slots) < slots - 3)
                .astype(np.int64)[None]
                .repeat(batch, 0),
            }
            shape = (batch, t.num_key_value_heads, slots, t.head_dim)
            feeds |= {n: rng.standard_normal(shape) for n in names(t.num_hidden_layers, "cache")}
        else:
            others = t.num_code_groups - 1
            feeds = {
                "hidden": rng.standard_normal((batch, t.hidden_size)),
                "code": codes(batch, 1),
                "forced": np.where(rng.random((batch, others)) < 0.5, codes(batch, others), -1),
                "noise": rng.random((batch, others)),
                "temperature": np.array([0.9]),
                "top_k": np.array([50]),
                "top_p": np.array([0.95]),
            }
        return {
            k: v.astype(np.float32 if v.dtype.kind == "f" else np.int64) for k, v in feeds.items()
        }


def _first(code: Any) -> int:
    """A speaker's codec id (config.json writes some as a one-item list)."""
    return int(code[0] if isinstance(code, list) else code)


def names(layers: int, prefix: str) -> list[str]:
    """Per-layer tensor names, key then value: `{prefix}_key_0, {prefix}_value_0, ...`."""
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]
