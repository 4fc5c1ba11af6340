"""Registries of families, tasks and backends: names listed without importing them, entries
imported on first use, plugins from other distributions through entry points."""

from importlib.metadata import EntryPoint

import pytest

from speedy import registry
from speedy.backends import BACKENDS, for_kind, kinds
from speedy.errors import SpeedyError
from speedy.families import FAMILIES
from speedy.registry import Registry
from speedy.tasks import TASKS


def test_builtin_names() -> None:
    assert {"ort", "torch", "trt", "aoti", "openvino"} <= set(BACKENDS.names())
    assert {"hifigan", "sambert", "codec_12hz", "gpt_tts", "custom"} <= set(FAMILIES.names())
    assert "vocoder" in TASKS and "text_to_wave" in TASKS
    assert kinds() == ["aoti", "onnx", "openvino", "torch", "trt"]
    assert for_kind("onnx").name == "ort" and for_kind("torch").name == "torch"


def test_a_plugin_joins_by_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = EntryPoint("dumb", "speedy.errors:SpeedyError", "speedy.things")
    monkeypatch.setattr(registry, "entry_points", lambda group: [plugin] if group == "g" else [])
    things: Registry[type] = Registry("thing", "g", {"own": "speedy.errors:OutOfRange"})
    assert things.names() == ["dumb", "own"]
    assert things.get("dumb") is SpeedyError


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(SpeedyError, match=r"unknown model family 'vits'.*use one of: codec_12hz"):
        FAMILIES.get("vits")
    with pytest.raises(SpeedyError, match="no backend loads graphs of kind 'tflite'"):
        for_kind("tflite")
