"""Rewrites: module swaps that make common speech blocks exportable, applied on request
(`speedy export --rewrite istft,lstm`), each checked against the module it replaces."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speedy.errors import SpeedyError
from speedy.rewrites import istft, lstm


@dataclass(frozen=True)
class Rewrite:
    """Which submodules a rewrite replaces, with what, and how close the result must stay."""

    name: str
    finds: str  # what `targets` looks for, in words
    targets: Callable[[nn.Module], list[str]]
    replace: Callable[[nn.Module], nn.Module]
    atol: float = 1e-5  # relative to the largest output value, where that exceeds 1


REWRITES = {
    r.name: r
    for r in (
        Rewrite("istft", "whose forward calls istft", istft.targets, istft.replace, 1e-4),
        Rewrite("lstm", "of type nn.LSTM, nn.GRU or nn.RNN", lstm.targets, lstm.replace),
    )
}


def parse(text: str | None) -> list[str]:
    """Rewrite names from a comma-separated list, each checked."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if unknown := [n for n in names if n not in REWRITES]:
        raise SpeedyError(
            f"unknown rewrite '{unknown[0]}'", f"use one or more of: {', '.join(REWRITES)}"
        )
    return names


def apply(module: nn.Module, names: Sequence[str], args: tuple) -> tuple[nn.Module, list[str]]:
    """`module` with the named rewrites applied (in place where a submodule is swapped), and
    what was rewritten ("name:path"); each swap checked on the inputs it gets when `module`
    runs `args`."""
    done = []
    for name in parse(",".join(names)):
        rewrite = REWRITES[name]
        paths = rewrite.targets(module)
        inputs = captured_inputs(module, paths, args)
        for path in paths:
            old = module.get_submodule(path)
            new = rewrite.replace(old).eval()
            check_parity(
                old, new, inputs.get(path), rewrite.atol, f"{name} rewrite of {where(path, old)}"
            )
            module = swap(module, path, new)
            done.append(f"{name}:{path or '.'}")
    return module, done


def check_found(names: Sequence[str], done: Mapping[str, Sequence[str]]) -> None:
    """A SpeedyError for a requested rewrite that found nothing to replace in any graph."""
    applied = {entry.partition(":")[0] for entries in done.values() for entry in entries}
    if missing := [n for n in names if n not in applied]:
        raise SpeedyError(
            f"--rewrite {missing[0]}: the network has no module {REWRITES[missing[0]].finds}",
            f"drop {missing[0]} from --rewrite",
        )


def where(path: str, module: nn.Module) -> str:
    return (
        f"'{path}' ({type(module).__name__})" if path else f"the top-level {type(module).__name__}"
    )


def captured_inputs(module: nn.Module, paths: Sequence[str], args: tuple) -> dict[str, Any]:
    """The (args, kwargs) each submodule at `paths` gets first when `module` runs `args`."""
    found: dict[str, Any] = {}
    hooks = []
    for path in paths:

        def hook(_: nn.Module, a: tuple, k: dict, path: str = path) -> None:
            found.setdefault(path, (a, k))

        hooks.append(module.get_submodule(path).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for handle in hooks:
            handle.remove()
    return found


def check_parity(old: nn.Module, new: nn.Module, inputs: Any, atol: float, what: str) -> float:
    """Largest difference of `new`'s outputs from `old`'s on `inputs`; a SpeedyError when it
    exceeds `atol` (times the largest output value, where that exceeds 1)."""
    if inputs is None:
        raise SpeedyError(f"the {what} is never called on the tracing inputs", "check the model")
    args, kwargs = inputs
    with torch.no_grad():
        expected, actual = _tensors(old(*args, **kwargs)), _tensors(new(*args, **kwargs))
    shapes = [t.shape for t in expected], [t.shape for t in actual]
    if shapes[0] != shapes[1]:
        raise SpeedyError(f"the {what} gives shapes {shapes[1]}, not {shapes[0]}", "report it")
    pairs = zip(expected, actual, strict=True)
    worst = max((float((e - a).abs().max()) for e, a in pairs if e.numel()), default=0.0)
    scale = max((float(e.abs().max()) for e in expected if e.numel()), default=1.0)
    if not worst <= atol * max(1.0, scale):
        raise SpeedyError(
            f"the {what} differs from the original by {worst:.2e} (tolerance {atol:.0e})",
            "leave this rewrite out and report the module",
        )
    return worst


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def swap(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """`root` with the submodule at `path` replaced by `new` (`new` itself for the root)."""
    if not path:
        return new
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent), name, new)
    return root
