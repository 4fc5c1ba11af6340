"""Property-based fuzzing of what speedy reads from users and from files it did not write:
manifests, recipes and input files. Whatever the content, reading it gives a value or a
SpeedyError (one clear line), never another exception. Bounded and derandomized for CI."""

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from speedy import runtime
from speedy.artifact import GRAPH_NAME, MANIFEST, Artifact
from speedy.audio.cache import FeatureCache
from speedy.backends.ort.section import SAFE_OPTIONS
from speedy.console import printable, shown
from speedy.errors import SpeedyError
from speedy.outputs import atomic_dir
from speedy.recipe import load_recipe
from tests.conftest import TINY_RECIPE

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["..", "/etc/passwd", "model.onnx", "os:getcwd", "sha256:00", "-1"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON-like document."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutations(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one to three places replaced by random values, or removed."""
    copy = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(copy)))
        if not path:
            copy = draw(json_values)
            continue
        parent = copy
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):  # an earlier change removed the place
            continue
    return copy


def _expect_clean(action) -> None:
    try:
        action()
    except SpeedyError as exc:
        assert exc.problem and exc.fix


@pytest.fixture(scope="module")
def artifact_copy(tiny_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("fuzz") / "simplify"
    shutil.copytree(tiny_build["simplify"].path, target)
    return target


def test_fuzzed_manifests(artifact_copy: Path, tiny_build: dict) -> None:
    original = json.loads((tiny_build["simplify"].path / MANIFEST).read_text())

    @FUZZ
    @given(mutations(original))
    def check(manifest: Any) -> None:
        (artifact_copy / MANIFEST).write_text(json.dumps(manifest))
        _expect_clean(lambda: runtime.load(artifact_copy, verify=not isinstance(manifest, list)))
        _expect_clean(lambda: Artifact.open(artifact_copy, verify=False))

    check()


graph_names = st.text(max_size=20) | st.sampled_from(
    ["../x", "/etc/x", "a/b", "..", "model", "decoder_step", "x\x1b[31m", "_1"]
)
ort_providers = st.sampled_from([*SAFE_OPTIONS, "EvilExecutionProvider"])
provider_options = st.dictionaries(
    st.sampled_from(sorted(set().union(*SAFE_OPTIONS.values())))
    | st.sampled_from(["trt_extra_plugin_lib_paths", "trt_engine_cache_path", "custom_op"])
    | st.text(max_size=10),
    st.text(max_size=8),
    max_size=3,
)


def test_fuzzed_graph_names_and_provider_options(artifact_copy: Path, tiny_build: dict) -> None:
    """An artifact opens only with plain graph names and provider options on the safe list."""
    original = json.loads((tiny_build["simplify"].path / MANIFEST).read_text())

    @FUZZ
    @given(graph_names, ort_providers, provider_options)
    def check(name: str, provider: str, options: dict[str, str]) -> None:
        manifest = json.loads(json.dumps(original))
        graph = manifest["graphs"].pop("model")
        settings = {"graph_optimization_level": "all", "providers": [[provider, options]]}
        manifest["graphs"][name] = graph | {"runtime": {"backend": "ort", "settings": settings}}
        (artifact_copy / MANIFEST).write_text(json.dumps(manifest))
        try:
            Artifact.open(artifact_copy, verify=False)
        except SpeedyError as exc:
            assert exc.problem and exc.fix
            return
        assert GRAPH_NAME.fullmatch(name)
        assert options.keys() <= SAFE_OPTIONS[provider]

    check()


output_names = st.text(st.characters(blacklist_characters="/"), max_size=16) | st.sampled_from(
    ["[/]x", "[bold red]x", "\x1b[2Jx", "..", ".", "a/b", "a/..", "x\n.wav"]
)  # names inside one directory: a path elsewhere is the user's to choose


def test_fuzzed_output_names(tmp_path: Path) -> None:
    """Whatever an output is called, it is written inside the place it names (or refused with
    one clear line), nothing is left beside it, and its name prints as it is."""
    root = tmp_path / "root"
    root.mkdir()
    console = Console(file=io.StringIO(), width=500, color_system=None)

    @FUZZ
    @given(output_names)
    def check(name: str) -> None:
        console.print(f"wrote {shown(name)}")
        printed = console.file.getvalue().splitlines()[-1]
        assert printed.rstrip() == f"wrote {printable(name)}".rstrip()
        out = root / name
        try:
            with atomic_dir(out, force=True) as work:
                (work / MANIFEST).write_text(json.dumps({"files": {}}))
        except (SpeedyError, OSError) as exc:
            assert not isinstance(exc, SpeedyError) or (exc.problem and exc.fix)
        assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]
        assert [p.name for p in tmp_path.iterdir()] == ["root"]

    check()


def test_fuzzed_recipes(tmp_path: Path) -> None:
    original = yaml.safe_load(TINY_RECIPE.read_text())
    path = tmp_path / "recipe.yaml"

    @FUZZ
    @given(mutations(original))
    def check(recipe: Any) -> None:
        path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
        _expect_clean(lambda: load_recipe(str(path)).model_spec())

    check()


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


arrays = st.builds(
    lambda shape, dtype, fill: np.full(shape, fill).astype(dtype),
    st.lists(st.integers(0, 90), min_size=0, max_size=4).map(tuple),
    st.sampled_from(["float32", "float64", "int16", "complex64", "bool", "uint8"]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
input_files = st.one_of(
    st.tuples(st.just(".npy"), st.binary(max_size=200)),
    st.tuples(st.just(".wav"), st.binary(max_size=200)),
    st.tuples(st.just(".npy"), arrays.map(lambda a: _npy_bytes(a))),
    st.tuples(
        st.just(".wav"),
        st.builds(
            _wav_bytes,
            st.lists(st.floats(-2, 2, allow_nan=False, width=32), max_size=3000).map(
                lambda v: np.asarray(v, np.float32).reshape(-1)
            ),
            st.sampled_from([8000, 22050, 44100]),
        ),
    ),
)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_fuzzed_input_files(tiny_build: dict) -> None:
    task = tiny_build["ctx"].task
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp) / "cache")

        @FUZZ
        @given(input_files)
        def check(item: tuple[str, bytes]) -> None:
            suffix, content = item
            path = Path(tmp) / f"input{suffix}"
            path.write_bytes(content)
            _expect_clean(lambda: task.read_data(path, cache))

        check()
