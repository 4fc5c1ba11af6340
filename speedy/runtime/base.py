"""The one session interface every backend implements; feeds are checked here, not in backends."""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np

from speedy import cancel, interrupt
from speedy.artifact import GraphEntry
from speedy.errors import OutOfRange, SpeedyError
from speedy.specs import DimRange, Feeds, TensorSpec, derived


def check_feeds(
    inputs: Sequence[TensorSpec], dims: Mapping[str, DimRange], feeds: Mapping[str, np.ndarray]
) -> dict[str, int]:
    """Check names, dtypes, ranks and dim ranges against `inputs`; return symbol sizes."""
    expected = {spec.name: spec for spec in inputs}
    if missing := expected.keys() - feeds.keys():
        raise SpeedyError(
            f"missing input(s) {sorted(missing)}",
            f"feed {', '.join(s.describe() for s in inputs)}",
        )
    if extra := feeds.keys() - expected.keys():
        raise SpeedyError(
            f"unknown input(s) {sorted(extra)}", f"the model takes {sorted(expected)}"
        )
    sizes: dict[str, int] = {}
    for name, spec in expected.items():
        _check_tensor(spec, np.asarray(feeds[name]), dims, sizes)
    return sizes


def _check_tensor(
    spec: TensorSpec, value: np.ndarray, dims: Mapping[str, DimRange], sizes: dict[str, int]
) -> None:
    fix = f"feed {spec.describe()} as made by the recipe's front end"
    if value.dtype != np.dtype(spec.dtype):
        raise SpeedyError(f"input '{spec.name}' is {value.dtype}, expected {spec.dtype}", fix)
    if value.ndim != len(spec.shape):
        raise SpeedyError(
            f"input '{spec.name}' has rank {value.ndim} {value.shape}, expected {len(spec.shape)}",
            fix,
        )
    for axis, (dim, size) in enumerate(zip(spec.shape, value.shape, strict=True)):
        if isinstance(dim, int):
            if size != dim:
                raise SpeedyError(
                    f"input '{spec.name}' has size {size} on axis {axis}, the model needs {dim}",
                    fix,
                )
            continue
        rule = derived(dim)
        symbol = rule.base if rule else dim
        own = rule.base_of(size) if rule else size
        if own is None:
            raise SpeedyError(
                f"input '{spec.name}' has size {size} on axis {axis}, which is no {dim}", fix
            )
        declared = dims.get(symbol)
        if declared is not None and own not in declared:
            raise OutOfRange(
                f"input '{spec.name}' {symbol}={own} is outside the declared range "
                f"{declared.min}..{declared.max}",
                f"cut the input into pieces within the range, or widen dims.{symbol} and rebuild",
            )
        if sizes.setdefault(symbol, own) != own:
            raise SpeedyError(
                f"inputs disagree on {symbol}: {sizes[symbol]} and {own}"
                + (f" (axis {axis} of '{spec.name}' is {dim})" if rule else ""),
                "feed tensors of matching sizes",
            )


class Session(ABC):
    """One loaded graph that maps named NumPy inputs to named NumPy outputs."""

    def __init__(self, name: str, graph: GraphEntry, dims: Mapping[str, DimRange]) -> None:
        self.name = name
        self.graph = graph
        self.dims = dims

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.graph.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.graph.outputs

    def check(self, feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Check `feeds` against this graph's inputs and the model's dim ranges."""
        return check_feeds(self.inputs, self.dims, feeds)

    def run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        """Check `feeds`, then run the backend (interruptible by SIGINT/SIGTERM at once, and
        stopped by a cancel of the request it runs for)."""
        cancel.check()
        self.check(feeds)
        contiguous = {name: np.ascontiguousarray(value) for name, value in feeds.items()}
        return interrupt.interruptible(lambda: self._run(contiguous), self.stop)

    @abstractmethod
    def _run(self, feeds: Mapping[str, np.ndarray]) -> Feeds:
        """Run checked feeds through the backend."""

    def stop(self) -> None:
        """Ask the runs in progress to end early (after an interrupt); where a backend cannot,
        they are abandoned."""
        return
