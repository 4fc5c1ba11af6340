"""ONNX Runtime backend (CPU; CUDA execution provider where onnxruntime-gpu is installed)."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from speedy.artifact import Manifest
from speedy.compile.ort import PROVIDERS as ORT_PROVIDERS
from speedy.compile.ort import SESSION_REPORT, OrtSettings
from speedy.compile.profiles import select_profile, stored_profiles, symbol_sizes
from speedy.errors import SpeedyError
from speedy.onnx_io import load_onnx
from speedy.runtime.base import Session

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def execution_provider(device: str) -> str:
    """The ORT execution provider for `device`, or a clear error when it is not installed."""
    provider = PROVIDERS.get(device)
    if provider is None:
        raise SpeedyError(f"unknown device '{device}'", f"use one of {sorted(PROVIDERS)}")
    if provider not in ort.get_available_providers():
        raise SpeedyError(
            f"ONNX Runtime here has no {provider}",
            "pip install 'openspeedy[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA GPU",
        )
    return provider


class OnnxSession(Session):
    """An ONNX Runtime inference session."""

    def __init__(
        self, manifest: Manifest, model_file: Path, device: str = "cpu", threads: int | None = None
    ) -> None:
        super().__init__(manifest, model_file)
        stored = manifest.reports.get(SESSION_REPORT)  # settings from `speedy compile`
        settings = OrtSettings.model_validate(stored) if stored else None
        providers = settings.providers_for(device) if settings else [execution_provider(device)]
        load_onnx(model_file, with_weights=False)  # clear errors for corrupt files, unsafe paths
        if settings:
            options = settings.session_options(threads)
        else:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            if threads:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(model_file), options, providers=providers)
        except Exception as exc:
            raise SpeedyError(
                f"ONNX Runtime cannot load {model_file}: {str(exc).splitlines()[0]}",
                "re-create the artifact, or check the onnxruntime version supports its opset",
            ) from exc
        uses_trt = ORT_PROVIDERS["tensorrt"] in self.session.get_providers()
        self.profiles = stored_profiles(manifest.reports) if uses_trt else []

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.profiles:  # TensorRT provider: refuse sizes outside its explicit profiles
            shapes = {name: value.shape for name, value in feeds.items()}
            select_profile(self.profiles, symbol_sizes(self.inputs, shapes))
        names = [spec.name for spec in self.outputs]
        return dict(zip(names, self.session.run(names, dict(feeds)), strict=True))
