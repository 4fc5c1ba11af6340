"""The bench report directory: bench.json, bench.md and index.html with figures and audio.

REPORT_DIR/bench.json              every figure, per utterance too, machine and versions
REPORT_DIR/bench.md                the tables
REPORT_DIR/index.html              tables, charts, spectrograms, <audio> players (A/B)
REPORT_DIR/figures/*.png           charts and spectrogram comparisons
REPORT_DIR/audio/<i>/<clip>.wav    each version of each clip (recordings: audio/source/)
"""

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from speedy.artifact import directory_files
from speedy.audio.io import write_audio
from speedy.audio.mel import AudioSpec
from speedy.bench import plots
from speedy.bench.results import BenchReport
from speedy.bench.runner import BenchRun
from speedy.outputs import atomic_dir

SOURCE = "recording"

REPORT_FILE = "bench.json"  # every report directory holds it


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


def _f(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _millis(value: float) -> str:
    """Milliseconds, with decimals where they are few."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def _audio(report: BenchReport) -> bool:
    """Whether the outputs are audio (real-time factors, audio throughput) or tensors only."""
    return report.data.audio_seconds is not None


def _stages(report: BenchReport) -> list[str]:
    """The stages timed apart (text to wave: front_end, acoustic, vocoder), or none."""
    return list(next(iter(report.artifacts.values())).speed.stage_rtf or {})


def _speed_table(report: BenchReport) -> Table:
    batches, stages, audio = report.settings.batches, _stages(report), _audio(report)
    batched = "acoustic batch" if report.settings.vocoder else "batch"
    header = ["artifact", "kind", "precision", "size MB", "load s", "peak RSS MB"]
    header += ["RTF" + (f" ({' / '.join(stages)})" if stages else "")] if audio else []
    header += ["speed-up", "latency p50/p95 ms"]
    header += [f"{batched} {b} {'audio s/s' if audio else 'items/s'}" for b in batches]
    if report.settings.chunk_frames:
        header += ["first chunk p50/p95 ms", "stream RTF"]
    rows = []
    for name, r in report.artifacts.items():
        ratios = r.ratios
        each = " / ".join(f"{r.speed.stage_rtf[s]:.3f}" for s in stages if r.speed.stage_rtf)
        row = [
            name,
            r.kind,
            r.precision,
            f"{r.size_bytes / 1e6:.1f} ({ratios['size']:.2f}x)",
            f"{r.load_seconds:.2f} ({ratios['load_time']:.2f}x)",
            f"{r.memory.rss_peak_bytes / 1e6:.0f} ({ratios['rss_peak']:.2f}x)",
        ]
        row += [f"{r.speed.rtf:.3f}" + (f" ({each})" if each else "")] if audio else []
        row += [
            f"{ratios['speedup']:.2f}x",
            f"{_millis(r.speed.latency_p50_ms)} / {_millis(r.speed.latency_p95_ms)}",
        ]
        rates = r.speed.throughput if audio else r.speed.items_per_second
        row += [f"{rates[str(b)]:.2f} ({ratios[f'throughput_b{b}']:.2f}x)" for b in batches]
        if report.settings.chunk_frames:
            row += [
                f"{_f(r.speed.first_chunk_p50_ms, '{:.0f}')} / "
                f"{_f(r.speed.first_chunk_p95_ms, '{:.0f}')} "
                f"({ratios.get('first_chunk_speedup', 1.0):.2f}x faster)",
                _f(r.speed.stream_rtf),
            ]
        rows.append(row)
    return Table("Speed, memory, size (ratios to the reference, same run)", header, rows)


QUALITY_COLUMNS = [
    ("DNSMOS SIG", "dnsmos_sig", "{:.2f}"),
    ("BAK", "dnsmos_bak", "{:.2f}"),
    ("OVRL", "dnsmos_ovrl", "{:.2f}"),
    ("P.808", "dnsmos_p808", "{:.2f}"),
    ("PESQ-WB", "pesq", "{:.2f}"),
    ("STOI", "stoi", "{:.3f}"),
    ("MCD dB", "mcd", "{:.2f}"),
    ("SNR dB", "snr", "{:.1f}"),
    ("log-mel", "mel", "{:.3f}"),
    ("seam SNR dB (min)", "seam_snr", "{:.1f}"),
    ("tensor SNR dB", "tensor_snr", "{:.1f}"),
    ("max abs error", "max_error", "{:.3g}"),
    ("relative error", "rel_error", "{:.3g}"),
]


def _quality_table(report: BenchReport) -> Table:
    """The quality columns of the model's kind: DNSMOS and audio figures for audio, tensor
    error for tensors."""
    found = [r.quality for r in report.artifacts.values()] + [report.source_quality or {}]
    columns = [c for c in QUALITY_COLUMNS if any(c[1] in q for q in found)]
    header = ["artifact"] + [title for title, _, _ in columns]
    rows = []
    if report.source_quality:
        quality = report.source_quality
        rows.append([SOURCE] + [_f(quality.get(key), p) for _, key, p in columns])
    for name, r in report.artifacts.items():
        rows.append([name] + [_f(r.quality.get(key), p) for _, key, p in columns])
    against = "PESQ/STOI/MCD/SNR/log-mel" if _audio(report) else "tensor errors"
    title = f"Quality (means over clips; {against} against {report.reference}"
    if any(r.checkpoint is None for r in report.artifacts.values()):
        title += ", relative to a seeded model: only DNSMOS says whether it is speech"
    return Table(title + ")", header, rows)


def _task_table(report: BenchReport) -> Table | None:
    """The task's own speed figures (e.g. an autoregressive model's per-step times), if any."""
    keys = list(dict.fromkeys(k for r in report.artifacts.values() for k in r.task_figures))
    if not keys:
        return None
    rows = [
        [name, *(_f(r.task_figures.get(key), "{:.4g}") for key in keys)]
        for name, r in report.artifacts.items()
    ]
    return Table("Task figures (medians over rounds)", ["artifact", *keys], rows)


def _gate_table(report: BenchReport) -> Table | None:
    if report.gate is None:
        return None
    rows = [
        [
            c["artifact"],
            c["figure"],
            f"{c['baseline']:.4g}",
            f"{c['now']:.4g}",
            f"{'>=' if c['higher_is_better'] else '<='} {c['limit']:.4g}",
            "ok" if c["passed"] else "REGRESSED",
        ]
        for c in report.gate["checks"]
    ]
    verdict = "passed" if report.gate["passed"] else "FAILED"
    return Table(
        f"Regression gate against {report.gate['baseline']}: {verdict}",
        ["artifact", "figure", "baseline", "now", "allowed", "status"],
        rows,
    )


def summary_table(report: BenchReport) -> Table:
    """The headline figures in a table narrow enough for a terminal; bench.md has them all."""
    present = [r.quality for r in report.artifacts.values()]
    keys = [k for k in ("dnsmos_ovrl", "pesq", "mel", "tensor_snr") if any(k in q for q in present)]
    audio = _audio(report)
    header = ["artifact", "RTF" if audio else "latency ms", "speed-up", "MB", "RSS MB", *keys]
    rows = [
        [
            name,
            f"{r.speed.rtf:.3f}" if r.speed.rtf is not None else _millis(r.speed.latency_p50_ms),
            f"{r.ratios['speedup']:.2f}x",
            f"{r.size_bytes / 1e6:.1f}",
            f"{r.memory.rss_peak_bytes / 1e6:.0f}",
            *(_f(r.quality.get(key)) for key in keys),
        ]
        for name, r in report.artifacts.items()
    ]
    note = f" ({report.runs_note})" if report.runs_note else ""
    return Table(f"{report.recipe} against {report.reference}{note}", header, rows)


def tables(report: BenchReport) -> list[Table]:
    found = [_speed_table(report), _task_table(report), _quality_table(report), _gate_table(report)]
    return [t for t in found if t is not None]


def _summary_lines(report: BenchReport) -> list[str]:
    m, s, d = report.machine, report.settings, report.data
    commit = (m.get("git_commit") or "unknown")[:12] + (" (dirty)" if m.get("git_dirty") else "")
    stream = "off"
    if s.streaming:
        context = f"context {s.streaming['left']} + {s.streaming['right']} frames"
        stream = f"{s.chunk_frames}-frame chunks ({s.chunk_seconds} s), {context}"
    chain = f", text to wave through the vocoder {s.vocoder} (RTF end to end)" if s.vocoder else ""
    audio = "" if d.audio_seconds is None else f", {d.audio_seconds:.1f} s of audio"
    note = [f"runs: {report.runs_note}"] if report.runs_note else []
    return [
        f"recipe {report.recipe}, reference {report.reference}{chain}",
        *note,
        f"data: {len(d.files)} examples{audio} ({d.path})",
        f"device {s.device}, {s.threads} thread(s), warmup {s.warmup}, repeat {s.repeat}, "
        f"batch {s.batches} at {s.batch_sizes}, streaming {stream}",
        f"machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, "
        f"GPU {m.get('gpu') or 'none'}, load average {m.get('load_average')}",
        f"speedy {m['tools'].get('openspeedy', '?')} at commit {commit}, {m.get('measured_at')}",
    ]


def markdown(report: BenchReport) -> str:
    lines = [f"# speedy bench: {report.recipe}", ""]
    lines += [f"- {line}" for line in _summary_lines(report)]
    for table in tables(report):
        lines += ["", f"## {table.title}", ""]
        lines.append("| " + " | ".join(table.header) + " |")
        lines.append("|" + "|".join("---" for _ in table.header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
audio { height: 2em; width: 16em; }
.regressed { color: #b00; font-weight: bold; }
"""


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="regressed">{html.escape(c)}</td>'
            if c == "REGRESSED"
            else f"<td>{html.escape(c)}</td>"
            for c in row
        )
        + "</tr>"
        for row in table.rows
    )
    return f"<h2>{html.escape(table.title)}</h2><table><tr>{head}</tr>{body}</table>"


def _clip_section(report: BenchReport, index: int, audio_paths: dict[str, str]) -> str:
    clip = report.data.files[index]
    rows = []
    for name, src in audio_paths.items():
        result = report.artifacts.get(name)
        quality = result.utterances[index].quality if result else {}
        figures = ", ".join(
            f"{key} {_f(quality[key], '{:.2f}')}"
            for key in ("dnsmos_ovrl", "pesq", "stoi")
            if key in quality
        )
        rows.append(
            f"<tr><td>{html.escape(name)}</td>"
            f'<td><audio controls preload="none" src="{html.escape(src)}"></audio></td>'
            f"<td>{html.escape(figures)}</td></tr>"
        )
    return (
        f"<h3>{html.escape(clip)}</h3>"
        f'<img src="figures/spectrogram_{index}.png" alt="spectrograms of {html.escape(clip)}">'
        f"<table><tr><th>version</th><th>listen</th><th>figures</th></tr>{''.join(rows)}</table>"
    )


def page(report: BenchReport, audio_paths: list[dict[str, str]]) -> str:
    """The HTML page; `audio_paths` (per clip: version -> WAV path) is empty for models that
    make no audio."""
    summary = "".join(f"<li>{html.escape(line)}</li>" for line in _summary_lines(report))
    charts = '<h2>Charts</h2><img src="figures/speed.png" alt="speed, size and memory chart">'
    listen = ""
    if audio_paths:
        charts += '<img src="figures/quality.png" alt="speed against quality chart">'
        listen = "<h2>Listen and compare (A/B)</h2>" + "".join(
            _clip_section(report, index, paths) for index, paths in enumerate(audio_paths)
        )
    machine = html.escape(json.dumps(report.machine, indent=2))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>speedy bench: {html.escape(report.recipe)}</title><style>{STYLE}</style></head>"
        f"<body><h1>speedy bench: {html.escape(report.recipe)}</h1><ul>{summary}</ul>"
        + "".join(_html_table(t) for t in tables(report))
        + charts
        + listen
        + f"<h2>Machine and versions</h2><pre>{machine}</pre></body></html>\n"
    )


def _write_audio(run: BenchRun, directory: Path) -> list[dict[str, str]]:
    """WAVs of every version of every clip; per clip, version -> path relative to `directory`."""
    versions = ({SOURCE: run.recordings} if run.recordings else {}) | run.audio
    paths: list[dict[str, str]] = [{} for _ in run.report.data.files] if run.audio else []
    for number, (name, waves) in enumerate(versions.items()):
        folder = "source" if name == SOURCE else str(number)
        for index, wave in enumerate(waves):
            stem = re.sub(r"[^\w.-]", "_", run.report.data.files[index])
            relative = f"audio/{folder}/{index:03d}_{stem}.wav"
            write_audio(directory / relative, wave, run.sample_rate)
            paths[index][name] = relative
    return paths


def write_report(run: BenchRun, audio: AudioSpec, out_dir: Path, force: bool, html_page: bool):
    """Write the report directory atomically: JSON and Markdown, and with `html_page` the page,
    its figures and the audio it plays."""
    with atomic_dir(out_dir, force, REPORT_FILE) as tmp:
        (tmp / "bench.md").write_text(markdown(run.report))
        if html_page:
            paths = _write_audio(run, tmp)
            versions = ({SOURCE: run.recordings} if run.recordings else {}) | run.audio
            clips = [{name: w[i] for name, w in versions.items()} for i in range(len(paths))]
            plots.draw_all(run.report, clips, audio, tmp / "figures")
            (tmp / "index.html").write_text(page(run.report, paths))
        run.report.files = directory_files(tmp, REPORT_FILE)  # what --force may later replace
        (tmp / REPORT_FILE).write_text(run.report.model_dump_json(indent=2) + "\n")
