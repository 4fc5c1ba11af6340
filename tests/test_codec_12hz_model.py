"""codec_12hz network (tiny shape, CPU): codes, lengths, exact streaming, causality, the
quantizer's formula, the derived receptive field, and the three ONNX graphs against torch."""

import ast
import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

# Loaded from its file, not through the `speedy.families` package (whose __init__ needs
# pydantic): the module's contract is that it runs with torch and numpy alone.
MODULE_PATH = Path(__file__).resolve().parents[1] / "speedy" / "families" / "codec_12hz_model.py"
_spec = importlib.util.spec_from_file_location("codec_12hz_model", MODULE_PATH)
codec = importlib.util.module_from_spec(_spec)
sys.modules.setdefault(_spec.name, codec)
_spec.loader.exec_module(codec)

PARAMS = codec.tiny()
HOP = PARAMS.frame_samples  # 1,920
CHUNKS = (1, 3, 5, 1, 5, 3, 1, 1, 3)  # 23 frames: more than the receptive field (16)


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    reference, actual = np.asarray(reference, np.float64), np.asarray(actual, np.float64)
    error = np.sum((reference - actual) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(np.sum(reference**2) / error)


def speech_like(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Harmonics with a wandering pitch plus a little noise: [batch, 1, frames * 1920]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames * HOP) / PARAMS.sample_rate
    audio = []
    for _ in range(batch):
        f0 = 110 + 60 * torch.rand(1, generator=g) + 20 * torch.sin(2 * torch.pi * 1.5 * t)
        phase = 2 * torch.pi * torch.cumsum(f0, 0) / PARAMS.sample_rate
        wave = sum(0.2 / h * torch.sin(h * phase) for h in range(1, 6))
        audio.append(wave + 0.01 * torch.randn(t.shape, generator=g))
    return torch.stack(audio)[:, None].float()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors on a shared 2-core machine: more threads than free cores only stall."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> "codec.Codec12Hz":
    return codec.build(PARAMS)


@pytest.fixture(scope="module")
def codes(model) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(speech_like(2, sum(CHUNKS)))


def test_imports_only_torch_numpy_and_the_standard_library() -> None:
    tree = ast.parse(MODULE_PATH.read_text())
    roots = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert roots <= {"torch", "numpy", "__future__", *sys.stdlib_module_names}, roots


def test_parameter_counts() -> None:
    with torch.device("meta"):
        full = codec.part_parameters(codec.Codec12Hz(codec.mimi()))
    tiny = codec.part_parameters(codec.build(PARAMS))
    assert 4.5e6 < tiny["total"] < 5.5e6
    assert 48e6 < full["decoder"] < 53e6
    assert full["codebooks"] == 16 * 2048 * 256


def test_codes_shape_dtype_and_range(model, codes) -> None:
    assert codes.shape == (2, PARAMS.codebooks, sum(CHUNKS))
    assert codes.dtype == torch.int64
    assert codes.min() >= 0 and codes.max() < PARAMS.codebook_size
    assert all(len(codes[0, k].unique()) > 1 for k in range(PARAMS.codebooks))


def test_encode_pads_a_partial_frame_with_silence(model) -> None:
    audio = speech_like(1, 3)[..., : 2 * HOP + 700]
    with torch.no_grad():
        codes = model.encode(audio)
        padded = model.encode(torch.nn.functional.pad(audio, (0, HOP - 700)))
    assert codes.shape[-1] == 3
    assert torch.equal(codes, padded)


@pytest.mark.parametrize("frames", [1, 2, 7])
def test_decode_gives_1920_samples_per_frame(model, codes, frames) -> None:
    with torch.no_grad():
        audio = model.decode(codes[..., :frames])
    assert audio.shape == (2, 1, frames * HOP)
    assert audio.dtype == torch.float32
    assert torch.isfinite(audio).all()


def test_encoder_is_causal(model) -> None:
    audio = speech_like(2, 10, seed=3)
    with torch.no_grad():
        whole = model.encode(audio)
        head = model.encode(audio[..., : 6 * HOP])
    assert torch.equal(whole[..., :6], head)


def test_quantizer_formula_matches_brute_force_nearest_neighbour() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 17, 64, generator=g)
    book = torch.randn(2048, 64, generator=g)
    brute = ((x.double()[..., None, :] - book.double()) ** 2).sum(-1).argmin(-1)
    assert torch.equal(codec.nearest(x, book), brute)


def test_residual_quantizer_matches_brute_force(model) -> None:
    rvq = model.quantizer.acoustic
    latent = torch.randn(2, PARAMS.dim, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        codes = rvq.encode(latent)
        residual = rvq.input_proj(latent).transpose(1, 2).double()
        for k, book in enumerate(rvq.codebooks.double()):
            index = torch.cdist(residual, book[None].expand(2, -1, -1)).argmin(-1)
            assert torch.equal(codes[:, k], index)
            residual = residual - book[index]


def stream(model, codes: torch.Tensor, chunks) -> tuple[torch.Tensor, list[torch.Tensor]]:
    state, pieces, start = model.initial_state(codes.shape[0]), [], 0
    for size in chunks:
        audio, state = model.decode_step(codes[..., start : start + size], state)
        assert audio.shape == (codes.shape[0], 1, size * HOP)
        pieces.append(audio)
        start += size
    return torch.cat(pieces, dim=-1), state


def test_streaming_equals_the_whole_decode(model, codes) -> None:
    specs = model.state_specs()
    with torch.no_grad():
        whole = model.decode(codes)
        streamed, state = stream(model, codes, CHUNKS)
        _, one_call = stream(model, codes, [codes.shape[-1]])
    assert snr_db(whole.numpy(), streamed.numpy()) >= 80
    assert [tuple(s.shape) for s in state] == [s.concrete(2) for s in specs]
    for spec, a, b in zip(specs, state, one_call, strict=True):
        scale = max(b.abs().max().item(), 1e-3)
        assert (a - b).abs().max().item() <= 1e-5 * scale, spec.name


def test_state_specs_name_every_state_once(model) -> None:
    names = [s.name for s in model.state_specs()]
    assert len(names) == len(set(names))
    layers = PARAMS.transformer_layers
    cached = PARAMS.window - 1
    specs = {s.name: s for s in model.state_specs()}
    assert specs["attn_valid"].shape == ("batch", cached)
    assert specs[f"attn_k{layers - 1}"].shape == ("batch", PARAMS.heads, cached, 48)
    assert specs["upsample"].shape == ("batch", PARAMS.dim, 2)
    assert all(s.dtype == torch.float32 for s in specs.values())
    assert codec.state_specs(PARAMS) == model.state_specs()
    assert codec.state_specs(PARAMS, torch.float16)[0].as_dict() == {
        "name": "upsample",
        "input": "state_in_upsample",
        "output": "state_out_upsample",
        "shape": ["batch", PARAMS.dim, 2],
        "dtype": "float16",
        "meaning": specs["upsample"].meaning,
    }


def test_receptive_field_is_exact(model, codes) -> None:
    """Changing the code `frames` before a frame changes that frame's audio, one further back
    does not (in FP64, where the weakest path of influence, ~1e-9, stands out)."""
    frames = codec.receptive_field(PARAMS)["frames"]
    target = frames + 1  # the frame whose audio is checked
    exact = copy.deepcopy(model).double()
    reference = codes[:1, :, : target + 1]

    def change(offset: int) -> float:
        other = reference.clone()
        other[:, :, target - offset] = (other[:, :, target - offset] + 1) % PARAMS.codebook_size
        with torch.no_grad():
            a = exact.decode(reference)[..., target * HOP :]
            b = exact.decode(other)[..., target * HOP :]
        return ((a - b).abs().max() / a.abs().max()).item()

    assert change(frames) > 1e-12
    assert change(frames + 1) < 1e-15


def test_snake_stays_finite_in_fp16() -> None:
    snake = codec.Snake(4)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([1e-7, 1e-5, 1.0, 20.0]))
    x = torch.linspace(-30, 30, 64).expand(1, 4, -1)
    half = snake.half()(x.half())
    assert torch.isfinite(half).all()
    exact = x + torch.sin(snake.alpha.float()[:, None] * x) ** 2 / snake.alpha.float()[:, None]
    assert (half.float() - exact).abs().max() < 0.2


def test_weight_norm_folds_into_plain_weights() -> None:
    torch.manual_seed(0)
    normed = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 6, 3))
    plain = torch.nn.Conv1d(4, 6, 3)
    plain.load_state_dict(codec.fold_weight_norm(normed.state_dict()))
    x = torch.randn(1, 4, 9)
    torch.testing.assert_close(plain(x), normed(x))
    codec.remove_weight_norm(normed)
    assert set(normed.state_dict()) == {"weight", "bias"}


# ----------------------------------------------------------------------------------------------
# ONNX (torch.onnx.export, dynamo, opset 18): traced at batch 2 and 3 frames, run at others.

BATCH = torch.export.Dim("batch", min=1, max=64)


def export(module: torch.nn.Module, args: tuple, shapes, path: Path, names) -> ort.InferenceSession:
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=True,
        dynamic_shapes=shapes,
        opset_version=18,
        external_data=False,
        input_names=names[0],
        output_names=names[1],
        verbose=False,
    )
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    assert not ops & {"If", "Loop", "Scan"}, ops
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("codec_12hz_onnx")


def test_encoder_onnx_gives_identical_codes(model, onnx_dir) -> None:
    frames = torch.export.Dim("frames", min=1, max=4096)
    session = export(
        codec.Encoder(model),
        (speech_like(2, 3, seed=5),),
        {"audio": {0: BATCH, 2: HOP * frames}},
        onnx_dir / "encoder.onnx",
        (["audio"], ["codes"]),
    )
    for batch, n in ((1, 7), (3, 12)):
        audio = speech_like(batch, n, seed=n)
        (ort_codes,) = session.run(None, {"audio": audio.numpy()})
        with torch.no_grad():
            expected = model.encode(audio).numpy()
        assert ort_codes.dtype == np.int64
        np.testing.assert_array_equal(ort_codes, expected)


def test_decoder_onnx_matches_torch(model, codes, onnx_dir) -> None:
    frames = torch.export.Dim("frames", min=1, max=4096)
    session = export(
        codec.Decoder(model),
        (codes[..., :3],),
        {"codes": {0: BATCH, 2: frames}},
        onnx_dir / "decoder.onnx",
        (["codes"], ["audio"]),
    )
    for batch, n in ((1, 1), (2, 11), (2, sum(CHUNKS))):
        (audio,) = session.run(None, {"codes": codes[:batch, :, :n].numpy()})
        with torch.no_grad():
            expected = model.decode(codes[:batch, :, :n]).numpy()
        assert audio.shape == (batch, 1, n * HOP)
        np.testing.assert_allclose(audio, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_decoder_step_onnx_streams_like_the_whole_decode(model, codes, onnx_dir) -> None:
    step = codec.DecoderStep(model)
    specs = step.state_specs()
    chunk = torch.export.Dim("chunk", min=1, max=1024)
    session = export(
        step,
        (codes[..., :2], *step.initial_state(2)),
        ({0: BATCH, 2: chunk}, tuple({0: BATCH} for _ in specs)),
        onnx_dir / "decoder_step.onnx",
        (step.input_names(), step.output_names()),
    )
    assert [i.name for i in session.get_inputs()] == step.input_names()
    assert [o.name for o in session.get_outputs()] == step.output_names()
    state = [s.numpy() for s in step.initial_state(2)]
    torch_state = step.initial_state(2)
    pieces, start = [], 0
    for size in CHUNKS:
        piece = codes[..., start : start + size]
        feeds = {s.input_name: v for s, v in zip(specs, state, strict=True)}
        audio, *state = session.run(None, {"codes": piece.numpy()} | feeds)
        with torch.no_grad():
            expected, torch_state = step.decode_step(piece, torch_state)
        np.testing.assert_allclose(audio, expected.numpy(), atol=1e-4, rtol=0)
        pieces.append(audio)
        start += size
    with torch.no_grad():
        whole = model.decode(codes).numpy()
    assert snr_db(whole, np.concatenate(pieces, axis=-1)) >= 80
    for spec, ours, theirs in zip(specs, state, torch_state, strict=True):
        assert ours.shape == spec.concrete(2)
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4, rtol=0, err_msg=spec.name)
