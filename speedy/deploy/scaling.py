"""Serving settings from a `speedy bench` report, its artifacts matched to the deployed ones by
manifest digest (wherever either lies):

* Ray Serve autoscaling: one replica runs a request's graph calls in about the artifact's p95
  latency, so within a target latency it serves about target / latency requests in flight, the
  `target_ongoing_requests` its deployment scales at;
* Triton dynamic batching: the batch sizes that reach 90% of the best items per second the bench
  measured are the preferred ones, and a request waits at most a tenth of its latency for
  others to batch with (batching that gains under 10% over one item waits for none).
"""

from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from speedy.bench.results import ArtifactResult, BenchReport
from speedy.console import notice
from speedy.errors import SpeedyError, first_invalid

PREFERRED_SHARE = 0.9  # of the best items per second: a preferred batch size
BATCHING_GAIN = 1.1  # items per second over one item's, below which no request waits
WAIT_SHARE = 0.1  # of a request's p50 latency: the longest it waits to be batched


def read_report(path: Path) -> BenchReport:
    """The bench report at `path`, with a clear error for a file that is not one."""
    try:
        return BenchReport.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise SpeedyError(
            f"no bench report at {path}", "pass the bench.json of speedy bench"
        ) from None
    except ValidationError as exc:
        raise SpeedyError(
            f"{path} is not a speedy bench report ({first_invalid(exc, 'report')})",
            "pass the bench.json that speedy bench wrote",
        ) from None


def measured(
    report: BenchReport, digests: Mapping[str, str], device: str, threads: int | None
) -> dict[str, ArtifactResult]:
    """The report's figures of each artifact (name -> manifest digest in `digests`) it measured,
    with a notice for the others and for a report made on another device or thread count."""
    by_digest = {r.digest: r for r in report.artifacts.values() if r.digest}
    if not by_digest:
        raise SpeedyError(
            "the bench report names no artifact by digest (written before speedy recorded them)",
            "run speedy bench again on the artifacts",
        )
    ran = (report.settings.device, report.settings.threads)
    if ran[0] != device or (threads is not None and ran[1] != threads):
        notice(f"the bench ran on {ran[0]} with {ran[1]} thread(s), not as deployed: its "
               "figures are a guide only")  # fmt: skip
    found = {}
    for name, digest in digests.items():
        if digest in by_digest:
            found[name] = by_digest[digest]
        else:
            notice(f"{name} is not in the bench report: its settings are the defaults")
    return found


def ongoing_target(name: str, result: ArtifactResult, target_seconds: float) -> float:
    """Requests in flight one replica serves within `target_seconds` (at least 1)."""
    seconds = result.speed.latency_p95_ms / 1000
    if seconds > target_seconds:
        notice(f"{name} takes {seconds:.2f} s at p95, past the {target_seconds:g} s target: "
               "one request per replica")  # fmt: skip
    return max(1.0, round(target_seconds / seconds, 2))


def batching(result: ArtifactResult, largest: int) -> tuple[list[int], int]:
    """Preferred batch sizes (up to `largest`) and the longest wait in microseconds."""
    rates = {int(b): r for b, r in result.speed.items_per_second.items() if int(b) <= largest}
    if not rates or max(rates.values()) < BATCHING_GAIN * rates.get(1, max(rates.values())):
        return [], 0
    best = max(rates.values())
    preferred = sorted(b for b, r in rates.items() if r >= PREFERRED_SHARE * best and b > 1)
    return preferred, round(WAIT_SHARE * result.speed.latency_p50_ms * 1000)
