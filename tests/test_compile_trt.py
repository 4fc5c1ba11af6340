"""TensorRT: engine target checks on CPU; engine builds and runs only where TensorRT imports."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from speedy import runtime
from speedy.artifact import Artifact
from speedy.backends.trt.section import TrtSection
from speedy.backends.trt.session import check_engine_target
from speedy.errors import SpeedyError
from speedy.pipeline import make_stage
from speedy.stages.base import execute
from tests.conftest import republish
from tests.test_compile import make_qdq_artifact

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
MISSING = (
    "TensorRT is not installed (the [trt] extra)"
    if not HAVE_TRT
    else "no CUDA GPU for TensorRT"
    if not torch.cuda.is_available()
    else ""
)
needs_trt = pytest.mark.skipif(bool(MISSING), reason=MISSING)


def built(tensorrt: str, gpu: str) -> TrtSection:
    """An engine's runtime section, as if built with that TensorRT version for that GPU."""
    return TrtSection(tensorrt=tensorrt, gpu=gpu, compute_capability="9.0", profiles=[])


def test_engine_for_another_tensorrt_version_is_refused() -> None:
    section = built("10.3.0", "NVIDIA H100")
    with pytest.raises(
        SpeedyError, match=r"built with TensorRT 10\.3\.0, this is 11\.0\.0"
    ) as info:
        check_engine_target(section, "11.0.0", "NVIDIA H100")
    assert "rebuild it here" in info.value.fix


def test_engine_for_another_gpu_is_refused() -> None:
    section = built("10.3.0", "NVIDIA A10")
    with pytest.raises(SpeedyError, match="built for NVIDIA A10, this GPU is NVIDIA H100"):
        check_engine_target(section, "10.3.0", "NVIDIA H100")
    check_engine_target(section, "10.3.0", "NVIDIA A10")  # the same target loads


@pytest.fixture(scope="module")
def tiny_engine(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    tmp = tmp_path_factory.mktemp("trt")
    stage = make_stage(
        "compile", {"backend": "trt", "timing_cache": str(tmp / "timing.cache"), "profile_span": 2}
    )
    return execute(stage, tiny_build["simplify"], tmp / "engine", tiny_build["ctx"])


@pytest.mark.trt
@needs_trt
def test_engine_build_manifest_and_profile_selection(tiny_engine: Artifact, tiny_build: dict):
    import tensorrt

    reports = tiny_engine.manifest.reports
    report, section = reports["compile"]["model"], tiny_engine.manifest.graphs["model"].runtime
    assert isinstance(section, TrtSection) and section.tensorrt == tensorrt.__version__
    assert section.gpu == torch.cuda.get_device_name()
    assert section.compute_capability.count(".") == 1
    profiles = [{d: r.model_dump() for d, r in p.items()} for p in section.profiles]
    assert profiles == report["profiles"] and len(profiles) > 1
    assert Path(report["timing_cache"]).is_file() and reports["parity"]["passed"]
    session = runtime.load(tiny_engine.path, device="cuda")["model"]
    ctx = tiny_build["ctx"]
    for index, profile in enumerate(section.profiles):
        feeds = ctx.task.sized_inputs(ctx.examples, {"frames": profile["frames"].opt})
        reference = runtime.load(tiny_build["simplify"].path).run(feeds)["audio"]
        assert abs(session.run(feeds)["audio"] - reference).max() < 1e-3
        assert session.profile == index
    too_long = section.profiles[-1]["frames"].max + 1
    with pytest.raises(SpeedyError, match="outside every optimization profile"):
        session.run(ctx.task.sized_inputs(ctx.examples, {"frames": too_long}))


@pytest.mark.trt
@needs_trt
def test_engine_with_a_manifest_claiming_another_target(tiny_engine: Artifact, tmp_path: Path):
    copy = Path(shutil.copytree(tiny_engine.path, tmp_path / "copy"))
    section = tiny_engine.manifest.graphs["model"].runtime
    republish(copy, tiny_engine.manifest, runtime=section.model_copy(update={"tensorrt": "9.0.0"}))
    with pytest.raises(SpeedyError, match=r"built with TensorRT 9\.0\.0"):
        runtime.load(copy, device="cuda")


@pytest.mark.trt
@needs_trt
def test_fp16_and_int8_engines(tiny_build: dict, tmp_path: Path) -> None:
    fp16 = execute(
        make_stage("compile", {"backend": "trt", "fp16": True}),
        tiny_build["simplify"],
        tmp_path / "fp16",
        tiny_build["ctx"],
    )
    assert fp16.manifest.precision == "fp16" and fp16.manifest.reports["parity"]["passed"]
    qdq = make_qdq_artifact(tiny_build, tmp_path / "qdq")
    int8 = execute(
        make_stage("compile", {"backend": "trt", "int8": True, "fp16": True}),
        qdq,
        tmp_path / "int8",
        tiny_build["ctx"],
    )
    assert int8.manifest.precision == "int8+fp16" and int8.manifest.reports["parity"]["passed"]
