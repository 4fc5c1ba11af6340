"""ONNX Runtime: plain and compiled ONNX graphs (CPU; CUDA and TensorRT providers where present)."""

from typing import ClassVar

from pydantic import BaseModel

from speedy.backends.base import Backend
from speedy.backends.ort.section import OrtOptions, OrtSection
from speedy.errors import SpeedyError


class OrtBackend(Backend):
    name: ClassVar[str] = "ort"
    kind: ClassVar[str] = "onnx"
    summary: ClassVar[str] = "ONNX optimized offline by ONNX Runtime"
    sessions: ClassVar[str] = "speedy.backends.ort.session"
    builder: ClassVar[str | None] = "speedy.backends.ort.build"
    compiles_from: ClassVar[str | None] = "onnx"
    suffix: ClassVar[str] = ".onnx"
    Options: ClassVar[type[BaseModel]] = OrtOptions
    Section: ClassVar[type[BaseModel] | None] = OrtSection
    tools: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    profiles: ClassVar[bool] = True  # for the TensorRT provider

    def check(self, fp16: bool, options: BaseModel) -> None:
        assert isinstance(options, OrtOptions)
        if options.fft_conv and (fp16 or options.providers != ["cpu"]):
            raise SpeedyError(
                "--fft-conv applies to FP32 models on ONNX Runtime's CPU provider",
                "use it without --fp16 and GPU --provider options",
            )


backend = OrtBackend()
