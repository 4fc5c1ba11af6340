"""Speech blocks that no exporter takes as they are, for `speedy export` diagnostics and rewrites:
a Vocos-style complex ISTFT head after a ConvNeXt block, an LSTM over the frames, and a count
read from tensor values."""

import torch
import torch.nn.functional as F
from torch import nn

N_MELS = 80
IO_SPEC = {
    "inputs": [{"name": "mel", "dtype": "float32", "shape": ["batch", N_MELS, "frames"]}],
    "outputs": ["audio"],
    "dims": {"batch": {"min": 1, "opt": 1, "max": 2}, "frames": {"min": 8, "opt": 32, "max": 96}},
    "parity": {"sizes": [{"frames": 19}, {"batch": 2, "frames": 40}], "atol": 1.0e-4},
}


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 3 * dim)
        self.pwconv2 = nn.Linear(3 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).transpose(1, 2))
        return x + self.pwconv2(F.gelu(self.pwconv1(y))).transpose(1, 2)


class ISTFTHead(nn.Module):
    """Magnitude and phase -> a complex spectrum -> torch.istft, as Vocos does."""

    def __init__(self, dim: int, n_fft: int = 64, hop_length: int = 16) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.out = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        magnitude, phase = self.out(x.transpose(1, 2)).transpose(1, 2).chunk(2, dim=1)
        spectrum = torch.exp(magnitude).clamp(max=1e2) * (torch.cos(phase) + 1j * torch.sin(phase))
        return torch.istft(spectrum, self.n_fft, self.hop_length, window=self.window, center=True)


class Vocos(nn.Module):
    """mel (batch, 80, frames) -> audio (batch, 16 * (frames - 1))."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv1d(N_MELS, 32, 7, padding=3)
        self.backbone = ConvNeXtBlock(32)
        self.head = ISTFTHead(32)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.embed(mel)))


class Recurrent(nn.Module):
    """mel -> an LSTM over the frames -> a linear map back to channels (batch, 4, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(N_MELS, 24)
        self.rnn = nn.LSTM(24, 24, batch_first=True, bidirectional=True)
        self.out = nn.Linear(48, 4)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.proj(mel.transpose(1, 2)))
        return self.out(hidden).transpose(1, 2)


class Repeater(nn.Module):
    """Repeats its features a number of times read from their values (a naive upsampler)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(N_MELS, 8, 3, padding=1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv(mel)
        times = int((x > 0).sum().item()) % 3 + 1
        return torch.cat([x * step for step in range(times)], dim=2)


def seeded(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls()


def vocos() -> nn.Module:
    return seeded(Vocos)


def recurrent() -> nn.Module:
    return seeded(Recurrent)


def repeater() -> nn.Module:
    return seeded(Repeater)
