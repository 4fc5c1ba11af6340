"""The shared runtime: one interface for every artifact kind, feeds checked before backends."""

import numpy as np
import pytest
import torch

from speedy import runtime
from speedy.backends.pytorch.session import ieee_fp32
from speedy.errors import SpeedyError
from speedy.measure import call_seconds, rtf_samples


def mel(frames: int, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, 80, frames)).astype(np.float32)


@pytest.mark.parametrize("stage", ["torch", "export", "simplify"])
def test_every_kind_loads_behind_one_interface(tiny_build: dict, stage: str) -> None:
    session = runtime.load(tiny_build[stage].path)
    assert [s.name for s in session.inputs] == ["mel"]
    assert [s.name for s in session.outputs] == ["audio"]
    assert session.manifest.lineage.stage == stage
    out = session.run({"mel": mel(40, batch=2)})["audio"]
    assert out.shape == (2, 1, 40 * 256) and out.dtype == np.float32


def test_load_by_model_file(tiny_build: dict) -> None:
    model = runtime.load(tiny_build["export"].file("model"))
    assert model.manifest.kind == "onnx" and model.graphs == ["model"]
    assert model["model"] is model.only()


def test_a_missing_graph_is_named(tiny_build: dict) -> None:
    with pytest.raises(SpeedyError, match="has no graph 'decode'") as error:
        runtime.load(tiny_build["export"].path)["decode"]
    assert "model" in error.value.fix


def test_torch_and_onnx_agree(tiny_build: dict) -> None:
    feeds = {"mel": mel(123)}
    expected = runtime.load(tiny_build["torch"].path).run(feeds)["audio"]
    actual = runtime.load(tiny_build["simplify"].path).run(feeds)["audio"]
    assert np.max(np.abs(expected - actual)) < 1e-5


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "missing input(s) ['mel']"),
        ({"mel": mel(20), "speaker": np.zeros(1)}, "unknown input(s) ['speaker']"),
        ({"mel": mel(20).astype(np.float64)}, "is float64, expected float32"),
        ({"mel": mel(20)[0]}, "has rank 2"),
        ({"mel": mel(20, batch=5)}, "batch=5 is outside the declared range 1..4"),
    ],
)
def test_feeds_are_checked_before_the_backend(tiny_build: dict, feeds: dict, message: str) -> None:
    session = runtime.load(tiny_build["export"].path)
    with pytest.raises(SpeedyError, match=None) as error:
        session.run(feeds)
    assert message in str(error.value)
    assert error.value.fix


def test_cuda_request_without_gpu_is_clear(tiny_build: dict) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SpeedyError, match="no CUDAExecutionProvider"):
        runtime.load(tiny_build["export"].path, device="cuda")
    with pytest.raises(SpeedyError, match="no CUDA GPU is available"):
        runtime.load(tiny_build["torch"].path, device="cuda")


def test_tensorrt_absent_is_clear(tiny_build: dict, tmp_path) -> None:
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed")
    except ImportError:
        pass
    from speedy.backends.trt.session import import_tensorrt

    with pytest.raises(SpeedyError, match=r"TensorRT is not installed.*openspeedy\[trt\]"):
        import_tensorrt()


def test_sessions_take_turns_on_every_repeat(tiny_build: dict) -> None:
    order: list[str] = []

    class Recording:
        def __init__(self, name: str) -> None:
            self.name, self.session = name, runtime.load(tiny_build[name].path)

        def run(self, feeds: dict) -> dict:
            order.append(self.name)
            return self.session.run(feeds)

    ctx = tiny_build["ctx"]
    sessions = {name: Recording(name) for name in ("torch", "simplify")}
    samples = rtf_samples(sessions, ctx.task, ctx.examples[:1], repeats=3, warmup=1)
    # a warm-up round (whose outputs give the audio seconds), then 3 timed ones
    assert order == ["torch", "simplify"] * 4
    assert {name: len(values) for name, values in samples.items()} == {"torch": 3, "simplify": 3}
    assert all(value > 0 for values in samples.values() for value in values)


def test_call_seconds_times_each_call_after_the_warm_up() -> None:
    calls = []
    seconds = call_seconds(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(seconds) == 3
    assert all(value >= 0 for value in seconds)
    assert len(call_seconds(lambda: calls.append(1), repeats=2, warmup=0)) == 2 and len(calls) == 7


def test_ieee_fp32_turns_tf32_off_and_restores_it() -> None:
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    with pytest.raises(RuntimeError), ieee_fp32():
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
        raise RuntimeError("a failing run")
    assert (conv.fp32_precision, matmul.fp32_precision) == before


def test_derived_dims_are_checked_against_their_base() -> None:
    """A dim derived from another ("frames*1920", "past+1") takes its size from its base."""
    from speedy.runtime import check_feeds
    from speedy.specs import DimRange, TensorSpec, symbol_sizes, symbols

    audio = TensorSpec(name="audio", dtype="float32", shape=["batch", 1, "frames*4"])
    mask = TensorSpec(name="mask", dtype="int64", shape=["batch", "frames+1"])
    dims = {"batch": DimRange(min=1, opt=1, max=2), "frames": DimRange(min=2, opt=4, max=8)}
    feeds = {"audio": np.zeros((1, 1, 12), np.float32), "mask": np.zeros((1, 4), np.int64)}
    assert check_feeds([audio, mask], dims, feeds) == {"batch": 1, "frames": 3}
    assert symbols([audio, mask]) == ["batch", "frames"]
    assert symbol_sizes([mask], {"mask": (2, 6)}) == {"batch": 2, "frames": 5}
    assert audio.resolve({"batch": 2, "frames": 5}) == (2, 1, 20)
    with pytest.raises(SpeedyError, match="has size 10 on axis 2, which is no frames\\*4"):
        check_feeds([audio], dims, {"audio": np.zeros((1, 1, 10), np.float32)})
    with pytest.raises(SpeedyError, match="inputs disagree on frames: 3 and 4"):
        check_feeds([audio, mask], dims, feeds | {"mask": np.zeros((1, 5), np.int64)})
    with pytest.raises(SpeedyError, match=r"frames=9 is outside the declared range 2\.\.8"):
        check_feeds([audio], dims, {"audio": np.zeros((1, 1, 36), np.float32)})


def test_graphs_that_take_turns_on_cpu_do_not_spin(tiny_build: dict, codec_build: dict) -> None:
    """ONNX Runtime's pool threads spin after a run by default; the graphs of a multi-graph
    artifact run in turns, so theirs sleep at once and leave the cores to the next graph. A
    lone graph keeps ORT's default."""

    def spinning(model: runtime.Model) -> set[str]:
        return {
            session.session.get_session_options().get_session_config_entry(
                "session.intra_op.allow_spinning"
            )
            for session in model.sessions.values()
        }

    assert spinning(runtime.load(codec_build["simplify"].path)) == {"0"}
    with pytest.raises(RuntimeError, match="does not have configuration"):  # ORT's default
        spinning(runtime.load(tiny_build["simplify"].path))
