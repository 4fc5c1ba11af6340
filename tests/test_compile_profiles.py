"""Optimization profiles: derived from real LJSpeech lengths, parsed from --shapes, selected."""

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from speedy.audio.cache import FeatureCache, default_cache_dir
from speedy.compile.profiles import (
    coverage_report,
    data_lengths,
    derive_profiles,
    length_dims,
    parse_shapes,
    split_range,
)
from speedy.errors import SpeedyError
from speedy.families import resolve
from speedy.recipe import load_recipe
from speedy.shapes import select_profile
from speedy.specs import DimRange, TensorSpec
from speedy.tasks import task_for

LJSPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "ljspeech" / "wavs"


@dataclass
class Graph:
    """The real HiFi-GAN V1's graph inputs and dims (no weights needed: profiles use shapes)."""

    inputs: list[TensorSpec]
    dims: dict[str, DimRange]


@pytest.fixture(scope="module")
def spec():
    return load_recipe("hifigan_v1").model_spec()


@pytest.fixture(scope="module")
def graph(spec) -> Graph:
    return Graph(resolve(spec).graphs()[0].inputs, spec.dims)


@pytest.fixture(scope="module")
def lj_lengths(spec, graph: Graph) -> dict[str, list[int]]:
    if not LJSPEECH.is_dir():
        pytest.skip(f"no shared LJSpeech clips at {LJSPEECH}")
    task = task_for(spec)
    examples = task.read_data(LJSPEECH, FeatureCache(default_cache_dir()))
    return data_lengths(graph.inputs, [task.inputs(e) for e in examples])


def test_length_and_batch_dims(graph: Graph) -> None:
    assert length_dims(graph.inputs) == ["frames"]  # batch sits on axis 0 only


def test_profiles_from_ljspeech_cover_every_clip(graph: Graph, lj_lengths) -> None:
    frames = lj_lengths["frames"]
    assert len(frames) == 16 and min(frames) < 200 and max(frames) > 800  # 1.8 s .. 10 s clips
    profiles = derive_profiles(graph.inputs, graph.dims, lj_lengths)
    assert len(profiles) > 1  # the lengths spread more than 4x: several profiles
    for profile in profiles:
        r = profile["frames"]
        assert r.max <= 4 * r.min and r.min <= r.opt <= r.max
        assert profile["batch"] == graph.dims["batch"]  # the data says nothing about batch
    ranges = [p["frames"] for p in profiles]
    assert ranges[0].min == min(frames) and ranges[-1].max == max(frames)
    assert all(b.min == a.max + 1 for a, b in itertools.pairwise(ranges))  # no gaps
    for n in frames:
        select_profile(profiles, {"batch": 1, "frames": n})  # raises if uncovered
    assert coverage_report(profiles, lj_lengths) | {"lengths": None} == {
        "clips": 16,
        "covered": 16,
        "lengths": None,
    }


def test_opt_is_the_median_length_inside_each_profile(graph: Graph) -> None:
    lengths = {"frames": [100, 110, 120, 130, 900, 1000, 1100]}
    profiles = derive_profiles(graph.inputs, graph.dims, lengths, span=4.0)
    assert [p["frames"].opt for p in profiles] == [115, 1000]


def test_max_seq_len_caps_and_extends(graph: Graph) -> None:
    lengths = {"frames": [150, 300, 450]}
    capped = derive_profiles(graph.inputs, graph.dims, lengths, max_seq_len=200)
    assert capped[-1]["frames"].max == 200 and capped[0]["frames"].min == 150
    extended = derive_profiles(graph.inputs, graph.dims, lengths, max_seq_len=2000)
    assert extended[-1]["frames"].max == 2000
    assert coverage_report(extended, lengths)["covered"] == 3
    with pytest.raises(SpeedyError, match=r"outside the recipe's frames range 8\.\.8192"):
        derive_profiles(graph.inputs, graph.dims, lengths, max_seq_len=10_000)


def test_shapes_override_one_dim_in_every_profile(graph: Graph) -> None:
    lengths = {"frames": [150, 900]}
    overrides = parse_shapes(["batch:1,4,8"], graph.inputs, graph.dims)
    profiles = derive_profiles(graph.inputs, graph.dims, lengths, overrides)
    assert len(profiles) == 2 and all(p["batch"] == DimRange(min=1, opt=4, max=8) for p in profiles)
    fixed = derive_profiles(
        graph.inputs,
        graph.dims,
        lengths,
        parse_shapes(["frames:8,512,4000"], graph.inputs, graph.dims),
    )
    assert fixed == [{"batch": graph.dims["batch"], "frames": DimRange(min=8, opt=512, max=4000)}]


def test_parse_shapes_by_dim_and_by_input(graph: Graph) -> None:
    assert parse_shapes(["frames:8,512,4000"], graph.inputs, graph.dims) == {
        "frames": DimRange(min=8, opt=512, max=4000)
    }
    assert parse_shapes(["mel:1x80x8,2x80x64,4x80x900"], graph.inputs, graph.dims) == {
        "batch": DimRange(min=1, opt=2, max=4),
        "frames": DimRange(min=8, opt=64, max=900),
    }


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("frames", "cannot parse --shapes 'frames'"),
        ("frames:8,512", "cannot parse --shapes"),
        ("frames:8,x,4000", "'x' is not a whole number"),
        ("frames:600,512,4000", "need 0 < min <= opt <= max"),
        ("frames:0,512,4000", "need 0 < min <= opt <= max"),
        ("speakers:1,2,3", "neither a dim nor an input"),
        ("frames:8,512,9000", "exceeds the recipe's range 8..8192"),
        ("mel:1x81x8,1x81x9,1x81x10", "axis 1 of mel is fixed at 80"),
        ("mel:1x8,1x9,1x10", "mel has rank 3"),
    ],
)
def test_malformed_shapes(graph: Graph, option: str, message: str) -> None:
    with pytest.raises(SpeedyError, match=re.escape(message)) as info:
        parse_shapes([option], graph.inputs, graph.dims)
    assert info.value.fix  # every such error says how to write it


def test_two_ranges_for_one_dim(graph: Graph) -> None:
    with pytest.raises(SpeedyError, match="gives frames two different ranges"):
        parse_shapes(["frames:8,16,32", "mel:1x80x8,1x80x64,1x80x128"], graph.inputs, graph.dims)


def test_select_profile_picks_nearest_opt_and_refuses_uncovered_sizes() -> None:
    profiles = [
        {"frames": DimRange(min=10, opt=20, max=40)},
        {"frames": DimRange(min=30, opt=80, max=160)},
    ]
    assert select_profile(profiles, {"frames": 12}) == 0
    assert select_profile(profiles, {"frames": 35}) == 0  # both cover 35; 20 is nearer than 80
    assert select_profile(profiles, {"frames": 60}) == 1
    with pytest.raises(SpeedyError, match=r"frames=200 are outside every optimization profile"):
        select_profile(profiles, {"frames": 200})


def test_split_range() -> None:
    assert split_range(100, 350, 4.0, 4) == [(100, 350)]
    parts = split_range(100, 10_000, 4.0, 8)
    assert len(parts) == 4 and parts[0][0] == 100 and parts[-1][1] == 10_000
    assert all(high <= 4 * low for low, high in parts)
    assert len(split_range(100, 10_000, 4.0, 2)) == 2  # capped: fewer, wider profiles
