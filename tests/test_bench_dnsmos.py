"""DNSMOS without librosa gives the figures of the `speechmos` reference code on the same audio."""

from pathlib import Path

import numpy as np
import pytest

from speedy.audio.io import read_audio
from speedy.bench.dnsmos import SAMPLE_RATE, Dnsmos, p808_features
from speedy.errors import SpeedyError
from speedy.recipe import DEFAULT_DATA

librosa = pytest.importorskip("librosa", reason="the reference code needs the [dev] extra")
pytest.importorskip("requests", reason="speechmos.dnsmos imports requests ([dev] extra)")


def clip(name: str) -> np.ndarray:
    audio = read_audio(DEFAULT_DATA / name, SAMPLE_RATE)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def test_p808_features_match_librosa() -> None:
    """The reference's melspectrogram + power_to_db(ref=max), same float32 steps."""
    audio = np.tile(clip("LJ001-0004.wav"), 2)[: int(9.01 * SAMPLE_RATE) - 160]  # one window
    mel = librosa.feature.melspectrogram(
        y=audio, sr=SAMPLE_RATE, n_fft=321, hop_length=160, n_mels=120
    )
    expected = ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T
    actual = p808_features(audio)
    assert actual.shape == expected.shape == (900, 120)  # what the P.808 model takes
    np.testing.assert_allclose(actual, expected, atol=2e-5)


@pytest.mark.parametrize("name", ["LJ001-0002.wav", "LJ001-0004.wav"])  # 5 windows, 1 window
def test_scores_match_the_reference(name: str) -> None:
    from speechmos import dnsmos as reference

    audio = clip(name)
    expected = reference.run(audio, SAMPLE_RATE)
    scores = Dnsmos().score_16k(audio)
    assert scores.sig == pytest.approx(expected["sig_mos"], abs=0.01)
    assert scores.bak == pytest.approx(expected["bak_mos"], abs=0.01)
    assert scores.ovrl == pytest.approx(expected["ovrl_mos"], abs=0.01)
    assert scores.p808 == pytest.approx(expected["p808_mos"], abs=0.01)
    assert 2.0 < scores.ovrl < 4.5  # real speech


def test_other_rates_are_resampled() -> None:
    speech = read_audio(Path(DEFAULT_DATA / "LJ001-0004.wav"), 22050)
    at_16k = Dnsmos().score_16k(clip("LJ001-0004.wav"))
    at_22k = Dnsmos().score(speech, 22050)
    assert at_22k.ovrl == pytest.approx(at_16k.ovrl, abs=0.05)


def test_out_of_range_audio() -> None:
    with pytest.raises(SpeedyError, match=r"finite audio in \[-1, 1\]"):
        Dnsmos().score_16k(np.full(16000, 2.0, dtype=np.float32))
