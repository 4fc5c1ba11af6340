"""`speedy bench`: every figure for every artifact kind, the report files, the regression gate."""

import io
import json
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from speedy import machine
from speedy.artifact import Artifact, write_manifest
from speedy.bench import gate
from speedy.bench.command import bench
from speedy.bench.options import BenchOptions
from speedy.bench.results import DNSMOS_FIGURES, BenchReport
from speedy.errors import SpeedyError
from speedy.recipe import DEFAULT_DATA
from tests.conftest import TINY_RECIPE, republish
from tests.test_cli_errors import assert_clean_error

FAST = ("--warmup", "0", "--repeat", "1", "--batch", "1", "--batch", "2")


@pytest.fixture(scope="module")
def one_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One shipped clip, to keep bench runs quick: 5.1 s, long enough for a single DNSMOS
    window (shorter clips are repeated to 9 s and scored at several offsets)."""
    data = tmp_path_factory.mktemp("one_clip")
    shutil.copy(DEFAULT_DATA / "LJ001-0004.wav", data)
    return data


def degraded_copy(source: Artifact, out: Path, noise: float = 0.5) -> Path:
    """A copy of an ONNX artifact whose weights carry seeded noise (`noise` x their std)."""
    shutil.copytree(source.path, out)
    model = onnx.load(str(out / "model.onnx"))
    rng = np.random.default_rng(0)
    for tensor in model.graph.initializer:
        weights = numpy_helper.to_array(tensor)
        if weights.dtype == np.float32 and weights.ndim >= 2:
            weights = weights + noise * weights.std() * rng.standard_normal(weights.shape)
            tensor.CopyFrom(numpy_helper.from_array(weights.astype(np.float32), tensor.name))
    onnx.save(model, str(out / "model.onnx"))
    republish(out, source.manifest)
    return out


@pytest.fixture(scope="module")
def baseline_run(tiny_build: dict, one_clip: Path, tmp_path_factory: pytest.TempPathFactory):
    """One bench over a PyTorch and an ONNX artifact, saved as a baseline."""
    out = tmp_path_factory.mktemp("bench")
    command = BenchOptions(
        artifacts=[str(tiny_build["torch"].path), str(tiny_build["export"].path)],
        output=out / "report",
        data=one_clip,
        batches=(1, 2),
        warmup=0,
        repeat=1,
        save_baseline=out / "baseline.json",
    )
    bench(command)
    report = BenchReport.model_validate_json((out / "report" / "bench.json").read_text())
    return report, out / "report", out / "baseline.json"


def test_every_figure_with_ratios(baseline_run) -> None:
    report, _, _ = baseline_run
    assert report.reference == "torch" and list(report.artifacts) == ["torch", "export"]
    assert report.settings.batches == [1, 2] and report.settings.chunk_frames == 22
    assert report.machine["cores"] and report.machine["tools"]["onnxruntime"]
    assert report.data.files == ["LJ001-0004"] and 5.1 < report.data.audio_seconds < 5.2
    assert {name: r.kind for name, r in report.artifacts.items()} == {
        "torch": "torch",
        "export": "onnx",
    }
    for name, result in report.artifacts.items():
        assert result.digest == Artifact.open(Path(result.path)).manifest.digest
        assert result.size_bytes > 0 and result.load_seconds > 0 and result.first_run_seconds > 0
        memory = result.memory
        assert (
            0 < memory.rss_before_load_bytes <= memory.rss_after_load_bytes <= memory.rss_peak_bytes
        )
        speed = result.speed
        assert speed.rtf > 0 and 0 < speed.latency_p50_ms <= speed.latency_p95_ms
        assert set(speed.throughput) == {"1", "2"} and min(speed.throughput.values()) > 0
        assert 0 < speed.first_chunk_p50_ms <= speed.first_chunk_p95_ms
        assert speed.stream_rtf > 0
        expected = {"speedup", "size", "rss_peak", "load_time", "throughput_b1", "throughput_b2"}
        assert expected | {"first_chunk_speedup"} == set(result.ratios)
        assert all(np.isfinite(v) and v > 0 for v in result.ratios.values())
        assert all(np.isfinite(result.quality[k]) for k in DNSMOS_FIGURES)
        assert result.quality["seam_snr"] >= 40
        (utterance,) = result.utterances
        assert utterance.latency_ms > 0 and utterance.seam_snr_db >= 40
        if name == "torch":
            assert result.ratios["speedup"] == 1.0 and result.ratios["size"] == 1.0
            continue
        # against the reference's output: same network, so (nearly) identical audio
        assert result.quality["snr"] > 60 and result.quality["stoi"] > 0.99
        assert result.quality["mel"] < 0.01 and result.quality["mcd"] < 0.1
    assert report.source_quality and 2 < report.source_quality["dnsmos_ovrl"] < 5


def test_ray_deployments_autoscale_at_the_benched_latency(
    speedy_cli, baseline_run, tiny_build: dict, tmp_path: Path
) -> None:
    """`speedy deploy ray --bench bench.json`: an artifact the report measured (matched by its
    manifest digest, not its path) scales at the target latency over its p95 latency; one it did
    not measure keeps --target-ongoing, with a notice."""
    import yaml

    report, folder, _ = baseline_run
    moved = tmp_path / "moved"  # the same artifact elsewhere: still matched
    shutil.copytree(tiny_build["export"].path, moved)
    p95 = report.artifacts["export"].speed.latency_p95_ms / 1000
    args = ["deploy", "ray", f"fast={moved}", f"other={tiny_build['simplify'].path}",
            "--max-replicas", "3", "--bench", str(folder / "bench.json"),
            "--target-latency", str(round(5 * p95, 4)), "--threads", "1"]  # fmt: skip
    code, _, err = speedy_cli(*args, "-o", str(tmp_path / "app"))
    assert code == 0, err
    assert "other is not in the bench report" in err
    config = yaml.safe_load((tmp_path / "app" / "serve.yaml").read_text())
    targets = config["applications"][0]["args"]["ray"]["targets"]
    assert targets == {"fast": pytest.approx(5, abs=0.01)}
    code, _, err = speedy_cli(*args[:4], "--bench", str(folder / "bench.json"), "-o",
                              str(tmp_path / "none"))  # fmt: skip
    assert_clean_error(code, err, "give --max-replicas too")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    code, _, err = speedy_cli(*args[:6], "--bench", str(tmp_path / "other.json"), "-o",
                              str(tmp_path / "none"))  # fmt: skip
    assert_clean_error(code, err, "is not a speedy bench report")
    assert not (tmp_path / "none").exists()


def test_triton_graphs_batch_as_benched(speedy_cli, baseline_run, tmp_path: Path) -> None:
    """`speedy deploy triton --bench bench.json`: a measured one-graph artifact's dynamic batching
    prefers the batch sizes within 90% of its best items per second and waits at most a tenth
    of its p50 latency, or waits for none where batching gains under 10%."""
    pytest.importorskip("tritonclient.grpc", reason="the [deploy] extra is missing")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    report, folder, _ = baseline_run
    export = report.artifacts["export"]
    out = tmp_path / "repo"
    code, stdout, err = speedy_cli("deploy", "triton", f"fast={export.path}", "--bench",
                                   str(folder / "bench.json"), "-o", str(out))  # fmt: skip
    assert code == 0, err
    assert "1 graph model(s), 0 ensemble(s) and the speedy model" in stdout
    config = text_format.Parse((out / "fast__model" / "config.pbtxt").read_text(), pb.ModelConfig())
    rates = export.speed.items_per_second
    if rates["2"] >= 1.1 * rates["1"]:
        preferred = [2] if rates["2"] >= 0.9 * max(rates.values()) else []
        delay = round(export.speed.latency_p50_ms * 100)
    else:
        preferred, delay = [], 0
    assert list(config.dynamic_batching.preferred_batch_size) == preferred
    assert config.dynamic_batching.max_queue_delay_microseconds == delay


class _Media(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.audio: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes["src"])
        elif tag == "audio":
            assert "controls" in attributes
            self.audio.append(attributes["src"])


def test_report_files(baseline_run) -> None:
    report, directory, _ = baseline_run
    media = _Media()
    media.feed((directory / "index.html").read_text())
    assert media.images == ["figures/speed.png", "figures/quality.png", "figures/spectrogram_0.png"]
    assert len(media.audio) == 3  # the recording, then each artifact's audio of the clip
    for src in media.images + media.audio:
        path = directory / src
        assert path.is_file() and path.stat().st_size > 1000, src
    assert all((directory / src).read_bytes()[:4] == b"RIFF" for src in media.audio)
    markdown = (directory / "bench.md").read_text()
    for name in report.artifacts:
        assert f"| {name} |" in markdown
    assert "| recording |" in markdown and "first chunk" in markdown
    assert "relative to a seeded model: only DNSMOS says whether it is speech" in markdown


def test_gate_passes_and_fails_on_a_degraded_artifact(
    baseline_run, tiny_build: dict, one_clip: Path, tmp_path: Path, speedy_cli
) -> None:
    """A second run, `export` now a degraded copy: the gate fails on its quality figures and
    passes the unchanged reference (speed and memory tolerances opened wide: the test is about
    audio, timing on a shared machine is not)."""
    report, _, baseline = baseline_run
    assert all(c.passed for c in gate.compare(report, gate.load_baseline(baseline), {}))
    degraded = degraded_copy(tiny_build["export"], tmp_path / "degraded")
    code, _, err = speedy_cli(
        "bench", tiny_build["torch"].path, f"export={degraded}", "--data", one_clip, *FAST,
        "--baseline", baseline, "--tolerance", "speed=100,memory=100", "--no-html",
        "-o", tmp_path / "report",
    )  # fmt: skip
    assert_clean_error(code, err, "regression gate failed", "export snr", "export mel")
    written = json.loads((tmp_path / "report" / "bench.json").read_text())
    checks = written["gate"]["checks"]
    assert not written["gate"]["passed"]
    failed = {(c["artifact"], c["figure"]) for c in checks if not c["passed"]}
    assert {artifact for artifact, _ in failed} == {"export"}
    assert all(c["passed"] for c in checks if c["artifact"] == "torch")
    assert (tmp_path / "report" / "bench.md").read_text().count("REGRESSED") == len(failed)


def test_gate_rules(baseline_run) -> None:
    """A ratio regresses beyond its relative tolerance; quality beyond its absolute one."""
    report, _, baseline_path = baseline_run
    baseline = gate.load_baseline(baseline_path)
    slower = report.model_copy(deep=True)
    slower.artifacts["export"].ratios["speedup"] *= 0.7
    (check,) = [c for c in gate.compare(slower, baseline, {}) if not c.passed]
    assert (check.artifact, check.figure) == ("export", "speedup")
    assert all(c.passed for c in gate.compare(slower, baseline, gate.parse_tolerance("0.35")))
    worse = report.model_copy(deep=True)
    worse.artifacts["export"].quality["dnsmos_ovrl"] -= 0.2
    (check,) = [c for c in gate.compare(worse, baseline, {}) if not c.passed]
    assert check.figure == "dnsmos_ovrl"
    assert all(c.passed for c in gate.compare(worse, baseline, {"quality": 0.25}))


def test_baseline_from_another_cpu_is_named(baseline_run) -> None:
    report, _, baseline_path = baseline_run
    baseline = gate.load_baseline(baseline_path)
    assert gate.other_cpu(baseline, report.machine) is None
    avx2 = baseline.model_copy(update={"machine": baseline.machine | {"simd": "avx2"}})
    elsewhere = gate.other_cpu(avx2, report.machine | {"simd": "avx512f"})
    assert elsewhere is not None and "(avx2, " in elsewhere and "(avx512f, " in elsewhere
    unknown = baseline.model_copy(update={"machine": {"cpu": "AMD EPYC", "cores": 2}})
    assert "vector extension unknown" in (gate.other_cpu(unknown, report.machine) or "")


@pytest.mark.parametrize(
    "content, message",
    [
        ({"format": "speedy-bench-baseline", "version": 0, "speedy_version": "0.0.1"},
         "has format version 0 (speedy 0.0.1); this speedy reads version 1"),
        ({"format": "something-else"}, "is not a speedy bench baseline"),
        ({"format": "speedy-bench-baseline", "version": 1}, "Field required"),
    ],
)  # fmt: skip
def test_incompatible_baseline(
    content: dict, message: str, tiny_build: dict, tmp_path: Path, speedy_cli
) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(content))
    code, _, err = speedy_cli(
        "bench", tiny_build["export"].path, "--baseline", path, "-o", tmp_path / "out"
    )
    assert_clean_error(code, err, message)
    assert not (tmp_path / "out").exists()


def test_baseline_of_other_conditions(
    baseline_run, tiny_build: dict, one_clip: Path, tmp_path: Path, speedy_cli
) -> None:
    _, _, baseline = baseline_run
    artifacts = [tiny_build[s].path for s in ("torch", "export")]
    run = ["bench", *artifacts, *FAST, "--baseline", baseline, "-o", tmp_path / "out"]
    code, _, err = speedy_cli(*run, "--threads", "1")
    assert_clean_error(code, err, "the baseline has threads 2, this run 1")
    code, _, err = speedy_cli(*run)  # the default data, not the baseline's one clip
    assert_clean_error(code, err, "the baseline was measured on other data")
    only_torch = [tiny_build["torch"].path, "--data", one_clip, *FAST, "--baseline", baseline]
    code, _, err = speedy_cli("bench", *only_torch, "-o", tmp_path / "out")
    assert_clean_error(code, err, "the baseline has artifact(s) ['export'] that this run lacks")


def test_empty_data_dir(tiny_build: dict, tmp_path: Path, speedy_cli) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = speedy_cli(
        "bench", tiny_build["export"].path, "--data", tmp_path / "empty", "-o", tmp_path / "out"
    )
    assert_clean_error(code, err, "no audio or .npy files in")


def test_example_outside_an_artifacts_range(tiny_build: dict, tmp_path: Path, speedy_cli) -> None:
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "short.npy", np.zeros((80, 3), dtype=np.float32))
    code, _, err = speedy_cli(
        "bench", tiny_build["export"].path, "--data", tmp_path / "data", "-o", tmp_path / "out"
    )
    assert_clean_error(code, err, "export, short: input 'mel' frames=3 is outside the declared")


def test_artifact_of_another_recipe(tiny_build: dict, tmp_path: Path, speedy_cli) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_build["simplify"].path, other)
    manifest = tiny_build["simplify"].manifest
    model = manifest.model.model_copy(update={"recipe": "hifigan_other"})
    write_manifest(other, manifest.model_copy(update={"model": model}))
    code, _, err = speedy_cli(
        "bench", other, "--reference", tiny_build["export"].path, "-o", tmp_path / "out"
    )
    assert_clean_error(
        code, err, "artifact 'other' is a model of recipe 'hifigan_other'", "'hifigan_tiny'"
    )


def test_cuda_without_gpu(tiny_build: dict, tmp_path: Path, speedy_cli) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = speedy_cli(
        "bench", tiny_build["export"].path, "--device", "cuda", "-o", tmp_path / "out"
    )
    assert_clean_error(code, err, "--device cuda: no CUDA GPU is available here")


@pytest.mark.parametrize(
    "options, message",
    [
        (["--batch", "9"], "--batch 9 is outside the model's batch range 1..4"),
        (["--tolerance", "0.2"], "--tolerance applies to the gate only"),
        (["--repeat", "0"], "need warmup >= 0, repeat >= 1"),
    ],
)
def test_bad_options(options, message, tiny_build: dict, tmp_path: Path, speedy_cli) -> None:
    code, _, err = speedy_cli("bench", tiny_build["export"].path, *options, "-o", tmp_path / "o")
    assert_clean_error(code, err, message)


def test_names(tiny_build: dict, tmp_path: Path, speedy_cli) -> None:
    path = tiny_build["export"].path
    code, _, err = speedy_cli("bench", path, path, "-o", tmp_path / "out")
    assert_clean_error(code, err, "two artifacts are named 'export'", "NAME=PATH")
    existing = tmp_path / "exists"
    existing.mkdir()
    code, _, err = speedy_cli("bench", path, "-o", existing)
    assert_clean_error(code, err, "already exists", "--force")


def test_tolerance_terms() -> None:
    assert gate.parse_tolerance("0.3,pesq=0.2") == {
        "speed": 0.3, "size": 0.3, "memory": 0.3, "pesq": 0.2
    }  # fmt: skip
    for bad in ("fast=0.1", "pesq=-1", "pesq=high"):
        with pytest.raises(SpeedyError):
            gate.parse_tolerance(bad)


def test_worker_answers_each_request_or_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from speedy.bench.protocol import Batch, Failure, MemoryPeaks, ReadMemory, Ready
    from speedy.bench.worker import serve

    class Worker:  # stands in for the worker of a loaded artifact
        def batch(self, size: int) -> None:
            raise SpeedyError(f"no batch of {size}", "pass --batch 1")

        def memory(self) -> MemoryPeaks:
            return MemoryPeaks(rss_peak=1, gpu_peak=None)

    requests = [Batch(size=2), ReadMemory()]
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("".join(f"{r.model_dump_json()}\n" for r in requests))
    )
    channel = io.StringIO()
    serve(Worker(), channel)
    ready, failure, memory = channel.getvalue().splitlines()
    assert Ready.model_validate_json(ready)
    assert Failure.model_validate_json(failure) == Failure(
        problem="no batch of 2", fix="pass --batch 1"
    )
    assert MemoryPeaks.model_validate_json(memory) == Worker().memory()


def test_matplotlib_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from speedy.bench import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SpeedyError, match=r"needs matplotlib.*openspeedy\[report\]"):
        plots.pyplot()


def test_text_to_mel_model(sambert_build: dict, tmp_path: Path) -> None:
    """A Sambert acoustic model benches too: its own quality figure, no audio, no streaming."""
    bench(
        BenchOptions(
            artifacts=[str(sambert_build["export"].path), str(sambert_build["simplify"].path)],
            output=tmp_path / "report",
            warmup=0,
            repeat=1,
        )
    )
    report = BenchReport.model_validate_json((tmp_path / "report" / "bench.json").read_text())
    simplified = report.artifacts["simplify"]
    assert simplified.quality["mel"] < 1e-3 and simplified.ratios["speedup"] > 0
    assert report.settings.chunk_frames is None and report.source_quality is None
    assert report.data.audio_seconds > 0 and simplified.speed.rtf > 0
    media = _Media()
    media.feed((tmp_path / "report" / "index.html").read_text())
    assert media.images == ["figures/speed.png"] and media.audio == []


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu sse4_2 avx avx2 fma", "avx2"), ("avx2 avx512f avx512bw", "avx512f"), ("fpu", None)],
)
def test_machine_record_names_the_widest_vector_extension(
    monkeypatch: pytest.MonkeyPatch, flags: str, expected: str | None
) -> None:
    monkeypatch.setattr(machine, "_cpuinfo", lambda field: flags if field == "flags" else None)
    assert machine.simd() == expected


def test_benchmark_result_is_written_with_its_headline(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "results" / "result.json"
    machine.write_result(out, {"rtf": {"onnx": 0.3}, "layers": [1, 2]}, ("rtf",))
    assert json.loads(out.read_text()) == {"rtf": {"onnx": 0.3}, "layers": [1, 2]}
    printed = capsys.readouterr().out
    assert '"onnx": 0.3' in printed and "layers" not in printed
    assert printed.endswith(f"wrote {out}\n")


def test_artifacts_of_another_checkpoint_are_not_scored_as_a_loss(
    tiny_build: dict, one_clip: Path, tmp_path: Path, speedy_cli
) -> None:
    """The same network with other weights: bench says so, keeps DNSMOS, and reports no
    figures against the reference (they would compare two models, not a conversion)."""
    import torch

    state = torch.load(tiny_build["torch"].file("model"), weights_only=True)
    torch.save({k: v + 0.01 * torch.randn_like(v) for k, v in state.items()}, tmp_path / "w.pt")
    code, _, err = speedy_cli(
        "export", TINY_RECIPE, "--checkpoint",
        tmp_path / "w.pt", "--skip-parity", "-o", tmp_path / "retrained",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = speedy_cli(
        "bench", tiny_build["export"].path, tmp_path / "retrained", "--data", one_clip, *FAST,
        "--no-html", "-o", tmp_path / "report",
    )  # fmt: skip
    assert code == 0, err
    assert "'retrained' comes from checkpoint w.pt" in err and "none (seeded weights)" in err
    report = BenchReport.model_validate_json((tmp_path / "report" / "bench.json").read_text())
    retrained = report.artifacts["retrained"]
    assert retrained.checkpoint.startswith("w.pt (sha256:")
    assert report.artifacts["export"].checkpoint is None
    # heard and streamed (its own seams), not compared with the reference
    assert set(retrained.quality) == {*DNSMOS_FIGURES, "seam_snr"}
