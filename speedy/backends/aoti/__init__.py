"""AOTInductor: `.pt2` packages compiled by `torch._inductor`."""

from typing import ClassVar

from pydantic import BaseModel

from speedy.backends.aoti.section import AotiSection
from speedy.backends.base import Backend
from speedy.devices import Device, require_cuda


class AotiBackend(Backend):
    name: ClassVar[str] = "aoti"
    kind: ClassVar[str] = "aoti"
    summary: ClassVar[str] = "AOTInductor package of the torch network"
    sessions: ClassVar[str] = "speedy.backends.aoti.session"
    builder: ClassVar[str | None] = "speedy.backends.aoti.build"
    compiles_from: ClassVar[str | None] = "torch"
    suffix: ClassVar[str] = ".pt2"
    Section: ClassVar[type[BaseModel] | None] = AotiSection
    section_required: ClassVar[bool] = True
    runs_code: ClassVar[str | None] = (
        "an AOTInductor package (.pt2), whose native code runs when it loads"
    )
    reads_qdq: ClassVar[bool] = False

    def require(self, device: Device) -> None:
        if device == "cuda":
            require_cuda()


backend = AotiBackend()
