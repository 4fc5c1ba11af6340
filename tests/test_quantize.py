"""`speedy quantize` on the tiny seeded HiFi-GAN: INT8, FP16, mixed, reuse, `speedy run`."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from speedy import runtime
from speedy.artifact import Artifact
from speedy.quality import snr_db
from tests.conftest import TINY_RECIPE

FAST = ("--calib-size", "4", "--threads", "1")


@pytest.fixture(scope="module")
def tiny_int8(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The naive INT8 artifact of the tiny model (every node ORT can quantize)."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    stage = make_stage("quantize", {"precision": "int8", "method": "minmax", "calib_size": 4})
    out = tmp_path_factory.mktemp("int8") / "int8"
    return execute(stage, tiny_build["simplify"], out, tiny_build["ctx"])


def test_int8_records_qdq_table_and_quality_report(tiny_int8: Artifact) -> None:
    manifest = tiny_int8.manifest
    assert manifest.precision == "int8" and manifest.lineage.stage == "quantize"
    ops = {n.op_type for n in onnx.load(str(tiny_int8.file("model"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    report = manifest.reports["quantize"]["model"]
    assert report["calibration"]["method"] == "minmax" and len(report["calibration"]["crops"]) == 4
    assert {row["precision"] for row in report["table"]} == {"int8"}
    assert [row["group"] for row in report["table"]][:2] == ["conv_pre", "ups.0"]
    quality = manifest.reports["quality"]
    assert set(quality["metrics"]) == {"snr", "mel", "stft", "pesq"}
    assert quality["examples"] == 4 and len(quality["per_example"]) == 4
    assert quality["calibration_overlap"] == 4  # calibrated on the default clips, measured there
    assert quality["verdict"].startswith(("ok", "collapsed"))
    assert 0.0 < report["size_ratio"] < 1.0


def test_streamed_int8_is_as_good_as_whole_int8(tiny_int8: Artifact, tiny_build: dict) -> None:
    """Streaming a quantized model can flip quantization steps (float rounding differs with the
    window length), but the streamed audio is as close to FP32 as the whole-utterance audio."""
    quantized = runtime.load(tiny_int8.path, threads=1)
    fp32 = runtime.load(tiny_build["simplify"].path, threads=1)
    task = tiny_build["ctx"].task
    inputs = task.inputs(tiny_build["ctx"].examples[1])
    reference = task.waveforms(fp32.run(inputs))[0]
    whole = task.waveforms(quantized.run(inputs))[0]
    streamed = np.concatenate(list(task.streamer(22 * 256 / 22050).stream(quantized, inputs)))
    assert abs(snr_db(reference, streamed) - snr_db(reference, whole)) < 0.5


def test_fp16_halves_weights_and_keeps_float32_io(speedy_cli, tiny_build: dict, tmp_path) -> None:
    out = tmp_path / "fp16"
    args = ("quantize", tiny_build["simplify"].path, "-o", out, "--precision", "fp16")
    code, stdout, err = speedy_cli(*args, "--keep-float", "conv_post")
    assert code == 0, err
    model = onnx.load(str(out / "model.onnx"))
    weights = {t.name: t.data_type for t in model.graph.initializer if t.name.endswith("weight")}
    assert weights.pop("conv_post.weight") == onnx.TensorProto.FLOAT  # kept float32
    assert weights and set(weights.values()) == {onnx.TensorProto.FLOAT16}
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    manifest = Artifact.open(out).manifest
    assert manifest.precision == "fp16"
    assert manifest.reports["quality"]["metrics"]["mel"] < 0.01
    assert "fp16" in stdout and "of the parent" in stdout


def test_mixed_meets_its_budget_and_inspect_shows_the_table(
    speedy_cli, tiny_build: dict, tmp_path
) -> None:
    out = tmp_path / "mixed"
    args = ("quantize", tiny_build["simplify"].path, "-o", out, "--budget", "mel<=0.15", *FAST)
    code, stdout, err = speedy_cli(*args)
    assert code == 0, err
    report = Artifact.open(out).manifest.reports
    quantize, quality = report["quantize"]["model"], report["quality"]
    assert quantize["budget"] == ["mel<=0.15"] and quality["metrics"]["mel"] <= 0.15
    small = quantize["small_groups"]  # under 1% of the MACs: float without measuring
    assert small == ["conv_post", "ups.3"]
    for row in quantize["table"]:
        assert (row["sensitivity"] is None) == (row["group"] in small)
    floats = sorted(set(quantize["float_groups"]) - set(small))
    chosen = [e for e in quantize["search"] if sorted(e["float_groups"]) == floats]
    assert chosen and chosen[0]["holds"] and chosen[0]["scores"]["mel"] <= 0.15
    assert "alone in INT8" in err and "mel alone in INT8" in stdout
    assert "no int8 kernel" in err  # ConvTranspose has no fused int8 kernel on ORT CPU

    code, stdout, _ = speedy_cli("inspect", out)
    assert code == 0 and '"precision": "int8+fp32"' in stdout and "alone in INT8" in stdout


def test_second_run_reuses_features_and_ranges(speedy_cli, tiny_build: dict, tmp_path) -> None:
    args = ("quantize", tiny_build["simplify"].path, "-o", tmp_path / "q", "--precision", "int8")
    code, _, err = speedy_cli(*args, *FAST)
    assert code == 0, err
    code, _, err = speedy_cli(*args, *FAST, "--force")
    assert code == 0, err
    assert "feature cache: 4 hit(s), 0 computed" in err
    assert "calibration ranges (mse): reused from cache" in err
    assert "4 of the 4 examples the quality was measured on are calibration examples" in err


def test_unmet_budget_is_an_error_with_the_numbers(speedy_cli, tiny_build: dict, tmp_path) -> None:
    out = tmp_path / "strict"
    args = ("--precision", "int8", "--budget", "snr>=150", "--method", "minmax", *FAST)
    code, _, err = speedy_cli("quantize", tiny_build["simplify"].path, "-o", out, *args)
    assert code != 0 and "Traceback" not in err
    assert "misses the quality budget" in err and "snr" in err and "needs snr>=150" in err
    assert not out.exists()


def test_dynamic_warns_for_conv_graphs(speedy_cli, tiny_build: dict, tmp_path) -> None:
    out = tmp_path / "dynamic"
    code, _, err = speedy_cli(
        "quantize", tiny_build["simplify"].path, "-o", out, "--precision", "dynamic"
    )
    assert code == 0, err
    assert "ConvInteger" in err and "slower than float" in err
    assert Artifact.open(out).manifest.precision == "int8-dynamic"


def test_run_picks_up_the_quantize_stage(tiny_build: dict, tmp_path: Path) -> None:
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path / "build"
    shutil.copytree(tiny_build["build"], build)  # export and simplify are reused from here
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["stages"] = ["export", "simplify", "quantize"]
    raw["quantize"] = {"precision": "int8", "method": "minmax", "calib_size": 2}
    path = tmp_path / "hifigan_tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    outcomes, _ = run_recipe(load_recipe(str(path)), build)
    assert [(o.stage, o.reused) for o in outcomes] == [
        ("torch", True),
        ("export", True),
        ("simplify", True),
        ("quantize", False),
    ]
    assert outcomes[-1].artifact.manifest.precision == "int8"
    outcomes, _ = run_recipe(load_recipe(str(path)), build)
    assert all(o.reused for o in outcomes)


def _quantize_with_plan(
    tiny_build: dict, out: Path, float_groups: list[str], budget: str = "mel<=0.15"
) -> Artifact:
    """Mixed quantization of the tiny model with a stored plan found under `budget`."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    options = {
        "budget": budget,
        "calib_size": 4,
        "float_weights": "fp32",
        "plan": {"budget": budget, "float_groups": float_groups},
    }
    return execute(make_stage("quantize", options), tiny_build["simplify"], out, tiny_build["ctx"])


def test_stored_plan_is_rebuilt_and_checked(tiny_build: dict, tmp_path: Path, capsys) -> None:
    """A plan that meets the budget is built as stored (no search) and verified on the clips."""
    plan = ["resblocks.0", "resblocks.1", "resblocks.2", "resblocks.3", "resblocks.4"]
    artifact = _quantize_with_plan(tiny_build, tmp_path / "stored", plan)
    report = artifact.manifest.reports["quantize"]["model"]
    assert report["plan"] == "stored" and set(plan) <= set(report["float_groups"])
    [checked] = report["search"]  # the one evaluation: the plan on the run's clips
    assert checked["holds"] and checked["scores"]["mel"] <= 0.15
    precision = {row["group"]: row["precision"] for row in report["table"]}
    assert {precision[g] for g in plan} == {"float (w32)"} and "int8" in precision.values()
    assert artifact.manifest.reports["quality"]["metrics"]["mel"] <= 0.15
    err = capsys.readouterr().err
    assert "stored plan (" in err and "searching" not in err


def test_plan_missing_the_budget_falls_back_to_search(
    tiny_build: dict, tmp_path: Path, capsys
) -> None:
    """Every group in INT8 misses the budget: a notice, then the full search finds a plan (for
    a budget this strict, nearly everything in float)."""
    artifact = _quantize_with_plan(tiny_build, tmp_path / "searched", [], "snr>=80")
    report = artifact.manifest.reports["quantize"]["model"]
    err = capsys.readouterr().err
    assert "notice: the stored plan misses the budget here (snr" in err and "searching" in err
    assert report["plan"] == "searched" and len(report["search"]) > 1
    assert not report["search"][0]["holds"]  # the search too starts from every group in INT8
    assert set(report["float_groups"]) - set(report["small_groups"])
    assert artifact.manifest.reports["quality"]["metrics"]["snr"] >= 80
