"""Artifacts: manifests with I/O, dims, audio spec, lineage and reports; atomic and confined."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from speedy import onnx_io
from speedy.artifact import MANIFEST, Artifact
from speedy.errors import SpeedyError
from speedy.outputs import atomic_dir


def test_manifest_records_what_the_stage_did(tiny_build: dict) -> None:
    torch_art, exported, simplified = (tiny_build[k] for k in ("torch", "export", "simplify"))
    manifest = exported.manifest
    assert manifest.kind == "onnx" and manifest.precision == "fp32"
    assert list(manifest.graphs) == ["model"] and manifest.graphs["model"].files == ["model.onnx"]
    assert manifest.graphs["model"].inputs[0].shape == ["batch", 80, "frames"]
    assert manifest.graphs["model"].outputs[0].shape == ["batch", 1, "samples"]
    assert manifest.model.task == "vocoder" and manifest.model.checkpoint is None
    assert manifest.model.dims["frames"].max == 2048
    assert manifest.model.audio.hop_length == 256
    assert manifest.lineage.parent_digest == torch_art.manifest.digest
    assert simplified.manifest.lineage.parent_digest == manifest.digest
    assert {"torch", "onnx", "onnxruntime"} <= manifest.lineage.tools.keys()
    assert manifest.lineage.options["opset"] == 18
    parity = manifest.reports["parity"]
    assert parity["passed"] and len(parity["cases"]) == 3
    assert simplified.manifest.reports["simplify"]["graphs"]["model"]["before"]["nodes"] >= 1
    assert set(manifest.files) == {"model.onnx"} and manifest.files["model.onnx"].startswith("sha")


def test_onnx_graph_keeps_symbolic_dims_and_metadata(tiny_build: dict) -> None:
    for stage in ("export", "simplify"):
        model = onnx.load(str(tiny_build[stage].file("model")))
        dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        out = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 80, "frames"] and out == ["batch", 1, "samples"]
        keys = {"speedy.recipe", "speedy.graph", "speedy.audio"}
        assert {p.key for p in model.metadata_props} == keys


def test_atomic_dir_removes_partial_output_on_error(tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    with pytest.raises(RuntimeError), atomic_dir(out, force=False) as work:
        (work / "model.onnx").write_text("half")
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_old_output_until_the_new_one_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "artifact"
    out.mkdir()
    old = '{"files": {}}'  # speedy's own output: its marker lists every other file
    (out / MANIFEST).write_text(old)
    with pytest.raises(RuntimeError), atomic_dir(out, force=True) as work:
        (work / MANIFEST).write_text("new")
        raise RuntimeError
    assert (out / MANIFEST).read_text() == old
    with atomic_dir(out, force=True) as work:
        (work / MANIFEST).write_text("new")
        (work / "model.onnx").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", MANIFEST]


def _model_with_external_weight(directory: Path, location: str) -> Path:
    weight = numpy_helper.from_array(np.ones((4,), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.external_data.add(key="location", value=location)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])],
        [weight],
    )
    path = directory / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def test_external_data_outside_the_model_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path = _model_with_external_weight(model_dir, "../secret.bin")
    with pytest.raises(SpeedyError, match="points outside the model directory"):
        onnx_io.load_onnx(path)


def test_large_models_are_saved_with_external_data(tiny_build: dict, tmp_path: Path, monkeypatch):
    model = onnx_io.load_onnx(tiny_build["export"].file("model"))
    monkeypatch.setattr(onnx_io, "PROTOBUF_LIMIT", 1 << 26)  # pretend the 2 GB limit is tiny
    files = onnx_io.save_onnx(model, tmp_path / "model.onnx")
    assert [f.name for f in files] == ["model.onnx", "model.onnx.data"]
    reloaded = onnx_io.load_onnx(files[0])
    assert len(reloaded.graph.initializer) == len(model.graph.initializer)


def test_opening_a_manifest_from_another_format_version(tiny_build: dict, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    text = (tiny_build["export"].path / "speedy.json").read_text()
    (copy / "speedy.json").write_text(text.replace('"format_version": 2', '"format_version": 1'))
    with pytest.raises(SpeedyError, match="manifest format 1, this speedy reads 2") as error:
        Artifact.open(copy)
    assert "rebuild it" in error.value.fix
