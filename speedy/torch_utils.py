"""PyTorch helpers for export: weight-norm removal."""

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
