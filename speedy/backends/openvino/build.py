"""ONNX to OpenVINO IR: `ov.convert_model` reads the ONNX graph (Q/DQ nodes become its
FakeQuantize, run in INT8), `ov.save_model` writes the IR with FP32 weights."""

from pathlib import Path

from speedy.backends.base import Compiled, CompileJob
from speedy.backends.openvino.section import OpenVinoOptions, OpenVinoSection
from speedy.backends.openvino.session import import_openvino
from speedy.errors import SpeedyError


def convert(source: Path, target: Path) -> tuple[list[str], str]:
    """Convert the ONNX graph `source` to OpenVINO IR at `target` (.xml, weights in .bin beside
    it, kept in FP32); returns the files written and OpenVINO's release."""
    ov = import_openvino()
    try:
        model = ov.convert_model(str(source))
    except Exception as exc:
        raise SpeedyError(
            f"OpenVINO cannot convert {source.name}: {str(exc).splitlines()[0]}",
            "check the graph runs in ONNX Runtime (`speedy infer`), or use --backend ort",
        ) from exc
    ov.save_model(model, str(target), compress_to_fp16=False)
    return [target.name, target.with_suffix(".bin").name], ov.get_version().split("-")[0]


def compile_graph(job: CompileJob) -> Compiled:
    """One graph's IR, at `job.target` (.xml) and beside it (.bin)."""
    assert isinstance(job.options, OpenVinoOptions)
    files, version = convert(job.source, job.target)
    return Compiled(files, OpenVinoSection(openvino=version, hint=job.options.ov_hint), {})
