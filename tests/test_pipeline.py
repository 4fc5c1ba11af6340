"""`speedy run`: stages chained into build/<recipe>/<stage>/, unchanged stages reused."""

import json
from pathlib import Path

import pytest

from speedy import __version__
from speedy.artifact import Artifact, tool_versions
from speedy.identity import code_version, source_digest
from speedy.pipeline import make_stage
from speedy.stages import base
from tests.conftest import TINY_RECIPE


@pytest.mark.slow
def test_run_builds_reuses_and_rebuilds_what_changed(
    speedy_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run builds every stage; a second reuses them; a changed stage option rebuilds
    that stage only; a newer tool changes every stage's fingerprint (so a run rebuilds them)."""
    build = tmp_path / "build"
    code, out, err = speedy_cli("run", TINY_RECIPE, "--build-dir", build)
    assert code == 0, err
    for stage in ("torch", "export", "simplify"):
        assert (build / "hifigan_tiny" / stage / "speedy.json").is_file()
    summary = json.loads((build / "hifigan_tiny" / "summary.json").read_text())
    assert set(summary["artifacts"]) == {"torch", "export", "simplify"}
    assert all(row["rtf"] > 0 for row in summary["artifacts"].values())
    assert "RTF" in out and "speed-up" in out and "PESQ-WB vs torch" in out and "DNSMOS" in out
    rows = summary["artifacts"]
    assert rows["torch"]["pesq_vs_first"] is None and rows["torch"]["sounds"] == "reference"
    assert rows["simplify"]["pesq_vs_first"] > 4.5  # parity-checked: the same audio
    simplify = rows["simplify"]  # seeded weights: noise, which no verdict may call the same
    assert rows["torch"]["dnsmos_ovrl"] < 2.0 and simplify["dnsmos_ovrl"] < 2.0
    assert simplify["sounds"].startswith("not speech-like (DNSMOS ")
    assert "seeded weights" in simplify["sounds"] and "sounds the same" not in out
    noise = summary["noise_at_equal_snr"]  # white noise as far from torch as simplify is: as
    assert noise["snr_db"] > 60 and noise["pesq"] >= 4.5  # high a PESQ (a row of the table)
    assert all(1 < row["dnsmos_ovrl"] < 5 for row in rows.values())
    assert "simplify: " in out and "the speed of torch" in out  # the one-line verdict

    code, _, err = speedy_cli("run", TINY_RECIPE, "--build-dir", build)
    assert code == 0 and err.count("reused (inputs and options unchanged)") == 3
    assert "feature cache: 4 hit(s), 0 computed" in err

    changed = tmp_path / "changed.yaml"
    changed.write_text(TINY_RECIPE.read_text() + "simplify:\n  tool: ort\n")
    code, _, err = speedy_cli("run", changed, "--build-dir", build)
    assert code == 0, err
    assert "torch: " in err and err.count("reused") == 2 and "simplify: " in err
    manifest = json.loads((build / "hifigan_tiny" / "simplify" / "speedy.json").read_text())
    assert manifest["reports"]["simplify"]["tool"] == "ort"

    built = {s: Artifact.open(build / "hifigan_tiny" / s) for s in ("torch", "export", "simplify")}
    stages = {
        s: make_stage(s, a.manifest.lineage.options) for s, a in built.items() if s != "torch"
    }
    parents = {"export": built["torch"], "simplify": built["export"]}
    spec = built["export"].manifest.model
    recorded = {s: built[s].manifest.lineage.fingerprint for s in stages}
    assert {s: stage.fingerprint(parents[s], spec) for s, stage in stages.items()} == recorded
    newer = tool_versions() | {"onnxruntime": "99.0"}
    monkeypatch.setattr(base, "tool_versions", lambda: newer)
    assert all(stage.fingerprint(parents[s], spec) != recorded[s] for s, stage in stages.items())


def test_code_digest_follows_the_sources(tmp_path: Path) -> None:
    (tmp_path / "stage.py").write_text("x = 1\n")
    before = source_digest(tmp_path)
    (tmp_path / "stage.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != before
    assert code_version().startswith(__version__ + "+")


def test_run_refuses_to_replace_foreign_directories(speedy_cli, tmp_path: Path) -> None:
    foreign = tmp_path / "build" / "hifigan_tiny" / "torch"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("not speedy's")
    code, _, err = speedy_cli("run", TINY_RECIPE, "--build-dir", tmp_path / "build")
    assert code != 0 and "already exists" in err and "--force" in err
    assert (foreign / "notes.txt").is_file()


def test_infer_resynthesizes_a_wav(speedy_cli, tiny_build: dict, tmp_path: Path) -> None:
    import soundfile as sf

    from speedy.recipe import DEFAULT_DATA

    clip = DEFAULT_DATA / "LJ001-0008.wav"
    code, _, err = speedy_cli(
        "infer", tiny_build["simplify"].path, "-i", clip, "-o", tmp_path / "o.wav"
    )
    assert code == 0, err
    audio, rate = sf.read(tmp_path / "o.wav")
    assert rate == 22050 and abs(len(audio) - sf.info(clip).frames) < 256


def test_infer_resamples_other_rates_with_a_notice(speedy_cli, tiny_build: dict, tmp_path: Path):
    import numpy as np
    import soundfile as sf

    clip = tmp_path / "16k.wav"
    sf.write(clip, np.sin(np.arange(16000) / 10.0).astype(np.float32) * 0.3, 16000)
    code, _, err = speedy_cli(
        "infer", tiny_build["export"].path, "-i", clip, "-o", tmp_path / "o.wav"
    )
    assert code == 0, err
    assert "resampled 16000 Hz -> 22050 Hz" in err
