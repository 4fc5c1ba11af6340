"""A bench run: every artifact in its own worker process, all on the same inputs, timed in turns.

The inputs are made once, here, and handed to every worker. Workers take turns on every round
(as `speedy.measure` does within one process), so machine noise spreads evenly over them and the
ratios to the reference are fair even when absolute figures drift; only one computes at a time.

With a vocoder, the artifacts' outputs are chained into it (text to wave): the front end (text to
the model's inputs) is timed here, once for all, since it is the same for every artifact; each
worker times its artifact and the vocoder on every utterance and saves the vocoder's outputs for
the quality figures.
"""

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from speedy.artifact import Artifact, file_digest
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.audio.io import read_audio
from speedy.bench import scores
from speedy.bench.dnsmos import Dnsmos, models_dir
from speedy.bench.machine import bench_machine
from speedy.bench.options import BenchOptions
from speedy.bench.pool import WorkerProcess, workers
from speedy.bench.protocol import (
    Batch,
    BatchTiming,
    FirstChunk,
    Load,
    Loaded,
    MeasureTask,
    MemoryPeaks,
    R,
    ReadMemory,
    Request,
    SavedOutputs,
    SaveOutputs,
    TaskFigures,
    Timings,
    Whole,
)
from speedy.bench.results import (
    ArtifactResult,
    BenchReport,
    DataInfo,
    Memory,
    Settings,
    Speed,
    Utterance,
)
from speedy.chain import check_chain
from speedy.console import console, notice
from speedy.data_source import data_files, example_names
from speedy.devices import check_device, require_cuda
from speedy.errors import SpeedyError
from speedy.measure import call_seconds
from speedy.model_spec import ModelSpec
from speedy.runtime import check_feeds
from speedy.scratch import scratch
from speedy.specs import Feeds
from speedy.tasks import Streamer, Task, makes_audio, streamer_of, task_for


def _parse_item(item: str) -> tuple[str, Path]:
    """`NAME=PATH`, or a path named after its directory."""
    label, sep, rest = item.partition("=")
    if sep and label and not Path(item).exists():
        return label, Path(rest)
    return Path(item).resolve().name, Path(item)


def name_artifacts(items: Sequence[str], reference: str | None) -> tuple[dict[str, Path], str]:
    """Artifacts named by `NAME=PATH` or their directory's name, the reference first.

    `reference` is one of the names, a path or `NAME=PATH` (added when not among `items`), or
    None (the first artifact).
    """
    named: dict[str, Path] = {}
    for item in items:
        name, path = _parse_item(item)
        if name in named:
            raise SpeedyError(
                f"two artifacts are named '{name}' ({named[name]} and {path})",
                "label them as NAME=PATH",
            )
        named[name] = path
    if not named:
        raise SpeedyError("no artifacts to bench", "pass one or more artifact directories")
    if reference is None:
        reference = next(iter(named))
    elif reference not in named:
        name, path = _parse_item(reference)
        same = [n for n, p in named.items() if p.resolve() == path.resolve()]
        if same:
            name = same[0]
        elif name in named:
            raise SpeedyError(
                f"the reference {path} and the artifact {named[name]} are both named '{name}'",
                "label the reference as --reference NAME=PATH",
            )
        named.setdefault(name, path)
        reference = name
    return {reference: named[reference], **named}, reference


def check_same_model(artifacts: Mapping[str, Artifact], reference: str) -> ModelSpec:
    """The reference's model spec, after checking every artifact holds the same network; those
    built from another checkpoint are named in a notice."""
    expected = artifacts[reference].manifest.model
    for name, artifact in artifacts.items():
        spec = artifact.manifest.model
        if key := expected.same_model(spec):
            raise SpeedyError(
                f"artifact '{name}' is a model of recipe '{spec.recipe}' whose {key} differs "
                f"from the reference '{reference}' (recipe '{expected.recipe}')",
                "bench artifacts built from one recipe against a reference of that recipe",
            )
        if spec.checkpoint != expected.checkpoint:
            notice(
                f"'{name}' comes from checkpoint {_checkpoint(spec)}, the reference from "
                f"{_checkpoint(expected)}: its figures against the reference are left out (they "
                "would compare two models, not measure a conversion's loss)"
            )
    return expected


def _checkpoint(spec: ModelSpec) -> str:
    return spec.checkpoint.describe() if spec.checkpoint else "none (seeded weights)"


def _batch_sizes(task: Task, batches: Sequence[int]) -> list[dict[str, int]]:
    spec, dim = task.spec, task.batch_dim
    if not batches:
        return []
    if dim not in spec.dims:
        if set(batches) == {1}:  # the default: a model of one item per run has no batched runs
            notice(f"no batched throughput: recipe {spec.recipe} has no batch dim")
            return []
        raise SpeedyError(f"recipe {spec.recipe} has no batch dim", "pass only --batch 1")
    allowed = spec.dims[dim]
    for size in batches:
        if size not in allowed:
            raise SpeedyError(
                f"--batch {size} is outside the model's batch range {allowed.min}..{allowed.max}",
                f"pick batch sizes within the range, or widen dims.{dim} and rebuild",
            )
    return [spec.sizes({dim: size}) for size in dict.fromkeys(batches)]


def _check_inputs(artifacts: Mapping[str, Artifact], named: Sequence[tuple[str, Feeds]]) -> None:
    """Every input fits every artifact's declared ranges (compiled ones may be narrower), on
    the graphs that take the inputs as they are."""
    for artifact_name, artifact in artifacts.items():
        graphs = artifact.manifest.graphs.values()
        for name, feeds in named:
            for graph in [g for g in graphs if {s.name for s in g.inputs} == set(feeds)]:
                try:
                    check_feeds(graph.inputs, artifact.manifest.model.dims, feeds)
                except SpeedyError as exc:
                    raise SpeedyError(f"{artifact_name}, {name}: {exc.problem}", exc.fix) from None


def _front_end_seconds(task: Task, example: Any, repeat: int) -> float:
    """Median seconds over `repeat` runs of the task's front end on one example (`inputs`:
    a text-to-mel model's from the text)."""
    return statistics.median(call_seconds(lambda: task.inputs(example), repeat, warmup=0))


@dataclass
class Prepared:
    """Checked options with the inputs made: everything up to the measurements."""

    options: BenchOptions
    artifacts: dict[str, Artifact]  # by name, the reference first
    reference: str
    spec: ModelSpec
    task: Task
    data: Path
    names: list[str]
    recordings: list[Path] | None
    utterances: list[Feeds]
    batches: dict[int, Feeds]
    batch_sizes: dict[str, int]  # the symbolic sizes of the batched runs, batch aside
    streamer: Streamer | None
    digest: str  # of the data files: the same on any machine (features differ in their last bits)
    front_end: list[float] | None = None  # with a vocoder: seconds per utterance
    vocoder_digest: str | None = None
    final: Task | None = None  # the task whose outputs are the end product (vocoder's, chained)


def prepare(options: BenchOptions) -> Prepared:
    """Check the artifacts, device and data and make the inputs, before anything is timed."""
    if check_device(options.device) == "cuda":
        require_cuda()
    named, reference = name_artifacts(options.artifacts, options.reference)
    artifacts = {name: Artifact.open(path) for name, path in named.items()}
    spec = check_same_model(artifacts, reference)
    task, final, vocoder_digest = task_for(spec), None, None
    if options.vocoder is not None:
        vocoder = Artifact.open(options.vocoder).manifest
        check_chain(spec, vocoder.model, (artifacts[reference].path, options.vocoder))
        final, vocoder_digest = task_for(vocoder.model), vocoder.digest
    if makes_audio(final or task):
        models_dir()  # a clear error now, not after the measurements, when speechmos is missing
    sizes = _batch_sizes(task, options.batches)
    data = options.data or task.default_data
    examples = task.read_data(data, FeatureCache(default_cache_dir()))
    names = example_names(data, task.data_suffixes, len(examples))
    utterances = [task.inputs(example) for example in examples]
    batches = {s[task.batch_dim]: task.sized_inputs(examples, s) for s in sizes}
    named_inputs = [*zip(names, utterances, strict=True)]
    _check_inputs(artifacts, named_inputs + [(f"batch {b}", f) for b, f in batches.items()])
    streamer = None
    if options.chunk_seconds and final is None:
        streamer = streamer_of(task, options.chunk_seconds)
        if streamer is None:
            notice(f"no streaming figures: a {task.name} model does not stream")
    return Prepared(
        options=options,
        artifacts=artifacts,
        reference=reference,
        spec=spec,
        task=task,
        data=data,
        names=names,
        recordings=None if final else task.recordings(data, len(examples)),
        utterances=utterances,
        batches=batches,
        batch_sizes={k: v for k, v in (sizes[0] if sizes else {}).items() if k != task.batch_dim},
        streamer=streamer,
        digest=file_digest(data_files(data, task.data_suffixes, task.data_kind)),
        front_end=[_front_end_seconds(task, e, options.repeat) for e in examples]
        if final
        else None,
        vocoder_digest=vocoder_digest,
        final=final,
    )


def _save_inputs(prepared: Prepared, path: Path) -> None:
    arrays = {}
    for index, feeds in enumerate(prepared.utterances):
        arrays |= {f"utterance/{index}/{name}": value for name, value in feeds.items()}
    for size, feeds in prepared.batches.items():
        arrays |= {f"batch/{size}/{name}": value for name, value in feeds.items()}
    np.savez(path, **arrays)


def _rounds(
    pool: Mapping[str, WorkerProcess],
    progress: Progress,
    what: str,
    options: BenchOptions,
    request: Request[R],
) -> dict[str, list[R]]:
    """`warmup` + `repeat` rounds of `request` with the workers taking turns; the timed replies."""
    rounds = options.warmup + options.repeat
    task = progress.add_task(what, total=rounds * len(pool))
    kept: dict[str, list[R]] = {name: [] for name in pool}
    for index in range(rounds):
        for name, worker in pool.items():
            reply = worker.call(request)
            if index >= options.warmup:
                kept[name].append(reply)
            progress.advance(task)
    progress.remove_task(task)
    return kept


@dataclass
class Measured:
    """One worker's replies, and the outputs it saved."""

    load: Loaded
    whole: list[Timings]
    batches: dict[int, list[BatchTiming]]
    memory: MemoryPeaks
    figures: list[TaskFigures]  # the task's own speed figures, per round
    first_chunk: list[Timings] | None
    streamed: SavedOutputs
    outputs: list[Feeds]
    final: list[Feeds] | None  # the vocoder's outputs, when chained


def _with_front_end(reply: Timings, front_end: Sequence[float]) -> Timings:
    """A worker's reply on a text-to-wave round, with the front end's seconds added."""
    stages = {"front_end": list(front_end), **reply.stages}
    return Timings(seconds=[sum(s) for s in zip(*stages.values(), strict=True)], stages=stages)


def _load_outputs(directory: Path, count: int, suffix: str) -> list[Feeds]:
    outputs = []
    for i in range(count):
        with np.load(directory / f"{i}{suffix}.npz", allow_pickle=False) as stored:
            outputs.append({key: stored[key] for key in stored.files})
    return outputs


def _measure(prepared: Prepared) -> dict[str, Measured]:
    options, streaming = prepared.options, prepared.streamer is not None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    paths = {name: artifact.path for name, artifact in prepared.artifacts.items()}
    chunk = options.chunk_seconds if streaming else None
    with scratch("bench") as work:
        _save_inputs(prepared, work / "inputs.npz")
        with (
            Progress(*columns, console=console, transient=True) as progress,
            workers(
                paths,
                options.device,
                options.threads,
                work / "inputs.npz",
                work,
                options.vocoder,
                chunk,
            ) as pool,
        ):
            task = progress.add_task("loading", total=len(pool))
            loads = {}
            for name, worker in pool.items():  # one at a time: load times are not shared
                loads[name] = worker.call(Load())
                progress.advance(task)
            progress.remove_task(task)
            whole = _rounds(pool, progress, "whole utterances", options, Whole())
            if prepared.front_end is not None:
                front_end = prepared.front_end
                whole = {n: [_with_front_end(r, front_end) for r in rs] for n, rs in whole.items()}
            batches = {
                size: _rounds(pool, progress, f"batch {size}", options, Batch(size=size))
                for size in prepared.batches
            }
            figures = _rounds(pool, progress, "task figures", options, MeasureTask())
            memory = {name: worker.call(ReadMemory()) for name, worker in pool.items()}
            first = (
                _rounds(pool, progress, "first chunk", options, FirstChunk()) if streaming else None
            )
            task = progress.add_task("outputs" + (" and streams" if first else ""), total=len(pool))
            measured = {}
            count = len(prepared.utterances)
            for index, (name, worker) in enumerate(pool.items()):
                directory = work / f"outputs{index}"
                directory.mkdir()
                streamed = worker.call(SaveOutputs(directory=str(directory)))
                measured[name] = Measured(
                    load=loads[name],
                    whole=whole[name],
                    batches={size: rounds[name] for size, rounds in batches.items()},
                    memory=memory[name],
                    figures=figures[name],
                    first_chunk=first[name] if first else None,
                    streamed=streamed,
                    outputs=_load_outputs(directory, count, ""),
                    final=_load_outputs(directory, count, ".final") if options.vocoder else None,
                )
                progress.advance(task)
    return measured


def _median_ratio(reference: Sequence[float], values: Sequence[float]) -> float:
    """Median over rounds of reference / value (the values of a round share machine conditions)."""
    return statistics.median(r / v for r, v in zip(reference, values, strict=True))


def _totals(replies: Sequence[Timings | BatchTiming]) -> list[float]:
    return [float(np.sum(reply.seconds)) for reply in replies]


def _median_rtf(totals: Sequence[float], audio_seconds: float) -> float:
    """The median over rounds of compute seconds per audio second."""
    return statistics.median(total / audio_seconds for total in totals)


def _ms(values: Sequence[float], percentile: float) -> float:
    return float(np.percentile(values, percentile) * 1000)


def _speed(measured: Measured, audio_seconds: float | None) -> Speed:
    """Latency and items per second; real-time factors and audio throughput where the outputs
    are `audio_seconds` of sound."""
    flat = [s for reply in measured.whole for s in reply.seconds]
    first = [s for reply in measured.first_chunk or [] for s in reply.seconds]
    stream_seconds = measured.streamed.stream_seconds
    stages = measured.whole[0].stages if audio_seconds else {}  # text to wave
    return Speed(
        rtf=_median_rtf(_totals(measured.whole), audio_seconds) if audio_seconds else None,
        stage_rtf={
            name: _median_rtf([sum(r.stages[name]) for r in measured.whole], audio_seconds)
            for name in stages
        }
        or None,
        latency_p50_ms=_ms(flat, 50),
        latency_p95_ms=_ms(flat, 95),
        throughput={
            str(size): statistics.median(r.audio_seconds / r.seconds for r in replies)
            for size, replies in measured.batches.items()
        }
        if audio_seconds
        else {},
        items_per_second={
            str(size): statistics.median(size / r.seconds for r in replies)
            for size, replies in measured.batches.items()
        },
        first_chunk_p50_ms=_ms(first, 50) if first else None,
        first_chunk_p95_ms=_ms(first, 95) if first else None,
        stream_rtf=stream_seconds / audio_seconds if stream_seconds and audio_seconds else None,
    )


def _ratios(measured: Measured, reference: Measured, size: int, ref_size: int) -> dict:
    ratios = {
        "speedup": _median_ratio(_totals(reference.whole), _totals(measured.whole)),
        "size": size / ref_size,
        "rss_peak": measured.memory.rss_peak / reference.memory.rss_peak,
        "load_time": measured.load.load_seconds / reference.load.load_seconds,
    }
    for batch, replies in measured.batches.items():
        ratios[f"throughput_b{batch}"] = _median_ratio(
            _totals(reference.batches[batch]), _totals(replies)
        )
    if measured.first_chunk and reference.first_chunk:
        ratios["first_chunk_speedup"] = _median_ratio(
            _totals(reference.first_chunk), _totals(measured.first_chunk)
        )
    return ratios


def _result(
    artifact: Artifact,
    measured: Measured,
    reference: Measured,
    ref_size: int,
    names: Sequence[str],
    seconds: Sequence[float] | None,
    quality: list[scores.Figures],
) -> ArtifactResult:
    """One artifact's record; `seconds`: of audio per utterance (None: the outputs are not
    audio)."""
    whole = np.array([reply.seconds for reply in measured.whole])
    first = np.array([r.seconds for r in measured.first_chunk]) if measured.first_chunk else None
    seams = measured.streamed.seam_snr_db
    utterances = [
        Utterance(
            name=name,
            audio_seconds=seconds[i] if seconds else None,
            latency_ms=float(np.median(whole[:, i]) * 1000),
            first_chunk_ms=float(np.median(first[:, i]) * 1000) if first is not None else None,
            seam_snr_db=seams[i] if seams else None,
            quality=quality[i],
        )
        for i, name in enumerate(names)
    ]
    mean_quality = scores.means(quality)
    if seams:
        mean_quality["seam_snr"] = float(np.min(seams))  # the worst seam, not the mean
    size = artifact.size_bytes
    manifest = artifact.manifest
    return ArtifactResult(
        path=str(artifact.path),
        digest=manifest.digest,
        kind=manifest.kind,
        stage=manifest.lineage.stage,
        precision=manifest.precision,
        checkpoint=manifest.model.checkpoint.describe() if manifest.model.checkpoint else None,
        size_bytes=size,
        load_seconds=measured.load.load_seconds,
        first_run_seconds=measured.load.first_run_seconds,
        speed=_speed(measured, sum(seconds) if seconds else None),
        memory=Memory(
            rss_before_load_bytes=measured.load.rss_before_load,
            rss_after_load_bytes=measured.load.rss_after_load,
            rss_peak_bytes=measured.memory.rss_peak,
            gpu_peak_bytes=measured.memory.gpu_peak,
        ),
        quality=mean_quality,
        task_figures={
            key: statistics.median(reply.figures[key] for reply in measured.figures)
            for key in measured.figures[0].figures
        },
        ratios=_ratios(measured, reference, size, ref_size),
        utterances=utterances,
    )


@dataclass
class BenchRun:
    """The report, and the audio behind it: each artifact's and the recordings (audio models)."""

    report: BenchReport
    audio: dict[str, list[np.ndarray]]  # empty for models that do not make audio
    recordings: list[np.ndarray] | None
    sample_rate: int


def _quality(
    prepared: Prepared, measured: Mapping[str, Measured]
) -> tuple[dict[str, list[scores.Figures]], dict[str, list[np.ndarray]], list, Any]:
    """Per artifact and utterance: DNSMOS of the audio, figures of the end product against the
    reference's (after the vocoder, when chained), then the model's own against the reference's
    (a text-to-mel model's mel distance replaces the audio's, which measures it again through
    the vocoder); with the audio and, for audio made from recordings, their DNSMOS."""
    task, reference, names = prepared.task, prepared.reference, prepared.names
    sample_rate = prepared.spec.audio.sample_rate
    own = prepared.spec.checkpoint
    compared = {
        n
        for n, a in prepared.artifacts.items()
        if n != reference and a.manifest.model.checkpoint == own
    }
    outputs = {name: m.outputs for name, m in measured.items()}
    quality = {n: [{} for _ in names] for n in measured}
    audio: dict[str, list[np.ndarray]] = {}
    recordings, source_quality = None, None
    with console.status("scoring quality"):
        final, produced = prepared.final or task, outputs
        if prepared.final is not None:
            produced = {name: m.final or [] for name, m in measured.items()}
        waves = {name: [final.waveforms(o) for o in items] for name, items in produced.items()}
        if all(w is not None for ws in waves.values() for w in ws):
            audio = {name: [w[0] for w in ws] for name, ws in waves.items()}  # type: ignore[index]
            dnsmos = Dnsmos(prepared.options.threads)
            heard = scores.dnsmos_quality(audio, sample_rate, dnsmos)
            quality = scores.merged(quality, heard)
            if prepared.recordings:
                recordings = [read_audio(path, sample_rate) for path in prepared.recordings]
                source_quality = scores.means(
                    [scores.dnsmos_figures(dnsmos, r, sample_rate) for r in recordings]
                )
            if prepared.final is not None:
                chained = scores.against(final, produced, reference, compared, names)
                quality = scores.merged(quality, chained)
        quality = scores.merged(quality, scores.against(task, outputs, reference, compared, names))
    return quality, audio, recordings, source_quality


def _runs_note(task: Task, final: Task | None) -> str | None:
    """How the runs of the artifacts' task (and a chained vocoder's) differ from requests."""
    notes = [t.runs_note for t in (task, final) if t is not None and t.runs_note]
    return "; ".join(dict.fromkeys(notes)) or None


def run_bench(prepared: Prepared) -> BenchRun:
    """Measure, score and assemble the report."""
    options, task = prepared.options, prepared.task
    measured = _measure(prepared)
    ref_outputs = (measured[prepared.reference].final if prepared.final else None) or measured[
        prepared.reference
    ].outputs
    each = [(prepared.final or task).seconds(outputs) for outputs in ref_outputs]
    seconds = each if sum(each) else None  # None: outputs that are not audio (no RTF)
    quality, audio, recordings, source_quality = _quality(prepared, measured)
    artifacts, reference = prepared.artifacts, measured[prepared.reference]
    ref_size = artifacts[prepared.reference].size_bytes
    results = {
        name: _result(
            artifacts[name], m, reference, ref_size, prepared.names, seconds, quality[name]
        )
        for name, m in measured.items()
    }
    streamer = prepared.streamer
    report = BenchReport(
        recipe=prepared.spec.recipe,
        reference=prepared.reference,
        runs_note=_runs_note(task, prepared.final),
        machine=bench_machine(),
        settings=Settings(
            device=options.device,
            threads=options.threads,
            batches=list(prepared.batches),
            batch_sizes=prepared.batch_sizes,
            warmup=options.warmup,
            repeat=options.repeat,
            chunk_frames=streamer.chunk if streamer else None,
            chunk_seconds=options.chunk_seconds if streamer else None,
            streaming=streamer.describe() if streamer else None,
            vocoder=str(options.vocoder) if options.vocoder else None,
            vocoder_digest=prepared.vocoder_digest,
        ),
        data=DataInfo(
            path=str(prepared.data),
            files=prepared.names,
            audio_seconds=sum(seconds) if seconds else None,
            digest=prepared.digest,
        ),
        source_quality=source_quality,
        artifacts=results,
    )
    return BenchRun(report, audio, recordings, prepared.spec.audio.sample_rate)
