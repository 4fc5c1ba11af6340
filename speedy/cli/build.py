"""Commands that make artifacts from models: `run` (a recipe end to end), `import` (an ONNX
file made elsewhere) and `export` (PyTorch to ONNX)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from speedy.cli.app import app
from speedy.cli.params import Data, Force, NoVerify, Output, SkipParity, Threads
from speedy.console import notice, out, shown
from speedy.errors import SpeedyError
from speedy.stages.options import Exporter

if TYPE_CHECKING:
    from speedy.stages.base import Stage


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
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe
    from speedy.summary import summarize, write_summary

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
    output: Output,
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
    from speedy.outputs import check_writable
    from speedy.pipeline import context_for
    from speedy.stages.base import execute
    from speedy.stages.import_onnx import ImportStage
    from speedy.stages.options import ImportOptions

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


def _export_stage(
    settings: dict, opset: int | None, exporter: Exporter | None, skip_parity: bool
) -> "Stage":
    from speedy.pipeline import make_stage

    overrides = {"opset": opset, "exporter": exporter, "verify": not skip_parity}
    return make_stage("export", settings | {k: v for k, v in overrides.items() if v is not None})


@app.command()
def export(
    output: Output,
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
    from speedy.artifact import Artifact
    from speedy.families.network import custom_spec, fits, trust_factory
    from speedy.outputs import check_writable
    from speedy.pipeline import context_for
    from speedy.recipe import load_recipe
    from speedy.rewrites import parse as parse_rewrites
    from speedy.scratch import scratch
    from speedy.stages.base import execute
    from speedy.stages.load import LoadStage
    from speedy.stages.options import LoadOptions

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
        parent = Artifact.open(Path(source), verify=not no_verify)
        ctx = context_for(parent.manifest.model, data, threads)
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
