"""Compare an artifact with its parent on the same real inputs at several sizes."""

import json
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from speedy.console import console, notice
from speedy.errors import ParityError
from speedy.model_spec import ModelSpec
from speedy.runtime.base import Session


class ParityCase(BaseModel):
    sizes: dict[str, int]
    max_abs_error: dict[str, float]
    snr_db: dict[str, float]


class ParityReport(BaseModel):
    atol: float
    passed: bool
    cases: list[ParityCase]

    @property
    def worst(self) -> float:
        return max(max(case.max_abs_error.values()) for case in self.cases)

    def summary(self) -> str:
        parts = [
            f"{'x'.join(map(str, c.sizes.values()))}: {max(c.max_abs_error.values()):.2e}"
            for c in self.cases
        ]
        return f"max |err| {self.worst:.2e} (atol {self.atol:.0e}; {', '.join(parts)})"


PARITY_FIX = "investigate the op at fault (--debug), or pass --skip-parity to keep it anyway"


def max_abs_error(reference: np.ndarray, test: np.ndarray) -> float:
    """Largest element-wise difference; infinite when the shapes differ."""
    if reference.shape != test.shape:
        return float("inf")
    return float(np.max(np.abs(reference - test)))


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    if reference.shape != test.shape:
        return float("-inf")
    noise = float(np.sum((reference.astype(np.float64) - test) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return 200.0 if noise == 0 else min(200.0, 10 * np.log10(max(signal, 1e-30) / noise))


def compare(
    reference: Session,
    candidate: Session,
    spec: ModelSpec,
    features: Sequence[np.ndarray],
) -> ParityReport:
    """Run both sessions on real inputs of each size and measure how far the outputs differ."""
    options, family, cases = spec.parity, spec.adapter(), []
    for overrides in options.sizes:
        sizes = spec.sizes(overrides)
        feeds = family.feeds(features, sizes)
        expected, actual = reference.run(feeds), candidate.run(feeds)
        cases.append(
            ParityCase(
                sizes=sizes,
                max_abs_error={k: max_abs_error(expected[k], actual[k]) for k in expected},
                snr_db={k: snr_db(expected[k], actual[k]) for k in expected},
            )
        )
    report = ParityReport(atol=options.atol, passed=True, cases=cases)
    report.passed = report.worst <= options.atol
    return report


def check(
    reference: Session,
    candidate: Session,
    spec: ModelSpec,
    features: Sequence[np.ndarray],
    what: str,
    verify: bool = True,
    fix: str = PARITY_FIX,
) -> dict:
    """Compare, fail (suggesting `fix`) when the tolerance is exceeded, and return the report
    for the manifest."""
    if not verify:
        notice("parity check skipped (--skip-parity)")
        return {"parity": None}
    report = compare(reference, candidate, spec, features)
    console.print(f"  parity of {what}: {report.summary()}")
    if not report.passed:
        raise ParityError(f"{what} differs from its parent: {report.summary()}", fix)
    return {"parity": json.loads(report.model_dump_json())}
