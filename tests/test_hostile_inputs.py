"""Hostile inputs, case by case (issue 31, items 8-10): what was an "unexpected" error is one
clear line, names from files print as they are (no terminal escapes, no rich markup), and
values that are not finite as the model takes them are refused where they come in."""

import io
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import yaml
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console

from speedy.artifact import MANIFEST, Artifact, directory_files, files_digest, write_manifest
from speedy.bench.command import _rich
from speedy.bench.report import Table
from speedy.errors import SpeedyError
from speedy.onnx_io import load_onnx
from speedy.recipe import load_recipe
from speedy.stages.base import StageContext, execute
from speedy.stages.load import LoadStage
from speedy.stages.options import LoadOptions
from speedy.tasks import task_for
from tests.conftest import SAMBERT_TINY, TINY_RECIPE, republish
from tests.test_cli_errors import assert_clean_error
from tests.test_integrity import _copy

DEEP = 100_000  # past Python's recursion limit
HOSTILE = "x\x1b[31m[bold]"  # a terminal escape and rich markup in one name


def tiny_onnx(path: Path, weight: TensorProto | None = None, name: str = "x") -> Path:
    """A one-input graph: `name` [n, 4] plus the sum of `weight` (default: a 4x4 of ones)."""
    weight = weight or numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [
        helper.make_node("ReduceSum", [weight.name], ["s"], keepdims=0),
        helper.make_node("Add", [name, "s"], ["y"]),
    ]
    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def imported(speedy_cli, tmp_path: Path) -> Path:
    """A generic artifact of `tiny_onnx`, made by `speedy import`."""
    out = tmp_path / "imported"
    code, _, err = speedy_cli("import", tiny_onnx(tmp_path / "src" / "m.onnx"), "-o", out,
                              "--shapes", "n:1,2,4")  # fmt: skip
    assert code == 0, err
    return out


def mel(tiny_build: dict, path: Path) -> Path:
    np.save(path, tiny_build["ctx"].examples[0][:, :40])
    return path


def infer(speedy_cli, tiny_build: dict, source: Path, out: Path) -> tuple[int, str, str]:
    return speedy_cli("infer", tiny_build["simplify"].path, "-i", source, "-o", out)


# 8. "Unexpected" errors.
@pytest.mark.parametrize(
    ("depth", "phrase"), [(100, "nests deeper than 64 levels"), (DEEP, "is not JSON")]
)
def test_a_deeply_nested_manifest(speedy_cli, tmp_path: Path, depth: int, phrase: str) -> None:
    nested = "[" * depth + "]" * depth
    (tmp_path / MANIFEST).write_text(f'{{"format_version": 2, "reports": {nested}}}')
    code, _, err = speedy_cli("inspect", tmp_path)
    assert_clean_error(code, err, f"{tmp_path / MANIFEST} {phrase}", "rebuild it")


@pytest.mark.parametrize("depth", [100, DEEP])
@pytest.mark.parametrize("where", ["recipe", "--io"])
def test_deeply_nested_yaml(speedy_cli, tmp_path: Path, depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    if where == "recipe":
        (tmp_path / "r.yaml").write_text(f"name: x\nnetwork: {nested}\n")
        code, _, err = speedy_cli("run", tmp_path / "r.yaml", "--build-dir", tmp_path / "b")
    else:
        code, _, err = speedy_cli("export", "--model", "m:f", "--io", nested, "-o", tmp_path / "o")
    assert_clean_error(code, err, "nests lists and mappings deeper than 64 levels")


def test_quantizing_a_nan_parent(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "nan")
    model = onnx.load(str(copy / "model.onnx"))
    weight = next(t for t in model.graph.initializer if numpy_helper.to_array(t).size > 100)
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(copy / "model.onnx"))
    republish(copy, Artifact.open(copy, verify=False).manifest)
    code, _, err = speedy_cli("quantize", copy, "-o", tmp_path / "q", "--precision", "int8")
    assert_clean_error(code, err, "the parent's output 'audio' holds", "NaN or infinite")
    assert not (tmp_path / "q").exists()


def test_compile_of_external_tensors_all_under_1_kb(speedy_cli, tmp_path: Path) -> None:
    art = imported(speedy_cli, tmp_path)
    model = onnx.load(str(art / "model.onnx"))
    onnx.save_model(model, str(art / "model.onnx"), save_as_external_data=True,
                    location="w.bin", size_threshold=0)  # fmt: skip
    republish(art, Artifact.open(art, verify=False).manifest, files=["model.onnx", "w.bin"])
    code, _, err = speedy_cli("compile", art, "--backend", "ort", "-o", tmp_path / "c")
    assert code == 0, err
    assert Artifact.open(tmp_path / "c").manifest.graphs["model"].files == ["model.onnx"]


@pytest.mark.parametrize("dims", [[2**20, 2**20], [1000, 1000]])
@pytest.mark.parametrize("storage", ["raw_data", "float_data"])
def test_an_inline_tensor_declaring_huge_dims(
    speedy_cli, tmp_path: Path, dims: list[int], storage: str
) -> None:
    art = imported(speedy_cli, tmp_path)
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    if storage == "raw_data":
        weight.raw_data = bytes(16)
    else:
        weight.float_data.extend([1.0] * 4)
    tiny_onnx(art / "model.onnx", weight)
    republish(art, Artifact.open(art, verify=False).manifest)
    code, _, err = speedy_cli("simplify", art, "-o", tmp_path / "s")
    assert_clean_error(code, err, "tensor 'w' is malformed", "is too small for the declared shape")


def test_an_aoti_graph_without_its_runtime_section(
    speedy_cli, tiny_build: dict, tmp_path: Path
) -> None:
    copy = _copy(tiny_build["torch"], tmp_path / "aoti")
    (copy / "model.pt2").write_bytes(b"not a package")
    manifest = Artifact.open(tiny_build["torch"].path).manifest
    graphs = {
        n: g.model_copy(update={"kind": "aoti", "files": ["model.pt2"], "runtime": None})
        for n, g in manifest.graphs.items()
    }
    files = directory_files(copy)
    update = {"graphs": graphs, "files": files, "digest": files_digest(files)}
    write_manifest(copy, manifest.model_copy(update=update))
    source = mel(tiny_build, tmp_path / "m.npy")
    code, _, err = speedy_cli("infer", copy, "-i", source, "-o", tmp_path / "o.wav")
    assert_clean_error(code, err, "kind aoti needs a `runtime` section of backend aoti")


@pytest.mark.parametrize("in_cwd", [False, True])
def test_a_checkpoint_in_a_missing_subpackage(
    speedy_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_cwd: bool
) -> None:
    """`package:pkg.sub/x.pt` looks for the package without importing `pkg` (which runs its
    code), also where a same-named package sits in the current directory (`python -m`)."""
    marker = tmp_path / "imported"
    if in_cwd:
        (tmp_path / "speedy_probe" / "__init__.py").parent.mkdir()
        (tmp_path / "speedy_probe" / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))
    raw = yaml.safe_load(TINY_RECIPE.read_text()) | {"checkpoint": "package:speedy_probe.sub/x.pt"}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    code, _, err = speedy_cli("export", tmp_path / "r.yaml", "-o", tmp_path / "o")
    assert_clean_error(code, err, "package 'speedy_probe.sub' is not installed", "speedy_probe'")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("rule", "phrase"),
    [
        ("int:0," + "1" * 21, "makes no float32 values (high is out of bounds for int64)"),
        ("value:1e999", "reaches beyond float32"),  # 10. infinity passed the checks
        ("value:1e39", "reaches beyond float32"),
        ("uniform:5,1", "makes no float32 values (high - low < 0)"),
    ],
)
def test_fill_rules_that_make_no_values(speedy_cli, tmp_path: Path, rule: str, phrase: str):
    model = tiny_onnx(tmp_path / "m.onnx")
    code, _, err = speedy_cli("import", model, "-o", tmp_path / "o", "--shapes", "n:1,2,4",
                              "--fill", f"x={rule}")  # fmt: skip
    assert_clean_error(code, err, f"--fill x: '{rule}' {phrase}")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["[/]x.wav", "[bold red]x.wav", "e\x1b[2Jx.wav"])
def test_markup_and_escapes_in_an_output_name_print_as_they_are(
    speedy_cli, tiny_build: dict, tmp_path: Path, name: str
) -> None:
    out = tmp_path / name
    code, stdout, err = infer(speedy_cli, tiny_build, mel(tiny_build, tmp_path / "m.npy"), out)
    assert code == 0, err
    assert out.is_file()
    spelled = str(tmp_path / name).replace("\x1b", "\\x1b")
    assert f"wrote {spelled} (" in stdout
    assert "\x1b" not in stdout


# 9. Escape codes on success paths.
def test_names_from_a_model_print_as_they_are(speedy_cli, tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m\x1b[2J.onnx", name=HOSTILE)
    art = tmp_path / "art"
    code, stdout, err = speedy_cli("import", model, "-o", art, "--shapes", "n:1,2,4")
    assert code == 0, err
    assert "x\\x1b[31m[bold]: float32[n, 4]" in stdout
    code, stdout, err = speedy_cli("inspect", art)
    assert code == 0, err
    assert "source: m\\x1b[2J.onnx (sha256:" in stdout
    assert "\x1b" not in stdout


def test_bench_tables_print_artifact_names_as_they_are() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(_rich(Table(f"vs {HOSTILE}", ["artifact", "ms"], [[f"[/]{HOSTILE}", "1.0"]])))
    printed = console.file.getvalue()
    assert "vs x\\x1b[31m[bold]" in printed and "[/]x\\x1b[31m[bold]" in printed
    assert "\x1b" not in printed


# 10. Values that are finite but overflow, and the smaller messages.
@pytest.mark.parametrize(
    ("write", "phrase"),
    [
        (
            lambda p: sf.write(
                p.with_suffix(".wav"), np.full(22050, 3e38, np.float32), 22050, subtype="FLOAT"
            ),
            "x.wav, through the front end, holds",
        ),
        (lambda p: np.save(p, np.full((80, 40), 1e300)), "x.npy holds 3200 NaN or infinite value"),
    ],
    ids=["3e38-wav", "1e300-npy"],
)
def test_values_that_overflow_float32(speedy_cli, tiny_build: dict, tmp_path: Path, write, phrase):
    write(tmp_path / "x.npy")
    source = next(tmp_path.glob("x.*"))
    code, _, err = infer(speedy_cli, tiny_build, source, tmp_path / "o.wav")
    assert_clean_error(code, err, phrase, "as float32", "within float32's range")
    assert not (tmp_path / "o.wav").exists()


def test_npz_values_that_overflow_the_input_dtype(speedy_cli, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "e.npz", x=np.full((2, 4), 1e300))
    code, _, err = speedy_cli("import", tiny_onnx(tmp_path / "m.onnx"), "-o", tmp_path / "o",
                              "--data", tmp_path / "data")  # fmt: skip
    assert_clean_error(
        code, err, "e.npz: array 'x' holds 8 NaN or infinite value(s) of 8 as float32"
    )


@pytest.fixture(scope="module")
def sambert_torch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Sambert's torch artifact alone (no export: seconds)."""
    pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
    spec = load_recipe(str(SAMBERT_TINY)).model_spec()
    out = tmp_path_factory.mktemp("sambert") / "torch"
    execute(LoadStage(LoadOptions()), None, out, StageContext(spec, task_for(spec), examples=[]))
    return out


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        ("nan", "pitch_shift: Input should be a finite number"),
        ("inf", "pitch_shift: Input should be a finite number"),
        ("1e39", "pitch_shift: Input should be less than or equal to 12"),
    ],
)
def test_a_pitch_shift_out_of_reach(
    speedy_cli, sambert_torch: Path, tiny_build: dict, tmp_path: Path, shift: str, message: str
) -> None:
    code, _, err = speedy_cli(
        "synth", "--acoustic", sambert_torch, "--vocoder", tiny_build["torch"].path,
        "--text", "hello", "--pitch-shift", shift, "-o", tmp_path / "o.wav",
    )  # fmt: skip
    assert_clean_error(code, err, message)


def test_a_length_field_past_the_data_file(tmp_path: Path) -> None:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "w.bin", "offset": "0", "length": "8"}.items():
        weight.external_data.add(key=key, value=value)
    (tmp_path / "w.bin").write_bytes(bytes(4))
    model = tiny_onnx(tmp_path / "model.onnx", weight)
    with pytest.raises(SpeedyError, match=r"declares 8 bytes \(its length field\), .* holds 4 "):
        load_onnx(model)


def test_a_pipe_as_input(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.npy")
    code, _, err = infer(speedy_cli, tiny_build, tmp_path / "pipe.npy", tmp_path / "o.wav")
    assert_clean_error(code, err, "pipe.npy is neither a regular file nor a directory")


def test_an_npy_header_declaring_more_than_the_file(speedy_cli, tiny_build: dict, tmp_path):
    path = tmp_path / "huge.npy"
    with path.open("wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (80, 100_000_000)}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(64))
    code, _, err = infer(speedy_cli, tiny_build, path, tmp_path / "o.wav")
    assert_clean_error(code, err, "declares float32 values of shape (80, 100000000)", "holds 64")
    assert "memory" not in err


@pytest.mark.parametrize("where", ["recipe", "--io"])
def test_a_yaml_key_given_twice(speedy_cli, tmp_path: Path, where: str) -> None:
    if where == "recipe":
        (tmp_path / "r.yaml").write_text(TINY_RECIPE.read_text() + "name: other\n")
        code, _, err = speedy_cli("run", tmp_path / "r.yaml", "--build-dir", tmp_path / "b")
    else:
        spec = "{inputs: [{name: x, dtype: float32, shape: [4]}], outputs: [y], outputs: [z]}"
        code, _, err = speedy_cli("export", "--model", "m:f", "--io", spec, "-o", tmp_path / "o")
    key = "name" if where == "recipe" else "outputs"
    assert_clean_error(code, err, f"key '{key}' is given twice")
