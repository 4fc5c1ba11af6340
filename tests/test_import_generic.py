"""A scorer imported with `--task generic` (waveform in, scores out) through simplify, quantize,
compile, inspect and bench: latency, memory, size and tensor error, no real-time factor."""

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.bench import gate
from speedy.bench.report import markdown, page, summary_table
from speedy.bench.results import BenchReport
from speedy.errors import SpeedyError
from speedy.measure import rtf_samples
from speedy.recipe import DEFAULT_DATA
from speedy.stages.base import StageContext
from speedy.summary import summarize
from speedy.tasks import task_for
from tests.test_cli_errors import assert_clean_error

SAMPLES = 16000  # one second at 16 kHz, fixed like DNSMOS's 144160
FAST = ("--warmup", "0", "--repeat", "1")


def scorer(path: Path, batch: str | int = "N") -> Path:
    """A tiny DNSMOS-like scorer: a [batch, 16000] waveform through strided and plain
    convolutions, a mean over time and a dense layer to [batch, 3] scores."""
    rng = np.random.default_rng(0)

    def weight(name: str, scale: float, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Unsqueeze", ["wave", "channel"], ["x0"]),
        helper.make_node("Conv", ["x0", "w1", "b1"], ["x1"], strides=[32], name="frontend"),
        helper.make_node("Relu", ["x1"], ["x2"]),
        helper.make_node("Conv", ["x2", "w2", "b2"], ["x3"], pads=[1, 1], name="body"),
        helper.make_node("Relu", ["x3"], ["x4"]),
        helper.make_node("ReduceMean", ["x4"], ["x5"], axes=[2], keepdims=0),
        helper.make_node("MatMul", ["x5", "w3"], ["x6"], name="head"),
        helper.make_node("Add", ["x6", "b3"], ["scores"]),
    ]
    weights = [
        numpy_helper.from_array(np.array([1], np.int64), "channel"),
        weight("w1", 0.5, 16, 1, 64),
        weight("b1", 0.1, 16),
        weight("w2", 0.15, 32, 16, 3),
        weight("b2", 0.1, 32),
        weight("w3", 0.5, 32, 3),
        weight("b3", 1.0, 3),
    ]
    graph = helper.make_graph(
        nodes,
        "scorer",
        [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [batch, SAMPLES])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 3])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def one_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("one_clip")
    shutil.copy(DEFAULT_DATA / "LJ001-0004.wav", data)
    return data


def _cache() -> FeatureCache:
    return FeatureCache(default_cache_dir())


def cli(*args: object) -> str:
    """Run `speedy ARGS` in-process; its output, after checking it succeeded."""
    from typer.testing import CliRunner

    from speedy.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, one_clip: Path) -> dict:
    """The scorer imported, simplified, quantized (INT8, FP16), compiled (ORT), inspected and
    benched against the import, with a baseline saved."""
    work = tmp_path_factory.mktemp("scorer")
    source = scorer(work / "scorer.onnx")
    data = ("--data", one_clip)
    said = {"import": cli("import", source, "--fill", "wave=audio", "-o", work / "import", *data)}
    said["simplify"] = cli("simplify", work / "import", "-o", work / "simplify", *data)
    for precision in ("int8", "fp16"):
        said[precision] = cli(
            "quantize", work / "simplify", "--precision", precision, "-o", work / precision, *data
        )
    said["ort"] = cli("compile", work / "int8", "--backend", "ort", "-o", work / "ort", *data)
    said["inspect"] = cli("inspect", work / "ort")
    names = ("import", "simplify", "int8", "fp16", "ort")
    said["bench"] = cli(
        "bench",
        *(work / name for name in names),
        "-o",
        work / "bench",
        "--save-baseline",
        work / "baseline.json",
        *data,
        *FAST,
    )
    report = BenchReport.model_validate_json((work / "bench" / "bench.json").read_text())
    return {"work": work, "said": said, "report": report, "data": one_clip}


def test_import_feeds_the_clips_and_batches_on_the_graphs_dim(chain: dict) -> None:
    artifact = Artifact.open(chain["work"] / "import")
    task = task_for(artifact.manifest.model)
    assert task.name == "generic" and task.batch_dim == "N"
    assert "wave: float32[N, 16000] -> scores: float32[N, 3]" in chain["said"]["import"]
    (example,) = task.read_data(chain["data"], _cache())
    wave = example["wave"]
    assert wave.shape == (1, SAMPLES) and 0.01 < np.abs(wave).max() <= 1.0
    assert np.abs(wave[0, :200]).max() < np.abs(wave).max() / 4  # a recording, not noise
    outputs = task.run(runtime.load(artifact.path, threads=2), task.inputs(example))
    assert outputs["scores"].shape == (1, 3) and task.seconds(outputs) == 0.0


def test_every_stage_keeps_the_scorer(chain: dict) -> None:
    work, said = chain["work"], chain["said"]
    precisions = {name: Artifact.open(work / name).manifest.precision for name in ("int8", "fp16")}
    assert precisions == {"int8": "int8", "fp16": "fp16"}
    assert "tensor_snr" in said["int8"] and "tensor_snr" in said["fp16"]
    assert Artifact.open(work / "ort").manifest.graphs["model"].runtime is not None
    assert "profiles cover" not in said["ort"]  # fixed length: no clip lengths to cover
    assert "graph model: onnx, int8, model.onnx" in said["inspect"]


def test_bench_reports_latency_memory_size_and_tensor_error(chain: dict) -> None:
    report = chain["report"]
    assert list(report.artifacts) == ["import", "simplify", "int8", "fp16", "ort"]
    assert report.data.audio_seconds is None and report.settings.chunk_frames is None
    for name, result in report.artifacts.items():
        speed = result.speed
        assert speed.rtf is None and speed.stage_rtf is None and speed.stream_rtf is None
        assert 0 < speed.latency_p50_ms <= speed.latency_p95_ms
        assert speed.throughput == {} and speed.items_per_second["1"] > 0
        assert result.size_bytes > 0 and result.load_seconds > 0
        assert result.memory.rss_peak_bytes >= result.memory.rss_after_load_bytes > 0
        assert {"speedup", "size", "rss_peak", "load_time", "throughput_b1"} == set(result.ratios)
        assert all(u.audio_seconds is None and u.latency_ms > 0 for u in result.utterances)
        assert not any(key.startswith("dnsmos") for key in result.quality)
        if name == "import":
            assert result.quality == {}
            continue
        assert set(result.quality) == {"tensor_snr", "max_error", "rel_error"}
    quality = {name: r.quality for name, r in report.artifacts.items()}
    assert quality["simplify"]["tensor_snr"] > 100 and quality["fp16"]["tensor_snr"] > 40
    assert 10 < quality["int8"]["tensor_snr"] < 100 and quality["int8"]["max_error"] > 0
    assert report.artifacts["int8"].ratios["size"] < 0.8  # small weights: Q/DQ scales count


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("img", "audio"):
            self.tags.append((tag, dict(attrs)["src"]))


def test_report_has_no_audio_figures(chain: dict) -> None:
    directory = chain["work"] / "bench"
    sources = _Sources()
    sources.feed((directory / "index.html").read_text())
    assert sources.tags == [("img", "figures/speed.png")]  # no spectrograms, no players
    assert (directory / "figures" / "speed.png").stat().st_size > 1000
    assert not (directory / "audio").exists()
    text = (directory / "bench.md").read_text() + chain["said"]["bench"]
    assert "latency ms" in chain["said"]["bench"] and "tensor_snr" in chain["said"]["bench"]
    assert "batch 1 items/s" in text and "tensor SNR dB" in text and "max abs error" in text
    for absent in ("RTF", "audio s/s", "DNSMOS", "s of audio"):
        assert absent not in text, absent
    assert not re.search(r"\b(inf|nan)\b", text, re.IGNORECASE)
    saved = json.loads((directory / "bench.json").read_text())
    assert saved["artifacts"]["int8"]["speed"]["rtf"] is None


def test_runs_note_is_stated(chain: dict) -> None:
    report = chain["report"].model_copy(update={"runs_note": "noise scales 0"})
    assert "runs: noise scales 0" in markdown(report) and "runs: noise scales 0" in page(report, [])
    assert "(noise scales 0)" in summary_table(report).title
    assert chain["report"].runs_note is None and "runs:" not in markdown(chain["report"])


def test_gate_checks_latency_ratio_and_tensor_snr(chain: dict) -> None:
    baseline = gate.load_baseline(chain["work"] / "baseline.json")
    assert {"speedup", "size", "rss_peak", "throughput_b1", "tensor_snr"} <= set(
        baseline.artifacts["int8"]
    )
    assert baseline.artifacts["simplify"]["tensor_snr"] == gate.SNR_GATE_CAP_DB
    assert all(c.passed for c in gate.compare(chain["report"], baseline, {}))
    better = baseline.artifacts["int8"]["tensor_snr"] + 10
    baseline.artifacts["int8"]["tensor_snr"] = better
    failed = [c for c in gate.compare(chain["report"], baseline, {}) if not c.passed]
    assert [(c.artifact, c.figure) for c in failed] == [("int8", "tensor_snr")]


def test_run_summary_times_latency(chain: dict) -> None:
    artifacts = {name: Artifact.open(chain["work"] / name) for name in ("import", "int8")}
    spec = artifacts["import"].manifest.model
    task = task_for(spec)
    ctx = StageContext(spec, task, task.read_data(chain["data"], _cache()), threads=2)
    table, summary = summarize(artifacts, ctx, repeats=1)
    assert summary["audio_seconds"] is None
    assert [c.header for c in table.columns][5] == "latency ms"
    for row in summary["artifacts"].values():
        assert row["rtf"] is None and row["latency_ms"] > 0 and row["speedup_vs_first"] > 0
    models = {"import": runtime.load(artifacts["import"].path, threads=2)}
    with pytest.raises(SpeedyError, match="not audio has no real-time factor"):
        rtf_samples(models, task, ctx.examples, repeats=1, warmup=0)


def test_scorer_without_a_batch_dim(tmp_path: Path, one_clip: Path, speedy_cli) -> None:
    source = scorer(tmp_path / "fixed.onnx", batch=1)
    data = ("--data", one_clip)
    cli("import", source, "--fill", "wave=audio", "-o", tmp_path / "import", *data)
    said = cli("bench", tmp_path / "import", "-o", tmp_path / "bench", *data, *FAST)
    assert "no batched throughput: recipe fixed has no batch dim" in said
    report = BenchReport.model_validate_json((tmp_path / "bench" / "bench.json").read_text())
    assert report.settings.batches == [] and report.artifacts["import"].speed.items_per_second == {}
    code, _, err = speedy_cli("bench", tmp_path / "import", "-o", tmp_path / "b2", "--batch", "2")
    assert_clean_error(code, err, "recipe fixed has no batch dim", "pass only --batch 1")


@pytest.fixture(scope="module")
def scorer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scorer(tmp_path_factory.mktemp("source") / "scorer.onnx")


@pytest.mark.parametrize(
    ("options", "phrases"),
    [
        (("--fill", "loudness=audio"), ("--fill names 'loudness'", "use: wave")),
        (("--fill", "wave=speech"), ("--fill 'wave=speech' has no known rule", "audio")),
        (("--audio-output", "wave"), ("--audio-output 'wave' is not an output", "scores")),
        (("--task", "vocoder"), ("cannot import a vocoder model", "--task generic")),
    ],
)
def test_import_option_errors(options, phrases, scorer_file: Path, tmp_path: Path, speedy_cli):
    code, _, err = speedy_cli("import", scorer_file, *options, "-o", tmp_path / "out")
    assert code == 1
    assert_clean_error(code, err, *phrases)
    assert not (tmp_path / "out").exists()


def test_import_of_a_corrupt_or_missing_file(tmp_path: Path, speedy_cli) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    code, _, err = speedy_cli("import", corrupt, "-o", tmp_path / "a")
    assert code == 1
    assert_clean_error(code, err, "corrupt.onnx", "not a valid ONNX file")
    code, _, err = speedy_cli("import", tmp_path / "missing.onnx", "-o", tmp_path / "b")
    assert code == 1
    assert_clean_error(code, err, "not found", "missing.onnx")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_real_dnsmos_scorer(tmp_path: Path, one_clip: Path) -> None:
    """speechmos's DNSMOS P.835 scorer (input [N, 144160]) on a real clip: scores in MOS range,
    and an INT8 copy (every layer, kept with --no-budget: it misses tensor_snr>=30) benched
    against it."""
    speechmos = pytest.importorskip("speechmos", reason="DNSMOS comes with speechmos")
    shipped = Path(speechmos.__file__).parent / "dnsmos_models" / "sig_bak_ovr.onnx"
    data = ("--data", one_clip)  # the shipped file is opset 12: quantize raises it to 13
    cli("import", shipped, "--fill", "input_1=audio", "-o", tmp_path / "import", *data)
    int8 = ("--precision", "int8", "--no-budget", "-o", tmp_path / "int8")
    cli("quantize", tmp_path / "import", *int8, *data)
    imported = Artifact.open(tmp_path / "import")
    task = task_for(imported.manifest.model)
    (example,) = task.read_data(one_clip, _cache())
    assert example["input_1"].shape == (1, 144160)
    scores = task.run(runtime.load(imported.path, threads=2), example)["Identity:0"]
    assert np.all((scores > 2) & (scores < 5)), scores  # SIG, BAK, OVRL of clean speech
    cli("bench", tmp_path / "import", tmp_path / "int8", "-o", tmp_path / "bench", *data, *FAST)
    report = BenchReport.model_validate_json((tmp_path / "bench" / "bench.json").read_text())
    int8 = report.artifacts["int8"]
    assert int8.speed.rtf is None and int8.speed.latency_p50_ms > 0
    assert int8.ratios["size"] < 0.35 and int8.memory.rss_peak_bytes > 0
    assert math.isfinite(int8.quality["tensor_snr"]) and 0 < int8.quality["rel_error"] < 1
