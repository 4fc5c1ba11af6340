"""What an AOTInductor package records: the device and torch release its native kernels need."""

from typing import Literal

from pydantic import BaseModel, ConfigDict

from speedy.devices import Device


class AotiSection(BaseModel):
    """The runtime section of an AOTInductor package (`speedy compile --backend aoti`)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["aoti"] = "aoti"
    device: Device
    torch: str  # release, without the build tag
    host_cpu: str  # CPU kernels are built for this host's instruction set
