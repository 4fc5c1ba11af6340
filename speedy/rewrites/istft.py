"""`istft`: complex-valued spectral heads lowered to real arithmetic.

Which modules: the outermost submodules whose `forward` source calls `istft(` (`torch.istft`
itself, or a child such as Vocos' `self.istft(...)`). Each is traced with `torch.fx` (through its
own child modules) and every complex value in it becomes a (real, imag) pair: `torch.stft` and
`torch.istft` become `RealSTFT` / `RealISTFT`, and `*`, `+`, `-`, `/` by a real, `exp`, `abs`,
`.real`, `.imag`, `torch.complex`, `torch.polar` and `torch.view_as_complex` their real forms.
Another op on a complex value is an error naming it.
"""

import inspect
import operator
from typing import Any

import torch
from torch import fx, nn

from speedy.errors import SpeedyError
from speedy.rewrites.spectral import RealISTFT, RealSTFT

Part = fx.Node | float | None  # a component: a node, a constant, or None for zero
Pair = tuple[Part, Part]

MUL = {operator.mul, torch.mul, "mul"}
ADD = {operator.add, torch.add, "add"}
SUB = {operator.sub, torch.sub, "sub"}
DIV = {operator.truediv, torch.div, "div"}
NEG = {operator.neg, torch.neg, "neg"}
EXP = {torch.exp, "exp"}
ABS = {torch.abs, abs, "abs"}


def calls_istft(module: nn.Module) -> bool:
    try:
        return "istft(" in inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return False


def targets(network: nn.Module) -> list[str]:
    """The outermost submodules whose forward calls istft."""
    found: list[str] = []
    for path, module in network.named_modules():
        outer = any(path == p or path.startswith(f"{p}.") for p in found if p) or "" in found
        if not outer and calls_istft(module):
            found.append(path)
    return found


def _stft_args(
    n_fft, hop_length=None, win_length=None, window=None, center=True, pad_mode="reflect",
    normalized=False, onesided=None, return_complex=None, align_to_window=None,
):  # fmt: skip
    return locals()


def _istft_args(
    n_fft, hop_length=None, win_length=None, window=None, center=True, normalized=False,
    onesided=None, length=None, return_complex=False,
):  # fmt: skip
    return locals()


class Lowering:
    """Copies a traced graph into a new one, carrying complex values as (real, imag) pairs."""

    def __init__(self, traced: fx.GraphModule) -> None:
        self.traced = traced
        self.graph = fx.Graph()
        self.env: dict[fx.Node, fx.Node] = {}
        self.pairs: dict[fx.Node, Pair] = {}
        self.modules = 0

    def run(self) -> fx.GraphModule:
        for node in self.traced.graph.nodes:
            if node.op == "output":
                self.graph.output(fx.node.map_arg(node.args[0], self._real))
            elif (lowered := self._lower(node)) is not None:
                if isinstance(lowered, tuple):
                    self.pairs[node] = lowered
                else:
                    self.env[node] = lowered
            else:
                self.env[node] = self.graph.node_copy(node, self._real)
        return fx.GraphModule(self.traced, self.graph, type(self.traced).__name__)

    def _real(self, node: fx.Node) -> fx.Node:
        if node in self.pairs:
            raise SpeedyError(
                f"istft rewrite: the complex value '{node.name}' leaves the module or reaches "
                f"an op it cannot lower ({', '.join(str(u.target) for u in node.users)})",
                "keep complex values inside the head, between its stft/istft and +-*/ ops",
            )
        return self.env[node]

    def _value(self, arg: Any) -> Pair | None:
        """`arg` as a pair when complex (None when real)."""
        if isinstance(arg, fx.Node) and arg in self.pairs:
            return self.pairs[arg]
        if isinstance(arg, complex):
            return (arg.real or None, arg.imag or None)
        return None

    def _part(self, arg: Any) -> Part:
        return self.env[arg] if isinstance(arg, fx.Node) else arg

    def _call(self, fn: Any, *args: Any) -> fx.Node:
        return self.graph.call_function(fn, args)

    def _lower(self, node: fx.Node) -> Pair | fx.Node | None:
        if node.op not in ("call_function", "call_method"):
            return None
        target, args, kwargs = node.target, node.args, node.kwargs
        if target is torch.stft:
            return self._stft(args[0], _stft_args(*args[1:], **kwargs))
        if target is torch.istft:
            return self._istft(args[0], _istft_args(*args[1:], **kwargs))
        if target is torch.complex:
            return (self._part(args[0]), self._part(args[1]))
        if target is torch.polar:
            magnitude, angle = self._part(args[0]), self._part(args[1])
            return (
                self._call(operator.mul, magnitude, self._call(torch.cos, angle)),
                self._call(operator.mul, magnitude, self._call(torch.sin, angle)),
            )
        if target is torch.view_as_complex:
            source = self._part(args[0])
            return (
                self._call(operator.getitem, source, (..., 0)),
                self._call(operator.getitem, source, (..., 1)),
            )
        values = [self._value(a) for a in args]
        if not any(v is not None for v in values):
            return None
        return self._arithmetic(node, values)

    def _arithmetic(self, node: fx.Node, values: list[Pair | None]) -> Pair | fx.Node:
        target, args = node.target, node.args
        a = values[0] or (self._part(args[0]), None)
        if target is getattr and args[1] in ("real", "imag"):
            return self._materialize(a[0] if args[1] == "real" else a[1], args[0])
        if target in NEG:
            return (_neg(self, a[0]), _neg(self, a[1]))
        if target in EXP:
            scale = self._call(torch.exp, a[0])
            return (
                self._call(operator.mul, scale, self._call(torch.cos, a[1])),
                self._call(operator.mul, scale, self._call(torch.sin, a[1])),
            )
        if target in ABS:
            power = _add(self, _mul(self, a[0], a[0]), _mul(self, a[1], a[1]))
            return self._call(torch.sqrt, power)
        if len(args) == 2:
            b = values[1] or (self._part(args[1]), None)
            if target in MUL:
                return (
                    _sub(self, _mul(self, a[0], b[0]), _mul(self, a[1], b[1])),
                    _add(self, _mul(self, a[0], b[1]), _mul(self, a[1], b[0])),
                )
            if target in ADD:
                return (_add(self, a[0], b[0]), _add(self, a[1], b[1]))
            if target in SUB:
                return (_sub(self, a[0], b[0]), _sub(self, a[1], b[1]))
            if target in DIV and values[1] is None:
                return (_div(self, a[0], b[0]), _div(self, a[1], b[0]))
        raise SpeedyError(
            f"istft rewrite: no real form for {getattr(target, '__name__', target)} on a "
            f"complex value (node '{node.name}')",
            "express the head with stft/istft, + - * / (by a real), exp, abs, real/imag, "
            "torch.complex or torch.polar",
        )

    def _materialize(self, part: Part, like: fx.Node) -> fx.Node:
        """A component as a tensor node (zeros shaped as the other part for None)."""
        if isinstance(part, fx.Node):
            return part
        other = next(p for p in self.pairs[like] if isinstance(p, fx.Node))
        return self._call(torch.full_like, other, part or 0.0)

    def _window(self, window: Any) -> torch.Tensor | None:
        if window is None:
            return None
        if isinstance(window, fx.Node) and window.op == "get_attr":
            return operator.attrgetter(window.target)(self.traced).detach().clone()
        raise SpeedyError(
            "istft rewrite: the window is computed in forward",
            "register the window as a buffer of the module (self.register_buffer('window', ...))",
        )

    def _spectral(self, module: nn.Module, inputs: tuple[fx.Node, ...]) -> fx.Node:
        name = f"spectral_{self.modules}"
        self.modules += 1
        self.traced.add_submodule(name, module)
        return self.graph.call_module(name, inputs)

    def _stft(self, x: Any, opts: dict) -> Pair:
        if (
            not opts["center"]
            or opts["pad_mode"] != "reflect"
            or opts["normalized"]
            or (opts["onesided"] is False or opts["align_to_window"])
        ):
            raise SpeedyError(
                "istft rewrite: torch.stft needs center=True, pad_mode='reflect', normalized=False",
                "use those settings, or compute the STFT outside the model",
            )
        n_fft = opts["n_fft"]
        hop = opts["hop_length"] or n_fft // 4
        win = opts["win_length"] or n_fft
        parts = self._spectral(
            RealSTFT(n_fft, hop, win, self._window(opts["window"])), (self.env[x],)
        )
        return (self._call(operator.getitem, parts, 0), self._call(operator.getitem, parts, 1))

    def _istft(self, spec: Any, opts: dict) -> fx.Node:
        if (
            not opts["center"]
            or opts["normalized"]
            or opts["length"] is not None
            or (opts["onesided"] is False)
        ):
            raise SpeedyError(
                "istft rewrite: torch.istft needs center=True, normalized=False, length=None",
                "use those settings, or compute the inverse STFT outside the model",
            )
        real, imag = (self._materialize(p, spec) for p in self.pairs[spec])
        n_fft = opts["n_fft"]
        hop = opts["hop_length"] or n_fft // 4
        win = opts["win_length"] or n_fft
        module = RealISTFT(n_fft, hop, win, self._window(opts["window"]))
        return self._spectral(module, (real, imag))


def _mul(low: Lowering, x: Part, y: Part) -> Part:
    if x is None or y is None:
        return None
    return (
        x * y
        if not isinstance(x, fx.Node) and not isinstance(y, fx.Node)
        else low._call(operator.mul, x, y)
    )


def _add(low: Lowering, x: Part, y: Part) -> Part:
    if x is None or y is None:
        return y if x is None else x
    return low._call(operator.add, x, y)


def _sub(low: Lowering, x: Part, y: Part) -> Part:
    return x if y is None else _add(low, x, _neg(low, y))


def _neg(low: Lowering, x: Part) -> Part:
    return None if x is None else (-x if not isinstance(x, fx.Node) else low._call(operator.neg, x))


def _div(low: Lowering, x: Part, y: Part) -> Part:
    return None if x is None else low._call(operator.truediv, x, y)


def replace(module: nn.Module) -> nn.Module:
    """`module` as a graph module computing the same on real tensors only."""
    try:
        traced = fx.symbolic_trace(module)
    except Exception as exc:
        raise SpeedyError(
            f"istft rewrite: torch.fx cannot trace {type(module).__name__} "
            f"({type(exc).__name__}: {next(iter(str(exc).splitlines()), '')})",
            "keep Python control flow on tensor values out of the head's forward",
        ) from exc
    return Lowering(traced).run()
