"""The `speedy` command line: resolves options into stage configs and calls them."""

import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from speedy import runtime
from speedy.artifact import Artifact, check_writable
from speedy.audio.io import read_audio, write_audio
from speedy.console import console, out
from speedy.errors import SpeedyError
from speedy.pipeline import context_for, make_stage, run_recipe
from speedy.recipe import DEFAULT_DATA, load_recipe
from speedy.stages.base import Stage, StageContext, execute
from speedy.stages.export import Exporter
from speedy.stages.load import LoadOptions, LoadStage
from speedy.stages.simplify import Tool
from speedy.summary import summarize, write_summary

app = typer.Typer(
    help="Convert, optimize and check speech-generation models. Add --debug for tracebacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Force = Annotated[bool, typer.Option("--force", help="Replace an existing output.")]
Threads = Annotated[int, typer.Option(help="CPU threads for checks and timing.")]
Data = Annotated[
    Path | None, typer.Option(help="Audio or .npy files for parity checks (default: the recipe's).")
]
SkipParity = Annotated[
    bool, typer.Option("--skip-parity", help="Keep the artifact without checking it (not advised).")
]


def _artifact_context(artifact: Artifact, data: Path | None, threads: int) -> StageContext:
    return context_for(artifact.manifest.model, data or DEFAULT_DATA, threads)


def _export_stage(settings: dict, opset: int, exporter: Exporter, skip_parity: bool) -> Stage:
    overrides = {"opset": opset, "exporter": exporter, "verify": not skip_parity}
    return make_stage("export", settings | overrides)


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
) -> None:
    """Run a recipe end to end: each stage into BUILD_DIR/<recipe>/<stage>/, then a summary."""
    loaded = load_recipe(recipe)
    outcomes, ctx = run_recipe(loaded, build_dir, checkpoint, data, threads, force)
    table, summary = summarize({o.stage: o.artifact for o in outcomes}, ctx)
    out.print(table)
    write_summary(build_dir / loaded.name / "summary.json", summary)


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="Recipe name/YAML, or a torch artifact directory.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    checkpoint: Annotated[
        Path | None, typer.Option(help="Weights (default: the recipe's).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="module:function building a custom network of the family.")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    exporter: Annotated[Exporter, typer.Option(help="torch.onnx exporter.")] = "dynamo",
    data: Data = None,
    threads: Threads = 2,
    skip_parity: SkipParity = False,
    force: Force = False,
) -> None:
    """Export PyTorch to ONNX with dynamic dims, checked against PyTorch on real inputs."""
    check_writable(output, force)
    if Path(source).is_dir():
        parent = Artifact.open(Path(source))
        ctx = _artifact_context(parent, data, threads)
        stage = _export_stage({}, opset, exporter, skip_parity)
        artifact = execute(stage, parent, output, ctx, force)
    else:
        recipe = load_recipe(source)
        ctx = context_for(recipe.model_spec(model), data or recipe.data_dir(), threads)
        stage = _export_stage(recipe.export, opset, exporter, skip_parity)
        load = LoadStage(LoadOptions(checkpoint=checkpoint or recipe.checkpoint_path()))
        with tempfile.TemporaryDirectory(prefix="speedy-torch-") as tmp:
            parent = execute(load, None, Path(tmp) / "torch", ctx)
            artifact = execute(stage, parent, output, ctx, force)
    out.print(f"wrote {artifact.path} ({artifact.size_bytes / 1e6:.1f} MB)")


@app.command()
def simplify(
    source: Annotated[Path, typer.Argument(help="ONNX artifact directory.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Artifact directory to write.")],
    tool: Annotated[Tool, typer.Option(help="Simplifier.")] = "onnxslim",
    data: Data = None,
    threads: Threads = 2,
    skip_parity: SkipParity = False,
    force: Force = False,
) -> None:
    """Simplify an ONNX artifact, keeping dynamic dims, checked against the parent."""
    check_writable(output, force)
    parent = Artifact.open(source)
    ctx = _artifact_context(parent, data, threads)
    stage = make_stage("simplify", {"tool": tool, "verify": not skip_parity})
    artifact = execute(stage, parent, output, ctx, force)
    report = artifact.manifest.reports["simplify"]
    before, after = report["before"], report["after"]
    out.print(
        f"wrote {artifact.path}: nodes {before['nodes']} -> {after['nodes']}, "
        f"initializers {before['initializers']} -> {after['initializers']}, "
        f"{before['bytes'] / 1e6:.1f} -> {after['bytes'] / 1e6:.1f} MB"
    )


@app.command()
def infer(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory of a vocoder recipe.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="A .wav (resynthesis) or mel .npy.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Threads = 2,
    force: Force = False,
) -> None:
    """Run an artifact on one input so a person can listen to it."""
    check_writable(output, force)
    session = runtime.load(artifact, device=device, threads=threads)
    spec = session.manifest.model
    family = spec.adapter()
    if input.suffix == ".npy":
        features = np.load(input, allow_pickle=False)
        features = features[0] if features.ndim == 3 and features.shape[0] == 1 else features
    else:
        features = family.features(read_audio(input, spec.audio.sample_rate))
    feeds, seconds = family.utterance(features.astype(np.float32, copy=False))
    audio = family.waveform(session.run(feeds))
    write_audio(output, audio, spec.audio.sample_rate)
    out.print(f"wrote {output} ({seconds:.2f} s at {spec.audio.sample_rate} Hz)")


@app.command()
def inspect(artifact: Annotated[Path, typer.Argument(help="Artifact directory.")]) -> None:
    """Print an artifact's manifest: I/O, dims, lineage and reports."""
    out.print_json(Artifact.open(artifact).manifest.model_dump_json())


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: one-line errors and a non-zero exit; tracebacks only with --debug."""
    debug = "--debug" in sys.argv
    sys.argv = [arg for arg in sys.argv if arg != "--debug"]
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(standalone_mode=False)
    except SpeedyError as exc:
        if debug:
            raise
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[red]interrupted:[/] no partial output was kept", soft_wrap=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug or isinstance(exc, SystemExit):
            raise
        if hasattr(exc, "show"):  # click usage errors
            exc.show()
            sys.exit(2)
        console.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {exc} (rerun with --debug)",
            soft_wrap=True,
        )
        sys.exit(1)
