"""The Python-backend model of a repository `speedy deploy triton` wrote (its `model.py` imports
`TritonPythonModel` from here): speedy's catalog of voices and upload models, whose graphs run as
BLS requests to the repository's graph models, answering one JSON request per call.

    request (string): {"route": "tts", "voice"?, "text", controls..., "stream"?: true}
                      {"route": "vocode" | "codes", "model"?} with the file in `upload` (bytes)
    -> audio (float32 samples; several responses when streamed) and sample_rate, or codes
       (codebooks x frames)

Decoupled: each request gets its responses from its sender, the last flagged final; an error is
one response carrying a TritonError with the problem and its fix.
"""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # Triton's Python backend (tests: a stand-in)
from pydantic import ValidationError

from speedy.artifact import Artifact
from speedy.deploy import TRITON_PLAN
from speedy.deploy.remote import GraphCall, remote_model
from speedy.errors import SpeedyError, first_invalid
from speedy.serve.catalog import Catalog
from speedy.specs import Feeds
from speedy.tasks.codec import Codec


def bls_call(artifact: Artifact, models: Mapping[str, str]) -> GraphCall:
    """Graph runs as BLS requests to the graph models `models` names (graph -> model)."""

    def call(graph: str, feeds: Mapping[str, np.ndarray]) -> Feeds:
        outputs = [spec.name for spec in artifact.manifest.graphs[graph].outputs]
        response = pb_utils.InferenceRequest(
            model_name=models[graph],
            requested_output_names=outputs,
            inputs=[pb_utils.Tensor(name, value) for name, value in feeds.items()],
        ).exec()
        if response.has_error():
            raise SpeedyError(f"{models[graph]}: {response.error().message()}",
                              "see the Triton server's log")  # fmt: skip
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy()
                for name in outputs}  # fmt: skip

    return call


class TritonPythonModel:
    """speedy's loops inside Triton."""

    def initialize(self, args: dict[str, str]) -> None:
        here = Path(args["model_repository"]) / args["model_version"]
        plan = json.loads((here / TRITON_PLAN).read_text())
        graphs, items = {}, {}  # manifest directory -> graph models; name -> NAME=PATH
        for entry in plan["artifacts"]:
            path = here / entry["manifest"]
            graphs[str(path)] = entry["graphs"]
            items[entry["name"]] = f"{entry['name']}={path}"

        def open_model(path: Path) -> Any:
            artifact = Artifact.open(path, verify=False)  # its manifest only: graphs are models
            return remote_model(artifact, bls_call(artifact, graphs[str(path)]))

        self.catalog = Catalog.load([items[name] for name in plan["served"]],
                                    [items[name] for name in plan["vocoders"]],
                                    plan["chunk_seconds"], open_model)  # fmt: skip

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            sender = request.get_response_sender()
            try:
                for outputs in self.answer(request):
                    tensors = [pb_utils.Tensor(name, value) for name, value in outputs.items()]
                    sender.send(pb_utils.InferenceResponse(output_tensors=tensors))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            except SpeedyError as exc:
                error = pb_utils.TritonError(f"{exc.problem} (fix: {exc.fix})")
                sender.send(pb_utils.InferenceResponse(error=error),
                            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)  # fmt: skip

    def answer(self, request: Any) -> Iterator[dict[str, np.ndarray]]:
        """The outputs of each response to `request`."""
        (raw,) = pb_utils.get_input_tensor_by_name(request, "request").as_numpy().reshape(-1)
        fields = json.loads(raw)
        route = fields.pop("route", "tts")
        if route == "tts":
            yield from self.speak(fields)
            return
        served = self.catalog.upload_model(fields.get("model"))
        upload = pb_utils.get_input_tensor_by_name(request, "upload")
        if upload is None:
            raise SpeedyError(f"{route} needs the file in the 'upload' input", "send its bytes")
        example = served.upload_task.read_upload(upload.as_numpy().tobytes())
        rate = np.array([served.model.manifest.model.audio.sample_rate], np.int32)
        if route == "codes" and isinstance(served.task, Codec):
            yield {"codes": served.task.encode(served.model, example[None, None])[0]}
        elif route == "vocode" and (audio := served.vocode(example)) is not None:
            yield {"audio": audio.reshape(-1), "sample_rate": rate}
        else:
            raise SpeedyError(
                f"{served.name} does not answer '{route}'",
                "route tts to a voice, vocode to a vocoder or codec, codes to a codec",
            )

    def speak(self, fields: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
        voice = self.catalog.voice(fields.pop("voice", None))
        stream = bool(fields.pop("stream", False))
        try:
            controls = voice.task.Request.model_validate(fields).model_dump()
        except ValidationError as exc:
            raise SpeedyError(first_invalid(exc, "request"), "see the voice's controls") from None
        rate = np.array([voice.chain.sample_rate], np.int32)
        if stream and voice.streamer is not None:
            for chunk in voice.stream(controls):
                yield {"audio": chunk.reshape(-1), "sample_rate": rate}
        else:
            yield {"audio": voice.chain(**controls).audio.reshape(-1), "sample_rate": rate}
