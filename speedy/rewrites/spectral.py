"""STFT and inverse STFT on real tensors: DFT bases as convolutions, so that a graph holds no
complex values (which no ONNX exporter converts) and keeps a dynamic number of frames. The bases
are buffers named `dft_*`, which quantization keeps float32 (`speedy.quantize.graph.FIXED`)."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def _frame_window(window: torch.Tensor | None, n_fft: int, win_length: int) -> torch.Tensor:
    """The window as torch.stft uses it: ones when absent, zero-padded to n_fft, centred."""
    if window is None:
        window = torch.ones(win_length)
    left = (n_fft - window.numel()) // 2
    return F.pad(window.double(), (left, n_fft - window.numel() - left))


def _bases(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2*pi*k*n/N for the onesided bins k (rows) and samples n (columns)."""
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * bins[:, None] * torch.arange(n_fft, dtype=torch.float64) / n_fft
    return torch.cos(angle), torch.sin(angle)


class RealSTFT(nn.Module):
    """torch.stft(x, n_fft, hop, win_length, window, center=True, pad_mode='reflect',
    return_complex=True) as (real, imag) parts of shape (batch, n_fft // 2 + 1, frames)."""

    def __init__(
        self, n_fft: int, hop_length: int, win_length: int, window: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        cos, sin = _bases(n_fft)
        frame = _frame_window(window, n_fft, win_length)
        kernel = torch.cat([cos * frame, -sin * frame])  # (2 * bins, n_fft)
        self.register_buffer("dft_basis", kernel.float()[:, None, :], persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.n_fft // 2
        padded = F.pad(x.unsqueeze(1), (pad, pad), mode="reflect")
        spec = F.conv1d(padded, self.dft_basis, stride=self.hop_length)
        return spec.chunk(2, dim=1)


class RealISTFT(nn.Module):
    """torch.istft(torch.complex(real, imag), n_fft, hop, win_length, window, center=True) of
    (batch, n_fft // 2 + 1, frames) parts: the inverse real DFT and the window in one transposed
    convolution (the overlap-add), divided by the summed squared window, centre padding cut."""

    def __init__(
        self, n_fft: int, hop_length: int, win_length: int, window: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        cos, sin = _bases(n_fft)
        weight = torch.full((n_fft // 2 + 1, 1), 2.0)
        weight[0] = 1.0
        if n_fft % 2 == 0:
            weight[-1] = 1.0  # DC and Nyquist appear once in a onesided spectrum
        frame = _frame_window(window, n_fft, win_length)
        kernel = torch.cat([weight * cos, -weight * sin]) * frame / n_fft
        self.register_buffer("dft_basis", kernel.float()[:, None, :], persistent=False)
        self.register_buffer("dft_envelope", (frame**2).float()[None, None, :], persistent=False)

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        frames = torch.cat([real, imag], dim=1)
        audio = F.conv_transpose1d(frames, self.dft_basis, stride=self.hop_length)
        ones = torch.ones_like(real[:1, :1])
        envelope = F.conv_transpose1d(ones, self.dft_envelope, stride=self.hop_length)
        pad = self.n_fft // 2
        end = audio.shape[-1] - pad
        audio = audio[..., pad:end] / envelope[..., pad:end].clamp(min=1e-11)
        return audio.squeeze(1)
