"""`speedy deploy ray` and `speedy deploy triton`: artifacts onto existing serving engines."""

from pathlib import Path
from typing import Annotated, Any

import typer

from speedy.cli.app import app
from speedy.cli.params import Force, NoVerify, Trust, given, validated, with_flags
from speedy.console import out, shown
from speedy.deploy.options import RayOptions, RayPlan
from speedy.serve.options import ServeOptions

deploy = typer.Typer(
    help="Deploy artifacts to Ray Serve or to a Triton Inference Server model repository.",
    no_args_is_help=True,
)
app.add_typer(deploy, name="deploy")

Artifacts = Annotated[
    list[str],
    typer.Argument(help="Artifacts to deploy, as `speedy serve` takes them (NAME=PATH names one)."),
]
DeployOutput = Annotated[Path, typer.Option("-o", "--output", help="Directory to write.")]
RAY_CONFIG = "serve.yaml"
# Options of `speedy serve` that uvicorn applies, not Ray's proxy.
UVICORN_ONLY = frozenset({"max_connections", "grace_s"})


@deploy.command("ray")
@with_flags(ServeOptions, RayOptions, exclude=UVICORN_ONLY)
def ray(
    artifacts: Artifacts,
    output: DeployOutput,
    run: Annotated[
        bool, typer.Option("--run", help="Start it on a local Ray cluster (Ctrl-C stops).")
    ] = False,
    no_verify: NoVerify = False,
    trust: Trust = False,
    force: Force = False,
    **options: Any,
) -> None:
    """A Ray Serve application: a deployment per artifact, scaled apart, and speedy's HTTP API
    (`speedy serve`'s routes) over them. `serve run DIR/serve.yaml` starts it."""
    import yaml

    from speedy.deploy.output import deployment_dir
    from speedy.deploy.remote import check_catalog, pinned
    from speedy.deploy.scaling import measured, ongoing_target, read_report
    from speedy.serve.catalog import named

    settings = given(options)
    serve_options = validated(
        ServeOptions,
        {k: v for k, v in settings.items() if k in ServeOptions.model_fields}
        | {"artifacts": artifacts, "verify": not no_verify},
        "deploy ray",
    )
    scaling = validated(
        RayOptions,
        {k: v for k, v in settings.items() if k in RayOptions.model_fields},
        "deploy ray",
    )
    catalog = check_catalog(serve_options.artifacts, serve_options.vocoders,
                            serve_options.chunk_seconds)  # fmt: skip
    scaling.counts({named(item)[0] for item in [*serve_options.artifacts, *serve_options.vocoders]})
    if scaling.bench:
        digests = {name: m.model.manifest.digest for name, m in catalog.models.items()}
        digests |= {v.vocoder.name: v.vocoder.model.manifest.digest
                    for v in catalog.voices.values() if v.vocoder}  # fmt: skip
        found = measured(read_report(scaling.bench), digests, serve_options.device,
                         serve_options.threads)  # fmt: skip
        targets = {n: ongoing_target(n, r, scaling.target_latency) for n, r in found.items()}
        scaling = scaling.model_copy(update={"targets": targets})
    plan = RayPlan(serve=pinned(serve_options), ray=scaling, trust=trust)
    args = plan.model_dump(mode="json")
    config = {
        "http_options": {"host": serve_options.host, "port": serve_options.port},
        "applications": [{"name": "speedy", "route_prefix": "/",
                          "import_path": "speedy.deploy.ray_app:build", "args": args}],
    }  # fmt: skip
    with deployment_dir(output, force, {"target": "Ray Serve"}) as directory:
        (directory / RAY_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    out.print(f"wrote {shown(output / RAY_CONFIG)} (start it: serve run {output / RAY_CONFIG})")
    if run:
        from speedy.deploy.ray_app import run_locally

        run_locally(args, serve_options.host, serve_options.port)


@deploy.command("triton")
@with_flags(
    ServeOptions,
    exclude=frozenset(ServeOptions.model_fields) - {"vocoders", "chunk_seconds", "device"},
)
def triton(
    artifacts: Artifacts,
    output: DeployOutput,
    instances: Annotated[
        int, typer.Option(help="Instances of the Python model that runs speedy's loops.")
    ] = 2,
    bench: Annotated[
        Path | None,
        typer.Option(
            help="A speedy bench JSON: dynamic batching (preferred sizes, queue delay) "
            "of the one-graph artifacts it measured."
        ),
    ] = None,
    force: Force = False,
    **options: Any,
) -> None:
    """A Triton Inference Server model repository: a model per graph (ONNX Runtime, TensorRT,
    AOTInductor or OpenVINO backend) and a Python model running speedy's loops over them."""
    from speedy.deploy.scaling import read_report
    from speedy.deploy.triton_repo import TRITON_RELEASE, write_repository

    settings = validated(ServeOptions, given(options) | {"artifacts": artifacts}, "deploy triton")
    report = read_report(bench) if bench else None
    written = write_repository(
        settings.artifacts, settings.vocoders, output, settings.chunk_seconds, settings.device,
        instances, force, report,
    )  # fmt: skip
    count = sum(map(len, written.graphs.values()))
    ensembles = len(written.ensembles)
    out.print(f"wrote {shown(output)}: {count} graph model(s), {ensembles} ensemble(s) and the "
              f"speedy model, for Triton Inference Server {TRITON_RELEASE}")  # fmt: skip
