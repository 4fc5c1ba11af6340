"""The GPT-TTS family (tiny shape) as two graphs: parity of prefill and decode, generation that
matches PyTorch code for code on ONNX Runtime, duration control, sampling, a cache handed from
one backend to another, batches, quantization, bench and clear errors."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from speedy import runtime
from speedy.bench.command import bench
from speedy.bench.options import BenchOptions
from speedy.bench.results import BenchReport
from speedy.errors import SpeedyError
from speedy.tasks.sampling import Sampling, kl_divergence, pick
from speedy.tasks.speech_codes import Cache, Generation, Sentence, SpeechCodesControls
from tests.conftest import GPT_TINY, republish
from tests.test_cli_errors import assert_clean_error

GREEDY = Generation(max_codes=200)


@pytest.fixture(scope="module")
def models(gpt_build: dict) -> dict:
    return {s: runtime.load(gpt_build[s].path, threads=2) for s in ("torch", "export")}


@pytest.fixture(scope="module")
def prompt(gpt_build: dict) -> dict:
    return gpt_build["ctx"].task.inputs(gpt_build["ctx"].examples[3])


def test_two_graphs_with_parity_at_unseen_prompt_lengths(gpt_build: dict) -> None:
    manifest = gpt_build["export"].manifest
    assert list(manifest.graphs) == ["prefill", "decode"]
    assert manifest.model.task == "speech_codes"
    decode = manifest.graphs["decode"]
    assert [s.name for s in decode.inputs][:3] == ["token", "position", "cache_mask"]
    assert decode.inputs[3].shape == ["batch", 4, "slots", 64]  # per-layer cache slots
    assert decode.outputs[2].shape == ["batch", 4, 1, 64]  # the step's own key
    parity = manifest.reports["parity"]
    assert parity["passed"] and parity["atol"] == 1e-4
    prompts = [c["sizes"]["text"] for c in parity["cases"] if c["graph"] == "prefill"]
    assert prompts == [7, 23, 61]  # never the tracing size (12)
    steps = [c for c in parity["cases"] if c["graph"] == "decode"]
    assert len(steps) == 12  # the first 4 steps of each prompt's own generation (teacher forced)
    assert max(c["max_abs_error"]["logits"] for c in steps) <= 1e-4


def test_onnx_generates_the_same_codes_as_pytorch(models: dict, gpt_build: dict, prompt) -> None:
    task = gpt_build["ctx"].task
    torch_run, onnx_run = (task.generate(models[s], prompt, GREEDY) for s in ("torch", "export"))
    assert torch_run["codes"].shape == (1, 200)
    np.testing.assert_array_equal(onnx_run["codes"], torch_run["codes"])
    assert len(np.unique(torch_run["codes"])) >= 20
    assert onnx_run["code_lengths"][0] == torch_run["code_lengths"][0] == 200  # no stop code


def test_duration_control_stops_both_at_the_target(models: dict, gpt_build, prompt) -> None:
    task = gpt_build["ctx"].task
    for target in (57, 137):  # exactly the target's codes, then the stop
        timed = Generation(max_codes=200, target_codes=target)
        runs = [task.generate(models[s], prompt, timed) for s in ("torch", "export")]
        for run in runs:
            assert run["codes"].shape == (1, target + 1) and run["code_lengths"][0] == target
            assert run["codes"][0, -1] == task.s.stop_code
            assert task.s.stop_code not in run["codes"][0, :-1]
        np.testing.assert_array_equal(runs[0]["codes"], runs[1]["codes"])
        assert task.seconds(runs[0]) == pytest.approx(target / 25)


@pytest.mark.slow
def test_a_checkpoint_whose_stop_fires_stops_both_at_the_same_step(
    gpt_build: dict, tmp_path: Path
) -> None:
    """The seeded weights never choose the stop code (its logit is biased by -30); a checkpoint
    with that bias at +1 stops on its own, mid-generation, and ONNX stops where PyTorch does."""
    from speedy.families.network import build_network
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    task = gpt_build["ctx"].task
    network = build_network(gpt_build["torch"].manifest.model)
    network.mel_head.bias.data[task.s.stop_code] = 1.0
    torch.save(network.state_dict(), tmp_path / "stops.pt")
    raw = yaml.safe_load(GPT_TINY.read_text())
    raw |= {"name": "gpt_tts_stops", "checkpoint": str(tmp_path / "stops.pt")}
    raw["data"] = str((GPT_TINY.parent / raw["data"]).resolve())
    (tmp_path / "stops.yaml").write_text(yaml.safe_dump(raw))
    outcomes, _ = run_recipe(load_recipe(str(tmp_path / "stops.yaml")), tmp_path / "build")
    models = [runtime.load(o.artifact.path, threads=2) for o in outcomes]
    rng = np.random.default_rng(7)
    for length in (5, 20, 60):
        prompt = task._prompt([rng.integers(2, 1000, length)], [0])
        runs = [task.generate(m, prompt, Generation(max_codes=300)) for m in models]
        stop = runs[0]["code_lengths"][0]
        assert 0 < stop < 300 and runs[0]["codes"][0, stop] == task.s.stop_code
        assert runs[1]["code_lengths"][0] == stop
        np.testing.assert_array_equal(runs[0]["codes"], runs[1]["codes"])


def test_a_pytorch_cache_continues_in_onnx(models: dict, gpt_build: dict, prompt) -> None:
    """Prefill and 10 steps in PyTorch, the cache handed to the ONNX decode graph: the codes
    continue as if PyTorch had generated them all."""
    task = gpt_build["ctx"].task
    whole = task.generate(models["torch"], prompt, Generation(max_codes=60))
    logits, cache = task.prefill(models["torch"], prompt)
    code = logits.argmax(-1)
    for _ in range(10):
        code = task.step(models["torch"], cache, code).argmax(-1)
    logits = task.step(models["torch"], cache, code)
    rest = task.generate(models["export"], {}, Generation(max_codes=49), start=(logits, cache))
    np.testing.assert_array_equal(rest["codes"], whole["codes"][:, 11:])


def test_a_batch_of_prompts_of_different_lengths(models: dict, gpt_build: dict) -> None:
    task = gpt_build["ctx"].task
    sentences = [gpt_build["ctx"].examples[i] for i in (0, 5)]
    alone = [
        task.generate(models["export"], task.inputs(s), Generation(max_codes=30)) for s in sentences
    ]
    rows = [s.ids for s in sentences]
    batch = task._prompt(rows, [s.speaker for s in sentences])
    together = task.generate(models["export"], batch, Generation(max_codes=30))
    assert rows[0].size != rows[1].size
    for i, run in enumerate(alone):
        np.testing.assert_array_equal(together["codes"][i], run["codes"][0])


def test_seeded_sampling(models: dict, gpt_build: dict, prompt) -> None:
    task = gpt_build["ctx"].task

    def sample(**sampling) -> np.ndarray:
        generation = Generation(max_codes=40, sampling=Sampling(**sampling))
        return task.generate(models["export"], prompt, generation)["codes"]

    hot = {"temperature": 1.5, "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.3}
    np.testing.assert_array_equal(sample(seed=1, **hot), sample(seed=1, **hot))
    assert not np.array_equal(sample(seed=1, **hot), sample(seed=2, **hot))
    greedy = task.generate(models["export"], prompt, Generation(max_codes=40))["codes"]
    np.testing.assert_array_equal(sample(temperature=1.0, top_k=1), greedy)


def test_sampling_helpers() -> None:
    logits = np.array([[0.0, 3.0, 1.0, 2.0]])
    rng = np.random.default_rng(0)
    assert pick(logits, np.zeros((1, 0), np.int64), Sampling(), rng).tolist() == [1]
    penalized = pick(logits, np.array([[1]]), Sampling(repetition_penalty=4.0), rng)
    assert penalized.tolist() == [3]  # 3.0 / 4 < 2.0
    nucleus = Sampling(temperature=1.0, top_p=0.5)
    assert {int(pick(logits, np.zeros((1, 0), np.int64), nucleus, rng)[0]) for _ in range(20)} == {
        1
    }
    assert kl_divergence(logits, logits)[0] == pytest.approx(0.0)
    assert kl_divergence(logits, logits[:, ::-1])[0] > 0.5


def test_controls_give_a_prompt(gpt_build: dict) -> None:
    task = gpt_build["ctx"].task
    feeds = task.request(SpeechCodesControls(text="Hello, world.", speaker=2, emotion=1))
    assert feeds["speaker_latents"].shape == (1, 32, 256) and feeds["text_ids"].shape[0] == 1
    other = task.request(SpeechCodesControls(text="Hello, world.", speaker=3, emotion=1))
    assert not np.array_equal(feeds["speaker_latents"], other["speaker_latents"])


def test_errors_are_clear(models: dict, gpt_build: dict, prompt) -> None:
    task = gpt_build["ctx"].task
    with pytest.raises(SpeedyError, match="more than the model's text position table") as error:
        task.text_ids("ab " * 200)
    assert "shorter sentences" in error.value.fix
    _, cache = task.prefill(models["export"], prompt)
    cache.tensors = {k: v for k, v in cache.tensors.items() if not k.endswith("_3")}
    with pytest.raises(SpeedyError, match=r"the cache holds 3 layers .* this model has 4"):
        task.step(models["export"], cache, np.zeros(1, np.int64))
    with pytest.raises(SpeedyError, match="exceed the model's 511 speech positions"):
        task.generate(models["export"], prompt, Generation(max_codes=600))
    with pytest.raises(SpeedyError, match="takes no audio or mel input"):
        task.inputs(np.zeros((80, 10), np.float32))


def test_a_missing_graph_is_named(gpt_build: dict, tmp_path: Path, speedy_cli) -> None:
    copy = Path(shutil.copytree(gpt_build["export"].path, tmp_path / "prefill_only"))
    manifest = gpt_build["export"].manifest
    (copy / "decode.onnx").unlink()
    only = manifest.model_copy(update={"graphs": {"prefill": manifest.graphs["prefill"]}})
    republish(copy, only)
    code, _, err = speedy_cli("bench", copy, "--repeat", "1", "--warmup", "0", "-o", tmp_path / "r")
    assert_clean_error(code, err, "has no graph 'decode'", "prefill")


@pytest.mark.slow
def test_dynamic_int8_reports_agreement_and_kl(gpt_build: dict, tmp_path: Path) -> None:
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    stage = make_stage("quantize", {"precision": "dynamic", "no_budget": True})  # seeded weights
    artifact = execute(stage, gpt_build["export"], tmp_path / "int8", gpt_build["ctx"])
    graphs = artifact.manifest.graphs
    assert {g.precision for g in graphs.values()} == {"int8-dynamic"}
    metrics = artifact.manifest.reports["quality"]["metrics"]
    assert set(metrics) == {"agreement", "divergence", "stop_diff", "kl"}
    assert 0 <= metrics["agreement"] <= 1 and metrics["kl"] >= 0
    # (the prefill keeps its code embedding, a Gather's table, in float)
    assert artifact.size_bytes < 0.5 * gpt_build["export"].size_bytes


def test_bench_reports_per_code_times(gpt_build: dict, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("Hello, world.\n你好，世界。\n")
    bench(
        BenchOptions(
            artifacts=[str(gpt_build["torch"].path), str(gpt_build["export"].path)],
            output=tmp_path / "report",
            data=texts,
            warmup=0,
            repeat=1,
            html=False,
        )
    )
    report = BenchReport.model_validate_json((tmp_path / "report" / "bench.json").read_text())
    figures = report.artifacts["export"].task_figures
    assert set(figures) >= {
        "prefill_ms",
        "decode_codes_per_s",
        "decode_ms_at_50",
        "decode_ms_at_1500",
    }
    assert figures["kv_bytes_per_code"] == 2 * 4 * 4 * 64 * 4  # layers x k,v x heads x dim x f32
    assert report.artifacts["export"].quality["agreement"] == 1.0  # the same codes as PyTorch
    assert report.artifacts["export"].speed.rtf > 0 and report.settings.chunk_frames is None
    assert "Task figures" in (tmp_path / "report" / "bench.md").read_text()


def test_sentences_are_read_with_speakers(gpt_build: dict) -> None:
    examples = gpt_build["ctx"].examples
    assert isinstance(examples[0], Sentence) and len(examples) == 20
    assert {e.speaker for e in examples} == {0, 1, 2, 3}
    assert Cache.of(np.ones((1, 3), np.int64), {}, 2).mask.tolist() == [[1, 1, 1, 0, 0]]


def test_codes_meet_a_codec_of_another_code_space(
    gpt_build: dict, codec_build: dict, speedy_cli, tmp_path: Path
) -> None:
    """A codes model alone, or with a codec of other codes, is refused in one line naming the
    code spaces; so is serving it."""
    gpt, codec = gpt_build["export"].path, codec_build["simplify"].path
    args = ["synth", "--text", "Hello.", "-o", tmp_path / "out.wav"]
    code, _, err = speedy_cli(*args, "--acoustic", gpt)
    assert_clean_error(code, err, "makes speech codes (1 codebook of 8,192 codes at 25 Hz)")
    code, _, err = speedy_cli(*args, "--acoustic", gpt, "--vocoder", codec)
    space = codec_build["ctx"].task.code_space()
    assert_clean_error(code, err, f"decodes {space}: different code spaces", "codec its codes")
    from speedy.serve.catalog import Catalog

    with pytest.raises(SpeedyError, match=rf"speech codes .*; \S+ decodes {re.escape(str(space))}"):
        Catalog.load([str(gpt), str(codec)], [], 0.25)
