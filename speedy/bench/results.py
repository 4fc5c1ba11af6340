"""What one bench run found, as typed records that become `bench.json`."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_FORMAT = "speedy-bench"
REPORT_VERSION = 4
DNSMOS_FIGURES = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")
REFERENCE_FIGURES = ("snr", "mel", "mcd", "pesq", "stoi")  # against the reference's output


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Utterance(Record):
    """One clip's figures for one artifact."""

    name: str
    audio_seconds: float | None  # None: the model's outputs are not audio
    latency_ms: float  # median over the timed rounds
    first_chunk_ms: float | None = None
    seam_snr_db: float | None = None
    # DNSMOS, and the comparison with the reference's output (None: could not be computed)
    quality: dict[str, float | None]


class Speed(Record):
    # compute seconds per audio second, whole utterances, median over rounds (None: the model's
    # outputs are not audio, and its latency tells its speed)
    rtf: float | None
    # with a vocoder: the RTF of each stage (front_end, acoustic, vocoder), medians that
    # add up to about `rtf`, which is then end to end
    stage_rtf: dict[str, float] | None = None
    latency_p50_ms: float
    latency_p95_ms: float
    throughput: dict[str, float]  # batch size -> audio seconds per second (empty: no audio)
    items_per_second: dict[str, float]  # batch size -> items per second
    first_chunk_p50_ms: float | None = None
    first_chunk_p95_ms: float | None = None
    stream_rtf: float | None = None  # one streamed pass over all utterances


class Memory(Record):
    rss_before_load_bytes: int
    rss_after_load_bytes: int
    rss_peak_bytes: int  # whole process, after the timed whole-utterance and batch runs
    gpu_peak_bytes: int | None = None


class ArtifactResult(Record):
    """Everything measured for one artifact, with its ratios to the reference."""

    path: str
    digest: str | None = None  # the manifest's: which artifact, wherever it lies (version 4 on)
    kind: str
    stage: str
    precision: str
    checkpoint: str | None  # the weights it was built from (None: seeded)
    size_bytes: int
    load_seconds: float
    first_run_seconds: float
    speed: Speed
    memory: Memory
    quality: dict[str, float | None]  # means over the utterances
    task_figures: dict[str, float]  # the task's own speed figures (medians over rounds)
    ratios: dict[str, float]
    utterances: list[Utterance]


class DataInfo(Record):
    path: str
    files: list[str]
    audio_seconds: float | None  # None: the model's outputs are not audio
    digest: str  # of the model features: the same digest means the same inputs


class Settings(Record):
    device: str
    threads: int
    batches: list[int]
    batch_sizes: dict[str, int]  # symbolic sizes of the batched runs, batch aside
    warmup: int
    repeat: int
    chunk_frames: int | None
    chunk_seconds: float | None
    streaming: dict[str, int] | None = None  # the task's chunk and context sizes
    vocoder: str | None = None  # text-to-mel artifacts chained with this vocoder: text to wave
    vocoder_digest: str | None = None


class BenchReport(Record):
    format: Literal["speedy-bench"] = REPORT_FORMAT
    version: int = REPORT_VERSION
    recipe: str
    reference: str
    runs_note: str | None = None  # how the task's runs on data differ from requests
    machine: dict[str, Any]
    settings: Settings
    data: DataInfo
    source_quality: dict[str, float | None] | None  # DNSMOS of the data's own recordings
    artifacts: dict[str, ArtifactResult]
    gate: dict[str, Any] | None = None
    files: dict[str, str] = Field(default_factory=dict)  # the report's other files -> SHA-256
