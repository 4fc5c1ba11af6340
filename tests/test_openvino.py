"""The OpenVINO backend (`speedy compile --backend openvino`): IR of the tiny HiFi-GAN's FP32 and
INT8 (Q/DQ) graphs, run through the one runtime interface against ONNX Runtime on fresh inputs."""

import sys
from pathlib import Path

import numpy as np
import pytest

from speedy import runtime
from speedy.artifact import Artifact
from speedy.backends.openvino.section import OpenVinoSection
from speedy.errors import SpeedyError
from speedy.pipeline import make_stage
from speedy.stages.base import execute
from tests.test_cli_errors import assert_clean_error
from tests.test_compile import make_qdq_artifact

pytest.importorskip("openvino", reason="the OpenVINO backend needs the [openvino] extra")


@pytest.fixture(scope="module")
def tiny_openvino(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    out = tmp_path_factory.mktemp("openvino") / "fp32"
    stage = make_stage("compile", {"backend": "openvino"})
    return execute(stage, tiny_build["simplify"], out, tiny_build["ctx"])


def test_fp32_ir_matches_onnx_runtime_on_fresh_mels(tiny_openvino: Artifact, tiny_build) -> None:
    manifest = tiny_openvino.manifest
    graph = manifest.graphs["model"]
    assert graph.kind == "openvino" and graph.files == ["model.xml", "model.bin"]
    assert isinstance(graph.runtime, OpenVinoSection) and manifest.reports["parity"]["passed"]
    assert "openvino" in manifest.lineage.tools
    reference = runtime.load(tiny_build["simplify"].path)
    candidate = runtime.load(tiny_openvino.path, threads=1)
    rng = np.random.default_rng(20261207)
    for frames in (9, 57, 131):  # lengths the parity check did not use
        mel = rng.normal(-5.0, 2.0, (1, 80, frames)).astype(np.float32)
        want, got = reference.run({"mel": mel})["audio"], candidate.run({"mel": mel})["audio"]
        assert got.shape == want.shape and np.isfinite(got).all()
        assert np.abs(got - want).max() < 1e-4


def test_concurrent_calls_each_get_their_own_result(tiny_openvino: Artifact) -> None:
    from concurrent.futures import ThreadPoolExecutor

    session = runtime.load(tiny_openvino.path)
    rng = np.random.default_rng(7)
    mels = [rng.normal(-5.0, 2.0, (1, 80, 20 + 7 * i)).astype(np.float32) for i in range(6)]
    alone = [session.run({"mel": m})["audio"] for m in mels]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda m: session.run({"mel": m})["audio"], mels))
    for one, other in zip(alone, together, strict=True):
        np.testing.assert_array_equal(one, other)


def test_int8_from_qdq(tiny_build: dict, tmp_path: Path) -> None:
    qdq = make_qdq_artifact(tiny_build, tmp_path / "qdq")
    stage = make_stage("compile", {"backend": "openvino", "int8": True})
    artifact = execute(stage, qdq, tmp_path / "o", tiny_build["ctx"])
    assert artifact.manifest.precision == "int8"
    assert artifact.manifest.reports["compile"]["model"]["qdq_nodes"] > 0
    assert artifact.manifest.reports["parity"]["passed"]


def test_bad_requests_get_clear_errors(speedy_cli, tiny_openvino: Artifact, tmp_path) -> None:
    with pytest.raises(SpeedyError, match="OpenVINO graphs run on the CPU here"):
        runtime.load(tiny_openvino.path, device="cuda")
    code, _, err = speedy_cli(
        "compile", tiny_openvino.path, "--backend", "openvino", "-o", tmp_path / "again"
    )
    assert_clean_error(code, err, "--backend openvino takes onnx artifacts, not openvino")
    code, _, err = speedy_cli(
        "compile", tiny_openvino.path, "--backend", "ort", "--ov-hint", "throughput",
        "-o", tmp_path / "o",
    )  # fmt: skip
    assert_clean_error(code, err, "--ov-hint applies to --backend openvino")


def test_missing_openvino_names_the_extra(
    speedy_cli, tiny_build: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    code, _, err = speedy_cli(
        "compile", tiny_build["simplify"].path, "--backend", "openvino", "-o", tmp_path / "o"
    )
    assert_clean_error(code, err, "OpenVINO is not installed", "pip install 'openspeedy[openvino]'")
    assert not (tmp_path / "o").exists()
