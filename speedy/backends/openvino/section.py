"""The OpenVINO backend's options, and what a compiled graph records. Pure data."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Hint = Literal["latency", "throughput"]


class OpenVinoOptions(BaseModel):
    """How OpenVINO's CPU plugin runs a graph."""

    model_config = ConfigDict(extra="forbid")

    ov_hint: Hint = Field(
        "latency",
        description="OpenVINO performance hint: latency (one request at a time) or throughput "
        "(parallel streams for concurrent requests).",
    )


class OpenVinoSection(BaseModel):
    """The runtime section of an OpenVINO IR graph (`speedy compile --backend openvino`)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["openvino"] = "openvino"
    openvino: str  # the release that converted it
    hint: Hint = "latency"
