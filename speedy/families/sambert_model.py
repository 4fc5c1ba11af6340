"""Sambert/FastSpeech2-style acoustic model: symbols -> 80-band log-mel frames, export-safe.

Token embedding and a transformer encoder; speaker embedding plus emotion from a label
embedding or a reference encoder (conv + GRU over a reference mel); a variance adaptor with
duration, pitch and energy predictors; a length regulator written as cumsum + mask over a frame
count bounded by the input's shape (`tokens * max_frames_per_token`), so no graph shape depends
on predicted values (no `arange(durations.sum())`, no NonZero); a transformer decoder, mel linear
and postnet. Controls: `speed` divides the predicted durations, `pitch_shift` (semitones) moves
the predicted log-F0.
"""

import itertools
import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator
from torch import nn

from speedy.tasks.text_to_mel import REFERENCE_EMOTION
from speedy.text.vocab import VOCABULARIES

MASKED = -1e4  # attention score of a masked key; finite so that FP16 stays NaN-free
MEAN_FRAMES_PER_SYMBOL = 6.0  # seeded duration predictor's typical output (~70 ms per symbol)
MEAN_LOG_MEL = -5.2  # seeded mel output's centre: LJSpeech's mean natural-log mel


class SambertParams(BaseModel):
    """Network settings (the `network:` section of a sambert recipe)."""

    model_config = ConfigDict(extra="forbid")

    vocabulary: str = "zh_en_v1"
    d_model: PositiveInt = 192
    heads: PositiveInt = 2
    encoder_layers: PositiveInt = 3
    decoder_layers: PositiveInt = 3
    ffn_channels: PositiveInt = 512
    ffn_kernel: PositiveInt = 3
    predictor_channels: PositiveInt = 192
    predictor_kernel: PositiveInt = 3
    postnet_channels: PositiveInt = 256
    postnet_layers: int = Field(5, ge=2)
    postnet_kernel: PositiveInt = 5
    reference_channels: PositiveInt = 128
    n_speakers: PositiveInt = 4
    emotions: list[str] = Field(
        default_factory=lambda: ["neutral", "happy", "sad", "angry", "surprise"], min_length=1
    )
    max_frames_per_token: PositiveInt = 16
    log_f0_std: PositiveFloat = 0.2  # training data's log-F0 std: converts semitones to z-scores
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "SambertParams":
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(f"unknown vocabulary, use one of {sorted(VOCABULARIES)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if len(set(self.emotions)) != len(self.emotions):
            raise ValueError("emotions has duplicate names")
        for name in ("ffn_kernel", "predictor_kernel", "postnet_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd (same-length convolutions)")
        return self


def positions(length: int, channels: int, like: torch.Tensor) -> torch.Tensor:
    """Sinusoidal position encodings (length, channels), computed from the length alone."""
    # Integer ranges, cast after: index arithmetic stays exact whatever precision the floats get.
    position = torch.arange(length, device=like.device).to(like.dtype)[:, None]
    exponent = torch.arange(0, channels, 2, device=like.device).to(like.dtype) / channels
    angles = position / torch.pow(10000.0, exponent)[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[:, :channels]


class Conv(nn.Module):
    """Same-length Conv1d on (batch, time, channels) tensors."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class FFTBlock(nn.Module):
    """Self-attention and a conv feed-forward, each with a residual and LayerNorm (FastSpeech)."""

    def __init__(self, d: int, heads: int, ffn_channels: int, ffn_kernel: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.ffn_in = Conv(d, ffn_channels, ffn_kernel)
        self.ffn_out = nn.Linear(ffn_channels, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, d); mask (B, T) true on real positions."""
        batch, length, d = x.shape
        q, k, v = (
            t.reshape(batch, length, self.heads, d // self.heads).transpose(1, 2)
            for t in self.qkv(x).chunk(3, dim=-1)
        )
        scores = q @ k.transpose(2, 3) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~mask[:, None, None, :], MASKED)
        attended = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, d)
        keep = mask[..., None].to(x.dtype)  # zeros at padding = what a conv sees past the end
        x = self.norm1(x + self.out(attended)) * keep
        return self.norm2(x + self.ffn_out(F.relu(self.ffn_in(x)))) * keep


class VariancePredictor(nn.Module):
    """Two conv + ReLU + LayerNorm layers and a projection to one value per position."""

    def __init__(self, d: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = Conv(d, channels, kernel)
        self.norm1 = nn.LayerNorm(channels)
        self.conv2 = Conv(channels, channels, kernel)
        self.norm2 = nn.LayerNorm(channels)
        self.proj = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), zero at padding; mask (B, T) 1.0 on real positions."""
        keep = mask[..., None]
        x = self.norm1(F.relu(self.conv1(x))) * keep
        x = self.norm2(F.relu(self.conv2(x))) * keep
        return self.proj(x).squeeze(-1) * mask


class ReferenceEncoder(nn.Module):
    """Reference mel (B, n_mels, frames) -> one emotion vector per item: conv, GRU, projection."""

    def __init__(self, n_mels: int, channels: int, d: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.gru = nn.GRU(channels, channels, batch_first=True)
        self.proj = nn.Linear(channels, d)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(mel))))
        _, last = self.gru(x.transpose(1, 2))
        return torch.tanh(self.proj(last[0]))


class Postnet(nn.Module):
    """Tacotron 2 postnet: conv + BatchNorm (+ tanh but on the last layer), a mel residual."""

    def __init__(self, n_mels: int, channels: int, layers: int, kernel: int) -> None:
        super().__init__()
        sizes = [n_mels, *[channels] * (layers - 1), n_mels]
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
            for c_in, c_out in itertools.pairwise(sizes)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in sizes[1:])

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, frames) -> residual of the same shape."""
        x = mel
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(x))
            x = torch.tanh(x) if i < len(self.convs) - 1 else x
        return x


def regulate_length(
    x: torch.Tensor, durations: torch.Tensor, max_frames_per_token: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Repeat each token's vector `durations` times, as cumsum + mask + matmul.

    x (B, T, d); durations (B, T) whole numbers. The frame axis has the bounded size
    T * max_frames_per_token, known from the input's shape; frames past a sequence's total
    duration are masked (and a total past the bound is cut there). Frame indices are int64,
    exact under FP16 too.
    Returns frames (B, F, d), frame mask (B, F) and lengths (B,) int64.
    """
    frame_count = x.shape[1] * max_frames_per_token
    durations = durations.to(torch.int64)
    ends = torch.cumsum(durations, dim=1)
    starts = ends - durations
    frame = torch.arange(frame_count, device=x.device)
    grid = frame[None, :, None]
    alignment = (grid >= starts[:, None, :]) & (grid < ends[:, None, :])  # (B, F, T)
    frames = alignment.to(x.dtype) @ x
    total = torch.minimum(ends[:, -1], frame[-1:] + 1)  # cut at the bound (a tensor: no guard)
    return frames, frame[None, :] < total[:, None], total


class Sambert(nn.Module):
    """(tokens, token_lengths, speaker, emotion, reference_mel, speed, pitch_shift) ->
    (mel (B, n_mels, T * max_frames_per_token), mel_lengths (B,))."""

    def __init__(self, params: SambertParams, n_symbols: int, n_mels: int, floor: float) -> None:
        super().__init__()
        d, p = params.d_model, params
        self.params, self.floor = params, floor
        self.embedding = nn.Embedding(n_symbols, d, padding_idx=0)
        self.encoder = nn.ModuleList(
            FFTBlock(d, p.heads, p.ffn_channels, p.ffn_kernel) for _ in range(p.encoder_layers)
        )
        self.speaker_embedding = nn.Embedding(p.n_speakers, d)
        self.emotion_embedding = nn.Embedding(len(p.emotions), d)
        self.reference_encoder = ReferenceEncoder(n_mels, p.reference_channels, d)
        self.duration_predictor = VariancePredictor(d, p.predictor_channels, p.predictor_kernel)
        self.pitch_predictor = VariancePredictor(d, p.predictor_channels, p.predictor_kernel)
        self.energy_predictor = VariancePredictor(d, p.predictor_channels, p.predictor_kernel)
        self.pitch_embedding = Conv(1, d, 3)
        self.energy_embedding = Conv(1, d, 3)
        self.decoder = nn.ModuleList(
            FFTBlock(d, p.heads, p.ffn_channels, p.ffn_kernel) for _ in range(p.decoder_layers)
        )
        self.mel_linear = nn.Linear(d, n_mels)
        self.postnet = Postnet(n_mels, p.postnet_channels, p.postnet_layers, p.postnet_kernel)

    def seed_statistics(self) -> None:
        """Give seeded random weights a speech-like rate and level: durations near
        MEAN_FRAMES_PER_SYMBOL, mels centred on MEAN_LOG_MEL (trained weights replace both)."""
        with torch.no_grad():
            self.duration_predictor.proj.weight.mul_(0.3)
            self.duration_predictor.proj.bias.fill_(math.log(MEAN_FRAMES_PER_SYMBOL + 1))
            self.mel_linear.bias.fill_(MEAN_LOG_MEL)

    def style(
        self, speaker: torch.Tensor, emotion: torch.Tensor, reference_mel: torch.Tensor
    ) -> torch.Tensor:
        """Speaker embedding plus the emotion vector: the label's, or the reference mel's."""
        label = self.emotion_embedding(torch.clamp(emotion, min=0))
        from_reference = self.reference_encoder(reference_mel)
        use_reference = (emotion == REFERENCE_EMOTION)[:, None]
        return self.speaker_embedding(speaker) + torch.where(use_reference, from_reference, label)

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        speaker: torch.Tensor,
        emotion: torch.Tensor,
        reference_mel: torch.Tensor,
        speed: torch.Tensor,
        pitch_shift: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.params.d_model
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < token_lengths[:, None]
        x = self.embedding(tokens) + positions(tokens.shape[1], d, self.mel_linear.weight)
        x = x * mask[..., None]
        for block in self.encoder:
            x = block(x, mask)
        fmask = mask.to(x.dtype)
        keep = fmask[..., None]  # every conv input is zero at padding, as past a sequence's end
        x = (x + self.style(speaker, emotion, reference_mel)[:, None, :]) * keep

        log_durations = self.duration_predictor(x, fmask)
        durations = torch.round((torch.exp(log_durations) - 1) / speed[:, None])
        durations = torch.clamp(durations, min=0) * fmask
        semitone = math.log(2) / 12 / self.params.log_f0_std
        pitch = (self.pitch_predictor(x, fmask) + pitch_shift[:, None] * semitone) * fmask
        x = (x + self.pitch_embedding(pitch[..., None])) * keep
        energy = self.energy_predictor(x, fmask)
        x = (x + self.energy_embedding(energy[..., None])) * keep

        y, frame_mask, mel_lengths = regulate_length(x, durations, self.params.max_frames_per_token)
        y = y + positions(y.shape[1], d, y)
        for block in self.decoder:
            y = block(y, frame_mask)
        mel = (self.mel_linear(y) * frame_mask[..., None].to(y.dtype)).transpose(1, 2)
        mel = mel + self.postnet(mel)
        mel = torch.where(frame_mask[:, None, :], mel, torch.full_like(mel, self.floor))
        return mel, mel_lengths
