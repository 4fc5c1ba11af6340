"""`qwen_tokenizer_12hz`: Qwen3-TTS-Tokenizer-12Hz, built from the installed `qwen-tts` package's
own classes (`Qwen3TTSTokenizerV2Model`: transformers' `MimiModel` as the encoder, Qwen's causal
conv + sliding-window transformer + SnakeBeta decoder), as the `codec` task's three graphs:

* `encoder`: audio float [batch, 1, frames * 1920] at 24 kHz -> codes int64 [batch, 16, frames]
  (`MimiModel.encode` with the configuration's `encoder_valid_num_quantizers`, as upstream's
  `encode` keeps);
* `decoder`: codes -> audio [batch, 1, frames * 1920] (the decoder's whole-signal `forward`);
* `decoder_step`: a chunk of codes and the explicit state -> the chunk's audio and the next state
  (`qwen_codec_step`), equal to the whole decode.

`network:` is the tokenizer's `config.json` (`Qwen3TTSTokenizerV2Config`'s fields) plus the
`seed` of the seeded weights used without a checkpoint. `--checkpoint DIR` reads a tokenizer
directory (`config.json`, `model.safetensors`) from local disk: its configuration replaces the
recipe's and its tensors must match the network it describes key for key.
"""

import math
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from speedy.errors import SpeedyError, first_invalid
from speedy.families import hf_directory
from speedy.families.base import Family, GraphDef
from speedy.families.codec_12hz import DECODER, ENCODER, STEP, codec_graphs, tracing_feeds
from speedy.families.qwen_codec_modules import Decoder, Encoder, seed_weights
from speedy.families.qwen_codec_step import DecoderStep, RatedState
from speedy.families.qwen_upstream import tokenizer_12hz
from speedy.specs import Feeds

MODEL_TYPE = "qwen3_tts_tokenizer_12hz"
# The encoder's nearest-codebook search (Mimi's quantizer, from its input projections on) stays
# float under quantization: reduced precision turns near ties into other codes.
FLOAT_FROM = ("encoder.quantizer.",)


class QwenTokenizerParams(BaseModel):
    """`Qwen3TTSTokenizerV2Config`'s fields (a tokenizer's `config.json`) and the seed of seeded
    weights. Sub-configurations are upstream's (`MimiConfig`, the decoder's), which check them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    encoder_config: dict[str, Any] = Field(default_factory=dict)
    decoder_config: dict[str, Any] = Field(default_factory=dict)
    encoder_valid_num_quantizers: PositiveInt = 16
    input_sample_rate: PositiveInt = 24_000
    output_sample_rate: PositiveInt = 24_000
    decode_upsample_rate: PositiveInt = 1920
    encode_downsample_rate: PositiveInt = 1920
    seed: int = 0

    @classmethod
    def of_config(cls, config: dict[str, Any], source: str) -> "QwenTokenizerParams":
        """The settings of a tokenizer's `config.json` (its other keys, such as `architectures`
        or `transformers_version`, are Hugging Face's bookkeeping)."""
        if (kind := config.get("model_type")) != MODEL_TYPE:
            raise SpeedyError(
                f"{source}: model_type is {kind!r}, not {MODEL_TYPE!r}",
                "pass the Qwen3-TTS-Tokenizer-12Hz directory (for a Qwen3-TTS model, its "
                "speech_tokenizer/ subdirectory)",
            )
        return cls.model_validate({k: v for k, v in config.items() if k in cls.model_fields})


class QwenTokenizer12Hz(Family):
    """Adapter of the upstream Qwen3-TTS-Tokenizer-12Hz: encoder, decoder and streaming decoder
    step graphs."""

    name: ClassVar[str] = "qwen_tokenizer_12hz"
    Params: ClassVar[type[BaseModel]] = QwenTokenizerParams
    task: ClassVar[str] = "codec"
    checkpoint_fix: ClassVar[str] = (
        "pass the tokenizer directory its weights were saved with (config.json and "
        "model.safetensors written together by save_pretrained)"
    )

    @property
    def settings(self) -> QwenTokenizerParams:
        assert isinstance(self.params, QwenTokenizerParams)
        return self.params

    @classmethod
    def checkpoint_network(cls, checkpoint: Path) -> dict[str, Any]:
        config = hf_directory.read_config(checkpoint)
        source = str(checkpoint / hf_directory.CONFIG)
        try:
            return QwenTokenizerParams.of_config(config, source).model_dump()
        except ValidationError as exc:
            raise SpeedyError(f"{source}: {first_invalid(exc)}", hf_directory.FIX) from exc

    @cached_property
    def config(self) -> Any:
        """The upstream `Qwen3TTSTokenizerV2Config`."""
        _, configuration = tokenizer_12hz()
        fields = self.settings.model_dump(exclude={"seed"})
        try:
            config = configuration.Qwen3TTSTokenizerV2Config(**fields)
        except (TypeError, ValueError) as exc:
            raise SpeedyError(f"network: {exc}", "fix the tokenizer's configuration") from exc
        self._check(config)
        return config

    def _check(self, config: Any) -> None:
        s, decoder = self.settings, config.decoder_config
        if getattr(decoder, "codebook_dim", None) is None:
            raise SpeedyError(
                "network.decoder_config.codebook_dim is not set (qwen-tts has no default)",
                "set it as the tokenizer's config.json does (512 in the published one)",
            )
        if s.encode_downsample_rate != s.decode_upsample_rate:
            raise SpeedyError(
                f"encode_downsample_rate {s.encode_downsample_rate} differs from "
                f"decode_upsample_rate {s.decode_upsample_rate}",
                "a code frame must cover the same audio both ways",
            )
        if decoder.num_quantizers != s.encoder_valid_num_quantizers:
            raise SpeedyError(
                f"the decoder takes {decoder.num_quantizers} codebooks, the encoder keeps "
                f"{s.encoder_valid_num_quantizers}",
                "set decoder_config.num_quantizers = encoder_valid_num_quantizers",
            )

    def build(self) -> torch.nn.Module:
        modeling, _ = tokenizer_12hz()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed)
            model = modeling.Qwen3TTSTokenizerV2Model(self.config)
            seed_weights(model, self.settings.encoder_valid_num_quantizers,
                         modeling.Qwen3TTSTokenizerV2DecoderDecoderResidualUnit)  # fmt: skip
        return model.eval()

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        return state

    def read_checkpoint(self, checkpoint: Path) -> dict[str, torch.Tensor]:
        return hf_directory.read_tensors(checkpoint)

    @cached_property
    def rated_states(self) -> list[RatedState]:
        """The step's states, found on a network of fake tensors (shapes without memory)."""
        from torch._subclasses.fake_tensor import FakeTensorMode

        modeling, _ = tokenizer_12hz()
        with FakeTensorMode():
            decoder = modeling.Qwen3TTSTokenizerV2Decoder(self.config.decoder_config)
            step = DecoderStep(decoder, modeling)
            return step.state_specs(self.settings.encoder_valid_num_quantizers)

    def graphs(self) -> list[GraphDef]:
        s = self.settings
        return codec_graphs(s.decode_upsample_rate, s.encoder_valid_num_quantizers,
                            [r.spec for r in self.rated_states])  # fmt: skip

    def graph_module(self, network: torch.nn.Module, graph: str) -> torch.nn.Module:
        if graph == STEP:
            modeling, _ = tokenizer_12hz()
            return DecoderStep(network.decoder, modeling)
        return {ENCODER: Encoder, DECODER: Decoder}[graph](network)

    def task_settings(self) -> dict[str, Any]:
        s, decoder = self.settings, self.config.decoder_config
        return {
            "samples_per_frame": s.decode_upsample_rate,
            "codebooks": s.encoder_valid_num_quantizers,
            "codebook_size": decoder.codebook_size,
            "encoder_context": None,  # upstream's encoder attends to the whole past (see Encoder)
            "decoder_context": math.ceil(sum(r.frames for r in self.rated_states)),
            "step_graph": STEP,
            "state": [r.spec.as_dict() for r in self.rated_states],
            "float_tails": {ENCODER: list(FLOAT_FROM)},
        }

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        s = self.settings
        framing = (s.decode_upsample_rate, s.encoder_valid_num_quantizers,
                   self.config.decoder_config.codebook_size)  # fmt: skip
        return tracing_feeds(graph, sizes, seed, framing, [r.spec for r in self.rated_states])
