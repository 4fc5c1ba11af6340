"""Sambert-style acoustic model family: Chinese/English text -> 80-band log-mel, multi-speaker,
multi-emotion; its mels feed the HiFi-GAN recipe (22,050 Hz, hop 256, same mel front end).

Recipe: `recipes/sambert_zh_en.yaml` (`speedy run sambert_zh_en`), then
`speedy synth --acoustic build/sambert_zh_en/simplify --vocoder build/hifigan_v1/simplify
--text "你好, world" --speaker 1 --emotion happy -o out.wav`.

Weights. No trained checkpoint of this family can be fetched here, so without `checkpoint:` the
recipe builds the network from `network.seed` with random weights of the real size (about 5 M
parameters at the default settings), their duration and mel outputs set to speech-like
statistics so that every stage sees realistic shapes. The audio of such weights is not speech.
A trained checkpoint is a `torch.save` file of a state dict with the keys below (`{i}`: layer
index, `{j}`: postnet layer index), either at the top level or under `model` or `state_dict`,
optionally prefixed with `module.` (DataParallel); shapes follow `network` (d = d_model,
f = ffn_channels, p = predictor_channels, r = reference_channels, c = postnet_channels,
V = vocabulary size, S = n_speakers, E = number of emotions).

State-dict keys:
    `embedding.weight` (V, d): symbol embedding; row 0 is padding
    `encoder.{i}.qkv.*`, `decoder.{i}.qkv.*`: attention in-projection (3d, d), queries/keys/values
    `encoder.{i}.out.*`, `decoder.{i}.out.*`: attention out-projection (d, d)
    `encoder.{i}.norm1.*`, `encoder.{i}.norm2.*`, `decoder.{i}.norm1.*`, `decoder.{i}.norm2.*`
    `encoder.{i}.ffn_in.conv.*`, `decoder.{i}.ffn_in.conv.*`: FFN conv (f, d, ffn_kernel)
    `encoder.{i}.ffn_out.*`, `decoder.{i}.ffn_out.*`: FFN projection (d, f)
    `speaker_embedding.weight` (S, d), `emotion_embedding.weight` (E, d), in `emotions` order
    `reference_encoder.conv1.*` (r, n_mels, 3), `reference_encoder.conv2.*` (r, r, 3)
    `reference_encoder.gru.*` (one-layer GRU, hidden r), `reference_encoder.proj.*` (d, r)
    `*_predictor.conv1.conv.*`, `*_predictor.norm1.*`, `*_predictor.conv2.conv.*`,
        `*_predictor.norm2.*`, `*_predictor.proj.*` for the duration, pitch and energy
        predictors (* = duration, pitch, energy), which predict log(frames + 1), z-scored
        log-F0 (std `log_f0_std`) and z-scored energy per symbol
    `pitch_embedding.conv.*`, `energy_embedding.conv.*`: (d, 1, 3)
    `mel_linear.*` (n_mels, d)
    `postnet.convs.{j}.*`, `postnet.norms.{j}.*` (BatchNorm1d with running statistics)

Graph I/O: the text_to_mel task's contract (`speedy/tasks/text_to_mel.py`). The frame axis is
bounded by the input's shape, not by the predicted durations, so the graph has no data-dependent
shapes (TensorRT builds it with plain optimization profiles); the price is decoder work on the
padding, so lower `max_frames_per_token` (16 covers speed 0.5 at about 6 frames per symbol) where
slow speech is never asked for.
"""

import re
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from speedy.audio.mel import AudioSpec
from speedy.families.base import SINGLE, Family, GraphDef
from speedy.families.sambert_model import Sambert, SambertParams
from speedy.specs import Feeds, TensorSpec
from speedy.tasks.text_to_mel import TextToMelSettings, batch_feeds
from speedy.text import vocabulary


class SambertFamily(Family):
    """Adapter for Sambert/FastSpeech2-style text-to-mel models."""

    name: ClassVar[str] = "sambert"
    Params: ClassVar[type[BaseModel]] = SambertParams
    task: ClassVar[str] = "text_to_mel"

    def __init__(self, params: BaseModel, audio: AudioSpec) -> None:
        super().__init__(params, audio)
        assert isinstance(params, SambertParams)
        self.p = params
        self.symbols = len(vocabulary(params.vocabulary))

    def build(self) -> torch.nn.Module:
        torch.manual_seed(self.p.seed)
        floor = float(np.log(self.audio.log_clamp))
        model = Sambert(self.p, self.symbols, self.audio.n_mels, floor)
        model.seed_statistics()
        return model.eval()

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, torch.Tensor]:
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
        return {re.sub(r"^module\.", "", k): v for k, v in state.items()}

    def task_settings(self) -> dict[str, Any]:
        return {
            "vocabulary": self.p.vocabulary,
            "n_speakers": self.p.n_speakers,
            "emotions": self.p.emotions,
        }

    def graphs(self) -> list[GraphDef]:
        vector = ["batch"]
        n_mels = self.audio.n_mels
        inputs = [
            TensorSpec(name="tokens", dtype="int64", shape=["batch", "tokens"]),
            TensorSpec(name="token_lengths", dtype="int64", shape=vector),
            TensorSpec(name="speaker", dtype="int64", shape=vector),
            TensorSpec(name="emotion", dtype="int64", shape=vector),
            TensorSpec(
                name="reference_mel", dtype="float32", shape=["batch", n_mels, "ref_frames"]
            ),
            TensorSpec(name="speed", dtype="float32", shape=vector),
            TensorSpec(name="pitch_shift", dtype="float32", shape=vector),
        ]
        outputs = [
            TensorSpec(name="mel", dtype="float32", shape=["batch", n_mels, "frames"]),
            TensorSpec(name="mel_lengths", dtype="int64", shape=["batch"]),
        ]
        return [GraphDef(SINGLE, inputs, outputs)]

    def dummy_feeds(self, graph: str, sizes: dict[str, int], seed: int = 0) -> Feeds:
        rng = np.random.default_rng(seed)
        batch, tokens = sizes.get("batch", 1), sizes["tokens"]
        reference = rng.normal(-5.0, 2.0, (batch, self.audio.n_mels, sizes["ref_frames"]))
        settings = TextToMelSettings.model_validate(self.task_settings())
        ids = rng.integers(1, self.symbols, (batch, tokens))
        return batch_feeds(settings, ids, np.full(batch, tokens), reference, np.arange(batch))
