"""What `speedy import` reads from an ONNX file made elsewhere: its I/O (names, dtypes, symbolic
dims), the model's own config, and the model spec every later stage works from.

The spec has no PyTorch family (`family: imported`): the file is the model. Dim ranges come
from `--shapes` (or a recipe's `dims:`), else from the data: each symbol's smallest, median and
largest size over the examples.
"""

import functools
import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from speedy.artifact import file_digest
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.audio.mel import AudioSpec, standard_audio
from speedy.compile.profiles import parse_shapes
from speedy.dim_ties import dim_name, tied_dims
from speedy.errors import SpeedyError
from speedy.model_spec import IMPORTED_FAMILY, CheckpointInfo, ModelSpec, ParityOptions
from speedy.onnx_io import load_onnx
from speedy.specs import DimRange, TensorSpec, base, symbol_sizes, symbols
from speedy.tasks import Imported, task_class, task_for
from speedy.tasks.base import Task

GRAPH = "model"  # the one graph of an imported artifact


def graph_io(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs (initializers left out) and outputs; an unnamed dynamic dim is called
    `<tensor>_d<axis>`, and dims the graph proves equal share one name (`tied_dims`)."""
    weights = {t.name for t in model.graph.initializer}
    ties = tied_dims(model)

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise SpeedyError(
                f"graph input or output {value.name!r} is not a tensor",
                "import graphs whose inputs and outputs are tensors",
            )
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        shape: list[int | str] = [
            d.dim_value if d.HasField("dim_value") else _tied_name(value, axis, d, ties)
            for axis, d in enumerate(tensor.shape.dim)
        ]
        return TensorSpec(name=value.name, dtype=dtype, shape=shape)

    inputs = [spec(v) for v in model.graph.input if v.name not in weights]
    return inputs, [spec(v) for v in model.graph.output]


def file_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """`graph_io` of the ONNX file at `path`, worked out once per version of the file: tying
    dims runs shape inference (seconds on a large graph), and an import asks three times."""
    version = (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None
    return _file_io(path.resolve(), version)


@functools.lru_cache(maxsize=4)
def _file_io(
    path: Path, version: tuple[int, int] | None
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    return graph_io(load_onnx(path, with_weights=False))


def _tied_name(
    value: onnx.ValueInfoProto,
    axis: int,
    dim: onnx.TensorShapeProto.Dimension,
    ties: Mapping[str, str],
) -> str:
    name = dim_name(value, axis, dim)
    return ties.get(name, name)


def name_free_dims(model: onnx.ModelProto, specs: list[TensorSpec]) -> None:
    """Write the names `graph_io` gave dynamic dims (free or tied) into the graph, so file and
    manifest agree."""
    values = {v.name: v for v in [*model.graph.input, *model.graph.output]}
    for spec in specs:
        for dim, proto in zip(
            spec.shape, values[spec.name].type.tensor_type.shape.dim, strict=True
        ):
            if isinstance(dim, str):
                proto.dim_param = dim


def shape_ranges(model_path: Path, shapes: list[str]) -> dict[str, DimRange]:
    """Ranges given as `--shapes NAME:MIN,OPT,MAX` for the graph's dims or inputs."""
    inputs, _ = file_io(model_path)
    unbounded = DimRange(min=1, opt=1, max=2**31 - 1)
    return parse_shapes(shapes, inputs, dict.fromkeys(symbols(inputs), unbounded))


def read_config(path: Path | None) -> dict[str, Any] | None:
    """The model's JSON config (a Piper voice's `.onnx.json`), or None."""
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpeedyError(f"config not found: {path}", "pass an existing --config file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SpeedyError(
            f"config {path} is not JSON ({exc})", "pass the model's JSON config"
        ) from exc
    if not isinstance(config, dict):
        raise SpeedyError(f"config {path} holds no settings", "pass the model's JSON config")
    return config


def beside(model: Path) -> Path | None:
    """The config a Piper voice ships next to its model (`voice.onnx.json`), if there."""
    found = model.with_name(model.name + ".json")
    return found if found.is_file() else None


def imported_spec(
    name: str,
    task: str,
    model_path: Path,
    config_path: Path | None = None,
    fills: Mapping[str, str] | None = None,
    audio_output: str | None = None,
    audio: AudioSpec | None = None,
    dims: Mapping[str, DimRange] | None = None,
    data: Path | None = None,
) -> ModelSpec:
    """The model spec of an ONNX file: I/O read from the graph, task settings from the task (and
    the config), ranges from `dims`, else from `data` (default: the task's)."""
    inputs, outputs = file_io(model_path)
    config = read_config(config_path)
    graph = Imported(inputs, outputs, config, dict(fills or {}), audio_output)
    spec = ModelSpec(
        recipe=name,
        family=IMPORTED_FAMILY,
        task=task,
        network={},
        task_settings=task_class(task).imported_settings(graph),
        audio=audio or standard_audio(_config_rate(config) or 16000),
        dims=dict(dims or {}),
        parity=ParityOptions(sizes=[{}]),  # the typical sizes: nothing was traced
        checkpoint=CheckpointInfo(file=model_path.name, digest=file_digest([model_path])),
    )
    if missing := [s for s in symbols(inputs) if s not in spec.dims]:
        spec.dims |= data_ranges(task_for(spec), inputs, missing, data)
    return spec


def _config_rate(config: dict[str, Any] | None) -> int | None:
    audio = (config or {}).get("audio")
    return audio.get("sample_rate") if isinstance(audio, dict) else None


def data_ranges(
    task: Task, inputs: list[TensorSpec], missing: list[str], data: Path | None
) -> dict[str, DimRange]:
    """Ranges of `missing` symbols from the examples (smallest, median and largest size); one
    error naming every symbol the examples do not size, where it appears, and a fix for each."""
    try:
        examples = task.read_data(data or task.default_data, FeatureCache(default_cache_dir()))
        seen = [
            symbol_sizes(inputs, {k: v.shape for k, v in task.inputs(e).items()}) for e in examples
        ]
    except KeyError:  # the examples cannot be made without the sizes
        seen = []
    ranges = {}
    for symbol in missing:
        if sizes := [s[symbol] for s in seen if symbol in s]:
            low, typical, high = min(sizes), statistics.median_low(sizes), max(sizes)
            ranges[symbol] = DimRange(min=low, opt=typical, max=high)
    if unsized := [symbol for symbol in missing if symbol not in ranges]:
        where = "; ".join(f"{symbol}: {_places(symbol, inputs)}" for symbol in unsized)
        raise SpeedyError(
            f"{len(unsized)} dim(s) have no range and the data does not give them ({where})",
            " ".join(f"--shapes {symbol}:MIN,OPT,MAX" for symbol in unsized),
        )
    return ranges


def _places(symbol: str, inputs: list[TensorSpec]) -> str:
    """Where `symbol` sizes the inputs: 'axis 0 of input, axis 1 of state'."""
    return ", ".join(
        f"axis {axis} of {spec.name}"
        for spec in inputs
        for axis, dim in enumerate(spec.shape)
        if isinstance(dim, str) and base(dim) == symbol
    )
