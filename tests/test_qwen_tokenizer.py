"""The qwen_tokenizer_12hz family: Qwen3-TTS-Tokenizer-12Hz built from the installed `qwen-tts`
package's classes, a tiny configuration saved with upstream `save_pretrained` and read back as a
user's checkpoint directory, through export; its graphs checked against the
upstream model as `from_pretrained` loads it (encode, decode, chunked_decode) on real speech and
at lengths never traced, the stream through `decoder_step` against the whole decode, and
one-line errors for broken checkpoint directories, and the codec served over HTTP."""

import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from speedy import runtime
from speedy.audio.io import list_audio, read_audio
from speedy.data_source import DEFAULT_CLIPS
from speedy.errors import SpeedyError
from speedy.families import resolve
from speedy.quality import snr_db
from speedy.recipe import load_recipe
from speedy.tasks.codec import Codec
from tests.conftest import QWEN_TOKENIZER as FIXTURE
from tests.conftest import qwen_tokenizer_family

if importlib.util.find_spec("qwen_tts") is None:  # its __init__ needs sox: not imported here
    pytest.skip("qwen-tts is not installed", allow_module_level=True)

LJSPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech" / "wavs"
HOP = 1920

pytestmark = pytest.mark.slow  # the module's export takes about a minute


@pytest.fixture(scope="module")
def checkpoint(qwen_tokenizer_checkpoint: Path) -> Path:
    return qwen_tokenizer_checkpoint


@pytest.fixture(scope="module")
def upstream(checkpoint: Path) -> torch.nn.Module:
    """The reference: the installed package's model, loaded by its own `from_pretrained`."""
    from speedy.families.qwen_upstream import tokenizer_12hz

    modeling, _ = tokenizer_12hz()
    return modeling.Qwen3TTSTokenizerV2Model.from_pretrained(checkpoint).eval()


@pytest.fixture(scope="module")
def built(qwen_tokenizer_build: dict) -> dict:
    return qwen_tokenizer_build


@pytest.fixture(scope="module")
def onnx_model(built: dict) -> runtime.Model:
    return runtime.load(built["export"].path, threads=2)


@pytest.fixture(scope="module")
def task(built: dict) -> Codec:
    assert isinstance(built["ctx"].task, Codec)
    return built["ctx"].task


def speech(frames: int, skip: int = 0) -> np.ndarray:
    """`frames` code frames of the shared LJSpeech clips that speedy does not ship (so neither
    the recipe's data nor its parity inputs), from the `skip`-th on, resampled to 24 kHz and
    played end to end: [1, 1, frames * 1920]."""
    shipped = {path.name for path in list_audio(DEFAULT_CLIPS)}
    clips = [p for p in list_audio(LJSPEECH) if p.name not in shipped] if LJSPEECH.is_dir() else []
    if not clips:
        pytest.skip("the shared LJSpeech clips are not here")
    order = clips[skip % len(clips) :] + clips[: skip % len(clips)]
    audio = np.concatenate([read_audio(path, 24_000) for path in order[:5]])
    assert audio.size >= frames * HOP
    return audio[None, None, : frames * HOP].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The upstream classes, and the checkpoint directory


def test_the_modules_are_the_installed_packages_own() -> None:
    """Only the 12 Hz tokenizer's modules are imported (not the package's __init__, which pulls
    the talker, the 25 Hz tokenizer, torchaudio and sox), and the network is made of their
    classes, with codebooks that are not all zero."""
    script = (
        "import sys\n"
        "from speedy.recipe import load_recipe\n"
        "from speedy.families import resolve\n"
        f"model = resolve(load_recipe({str(FIXTURE)!r}).model_spec()).build()\n"
        "import qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 as m\n"
        "print(type(model) is m.Qwen3TTSTokenizerV2Model, m.__file__)\n"
        "roots = ('qwen_tts', 'torchaudio', 'sox')\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in roots))\n"
        "decoding = model.decoder.quantizer.rvq_rest.vq.layers[0]._codebook.embedding_sum\n"
        "encoding = model.encoder.quantizer.acoustic_residual_vector_quantizer.layers[0]\n"
        "print(float(decoding.abs().min()) > 0)\n"
        "print(float(encoding.codebook.embed_sum.abs().max()) > 0)\n"
    )
    lines = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    own, path = lines[0].split(" ", 1)
    assert own == "True" and "site-packages/qwen_tts/core/tokenizer_12hz/" in path
    assert eval(lines[1]) == [
        "qwen_tts",
        "qwen_tts.core",
        "qwen_tts.core.tokenizer_12hz",
        "qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2",
        "qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2",
    ]
    assert lines[2:] == ["True", "True"]


def test_the_checkpoint_directory_is_what_was_built(
    built: dict, checkpoint: Path, upstream: torch.nn.Module
) -> None:
    """The torch artifact holds the directory's weights (not the recipe's seeded ones), its
    manifest the directory's configuration and provenance."""
    manifest = built["torch"].manifest
    assert manifest.model.checkpoint.file == checkpoint.name
    config = json.loads((checkpoint / "config.json").read_text())
    assert manifest.model.network["decoder_config"]["sliding_window"] == 4
    assert manifest.model.network["encoder_valid_num_quantizers"] == 4
    assert config["model_type"] == "qwen3_tts_tokenizer_12hz"
    state = torch.load(built["torch"].file("decoder"), weights_only=True)
    reference = upstream.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in reference)
    seeded = qwen_tokenizer_family(0).build().state_dict()
    key = "decoder.pre_conv.conv.weight"
    assert not torch.equal(state[key], seeded[key])


def broken(checkpoint: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    target.mkdir()
    for path in checkpoint.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def load_error(directory: Path) -> str:
    """The one-line problem of building the tiny recipe's network from `directory`."""
    from speedy.families.network import build_network

    with pytest.raises(SpeedyError) as error:
        spec = load_recipe(str(FIXTURE)).model_spec(checkpoint=directory)
        family = resolve(spec)
        family.load(build_network(spec), directory)
    assert error.value.fix and "\n" not in str(error.value)
    return error.value.problem


def test_broken_checkpoint_directories(checkpoint: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    no_weights = broken(checkpoint, tmp_path, "no_weights")
    (no_weights / "model.safetensors").unlink()
    assert load_error(no_weights).endswith(
        f"checkpoint directory {no_weights} has no model.safetensors"
    )

    no_config = broken(checkpoint, tmp_path, "no_config")
    (no_config / "config.json").unlink()
    assert load_error(no_config).endswith(f"checkpoint directory {no_config} has no config.json")

    config = json.loads((checkpoint / "config.json").read_text())
    other_type = broken(checkpoint, tmp_path, "other_type")
    (other_type / "config.json").write_text(json.dumps(config | {"model_type": "qwen3_tts"}))
    assert "model_type is 'qwen3_tts', not 'qwen3_tts_tokenizer_12hz'" in load_error(other_type)

    no_dim = broken(checkpoint, tmp_path, "no_codebook_dim")
    decoder = {k: v for k, v in config["decoder_config"].items() if k != "codebook_dim"}
    (no_dim / "config.json").write_text(json.dumps(config | {"decoder_config": decoder}))
    assert "codebook_dim is not set" in load_error(no_dim)

    wider = broken(checkpoint, tmp_path, "wider")
    decoder = config["decoder_config"] | {"latent_dim": 48}
    (wider / "config.json").write_text(json.dumps(config | {"decoder_config": decoder}))
    problem = load_error(wider)
    assert "decoder.decoder.0.conv.weight (32, 32, 7) vs (32, 48, 7)" in problem

    extra = broken(checkpoint, tmp_path, "extra")
    tensors = load_file(extra / "model.safetensors")
    save_file(tensors | {"decoder.spare.weight": torch.zeros(2)}, extra / "model.safetensors")
    assert "unexpected ['decoder.spare.weight']" in load_error(extra)

    garbled = broken(checkpoint, tmp_path, "garbled")
    (garbled / "model.safetensors").write_bytes(b"\x00" * 64)
    assert "is not a readable safetensors file" in load_error(garbled)


def test_a_broken_directory_on_the_command_line(checkpoint: Path, tmp_path: Path) -> None:
    no_weights = broken(checkpoint, tmp_path, "no_weights")
    (no_weights / "model.safetensors").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "speedy", "export", str(FIXTURE), "-o", str(tmp_path / "out"),
         "--checkpoint", str(no_weights)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "has no model.safetensors" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------
# The graphs against upstream


@pytest.mark.parametrize("frames", [9, 38])  # never traced (5) nor in the recipe's parity sizes
def test_onnx_codes_equal_upstream_encode_on_real_speech(
    onnx_model: runtime.Model, upstream: torch.nn.Module, frames: int
) -> None:
    audio = speech(frames, skip=frames)
    codes = onnx_model["encoder"].run({"audio": audio})["codes"]
    with torch.no_grad():
        wave = torch.from_numpy(audio[:, 0])
        (reference,) = upstream.encode(wave, torch.ones_like(wave, dtype=torch.long)).audio_codes
    assert codes.shape == (1, 4, frames)
    assert len(np.unique(codes)) > 8  # codes that vary with the speech, not one repeated code
    np.testing.assert_array_equal(codes[0].T, reference.numpy())


@pytest.fixture(scope="module")
def speech_codes(onnx_model: runtime.Model) -> np.ndarray:
    """Codes of 57 frames (4.6 s) of real speech, 2 items (the second 13 frames later)."""
    audio = speech(70, skip=3)
    pair = np.concatenate([audio[..., : 57 * HOP], audio[..., 13 * HOP :]])
    return onnx_model["encoder"].run({"audio": pair})["codes"]


def upstream_decode(upstream: torch.nn.Module, codes: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        audio = upstream.decode(torch.from_numpy(codes).transpose(1, 2)).audio_values
    return torch.stack(audio)[:, None].numpy()


def test_whole_decode_equals_upstream_decode(
    onnx_model: runtime.Model, upstream: torch.nn.Module, speech_codes: np.ndarray
) -> None:
    audio = onnx_model["decoder"].run({"codes": speech_codes})["audio"]
    reference = upstream_decode(upstream, speech_codes)
    assert audio.shape == reference.shape == (2, 1, 57 * HOP)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05
    assert np.abs(audio - reference).max() <= 1e-4


def test_exportable_decoder_is_upstreams_bit_for_bit(built: dict) -> None:
    """Integer pad arithmetic and SnakeBeta's square as a product change no value, and leave
    the exported decoder no size arithmetic (upstream's float padding exports a Ceil per conv)."""
    from speedy.families.qwen_codec_modules import exportable_decoder

    network = qwen_tokenizer_family(seed=11).build()
    codes = torch.randint(0, 64, (2, 4, 19), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = network.decoder(codes)
        exportable_decoder(network.decoder)
        assert torch.equal(network.decoder(codes), before)
    graph = onnx.load(built["export"].file("decoder"), load_external_data=False).graph
    assert {node.op_type for node in graph.node}.isdisjoint({"Ceil", "Pad"})


def stream(onnx_model: runtime.Model, task: Codec, codes: np.ndarray, chunk: int) -> np.ndarray:
    streamer = task.streamer(chunk * HOP / 24_000)
    assert streamer.chunk == chunk
    state, pieces = streamer.start(onnx_model, codes.shape[0]), []
    for start in range(0, codes.shape[-1], chunk):
        audio, state = streamer.step(onnx_model, codes[..., start : start + chunk], state)
        pieces.append(audio)
    return np.concatenate(pieces, axis=-1)


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_stream_equals_the_whole_decode(
    onnx_model: runtime.Model, task: Codec, upstream: torch.nn.Module,
    speech_codes: np.ndarray, chunk: int,
) -> None:  # fmt: skip
    """The stream in chunks of 1, 3 and 7 frames against the whole decode: within 1e-4 of it
    and of upstream's, at every sample and at the seams (the samples either side of each chunk
    boundary)."""
    whole = onnx_model["decoder"].run({"codes": speech_codes})["audio"]
    streamed = stream(onnx_model, task, speech_codes, chunk)
    assert streamed.shape == whole.shape
    error = np.abs(streamed - whole)
    assert error.max() <= 1e-4
    assert np.abs(streamed - upstream_decode(upstream, speech_codes)).max() <= 1e-4
    seams = np.arange(chunk * HOP, whole.shape[-1], chunk * HOP)
    near = np.concatenate([seams - 1, seams])
    assert error[..., near].max() <= 1e-4
    for item in range(2):
        assert snr_db(whole[item, 0], streamed[item, 0]) >= 80


def test_long_decode_equals_upstream_chunked_decode(
    onnx_model: runtime.Model, task: Codec, upstream: torch.nn.Module
) -> None:
    """Past upstream's 300-frame chunks: its `chunked_decode` gives each chunk 25 frames of left
    context, more than this configuration's receptive field (the definitions agree), so the
    project's long decode (through decoder_step) equals it."""
    assert task.codec.decoder_context <= 25
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 64, (1, 4, 700))
    ours = task.decode(onnx_model, codes)
    with torch.no_grad():
        theirs = upstream.decoder.chunked_decode(torch.from_numpy(codes)).numpy()
    assert ours.shape == theirs.shape == (1, 1, 700 * HOP)
    assert np.abs(ours - theirs).max() <= 1e-4


# ----------------------------------------------------------------------------------------------
# Serving


def test_served_round_trip_and_codes(built: dict, task: Codec, onnx_model: runtime.Model) -> None:
    """`speedy serve` of the codec: /v1/vocode gives the audio through its codes (as the task's
    own run, to 16-bit rounding), /v1/codes the encoder's codes; an unreadable upload a 400."""
    from tests.serve_client import spawn

    upload = speech(31, skip=5)
    wav = io.BytesIO()
    sf.write(wav, upload[0, 0], 24_000, format="WAV", subtype="FLOAT")
    expected = task.run(onnx_model, {"audio": upload})
    with spawn([f"codec={built['export'].path}"]) as server:
        reply = server.call("POST", "/v1/vocode?model=codec", wav.getvalue())
        assert reply.status == 200, reply.body
        audio, rate = sf.read(io.BytesIO(reply.body), dtype="float32")
        assert rate == 24_000 and audio.size == 31 * HOP
        # 16-bit WAV: rounding and the 32767 / 32768 scales (as the vocoder's served audio)
        assert np.abs(audio - expected["audio"].reshape(-1)).max() <= 3 / 32767
        codes = server.call("POST", "/v1/codes", wav.getvalue())
        assert codes.status == 200, codes.body
        found = codes.json()
        assert (found["frame_rate"], found["codebooks"], found["frames"]) == (12.5, 4, 31)
        np.testing.assert_array_equal(np.array(found["codes"]), expected["codes"][0])
        bad = server.call("POST", "/v1/codes", b"RIFF....WAVEnot audio")
        assert bad.status == 400 and "fix" in bad.json()
