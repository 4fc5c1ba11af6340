"""The real HiFi-GAN V1: naive INT8 collapses (and says so), FP16 keeps the audio."""

import pytest

from speedy.pipeline import make_stage
from speedy.stages.base import execute

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_naive_int8_collapses_and_its_report_says_so(real_build: dict, tmp_path) -> None:
    options = {
        "precision": "int8",
        "method": "minmax",
        "calib_size": 2,
        "crop": {"frames": 128},  # short crops keep calibration cheap; the collapse is robust
        "no_budget": True,  # kept, to show its report says it collapsed
    }
    artifact = execute(
        make_stage("quantize", options),
        real_build["simplify"],
        tmp_path / "int8",
        real_build["ctx"],
    )
    quality = artifact.manifest.reports["quality"]
    assert quality["metrics"]["pesq"] < 3.0
    assert quality["verdict"].startswith("collapsed: pesq")
    assert artifact.manifest.reports["quantize"]["model"]["size_ratio"] < 0.3


def test_fp16_is_half_the_size_and_keeps_pesq(real_build: dict, tmp_path) -> None:
    parent = real_build["simplify"]
    artifact = execute(
        make_stage("quantize", {"precision": "fp16"}), parent, tmp_path / "fp16", real_build["ctx"]
    )
    assert artifact.file("model").stat().st_size <= 0.52 * parent.file("model").stat().st_size
    quality = artifact.manifest.reports["quality"]
    assert quality["metrics"]["pesq"] >= 4.4 and quality["verdict"] == "ok"
