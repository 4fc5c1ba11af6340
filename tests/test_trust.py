"""Trust boundaries, second pass (issue 31): graph names are plain names, NaN never passes,
code-bearing artifacts load only when trusted, only speedy's own outputs and leftovers are ever
replaced or removed, signals stop a long graph call, and manifests carry only safe settings."""

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from speedy.artifact import MANIFEST, Artifact, Manifest
from speedy.audio.io import write_audio
from speedy.backends.aoti.section import AotiSection
from speedy.bench import gate
from speedy.errors import SpeedyError
from speedy.outputs import atomic_dir, check_file_writable
from speedy.parity import max_abs_error
from speedy.scratch import claim
from speedy.tasks.generic import tensor_error
from tests.conftest import republish
from tests.test_cli_errors import assert_clean_error
from tests.test_hostile import _dead_pid, _mel
from tests.test_integrity import _copy


def _generic_model(path: Path, nodes: list, inputs: list, initializers=()) -> Path:
    """A one-output ONNX file `y` over float input `x` (and `inputs`), opset 17."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]), *inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _imported(speedy_cli, model: Path, out: Path, *fills: str) -> Path:
    args = [f"--fill={rule}" for rule in ("x=normal", *fills)]
    code, _, err = speedy_cli("import", model, "-o", out, "--shapes", "n:1,4,8", *args)
    assert code == 0, err
    return out


# 1. A graph name is a path.
@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "a/b", "model\x1b[2J", ""])
def test_graph_names_are_plain_names(
    speedy_cli, tiny_build: dict, tmp_path: Path, name: str
) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "art")
    manifest = Artifact.open(copy).manifest
    raw = json.loads(manifest.model_dump_json())
    raw["graphs"] = {name: raw["graphs"]["model"]}
    (copy / MANIFEST).write_text(json.dumps(raw))
    victim = tmp_path / "escaped.onnx"
    victim.write_bytes(b"the user's model")
    code, _, err = speedy_cli("compile", copy, "--backend", "ort", "-o", tmp_path / "out")
    assert_clean_error(code, err, "is not a plain name")
    assert victim.read_bytes() == b"the user's model" and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="is not a plain name"):  # nor can one be written
        Manifest.model_validate(raw)


# 2. NaN passes parity and quality.
def test_nan_on_both_sides_fails_parity_and_quality() -> None:
    both = np.array([0.5, np.nan], np.float32)
    assert max_abs_error(both, both.copy()) == math.inf
    infinite = np.array([np.inf, 1.0], np.float32)
    assert max_abs_error(infinite, infinite.copy()) == math.inf
    figures = tensor_error({"y": both}, {"y": both.copy()}, ["y"])
    assert figures["tensor_snr"] < 0 and figures["max_error"] == math.inf


def test_a_nan_model_fails_parity_in_a_stage(speedy_cli, tmp_path: Path) -> None:
    nan = numpy_helper.from_array(np.array([np.nan], np.float32), "nan")
    model = _generic_model(tmp_path / "nan.onnx", [helper.make_node("Add", ["x", "nan"], ["y"])],
                           [], [nan])  # fmt: skip
    imported = _imported(speedy_cli, model, tmp_path / "imported")
    code, _, err = speedy_cli("simplify", imported, "-o", tmp_path / "simple")
    assert_clean_error(code, err, "differs from its parent", "inf")
    assert not (tmp_path / "simple").exists()


def test_a_torch_model_with_nan_weights_fails_export(
    speedy_cli, tiny_build: dict, tmp_path: Path
) -> None:
    import torch

    from speedy.families.base import read_state_dict
    from tests.conftest import TINY_RECIPE

    network = read_state_dict(tiny_build["torch"].file("model"))  # the tiny recipe's weights
    state = network.get("generator", network)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    checkpoint = tmp_path / "nan.pt"
    torch.save(network, checkpoint)
    out = tmp_path / "onnx"
    code, _, err = speedy_cli("export", TINY_RECIPE, "--checkpoint", checkpoint, "-o", out)
    assert_clean_error(code, err, "differs from its parent")
    assert not out.exists()


# 3. An AOTInductor package runs native code when loaded.
def test_code_bearing_artifacts_load_only_when_trusted(
    speedy_cli, tiny_build: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPEEDY_TRUST_CODE", raising=False)
    copy = _copy(tiny_build["torch"], tmp_path / "pt2")
    for file in list(copy.iterdir()):
        if file.name != MANIFEST:
            file.unlink()
    (copy / "model.pt2").write_bytes(b"PK\x03\x04 a crafted package")
    manifest = Artifact.open(tiny_build["torch"].path).manifest
    section = AotiSection(device="cpu", torch="2.13.0", host_cpu="x")
    republish(copy, manifest, kind="aoti", files=["model.pt2"], runtime=section)
    mel = _mel(tiny_build, tmp_path / "mel.npy")
    code, _, err = speedy_cli("infer", copy, "-i", mel, "-o", tmp_path / "a.wav")
    assert_clean_error(code, err, "AOTInductor package", "native code", "--trust")
    code, _, err = speedy_cli("infer", copy, "-i", mel, "-o", tmp_path / "a.wav", "--trust")
    assert code != 0 and "--trust" not in err  # past the gate: the crafted file fails to load
    assert not (tmp_path / "a.wav").exists()


# 4. The sweep deletes user files.
def test_the_sweep_removes_only_what_speedy_claimed(tmp_path: Path) -> None:
    dead = _dead_pid()
    users = [tmp_path / ".out.2024.notes", tmp_path / f".out.{dead}-backup"]
    users[0].write_text("notes")
    users[1].mkdir()
    unclaimed = tmp_path / f".out.{dead}.ab.partial"  # speedy's name, no claim: kept
    unclaimed.mkdir()
    (unclaimed / "thesis.tex").write_text("mine")
    copied = tmp_path / f".out.{dead}.cd.partial"  # a claim made for another directory
    copied.mkdir()
    claim(copied, dead)
    copied.rename(tmp_path / f".out.{dead}.ef.partial")
    abandoned = tmp_path / f".out.{dead}.gh.partial"
    abandoned.mkdir()
    claim(abandoned, dead)
    with atomic_dir(tmp_path / "out", force=False) as work:
        (work / MANIFEST).write_text("{}")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"out", *(p.name for p in users), unclaimed.name, f".out.{dead}.ef.partial"}


# 5. --force trusts any speedy.json; file outputs.
def test_force_keeps_a_directory_speedy_cannot_prove_it_wrote(
    speedy_cli, tiny_build: dict, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("alias ll='ls -l'")
    (home / "thesis.tex").write_text("chapter 1")
    (home / MANIFEST).write_text("{}")
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", home, "--force")
    assert_clean_error(code, err, "cannot prove it wrote it", "lists no files")
    assert sorted(p.name for p in home.iterdir()) == [".bashrc", MANIFEST, "thesis.tex"]
    out = tmp_path / "simple"
    assert speedy_cli("simplify", tiny_build["export"].path, "-o", out)[0] == 0
    (out / "notes.txt").write_text("added by hand")
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", out, "--force")
    assert_clean_error(code, err, "notes.txt, which its speedy.json does not list")
    (out / "notes.txt").unlink()
    (out / "model.onnx").write_bytes(b"edited")
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", out, "--force")
    assert_clean_error(code, err, "model.onnx changed since speedy wrote it")
    shutil.rmtree(out)
    assert speedy_cli("simplify", tiny_build["export"].path, "-o", out)[0] == 0
    assert speedy_cli("simplify", tiny_build["export"].path, "-o", out, "--force")[0] == 0


def test_force_replaces_a_file_only_if_speedy_wrote_it(
    speedy_cli, tiny_build: dict, tmp_path: Path
) -> None:
    mel = _mel(tiny_build, tmp_path / "mel.npy")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    infer = ("infer", tiny_build["simplify"].path, "-i", mel, "-o", notes)
    code, _, err = speedy_cli(*infer, "--force")
    assert_clean_error(code, err, "speedy did not write it", "--force-file")
    assert notes.read_text() == "my notes"
    assert speedy_cli(*infer, "--force-file")[0] == 0  # the user said so
    assert notes.read_bytes()[:4] == b"RIFF"
    wav = tmp_path / "out.wav"
    write_audio(wav, np.zeros(100, np.float32), 22050)  # speedy's own WAV: --force will do
    assert speedy_cli("infer", tiny_build["simplify"].path, "-i", mel, "-o", wav, "--force")[0] == 0


def test_a_baseline_is_replaced_only_if_it_is_one(tmp_path: Path) -> None:
    user = tmp_path / "user.json"
    user.write_text('{"format": "mine"}')
    with pytest.raises(SpeedyError, match="speedy did not write it"):
        check_file_writable(user, True, False, gate.is_baseline)
    check_file_writable(user, True, True, gate.is_baseline)  # --force-file
    user.write_text(json.dumps({"format": gate.BASELINE_FORMAT}))
    check_file_writable(user, True, False, gate.is_baseline)


# 6. --force onto a symbolic link.
def test_force_onto_a_linked_output_replaces_its_target(
    speedy_cli, tiny_build: dict, tmp_path: Path
) -> None:
    target, link = tmp_path / "elsewhere" / "simple", tmp_path / "simple"
    assert speedy_cli("simplify", tiny_build["export"].path, "-o", target)[0] == 0
    link.symlink_to(target, target_is_directory=True)
    code, _, err = speedy_cli("simplify", tiny_build["export"].path, "-o", link, "--force")
    assert code == 0, err
    assert link.is_symlink() and Artifact.open(link).manifest.graphs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "simple"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["simple"]


# 7. Signals wait for a long graph call.
@pytest.mark.slow
def test_a_signal_stops_a_long_graph_call(speedy_cli, tmp_path: Path) -> None:
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, ["n"])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )  # fmt: skip
    loop = helper.make_node("Loop", ["count", "", "x"], ["y"], body=body)
    count = helper.make_tensor_value_info("count", TensorProto.INT64, [])
    model = _generic_model(tmp_path / "loop.onnx", [loop], [count])
    imported = _imported(speedy_cli, model, tmp_path / "loop", "count=value:3")
    example = tmp_path / "forever.npz"
    np.savez(example, x=np.zeros(4, np.float32), count=np.array(10**15, np.int64))
    command = [sys.executable, "-m", "speedy", "infer", imported, "-i", example, "-o",
               tmp_path / "y.wav", "--no-verify"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(10)  # start-up (imports), then well inside the Loop
        assert process.poll() is None, process.communicate()[1]
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert time.monotonic() - start < 2.0
    finally:
        process.kill()
    assert process.returncode == -signal.SIGTERM and "interrupted" in err


# 11. Settings from the manifest that reach native code; the manifest's own digest.
@pytest.mark.parametrize(
    ("provider", "phrase"),
    [
        (["TensorrtExecutionProvider", {"trt_extra_plugin_lib_paths": "/tmp/evil.so"}],
         "'trt_extra_plugin_lib_paths' is not one a manifest may set"),
        (["TensorrtExecutionProvider", {"trt_engine_cache_path": "/etc"}], "is not one"),
        (["EvilExecutionProvider", {}], "unknown provider"),
    ],
)  # fmt: skip
def test_manifest_provider_options_are_limited(
    tiny_build: dict, tmp_path: Path, provider: list, phrase: str
) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "art")
    raw = json.loads((copy / MANIFEST).read_text())
    settings = {"graph_optimization_level": "all", "providers": [provider]}
    raw["graphs"]["model"]["runtime"] = {"backend": "ort", "settings": settings}
    (copy / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(SpeedyError, match=phrase):
        Artifact.open(copy)


def test_the_manifest_digest_is_checked(tiny_build: dict, tmp_path: Path) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "art")
    raw = json.loads((copy / MANIFEST).read_text())
    raw["digest"] = "sha256:" + "0" * 64  # as another artifact's, to be reused in its place
    (copy / MANIFEST).write_text(json.dumps(raw))
    for verify in (True, False):
        with pytest.raises(SpeedyError, match="its digest is not that of the files it lists"):
            Artifact.open(copy, verify=verify)
