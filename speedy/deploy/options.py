"""The options of `speedy deploy`, declared once (the commands derive their flags from the
fields with a description). Pure data: neither Ray nor Triton imported."""

from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from speedy.errors import SpeedyError
from speedy.serve.options import ServeOptions


class RayOptions(BaseModel):
    """How the model deployments of a Ray Serve application scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: list[str] = Field(
        default_factory=list,
        description="NAME=N: replicas of the artifact called NAME (repeatable; default 1 each).",
        json_schema_extra={"flag": "--replicas"},
    )
    max_replicas: PositiveInt | None = Field(
        None,
        description="Autoscale every model deployment between 1 and this many replicas "
        "(instead of --replicas).",
    )
    target_ongoing: PositiveFloat = Field(
        2.0,
        description="Requests in flight per replica that autoscaling aims for.",
    )
    bench: Path | None = Field(
        None,
        description="A speedy bench JSON: each artifact it measured autoscales (with "
        "--max-replicas) at the requests one replica serves within --target-latency.",
    )
    target_latency: PositiveFloat = Field(
        1.0, description="Seconds a request may take, for --bench's autoscaling targets."
    )
    # artifact name -> requests in flight per replica: what `speedy deploy ray` reads in --bench
    targets: dict[str, PositiveFloat] = Field(default_factory=dict)
    replica_cpus: PositiveFloat | None = Field(
        None, description="CPUs Ray reserves per model replica (default: --threads)."
    )
    replica_gpus: NonNegativeFloat = Field(
        0.0,
        description="GPUs (fractions allowed) Ray reserves per model replica with --device cuda.",
    )

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> "RayOptions":
        if self.replicas and self.max_replicas:
            raise ValueError("--replicas and --max-replicas exclude each other: pick one")
        if self.bench and not self.max_replicas:
            raise ValueError("--bench sets autoscaling targets: give --max-replicas too")
        return self

    def target(self, name: str) -> float:
        """Requests in flight per replica that the artifact called `name` scales at."""
        return self.targets.get(name, self.target_ongoing)

    def counts(self, names: set[str]) -> dict[str, int]:
        """The replicas of each artifact `--replicas` names, among the served `names`."""
        counts: dict[str, int] = {}
        for item in self.replicas:
            name, sep, count = item.rpartition("=")
            if not sep or not count.isdigit() or int(count) < 1:
                raise SpeedyError(
                    f"--replicas {item}: not NAME=N", "pass e.g. --replicas hifigan_v1/quantize=2"
                )
            if name not in names:
                raise SpeedyError(f"--replicas {item}: no served artifact is named '{name}'",
                                  f"use one of: {', '.join(sorted(names))}")  # fmt: skip
            counts[name] = int(count)
        return counts


class RayPlan(BaseModel):
    """Everything `ray_app.build` needs: the `speedy serve` options of the ingress and how the
    model deployments scale (the `args` of the Serve config's application)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    serve: ServeOptions
    ray: RayOptions = RayOptions()
    trust: bool = False
