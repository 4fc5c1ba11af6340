"""The codec_12hz family at its tiny shape through speedy's real stages: export of the three
graphs (encoder, decoder, decoder_step) and their parity, identical codes on real speech, exact
streaming with explicit state, exact chunked long audio, the encoder's derived left context,
quantization (the nearest-codebook search kept in float), bench's streaming figures, and one-line
errors for codes and states the model cannot take."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from pydantic import ValidationError

from speedy import runtime
from speedy.artifact import Artifact
from speedy.audio.io import list_audio, read_audio
from speedy.errors import SpeedyError
from speedy.families import codec_12hz_model as net
from speedy.families.codec_12hz import (
    Codec12HzParams,
    encoder_context,
    encoder_earliest,
    stack_codebooks,
)
from speedy.quality import snr_db
from speedy.specs import DimRange
from speedy.tasks.codec import Codec
from speedy.tasks.codec_stream import CodecState
from speedy.weight_pool import POOL
from tests.test_bench import one_clip  # noqa: F401 (a fixture)

FIXTURE = Path(__file__).parent / "fixtures" / "codec_12hz_tiny.yaml"
LJSPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech" / "wavs"
HOP = 1920
CHUNKS = (1, 3, 5, 1, 5, 3, 1, 1, 3, 2)  # 25 frames, more than the receptive field (16)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """torch, export and simplify artifacts of the tiny recipe (built once for this module)."""
    from speedy.pipeline import run_recipe
    from speedy.recipe import load_recipe

    build = tmp_path_factory.mktemp("codec_12hz")
    outcomes, ctx = run_recipe(load_recipe(str(FIXTURE)), build)
    return {"ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


@pytest.fixture(scope="module")
def onnx_model(built: dict) -> runtime.Model:
    return runtime.load(built["simplify"].path, threads=2)


@pytest.fixture(scope="module")
def task(built: dict) -> Codec:
    task = built["ctx"].task
    assert isinstance(task, Codec)
    return task


@pytest.fixture(scope="module")
def codes(task: Codec, onnx_model: runtime.Model) -> np.ndarray:
    """Codes of the default clips played end to end (the encoder graph's), 2 items."""
    audio = task.sized_inputs(task_examples(task), {"frames": sum(CHUNKS), "batch": 2})
    return onnx_model["encoder"].run(audio)["codes"]


def task_examples(task: Codec) -> list[np.ndarray]:
    from speedy.audio.cache import FeatureCache, default_cache_dir

    return task.read_data(task.default_data, FeatureCache(default_cache_dir()))


# ----------------------------------------------------------------------------------------------
# The family


def test_network_settings_are_the_network_dataclass() -> None:
    assert Codec12HzParams.model_validate({}).root == net.mimi()
    assert Codec12HzParams.model_validate({"window": 10, "ratios": [4, 2]}).root == net.mimi(
        window=10, ratios=(4, 2)
    )
    for settings, complaint in (
        ({"dim": 100, "heads": 8}, "dim / heads must be an even integer"),
        ({"ratios": [8, 0]}, "ratios must be positive"),
        ({"dims": 512}, "dims"),
    ):
        with pytest.raises(ValidationError, match=complaint):
            Codec12HzParams.model_validate(settings)


def test_encoder_context_is_exact() -> None:
    """In FP64, the latent a frame's code is chosen from changes with the derived earliest
    sample (inside the context's first frame), and not with the sample before it."""
    params = net.tiny()
    context = encoder_context(params)
    model = net.build(params).double()
    frame = context + 3
    audio = 0.1 * torch.randn(1, 1, (frame + 1) * HOP, generator=torch.Generator().manual_seed(0))

    def latent(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = model.downsample(model.encoder_transformer(model.encoder(x.double())))
        return out[..., frame]

    base = latent(audio)
    earliest = encoder_earliest(params, frame)
    assert (frame - context) * HOP <= earliest < (frame - context + 1) * HOP
    changes = []
    for sample in (earliest - 1, earliest, earliest + HOP // 2):
        moved = audio.clone()
        moved[..., sample] += 0.5
        changes.append((latent(moved) - base).abs().max().item())
    assert changes[0] == 0.0 and changes[1] > 0 and changes[2] > 0, changes
    assert (context, encoder_context(net.mimi())) == (12, 999)


def test_mimi_style_codebooks_are_stacked() -> None:
    usage = torch.tensor([2.0, 4.0])
    state = {
        f"quantizer.acoustic_residual_vector_quantizer.layers.{k}.codebook.{name}": value
        for k in (1, 0)
        for name, value in (("embed_sum", torch.full((2, 3), k + 1.0)), ("cluster_usage", usage))
    } | {"quantizer.acoustic_residual_vector_quantizer.input_proj.weight": torch.ones(1)}
    mapped = stack_codebooks(state)
    assert set(mapped) == {"quantizer.acoustic.codebooks", "quantizer.acoustic.input_proj.weight"}
    books = mapped["quantizer.acoustic.codebooks"]
    assert books.shape == (2, 2, 3) and books[1, 1, 0] == 2.0 / 4.0


# ----------------------------------------------------------------------------------------------
# Export and parity


def test_three_graphs_with_symbolic_dims_and_parity(built: dict) -> None:
    manifest = built["simplify"].manifest
    assert list(manifest.graphs) == ["encoder", "decoder", "decoder_step"]
    graphs = manifest.graphs
    assert graphs["encoder"].inputs[0].shape == ["batch", 1, "frames*1920"]
    assert graphs["decoder"].outputs[0].shape == ["batch", 1, "frames*1920"]
    step = graphs["decoder_step"]
    assert [s.name for s in step.inputs][:2] == ["codes", "state_in_upsample"]
    assert step.outputs[0].shape == ["batch", 1, "chunk*1920"]
    assert all(isinstance(d, int) for s in step.inputs[1:] for d in s.shape[1:])
    assert graphs["decoder"].files[1:] == step.files[1:] == [POOL]  # their weights stored once
    for stage in ("export", "simplify"):
        parity = built[stage].manifest.reports["parity"]
        assert parity["passed"] and parity["atol"] == 1e-4
        cases = {g: [c for c in parity["cases"] if c["graph"] == g] for g in graphs}
        assert [c["sizes"]["frames"] for c in cases["decoder"]] == [7, 23, 61]  # never traced
        assert all(c["max_abs_error"]["codes"] == 0 for c in cases["encoder"])
        assert max(c["max_abs_error"]["audio"] for c in cases["decoder"]) <= 1e-4
        assert len(cases["decoder_step"]) == 12  # 4 calls per size, states included
        assert max(max(c["max_abs_error"].values()) for c in cases["decoder_step"]) <= 1e-4
    settings = manifest.model.task_settings
    assert settings["samples_per_frame"] == HOP and settings["decoder_context"] == 16
    assert len(settings["state"]) == len(step.inputs) - 1


def test_onnx_codes_equal_torch_on_real_speech(built: dict, task: Codec) -> None:
    """The shared LJSpeech clips (22,050 Hz, resampled to 24 kHz): the FP32 ONNX encoder gives
    PyTorch's codes exactly, and the decoder 1,920 samples per frame."""
    clips = list_audio(LJSPEECH) if LJSPEECH.is_dir() else []
    if not clips:
        pytest.skip(f"no shared LJSpeech clips at {LJSPEECH}")
    reference = runtime.load(built["torch"].path)
    candidate = runtime.load(built["simplify"].path, threads=2)
    frames = 0
    for path in clips:
        audio = task.inputs(task.frames(read_audio(path, 24_000)))
        expected = reference["encoder"].run(audio)["codes"]
        found = candidate["encoder"].run(audio)["codes"]
        np.testing.assert_array_equal(found, expected, err_msg=path.name)
        frames += found.shape[-1]
    assert frames > 1000  # all 16 clips, about 100 s
    decoded = candidate["decoder"].run({"codes": found})["audio"]
    assert decoded.shape == (1, 1, found.shape[-1] * HOP)


# ----------------------------------------------------------------------------------------------
# Streaming and long audio


def test_decoder_step_chunks_equal_the_whole_decode(
    built: dict, task: Codec, onnx_model: runtime.Model, codes: np.ndarray
) -> None:
    whole = onnx_model["decoder"].run({"codes": codes})["audio"]
    streamer = task.streamer(0.08)
    assert streamer.chunk == 1
    state, pieces, start = streamer.start(onnx_model, 2), [], 0
    for size in CHUNKS:
        audio, state = streamer.step(onnx_model, codes[..., start : start + size], state)
        assert audio.shape == (2, 1, size * HOP)
        pieces.append(audio)
        start += size
    streamed = np.concatenate(pieces, axis=-1)
    assert state.frames == codes.shape[-1]
    for item in range(2):
        assert snr_db(whole[item, 0], streamed[item, 0]) >= 80
    # the state after the chunks equals the state after one call over all the frames, and
    # PyTorch's after the same chunks
    _, one_call = streamer.step(onnx_model, codes, streamer.start(onnx_model, 2))
    torch_model = runtime.load(built["torch"].path)
    torch_state, start = streamer.start(torch_model, 2), 0
    for size in CHUNKS:
        _, torch_state = streamer.step(torch_model, codes[..., start : start + size], torch_state)
        start += size
    for name, value in state.tensors.items():
        scale = max(np.abs(one_call.tensors[name]).max(), 1e-3)
        assert np.abs(value - one_call.tensors[name]).max() <= 1e-4 * scale, name
        assert np.abs(value - torch_state.tensors[name]).max() <= 1e-4 * scale, name


def test_stream_interface_takes_audio_or_codes_in_pieces(
    task: Codec, onnx_model: runtime.Model
) -> None:
    clips = task_examples(task)[:2]
    whole_audio = np.concatenate(clips)[None, None]
    whole = task.run(onnx_model, {"audio": whole_audio})
    streamer = task.streamer(0.25)  # 3 frames per call
    pieces = [task.inputs(clip) for clip in clips]  # the second encoded with left context
    streamed = np.concatenate(list(streamer.stream(onnx_model, pieces)))
    assert streamed.size == whole["audio"].size
    assert snr_db(whole["audio"].reshape(-1), streamed) >= 80
    from_codes = np.concatenate(list(streamer.stream(onnx_model, {"codes": whole["codes"]})))
    assert snr_db(whole["audio"].reshape(-1), from_codes) >= 80
    assert streamer.describe() == {"chunk": 3, "left": 0, "right": 0, "state_tensors": 20}


def test_long_audio_runs_in_exact_chunks(task: Codec, onnx_model: runtime.Model) -> None:
    """Past the graphs' frames range, `run` encodes in chunks with the encoder's derived left
    context and decodes through the step graph; the stateless chunked decode (the decoder's
    receptive field as context) is exact too."""
    audio = np.concatenate(task_examples(task))[None, None]  # 13.2 s, 165 frames
    whole = task.run(onnx_model, {"audio": audio})
    dims = dict(task.spec.dims) | {"frames": DimRange(min=1, opt=16, max=40)}
    short = Codec(task.spec.model_copy(update={"dims": dims}))
    chunked = short.run(onnx_model, {"audio": audio})
    np.testing.assert_array_equal(chunked["codes"], whole["codes"])
    assert snr_db(whole["audio"].reshape(-1), chunked["audio"].reshape(-1)) >= 80
    stateless = short.decode(onnx_model, whole["codes"], stateful=False)
    assert snr_db(whole["audio"].reshape(-1), stateless.reshape(-1)) >= 60
    assert stateless.shape == whole["audio"].shape == (1, 1, whole["codes"].shape[-1] * HOP)


# ----------------------------------------------------------------------------------------------
# Errors


def one_line(error: pytest.ExceptionInfo) -> str:
    assert isinstance(error.value, SpeedyError) and error.value.fix
    assert "\n" not in str(error.value)
    return error.value.problem


def test_codes_the_model_cannot_decode(task: Codec, onnx_model: runtime.Model, codes) -> None:
    bad = codes[:1, :, :4].copy()
    bad[0, 3, 2] = 2048
    with pytest.raises(SpeedyError) as error:
        task.decode(onnx_model, bad)
    assert one_line(error) == "code 2048 (item 0, codebook 3, frame 2) is outside 0..2047"
    streamer = task.streamer(0.08)
    with pytest.raises(SpeedyError) as error:
        streamer.step(onnx_model, codes[:1, :7, :4], streamer.start(onnx_model))
    assert one_line(error) == "codes have 7 codebooks, this model decodes 8"
    with pytest.raises(SpeedyError) as error:
        task.run(onnx_model, {"codes": codes[:1, :, :4].astype(np.float32)})
    assert one_line(error).startswith("codes must be integers shaped (batch, codebooks, frames)")


def test_a_state_from_another_model(task: Codec, onnx_model: runtime.Model, codes) -> None:
    streamer = task.streamer(0.08)
    state = streamer.start(onnx_model)
    stranger = CodecState("sha256:0123456789abcdef", 0, state.tensors)
    with pytest.raises(SpeedyError) as error:
        streamer.step(onnx_model, codes[:1, :, :1], stranger)
    assert one_line(error).startswith("the stream state was made by another model")
    # raw tensors of another shape (a model with another width) and of another batch
    other = dict(state.tensors) | {"state_in_attn_k0": np.zeros((1, 8, 249, 64), np.float32)}
    with pytest.raises(SpeedyError) as error:
        streamer.step(onnx_model, codes[:1, :, :1], other)
    assert one_line(error) == (
        "state tensor state_in_attn_k0 is (1, 8, 249, 64), this model's decoder_step takes "
        "(1, 4, 9, 48): a state from another model or batch"
    )
    with pytest.raises(SpeedyError) as error:
        streamer.step(onnx_model, codes[:, :, :1], state)  # batch 2, state of batch 1
    assert "a state from another model or batch" in one_line(error)
    missing = {k: v for k, v in state.tensors.items() if k != "state_in_upsample"}
    with pytest.raises(SpeedyError) as error:
        streamer.step(onnx_model, codes[:1, :, :1], missing)
    assert "lacks 1 of this model's 20 state tensors" in one_line(error)


# ----------------------------------------------------------------------------------------------
# Quantize and bench


@pytest.fixture(scope="module")
def quantized(built: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    """FP16 of every graph, and INT8 (static Q/DQ) of the decoder only."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    out = tmp_path_factory.mktemp("codec_12hz_q")
    options = {
        "fp16": {"precision": "fp16"},
        "int8": {"graphs": ["decoder"], "precision": "int8", "method": "minmax", "calib_size": 4},
    }
    return {
        name: execute(make_stage("quantize", o), built["simplify"], out / name, built["ctx"])
        for name, o in options.items()
    }


def test_quantize_keeps_the_codebook_search_in_float(quantized: dict[str, Artifact]) -> None:
    fp16 = quantized["fp16"].manifest
    assert fp16.precision == "fp16"
    report = fp16.reports["quantize"]
    tail = set(report["encoder"]["float_tail"])
    assert report["decoder"]["float_tail"] == report["decoder_step"]["float_tail"] == []
    encoder = onnx.load(str(quantized["fp16"].file("encoder")))
    kept = [n for n in encoder.graph.node if n.name in tail]
    assert {"ArgMin", "MatMul", "Gather", "Sub"} <= {n.op_type for n in kept}
    argmins = [n.name for n in encoder.graph.node if n.op_type == "ArgMin"]
    assert len(argmins) == 8 and set(argmins) <= tail  # one per codebook
    floats = {t.name for t in encoder.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert {"quantizer.semantic.input_proj.weight"} <= floats  # weights kept float32 too
    quality = fp16.reports["quality"]["metrics"]
    assert quality["pesq"] is not None and quality["snr"] > 15


def test_int8_decoder(quantized: dict[str, Artifact], built: dict) -> None:
    manifest = quantized["int8"].manifest
    assert manifest.precision == "encoder:fp32,decoder:int8,decoder_step:fp32"
    report = manifest.reports["quantize"]["decoder"]
    assert report["size_ratio"] < 0.35 and len(report["calibration"]["crops"]) == 4
    quality = manifest.reports["quality"]["metrics"]
    assert quality["codes"] == 1.0 and quality["pesq"] > 3.5  # seeded weights


def test_bench_streams_the_codec(
    built: dict,
    quantized: dict[str, Artifact],
    one_clip: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    from speedy.bench.command import bench
    from speedy.bench.options import BenchOptions
    from speedy.bench.results import BenchReport

    artifacts = [built["simplify"].path, quantized["fp16"].path]
    bench(
        BenchOptions(
            artifacts=[str(a) for a in artifacts],
            output=tmp_path / "report",
            data=one_clip,
            warmup=0,
            repeat=1,
            chunk_seconds=0.08,
            html=False,
        )
    )
    report = BenchReport.model_validate_json((tmp_path / "report" / "bench.json").read_text())
    assert report.settings.chunk_frames == 1
    assert report.settings.streaming == {"chunk": 1, "left": 0, "right": 0, "state_tensors": 20}
    for name, result in report.artifacts.items():
        assert result.speed.rtf > 0, name
        assert result.speed.first_chunk_p50_ms is not None, name
        assert result.speed.stream_rtf is not None, name
    written = json.loads((tmp_path / "report" / "bench.json").read_text())
    seams = [u["seam_snr_db"] for u in written["artifacts"]["simplify"]["utterances"]]
    assert min(seams) >= 80


def test_dynamo_export_of_a_step_graph_with_state_varargs(tmp_path: Path) -> None:
    """The export stage maps a graph's inputs onto `forward(codes, *state)` (the step graph's
    signature) and keeps a derived dim (`chunk*4`) tied to its base."""
    import onnxruntime as ort

    from speedy.families.base import GraphDef
    from speedy.specs import TensorSpec
    from speedy.stages.export import _export

    class Step(torch.nn.Module):
        def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            history = torch.cat([state[0], x], dim=-1)
            y = history[..., 1:] + history[..., :-1]
            return y.repeat_interleave(4, dim=-1), history[..., -1:] + state[1]

    graph = GraphDef(
        "step",
        [
            TensorSpec(name="x", dtype="float32", shape=["batch", 2, "chunk"]),
            TensorSpec(name="state_in_a", dtype="float32", shape=["batch", 2, 1]),
            TensorSpec(name="state_in_b", dtype="float32", shape=["batch", 2, 1]),
        ],
        [
            TensorSpec(name="y", dtype="float32", shape=["batch", 2, "chunk*4"]),
            TensorSpec(name="state_out_b", dtype="float32", shape=["batch", 2, 1]),
        ],
    )
    dims = {"batch": DimRange(min=1, opt=1, max=4), "chunk": DimRange(min=1, opt=3, max=64)}
    args = (torch.randn(2, 2, 3), torch.randn(2, 2, 1), torch.randn(2, 2, 1))
    _export(Step(), args, graph, dims, tmp_path / "step.onnx", "dynamo", 18)
    session = ort.InferenceSession(str(tmp_path / "step.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"x": np.ones((1, 2, 7), np.float32), "state_in_a": np.zeros((1, 2, 1), np.float32)}
    y, b = session.run(None, feeds | {"state_in_b": np.ones((1, 2, 1), np.float32)})
    assert y.shape == (1, 2, 28) and b.shape == (1, 2, 1)


def test_long_audio_tool_streams_a_codec(built: dict) -> None:
    """`speedy.bench.long_audio` (pieces of the data's audio, encoded with left context, decoded
    through the step graph chunk by chunk) gives the seconds asked for, to the frame."""
    from speedy.bench.long_audio import stream_long

    figures = stream_long(built["simplify"].path, 6.0, chunk_seconds=0.24, threads=2)
    assert 6.0 - 0.08 < figures["audio_seconds"] <= 6.0
    assert figures["chunks"] >= 6.0 / 0.24 and figures["rss_peak"] > 0


def quantized_pair(built: dict, out: Path, **options) -> Artifact:
    """The decoder and decoder_step quantized together (INT8, minmax ranges)."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    chosen = {"graphs": ["decoder", "decoder_step"], "precision": "int8", "calib_size": 4}
    stage = make_stage("quantize", chosen | {"method": "minmax", "no_budget": True} | options)
    return execute(stage, built["simplify"], out, built["ctx"])


def stream_and_whole(
    model: runtime.Model, task: Codec, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The audio of `codes` streamed through decoder_step in CHUNKS, and decoded whole."""
    streamer = task.streamer(0.08)
    state, pieces, start = streamer.start(model, codes.shape[0]), [], 0
    for size in CHUNKS:
        audio, state = streamer.step(model, codes[..., start : start + size], state)
        pieces.append(audio)
        start += size
    return np.concatenate(pieces, axis=-1), model["decoder"].run({"codes": codes})["audio"]


@pytest.mark.slow
def test_a_quantized_stream_equals_its_whole_decode(
    built: dict, task: Codec, tmp_path: Path
) -> None:
    """Quantized together (the default), the decoder and decoder_step keep float activations
    and store their layers' weights in int8, made float32 as the graphs load: the stream equals
    the whole decode as FP32's does, on codes no other test uses, and compiled for ONNX Runtime
    too (whose offline fusions would otherwise round the activations)."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    artifact = quantized_pair(built, tmp_path / "int8")
    assert (
        artifact.manifest.precision == "encoder:fp32,decoder:int8-weights,decoder_step:int8-weights"
    )
    report = artifact.manifest.reports["quantize"]
    for graph in ("decoder", "decoder_step"):
        assert report[graph]["int8_weight_layers"] == report[graph]["layers"] > 20
        assert report[graph]["size_ratio"] < 0.6  # the codebooks and biases stay float32
    shape = (2, task.codec.codebooks, sum(CHUNKS))
    codes = np.random.default_rng(2027).integers(0, task.codec.codebook_size, shape)
    float_whole = runtime.load(built["simplify"].path, threads=2)["decoder"].run({"codes": codes})
    compiled = execute(
        make_stage("compile", {"backend": "ort"}), artifact, tmp_path / "ort", built["ctx"]
    )
    for made in (artifact, compiled):
        model = runtime.load(made.path, threads=2)
        assert {
            s.session.get_session_options().get_session_config_entry("session.disable_quant_qdq")
            for s in (model["decoder"], model["decoder_step"])
        } == {"1"}
        streamed, whole = stream_and_whole(model, task, codes)
        assert np.abs(streamed - whole).max() <= 1e-4
        for item in range(2):
            assert snr_db(whole[item, 0], streamed[item, 0]) >= 80  # as FP32 streams
            assert snr_db(float_whole["audio"][item, 0], whole[item, 0]) < 60  # int8 weights


@pytest.mark.slow
def test_an_int8_stream_follows_the_int8_whole_decode(
    built: dict, task: Codec, codes: np.ndarray, tmp_path: Path
) -> None:
    """INT8 activations too (--no-exact-stream): the step graph takes its whole graph's layers
    and scales, so its stream rounds as the INT8 whole decode does, but where a float op that
    sums over a different number of frames (attention over the cache) moves a value across a
    rounding boundary. Calibrated on its own the step graph streamed 18 dB from the whole
    decode, as far as INT8 is from FP32."""
    artifact = quantized_pair(built, tmp_path / "int8", exact_stream=False)
    step = artifact.manifest.reports["quantize"]["decoder_step"]
    assert step["twin_of"] == "decoder" and step["twin_layers"] == step["layers"] > 20
    streamed, whole = stream_and_whole(runtime.load(artifact.path, threads=2), task, codes)
    assert np.array_equal(streamed[..., :HOP], whole[..., :HOP])  # the first chunk: no state yet
    float_whole = runtime.load(built["simplify"].path, threads=2)["decoder"].run({"codes": codes})
    for item in range(2):
        assert snr_db(whole[item, 0], streamed[item, 0]) >= 28
        assert snr_db(float_whole["audio"][item, 0], whole[item, 0]) < 25  # it is INT8
