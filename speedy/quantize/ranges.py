"""Activation ranges from real calibration crops, cached by content hash.

`minmax`, `entropy` and `percentile` are ONNX Runtime's calibrators, fed one crop at a time so
memory stays bounded. `mse` starts from the min/max ranges, histograms every tensor over the
same crops and picks each tensor's clipping range by least expected quantization error
(`clipping.mse_range`). Ranges are stored as ORT calibration cache files under
`<cache>/calibration/`, keyed by the model's bytes, the crops' bytes and the method, so a second
run with the same inputs skips calibration.
"""

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization.calibrate import (
    CalibrationDataReader,
    CalibrationMethod,
    TensorData,
    TensorsData,
    create_calibrator,
    load_tensors_data,
    save_tensors_data,
)

from speedy.artifact import file_digest
from speedy.console import console
from speedy.identity import code_version
from speedy.quantize.clipping import mse_range
from speedy.quantize.crops import Crop
from speedy.quantize.progress import quiet_ort, steps
from speedy.scratch import scratch
from speedy.specs import Feeds
from speedy.stages.options import Method

ORT_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
BINS = 2048


class FeedReader(CalibrationDataReader):
    """ONNX Runtime's calibration data protocol over a list of feeds."""

    def __init__(self, feeds: Sequence[Feeds]) -> None:
        self.feeds = list(feeds)
        self.position = 0

    def get_next(self) -> Feeds | None:
        if self.position >= len(self.feeds):
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.feeds)


def cache_key(model: Path, crops: Sequence[Crop], method: Method) -> str:
    digest = hashlib.sha256(f"{method}|{ort.__version__}|{code_version()}|".encode())
    digest.update(file_digest([model]).encode())
    for crop in crops:
        for name in sorted(crop.feeds):
            value = np.ascontiguousarray(crop.feeds[name])
            digest.update(f"{name}|{value.dtype}|{value.shape}|".encode())
            digest.update(value.tobytes())
    return digest.hexdigest()


def activation_ranges(model: Path, crops: Sequence[Crop], method: Method, cache_dir: Path) -> Path:
    """An ORT calibration cache file with the range of every float tensor of `model`."""
    entry = cache_dir / "calibration" / f"{cache_key(model, crops, method)}.json"
    if entry.is_file():
        console.print(f"calibration ranges ({method}): reused from cache {entry.name[:12]}…")
        return entry
    if method == "mse":
        minmax = load_tensors_data(activation_ranges(model, crops, "minmax", cache_dir))
        ranges = _mse_ranges(model, crops, minmax)
    else:
        ranges = _ort_ranges(model, crops, ORT_METHODS[method])
    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = entry.with_suffix(f".{os.getpid()}.tmp")
    save_tensors_data(ranges, partial)
    partial.replace(entry)
    console.print(f"calibration ranges ({method}): {len(ranges.data)} tensors, {len(crops)} crops")
    return entry


def _ort_ranges(model: Path, crops: Sequence[Crop], method: CalibrationMethod) -> TensorsData:
    with scratch("calib") as tmp, quiet_ort():
        calibrator = create_calibrator(
            model,
            None,  # every float tensor: any later choice of nodes finds its ranges here
            augmented_model_path=str(tmp / "augmented.onnx"),
            calibrate_method=method,
        )
        with steps(f"calibrating ({method.name.lower()})", len(crops)) as advance:
            for crop in crops:  # one crop per pass: histogram calibrators keep every output
                calibrator.collect_data(FeedReader([crop.feeds]))
                advance(crop.name)
        return calibrator.compute_data()


def outputs_session(model: Path, names: Sequence[str], tmp: Path) -> ort.InferenceSession:
    """A session on `model` that also returns the tensors `names`."""
    proto = onnx.load(str(model))
    present = {o.name for o in [*proto.graph.output, *proto.graph.input]}
    for name in names:
        if name not in present:
            proto.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    path = tmp / "outputs.onnx"
    onnx.save(proto, str(path))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _histograms(
    session: ort.InferenceSession, crops: Sequence[Crop], edges: dict[str, tuple[float, float]]
) -> Iterator[tuple[str, np.ndarray]]:
    counts = {name: np.zeros(BINS) for name in edges}
    outputs = [o.name for o in session.get_outputs() if o.name in edges]
    with steps("histograms for clipping search", len(crops)) as advance:
        for crop in crops:
            values = dict(zip(outputs, session.run(outputs, crop.feeds), strict=True))
            values.update({k: v for k, v in crop.feeds.items() if k in edges})
            for name, value in values.items():
                counts[name] += np.histogram(value, bins=BINS, range=edges[name])[0]
            advance(crop.name)
    yield from counts.items()


def _mse_ranges(model: Path, crops: Sequence[Crop], minmax: TensorsData) -> TensorsData:
    edges = {}
    for name, data in minmax.data.items():
        low, high = float(np.min(data.range_value[0])), float(np.max(data.range_value[1]))
        low, high = min(low, 0.0), max(high, 0.0)
        edges[name] = (low, high if high > low else low + 1e-6)
    with scratch("hist") as tmp:
        session = outputs_session(model, list(edges), tmp)
        ranges = {}
        for name, counts in _histograms(session, crops, edges):
            low, high = mse_range(counts, np.linspace(*edges[name], BINS + 1))
            ranges[name] = TensorData(
                lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32)
            )
    # ORT has no enum for searched ranges; they are explicit min/max pairs like MinMax's.
    return TensorsData(CalibrationMethod.MinMax, ranges)
