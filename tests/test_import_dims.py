"""Importing models the tool has never seen (issue 36, items 1, 2 and the mel fill): every
missing dim in one error, dims the graph ties named once, integer scalars given a value, a
failing graph blamed on its fill rules, and log-mel examples from the clips."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from speedy.artifact import Artifact
from speedy.audio.cache import FeatureCache
from speedy.audio.io import read_audio
from speedy.audio.mel import log_mel, standard_audio
from speedy.data_source import DEFAULT_CLIPS
from speedy.importer import graph_io
from speedy.tasks import task_for
from tests.test_cli_errors import assert_clean_error


def _save(path: Path, nodes: list, inputs: list, outputs: list, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _stateful(path: Path) -> Path:
    """A detector shaped like a streaming VAD: audio [b, t], state [2, b, 16] and a sample-rate
    scalar in; a score [b, 1] and the next state out. Only the ops tie state's b to audio's."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    decay = numpy_helper.from_array(np.array(0.9, np.float32), "decay")
    nodes = [
        helper.make_node("ReduceMean", ["audio"], ["level"], axes=[1], keepdims=1),
        helper.make_node("ReduceMean", ["state"], ["memory"], axes=[0, 2], keepdims=0),
        helper.make_node("Unsqueeze", ["memory", "axes"], ["memory_1"]),
        helper.make_node("Add", ["level", "memory_1"], ["score"]),
        helper.make_node("Mul", ["state", "decay"], ["next_state"]),
    ]
    inputs = [
        helper.make_tensor_value_info("audio", TensorProto.FLOAT, [None, None]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, None, 16]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, []),
    ]
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1]),
        helper.make_tensor_value_info("next_state", TensorProto.FLOAT, [2, None, 16]),
    ]
    return _save(path, nodes, inputs, outputs, [axes, decay])


def test_one_import_names_every_missing_dim_and_ties_the_state(speedy_cli, tmp_path: Path) -> None:
    model = _stateful(tmp_path / "vad.onnx")
    inputs, outputs = graph_io(onnx.load(str(model)))
    assert [s.shape for s in inputs[:2]] == [["audio_d0", "audio_d1"], [2, "audio_d0", 16]]
    assert outputs[1].shape == [2, "audio_d0", 16]
    out = tmp_path / "vad"
    code, _, err = speedy_cli("import", model, "-o", out, "--fill", "sr=value:16000")
    assert_clean_error(
        code,
        err,
        "2 dim(s) have no range",
        "audio_d0: axis 0 of audio, axis 1 of state",
        "--shapes audio_d0:MIN,OPT,MAX --shapes audio_d1:MIN,OPT,MAX",
    )
    shapes = ["--shapes", "audio_d0:1,1,2", "--shapes", "audio_d1:512,1024,4096"]
    assert speedy_cli("import", model, "-o", out, "--fill", "sr=value:16000", *shapes)[0] == 0
    graph = Artifact.open(out).manifest.graph("model")
    assert graph.inputs[1].shape == [2, "audio_d0", 16]
    stored = onnx.load(str(out / "model.onnx")).graph.input[1].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in stored] == [2, "audio_d0", 16]


def test_a_recurrent_state_gets_the_batch_of_its_sequence(tmp_path: Path) -> None:
    """A GRU's initial state named apart from its input: shape inference leaves them apart, the
    op's own rule (initial_h has the sequence's batch) ties them."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name)
        for name, shape in (("W", (1, 24, 4)), ("R", (1, 24, 8)), ("B", (1, 48)))
    ]
    gru = helper.make_node("GRU", ["x", "W", "R", "B", "", "h0"], ["", "h1"], hidden_size=8)
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["steps", "batch", 4]),
        helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "state_batch", 8]),
    ]
    outputs = [helper.make_tensor_value_info("h1", TensorProto.FLOAT, [1, "h1_batch", 8])]
    model = _save(tmp_path / "gru.onnx", [gru], inputs, outputs, weights)
    inputs, outputs = graph_io(onnx.load(str(model)))
    assert inputs[1].shape == [1, "batch", 8] and outputs[0].shape == [1, "batch", 8]


def test_an_integer_scalar_needs_a_value(speedy_cli, tmp_path: Path) -> None:
    model = _stateful(tmp_path / "vad.onnx")
    shapes = ["--shapes", "audio_d0:1,1,2", "--shapes", "audio_d1:512,1024,4096"]
    code, _, err = speedy_cli("import", model, "-o", tmp_path / "out", *shapes)
    assert_clean_error(code, err, "integer scalar input(s) sr", "--fill sr=value:V")
    assert not (tmp_path / "out").exists()


def _branching(path: Path) -> Path:
    """y = x at 16 kHz; at any other rate a reshape its input cannot take (a failing branch)."""
    rate = numpy_helper.from_array(np.array(16000, np.int64), "rate")
    odd = numpy_helper.from_array(np.array([7, -1], np.int64), "odd")
    then = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y_then"])],
        "then",
        [],
        [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Reshape", ["x", "odd"], ["y_else"])],
        "else",
        [],
        [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Equal", ["sr", "rate"], ["is_16k"]),
        helper.make_node("If", ["is_16k"], ["y"], then_branch=then, else_branch=other),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]),
        helper.make_tensor_value_info("sr", TensorProto.INT64, []),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    return _save(path, nodes, inputs, outputs, [rate, odd])


def test_a_graph_failing_on_its_fills_names_them(speedy_cli, tmp_path: Path) -> None:
    model = _branching(tmp_path / "branch.onnx")
    args = ("import", model, "--shapes", "n:5,10,20")
    code, _, err = speedy_cli(*args, "-o", tmp_path / "bad", "--fill", "sr=value:8000")
    assert_clean_error(code, err, "ONNX Runtime failed to run graph 'model'", "sr=value:8000")
    assert not (tmp_path / "bad").exists()
    assert speedy_cli(*args, "-o", tmp_path / "ok", "--fill", "sr=value:16000")[0] == 0


def _mel_scorer(path: Path, mels: int) -> Path:
    """score [b, frames] = the mean over the mel axis of mel [b, mels, frames]."""
    nodes = [helper.make_node("ReduceMean", ["mel"], ["score"], axes=[1], keepdims=0)]
    inputs = [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["b", mels, "frames"])]
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["b", "frames"])]
    return _save(path, nodes, inputs, outputs)


def test_the_mel_fill_feeds_the_clips_log_mels(speedy_cli, tmp_path: Path) -> None:
    model, out = _mel_scorer(tmp_path / "mel.onnx", 80), tmp_path / "scorer"
    shapes = ["--shapes", "b:1,1,2", "--shapes", "frames:16,400,2000"]
    code, _, err = speedy_cli(
        "import", model, "-o", out, "--fill", "mel=mel", "--sample-rate", "22050", *shapes
    )
    assert code == 0, err
    spec = Artifact.open(out).manifest.model
    task = task_for(spec)
    clip = sorted(DEFAULT_CLIPS.glob("*.wav"))[0]
    example = task.read_data(clip, FeatureCache(tmp_path / "cache"))[0]["mel"]
    expected = log_mel(read_audio(clip, 22050), standard_audio(22050))[:, :2000]
    np.testing.assert_allclose(example[0], expected, rtol=1e-5, atol=1e-5)
    sized = task.sized_inputs([{"mel": example}], {"b": 2, "frames": 50})["mel"]
    np.testing.assert_array_equal(sized[0], example[0, :, :50])  # the clip's frames in turn
    np.testing.assert_array_equal(sized[1], example[0, :, 50:100])


def test_the_mel_fill_needs_a_mel_axis(speedy_cli, tmp_path: Path) -> None:
    model = _mel_scorer(tmp_path / "mel.onnx", 64)
    code, _, err = speedy_cli(
        "import", model, "-o", tmp_path / "out", "--fill", "mel=mel", "--shapes", "b:1,1,2",
        "--shapes", "frames:16,400,2000",
    )  # fmt: skip
    assert_clean_error(code, err, "has no axis of 80 mels", "n_mels")
