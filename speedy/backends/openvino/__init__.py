"""OpenVINO: ONNX graphs (FP32, and INT8 from their Q/DQ nodes) converted to OpenVINO IR
(`.xml` + `.bin`) and run by its CPU plugin at FP32 inference precision."""

from typing import ClassVar

from pydantic import BaseModel

from speedy.backends.base import Backend
from speedy.backends.openvino.section import OpenVinoOptions, OpenVinoSection
from speedy.devices import Device
from speedy.errors import SpeedyError


class OpenVinoBackend(Backend):
    name: ClassVar[str] = "openvino"
    kind: ClassVar[str] = "openvino"
    summary: ClassVar[str] = "OpenVINO IR for its CPU plugin"
    sessions: ClassVar[str] = "speedy.backends.openvino.session"
    builder: ClassVar[str | None] = "speedy.backends.openvino.build"
    compiles_from: ClassVar[str | None] = "onnx"
    suffix: ClassVar[str] = ".xml"
    Options: ClassVar[type[BaseModel]] = OpenVinoOptions
    Section: ClassVar[type[BaseModel] | None] = OpenVinoSection
    section_required: ClassVar[bool] = True
    tools: ClassVar[tuple[str, ...]] = ("openvino",)
    devices: ClassVar[tuple[Device, ...]] = ("cpu",)

    def check(self, fp16: bool, options: BaseModel) -> None:
        if fp16:
            raise SpeedyError(
                "--backend openvino compiles FP32 graphs and INT8 ones from their Q/DQ nodes",
                "drop --fp16",
            )

    def require(self, device: Device) -> None:
        from speedy.backends.openvino.session import import_openvino

        import_openvino()


backend = OpenVinoBackend()
