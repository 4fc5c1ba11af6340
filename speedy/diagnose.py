"""Why an export failed, in one line: the cause, the module and the user's source line where it
happens, and what to try (a rewrite by name where one fixes it).

The site comes from the failure itself where it ran the user's code (the traceback's frames),
else from the node at fault in `torch.export`'s graph (its module stack and stack trace), else
from an exported ONNX node's metadata.
"""

import ast
import re
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

import speedy

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FRAME = re.compile(r'File "([^"]+)", line (\d+)')
OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.:]+)'"),
    re.compile(r"unrecognized namespace ([\w:.]+)"),
    re.compile(r"[Ee]xporting the operator '?([\w:.]+)'? to ONNX"),
)
REWRITE_OF_OP = {"stft": "istft", "istft": "istft", "lstm": "lstm", "gru": "lstm", "rnn": "lstm"}
RNN_TYPES = ("LSTM", "GRU", "RNN")
LIBRARIES = tuple(
    str(Path(p).resolve())
    for p in (
        torch.__file__,
        speedy.__file__,
        onnx.__file__,
    )
)
STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())


@dataclass(frozen=True)
class Site:
    """Where in the user's model: a module and a source line (either may be unknown)."""

    module: str | None = None  # "'head' (ISTFTHead)"
    source: str | None = None  # "/path/model.py:29"

    def __str__(self) -> str:
        parts = [
            f"in {self.module}" if self.module else "",
            f"at {self.source}" if self.source else "",
        ]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Cause:
    """What went wrong, where, and the fix to try."""

    what: str
    site: Site
    fix: str

    def describe(self) -> str:
        return f"{self.what} {self.site}".strip()


def clean(text: str) -> str:
    """`text` without terminal escapes, on one line."""
    return " ".join(ANSI.sub("", text).split())


def module_label(path: str, kind: str) -> str:
    return f"'{path}' ({kind})" if path else f"the top-level module ({kind})"


def user_file(filename: str) -> bool:
    """Whether a source file is the user's (not Python's, torch's, onnx's or speedy's)."""
    if filename.startswith("<"):
        return False
    resolved = str(Path(filename).resolve())
    roots = (str(Path(p).parent) for p in LIBRARIES)
    return not resolved.startswith(STDLIB) and not any(resolved.startswith(r) for r in roots)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def traceback_site(exc: BaseException, network: torch.nn.Module) -> Site:
    """The innermost user frame of the failure's tracebacks, and the module it ran in."""
    names = {id(m): (path, type(m).__name__) for path, m in network.named_modules()}
    source = module = None
    for error in chain(exc):
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if user_file(frame.f_code.co_filename):
                source = f"{frame.f_code.co_filename}:{tb.tb_lineno}"
                owner = frame.f_locals.get("self")
                if id(owner) in names:
                    module = module_label(*names[id(owner)])
            tb = tb.tb_next
    return Site(module, source)


def stack_source(stack_trace: str | None) -> str | None:
    """The last user frame of an FX node's or ONNX node's recorded stack trace."""
    frames = [f"{f}:{n}" for f, n in FRAME.findall(stack_trace or "") if user_file(f)]
    return frames[-1] if frames else None


def graph_site(
    network: torch.nn.Module, args: tuple, wanted: Callable[[torch.fx.Node], bool]
) -> Site | None:
    """The module and source line of the first node `wanted` in `torch.export`'s graph."""
    try:
        program = torch.export.export(network, args, strict=False)
    except Exception:
        return None
    for node in program.graph.nodes:
        if node.op == "call_function" and wanted(node):
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            path, kind = stack[-1] if stack else ("", type(network))
            name = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].rstrip("'>"))
            return Site(module_label(path, name), stack_source(node.meta.get("stack_trace")))
    return None


def is_complex(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, torch.Tensor) and value.dtype.is_complex


def unsupported_op(message: str) -> str | None:
    """The operator an exporter error message complains about, if it names one."""
    for pattern in OP_PATTERNS:
        if match := pattern.search(message):
            return match.group(1).replace("::", ".")
    return None


def rewrite_for(op: str | None, module: str | None) -> str | None:
    """The rewrite that removes an op (or the module type) at fault, if one does."""
    words = f"{op or ''} {module or ''}"
    for word in re.findall(r"[A-Za-z]+", words):
        if (found := REWRITE_OF_OP.get(word.lower())) is not None:
            return found
    return None


def rewrite_fix(rewrite: str | None, otherwise: str) -> str:
    return (
        f"try --rewrite {rewrite}" + (f", or {otherwise}" if otherwise else "")
        if rewrite
        else otherwise
    )


def diagnose(exc: BaseException, network: torch.nn.Module, args: tuple) -> Cause:
    """The cause of an exporter's failure on `network` traced with `args`."""
    errors = list(chain(exc))
    text = clean("\n".join(str(e) for e in errors))
    if any(type(e).__name__ == "GuardOnDataDependentSymNode" for e in errors) or (
        "data-dependent" in text
    ):
        site = traceback_site(exc, network)
        return Cause(
            f"a size or branch taken from tensor values (data-dependent{_code(site)})",
            site,
            "compute lengths from tensor shapes and masks (cumsum + mask, not .item(), "
            "nonzero or a loop over values), or keep that step outside the model",
        )
    if "complex" in text:
        site = graph_site(network, args, is_complex) or traceback_site(exc, network)
        op = unsupported_op(text)
        return Cause(
            f"complex-valued tensors ({f'{op}; ' if op else ''}ONNX has no complex type)",
            site,
            rewrite_fix("istft", "compute the spectrum as separate real and imaginary parts"),
        )
    if (op := unsupported_op(text)) is not None:
        name = op.rsplit(".", 2)[0] if op.count(".") > 1 else op
        site = graph_site(network, args, lambda n: str(n.target).startswith(name))
        site = site or traceback_site(exc, network)
        return Cause(
            f"operator {op} has no ONNX conversion; called",
            site,
            rewrite_fix(
                rewrite_for(op, site.module),
                "rewrite it with standard torch ops, register an ONNX translation for it, "
                "or try the other --exporter / a newer --opset",
            ),
        )
    innermost = errors[-1]
    first = next((clean(line) for line in str(innermost).splitlines() if line.strip()), "")
    site = traceback_site(exc, network)
    return Cause(
        f"{type(innermost).__name__}: {first[:300]}",
        site,
        rewrite_fix(rewrite_for(None, site.module), "run with --debug for the exporter's report"),
    )


def _code(site: Site) -> str:
    """`: <the source line>` of a site, when its file is readable."""
    if site.source is None:
        return ""
    filename, _, line = site.source.rpartition(":")
    try:
        code = Path(filename).read_text().splitlines()[int(line) - 1].strip()
    except (OSError, IndexError, ValueError):
        return ""
    return f": `{code}`"


def scope_path(node: onnx.NodeProto) -> str | None:
    """The dotted path of the module the dynamo exporter placed a node in ("" for the top
    level): the innermost of its name scopes (each a full path, the last one the node's own
    name); None for a node without them."""
    meta = {p.key: p.value for p in node.metadata_props}
    if (scopes := meta.get("pkg.torch.onnx.name_scopes")) is None:
        return None
    return next((s for s in reversed(ast.literal_eval(scopes)[:-1]) if s), "")


def module_path(node: onnx.NodeProto) -> str:
    """The dotted path of the module an exported ONNX node belongs to: its name scope, else the
    torchscript exporter's scoped node name ("/rnn/LSTM")."""
    path = scope_path(node)
    return ".".join(node.name.strip("/").split("/")[:-1]) if path is None else path


def onnx_node_site(node: onnx.NodeProto, network: torch.nn.Module) -> Site:
    """Module and source line of an exported ONNX node."""
    meta = {p.key: p.value for p in node.metadata_props}
    path = module_path(node)
    try:
        kind = type(network.get_submodule(path)).__name__
    except AttributeError:
        kind = node.op_type
    return Site(module_label(path, kind), stack_source(meta.get("pkg.torch.onnx.stack_trace")))
