"""PNG figures for the HTML report (matplotlib, imported only here and only when needed)."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from speedy.audio.mel import AudioSpec, log_mel
from speedy.bench.results import BenchReport
from speedy.errors import SpeedyError


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise SpeedyError(
            "the HTML report needs matplotlib",
            "pip install 'openspeedy[report]', or pass --no-html",
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _value(figures: Mapping[str, float | None], key: str) -> float:
    """A figure for plotting: NaN (not drawn) where it is missing or could not be computed."""
    value = figures.get(key)
    return np.nan if value is None else value


def speed_chart(report: BenchReport, path: Path) -> None:
    """Bars of RTF (latency, for models whose outputs are not audio), speed-up, size and peak
    memory per artifact."""
    plt = pyplot()
    names = list(report.artifacts)
    results = list(report.artifacts.values())
    speed = ("RTF (lower is faster)", [r.speed.rtf for r in results], "{:.3f}")
    if report.data.audio_seconds is None:
        speed = ("latency p50 (ms)", [r.speed.latency_p50_ms for r in results], "{:.3g}")
    panels = [
        speed,
        (f"speed-up vs {report.reference}", [r.ratios["speedup"] for r in results], "{:.2f}x"),
        ("size (MB)", [r.size_bytes / 1e6 for r in results], "{:.1f}"),
        ("peak RSS (MB)", [r.memory.rss_peak_bytes / 1e6 for r in results], "{:.0f}"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.5 * len(names) + 1.6))
    for axis, (title, values, label) in zip(axes, panels, strict=True):
        bars = axis.barh(names, values, color="#4c72b0")
        axis.bar_label(bars, labels=[label.format(v) for v in values], padding=3, fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.invert_yaxis()
        axis.margins(x=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bars(axis, names: list[str], values: list[float], title: str, bottom: float, top: float):
    bars = axis.bar(names, values, color="#55a868")
    axis.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8)
    axis.set_ylim(bottom, top)
    axis.set_title(title, fontsize=10)
    axis.tick_params(axis="x", labelsize=8)


def quality_chart(report: BenchReport, path: Path) -> None:
    """Speed against DNSMOS OVRL (how fast, how big, how good in one view), and PESQ-WB and STOI
    against the reference's output."""
    plt = pyplot()
    figure, (left, middle, right) = plt.subplots(
        1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [2, 1, 1]}
    )
    largest = max(r.ratios["size"] for r in report.artifacts.values())
    for name, result in report.artifacts.items():
        point = (result.ratios["speedup"], _value(result.quality, "dnsmos_ovrl"))
        left.scatter(*point, s=40 + 400 * result.ratios["size"] / largest, alpha=0.6)
        left.annotate(name, point, fontsize=8, xytext=(6, 6), textcoords="offset points")
    if report.source_quality:
        level = _value(report.source_quality, "dnsmos_ovrl")
        left.axhline(level, ls="--", c="grey", label="the recordings")
        left.legend(fontsize=8)
    left.set_xlabel(f"speed-up vs {report.reference} (x)")
    left.set_ylabel("DNSMOS OVRL")
    left.set_title("speed vs quality (marker area ~ size)", fontsize=10)
    left.margins(x=0.25, y=0.25)
    compared = {n: r for n, r in report.artifacts.items() if n != report.reference}
    names = list(compared)
    _bars(
        middle,
        names,
        [_value(r.quality, "pesq") for r in compared.values()],
        f"PESQ-WB vs {report.reference}",
        1.0,
        4.8,
    )
    _bars(
        right,
        names,
        [_value(r.quality, "stoi") for r in compared.values()],
        f"STOI vs {report.reference}",
        0.0,
        1.05,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def spectrograms(
    waves: Mapping[str, np.ndarray], reference: str, audio: AudioSpec, path: Path
) -> None:
    """Log-mel spectrogram of each version of one clip, beside its difference to the reference."""
    plt = pyplot()
    mels = {name: log_mel(wave.astype(np.float32), audio) for name, wave in waves.items()}
    target = mels[reference]
    figure, axes = plt.subplots(
        len(mels),
        2,
        figsize=(12, 1.5 * len(mels) + 0.8),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    seconds = audio.hop_length / audio.sample_rate
    image = None
    for row, (name, mel) in zip(axes, mels.items(), strict=True):
        extent = (0, mel.shape[1] * seconds, 0, mel.shape[0])
        row[0].imshow(
            mel,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="magma",
            vmin=np.log(audio.log_clamp),
            vmax=2,
        )
        row[0].set_ylabel(name, fontsize=9)
        if name == reference:
            row[1].text(0.5, 0.5, "the reference", ha="center", va="center", fontsize=9)
            row[1].set_axis_off()
            continue
        frames = min(mel.shape[1], target.shape[1])
        difference = np.abs(mel[:, :frames] - target[:, :frames])
        image = row[1].imshow(
            difference,
            origin="lower",
            aspect="auto",
            cmap="viridis",
            extent=(0, frames * seconds, 0, mel.shape[0]),
            vmin=0,
            vmax=2,
        )
        row[1].set_title(f"mean {difference.mean():.3f}", fontsize=8, loc="right")
    axes[0][0].set_title("log-mel (mel bin over seconds)", fontsize=9, loc="left")
    axes[0][1].set_title(f"|log-mel - {reference}|", fontsize=9, loc="left")
    if image is not None:
        figure.colorbar(image, ax=axes[:, 1].tolist(), shrink=0.8)
    for axis in axes[-1]:
        axis.set_xlabel("seconds", fontsize=8)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def draw_all(
    report: BenchReport,
    clips: Sequence[Mapping[str, np.ndarray]],
    audio: AudioSpec,
    directory: Path,
) -> None:
    """The report's figures in `directory`: speed.png, and for audio models quality.png and
    spectrogram_<i>.png per clip (`clips`: per clip, version -> waveform; empty otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    speed_chart(report, directory / "speed.png")
    if clips:
        quality_chart(report, directory / "quality.png")
    for index, waves in enumerate(clips):
        spectrograms(waves, report.reference, audio, directory / f"spectrogram_{index}.png")
