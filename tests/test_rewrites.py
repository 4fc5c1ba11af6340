"""Rewrites match what they replace: the real-valued STFT/ISTFT against torch's, the lowered
complex heads and the spare-row RNNs against the originals."""

import pytest
import torch
from torch import nn

from speedy import rewrites
from speedy.errors import SpeedyError
from speedy.rewrites.spectral import RealISTFT, RealSTFT


@pytest.mark.parametrize(("n_fft", "hop", "win"), [(64, 16, 64), (1024, 256, 1024), (63, 16, 48)])
@pytest.mark.parametrize("frames", [3, 37, 200])
def test_real_istft_matches_torch(n_fft: int, hop: int, win: int, frames: int) -> None:
    window = torch.hann_window(win)
    spectrum = torch.randn(2, n_fft // 2 + 1, frames, dtype=torch.complex64, generator=_seed())
    want = torch.istft(spectrum, n_fft, hop, win, window, center=True)
    got = RealISTFT(n_fft, hop, win, window)(spectrum.real, spectrum.imag)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-5


def test_real_stft_matches_torch() -> None:
    wave, window = torch.randn(2, 16 * 40, generator=_seed()), torch.hann_window(60)
    want = torch.stft(wave, 64, 16, 60, window, center=True, return_complex=True)
    real, imag = RealSTFT(64, 16, 60, window)(wave)
    assert (real - want.real).abs().max() <= 1e-5 and (imag - want.imag).abs().max() <= 1e-5


class MaskHead(nn.Module):
    """STFT of a waveform, a complex mask from features, inverse STFT."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(64))
        self.mask = nn.Conv1d(8, 66, 1)

    def forward(self, wave: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(wave, 64, 16, window=self.window, return_complex=True)
        real, imag = self.mask(features).chunk(2, dim=1)
        spectrum = spectrum * torch.complex(real, imag) - 0.5 * spectrum
        return torch.istft(spectrum, 64, 16, window=self.window)


class Polar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(32))

    def forward(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        return torch.istft(torch.polar(magnitude.exp(), phase), 32, 8, window=self.window)


@pytest.mark.parametrize("frames", [5, 21, 64])
def test_istft_rewrite_lowers_complex_heads(frames: int) -> None:
    head = MaskHead().eval()
    wave, features = torch.randn(2, 16 * (frames - 1)), torch.randn(2, 8, frames)
    rewritten, done = rewrites.apply(head, ["istft"], (wave, features))
    assert done == ["istft:."] and not any(p.is_complex() for p in rewritten.buffers())
    assert (rewritten(wave, features) - head(wave, features)).abs().max() <= 1e-4
    polar = Polar().eval()
    magnitude, phase = torch.randn(1, 17, frames), torch.randn(1, 17, frames)
    lowered = rewrites.istft.replace(polar)
    assert (lowered(magnitude, phase) - polar(magnitude, phase)).abs().max() <= 1e-5


def test_istft_rewrite_names_an_op_it_cannot_lower() -> None:
    class Angle(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spectrum = torch.stft(x, 16, 4, return_complex=True)
            return torch.istft(spectrum * torch.angle(spectrum), 16, 4)

    with pytest.raises(SpeedyError, match="no real form for angle"):
        rewrites.istft.replace(Angle())


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_lstm_rewrite_keeps_outputs_and_state(kind: type[nn.RNNBase], batch_first: bool) -> None:
    rnn = kind(6, 5, num_layers=2, bidirectional=True, batch_first=batch_first).eval()
    wrapped = rewrites.lstm.replace(rnn)
    for batch, steps in [(1, 7), (3, 11)]:
        x = torch.randn(batch, steps, 6) if batch_first else torch.randn(steps, batch, 6)
        state = torch.randn(4, batch, 5)
        given = (state, state.clone()) if kind is nn.LSTM else state
        for hx in (None, given):
            want, got = rnn(x, hx), wrapped(x, hx)
            assert rewrites.check_parity(rnn, wrapped, ((x, hx), {}), 1e-6, "test") <= 1e-6
            assert got[0].shape == want[0].shape


def test_rewrite_parity_failure_is_an_error() -> None:
    with pytest.raises(SpeedyError, match="differs from the original"):
        rewrites.check_parity(nn.Tanh(), nn.Sigmoid(), ((torch.ones(3),), {}), 1e-5, "test")


def _seed() -> torch.Generator:
    return torch.Generator().manual_seed(0)
