"""speedy's HTTP API on Ray Serve. Each artifact is a deployment whose replicas hold its graphs;
an ingress deployment runs `speedy serve`'s own app (same routes, request schemas and errors)
over graph sessions that call those replicas through deployment handles, so a chain (text model
-> vocoder) is composed of two deployments that scale apart.

`speedy deploy ray` writes a Serve config whose application is `build(args)`; `serve run
serve.yaml` (or `speedy deploy ray ... --run`) starts it. A graph run has no side effects (every
state is an input), so a call whose replica died is sent again, to another replica.
"""

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle

from speedy import runtime
from speedy.artifact import Artifact
from speedy.deploy.options import RayPlan
from speedy.deploy.remote import GraphCall, engine_name, pinned, remote_model
from speedy.serve.catalog import Catalog, named
from speedy.specs import Feeds

ATTEMPTS = 3  # a graph call's tries when replicas die under it
log = logging.getLogger("speedy.deploy")


@serve.deployment
class ArtifactGraphs:
    """One artifact's graphs, loaded in each replica."""

    def __init__(self, path: str, device: str, threads: int, verify: bool, trust: bool) -> None:
        if trust:
            runtime.trust_code()
        self.model = runtime.load(path, device, threads, verify)

    def run(self, graph: str, feeds: Mapping[str, np.ndarray]) -> Feeds:
        return self.model[graph].run(feeds)


def graph_call(handle: DeploymentHandle, name: str) -> GraphCall:
    """Graph runs through `handle`, sent again when the replica running one dies."""

    def call(graph: str, feeds: Mapping[str, np.ndarray]) -> Feeds:
        for _ in range(ATTEMPTS - 1):
            try:
                return handle.run.remote(graph, dict(feeds)).result()
            except RayActorError as exc:
                log.warning("%s: a replica died running %s (%s); sending it again", name, graph,
                            type(exc).__name__)  # fmt: skip
        return handle.run.remote(graph, dict(feeds)).result()

    return call


@serve.deployment(ray_actor_options={"num_cpus": 0})  # it waits on the model replicas
@serve.ingress()
class SpeedyIngress:
    """`speedy serve`'s app over the model deployments."""

    def __init__(self, handles: dict[str, DeploymentHandle], args: dict[str, Any]) -> None:
        self.handles, self.plan = handles, RayPlan.model_validate(args)

    def __serve_build_asgi_app__(self) -> Any:
        from speedy.serve.server import catalog_server, guarded_app

        options = self.plan.serve

        def open_model(path: Path) -> runtime.Model:
            key = str(path)
            artifact = Artifact.open(path, options.verify)
            return remote_model(artifact, graph_call(self.handles[key], key))

        catalog = Catalog.load(options.artifacts, options.vocoders, options.chunk_seconds,
                               open_model)  # fmt: skip
        with ThreadPoolExecutor(1) as thread:  # the warm-up waits on handles: not on this loop
            server = thread.submit(catalog_server, catalog, options).result()
        return guarded_app(server, options)


def build(args: dict[str, Any]) -> serve.Application:
    """The application: a deployment per artifact and the ingress over them."""
    plan = RayPlan.model_validate(args)
    plan = plan.model_copy(update={"serve": pinned(plan.serve)})
    options, scaling = plan.serve, plan.ray
    artifacts = dict(map(named, [*options.artifacts, *options.vocoders]))
    counts = scaling.counts(set(artifacts))
    cpus = scaling.replica_cpus or options.threads
    gpus = scaling.replica_gpus if options.device == "cuda" else 0.0
    handles = {}
    for name, path in artifacts.items():
        replicas: dict[str, Any] = {"num_replicas": counts.get(name, 1)}
        if scaling.max_replicas:
            replicas = {"autoscaling_config": {
                "min_replicas": 1, "max_replicas": scaling.max_replicas,
                "target_ongoing_requests": scaling.target(name)}}  # fmt: skip
        handles[str(path)] = ArtifactGraphs.options(
            name=engine_name(name),
            ray_actor_options={"num_cpus": cpus, "num_gpus": gpus},
            **replicas,
        ).bind(str(path), options.device, options.threads, options.verify, plan.trust)
    return SpeedyIngress.bind(handles, plan.model_dump(mode="json"))


def run_locally(args: dict[str, Any], host: str, port: int) -> None:
    """Start the application on a local Ray cluster and serve until SIGINT/SIGTERM."""
    import threading

    import ray

    from speedy import interrupt
    from speedy.console import out

    ray.init(include_dashboard=False)
    interrupt.install()  # ray.init put its own SIGTERM handler (a stack dump, then abort) first
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build(args), name="speedy", route_prefix="/")
        out.print(f"serving on http://{host}:{port}/ through Ray Serve (Ctrl-C stops)")
        threading.Event().wait()
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        serve.shutdown()
        ray.shutdown()
