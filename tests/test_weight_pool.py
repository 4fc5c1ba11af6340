"""One copy of shared weights: the tiny GPT's prefill and decode store the weights they share
once, on disk, and sessions set to share them read one mapping of that file, with the codes of
the packed sessions. (The codec's decoder and step: tests/test_codec_12hz.py.)"""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from speedy import runtime
from speedy.artifact import Artifact
from speedy.errors import SpeedyError
from speedy.families.network import load_network
from speedy.onnx_io import external_tensors, load_onnx
from speedy.pipeline import make_stage
from speedy.stages.base import execute
from speedy.tasks.speech_codes import Generation
from speedy.weight_pool import ALIGN, POOL


def parameter_bytes(artifact: Artifact) -> int:
    network = load_network(artifact.manifest.model, artifact.file("prefill"))
    return sum(p.numel() * p.element_size() for p in network.parameters())


def test_graphs_store_shared_weights_once(gpt_build: dict) -> None:
    export = gpt_build["export"]
    graphs = export.manifest.graphs
    assert graphs["prefill"].files[1:] == [POOL] and graphs["decode"].files[1:] == [POOL]
    assert export.size_bytes <= 1.05 * parameter_bytes(gpt_build["torch"])
    decode = load_onnx(export.file("decode"), with_weights=False)
    pooled = external_tensors(decode)
    # every weight of decode beyond a few KB is in the pool, page-aligned
    assert len(pooled) >= 4 * 6 and {location for _, location in pooled} == {POOL}
    offsets = [int(next(e.value for e in t.external_data if e.key == "offset")) for t, _ in pooled]
    assert all(offset % ALIGN == 0 for offset in offsets)


def test_a_single_graph_artifact_is_left_alone(tiny_build: dict) -> None:
    export = tiny_build["export"]
    assert list(export.manifest.files) == ["model.onnx"]


@pytest.fixture(scope="module")
def shared(gpt_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    stage = make_stage("compile", {"backend": "ort", "ort_weights": "shared"})
    out = tmp_path_factory.mktemp("shared") / "ort"
    return execute(stage, gpt_build["export"], out, gpt_build["ctx"])


def test_shared_sessions_read_one_mapping_and_generate_the_same_codes(
    gpt_build: dict, shared: Artifact
) -> None:
    task, rng = gpt_build["ctx"].task, np.random.default_rng(2026)
    assert all(g.runtime.settings.weights == "shared" for g in shared.manifest.graphs.values())
    packed = runtime.load(gpt_build["export"].path, threads=2)
    model = runtime.load(shared.path, threads=2)
    prefill, decode = model["prefill"], model["decode"]
    assert prefill.files is decode.files and list(prefill.files.found) == [POOL]
    for length in (9, 40, 150):  # random prompts no other test uses
        prompt = task._prompt([rng.integers(2, 1000, length)], [int(rng.integers(0, 4))])
        want = task.generate(packed, prompt, Generation(max_codes=80))
        got = task.generate(model, prompt, Generation(max_codes=80))
        assert np.array_equal(want["codes"], got["codes"])
        np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-4)


def test_a_truncated_pool_is_refused(shared: Artifact, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(shared.path, tmp_path / "cut"))
    pool = copy / POOL
    pool.write_bytes(pool.read_bytes()[: pool.stat().st_size // 2])
    with pytest.raises(SpeedyError, match=r"declares .* bytes"):
        runtime.load(copy, threads=2, verify=False)


def test_a_triton_model_gets_its_own_weights_only(gpt_build: dict, tmp_path: Path) -> None:
    from speedy.deploy.triton_repo import _copy_graph

    export = gpt_build["export"]
    _copy_graph(export, "decode", tmp_path / "1")
    assert [p.name for p in (tmp_path / "1").iterdir()] == ["model.onnx"]
    copied = onnx.load(str(tmp_path / "1" / "model.onnx"))
    assert not external_tensors(copied)
    assert copied.SerializeToString() == load_onnx(export.file("decode")).SerializeToString()


def test_graph_statistics_read_no_external_data(gpt_build: dict) -> None:
    """What `speedy run`'s summary counts, from the graph file alone."""
    from speedy.onnx_io import graph_stats

    path = gpt_build["export"].file("decode")
    alone = graph_stats(load_onnx(path, with_weights=False))
    assert alone == graph_stats(load_onnx(path))
    assert alone["weight_bytes"] > 4 * 6 * 256 * 256 * 4  # 4 layers' projections, at least
