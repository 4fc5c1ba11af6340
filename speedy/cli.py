"""The `speedy` command line: resolves options into stage configs and calls them."""

import sys
from pathlib import Path
from typing import Annotated, get_args

import typer
import typer.rich_utils
from rich.markup import escape
from typer.exceptions import TyperException

from speedy import interrupt, runtime
from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.audio.io import write_audio, written_by_speedy
from speedy.backends.ort.build import Provider
from speedy.backends.ort.section import Level
from speedy.console import PIPE_WIDTH, UNSIZED, console, notice, out, printable, shown
from speedy.devices import check_device
from speedy.errors import SpeedyError
from speedy.families.network import custom_spec, fits, trust_factory
from speedy.importer import FAMILY as IMPORTED
from speedy.outputs import check_file_writable, check_writable
from speedy.pipeline import context_for, make_stage, run_recipe
from speedy.quantize.summary import quantization_table
from speedy.recipe import load_recipe
from speedy.rewrites import parse as parse_rewrites
from speedy.scratch import scratch
from speedy.stages.base import Stage, StageContext, execute
from speedy.stages.load import LoadStage
from speedy.stages.options import (
    Backend,
    Exporter,
    FloatWeights,
    Granularity,
    ImportOptions,
    LoadOptions,
    Method,
    Precision,
    Tool,
)
from speedy.stages.quantize import graph_reports
from speedy.summary import summarize, write_summary
from speedy.tasks import task_for

if typer.rich_utils.MAX_WIDTH is None and UNSIZED:
    typer.rich_utils.MAX_WIDTH = PIPE_WIDTH

app = typer.Typer(
    help="Convert, optimize and check speech-generation models. Add --debug for tracebacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Force = Annotated[
    bool, typer.Option("--force", help="Replace an existing output that speedy wrote.")
]
ForceFile = Annotated[
    bool,
    typer.Option("--force-file", help="Replace an existing output file, whoever wrote it."),
]
Threads = Annotated[int, typer.Option(help="CPU threads for checks and timing.")]
Data = Annotated[
    Path | None, typer.Option(help="Examples for parity checks (default: the recipe's).")
]
SkipParity = Annotated[
    bool, typer.Option("--skip-parity", help="Keep the artifact without checking it (not advised).")
]
Graphs = Annotated[
    list[str] | None,
    typer.Option("--graph", help="Graph to act on (repeatable; default: every graph)."),
]
NoVerify = Annotated[
    bool,
    typer.Option("--no-verify", help="Load artifacts without checking their files' digests."),
]

Trust = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Load artifacts whose files run native code when loaded (AOTInductor .pt2): only "
        "ones you built or trust.",
    ),
]


def _open(path: Path, no_verify: bool) -> Artifact:
    return Artifact.open(path, verify=not no_verify)


def _artifact_context(artifact: Artifact, data: Path | None, threads: int) -> StageContext:
    return context_for(artifact.manifest.model, data, threads)


def _export_stage(
    settings: dict, opset: int | None, exporter: Exporter | None, skip_parity: bool
) -> Stage:
    overrides = {"opset": opset, "exporter": exporter, "verify": not skip_parity}
    return make_stage("export", settings | {k: v for k, v in overrides.items() if v is not None})


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe name or YAML path.")],
    build_dir: Annotated[Path, typer.Option(help="Where artifacts go.")] = Path("build"),
    checkpoint: Annotated[
        Path | None, typer.Option(help="Override the recipe's checkpoint.")
    ] = None,
    data: Data = None,
    threads: Threads = 2,
    force: Annotated[bool, typer.Option("--force", help="Rebuild every stage.")] = False,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Search the mixed-precision plan anew (minutes) even where the recipe stores one.",
        ),
    ] = False,
) -> None:
    """Run a recipe end to end: each stage into BUILD_DIR/<recipe>/<stage>/, then a summary."""
    loaded = load_recipe(recipe)
    if search:
        searching = loaded.quantize.model_copy(update={"search": True})
        loaded = loaded.model_copy(update={"quantize": searching})
    outcomes, ctx = run_recipe(loaded, build_dir, checkpoint, data, threads, force)
    table, summary = summarize({o.stage: o.artifact for o in outcomes}, ctx)
    out.print(table)
    write_summary(build_dir / loaded.name / "summary.json", summary)


@app.command(name="import")
def import_(
    model: Annotated[
        Path, typer.Argument(help="ONNX file made elsewhere (external data beside it).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    task: Annotated[
        str, typer.Option(help="What the model does: generic (tensors) or text_to_wave (VITS).")
    ] = "generic",
    config: Annotated[
        Path | None,
        typer.Option(help="The model's JSON config (default: MODEL.json beside it, as Piper's)."),
    ] = None,
    shapes: Annotated[
        list[str] | None,
        typer.Option(help="NAME:MIN,OPT,MAX for a dim or an input (default: from --data)."),
    ] = None,
    fill: Annotated[
        list[str] | None,
        typer.Option(
            help="generic: INPUT=RULE, how its examples are made: audio, mel (the clips' "
            "log-mels), normal, uniform:LO,HI, int:LO,HI or value:V (repeatable)."
        ),
    ] = None,
    audio_output: Annotated[
        str | None, typer.Option(help="generic: the output that is a waveform.")
    ] = None,
    sample_rate: Annotated[
        int | None, typer.Option(min=1, help="Audio rate (default: the config's, else 16000).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: the file's).")] = None,
    data: Data = None,
    threads: Threads = 2,
    force: Force = False,
) -> None:
    """Make an artifact of an existing ONNX model: I/O from its graph, its task's settings (a
    Piper voice's from its config), dim ranges, and the source file's digest as its lineage."""
    from speedy.audio.mel import standard_audio
    from speedy.importer import beside, imported_spec, shape_ranges
    from speedy.stages.import_onnx import ImportStage

    check_writable(output, force)
    config = config or beside(model)
    fills = dict(_pair(item, "--fill", "INPUT=RULE") for item in fill or [])
    spec = imported_spec(
        name or model.name.removesuffix(".onnx"),
        task,
        model,
        config,
        fills,
        audio_output,
        standard_audio(sample_rate) if sample_rate else None,
        shape_ranges(model, shapes or []),
        data,
    )
    stage = ImportStage(ImportOptions(model=model, config=config))
    artifact = execute(stage, None, output, context_for(spec, data, threads), force)
    entry = artifact.manifest.graph("model")
    out.print(
        f"wrote {shown(artifact.path)} ({artifact.size_bytes / 1e6:.1f} MB, task {task}): "
        f"{shown(', '.join(s.describe() for s in entry.inputs))} -> "
        f"{shown(', '.join(s.describe() for s in entry.outputs))}"
    )
    for symbol, limits in artifact.manifest.model.dims.items():
        out.print(f"  {shown(symbol)}: {limits.min}..{limits.max} (typical {limits.opt})")


def _pair(item: str, option: str, form: str) -> tuple[str, str]:
    key, equals, value = item.partition("=")
    if not (equals and key and value):
        raise SpeedyError(f"cannot parse {option} {item!r}", f"write {option} {form}")
    return key, value


@app.command()
def export(
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    source: Annotated[
        str | None,
        typer.Argument(help="Recipe name/YAML, or a torch artifact directory (none: --io)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Weights, a state dict (default: the recipe's; without one, none)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="module:function building the network (a module of the current directory "
            "or the environment): a custom network of the recipe's family, or with --io any."
        ),
    ] = None,
    io: Annotated[
        str | None,
        typer.Option(
            "--io",
            help=escape(
                "Without a recipe: the network's I/O, a YAML file or inline YAML/JSON: "
                "inputs [{name, dtype, shape, fill}], outputs [names], dims {name: {min, opt, "
                "max}}, optional audio {output, sample_rate} and parity {sizes, atol}."
            ),
        ),
    ] = None,
    rewrite: Annotated[
        str | None,
        typer.Option(help="Module swaps to apply first, comma-separated: istft, lstm."),
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the recipe's).")] = None,
    exporter: Annotated[
        Exporter | None,
        typer.Option(help="torch.onnx exporter, used alone (default: dynamo, else torchscript)."),
    ] = None,
    data: Data = None,
    threads: Threads = 2,
    skip_parity: SkipParity = False,
    no_verify: NoVerify = False,
    force: Force = False,
) -> None:
    """Export PyTorch to ONNX with dynamic dims, checked against PyTorch on real inputs: a
    recipe's model, a torch artifact, or any network (--model with --io)."""
    check_writable(output, force)
    settings = {"rewrites": parse_rewrites(rewrite)} if rewrite else {}
    if exporter:  # the exporter asked for, without falling back to the other
        settings["fallback"] = False
    if source is not None and Path(source).is_dir():
        if checkpoint or model or io:
            raise SpeedyError(
                "--checkpoint, --model and --io apply to recipes and --model, not to a torch "
                "artifact",
                "pass the recipe instead of the artifact, or drop those options",
            )
        parent = _open(Path(source), no_verify)
        ctx = _artifact_context(parent, data, threads)
        stage = _export_stage(settings, opset, exporter, skip_parity)
        artifact = execute(stage, parent, output, ctx, force)
        out.print(f"wrote {shown(artifact.path)} ({artifact.size_bytes / 1e6:.1f} MB)")
        return
    if source is None:
        if not (model and io):
            raise SpeedyError(
                "export needs a recipe, a torch artifact, or --model with --io",
                "pass a recipe, or --model module:function and --io SPEC",
            )
        trust_factory(model)
        weights = checkpoint
        spec = custom_spec(io, model, weights)
        data_dir, recipe_settings = data, {}
    else:
        if io:
            raise SpeedyError(
                "--io describes a network without a recipe", "drop --io, or the recipe"
            )
        recipe = load_recipe(source)
        weights = checkpoint or recipe.checkpoint_path()
        if model:
            trust_factory(model)
        spec = recipe.model_spec(model, weights)
        if model and not checkpoint and weights and weights.is_file() and not fits(spec, weights):
            notice(f"{weights.name} does not fit the --model network: using its own weights")
            weights = None
            spec = spec.model_copy(update={"checkpoint": None})
        data_dir, recipe_settings = data or recipe.data_dir(), recipe.export.model_dump()
    ctx = context_for(spec, data_dir, threads)
    stage = _export_stage(recipe_settings | settings, opset, exporter, skip_parity)
    load = LoadStage(LoadOptions(checkpoint=weights))
    with scratch("torch") as tmp:
        parent = execute(load, None, tmp / "torch", ctx)
        artifact = execute(stage, parent, output, ctx, force)
    out.print(f"wrote {shown(artifact.path)} ({artifact.size_bytes / 1e6:.1f} MB)")


@app.command()
def simplify(
    source: Annotated[Path, typer.Argument(help="ONNX artifact directory.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    tool: Annotated[Tool, typer.Option(help="Simplifier.")] = "onnxslim",
    graph: Graphs = None,
    data: Data = None,
    threads: Threads = 2,
    skip_parity: SkipParity = False,
    no_verify: NoVerify = False,
    force: Force = False,
) -> None:
    """Simplify an ONNX artifact's graphs, keeping dynamic dims, checked against the parent."""
    check_writable(output, force)
    parent = _open(source, no_verify)
    ctx = _artifact_context(parent, data, threads)
    settings = {"tool": tool, "verify": not skip_parity, "graphs": graph or []}
    artifact = execute(make_stage("simplify", settings), parent, output, ctx, force)
    for name, report in artifact.manifest.reports["simplify"]["graphs"].items():
        before, after = report["before"], report["after"]
        where = f" {shown(name)}" if len(artifact.manifest.graphs) > 1 else ""
        out.print(
            f"wrote {shown(artifact.path)}{where}: nodes {before['nodes']} -> {after['nodes']}, "
            f"initializers {before['initializers']} -> {after['initializers']}, "
            f"{before['bytes'] / 1e6:.1f} -> {after['bytes'] / 1e6:.1f} MB"
        )


def _providers(values: list[str] | None) -> list[str] | None:
    if unknown := [v for v in values or [] if v not in get_args(Provider)]:
        raise typer.BadParameter(f"{unknown[0]!r}: use one of {', '.join(get_args(Provider))}")
    return values


@app.command()
def quantize(
    source: Annotated[Path, typer.Argument(help="Float32 ONNX artifact directory.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    calib: Annotated[
        str,
        typer.Option(
            help="Calibration data: directory or file of examples, a named set "
            "(calibration/NAME.yaml), or 'default' (the task's default data)."
        ),
    ] = "default",
    precision: Annotated[
        Precision,
        typer.Option(
            help="int8: every node (naive); mixed: INT8 with the most harmful groups "
            "in float under --budget; fp16; dynamic (MatMul-heavy graphs)."
        ),
    ] = "mixed",
    method: Annotated[
        Method,
        typer.Option(
            help="Activation ranges: ORT's minmax/entropy/percentile calibrators, or "
            "mse (per-tensor clipping search)."
        ),
    ] = "mse",
    calib_size: Annotated[int, typer.Option(min=1, help="Number of calibration crops.")] = 16,
    budget: Annotated[
        str | None,
        typer.Option(
            help="Quality budget against the parent, e.g. 'pesq>=4.0,mel<=0.2' (default: the "
            "task's, pesq>=4.0 for vocoders, tensor_snr>=30 for generic models)."
        ),
    ] = None,
    no_budget: Annotated[
        bool,
        typer.Option(
            "--no-budget", help="Keep the result whatever its quality (int8, fp16, dynamic)."
        ),
    ] = False,
    granularity: Annotated[
        Granularity, typer.Option(help="Sensitivity and precision per module block or node.")
    ] = "block",
    keep_float: Annotated[
        list[str] | None,
        typer.Option(help="Group, node or op type (e.g. Conv) kept in float (repeatable)."),
    ] = None,
    per_channel: Annotated[bool, typer.Option(help="Per-channel weight scales.")] = True,
    float_weights: Annotated[
        FloatWeights,
        typer.Option(help="How layers kept in float store their weights (mixed, dynamic)."),
    ] = "int8",
    graph: Graphs = None,
    data: Data = None,
    threads: Threads = 2,
    no_verify: NoVerify = False,
    force: Force = False,
) -> None:
    """Quantize an ONNX artifact's graphs (INT8, FP16, or mixed under an audio-quality budget)
    and record its quality against the parent."""
    check_writable(output, force)
    settings = {
        "precision": precision,
        "calib": calib,
        "method": method,
        "calib_size": calib_size,
        "budget": budget,
        "no_budget": no_budget,
        "granularity": granularity,
        "keep_float": keep_float or [],
        "per_channel": per_channel,
        "float_weights": float_weights,
        "graphs": graph or [],
    }
    stage = make_stage("quantize", settings)
    parent = _open(source, no_verify)
    artifact = execute(stage, parent, output, _artifact_context(parent, data, threads), force)
    reports = artifact.manifest.reports
    ratios = []
    for name, report in graph_reports(reports).items():
        if "table" in report:
            out.print(quantization_table(report, name))
        ratios.append(f"{report['size_ratio']:.0%}")
    quality = reports["quality"]
    figures = ", ".join(f"{k} {v:.3f}" for k, v in quality["metrics"].items() if v is not None)
    out.print(
        f"wrote {shown(artifact.path)} ({artifact.manifest.precision}, "
        f"{artifact.size_bytes / 1e6:.1f} MB, {' / '.join(ratios)} of the parent): {figures}; "
        f"{quality['verdict']}"
    )


@app.command(name="compile")
def compile_(
    source: Annotated[Path, typer.Argument(help="Artifact: ONNX for trt/ort, torch for aoti.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    backend: Annotated[
        Backend, typer.Option(help="trt: TensorRT engine; ort: optimized ONNX; aoti: AOTInductor.")
    ] = "ort",
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 inside, float32 I/O.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 from the parent's Q/DQ.")] = False,
    max_seq_len: Annotated[
        int | None, typer.Option(min=1, help="Largest length the profiles accept.")
    ] = None,
    shapes: Annotated[
        list[str] | None,
        typer.Option(help="NAME:MIN,OPT,MAX for a dim or an input (repeatable)."),
    ] = None,
    profiles_from: Annotated[
        Path | None, typer.Option(help="Examples whose lengths set profiles (default: --data).")
    ] = None,
    timing_cache: Annotated[
        Path | None, typer.Option(help="TensorRT timing cache file (read, then updated).")
    ] = None,
    workspace: Annotated[
        int | None, typer.Option(min=1, help="TensorRT workspace limit in MiB.")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Target device, cpu or cuda (default: cuda for trt).")
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            callback=_providers, help="ORT provider at run time: cpu, cuda, tensorrt (repeatable)."
        ),
    ] = None,
    ort_level: Annotated[Level, typer.Option(help="ORT graph optimization level.")] = "all",
    ort_threads: Annotated[
        int, typer.Option(min=0, help="ORT intra-op threads for the runtime (0: ORT's default).")
    ] = 0,
    fft_conv: Annotated[
        bool, typer.Option("--fft-conv", help="ort, CPU: long 1-D convs as block FFT convs.")
    ] = False,
    atol: Annotated[
        float | None, typer.Option(min=0, help="Parity tolerance vs the parent.")
    ] = None,
    graph: Graphs = None,
    data: Data = None,
    threads: Threads = 2,
    skip_parity: SkipParity = False,
    no_verify: NoVerify = False,
    force: Force = False,
) -> None:
    """Compile an artifact's graphs, with optimization profiles derived from real data, checked."""
    check_writable(output, force)
    settings = {
        "backend": backend,
        "device": check_device(device) if device else None,
        "fp16": fp16,
        "int8": int8,
        "shapes": shapes or [],
        "max_seq_len": max_seq_len,
        "profiles_from": profiles_from,
        "timing_cache": timing_cache,
        "workspace_mb": workspace,
        "providers": provider or ["cpu"],
        "ort_level": ort_level,
        "ort_threads": ort_threads,
        "fft_conv": fft_conv,
        "atol": atol,
        "verify": not skip_parity,
        "graphs": graph or [],
    }
    stage = make_stage("compile", settings)
    parent = _open(source, no_verify)
    artifact = execute(stage, parent, output, _artifact_context(parent, data, threads), force)
    manifest = artifact.manifest
    out.print(
        f"wrote {shown(artifact.path)} ({manifest.kind}, {manifest.precision}, "
        f"{artifact.size_bytes / 1e6:.1f} MB)"
    )
    for report in manifest.reports["compile"].values():
        if covered := report.get("profile_data"):
            out.print(f"profiles cover {covered['covered']} of {covered['clips']} clips")


@app.command()
def infer(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory of a model making audio.")],
    input: Annotated[
        Path, typer.Option("--input", "-i", help="An example: a .wav (resynthesis) or mel .npy.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Threads = 2,
    no_verify: NoVerify = False,
    trust: Trust = False,
    force: Force = False,
    force_file: ForceFile = False,
) -> None:
    """Run an artifact on one example so a person can listen to it."""
    if trust:
        runtime.trust_code()
    check_file_writable(output, force, force_file, written_by_speedy)
    model = runtime.load(artifact, device=device, threads=threads, verify=not no_verify)
    task = task_for(model.manifest.model)
    if input.suffix.lower() not in task.data_suffixes:
        raise SpeedyError(
            f"{input} is not {task.data_kind}, what a {task.name} model takes",
            f"pass a {' or '.join(task.data_suffixes)} file"
            + (" (text models speak through `speedy synth`)" if task.Controls else ""),
        )
    (example, *_) = task.read_data(input, FeatureCache(default_cache_dir()))
    waves = task.waveforms(task.run(model, task.inputs(example)))
    if waves is None:
        raise SpeedyError(
            f"a {task.name} model makes {task.produces}, not audio",
            "chain a model that makes audio of it: `speedy synth --acoustic ... --vocoder ...`",
        )
    rate = model.manifest.model.audio.sample_rate
    write_audio(output, waves[0], rate)
    out.print(f"wrote {shown(output)} ({waves[0].size / rate:.2f} s at {rate} Hz)")


@app.command()
def synth(
    acoustic: Annotated[
        Path, typer.Option(help="Artifact of a text model: text-to-mel, or a text-to-wave voice.")
    ],
    text: Annotated[str, typer.Option(help="What to say (in the model's language).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    vocoder: Annotated[
        Path | None, typer.Option(help="Artifact of a vocoder of its mels (text-to-mel models).")
    ] = None,
    speaker: Annotated[int, typer.Option(help="Speaker id.")] = 0,
    emotion: Annotated[
        str | None, typer.Option(help="Emotion label (default: the model's first).")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Clip whose emotion to take (instead of --emotion).")
    ] = None,
    speed: Annotated[float, typer.Option(help="Speaking rate: 2 is twice as fast.")] = 1.0,
    pitch_shift: Annotated[float | None, typer.Option(help="Pitch shift in semitones.")] = None,
    noise_scale: Annotated[
        float | None, typer.Option(help="Text-to-wave voices: noise scale (default: the voice's).")
    ] = None,
    noise_w: Annotated[
        float | None,
        typer.Option(help="Text-to-wave voices: duration noise (default: the voice's)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Threads = 2,
    no_verify: NoVerify = False,
    trust: Trust = False,
    force: Force = False,
    force_file: ForceFile = False,
) -> None:
    """Text to wave: an acoustic model's mels through a vocoder, or a text-to-wave voice, with
    per-stage RTF."""
    from speedy.chain import Chain

    if trust:
        runtime.trust_code()
    check_file_writable(output, force, force_file, written_by_speedy)
    chain = Chain.load(acoustic, vocoder, device, threads, verify=not no_verify)
    asked = {
        "emotion": emotion,
        "reference": reference,
        "pitch_shift": pitch_shift,
        "noise_scale": noise_scale,
        "noise_w": noise_w,
    }
    result = chain(
        text=text,
        speaker=speaker,
        speed=speed,
        **{name: value for name, value in asked.items() if value is not None},
    )
    write_audio(output, result.audio, result.sample_rate)
    rtf = ", ".join(f"{stage} {value:.3f}" for stage, value in result.rtf().items())
    seconds = f"{result.audio_seconds:.2f} s at {result.sample_rate} Hz"
    out.print(f"wrote {shown(output)} ({seconds}; RTF {rtf})")


@app.command()
def serve(
    artifacts: Annotated[
        list[str],
        typer.Argument(
            help="Artifacts to serve: text models, text-to-wave voices and vocoders; NAME=PATH "
            "names one."
        ),
    ],
    vocoder: Annotated[
        list[str] | None,
        typer.Option(
            help="Vocoder the text models speak through (repeatable; default: the vocoders "
            "among the artifacts). Each pair is a voice."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 takes a free one.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Requests run at once (threads sharing the sessions).")
    ] = 2,
    queue: Annotated[
        int, typer.Option(min=0, help="Requests that may wait for a worker; more get 503.")
    ] = 32,
    wait: Annotated[
        float, typer.Option(min=0.0, help="Seconds a request may wait before it gets 503.")
    ] = 30.0,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads per model run.")] = 1,
    chunk_seconds: Annotated[
        float, typer.Option(min=0.01, help="Audio per chunk of a streamed response.")
    ] = 0.25,
    max_chars: Annotated[int, typer.Option(min=1, help="Longest text a request may hold.")] = 500,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (MB).")] = 16.0,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Open connections at once; past them requests get 503.")
    ] = 256,
    read_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds a client has to send a request's head, and the "
            "longest pause while it sends the body.",
        ),
    ] = 10.0,
    send_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds a client may read nothing of a response before its connection is closed.",
        ),
    ] = 30.0,
    grace: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds running requests get to finish after SIGTERM; "
            "waiting ones get 503 at once.",
        ),
    ] = 30.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="SPEEDY_API_KEY",
            show_envvar=True,
            help="Key every /v1/ and /metrics request must send as 'Authorization: Bearer KEY'.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Origin whose pages may call the API (repeatable; default: none)."),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Host name the server answers to besides loopback (repeatable; "
            "default on loopback: only loopback names)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    no_verify: NoVerify = False,
    trust: Trust = False,
) -> None:
    """Serve artifacts over HTTP: POST /v1/tts, /v1/audio/speech (OpenAI's speech API) and
    /v1/vocode, GET /v1/models, /v1/audio/voices, /health, /metrics, and a page at / that plays
    two voices side by side or blind."""
    from speedy.serve import ServeOptions
    from speedy.serve import serve as run_server

    if trust:
        runtime.trust_code()
    run_server(
        ServeOptions(
            artifacts=artifacts,
            vocoders=vocoder or [],
            host=host,
            port=port,
            workers=workers,
            queue=queue,
            wait_s=wait,
            threads=threads,
            chunk_seconds=chunk_seconds,
            max_chars=max_chars,
            max_body_mb=max_body_mb,
            max_connections=max_connections,
            read_s=read_timeout,
            send_s=send_timeout,
            grace_s=grace,
            api_key=api_key or None,
            cors_origins=cors_origin or [],
            allowed_hosts=allowed_host or [],
            device=device,
            verify=not no_verify,
        )
    )


@app.command()
def inspect(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory.")],
    no_verify: NoVerify = False,
) -> None:
    """Print an artifact's manifest: graphs and their I/O, dims, checkpoint, lineage and reports
    (and the quantization table of each quantized graph)."""
    manifest = _open(artifact, no_verify).manifest
    out.print_json(manifest.model_dump_json())
    checkpoint = manifest.model.checkpoint
    label = "source" if manifest.model.family == IMPORTED else "checkpoint"
    out.print(f"{label}: {shown(checkpoint.describe()) if checkpoint else 'none (seeded weights)'}")
    for name, entry in manifest.graphs.items():
        files = shown(", ".join(entry.files))
        out.print(f"graph {shown(name)}: {entry.kind}, {shown(entry.precision)}, {files}")
    for name, report in graph_reports(manifest.reports).items():
        if "table" in report:
            out.print(quantization_table(report, name))


@app.command()
def bench(
    artifacts: Annotated[
        list[str], typer.Argument(help="Artifact directories of one recipe; NAME=PATH names one.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Report directory to write.")],
    reference: Annotated[
        str | None,
        typer.Option(
            help="What the ratios and comparisons refer to: a name, path or NAME=PATH "
            "(default: the first artifact)."
        ),
    ] = None,
    data: Annotated[
        str, typer.Option(help="Directory or file of examples, or 'default' (the task's).")
    ] = "default",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Threads = 2,
    batch: Annotated[
        list[int], typer.Option(help="Batch size for throughput; repeat for several.")
    ] = [1],  # noqa: B006 (typer needs a list default)
    warmup: Annotated[int, typer.Option(help="Untimed rounds first.")] = 1,
    repeat: Annotated[int, typer.Option(help="Timed rounds; medians are reported.")] = 3,
    chunk_seconds: Annotated[
        float, typer.Option(help="Streaming chunk length (vocoders), 0 for no streaming.")
    ] = 0.25,
    html: Annotated[bool, typer.Option(help="Write index.html with figures and audio.")] = True,
    baseline: Annotated[
        Path | None, typer.Option(help="Gate: fail when a figure regressed from this baseline.")
    ] = None,
    tolerance: Annotated[
        str | None,
        typer.Option(
            help="Gate tolerances: a relative one for speed/size/memory ratios and/or "
            "NAME=VALUE (speed, size, memory, quality or a figure such as pesq)."
        ),
    ] = None,
    save_baseline: Annotated[
        Path | None, typer.Option(help="Write this run's figures as a new baseline file.")
    ] = None,
    vocoder: Annotated[
        Path | None,
        typer.Option(
            help="A vocoder artifact to chain after text-to-mel artifacts: text to "
            "wave, with RTF per stage and the audio's quality figures."
        ),
    ] = None,
    trust: Trust = False,
    force: Force = False,
    force_file: ForceFile = False,
) -> None:
    """Measure artifacts side by side on the same data, each in its own process: size, load
    time, memory, latency, RTF, throughput, streaming, DNSMOS and quality against a reference."""
    from speedy.bench.command import BenchOptions
    from speedy.bench.command import bench as run_bench

    if trust:
        runtime.trust_code()  # bench workers inherit it
    run_bench(
        BenchOptions(
            artifacts=artifacts,
            output=output,
            reference=reference,
            data=None if data == "default" else Path(data),
            device=device,
            threads=threads,
            batches=tuple(batch),
            warmup=warmup,
            repeat=repeat,
            chunk_seconds=chunk_seconds or None,
            html=html,
            baseline=baseline,
            tolerance=tolerance,
            save_baseline=save_baseline,
            force=force,
            force_file=force_file,
            vocoder=vocoder,
        )
    )


INTERRUPTED = 130


def error_line(exc: Exception) -> str:
    """The one line a failure gets: a SpeedyError's own message (problem and fix), or the
    exception's type and first line with how to learn more."""
    if isinstance(exc, SpeedyError):
        return f"[red]error:[/] {shown(exc)}"  # [extra] stays
    first = printable(next(iter(str(exc).splitlines()), ""))
    if isinstance(exc, MemoryError):
        return (
            f"[red]error:[/] out of memory ({escape(first)}) "
            "(fix: use smaller sizes: dims, batch, network, or free memory)"
        )
    if isinstance(exc, OSError) and exc.filename:
        return (
            f"[red]error:[/] cannot use {shown(exc.filename)}: "
            f"{escape(str(exc.strerror))} "
            "(fix: check its permissions and the free disk space)"
        )
    return (
        f"[red]error:[/] unexpected {type(exc).__name__}: {escape(first)} "
        "(fix: rerun with --debug for the traceback, and report it)"
    )


def main() -> None:
    """Entry point: one-line errors and a non-zero exit; tracebacks only with --debug."""
    debug = "--debug" in sys.argv
    sys.argv = [arg for arg in sys.argv if arg != "--debug"]
    interrupt.install()
    try:
        try:
            code = app(standalone_mode=False)  # returns an exit code for --help and interrupts
        finally:
            interrupt.settle()
    except KeyboardInterrupt:
        code = INTERRUPTED
    except TyperException as exc:  # usage errors: bad option, missing argument
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            raise
        if not interrupt.requested():
            console.print(error_line(exc), soft_wrap=True)
            sys.exit(1)
        code = INTERRUPTED  # a library reported the interrupt as a failure of its own
    if code == INTERRUPTED:
        console.print("[red]interrupted:[/] no partial output was kept", soft_wrap=True)
        interrupt.exit_by_signal()
    sys.exit(code if isinstance(code, int) else 0)
