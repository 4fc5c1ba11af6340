"""`speedy bench --vocoder`: text-to-mel artifacts measured from text to wave, stage by stage."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speedy.bench.command import bench
from speedy.bench.options import BenchOptions
from speedy.bench.results import DNSMOS_FIGURES, BenchReport
from tests.test_bench import _Media, degraded_copy
from tests.test_cli_errors import assert_clean_error
from tests.test_synth import other_mel_vocoder  # noqa: F401 (a fixture, for test_errors)

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
STAGES = ["front_end", "acoustic", "vocoder"]
TEXTS = "你好，世界！\nHello, world. 这是一个测试。\n"


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short sentences, to keep the run quick."""
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text(TEXTS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pipeline_run(sambert_build: dict, tiny_build: dict, texts: Path, tmp_path_factory):
    """One text-to-wave bench: the exported Sambert (reference), its simplified copy (the same
    network) and a copy with noisy weights, each chained with the tiny HiFi-GAN."""
    work = tmp_path_factory.mktemp("pipeline")
    degraded = degraded_copy(sambert_build["export"], work / "degraded", noise=0.2)
    vocoder = tiny_build["simplify"].path
    artifacts = [sambert_build["export"].path, sambert_build["simplify"].path, degraded]
    command = BenchOptions(
        artifacts=[str(a) for a in artifacts],
        output=work / "report",
        data=texts,
        warmup=0,
        repeat=1,
        vocoder=vocoder,
        save_baseline=work / "baseline.json",
    )
    bench(command)
    report = BenchReport.model_validate_json((work / "report" / "bench.json").read_text())
    return report, work / "report", vocoder


def test_stage_rtfs_add_up_to_the_end_to_end_rtf(pipeline_run) -> None:
    report, _, vocoder = pipeline_run
    assert list(report.artifacts) == ["export", "simplify", "degraded"]
    assert report.settings.vocoder == str(vocoder) and report.settings.chunk_frames is None
    seconds = [u.audio_seconds for u in report.artifacts["export"].utterances]
    assert len(seconds) == 2 and min(seconds) > 0
    assert report.data.audio_seconds == pytest.approx(sum(seconds))
    for name, result in report.artifacts.items():
        stages = result.speed.stage_rtf
        assert stages is not None and list(stages) == STAGES, name
        assert min(stages.values()) > 0
        # one timed round: the stages split the end-to-end time exactly
        assert sum(stages.values()) == pytest.approx(result.speed.rtf, rel=1e-9)
        latency = sum(u.latency_ms for u in result.utterances) / 1000
        assert latency == pytest.approx(result.speed.rtf * report.data.audio_seconds, rel=1e-9)
    # the front end is timed once, in the parent, for every artifact
    assert len({r.speed.stage_rtf["front_end"] for r in report.artifacts.values()}) == 1
    assert report.artifacts["export"].ratios["speedup"] == 1.0


def test_mel_and_audio_quality(pipeline_run) -> None:
    report, _, _ = pipeline_run
    artifacts = report.artifacts
    for result in artifacts.values():
        assert all(np.isfinite(result.quality[k]) for k in DNSMOS_FIGURES)
    assert set(artifacts["export"].quality) == set(DNSMOS_FIGURES)  # the reference itself
    same, noisy = artifacts["simplify"].quality, artifacts["degraded"].quality
    # `mel` is the acoustic model's own mel distance (the same network: none), not the log-mel
    # distance of the vocoded audio; the audio figures compare the vocoder's outputs
    assert same["mel"] < 1e-3 and same["frames_diff"] == 0
    assert same["snr"] > 40 and same["pesq"] > 4.4 and same["stoi"] > 0.99
    assert noisy["mel"] > 0.05 and noisy["mel"] > 100 * same["mel"]
    assert noisy["snr"] < same["snr"] - 20 and noisy["mcd"] > same["mcd"]


def test_report_files(pipeline_run) -> None:
    report, directory, vocoder = pipeline_run
    markdown = (directory / "bench.md").read_text()
    assert "| RTF (front_end / acoustic / vocoder) |" in markdown
    assert "| acoustic batch 1 audio s/s |" in markdown
    assert f"text to wave through the vocoder {vocoder}" in markdown
    for name, result in report.artifacts.items():
        stages = result.speed.stage_rtf or {}
        cell = f"{result.speed.rtf:.3f} (" + " / ".join(f"{stages[s]:.3f}" for s in STAGES) + ")"
        assert f"| {name} |" in markdown and f"| {cell} |" in markdown
    page = (directory / "index.html").read_text()
    assert "RTF (front_end / acoustic / vocoder)" in page
    media = _Media()
    media.feed(page)
    assert media.images == [
        "figures/speed.png",
        "figures/quality.png",
        "figures/spectrogram_0.png",
        "figures/spectrogram_1.png",
    ]
    assert len(media.audio) == 2 * len(report.artifacts)  # every artifact's audio of each text
    for src in media.images + media.audio:
        assert (directory / src).stat().st_size > 1000, src
    for index, utterance in enumerate(report.artifacts["export"].utterances):
        info = sf.info(str(directory / media.audio[index * len(report.artifacts)]))
        assert info.samplerate == 22050
        assert info.frames == round(utterance.audio_seconds * 22050)


@pytest.mark.parametrize(
    ("artifact", "vocoder", "phrases"),
    [
        ("VOCODER", "VOCODER", ["is a hifigan model (mel -> audio)", "does not take"]),
        ("ACOUSTIC", "ACOUSTIC", ["a sambert model (text -> mel): the second does not take"]),
        ("ACOUSTIC", "OTHER", ["mel spec differs", "fmax 8000.0 vs 7600.0"]),
        ("ACOUSTIC", "NOWHERE", ["is not a speedy artifact"]),
    ],
)
def test_errors(
    artifact, vocoder, phrases, sambert_build, tiny_build, request, tmp_path, speedy_cli
) -> None:
    paths = {
        "ACOUSTIC": sambert_build["simplify"].path,
        "VOCODER": tiny_build["simplify"].path,
        "OTHER": request.getfixturevalue("other_mel_vocoder"),
        "NOWHERE": tmp_path / "nowhere",
    }
    code, _, err = speedy_cli(
        "bench", paths[artifact], "--vocoder", paths[vocoder], "-o", tmp_path / "report"
    )
    assert_clean_error(code, err, *phrases)
    assert not (tmp_path / "report").exists()


def test_a_baseline_through_a_vocoder_needs_that_vocoder(
    pipeline_run, sambert_build: dict, texts: Path, tmp_path: Path, speedy_cli
) -> None:
    _, directory, _ = pipeline_run
    artifacts = [sambert_build[s].path for s in ("export", "simplify")]
    code, _, err = speedy_cli(
        "bench", *artifacts, "--data", texts, "--baseline", directory.parent / "baseline.json",
        "-o", tmp_path / "report",
    )  # fmt: skip
    assert_clean_error(code, err, "the baseline has vocoder sha256:", "this run None")
