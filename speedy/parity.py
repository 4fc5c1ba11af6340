"""Compare an artifact's graphs with its parent's on the same real inputs at several sizes.

Each graph is fed what it receives when the parent runs the task on real examples cut to each
parity size (a decoder gets the parent encoder's codes, a decode step the parent's cache), so
every graph is checked on its own, at sizes never used for tracing.
"""

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from speedy.console import console, notice
from speedy.errors import ParityError
from speedy.model_spec import ParityOptions
from speedy.quality import SNR_CAP_DB, snr
from speedy.reports import ParityCase, ParityReport
from speedy.runtime import Model
from speedy.specs import symbol_sizes
from speedy.tasks import Task, graph_feeds

PARITY_FIX = "investigate the op at fault (--debug), or pass --skip-parity to keep it anyway"


def max_abs_error(reference: np.ndarray, test: np.ndarray) -> float:
    """Largest element-wise difference; infinite when the shapes differ or either side holds a
    NaN or infinite value (a broken output never passes, whatever its parent did)."""
    if reference.shape != test.shape:
        return math.inf
    with np.errstate(invalid="ignore"):  # inf - inf
        difference = np.abs(reference.astype(np.float64) - test)
    return float(np.max(difference, initial=0.0)) if np.all(np.isfinite(difference)) else math.inf


def tensor_snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """SNR of two tensors of one shape (-SNR_CAP_DB when their shapes differ)."""
    return snr(reference, test) if reference.shape == test.shape else -SNR_CAP_DB


def compare(
    reference: Model,
    candidate: Model,
    task: Task,
    examples: Sequence[Any],
    graphs: Sequence[str] | None = None,
    parity: ParityOptions | None = None,
) -> ParityReport:
    """Run `graphs` (default: all) of both models on what each receives when `reference` runs
    real inputs of every parity size (`parity`, default the model's), and measure how far the
    outputs differ."""
    spec, cases = task.spec, []
    parity = parity or spec.parity
    for overrides in parity.sizes:
        fed = graph_feeds(task, reference, task.sized_inputs(examples, spec.sizes(overrides)))
        for graph in graphs or reference.graphs:
            for feeds in fed[graph]:
                expected, actual = reference[graph].run(feeds), candidate[graph].run(feeds)
                shapes = {name: value.shape for name, value in feeds.items()}
                cases.append(
                    ParityCase(
                        graph=graph,
                        sizes=symbol_sizes(reference[graph].inputs, shapes),
                        max_abs_error={k: max_abs_error(v, actual[k]) for k, v in expected.items()},
                        snr_db={k: tensor_snr_db(v, actual[k]) for k, v in expected.items()},
                    )
                )
    report = ParityReport(atol=parity.atol, passed=True, cases=cases)
    report.passed = report.worst <= parity.atol
    return report


def check(
    reference: Model,
    candidate: Model,
    task: Task,
    examples: Sequence[Any],
    what: str,
    verify: bool = True,
    fix: str = PARITY_FIX,
    graphs: Sequence[str] | None = None,
    parity: ParityOptions | None = None,
) -> dict:
    """Compare, fail (suggesting `fix`) when the tolerance is exceeded, and return the report
    for the manifest."""
    if not verify:
        notice("parity check skipped (--skip-parity)")
        return {"parity": None}
    report = compare(reference, candidate, task, examples, graphs, parity)
    console.print(f"  parity of {what}: {report.summary()}")
    if not report.passed:
        raise ParityError(f"{what} differs from its parent: {report.summary()}", fix)
    return {"parity": json.loads(report.model_dump_json())}
