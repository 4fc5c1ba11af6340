"""`speedy compile` on CPU: ORT and AOTInductor artifacts of the tiny HiFi-GAN, and bad input."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

from speedy import runtime
from speedy.artifact import Artifact
from speedy.backends.ort.section import OrtSection
from speedy.compile.precision import qdq_nodes
from speedy.errors import ParityError, SpeedyError
from speedy.pipeline import make_stage, run_recipe
from speedy.recipe import load_recipe
from speedy.stages.base import execute
from speedy.stages.compile import CompileStage
from speedy.stages.options import CompileOptions
from tests.conftest import TINY_RECIPE, republish
from tests.test_cli_errors import assert_clean_error
from tests.test_compile_profiles import LJSPEECH

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def compile_tiny(build: dict, parent: str, out: Path, **settings) -> Artifact:
    return execute(make_stage("compile", settings), build[parent], out, build["ctx"])


@pytest.fixture(scope="module")
def tiny_aoti(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The tiny generator compiled by AOTInductor for CPU (the slow one: ~20-40 s)."""
    return compile_tiny(tiny_build, "torch", tmp_path_factory.mktemp("aoti") / "a", backend="aoti")


def test_ort_backend_via_cli(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    if not LJSPEECH.is_dir():
        pytest.skip(f"no shared LJSpeech clips at {LJSPEECH}")
    out = tmp_path / "ort"
    code, stdout, err = speedy_cli(
        "compile", tiny_build["simplify"].path, "--backend", "ort", "-o", out,
        "--profiles-from", LJSPEECH, "--ort-threads", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "profiles cover 16 of 16 clips" in stdout and "profile: batch 1..4" in err
    manifest = Artifact.open(out).manifest
    report = manifest.reports["compile"]["model"]
    assert report["profile_data"]["source"] == str(LJSPEECH) and len(report["profiles"]) == 2
    assert manifest.reports["parity"]["passed"] and manifest.reports["parity"]["atol"] == 1e-4
    session = runtime.load(out)
    options = session["model"].session.get_session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert options.intra_op_num_threads == 1  # the manifest's setting, honoured
    again = runtime.load(out, threads=2)["model"]
    assert again.session.get_session_options().intra_op_num_threads == 2
    feeds = tiny_build["ctx"].task.sized_inputs(tiny_build["ctx"].examples, {"frames": 333})
    expected = runtime.load(tiny_build["simplify"].path).run(feeds)["audio"]
    np.testing.assert_allclose(session.run(feeds)["audio"], expected, atol=1e-4)


def test_ort_tensorrt_provider_settings(tiny_build: dict, tmp_path: Path) -> None:
    artifact = compile_tiny(
        tiny_build, "simplify", tmp_path / "o", providers=["tensorrt", "cuda"],
        shapes=["frames:8,100,300", "batch:1,1,2"], workspace_mb=512,
    )  # fmt: skip
    reports = artifact.manifest.reports
    report = reports["compile"]["model"]
    assert report["offline_level"] == "basic"  # GPU providers: no CPU-only fusions
    section = artifact.manifest.graphs["model"].runtime
    assert isinstance(section, OrtSection) and section.profiles  # typed, for the TRT provider
    settings = section.settings
    assert settings.graph_optimization_level == "all"
    names = [name for name, _ in settings.providers]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt_options = settings.providers[0][1]
    assert trt_options["trt_profile_min_shapes"] == "mel:1x80x8"
    assert trt_options["trt_profile_opt_shapes"] == "mel:1x80x100"
    assert trt_options["trt_profile_max_shapes"] == "mel:2x80x300"
    assert trt_options["trt_max_workspace_size"] == str(512 << 20)
    assert runtime.load(artifact.path, device="cpu").run(  # CPU still runs it
        tiny_build["ctx"].task.sized_inputs(tiny_build["ctx"].examples, {"frames": 40})
    )["audio"].shape == (1, 1, 40 * 256)
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(SpeedyError, match="no TensorrtExecutionProvider") as info:
            runtime.load(artifact.path, device="cuda")
        assert "openspeedy[gpu]" in info.value.fix


def test_ort_profiles_split_into_repeated_inputs(tiny_build: dict, tmp_path: Path) -> None:
    """Several profiles reach ORT's TensorRT provider as the same input named once per profile."""
    artifact = compile_tiny(
        tiny_build,
        "simplify",
        tmp_path / "o",
        providers=["tensorrt"],
        profile_span=1.5,
        verify=False,
    )
    profiles = artifact.manifest.reports["compile"]["model"]["profiles"]
    section = artifact.manifest.graphs["model"].runtime
    shapes = section.settings.providers[0][1]["trt_profile_max_shapes"]
    assert len(profiles) > 1 and shapes.count("mel:") == len(profiles)


def test_ort_fp16(tiny_build: dict, tmp_path: Path) -> None:
    artifact = compile_tiny(tiny_build, "simplify", tmp_path / "o", fp16=True)
    assert artifact.manifest.precision == "fp16"
    parity = artifact.manifest.reports["parity"]
    assert parity["passed"] and parity["atol"] == 1e-2  # reduced precision: looser tolerance
    model = onnx.load(str(artifact.file("model")))
    kinds = {init.data_type for init in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds
    io_types = {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    assert io_types == {onnx.TensorProto.FLOAT}


def test_reduced_precision_parity_failure_suggests_a_wider_atol(
    tiny_build: dict, tmp_path: Path
) -> None:
    with pytest.raises(ParityError, match="fp16 moves the output") as failure:
        compile_tiny(tiny_build, "simplify", tmp_path / "o", fp16=True, atol=1e-9)
    assert "--atol" in failure.value.fix and not (tmp_path / "o").exists()


def test_aoti_backend(tiny_aoti: Artifact, tiny_build: dict) -> None:
    manifest = tiny_aoti.manifest
    assert manifest.kind == "aoti" and tiny_aoti.file("model").suffix == ".pt2"
    assert manifest.reports["parity"]["passed"]
    assert manifest.reports["compile"]["model"]["device"] == "cpu"
    section = manifest.graphs["model"].runtime
    assert section.backend == "aoti" and section.device == "cpu"
    session = runtime.load(tiny_aoti.path, trust=True)  # built here: its code is ours
    ctx = tiny_build["ctx"]
    feeds = ctx.task.sized_inputs(ctx.examples, {"batch": 3, "frames": 123})  # unseen sizes
    expected = runtime.load(tiny_build["torch"].path).run(feeds)["audio"]
    np.testing.assert_allclose(session.run(feeds)["audio"], expected, atol=1e-4)


def test_aoti_package_refuses_another_device_or_torch(tiny_aoti: Artifact, tmp_path: Path) -> None:
    with pytest.raises(SpeedyError, match="compiled for cpu, not cuda"):
        runtime.load(tiny_aoti.path, device="cuda", trust=True)
    copy = Path(shutil.copytree(tiny_aoti.path, tmp_path / "copy"))
    section = tiny_aoti.manifest.graphs["model"].runtime
    republish(copy, tiny_aoti.manifest, runtime=section.model_copy(update={"torch": "1.13.0"}))
    with pytest.raises(SpeedyError, match=r"compiled with torch 1\.13\.0"):
        runtime.load(copy, trust=True)


def test_run_picks_up_the_compile_stage(tiny_build: dict, tmp_path: Path) -> None:
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw |= {"stages": ["export", "simplify", "compile"], "compile": {"backend": "ort"}}
    recipe_file = tmp_path / "with_compile.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    recipe = load_recipe(str(recipe_file))
    build = tiny_build["build"]  # export and simplify come from the shared build, unchanged
    outcomes, _ = run_recipe(recipe, build)
    by_stage = {o.stage: o for o in outcomes}
    assert by_stage["simplify"].reused and not by_stage["compile"].reused
    assert isinstance(by_stage["compile"].artifact.manifest.graphs["model"].runtime, OrtSection)
    again, _ = run_recipe(recipe, build)
    assert all(o.reused for o in again)


def test_int8_needs_qdq_nodes(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    code, _, err = speedy_cli(
        "compile", tiny_build["simplify"].path, "--int8", "-o", tmp_path / "o"
    )
    assert_clean_error(code, err, "--int8 needs explicit Q/DQ nodes", "speedy quantize")
    assert not (tmp_path / "o").exists()


def make_qdq_artifact(build: dict, out: Path) -> Artifact:
    """The tiny simplify artifact statically quantized to Q/DQ by ONNX Runtime (INT8 input)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    ctx = build["ctx"]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([ctx.task.sized_inputs(ctx.examples, {"frames": 64})])

        def get_next(self):
            return next(self.feeds, None)

    parent = build["simplify"]
    out.mkdir(parents=True)
    quantize_static(
        parent.file("model"), out / "model.onnx", Reader(), quant_format=QuantFormat.QDQ
    )
    return republish(out, parent.manifest, precision="int8")


def test_int8_from_qdq_with_ort(tiny_build: dict, tmp_path: Path) -> None:
    qdq = make_qdq_artifact(tiny_build, tmp_path / "qdq")
    assert qdq_nodes(onnx.load(str(qdq.file("model")))) > 0
    assert qdq_nodes(onnx.load(str(tiny_build["simplify"].file("model")))) == 0
    artifact = execute(
        make_stage("compile", {"int8": True}), qdq, tmp_path / "o", tiny_build["ctx"]
    )
    assert artifact.manifest.precision == "int8"
    assert artifact.manifest.reports["compile"]["model"]["qdq_nodes"] > 0
    assert artifact.manifest.reports["parity"]["passed"]


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_trt_without_tensorrt_names_the_extra(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    code, _, err = speedy_cli(
        "compile", tiny_build["simplify"].path, "--backend", "trt", "-o", tmp_path / "o"
    )
    assert_clean_error(code, err, "TensorRT is not installed", "pip install 'openspeedy[trt]'")
    assert "feature cache" not in err  # refused before any work


def test_malformed_shapes_on_the_command_line(speedy_cli, tiny_build: dict, tmp_path: Path):
    code, _, err = speedy_cli(
        "compile",
        tiny_build["simplify"].path,
        "--shapes",
        "frames:8-512-4000",
        "-o",
        tmp_path / "o",
    )
    assert_clean_error(code, err, "cannot parse --shapes 'frames:8-512-4000'", "NAME:MIN,OPT,MAX")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"backend": "aoti", "int8": True}, r"--int8 applies to backends that read Q/DQ nodes \(o"),
        ({"backend": "aoti", "shapes": ["frames:8,9,10"]}, r"apply to backends with profiles \("),
        ({"backend": "ort", "timing_cache": "t.cache"}, "--timing-cache applies to --backend trt"),
        ({"backend": "aoti", "workspace_mb": 64}, "--workspace applies to --backend ort or trt"),
        ({"backend": "trt", "device": "cpu"}, "--backend trt runs on cuda only"),
        ({"backend": "openvino", "device": "cuda"}, "--backend openvino runs on cpu only"),
        ({"backend": "openvino", "fp16": True}, "--backend openvino compiles FP32 graphs"),
        ({"backend": "torch"}, "--backend torch compiles nothing"),
        ({"backend": "tflite"}, "unknown backend 'tflite'"),
        ({"backend": "aoti", "fft_conv": True}, "--fft-conv applies to --backend ort"),
        ({"fft_conv": True, "fp16": True}, "--fft-conv applies to FP32 models on ONNX"),
        ({"fft_conv": True, "providers": ["cuda"]}, "without --fp16 and GPU --provider"),
    ],
)
def test_conflicting_options(settings: dict, message: str) -> None:
    with pytest.raises(SpeedyError, match=message):
        CompileStage(CompileOptions.model_validate(settings))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_aoti_for_cuda_without_cuda() -> None:
    with pytest.raises(SpeedyError, match="no CUDA GPU is available"):
        CompileStage(CompileOptions(backend="aoti", device="cuda"))


def test_wrong_parent_kind(tiny_build: dict, tmp_path: Path) -> None:
    with pytest.raises(SpeedyError, match="--backend ort takes onnx artifacts, not torch"):
        compile_tiny(tiny_build, "torch", tmp_path / "a", backend="ort")
    with pytest.raises(SpeedyError, match="--backend aoti takes torch artifacts, not onnx"):
        compile_tiny(tiny_build, "simplify", tmp_path / "b", backend="aoti")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_profiles_from_changes_the_fingerprint(tiny_build: dict, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    source = sorted(LJSPEECH.glob("*.wav")) if LJSPEECH.is_dir() else []
    if len(source) < 2:
        pytest.skip("needs two clips")
    shutil.copy(source[0], clips)
    stage = make_stage("compile", {"profiles_from": str(clips)})
    spec, parent = tiny_build["ctx"].spec, tiny_build["simplify"]
    before = stage.fingerprint(parent, spec)
    shutil.copy(source[1], clips)
    assert stage.fingerprint(parent, spec) != before
