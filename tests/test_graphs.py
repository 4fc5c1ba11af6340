"""Artifacts of several graphs: the two-graph toy codec (encoder and decoder) through export,
simplify, quantize of one graph, compile, the runtime and bench."""

import json
from pathlib import Path

import numpy as np
import pytest

from speedy import runtime
from speedy.artifact import Artifact
from speedy.bench.command import bench
from speedy.bench.options import BenchOptions
from speedy.bench.results import BenchReport
from speedy.errors import SpeedyError
from tests.test_bench import one_clip  # noqa: F401 (a fixture)
from tests.test_cli_errors import assert_clean_error


def test_export_and_simplify_act_per_graph(codec_build: dict) -> None:
    for stage in ("export", "simplify"):
        manifest = codec_build[stage].manifest
        assert list(manifest.graphs) == ["encoder", "decoder"]
        assert {g: e.files for g, e in manifest.graphs.items()} == {
            "encoder": ["encoder.onnx"],
            "decoder": ["decoder.onnx"],
        }
        assert set(manifest.files) == {"encoder.onnx", "decoder.onnx"}
        assert manifest.model.task == "codec" and manifest.kind == "onnx"
        parity = manifest.reports["parity"]
        assert parity["passed"] and {c["graph"] for c in parity["cases"]} == {"encoder", "decoder"}
    # the decoder is checked on the codes the parent's encoder made of real audio
    decoder_cases = [c for c in parity["cases"] if c["graph"] == "decoder"]
    assert [c["sizes"] for c in decoder_cases] == [
        {"batch": 1, "frames": 17},
        {"batch": 2, "frames": 100},
    ]
    simplified = codec_build["simplify"].manifest.reports["simplify"]["graphs"]
    assert set(simplified) == {"encoder", "decoder"}


def test_the_runtime_offers_one_session_per_graph(codec_build: dict) -> None:
    model = runtime.load(codec_build["simplify"].path)
    assert model.graphs == ["encoder", "decoder"]
    audio = codec_build["ctx"].task.inputs(codec_build["ctx"].examples[0])
    codes = model["encoder"].run(audio)["codes"]
    assert codes.dtype == np.int64 and codes.shape == (1, 1, audio["audio"].shape[-1] // 256)
    decoded = model["decoder"].run({"codes": codes})["audio"]
    assert decoded.shape == audio["audio"].shape
    with pytest.raises(SpeedyError, match=r"has 2 graphs \(encoder, decoder\)") as error:
        model.run(audio)
    assert "model[NAME].run" in error.value.fix


@pytest.fixture(scope="module")
def decoder_int8(codec_build: dict, tmp_path_factory) -> Path:
    """The simplified toy codec with its decoder in INT8, calibrated on the codes its encoder
    makes of the default clips."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    options = {"graphs": ["decoder"], "precision": "int8", "method": "minmax", "calib_size": 4}
    out = tmp_path_factory.mktemp("q") / "int8"
    execute(make_stage("quantize", options), codec_build["simplify"], out, codec_build["ctx"])
    return out


def test_quantize_one_graph_only(codec_build: dict, decoder_int8: Path) -> None:
    parent, manifest = codec_build["simplify"].manifest, Artifact.open(decoder_int8).manifest
    assert manifest.graphs["decoder"].precision == "int8"
    assert manifest.graphs["encoder"].precision == "fp32"
    assert manifest.precision == "encoder:fp32,decoder:int8"
    assert manifest.files["encoder.onnx"] == parent.files["encoder.onnx"]  # left as it was
    assert manifest.files["decoder.onnx"] != parent.files["decoder.onnx"]
    report = manifest.reports["quantize"]
    assert list(report) == ["decoder"] and len(report["decoder"]["calibration"]["crops"]) == 4
    quality = manifest.reports["quality"]
    assert quality["metrics"]["codes"] == 1.0  # the encoder is untouched: the same codes
    assert quality["metrics"]["snr"] is not None


def test_compile_all_graphs_for_ort(decoder_int8: Path, codec_build: dict, tmp_path) -> None:
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    parent = Artifact.open(decoder_int8)
    stage = make_stage("compile", {"backend": "ort"})
    artifact = execute(stage, parent, tmp_path / "ort", codec_build["ctx"])
    graphs = artifact.manifest.graphs
    assert {g.runtime.backend for g in graphs.values()} == {"ort"}
    assert set(artifact.manifest.reports["compile"]) == {"encoder", "decoder"}
    assert artifact.manifest.reports["parity"]["passed"]
    task = codec_build["ctx"].task
    outputs = task.run(runtime.load(artifact.path), task.inputs(codec_build["ctx"].examples[1]))
    assert set(outputs) == {"codes", "audio"}


def test_compile_one_graph(codec_build: dict, tmp_path: Path) -> None:
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    stage = make_stage("compile", {"backend": "ort", "graphs": ["encoder"]})
    artifact = execute(stage, codec_build["simplify"], tmp_path / "o", codec_build["ctx"])
    graphs = artifact.manifest.graphs
    assert graphs["encoder"].runtime is not None and graphs["decoder"].runtime is None
    assert [c["graph"] for c in artifact.manifest.reports["parity"]["cases"]] == ["encoder"] * 2


def test_graphs_on_the_command_line(speedy_cli, codec_build: dict, tmp_path: Path) -> None:
    code, _stdout, err = speedy_cli(
        "quantize", codec_build["simplify"].path, "--graph", "decoder", "--precision", "fp16",
        "-o", tmp_path / "fp16",
    )  # fmt: skip
    assert code == 0, err
    graphs = Artifact.open(tmp_path / "fp16").manifest.graphs
    assert (graphs["encoder"].precision, graphs["decoder"].precision) == ("fp32", "fp16")
    code, _, err = speedy_cli(
        "simplify", codec_build["export"].path, "--graph", "decode", "-o", tmp_path / "o"
    )
    assert_clean_error(code, err, "--graph decode: the artifact has no such graph", "encoder")


def test_bench_runs_the_graphs_the_task_way(
    codec_build: dict,
    decoder_int8: Path,
    one_clip: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    artifacts = [codec_build["export"].path, codec_build["simplify"].path, decoder_int8]
    bench(
        BenchOptions(
            artifacts=[str(a) for a in artifacts],
            output=tmp_path / "report",
            data=one_clip,
            warmup=0,
            repeat=1,
            batches=(1, 2),
        )
    )
    report = BenchReport.model_validate_json((tmp_path / "report" / "bench.json").read_text())
    assert list(report.artifacts) == ["export", "simplify", "int8"]
    assert report.settings.chunk_frames is None  # the codec task has no streaming yet
    for name, result in report.artifacts.items():
        assert result.speed.rtf > 0 and set(result.speed.throughput) == {"1", "2"}, name
    assert report.artifacts["simplify"].quality["codes"] == 1.0
    assert report.artifacts["simplify"].quality["snr"] > 60
    assert report.artifacts["int8"].precision == "encoder:fp32,decoder:int8"
    assert report.source_quality is not None  # the clip itself, heard by DNSMOS
    written = json.loads((tmp_path / "report" / "bench.json").read_text())
    assert written["artifacts"]["int8"]["quality"]["codes"] == 1.0


def test_external_data_through_every_stage(codec_build: dict, tmp_path: Path, monkeypatch) -> None:
    """Weights past protobuf's limit (2 GB; here pretended to be 64 MB less than nothing) go to
    external data files, which every stage writes, digests and carries over."""
    from speedy import onnx_io
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    monkeypatch.setattr(onnx_io, "PROTOBUF_LIMIT", 1 << 26)
    ctx = codec_build["ctx"]
    stages = [
        ("export", {}, codec_build["torch"]),
        ("simplify", {}, None),
        ("quantize", {"graphs": ["decoder"], "precision": "int8", "calib_size": 2}, None),
        ("compile", {"backend": "ort"}, None),
    ]
    parent = None
    for name, options, source in stages:
        parent = execute(make_stage(name, options), source or parent, tmp_path / name, ctx)
        graphs = parent.manifest.graphs
        assert graphs["encoder"].files == ["encoder.onnx", "encoder.onnx.data"], name
        if name in ("export", "simplify"):  # ORT writes the (small) INT8 decoder in one file
            assert graphs["decoder"].files == ["decoder.onnx", "decoder.onnx.data"], name
        assert set(parent.manifest.files) == {f for g in graphs.values() for f in g.files}
        on_disk = {p.name for p in parent.path.iterdir()}
        assert on_disk == {*parent.manifest.files, "speedy.json"}, name  # nothing stray
    outputs = ctx.task.run(runtime.load(parent.path), ctx.task.inputs(ctx.examples[0]))
    assert outputs["audio"].shape[-1] == outputs["codes"].shape[-1] * 256


def test_folding_never_grows_the_weights() -> None:
    """A weight used as it is and transposed: folding the transpose would store it twice, so
    the stage simplifies again without folding constants that large; the outputs agree."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from speedy.stages.options import SimplifyOptions
    from speedy.stages.simplify import SimplifyStage

    weight = np.random.default_rng(3).standard_normal((64, 64)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "w"], ["a"]),
        helper.make_node("MatMul", ["x", "wt"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    simplified, report = SimplifyStage(SimplifyOptions())._simplified(model)
    assert report["fold_limit"] == weight.nbytes - 1
    assert report["after"]["weight_bytes"] == report["before"]["weight_bytes"] == weight.nbytes
    feeds = {"x": np.random.default_rng(4).standard_normal((5, 64)).astype(np.float32)}
    want = feeds["x"] @ weight + feeds["x"] @ weight.T
    got = ort.InferenceSession(simplified.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_folding_never_splits_a_weight_another_graph_keeps() -> None:
    """Two products of a stacked weight's slices: folding the slices frees the stack, unless
    another graph of the artifact holds it (the codec's codebooks: encoder and decoder), where
    it would store the weight twice."""
    from onnx import TensorProto, helper, numpy_helper

    from speedy.stages.options import SimplifyOptions
    from speedy.stages.simplify import SimplifyStage, _digests

    stack = np.random.default_rng(5).standard_normal((2, 64, 64)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])
    nodes = [
        *(helper.make_node("Gather", ["w", f"i{k}"], [f"w{k}"], axis=0) for k in range(2)),
        *(helper.make_node("MatMul", ["x", f"w{k}"], [f"p{k}"]) for k in range(2)),
        helper.make_node("Add", ["p0", "p1"], ["y"]),
    ]
    weights = [numpy_helper.from_array(stack, "w")]
    weights += [numpy_helper.from_array(np.array(k, np.int64), f"i{k}") for k in range(2)]
    graph = helper.make_graph(nodes, "g", [x], [y], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    stage = SimplifyStage(SimplifyOptions())
    alone, report = stage._simplified(model)
    assert "fold_limit" not in report and len(alone.graph.initializer) == 2  # the slices
    shared, report = stage._simplified(model, _digests(model))
    assert report["fold_limit"] == stack.nbytes // 2 - 1 and not report["grown_bytes"]
    assert stack.tobytes() in {t.raw_data for t in shared.graph.initializer}
