"""What starting speedy costs: `speedy --help`, `speedy inspect` and loading an ONNX artifact
import neither torch nor any model family (their modules stay unimported until a command needs a
network)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "speedy.families", "transformers", "onnxruntime", "openvino", "tensorrt")
PROBE = """
import json, sys
sys.argv = {argv!r}
{work}
json.dump(sorted(sys.modules), open({out!r}, "w"))
"""
CLI = """
from speedy.cli import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
"""


def imported(tmp_path: Path, work: str, argv: list[str] | None = None) -> list[str]:
    """The modules a fresh interpreter holds after `work`."""
    out = tmp_path / "modules.json"
    code = PROBE.format(argv=argv or ["speedy"], work=work, out=str(out))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    return json.loads(out.read_text())


def heavy(modules: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    return [
        m
        for m in modules
        if any(m == h or m.startswith(h + ".") for h in HEAVY if h not in allowed)
    ]


@pytest.mark.parametrize("command", [["--help"], ["compile", "--help"], ["export", "--help"]])
def test_help_imports_nothing_heavy(tmp_path: Path, command: list[str]) -> None:
    assert heavy(imported(tmp_path, CLI, ["speedy", *command])) == []


def test_inspect_imports_nothing_heavy(tmp_path: Path, tiny_build: dict) -> None:
    argv = ["speedy", "inspect", str(tiny_build["simplify"].path)]
    assert heavy(imported(tmp_path, CLI, argv)) == []


def test_an_onnx_artifact_runs_without_torch_or_families(tmp_path: Path, tiny_build: dict) -> None:
    work = (
        "import numpy as np\n"
        "from speedy import runtime\n"
        f"model = runtime.load({str(tiny_build['simplify'].path)!r})\n"
        "audio = model.run({'mel': np.zeros((1, 80, 20), np.float32)})['audio']\n"
        "assert audio.shape[-1] > 0\n"
    )
    assert heavy(imported(tmp_path, work), allowed=("onnxruntime",)) == []
