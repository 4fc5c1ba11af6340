"""Sambert family: export parity, a TensorRT-safe graph, controls, weights and clear errors."""

import fnmatch
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from speedy.errors import SpeedyError
from speedy.families import sambert
from speedy.families.sambert_model import REFERENCE_EMOTION
from speedy.onnx_shapes import data_dependent_shapes
from speedy.recipe import load_recipe
from speedy.runtime import load
from speedy.stages.base import StageContext, execute
from speedy.stages.load import LoadOptions, LoadStage
from tests.conftest import SAMBERT_TINY

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
TEXT = "你好，世界！Hello, world. 今天是2024年5月1日。"


@pytest.fixture(scope="module")
def session(sambert_build):
    return load(sambert_build["simplify"].path, threads=2)


@pytest.fixture(scope="module")
def family(sambert_build):
    return sambert_build["ctx"].spec.adapter()


def run_text(session, family, **controls) -> dict[str, np.ndarray]:
    return session.run(family.text_feeds(TEXT, **controls))


@pytest.mark.parametrize("stage", ["export", "simplify"])
def test_parity_at_five_text_lengths(sambert_build, stage: str) -> None:
    parity = sambert_build[stage].manifest.reports["parity"]
    assert parity["passed"] and parity["atol"] <= 1e-3
    assert [case["sizes"]["tokens"] for case in parity["cases"]] == [1, 9, 48, 150, 300]
    for case in parity["cases"]:
        assert case["max_abs_error"]["mel"] <= 1e-3
        assert case["max_abs_error"]["mel_lengths"] == 0


def test_parity_inputs_cover_speakers_emotions_and_a_reference_clip(sambert_build, family):
    ctx = sambert_build["ctx"]
    sizes = ctx.spec.sizes(ctx.spec.parity.sizes[0])
    feeds = family.feeds(ctx.features, sizes)
    assert {0, 1, 2} <= set(feeds["speaker"].tolist())
    emotions = set(feeds["emotion"].tolist())
    assert emotions == {*range(len(family.p.emotions)), REFERENCE_EMOTION}
    clip = ctx.features[0].reference  # a real LJSpeech clip's log-mel
    np.testing.assert_array_equal(feeds["reference_mel"][0], clip[:, : sizes["ref_frames"]])
    assert feeds["token_lengths"].max() == sizes["tokens"]


@pytest.mark.parametrize("stage", ["export", "simplify"])
def test_graph_has_dynamic_dims_and_no_data_dependent_shapes(sambert_build, stage) -> None:
    model = onnx.load(str(sambert_build[stage].model_file))
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


def test_speed_scales_the_output_length(session, family) -> None:
    lengths = {s: int(run_text(session, family, speed=s)["mel_lengths"][0]) for s in (0.5, 1, 2)}
    assert lengths[0.5] / lengths[1] == pytest.approx(2.0, abs=0.1)
    assert lengths[2] / lengths[1] == pytest.approx(0.5, abs=0.1)
    outputs = run_text(session, family, speed=2)
    assert np.all(outputs["mel"][0, :, lengths[2] :] == family.floor)  # padding is silence


def test_speaker_emotion_reference_and_pitch_change_the_mel(session, family, sambert_build):
    base = run_text(session, family)["mel"]
    reference = sambert_build["ctx"].features[0].reference
    for controls in (
        {"speaker": 2},
        {"emotion": "angry"},
        {"reference": reference},
        {"pitch_shift": 3.0},
    ):
        mel = run_text(session, family, **controls)["mel"]
        common = min(mel.shape[2], base.shape[2])
        assert np.abs(mel[..., :common] - base[..., :common]).max() > 1e-3, controls
    np.testing.assert_array_equal(run_text(session, family)["mel"], base)


def test_padded_batch_items_match_single_runs(session, family) -> None:
    texts = ["今天天气很好，我们去公园散步吧。", "Good night."]
    singles = [family.mels(session.run(family.text_feeds(t, speaker=1)))[0] for t in texts]
    ids = [family.front_end.encode(t) for t in texts]
    tokens = np.zeros((2, max(map(len, ids))), np.int64)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    feeds = {k: np.concatenate([v, v]) for k, v in family.text_feeds(ids[0], speaker=1).items()}
    feeds |= {"tokens": tokens, "token_lengths": np.array([len(r) for r in ids])}
    for single, batched in zip(singles, family.mels(session.run(feeds)), strict=True):
        assert batched.shape == single.shape
        np.testing.assert_allclose(batched, single, atol=1e-4)


def test_quality_and_seconds(session, family) -> None:
    outputs = run_text(session, family)
    assert family.quality(outputs, outputs) == {"mel": 0.0, "frames_diff": 0.0}
    noisy = outputs | {"mel": outputs["mel"] + 0.1}
    assert family.quality(outputs, noisy)["mel"] == pytest.approx(0.1, rel=1e-3)
    length = int(outputs["mel_lengths"][0])
    assert family.seconds(outputs) == pytest.approx(length * 256 / 22050)


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
    keys = list(load_recipe("sambert_zh_en").model_spec().build_module().state_dict())
    for key in keys:
        assert any(fnmatch.fnmatch(key, p) for p in patterns), key
    for pattern in patterns:
        assert any(fnmatch.fnmatch(key, pattern) for key in keys), pattern


def test_default_recipe_is_realistic_and_feeds_hifigan() -> None:
    recipe = load_recipe("sambert_zh_en")
    module = recipe.model_spec().build_module()
    parameters = sum(p.numel() for p in module.parameters())
    assert 3e6 < parameters < 8e6
    assert recipe.audio == load_recipe("hifigan_v1").audio


def test_trained_state_dict_is_loaded(tmp_path: Path, sambert_build) -> None:
    spec = sambert_build["ctx"].spec
    trained = spec.model_copy(update={"network": spec.network | {"seed": 99}}).build_module()
    checkpoint = tmp_path / "trained.pt"
    torch.save({"model": {f"module.{k}": v for k, v in trained.state_dict().items()}}, checkpoint)
    ctx = StageContext(spec=spec, features=sambert_build["ctx"].features)
    artifact = execute(LoadStage(LoadOptions(checkpoint=checkpoint)), None, tmp_path / "t", ctx)
    family = spec.adapter()
    feeds = family.text_feeds(TEXT)
    with torch.inference_mode():
        expected = trained(*[torch.from_numpy(feeds[s.name]) for s in spec.inputs()])[0]
    got = load(artifact.path).run(feeds)["mel"]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    assert np.abs(got - load(sambert_build["torch"].path).run(feeds)["mel"]).max() > 1e-2

    torch.save({"embedding.weight": torch.zeros(3, 3)}, checkpoint)
    with pytest.raises(SpeedyError, match="does not fit the sambert network"):
        execute(LoadStage(LoadOptions(checkpoint=checkpoint)), None, tmp_path / "bad", ctx)


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"speaker": 4}, "speaker 4 is out of range: this model has 4 speakers"),
        ({"speaker": -1}, "speaker -1 is out of range"),
        ({"emotion": "bored"}, "unknown emotion 'bored'"),
        ({"emotion": "happy", "reference": np.zeros((80, 5))}, "both an emotion label"),
        ({"reference": np.zeros((40, 5))}, "reference mel has shape (40, 5)"),
        ({"speed": 0.0}, "speed 0.0 is not a positive number"),
    ],
)
def test_bad_controls_are_clear_errors(family, controls: dict, message: str) -> None:
    with pytest.raises(SpeedyError) as info:
        family.text_feeds(TEXT, **controls)
    assert message in str(info.value) and info.value.fix


def test_mel_model_has_no_waveform_and_takes_no_audio(family) -> None:
    with pytest.raises(SpeedyError, match="outputs mel spectrograms"):
        family.waveform({})
    with pytest.raises(SpeedyError, match="takes no audio or mel input"):
        family.utterance(np.zeros((80, 10), np.float32))


def test_data_source_errors(tmp_path: Path) -> None:
    from speedy.audio.cache import FeatureCache

    family = load_recipe(str(SAMBERT_TINY)).model_spec().adapter()
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(SpeedyError, match=r"no text \(.txt\) files"):
        family.read_data(tmp_path, cache)
    (tmp_path / "comments.txt").write_text("# nothing but a comment\n\n")
    with pytest.raises(SpeedyError, match="no sentences"):
        family.read_data(tmp_path / "comments.txt", cache)
    (tmp_path / "emoji.txt").write_text("Hello.\n😀😀\n")
    with pytest.raises(SpeedyError, match=r"emoji.txt:2: text '😀😀' has nothing to say"):
        family.read_data(tmp_path / "emoji.txt", cache)
