"""One copy of the weights an artifact's ONNX graphs share (prefill and decode, a codec's decoder
and its step): when graphs share weights, all their weights go to one external-data file, each
stored once, and every graph reads its own from there.

Weights are matched by content (type, shape and bytes), never by name: exporters and simplifiers
name the same weight differently in different graphs. Offsets are page-aligned, so ONNX Runtime
can map the file instead of reading it, and one mapping can serve every graph of the artifact
(`speedy.backends.ort.session`).
"""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data

from speedy.artifact import GraphEntry
from speedy.onnx_io import content_key, external_tensors, load_onnx, save_onnx, subgraphs

POOL = "shared_weights.data"
ALIGN = 4096  # a page: ONNX Runtime maps external data only at page-aligned offsets
MIN_BYTES = 1024  # smaller tensors stay in their graph's file


def _initializers(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in (model.graph, *subgraphs(model.graph)):
        yield from graph.initializer


def _key(tensor: onnx.TensorProto) -> tuple[int, tuple[int, ...], str] | None:
    """The tensor's content key (None: too small to pool)."""
    return content_key(tensor) if len(tensor.raw_data) >= MIN_BYTES else None


def pool_shared_weights(workdir: Path, graphs: dict[str, GraphEntry]) -> dict[str, GraphEntry]:
    """Rewrite the ONNX graphs in `workdir` so that their weights are stored in `POOL`, each
    once; their entries with the files they now use.

    Artifacts with fewer than two ONNX graphs (at the top of the directory), or whose graphs
    share no weight, are left as they are."""
    names = [n for n, g in graphs.items() if g.kind == "onnx" and "/" not in g.file]
    if len(names) < 2:
        return graphs
    models = {name: load_onnx(workdir / graphs[name].file) for name in names}
    keyed = [(t, k) for m in models.values() for t in _initializers(m) if (k := _key(t))]
    counts = Counter(key for _, key in keyed)
    if not any(count > 1 for count in counts.values()):
        return graphs
    offsets: dict[tuple, tuple[int, int]] = {}
    staged = workdir / (POOL + ".new")
    with staged.open("wb") as pool:
        for tensor, key in keyed:
            if key not in offsets:
                pool.write(b"\0" * (-pool.tell() % ALIGN))
                offsets[key] = (pool.tell(), len(tensor.raw_data))
                pool.write(tensor.raw_data)
            set_external_data(tensor, POOL, *offsets[key])
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
    for file in {file for name in names for file in graphs[name].files[1:]}:
        (workdir / file).unlink(missing_ok=True)  # the data files the weights were read from
    staged.rename(workdir / POOL)
    pooled = dict(graphs)
    for name, model in models.items():
        entry = graphs[name]
        written = save_onnx(model, workdir / entry.file)
        locations = [location for _, location in external_tensors(model)]
        files = [entry.file, *(f.name for f in written[1:]), *locations]
        pooled[name] = entry.model_copy(update={"files": list(dict.fromkeys(files))})
    return pooled
