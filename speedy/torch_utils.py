"""PyTorch helpers for export: weight-norm removal and locating an op's source module."""

import re

import torch
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm


def strip_weight_norm(module: torch.nn.Module) -> int:
    """Fold every weight norm (old hook style or parametrization) into plain weights."""
    removed = 0
    for child in module.modules():
        if parametrize.is_parametrized(child):
            for name in list(child.parametrizations):
                parametrize.remove_parametrizations(child, name, leave_parametrized=True)
                removed += 1
        for key, hook in list(child._forward_pre_hooks.items()):
            if isinstance(hook, WeightNorm):
                hook.remove(child)
                del child._forward_pre_hooks[key]
                removed += 1
    return removed


OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.:]+)'"),
    re.compile(r"unrecognized namespace ([\w:.]+)"),
    re.compile(r"[Ee]xporting the operator '?([\w:.]+)'? to ONNX"),
)


def unsupported_op(message: str) -> str | None:
    """The operator an exporter error message complains about, if it names one."""
    for pattern in OP_PATTERNS:
        if match := pattern.search(message):
            return match.group(1).replace("::", ".")
    return None


def source_module(module: torch.nn.Module, args: tuple, op: str) -> str | None:
    """`path (Type)` of the submodule whose forward calls `op`, found via torch.export."""
    try:
        program = torch.export.export(module, args, strict=False)
    except Exception:
        return None
    for node in program.graph.nodes:
        if node.op == "call_function" and str(node.target).startswith(op):
            stack = node.meta.get("nn_module_stack") or {}
            if not stack:
                return "the top-level module"
            path, kind = list(stack.values())[-1]
            name = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].rstrip("'>"))
            return f"'{path}' ({name})"
    return None
