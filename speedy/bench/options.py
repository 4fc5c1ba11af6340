"""The options of a bench run, apart from the command that takes them and the runner: declared
once, here; `speedy bench` derives its flags from the fields with a description."""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator


class BenchOptions(BaseModel):
    """Every option of a bench run."""

    model_config = ConfigDict(extra="forbid")

    artifacts: list[str]  # directories, or NAME=PATH
    output: Path
    reference: str | None = Field(
        None,
        description="What the ratios and comparisons refer to: a name, path or NAME=PATH "
        "(default: the first artifact).",
    )
    data: Path | None = Field(
        None, description="Directory or file of examples, or 'default' (the task's)."
    )
    device: str = Field("cpu", description="cpu or cuda.")
    threads: int = 2
    batches: list[PositiveInt] = Field(
        default_factory=lambda: [1],
        description="Batch size for throughput; repeat for several.",
        json_schema_extra={"flag": "--batch"},
    )
    warmup: int = Field(1, description="Untimed rounds first.")
    repeat: int = Field(3, description="Timed rounds; medians are reported.")
    chunk_seconds: float | None = Field(
        0.25, description="Streaming chunk length (vocoders), 0 for no streaming."
    )
    html: bool = Field(True, description="Write index.html with figures and audio.")
    baseline: Path | None = Field(
        None, description="Gate: fail when a figure regressed from this baseline."
    )
    tolerance: str | None = Field(
        None,
        description="Gate tolerances: a relative one for speed/size/memory ratios and/or "
        "NAME=VALUE (speed, size, memory, quality or a figure such as pesq).",
    )
    save_baseline: Path | None = Field(
        None, description="Write this run's figures as a new baseline file."
    )
    vocoder: Path | None = Field(
        None,
        description="A vocoder artifact to chain after text-to-mel artifacts: text to wave, "
        "with RTF per stage and the audio's quality figures.",
    )
    force: bool = False
    force_file: bool = False  # --save-baseline may replace a file speedy did not write

    @field_validator("data", mode="before")
    @classmethod
    def _default_data(cls, value: Any) -> Any:
        return None if str(value) == "default" else value

    @field_validator("chunk_seconds")
    @classmethod
    def _no_streaming(cls, value: float | None) -> float | None:
        return value or None  # 0: no streaming figures
