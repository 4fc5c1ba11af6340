"""A bench run: every artifact in its own worker process, all on the same inputs, timed in turns.

The inputs are made once, here, and handed to every worker. Workers take turns on every round
(as `speedy.measure` does within one process), so machine noise spreads evenly over them and the
ratios to the reference are fair even when absolute figures drift; only one computes at a time.

With a vocoder, text-to-mel artifacts are measured from text to wave: the front end (text to the
model's feeds) is timed here, once for all, since it is the same for every artifact; each worker
times its artifact and the vocoder on every utterance and saves the audio for the quality figures.
"""

import statistics
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from speedy.artifact import Artifact, file_digest
from speedy.audio.io import AUDIO_SUFFIXES, read_audio
from speedy.bench import scores
from speedy.bench.dnsmos import Dnsmos, models_dir
from speedy.bench.machine import bench_machine
from speedy.bench.pool import WorkerProcess, workers
from speedy.bench.results import (
    ArtifactResult,
    BenchReport,
    DataInfo,
    Memory,
    Settings,
    Speed,
    Utterance,
)
from speedy.console import console, notice
from speedy.data_source import TEXT_SUFFIXES, data_files, read_features
from speedy.errors import SpeedyError
from speedy.families.base import Family
from speedy.measure import call_seconds
from speedy.model_spec import ModelSpec
from speedy.runtime.base import check_feeds
from speedy.streaming import Context, chunk_frames, receptive_field
from speedy.synth import check_mel_match, check_role

SAME_MODEL_FIELDS = ("recipe", "family", "network", "audio", "factory")
Feeds = dict[str, np.ndarray]


@dataclass
class BenchPlan:
    """What to bench and how."""

    artifacts: dict[str, Path]  # name -> artifact directory, the reference first
    reference: str
    data: Path | None  # None: the model family's default data
    device: str = "cpu"
    threads: int = 2
    batches: list[int] = field(default_factory=lambda: [1])
    warmup: int = 1
    repeat: int = 3
    chunk_seconds: float | None = 0.25  # None: no streaming figures
    vocoder: Path | None = None  # chained after text-to-mel artifacts: text to wave


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
    """The reference's model spec, after checking every artifact holds the same model."""
    expected = artifacts[reference].manifest.model
    for name, artifact in artifacts.items():
        spec = artifact.manifest.model
        for key in SAME_MODEL_FIELDS:
            if getattr(spec, key) != getattr(expected, key):
                raise SpeedyError(
                    f"artifact '{name}' is a model of recipe '{spec.recipe}' whose {key} differs "
                    f"from the reference '{reference}' (recipe '{expected.recipe}')",
                    "bench artifacts built from one recipe against a reference of that recipe",
                )
    return expected


def check_device(device: str) -> None:
    """A clear error for an unknown device, or CUDA without a GPU."""
    if device not in ("cpu", "cuda"):
        raise SpeedyError(f"unknown device '{device}'", "use --device cpu or --device cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SpeedyError(
                "--device cuda: no CUDA GPU is available here (PyTorch sees none)",
                "use --device cpu, or run the bench on a machine with an NVIDIA GPU and driver",
            )


def check_vocoder(path: Path, spec: ModelSpec) -> str:
    """The digest of the vocoder at `path`, after checking the artifacts turn text into mels
    and it is a vocoder of those mels."""
    family = spec.adapter()
    if (family.consumes, family.produces) != ("text", "mel"):
        raise SpeedyError(
            f"--vocoder chains a vocoder after text-to-mel models, but the artifacts are "
            f"{spec.family} models ({family.consumes} -> {family.produces})",
            "leave out --vocoder, or bench artifacts of a text-to-mel recipe with it",
        )
    vocoder = Artifact.open(path).manifest
    check_role(vocoder.model, path, "mel", "audio", "vocoder")
    check_mel_match(spec, vocoder.model)
    return vocoder.digest


def _front_end_seconds(family: Family, example: Any, repeat: int) -> float:
    """Median seconds over `repeat` runs of the family's front end on one example: `utterance`,
    which makes the model's feeds (a text-to-mel model's from the text)."""
    return statistics.median(call_seconds(lambda: family.utterance(example), repeat, warmup=0))


def _batch_sizes(spec: ModelSpec, batches: Sequence[int]) -> list[dict[str, int]]:
    if not batches:
        return []
    if "batch" not in spec.dims:
        raise SpeedyError(f"recipe {spec.recipe} has no batch dim", "leave out --batch")
    allowed = spec.dims["batch"]
    for size in batches:
        if size not in allowed:
            raise SpeedyError(
                f"--batch {size} is outside the model's batch range {allowed.min}..{allowed.max}",
                "pick batch sizes within the range, or widen dims.batch and rebuild",
            )
    return [spec.sizes({"batch": size}) for size in dict.fromkeys(batches)]


def _clips(source: Path, family: Family, count: int) -> tuple[list[str], list[Path] | None]:
    """A name per example, and the recordings when the examples are audio files' features."""
    if family.consumes == "mel":
        paths = data_files(source)
        if len(paths) == count:
            audio = all(p.suffix.lower() in AUDIO_SUFFIXES for p in paths)
            return [p.stem for p in paths], paths if audio and family.produces == "audio" else None
    return [f"{i:03d}" for i in range(count)], None


def _check_inputs(artifacts: Mapping[str, Artifact], named: Sequence[tuple[str, Feeds]]) -> None:
    """Every input fits every artifact's declared ranges (compiled ones may be narrower)."""
    for artifact_name, artifact in artifacts.items():
        for name, feeds in named:
            try:
                check_feeds(artifact.manifest, feeds)
            except SpeedyError as exc:
                raise SpeedyError(f"{artifact_name}, {name}: {exc.problem}", exc.fix) from None


def _data_digest(source: Path) -> str:
    """SHA-256 of the data files: the same data gives the same digest on any machine (features
    computed from it differ in their last bits between CPUs)."""
    return file_digest(data_files(source, (*AUDIO_SUFFIXES, ".npy", *TEXT_SUFFIXES), "data"))


@dataclass
class Prepared:
    """A checked plan with its inputs made: everything up to the measurements."""

    plan: BenchPlan
    artifacts: dict[str, Artifact]
    spec: ModelSpec
    data: Path
    names: list[str]
    recordings: list[Path] | None
    utterances: list[Feeds]
    seconds: list[float | None]  # None: known from the outputs only
    batches: dict[int, Feeds]
    batch_sizes: dict[str, int]  # the symbolic sizes of the batched runs, batch aside
    streams: list[np.ndarray]  # features to stream; empty when not streaming
    chunk: int | None
    context: Context | None
    digest: str
    front_end: list[float] | None = None  # with a vocoder: seconds per utterance
    vocoder_digest: str | None = None


def _streaming(plan: BenchPlan, spec: ModelSpec) -> tuple[int | None, Context | None]:
    family = spec.adapter()
    if not plan.chunk_seconds:
        return None, None
    if (family.consumes, family.produces) != ("mel", "audio"):
        notice(f"no streaming figures: a {spec.family} model does not turn mels into audio")
        return None, None
    return chunk_frames(plan.chunk_seconds, spec), receptive_field(spec)


def prepare(plan: BenchPlan) -> Prepared:
    """Check the artifacts, device and data and make the inputs, before anything is timed."""
    check_device(plan.device)
    artifacts = {name: Artifact.open(path) for name, path in plan.artifacts.items()}
    spec = check_same_model(artifacts, plan.reference)
    family = spec.adapter()
    vocoder_digest = check_vocoder(plan.vocoder, spec) if plan.vocoder else None
    if family.produces == "audio" or plan.vocoder is not None:
        models_dir()  # a clear error now, not after the measurements, when speechmos is missing
    sizes = _batch_sizes(spec, plan.batches)
    data = plan.data or family.default_data
    examples = read_features(data, spec)
    names, recordings = _clips(data, family, len(examples))
    utterances, seconds = [], []
    for example in examples:
        feeds, length = family.utterance(example)
        utterances.append(feeds)
        seconds.append(length)
    batches = {s["batch"]: family.feeds(examples, s) for s in sizes}
    named = [*zip(names, utterances, strict=True), *((f"batch {b}", f) for b, f in batches.items())]
    _check_inputs(artifacts, named)
    chunk, context = _streaming(plan, spec)
    return Prepared(
        plan=plan,
        artifacts=artifacts,
        spec=spec,
        data=data,
        names=names,
        recordings=recordings,
        utterances=utterances,
        seconds=seconds,
        batches=batches,
        batch_sizes={k: v for k, v in (sizes[0] if sizes else {}).items() if k != "batch"},
        streams=list(examples) if chunk else [],
        chunk=chunk,
        context=context,
        digest=_data_digest(data),
        front_end=[_front_end_seconds(family, e, plan.repeat) for e in examples]
        if plan.vocoder
        else None,
        vocoder_digest=vocoder_digest,
    )


def _save_inputs(prepared: Prepared, path: Path) -> None:
    arrays = {}
    for index, feeds in enumerate(prepared.utterances):
        arrays |= {f"utterance/{index}/{name}": value for name, value in feeds.items()}
    for size, feeds in prepared.batches.items():
        arrays |= {f"batch/{size}/{name}": value for name, value in feeds.items()}
    arrays |= {f"stream/{index}": value for index, value in enumerate(prepared.streams)}
    np.savez(path, **arrays)


def _rounds(
    pool: Mapping[str, WorkerProcess],
    progress: Progress,
    what: str,
    plan: BenchPlan,
    op: str,
    **arguments: Any,
) -> dict[str, list[dict[str, Any]]]:
    """`warmup` + `repeat` rounds of `op` with the workers taking turns; the timed replies."""
    rounds = plan.warmup + plan.repeat
    task = progress.add_task(what, total=rounds * len(pool))
    kept: dict[str, list[dict[str, Any]]] = {name: [] for name in pool}
    for index in range(rounds):
        for name, worker in pool.items():
            reply = worker.call(op, **arguments)
            if index >= plan.warmup:
                kept[name].append(reply)
            progress.advance(task)
    progress.remove_task(task)
    return kept


@dataclass
class Measured:
    """One worker's replies, and the outputs it saved."""

    load: dict[str, Any]
    whole: list[dict[str, Any]]
    batches: dict[int, list[dict[str, Any]]]
    memory: dict[str, Any]
    first_chunk: list[dict[str, Any]] | None
    streamed: dict[str, Any]
    outputs: list[Feeds]
    audio: list[np.ndarray] | None  # the vocoder's, when chained


def _with_front_end(reply: dict[str, Any], front_end: Sequence[float]) -> dict[str, Any]:
    """A worker's reply on a text-to-wave round, with the front end's seconds added."""
    stages = {"front_end": list(front_end), **reply["stages"]}
    return {"seconds": [sum(s) for s in zip(*stages.values(), strict=True)], "stages": stages}


def _measure(prepared: Prepared) -> dict[str, Measured]:
    plan = prepared.plan
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with tempfile.TemporaryDirectory(prefix="speedy-bench-") as tmp:
        work = Path(tmp)
        _save_inputs(prepared, work / "inputs.npz")
        with (
            Progress(*columns, console=console, transient=True) as progress,
            workers(
                plan.artifacts, plan.device, plan.threads, work / "inputs.npz", work, plan.vocoder
            ) as pool,
        ):
            task = progress.add_task("loading", total=len(pool))
            loads = {}
            for name, worker in pool.items():  # one at a time: load times are not shared
                loads[name] = worker.call("load")
                progress.advance(task)
            progress.remove_task(task)
            whole = _rounds(pool, progress, "whole utterances", plan, "whole")
            if prepared.front_end is not None:
                front_end = prepared.front_end
                whole = {n: [_with_front_end(r, front_end) for r in rs] for n, rs in whole.items()}
            batches = {
                size: _rounds(pool, progress, f"batch {size}", plan, "batch", size=size)
                for size in prepared.batches
            }
            memory = {name: worker.call("memory") for name, worker in pool.items()}
            first = None
            if prepared.chunk:
                first = _rounds(
                    pool, progress, "first chunk", plan, "first_chunk", chunk=prepared.chunk
                )
            task = progress.add_task("outputs" + (" and streams" if first else ""), total=len(pool))
            measured = {}
            for index, (name, worker) in enumerate(pool.items()):
                directory = work / f"outputs{index}"
                directory.mkdir()
                streamed = worker.call("outputs", directory=str(directory), chunk=prepared.chunk)
                outputs = []
                for i in range(len(prepared.utterances)):
                    with np.load(directory / f"{i}.npz", allow_pickle=False) as stored:
                        outputs.append({key: stored[key] for key in stored.files})
                audio = None
                if plan.vocoder:
                    audio = [np.load(directory / f"{i}.audio.npy") for i in range(len(outputs))]
                measured[name] = Measured(
                    load=loads[name],
                    whole=whole[name],
                    batches={size: rounds[name] for size, rounds in batches.items()},
                    memory=memory[name],
                    first_chunk=first[name] if first else None,
                    streamed=streamed,
                    outputs=outputs,
                    audio=audio,
                )
                progress.advance(task)
    return measured


def _median_ratio(reference: Sequence[float], values: Sequence[float]) -> float:
    """Median over rounds of reference / value (the values of a round share machine conditions)."""
    return statistics.median(r / v for r, v in zip(reference, values, strict=True))


def _totals(replies: list[dict[str, Any]]) -> list[float]:
    return [float(np.sum(reply["seconds"])) for reply in replies]


def _median_rtf(totals: Sequence[float], audio_seconds: float) -> float:
    """The median over rounds of compute seconds per audio second."""
    return statistics.median(total / audio_seconds for total in totals)


def _ms(values: Sequence[float], percentile: float) -> float:
    return float(np.percentile(values, percentile) * 1000)


def _speed(measured: Measured, audio_seconds: float) -> Speed:
    flat = [s for reply in measured.whole for s in reply["seconds"]]
    first = [s for reply in measured.first_chunk or [] for s in reply["seconds"]]
    stream_seconds = measured.streamed["stream_seconds"]
    stages = measured.whole[0].get("stages", {})  # text to wave: seconds per stage
    return Speed(
        rtf=_median_rtf(_totals(measured.whole), audio_seconds),
        stage_rtf={
            name: _median_rtf([sum(r["stages"][name]) for r in measured.whole], audio_seconds)
            for name in stages
        }
        or None,
        latency_p50_ms=_ms(flat, 50),
        latency_p95_ms=_ms(flat, 95),
        throughput={
            str(size): statistics.median(r["audio_seconds"] / r["seconds"] for r in replies)
            for size, replies in measured.batches.items()
        },
        first_chunk_p50_ms=_ms(first, 50) if first else None,
        first_chunk_p95_ms=_ms(first, 95) if first else None,
        stream_rtf=stream_seconds / audio_seconds if stream_seconds else None,
    )


def _ratios(measured: Measured, reference: Measured, size: int, ref_size: int) -> dict:
    ratios = {
        "speedup": _median_ratio(_totals(reference.whole), _totals(measured.whole)),
        "size": size / ref_size,
        "rss_peak": measured.memory["rss_peak"] / reference.memory["rss_peak"],
        "load_time": measured.load["load_seconds"] / reference.load["load_seconds"],
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
    seconds: Sequence[float],
    quality: list[scores.Figures],
) -> ArtifactResult:
    whole = np.array([reply["seconds"] for reply in measured.whole])
    first = np.array([r["seconds"] for r in measured.first_chunk]) if measured.first_chunk else None
    seams = measured.streamed["seam_snr_db"]
    utterances = [
        Utterance(
            name=name,
            audio_seconds=seconds[i],
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
    return ArtifactResult(
        path=str(artifact.path),
        kind=artifact.manifest.kind,
        stage=artifact.manifest.lineage.stage,
        precision=artifact.manifest.precision,
        size_bytes=size,
        load_seconds=measured.load["load_seconds"],
        first_run_seconds=measured.load["first_run_seconds"],
        speed=_speed(measured, sum(seconds)),
        memory=Memory(
            rss_before_load_bytes=measured.load["rss_before_load"],
            rss_after_load_bytes=measured.load["rss_after_load"],
            rss_peak_bytes=measured.memory["rss_peak"],
            gpu_peak_bytes=measured.memory["gpu_peak"],
        ),
        quality=mean_quality,
        ratios=_ratios(measured, reference, size, ref_size),
        utterances=utterances,
    )


def _audio(family: Family, measured: Mapping[str, Measured]) -> dict[str, list[np.ndarray]]:
    """Each artifact's audio: the vocoder's when chained, a vocoder's own, else none."""
    return {
        name: m.audio if m.audio is not None else [family.waveform(o) for o in m.outputs]
        for name, m in measured.items()
        if m.audio is not None or family.produces == "audio"
    }


@dataclass
class BenchRun:
    """The report, and the audio behind it: each artifact's and the recordings (audio models)."""

    report: BenchReport
    audio: dict[str, list[np.ndarray]]  # empty for models that do not make audio
    recordings: list[np.ndarray] | None
    sample_rate: int


def run_bench(prepared: Prepared) -> BenchRun:
    """Measure every artifact on the same inputs and compare it with the reference."""
    plan, spec = prepared.plan, prepared.spec
    family = spec.adapter()
    console.print(
        f"bench: {len(plan.artifacts)} artifact(s), {len(prepared.names)} example(s) from "
        f"{prepared.data}, {plan.device}, {plan.threads} thread(s), reference '{plan.reference}'"
    )
    measured = _measure(prepared)
    ref_outputs = measured[plan.reference].outputs
    seconds = [
        family.seconds(outputs) if length is None else length
        for length, outputs in zip(prepared.seconds, ref_outputs, strict=True)
    ]
    sample_rate = spec.audio.sample_rate
    audio = _audio(family, measured)
    quality: dict[str, list[scores.Figures]] = {n: [{} for _ in seconds] for n in measured}
    recordings, source_quality = None, None
    with console.status("scoring quality"):
        if audio:
            dnsmos = Dnsmos(plan.threads)
            heard = scores.audio_quality(audio, plan.reference, prepared.names, sample_rate, dnsmos)
            quality = scores.merged(quality, heard)
            if prepared.recordings:
                recordings = [read_audio(path, sample_rate) for path in prepared.recordings]
                source_quality = scores.means(
                    [scores.dnsmos_figures(dnsmos, r, sample_rate) for r in recordings]
                )
        if family.produces != "audio":
            # after the audio's figures: a text-to-mel model's own mel distance replaces the
            # audio's log-mel one, which measures it again through the vocoder
            outputs = {n: m.outputs for n, m in measured.items()}
            quality = scores.merged(quality, scores.output_quality(outputs, plan.reference, family))
    artifacts, reference = prepared.artifacts, measured[plan.reference]
    ref_size = artifacts[plan.reference].size_bytes
    results = {
        name: _result(
            artifacts[name], m, reference, ref_size, prepared.names, seconds, quality[name]
        )
        for name, m in measured.items()
    }
    report = BenchReport(
        recipe=spec.recipe,
        reference=plan.reference,
        machine=bench_machine(),
        settings=Settings(
            device=plan.device,
            threads=plan.threads,
            batches=list(prepared.batches),
            batch_sizes=prepared.batch_sizes,
            warmup=plan.warmup,
            repeat=plan.repeat,
            chunk_frames=prepared.chunk,
            chunk_seconds=plan.chunk_seconds if prepared.chunk else None,
            context_frames=[prepared.context.left, prepared.context.right]
            if prepared.context
            else None,
            vocoder=str(plan.vocoder) if plan.vocoder else None,
            vocoder_digest=prepared.vocoder_digest,
        ),
        data=DataInfo(
            path=str(prepared.data),
            files=prepared.names,
            audio_seconds=sum(seconds),
            digest=prepared.digest,
        ),
        source_quality=source_quality,
        artifacts=results,
    )
    return BenchRun(report, audio, recordings, sample_rate)
