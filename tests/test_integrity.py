"""What an artifact is and whether it can be trusted: every file's digest, the checkpoint it
came from, an ONNX runtime that needs no torch, typed recipe sections, packaged calibration sets."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
import yaml

from speedy.artifact import Artifact
from speedy.errors import SpeedyError
from speedy.recipe import load_recipe
from tests.conftest import TINY_RECIPE, republish
from tests.test_cli_errors import assert_clean_error

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "speedy" / "data" / "clips" / "LJ001-0008.wav"


def test_onnx_runs_without_torch_or_the_families(tiny_build: dict) -> None:
    """A fresh interpreter opens and runs an ONNX artifact: neither torch nor speedy.families
    is imported (a server worker loads in a fraction of the old time)."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from speedy import runtime
        model = runtime.load({str(tiny_build["simplify"].path)!r})
        audio = model.run({{"mel": np.zeros((1, 80, 20), np.float32)}})["audio"]
        loaded = [m for m in sys.modules if m == "torch" or m.startswith("speedy.families")]
        print(json.dumps({{"samples": audio.shape[-1], "loaded": loaded}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(result.stdout.splitlines()[-1])
    assert found == {"samples": 20 * 256, "loaded": []}


def _copy(artifact: Artifact, out: Path) -> Path:
    return Path(shutil.copytree(artifact.path, out))


def test_a_tampered_model_file_is_refused(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "copy")
    model = onnx.load(str(copy / "model.onnx"))
    model.graph.initializer[0].raw_data = bytes(len(model.graph.initializer[0].raw_data))
    onnx.save(model, str(copy / "model.onnx"))  # a valid ONNX file, other weights
    out = tmp_path / "out.wav"
    code, _, err = speedy_cli("infer", copy, "-i", CLIP, "-o", out)
    assert_clean_error(code, err, "model.onnx", "was changed after it was written", "--no-verify")
    assert not out.exists()
    code, _, err = speedy_cli("infer", copy, "-i", CLIP, "-o", out, "--no-verify")
    assert code == 0 and out.is_file(), err  # the explicit flag loads it anyway


def test_a_missing_external_data_file_is_refused(
    speedy_cli, tiny_build: dict, tmp_path: Path
) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "copy")
    model = onnx.load(str(copy / "model.onnx"))
    onnx.save_model(
        model,
        str(copy / "model.onnx"),
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    manifest = Artifact.open(tiny_build["simplify"].path).manifest
    artifact = republish(copy, manifest, files=["model.onnx", "model.onnx.data"])
    assert set(artifact.manifest.files) == {"model.onnx", "model.onnx.data"}
    (copy / "model.onnx.data").unlink()
    code, _, err = speedy_cli("infer", copy, "-i", CLIP, "-o", tmp_path / "out.wav")
    assert_clean_error(
        code, err, "file model.onnx.data of artifact", "is missing", "copy the whole"
    )


def test_a_manifest_listing_a_file_outside_its_directory(tiny_build: dict, tmp_path: Path) -> None:
    copy = _copy(tiny_build["simplify"], tmp_path / "copy")
    raw = json.loads((copy / "speedy.json").read_text())
    digest = raw["files"].pop("model.onnx")
    raw["files"]["../model.onnx"] = digest
    raw["graphs"]["model"]["files"] = ["../model.onnx"]
    (copy / "speedy.json").write_text(json.dumps(raw))
    with pytest.raises(SpeedyError, match=r"lists a file outside its directory \(\.\./model"):
        Artifact.open(copy)


def test_the_checkpoint_is_recorded_and_shown(speedy_cli, tiny_build: dict, tmp_path) -> None:
    assert tiny_build["simplify"].manifest.model.checkpoint is None  # seeded weights
    checkpoint = tmp_path / "weights.pt"
    shutil.copy(tiny_build["torch"].file("model"), checkpoint)
    code, _, err = speedy_cli(
        "export", TINY_RECIPE, "--checkpoint", checkpoint, "--skip-parity", "-o", tmp_path / "e"
    )
    assert code == 0, err
    recorded = Artifact.open(tmp_path / "e").manifest.model.checkpoint
    assert recorded is not None and recorded.file == "weights.pt"
    assert recorded.digest.startswith("sha256:")
    code, out, _ = speedy_cli("inspect", tmp_path / "e")
    assert code == 0 and f"checkpoint: weights.pt ({recorded.digest[:19]}" in out
    assert "graph model: onnx, fp32, model.onnx" in out


def test_stage_sections_are_checked_even_when_not_run(tmp_path: Path) -> None:
    raw = yaml.safe_load(TINY_RECIPE.read_text())
    raw["stages"] = ["export"]
    for section, settings, phrase in [
        ("quantize", {"precision": "int3"}, "quantize.precision"),
        ("compile", {"backend": "aoti", "int8": True}, "--int8 applies to backends that read Q/DQ"),
        ("simplify", {"tool": "magic"}, "simplify.tool"),
    ]:
        path = tmp_path / f"{section}.yaml"
        path.write_text(yaml.safe_dump(raw | {section: settings}))
        with pytest.raises(SpeedyError, match=phrase) as error:
            load_recipe(str(path))
        assert str(path) in str(error.value)


def test_named_calibration_sets_load_from_a_regular_install(tmp_path: Path) -> None:
    """Installed as a wheel would install it (no source checkout beside it), speedy still
    finds its named calibration sets."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        import speedy
        from speedy.quantize.calibration import PACKAGED_SETS, known_sets
        assert speedy.__file__.startswith({str(target)!r}), speedy.__file__
        print(PACKAGED_SETS.is_dir(), " ".join(known_sets()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    shipped = {p.stem for p in (ROOT / "calibration").iterdir() if p.suffix in {".yaml", ".txt"}}
    assert result.stdout.split() == ["True", *sorted(shipped | {"default"})]
