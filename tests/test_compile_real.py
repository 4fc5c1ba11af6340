"""`speedy compile --backend ort` on the real HiFi-GAN V1, profiles from the shared LJSpeech."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from speedy import runtime
from speedy.pipeline import make_stage
from speedy.stages.base import execute
from tests.test_compile_profiles import LJSPEECH

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_real_hifigan_ort_compile(real_build: dict, tmp_path: Path) -> None:
    if not LJSPEECH.is_dir():
        pytest.skip(f"no shared LJSpeech clips at {LJSPEECH}")
    stage = make_stage("compile", {"backend": "ort", "profiles_from": str(LJSPEECH)})
    artifact = execute(stage, real_build["simplify"], tmp_path / "ort", real_build["ctx"])
    reports = artifact.manifest.reports
    parity = reports["parity"]
    assert (
        parity["passed"] and max(max(c["max_abs_error"].values()) for c in parity["cases"]) <= 1e-4
    )
    coverage = reports["compile"]["model"]["profile_data"]
    assert coverage["clips"] == coverage["covered"] == 16
    frames = [p["frames"] for p in reports["compile"]["model"]["profiles"]]
    assert frames[0]["min"] == coverage["lengths"]["frames"]["min"]
    assert frames[-1]["max"] == coverage["lengths"]["frames"]["max"]
    assert type(runtime.load(artifact.path)["model"]).__name__ == "OnnxSession"


def test_real_hifigan_fft_conv_compile(real_build: dict, tmp_path: Path) -> None:
    stage = make_stage("compile", {"backend": "ort", "fft_conv": True})
    parent = real_build["simplify"]
    artifact = execute(stage, parent, tmp_path / "fft", real_build["ctx"])
    reports = artifact.manifest.reports
    assert (
        len(reports["compile"]["model"]["fft_convs"]) == 24
    )  # kernels 7 and 11 at 256 and 128 channels
    assert reports["parity"]["passed"] and reports["parity"]["atol"] == 1e-4
    assert artifact.size_bytes < 1.05 * parent.size_bytes  # spectral weights folded at load
    session = runtime.load(artifact.path)
    level = session["model"].session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    feeds = real_build["ctx"].task.sized_inputs(real_build["ctx"].examples, {"frames": 333})
    expected = runtime.load(parent.path).run(feeds)["audio"]
    np.testing.assert_allclose(session.run(feeds)["audio"], expected, atol=1e-4)
