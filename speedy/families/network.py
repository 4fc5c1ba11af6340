"""Networks as torch modules: a family's (by its adapter) or a factory's the user trusts, with
or without a checkpoint's weights."""

import importlib
import os
import sys
from pathlib import Path

import torch

from speedy.errors import SpeedyError
from speedy.families import describe, resolve
from speedy.families.base import read_state_dict
from speedy.families.custom import Custom, check_input_names, read_io_spec, with_outputs
from speedy.model_spec import ModelSpec
from speedy.recipe import checkpoint_info
from speedy.torch_utils import strip_weight_norm

TRUST_FACTORY = "SPEEDY_TRUST_FACTORY"  # comma-separated module:function names a user trusts


def trust_factory(reference: str) -> None:
    """Let this process, and the workers it starts, import `reference`: the user named it."""
    os.environ[TRUST_FACTORY] = ",".join(sorted(_trusted() | {reference}))


def _trusted() -> set[str]:
    return {name for name in os.environ.get(TRUST_FACTORY, "").split(",") if name}


def call_factory(reference: str) -> torch.nn.Module:
    """Import `module:function` and call it to build a network, if the user trusts it: a
    manifest is data, and the code it names runs only when the user names it too."""
    if reference not in _trusted():
        raise SpeedyError(
            f"this model's network is built by '{reference}', code named in its manifest; "
            "speedy runs no code that a file names",
            f"if you trust that code, pass --model {reference} or set {TRUST_FACTORY}={reference}",
        )
    module_name, _, function_name = reference.partition(":")
    fix = (
        "pass --model as module:function, a module of the current directory (as `python -m` "
        "finds it) or of the environment"
    )
    if (cwd := os.getcwd()) not in sys.path:  # the current directory, as `python -m` has it
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpeedyError(f"cannot import model factory '{reference}': {exc}", fix) from exc
    module = factory()
    if not isinstance(module, torch.nn.Module):
        raise SpeedyError(
            f"'{reference}' returned {type(module).__name__}, not a torch module", fix
        )
    return module


def custom_spec(io: str, factory: str, checkpoint: Path | None) -> ModelSpec:
    """The model spec of a network exported without a family: `factory` builds it (trusted by
    the caller), `io` (a YAML file or inline YAML/JSON) describes its inputs and outputs."""
    spec = read_io_spec(io)
    network = call_factory(factory).eval()
    check_input_names(spec, network)
    spec = with_outputs(spec, network)
    return describe(
        recipe=factory,
        family=Custom.name,
        network=spec.model_dump(mode="json"),
        audio=spec.audio_spec(),
        dims=spec.dims,
        parity=spec.parity_options(),
        factory=factory,
        checkpoint=checkpoint_info(checkpoint),
    )


def fits(spec: ModelSpec, checkpoint: Path) -> bool:
    """Whether a checkpoint's tensors fit the network `spec` builds (a --model network may not
    be the recipe's)."""
    module = build_network(spec)
    strip_weight_norm(module)
    try:
        return resolve(spec).misfit(module, checkpoint) is None
    except (KeyError, TypeError, AttributeError):  # the family's mapping cannot read it
        return False


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """The network (the family's, or the `factory`'s), in eval mode, weights not loaded."""
    if spec.factory is not None:
        return call_factory(spec.factory).eval()
    try:
        return resolve(spec).build().eval()
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise SpeedyError(
            f"the {spec.family} network cannot be built with network: {spec.network} "
            f"({type(exc).__name__}: {next(iter(str(exc).splitlines()), '')})",
            "give positive sizes this machine's memory holds under `network:` in the recipe",
        ) from exc


def load_network(spec: ModelSpec, weights: Path) -> torch.nn.Module:
    """The network with a torch artifact's state dict loaded (a factory's network may carry
    weight norm; the state dict, written without it, does not)."""
    module = build_network(spec)
    strip_weight_norm(module)
    module.load_state_dict(read_state_dict(weights))
    return module
