"""TensorRT: serialized engines built with TensorRT's own Python API."""

from typing import ClassVar

from pydantic import BaseModel

from speedy.backends.base import Backend
from speedy.backends.trt.section import TrtOptions, TrtSection
from speedy.devices import Device
from speedy.model_spec import ModelSpec
from speedy.shapes import fits


class TrtBackend(Backend):
    name: ClassVar[str] = "trt"
    kind: ClassVar[str] = "trt"
    summary: ClassVar[str] = "TensorRT engine"
    sessions: ClassVar[str] = "speedy.backends.trt.session"
    builder: ClassVar[str | None] = "speedy.backends.trt.build"
    compiles_from: ClassVar[str | None] = "onnx"
    suffix: ClassVar[str] = ".engine"
    Options: ClassVar[type[BaseModel]] = TrtOptions
    Section: ClassVar[type[BaseModel] | None] = TrtSection
    section_required: ClassVar[bool] = True
    tools: ClassVar[tuple[str, ...]] = ("tensorrt",)
    devices: ClassVar[tuple[Device, ...]] = ("cuda",)
    default_device: ClassVar[Device] = "cuda"
    profiles: ClassVar[bool] = True

    def require(self, device: Device) -> None:
        from speedy.backends.trt.session import import_tensorrt

        import_tensorrt()  # fail before any work when TensorRT is missing

    def parity_sizes(
        self, section: BaseModel | None, sizes: list[dict[str, int]], spec: ModelSpec
    ) -> list[dict[str, int]]:
        """The sizes its profiles cover, plus each profile's `opt`."""
        assert isinstance(section, TrtSection)
        covered = [s for s in sizes if any(fits(p, spec.sizes(s)) for p in section.profiles)]
        return covered + [{d: r.opt for d, r in p.items()} for p in section.profiles]


backend = TrtBackend()
