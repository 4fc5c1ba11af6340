"""Audio-quality metrics on real speech (LJSpeech clips)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speedy import quality
from speedy.errors import SpeedyError
from speedy.quality import (
    METRICS,
    SNR_CAP_DB,
    Budget,
    align,
    compare,
    log_mel_distance,
    mcd_db,
    multi_resolution_stft_distance,
    parse_budget,
    pesq_wb,
    snr_db,
    stoi,
)

ROOT = Path(__file__).resolve().parents[1]
CLIPS = sorted((ROOT / "speedy" / "data" / "clips").glob("*.wav"))
FALLBACK = ROOT.parent / "shared" / "data" / "ljspeech" / "wavs" / "LJ001-0002.wav"
HAS_PESQ = importlib.util.find_spec("pesq") is not None


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    path = CLIPS[0] if CLIPS else FALLBACK
    if not path.exists():
        pytest.skip(f"no speech clip at {path}")
    audio, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return audio.mean(axis=1), rate


def noisy(x: np.ndarray, snr: float, seed: int = 0) -> np.ndarray:
    """`x` plus white noise scaled to exactly `snr` dB."""
    noise = np.random.default_rng(seed).standard_normal(x.size)
    noise *= np.sqrt(np.sum(x**2) / np.sum(noise**2) / 10 ** (snr / 10))
    return x + noise


def test_align_recovers_delay_and_length_difference(speech):
    x, _ = speech
    delayed = np.concatenate([np.zeros(37), x])[: x.size - 5]  # 37 samples late, 5 short
    ref, tst = align(x, delayed)
    assert ref.size == tst.size == x.size - 5 - 37
    np.testing.assert_array_equal(ref, tst)
    early = x[37:]  # test leads the reference
    ref, tst = align(x, early)
    assert ref.size == tst.size == x.size - 37
    np.testing.assert_array_equal(ref, tst)
    longer = np.concatenate([x, np.zeros(5)])
    ref, tst = align(x, longer)
    assert ref.size == tst.size == x.size
    np.testing.assert_array_equal(ref, tst)


def test_align_respects_max_shift_and_rejects_bad_input(speech):
    x, _ = speech
    ref, tst = align(x, np.concatenate([np.zeros(600), x]), max_shift=100)
    assert abs(ref.size - x.size) <= 100 and not np.array_equal(ref, tst)
    with pytest.raises(SpeedyError, match="NaN"):
        align(x, np.full(10, np.nan))
    with pytest.raises(SpeedyError, match="1-D"):
        align(x, np.zeros((2, 10)))


def test_snr(speech):
    x, _ = speech
    assert snr_db(x, x) == SNR_CAP_DB
    assert snr_db(x, np.concatenate([np.zeros(12), x])) == SNR_CAP_DB  # delay is aligned away
    for expected in (10.0, 20.0, 30.0):
        assert snr_db(x, noisy(x, expected)) == pytest.approx(expected, abs=0.5)


def test_mel_distance_zero_and_monotonic(speech):
    x, rate = speech
    assert log_mel_distance(x, x, rate) == 0.0
    distances = [log_mel_distance(x, noisy(x, snr), rate) for snr in (40, 25, 10)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_mcd_and_stft_distance_zero_and_monotonic(speech):
    x, rate = speech
    assert mcd_db(x, x, rate) == 0.0
    assert multi_resolution_stft_distance(x, x) == 0.0
    mcd = [mcd_db(x, noisy(x, snr), rate) for snr in (40, 25, 10)]
    stft = [multi_resolution_stft_distance(x, noisy(x, snr)) for snr in (40, 25, 10)]
    assert 0 < mcd[0] < mcd[1] < mcd[2]
    assert 0 < stft[0] < stft[1] < stft[2]


def test_stoi_identical_and_noise(speech):
    x, rate = speech
    assert stoi(x, x, rate) == pytest.approx(1.0, abs=1e-9)
    scores = [stoi(x, noisy(x, snr), rate) for snr in (20, 5, -5)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


@pytest.mark.skipif(
    importlib.util.find_spec("pystoi") is None, reason="pystoi not installed (reference only)"
)
def test_stoi_matches_pystoi(speech):
    from pystoi import stoi as reference_stoi

    x, rate = speech
    for snr in (20, 0):
        y = noisy(x, snr, seed=3)
        assert stoi(x, y, rate) == pytest.approx(reference_stoi(x, y, rate), abs=1e-3)
    short = x[: rate * 3 // 2]
    y = noisy(short, 10, seed=4)
    assert stoi(short, y, 16000) == pytest.approx(reference_stoi(short, y, 16000), abs=1e-3)


def test_stoi_too_short_raises():
    with pytest.raises(SpeedyError, match="STOI"):
        stoi(np.ones(1000), np.ones(1000), 10000)


@pytest.mark.skipif(not HAS_PESQ, reason="pesq not installed (openspeedy[eval])")
def test_pesq(speech):
    x, rate = speech
    assert pesq_wb(x, x, rate) > 4.4
    assert pesq_wb(x, noisy(x, 5), rate) < 2.0


def test_pesq_missing_package_raises(speech, monkeypatch):
    x, rate = speech
    monkeypatch.setitem(__import__("sys").modules, "pesq", None)  # makes `import pesq` fail
    with pytest.raises(SpeedyError, match="pesq package") as info:
        pesq_wb(x, x, rate)
    assert "openspeedy[eval]" in info.value.fix


def test_compare(speech):
    x, rate = speech
    names = ["snr", "mel", "mcd", "stft", "stoi"] + (["pesq"] if HAS_PESQ else [])
    same = compare(x, np.concatenate([np.zeros(20), x]), rate, names)
    assert list(same) == names
    assert same["snr"] == SNR_CAP_DB and same["mel"] == 0.0 and same["stoi"] > 0.999
    worse = compare(x, noisy(x, 10), rate, names)
    for name in names:
        better = METRICS[name].higher_is_better
        assert (same[name] > worse[name]) == better, name
    assert worse["snr"] == pytest.approx(snr_db(x, noisy(x, 10)))


def test_compare_unknown_metric(speech):
    x, rate = speech
    with pytest.raises(SpeedyError, match="unknown quality metric 'loudness'") as info:
        compare(x, x, rate, ["snr", "loudness"])
    assert all(name in info.value.fix for name in METRICS)


def test_metrics_table():
    assert METRICS["pesq"].higher_is_better and METRICS["stoi"].higher_is_better
    assert not METRICS["mel"].higher_is_better and not METRICS["mcd"].higher_is_better
    function, higher = METRICS["snr"]
    assert function is quality.snr_db and higher


def test_parse_budget_valid():
    assert parse_budget("pesq>=4.0") == [Budget("pesq", ">=", 4.0)]
    budgets = parse_budget(" snr >= 20 , MEL<=0.5,")
    assert budgets == [Budget("snr", ">=", 20.0), Budget("mel", "<=", 0.5)]
    assert [str(b) for b in budgets] == ["snr>=20", "mel<=0.5"]
    assert parse_budget("mcd<=1e-1")[0].threshold == pytest.approx(0.1)


def test_budget_holds():
    at_least, at_most = Budget("pesq", ">=", 4.0), Budget("mel", "<=", 0.5)
    assert at_least.holds(4.0) and at_least.holds(4.3) and not at_least.holds(3.99)
    assert at_most.holds(0.5) and at_most.holds(0.1) and not at_most.holds(0.51)
    assert not at_least.holds(float("nan")) and not at_most.holds(float("nan"))
    with pytest.raises(AttributeError):
        at_least.threshold = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("pesq>4", "cannot parse"),
        ("pesq=>4", "cannot parse"),
        ("pesq>=", "cannot parse"),
        ("pesq>=abc", "cannot parse"),
        ("pesq>=nan", "cannot parse"),
        ("snr>=20;mel<=1", "cannot parse"),
        ("loudness>=3", "unknown quality metric 'loudness'"),
    ],
)
def test_parse_budget_invalid(text, match):
    with pytest.raises(SpeedyError, match=match) as info:
        parse_budget(text)
    assert info.value.fix


def test_a_verdict_checks_the_audio_itself_not_only_against_the_reference() -> None:
    """PESQ of a copy against its reference is relative: two matching noises score high. The
    verdict calls audio the same only when DNSMOS also takes it for speech, and says when the
    weights are seeded."""
    from speedy.listening import Heard

    speech, noise = Heard(None, 3.2), Heard(None, 1.08)
    assert Heard(4.6, 3.2).verdict(speech) == "sounds the same"
    assert Heard(4.6, 3.2).verdict(speech, seeded=True) == (
        "sounds the same (relative to a seeded model)"
    )
    assert Heard(3.5, 2.9).verdict(speech) == "audibly different, DNSMOS 0.30 lower"
    said = Heard(4.55, 1.07).verdict(noise, seeded=True)
    assert said.startswith("not speech-like (DNSMOS 1.07, seeded weights)")
    assert "sounds the same" not in said
    assert "not checked as speech" in Heard(4.6, None).verdict(Heard(None, None))
