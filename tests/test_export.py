"""`speedy export` and `speedy simplify`: exporters, weight norm, unsupported ops, parity gate."""

from pathlib import Path

import onnx
import pytest

from speedy.artifact import Artifact
from speedy.stages import export as export_stage
from tests.conftest import TINY_RECIPE
from tests.test_cli_errors import assert_clean_error


def test_torchscript_exporter_also_passes_parity(speedy_cli, tmp_path: Path) -> None:
    code, _, err = speedy_cli(
        "export", TINY_RECIPE, "--exporter", "torchscript", "-o", tmp_path / "ts"
    )
    assert code == 0, err
    manifest = Artifact.open(tmp_path / "ts").manifest
    assert manifest.reports["exporter"] == {"model": "torchscript"}
    assert manifest.reports["parity"]["passed"]


def test_dynamo_failure_falls_back_with_a_notice(speedy_cli, tmp_path: Path, monkeypatch) -> None:
    real_export = export_stage._export

    def dynamo_breaks(module, args, graph, dims, path, exporter, opset):
        if exporter == "dynamo":
            raise RuntimeError("simulated dynamo failure")
        real_export(module, args, graph, dims, path, exporter, opset)

    monkeypatch.setattr(export_stage, "_export", dynamo_breaks)
    code, _, err = speedy_cli("export", TINY_RECIPE, "-o", tmp_path / "fb")
    assert code == 0, err
    assert "falling back to torchscript" in err
    assert Artifact.open(tmp_path / "fb").manifest.reports["exporter"] == {"model": "torchscript"}


def test_weight_norm_is_removed_before_export(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    code, _, err = speedy_cli(
        "export",
        TINY_RECIPE,
        "--model",
        "tests.factories:tiny_with_weight_norm",
        "-o",
        tmp_path / "wn",
    )
    assert code == 0, err
    assert "removed weight norm from" in err
    with_norm = onnx.load(str(tmp_path / "wn" / "model.onnx"))
    plain = onnx.load(str(tiny_build["export"].file("model")))
    assert len(with_norm.graph.node) == len(plain.graph.node)
    assert (
        Artifact.open(tmp_path / "wn").manifest.model.factory
        == "tests.factories:tiny_with_weight_norm"
    )


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_unsupported_operator_names_op_module_and_fix(speedy_cli, tmp_path: Path, exporter: str):
    code, _, err = speedy_cli(
        "export",
        TINY_RECIPE,
        "--model",
        "tests.factories:with_unsupported_op",
        "--exporter",
        exporter,
        "-o",
        tmp_path / "bad",
    )
    assert_clean_error(
        code, err, "speedy_test.mystery", "'post' (Mystery)", "has no ONNX conversion"
    )
    assert not (tmp_path / "bad").exists()


def test_parity_failure_stops_export_unless_skipped(speedy_cli, tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(TINY_RECIPE.read_text().replace("atol: 1.0e-4", "atol: 1.0e-12"))
    code, _, err = speedy_cli("export", strict, "-o", tmp_path / "out")
    assert_clean_error(code, err, "differs from its parent", "--skip-parity")
    assert not (tmp_path / "out").exists()
    code, _, err = speedy_cli("export", strict, "--skip-parity", "-o", tmp_path / "out")
    assert code == 0 and "parity check skipped" in err
    assert Artifact.open(tmp_path / "out").manifest.reports["parity"] is None


@pytest.mark.parametrize("tool", ["onnxsim", "ort"])
def test_other_simplifiers(speedy_cli, tiny_build: dict, tmp_path: Path, tool: str) -> None:
    code, out, err = speedy_cli(
        "simplify", tiny_build["export"].path, "--tool", tool, "-o", tmp_path / tool
    )
    assert code == 0, err
    report = Artifact.open(tmp_path / tool).manifest.reports
    assert report["simplify"]["tool"] == tool and report["parity"]["passed"]
    assert "nodes" in out
