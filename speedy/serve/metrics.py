"""Request counts, latency and real-time-factor histograms, and queue gauges, in Prometheus's
text exposition format (`GET /metrics`)."""

from collections import defaultdict
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class Histogram:
    """Cumulative bucket counts, sum and count of observations, per label value."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(buckets) + 1))
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, label: str, value: float) -> None:
        counts = self.counts[label]
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf, and the count
        self.sums[label] += value

    def lines(self, name: str, key: str) -> Iterable[str]:
        for label, counts in sorted(self.counts.items()):
            bounds = [*(f"{b:g}" for b in self.buckets), "+Inf"]
            for bound, count in zip(bounds, counts, strict=True):
                yield f'{name}_bucket{{{key}="{label}",le="{bound}"}} {count}'
            yield f'{name}_sum{{{key}="{label}"}} {self.sums[label]:.6g}'
            yield f'{name}_count{{{key}="{label}"}} {counts[-1]}'


class Metrics:
    """What the server counts: requests by endpoint and status, their latency, the RTF of the
    audio they made, and (read when rendered) the requests running and waiting."""

    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.disconnects: dict[str, int] = defaultdict(int)
        self.latency = Histogram(LATENCY_BUCKETS)
        self.rtf = Histogram(RTF_BUCKETS)
        self.gauges = gauges  # name -> (help, read)

    def record(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[endpoint, status] += 1
        self.latency.observe(endpoint, seconds)

    def disconnected(self, endpoint: str) -> None:
        """A client left before its response was sent (its work was stopped)."""
        self.disconnects[endpoint] += 1

    def render(self) -> str:
        lines = [
            "# HELP speedy_requests_total Requests by endpoint and HTTP status.",
            "# TYPE speedy_requests_total counter",
            *(
                f'speedy_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.requests.items())
            ),
            "# HELP speedy_errors_total Requests answered with a 4xx or 5xx status.",
            "# TYPE speedy_errors_total counter",
            f"speedy_errors_total {sum(n for (_, s), n in self.requests.items() if s >= 400)}",
            "# HELP speedy_client_disconnects_total Requests whose client left before the answer.",
            "# TYPE speedy_client_disconnects_total counter",
            *(
                f'speedy_client_disconnects_total{{endpoint="{e}"}} {n}'
                for e, n in sorted(self.disconnects.items())
            ),
            "# HELP speedy_request_seconds Seconds to answer a request (a stream: its last chunk).",
            "# TYPE speedy_request_seconds histogram",
            *self.latency.lines("speedy_request_seconds", "endpoint"),
            "# HELP speedy_rtf Seconds spent per second of audio made, per response.",
            "# TYPE speedy_rtf histogram",
            *self.rtf.lines("speedy_rtf", "endpoint"),
        ]
        for name, (help_text, read) in self.gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
