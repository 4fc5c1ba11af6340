"""Sambert family: export parity, a TensorRT-safe graph, controls, weights and clear errors."""

import fnmatch
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from pydantic import ValidationError

from speedy.errors import SpeedyError
from speedy.families import resolve, sambert
from speedy.families.network import build_network
from speedy.recipe import load_recipe
from speedy.runtime import load
from speedy.stages.base import StageContext, execute
from speedy.stages.load import LoadStage
from speedy.stages.options import LoadOptions
from speedy.tasks import task_for
from speedy.tasks.text_to_mel import REFERENCE_EMOTION, SpeechControls
from tests.conftest import SAMBERT_TINY
from tests.onnx_shapes import data_dependent_shapes

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
TEXT = "你好，世界！Hello, world. 今天是2024年5月1日。"


@pytest.fixture(scope="module")
def session(sambert_build):
    return load(sambert_build["simplify"].path, threads=2)


@pytest.fixture(scope="module")
def task(sambert_build):
    return sambert_build["ctx"].task


def feeds_of(task, text: str = TEXT, **controls) -> dict[str, np.ndarray]:
    return task.request(SpeechControls(text=text, **controls))


def run_text(session, task, **controls) -> dict[str, np.ndarray]:
    return session.run(feeds_of(task, **controls))


@pytest.mark.parametrize("stage", ["export", "simplify"])
def test_parity_at_five_text_lengths(sambert_build, stage: str) -> None:
    parity = sambert_build[stage].manifest.reports["parity"]
    assert parity["passed"] and parity["atol"] <= 1e-3
    assert [case["sizes"]["tokens"] for case in parity["cases"]] == [1, 9, 48, 150, 300]
    for case in parity["cases"]:
        assert case["max_abs_error"]["mel"] <= 1e-3
        assert case["max_abs_error"]["mel_lengths"] == 0


def test_parity_inputs_cover_speakers_emotions_and_a_reference_clip(sambert_build, task):
    ctx = sambert_build["ctx"]
    sizes = ctx.spec.sizes(ctx.spec.parity.sizes[0])
    feeds = task.sized_inputs(ctx.examples, sizes)
    assert {0, 1, 2} <= set(feeds["speaker"].tolist())
    emotions = set(feeds["emotion"].tolist())
    assert emotions == {*range(len(task.s.emotions)), REFERENCE_EMOTION}
    clip = ctx.examples[0].reference  # a real LJSpeech clip's log-mel
    np.testing.assert_array_equal(feeds["reference_mel"][0], clip[:, : sizes["ref_frames"]])
    assert feeds["token_lengths"].max() == sizes["tokens"]


@pytest.mark.parametrize("stage", ["export", "simplify"])
def test_graph_has_dynamic_dims_and_no_data_dependent_shapes(sambert_build, stage) -> None:
    model = onnx.load(str(sambert_build[stage].file("model")))
    dims = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*model.graph.input, *model.graph.output]
    }
    assert dims["tokens"] == ["batch", "tokens"]
    assert dims["reference_mel"] == ["batch", 80, "ref_frames"]
    assert dims["speed"] == dims["pitch_shift"] == dims["speaker"] == dims["emotion"] == ["batch"]
    assert dims["mel"] == ["batch", 80, "frames"]
    assert "NonZero" not in {node.op_type for node in model.graph.node}
    assert data_dependent_shapes(model) == []


@pytest.mark.filterwarnings("ignore")
def test_data_dependent_shape_check_flags_a_naive_length_regulator(tmp_path: Path) -> None:
    class Naive(torch.nn.Module):  # FastSpeech2's usual length regulator
        def forward(self, x: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
            return torch.repeat_interleave(x, durations, dim=0)

    path = tmp_path / "naive.onnx"
    args = (torch.randn(5, 3), torch.tensor([1, 2, 3, 1, 2]))
    axes = {"x": {0: "tokens"}, "durations": {0: "tokens"}}
    names = ["x", "durations"]
    torch.onnx.export(Naive(), args, str(path), dynamo=False, dynamic_axes=axes, input_names=names)
    problems = data_dependent_shapes(onnx.load(str(path)))
    assert any("SplitToSequence" in p for p in problems), problems


def test_data_dependent_shape_check_flags_arange_of_summed_durations() -> None:
    helper = onnx.helper
    nodes = [
        helper.make_node("ReduceSum", ["durations"], ["total"], keepdims=0),
        helper.make_node("Shape", ["durations"], ["shape"]),  # shapes are fine
        helper.make_node("Reshape", ["durations", "shape"], ["same"]),
        helper.make_node("Range", ["zero", "total", "one"], ["frames"], name="arange"),
    ]
    int64 = onnx.TensorProto.INT64
    graph = helper.make_graph(
        nodes,
        "arange_sum",
        [helper.make_tensor_value_info("durations", int64, ["tokens"])],
        [helper.make_tensor_value_info("frames", int64, ["frames"])],
        initializer=[
            helper.make_tensor("zero", int64, [], [0]),
            helper.make_tensor("one", int64, [], [1]),
        ],
    )
    assert data_dependent_shapes(helper.make_model(graph)) == [
        "Range 'arange': input 1 (total) is computed from input values"
    ]


def test_speed_scales_the_output_length(session, task) -> None:
    lengths = {s: int(run_text(session, task, speed=s)["mel_lengths"][0]) for s in (0.5, 1, 2)}
    assert lengths[0.5] / lengths[1] == pytest.approx(2.0, abs=0.1)
    assert lengths[2] / lengths[1] == pytest.approx(0.5, abs=0.1)
    outputs = run_text(session, task, speed=2)
    assert np.all(outputs["mel"][0, :, lengths[2] :] == task.floor)  # padding is silence


def test_speaker_emotion_reference_and_pitch_change_the_mel(session, task, sambert_build):
    base = run_text(session, task)["mel"]
    reference = sambert_build["ctx"].examples[0].reference
    for controls in (
        {"speaker": 2},
        {"emotion": "angry"},
        {"reference": reference},
        {"pitch_shift": 3.0},
    ):
        mel = run_text(session, task, **controls)["mel"]
        common = min(mel.shape[2], base.shape[2])
        assert np.abs(mel[..., :common] - base[..., :common]).max() > 1e-3, controls
    np.testing.assert_array_equal(run_text(session, task)["mel"], base)


def test_padded_batch_items_match_single_runs(session, task) -> None:
    texts = ["今天天气很好，我们去公园散步吧。", "Good night."]
    singles = [task.handoff(session.run(feeds_of(task, t, speaker=1)))[0] for t in texts]
    ids = [task.front_end.encode(t) for t in texts]
    tokens = np.zeros((2, max(map(len, ids))), np.int64)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    feeds = {k: np.concatenate([v, v]) for k, v in feeds_of(task, texts[0], speaker=1).items()}
    feeds |= {"tokens": tokens, "token_lengths": np.array([len(r) for r in ids])}
    for single, batched in zip(singles, task.handoff(session.run(feeds)), strict=True):
        assert batched.shape == single.shape
        np.testing.assert_allclose(batched, single, atol=1e-4)


def test_quality_and_seconds(session, task) -> None:
    outputs = run_text(session, task)
    metrics = ["mel", "frames_diff"]
    assert task.compare(outputs, outputs, metrics) == {"mel": 0.0, "frames_diff": 0.0}
    noisy = outputs | {"mel": outputs["mel"] + 0.1}
    assert task.compare(outputs, noisy, metrics)["mel"] == pytest.approx(0.1, rel=1e-3)
    length = int(outputs["mel_lengths"][0])
    assert task.seconds(outputs) == pytest.approx(length * 256 / 22050)


def test_summary_measures_text_models(sambert_build) -> None:
    from speedy.summary import summarize

    artifacts = {"simplify": sambert_build["simplify"]}
    _, summary = summarize(artifacts, sambert_build["ctx"], repeats=1)
    assert summary["audio_seconds"] > 10  # 20 sentences of speech-like length
    assert summary["artifacts"]["simplify"]["rtf"] > 0


def test_state_dict_keys_are_documented() -> None:
    """Every key of the network matches a documented pattern, and every pattern some key."""
    doc = sambert.__doc__.split("State-dict keys:")[1].split("\n\n")[0]
    patterns = {
        p.replace("{i}", "[0-9]").replace("{j}", "[0-9]")
        for p in re.findall(r"`([^`]+\.[^`]+)`", doc)
    }
    keys = list(build_network(load_recipe("sambert_zh_en").model_spec()).state_dict())
    for key in keys:
        assert any(fnmatch.fnmatch(key, p) for p in patterns), key
    for pattern in patterns:
        assert any(fnmatch.fnmatch(key, pattern) for key in keys), pattern


def test_default_recipe_is_realistic_and_feeds_hifigan() -> None:
    recipe = load_recipe("sambert_zh_en")
    module = build_network(recipe.model_spec())
    parameters = sum(p.numel() for p in module.parameters())
    assert 3e6 < parameters < 8e6
    assert recipe.audio == load_recipe("hifigan_v1").audio


def test_trained_state_dict_is_loaded(tmp_path: Path, sambert_build) -> None:
    spec = sambert_build["ctx"].spec
    trained = build_network(spec.model_copy(update={"network": spec.network | {"seed": 99}}))
    checkpoint = tmp_path / "trained.pt"
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, checkpoint)
    task = sambert_build["ctx"].task
    ctx = StageContext(spec=spec, task=task, examples=sambert_build["ctx"].examples)
    artifact = execute(LoadStage(LoadOptions(checkpoint=checkpoint)), None, tmp_path / "t", ctx)
    feeds = feeds_of(task)
    inputs = resolve(spec).graphs()[0].inputs
    with torch.inference_mode():
        expected = trained(*[torch.from_numpy(feeds[s.name]) for s in inputs])[0]
    got = load(artifact.path).run(feeds)["mel"]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert np.abs(got - load(sambert_build["torch"].path).run(feeds)["mel"]).max() > 1e-2

    torch.save({"embedding.weight": torch.zeros(3, 3)}, checkpoint)
    with pytest.raises(SpeedyError, match="does not fit the sambert network"):
        execute(LoadStage(LoadOptions(checkpoint=checkpoint)), None, tmp_path / "bad", ctx)


@pytest.mark.parametrize("speed", [0.0, 0.2, 4.5, float("nan"), float("inf")])
def test_a_speed_out_of_reach_is_refused(speed: float) -> None:
    with pytest.raises(ValidationError, match="speed"):
        SpeechControls(text=TEXT, speed=speed)


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"speaker": 4}, "speaker 4 is out of range: this model has 4 speakers"),
        ({"speaker": -1}, "speaker -1 is out of range"),
        ({"emotion": "bored"}, "unknown emotion 'bored'"),
        ({"emotion": "happy", "reference": np.zeros((80, 5))}, "both an emotion label"),
        ({"reference": np.zeros((40, 5))}, "reference mel has shape (40, 5)"),
    ],
)
def test_bad_controls_are_clear_errors(task, controls: dict, message: str) -> None:
    with pytest.raises(SpeedyError) as info:
        feeds_of(task, **controls)
    assert message in str(info.value) and info.value.fix


def test_mel_model_has_no_waveform_and_takes_no_audio(task) -> None:
    assert task.waveforms({}) is None
    with pytest.raises(SpeedyError, match="takes no audio or mel input"):
        task.inputs(np.zeros((80, 10), np.float32))


def test_data_source_errors(tmp_path: Path) -> None:
    from speedy.audio.cache import FeatureCache

    task = task_for(load_recipe(str(SAMBERT_TINY)).model_spec())
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(SpeedyError, match=r"no text \(.txt\) files"):
        task.read_data(tmp_path, cache)
    (tmp_path / "comments.txt").write_text("# nothing but a comment\n\n")
    with pytest.raises(SpeedyError, match="no sentences"):
        task.read_data(tmp_path / "comments.txt", cache)
    (tmp_path / "emoji.txt").write_text("Hello.\n😀😀\n")
    with pytest.raises(SpeedyError, match=r"emoji.txt:2: text '😀😀' has nothing to say"):
        task.read_data(tmp_path / "emoji.txt", cache)
