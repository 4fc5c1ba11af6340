"""Data speedy reads from files it did not write itself (recipes, --io specs, calibration sets,
manifests, markers beside outputs): plain data only, nested no deeper than settings need, each
key given once."""

import json
from pathlib import Path
from typing import Any

import yaml

from speedy.errors import SpeedyError

MAX_DEPTH = 64  # lists and mappings inside each other; settings and manifests need under 10


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether the lists and dicts of `value` nest deeper than `limit` (found level by level,
    without recursion)."""
    level = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


def json_object(path: Path) -> dict[str, Any]:
    """The JSON object in file `path`; empty where it holds none (unreadable, not JSON, another
    kind of value, nested too deep to parse)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise SpeedyError(
                        f"key {key.value!r} is given twice (line {key.start_mark.line + 1})",
                        "keep one of them: YAML would silently use the last",
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """Settings from YAML text: no anchors or aliases, no key twice, nested no deeper than
    MAX_DEPTH; a SpeedyError otherwise (for the caller to name the file), or yaml.YAMLError."""
    depth = 0
    for event in yaml.parse(text):  # events: nothing built yet, no recursion
        if isinstance(event, yaml.AliasEvent):
            raise SpeedyError(
                "it uses YAML aliases (*name)",
                "write each value out: settings take no anchors or aliases",
            )
        depth += isinstance(event, yaml.CollectionStartEvent)
        depth -= isinstance(event, yaml.CollectionEndEvent)
        if depth > MAX_DEPTH:
            raise SpeedyError(
                f"it nests lists and mappings deeper than {MAX_DEPTH} levels",
                "write settings as plain `key: value` lines",
            )
    return yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader
