"""Loading and saving ONNX files safely: clear errors, external data confined, > 2 GB support."""

import hashlib
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from speedy.errors import SpeedyError

PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_SUFFIX = ".data"
RECREATE = "restore the file, or re-create it (`speedy export` or `speedy import`)"


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset of the default (ai.onnx) domain; 0 when it imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds: initializers (sparse ones too), node attributes (a
    Constant's value), and those of its subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
        for subgraph in node_graphs(node):
            yield from _tensors(subgraph)


def node_graphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs a node holds as attributes (If branches, Loop and Scan bodies)."""
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else a.graphs)]


def subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """Every graph nested in `graph`, each before the graphs nested in it."""
    for node in graph.node:
        for inner in node_graphs(node):
            yield inner
            yield from subgraphs(inner)


def external_tensors(model: onnx.ModelProto) -> list[tuple[onnx.TensorProto, str]]:
    """The tensors stored outside the .onnx file, with their locations."""
    return [(t, _location(t)) for t in _tensors(model.graph) if uses_external_data(t)]


def _location(tensor: onnx.TensorProto) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def check_tensors(model: onnx.ModelProto, directory: Path) -> None:
    """Refuse tensors (any, wherever they sit in the graph) that declare more values than they
    hold, and external-data locations that escape the model's directory."""
    root = directory.resolve()
    for tensor in _tensors(model.graph):
        if not uses_external_data(tensor):
            _check_inline(tensor)
            continue
        location = _location(tensor)
        target = (root / location).resolve()
        if not target.is_relative_to(root):
            raise SpeedyError(
                f"external data of '{tensor.name}' points outside the model directory ({location})",
                "only load models whose external data files sit next to the .onnx file",
            )
        if not target.is_file():
            raise SpeedyError(
                f"external data file {location} of '{tensor.name}' is missing",
                "copy the model together with its external data files",
            )
        _check_size(tensor, location, target.stat().st_size)


def _check_size(tensor: onnx.TensorProto, location: str, file_bytes: int) -> None:
    """Refuse a tensor that declares more bytes than its external data file holds (read before
    anything is allocated for it)."""
    fields = {e.key: e.value for e in tensor.external_data}
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    length = int(fields.get("length", 0) or 0)
    declared = max(math.prod(tensor.dims) * itemsize, length)  # its shape's bytes, or `length`
    available = file_bytes - int(fields.get("offset", 0) or 0)
    if declared > available:
        by = "its length field" if length == declared else "its shape"
        raise SpeedyError(
            f"tensor '{tensor.name}' declares {declared:,} bytes ({by}), its data file "
            f"{location} holds {max(available, 0):,} from its offset",
            f"the model is corrupt or truncated: {RECREATE}",
        )


def _check_inline(tensor: onnx.TensorProto) -> None:
    """Refuse a tensor stored in the .onnx file that holds fewer values than its shape declares
    (onnx's exact check, run only where a quick count falls short: a packed type or a corrupt
    tensor)."""
    declared = math.prod(tensor.dims)
    try:
        if tensor.HasField("raw_data"):
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            enough = len(tensor.raw_data) >= declared * itemsize
        else:
            field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
            enough = len(getattr(tensor, field)) >= declared
    except KeyError:  # no such data type: onnx's check says so
        enough = False
    if enough and min(tensor.dims, default=0) >= 0:
        return
    try:
        onnx.checker.check_tensor(tensor)
    except onnx.checker.ValidationError as exc:
        raise SpeedyError(
            f"tensor '{tensor.name}' is malformed: {str(exc).splitlines()[0]}",
            f"the model is corrupt: {RECREATE}",
        ) from exc


def load_onnx(path: Path, with_weights: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file with a clear error when it is missing or corrupt."""
    if not path.is_file():
        raise SpeedyError(f"ONNX model not found: {path}", "pass an existing .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise SpeedyError(
            f"{path} is not a valid ONNX file ({type(exc).__name__})",
            RECREATE,
        ) from exc
    if len(model.graph.node) == 0:
        raise SpeedyError(f"{path} has an empty graph", RECREATE)
    check_tensors(model, path.parent)
    if with_weights:
        load_external_data_for_model(model, str(path.parent))
    return model


def save_onnx(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Save `model`; past protobuf's 2 GB limit the weights go to one external data file (and
    `model`'s tensors then refer to it: read anything from them before saving).

    Returns the files written, the .onnx first.
    """
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if weight_bytes < PROTOBUF_LIMIT - (1 << 26):
        onnx.save_model(model, str(path))
        return [path]
    data = path.with_suffix(path.suffix + EXTERNAL_DATA_SUFFIX)
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )
    return [path, data]


def model_bytes(path: Path) -> int:
    """The bytes of a model: its file and the external data it reads (of a shared data file,
    only its own tensors')."""
    fields = (
        {e.key: e.value for e in t.external_data}
        for t, _ in external_tensors(load_onnx(path, with_weights=False))
    )
    return path.stat().st_size + sum(int(f.get("length", 0) or 0) for f in fields)


def content_key(tensor: onnx.TensorProto) -> tuple[int, tuple[int, ...], str]:
    """What makes two weights one, whatever their names: type, shape and a digest of the bytes."""
    return tensor.data_type, tuple(tensor.dims), hashlib.sha256(tensor.raw_data).hexdigest()


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """The bytes of a tensor's values, wherever they are stored (external data is not read)."""
    if uses_external_data(tensor):
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        return math.prod(tensor.dims) * itemsize
    return len(tensor.raw_data) or onnx.numpy_helper.to_array(tensor).nbytes


def graph_stats(model: onnx.ModelProto) -> dict[str, object]:
    """Node and initializer counts, weight bytes and the op-type histogram."""
    return {
        "nodes": len(model.graph.node),
        "initializers": len(model.graph.initializer),
        "weight_bytes": sum(tensor_bytes(t) for t in model.graph.initializer),
        "op_types": dict(Counter(n.op_type for n in model.graph.node).most_common()),
    }
