"""`speedy compile --backend ort` on the real HiFi-GAN V1, profiles from the shared LJSpeech."""

from pathlib import Path

import pytest

from speedy import runtime
from speedy.pipeline import make_stage
from speedy.stages.base import execute
from tests.test_compile_profiles import LJSPEECH

pytestmark = pytest.mark.real


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
    coverage = reports["compile"]["profile_data"]
    assert coverage["clips"] == coverage["covered"] == 16
    frames = [p["frames"] for p in reports["compile"]["profiles"]]
    assert frames[0]["min"] == coverage["lengths"]["frames"]["min"]
    assert frames[-1]["max"] == coverage["lengths"]["frames"]["max"]
    assert type(runtime.load(artifact.path)).__name__ == "OnnxSession"
