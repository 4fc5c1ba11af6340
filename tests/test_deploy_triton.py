"""`speedy deploy triton`: every graph's config.pbtxt parsed back with tritonclient's ModelConfig
and checked against its I/O (every shipped recipe's graphs, and built artifacts' manifests), and
the repository's Python model run against a stand-in of Triton's Python backend whose BLS
requests run the repository's own ONNX files: the same audio as speedy's own loops."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from speedy import runtime
from speedy.chain import Chain
from speedy.recipe import BUILTIN, load_recipe
from speedy.specs import TensorSpec
from tests.test_cli_errors import assert_clean_error
from tests.triton_loop import ask, audio_of, loop_model_of

pytest.importorskip("tritonclient.grpc", reason="the [deploy] extra (tritonclient) is missing")
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from speedy.deploy.triton_repo import graph_config, write_repository

TEXT = "你好，世界！Hello, Triton."
NUMPY_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64",
               "int32": "TYPE_INT32", "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8"}  # fmt: skip


def check_tensors(declared: list, specs: list[TensorSpec], batched: bool) -> None:
    assert [t.name for t in declared] == [s.name for s in specs]
    for tensor, spec in zip(declared, specs, strict=True):
        assert pb.DataType.Name(tensor.data_type) == NUMPY_TYPES[spec.dtype]
        shape = spec.shape[1:] if batched else spec.shape
        assert list(tensor.dims) == [d if isinstance(d, int) else -1 for d in shape]


def check_config(text: str, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 dims: dict) -> pb.ModelConfig:  # fmt: skip
    config = text_format.Parse(text, pb.ModelConfig())
    assert config.name == name and config.platform == "onnxruntime_onnx"
    batched = config.max_batch_size > 0
    if batched:  # batching only where every tensor leads with the batch, up to its largest
        assert config.max_batch_size == dims["batch"].max
        assert all(s.shape[0] == "batch" for s in [*inputs, *outputs])
        assert config.HasField("dynamic_batching")
    check_tensors(list(config.input), inputs, batched)
    check_tensors(list(config.output), outputs, batched)
    return config


@pytest.mark.parametrize("recipe", sorted(p.stem for p in BUILTIN.glob("*.yaml")))
def test_every_graph_of_every_shipped_recipe(recipe: str, piper_import) -> None:
    from speedy.families import resolve

    spec = load_recipe(recipe).model_spec()
    if spec.family == "imported":
        graphs = [(n, g.inputs, g.outputs) for n, g in piper_import.manifest.graphs.items()]
        spec = piper_import.manifest.model
    else:
        if spec.family == "qwen_tokenizer_12hz" and not importlib.util.find_spec("qwen_tts"):
            pytest.skip("qwen-tts is not installed")
        graphs = [(g.name, g.inputs, g.outputs) for g in resolve(spec).graphs()]
    for graph, inputs, outputs in graphs:
        text = text_format.MessageToString(
            graph_config(f"{recipe}__{graph}", "onnx", inputs, outputs, spec.dims)
        )
        check_config(text, f"{recipe}__{graph}", inputs, outputs, spec.dims)


@pytest.fixture(scope="module")
def repository(sambert_build, tiny_build, codec_build, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    served = [str(sambert_build["simplify"].path), f"codec={codec_build['simplify'].path}"]
    write_repository(served, [f"hifigan={tiny_build['simplify'].path}"], out)  # as --vocoder
    return out


def test_configs_match_the_manifests(repository, sambert_build, tiny_build, codec_build) -> None:
    listed = json.loads((repository / "speedy-deploy.json").read_text())
    assert listed["target"].startswith("Triton Inference Server ")
    plan = json.loads((repository / "speedy" / "1" / "speedy_plan.json").read_text())
    assert plan["vocoders"] == ["hifigan"] and plan["served"][1] == "codec"
    artifacts = [sambert_build["simplify"], codec_build["simplify"], tiny_build["simplify"]]
    for entry, artifact in zip(plan["artifacts"], artifacts, strict=True):
        manifest = artifact.manifest
        assert set(entry["graphs"]) == set(manifest.graphs)
        for graph, model in entry["graphs"].items():
            declared = manifest.graphs[graph]
            check_config((repository / model / "config.pbtxt").read_text(), model,
                         declared.inputs, declared.outputs, manifest.model.dims)  # fmt: skip
            copied = repository / model / "1" / "model.onnx"
            assert copied.read_bytes() == artifact.file(graph).read_bytes()
    loop = text_format.Parse((repository / "speedy" / "config.pbtxt").read_text(), pb.ModelConfig())
    assert loop.backend == "python" and loop.model_transaction_policy.decoupled


@pytest.fixture(scope="module")
def loop_model(repository):
    with loop_model_of(repository) as loaded:
        yield loaded


def test_speech_whole_and_streamed_equals_speedys_own_chain(loop_model, sambert_build,
                                                           tiny_build) -> None:  # fmt: skip
    local = Chain(runtime.load(sambert_build["simplify"].path, threads=1),
                  runtime.load(tiny_build["simplify"].path, threads=1))  # fmt: skip
    controls = {"text": TEXT, "speaker": 1, "emotion": "happy"}
    expected = local(**controls).audio.reshape(-1)
    voice = f"{sambert_build['simplify'].path.parent.name}/simplify+hifigan"
    (whole,) = ask(loop_model, {"route": "tts", "voice": voice, **controls})
    audio = whole.tensors[0].as_numpy()
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert np.array_equal(audio, expected)
    streamed = ask(loop_model, {"route": "tts", "voice": voice, "stream": True, **controls})
    assert len(streamed) > 1
    chunks = audio_of(streamed)
    assert chunks.shape == expected.shape and np.abs(chunks - expected).max() <= 1e-4


def test_codec_codes_and_round_trip_equal_speedys_own(loop_model, codec_build) -> None:
    from speedy.recipe import DEFAULT_DATA
    from speedy.serve.catalog import Served
    from speedy.tasks import task_for

    clip = DEFAULT_DATA / "LJ001-0008.wav"
    local = runtime.load(codec_build["simplify"].path, threads=1)
    served = Served("codec", local, task_for(local.manifest.model))
    example = served.upload_task.read_upload(clip.read_bytes())
    (codes,) = ask(loop_model, {"route": "codes", "model": "codec"}, clip.read_bytes())
    expected = served.task.encode(local, example[None, None])[0]
    assert np.array_equal(codes.tensors[0].as_numpy(), expected)
    (audio,) = ask(loop_model, {"route": "vocode", "model": "codec"}, clip.read_bytes())
    assert np.array_equal(audio.tensors[0].as_numpy(), served.vocode(example).reshape(-1))


def test_a_bad_request_is_one_error_response(loop_model) -> None:
    (reply,) = ask(loop_model, {"route": "tts", "voice": "nobody", "text": "hi"})
    assert reply.has_error() and "unknown voice 'nobody'" in reply.error().message()
    (reply,) = ask(loop_model, {"route": "codes", "model": "codec"})
    assert reply.has_error() and "upload" in reply.error().message()


def test_unsupported_graphs_and_outputs_are_refused(speedy_cli, tiny_build, tmp_path) -> None:
    code, _, err = speedy_cli("deploy", "triton", str(tiny_build["torch"].path), "-o",
                              str(tmp_path / "repo"))  # fmt: skip
    assert_clean_error(code, err, "has no Triton backend")
    assert not (tmp_path / "repo").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    code, _, err = speedy_cli("deploy", "triton", str(tiny_build["simplify"].path), "-o",
                              str(tmp_path / "taken"))  # fmt: skip
    assert_clean_error(code, err, "already exists")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"


def test_a_chain_of_graphs_alone_is_also_an_ensemble(loop_model, repository, sambert_build,
                                                    tiny_build) -> None:  # fmt: skip
    """Sambert -> HiFi-GAN is one graph each: the repository also holds it as an ensemble (text
    model, cut of the mel to its length, vocoder) taking the text model's tensors. Run by a
    stand-in of Triton's ensemble scheduler over the repository's own models, one request
    gives speedy's chain audio bit for bit, the mel lengths telling where it ends."""
    from speedy.deploy.remote import engine_name

    _, stub = loop_model
    voice = f"{sambert_build['simplify'].path.parent.name}/simplify+hifigan"
    config = text_format.Parse((repository / engine_name(voice) / "config.pbtxt").read_text(),
                               pb.ModelConfig())  # fmt: skip
    acoustic = sambert_build["simplify"].manifest.graphs["model"]
    vocoder = tiny_build["simplify"].manifest.graphs["model"]
    check_tensors(list(config.input), acoustic.inputs, batched=True)
    check_tensors(list(config.output), [*vocoder.outputs, acoustic.outputs[1]], batched=True)
    local = Chain(runtime.load(sambert_build["simplify"].path, threads=1),
                  runtime.load(tiny_build["simplify"].path, threads=1))  # fmt: skip
    controls = {"text": "语音合成，ensemble test.", "speaker": 0, "emotion": "neutral"}
    feeds = local.request(**controls)
    outputs = stub.run_ensemble(config.name, [stub.Tensor(k, v) for k, v in feeds.items()])
    hop = tiny_build["simplify"].manifest.model.audio.hop_length
    (length,) = outputs["mel_lengths"]
    audio = outputs["audio"].reshape(-1)
    expected = local(**controls).audio.reshape(-1)
    assert audio.size == length * hop == expected.size and np.array_equal(audio, expected)
