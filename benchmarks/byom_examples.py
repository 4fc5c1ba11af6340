"""The README's two worked examples of bringing your own model, run as a user would (the CLI in
its own process), with their figures:

- a stateful ONNX model made elsewhere: a streaming voice-activity detector (conv front end,
  sequence-first GRU whose state is an input and an output, a sample-rate scalar), exported
  with torch.onnx outside speedy; `speedy import` ties the state's batch dim to the audio's,
  asks for the sample rate, then dynamic INT8, bench against the FP32 import;
- an LSTM decoder of one's own (log-mels through a 2-layer sequence-first LSTM, each frame
  projected to its 256 samples): `speedy export --model ... --io ...` (the error without
  `--rewrite lstm`, then with it: parity at unseen lengths), examples from the clips' log-mels
  (`fill: mel`), dynamic INT8 under the generic default budget, bench.

Both networks have seeded weights (no training): the figures are speed, size and error against
the float model, not sound quality. Writes benchmarks/results/byom_examples_cpu.json.

    python benchmarks/byom_examples.py [--repeat N] [--threads N]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from speedy.machine import machine_info, write_result

ROOT = Path(__file__).resolve().parent
CHUNK = 4096  # samples per detector call (256 ms at 16 kHz)
STATE = 256  # the detector's GRU width


class Detector(nn.Module):
    """A streaming VAD: audio [batch, samples] and GRU state [1, batch, STATE] in, a speech
    probability [batch, 1] and the next state out; `sr` scales the input (16 kHz: 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Conv1d(1, 128, kernel_size=256, stride=128)
        self.gru = nn.GRU(128, STATE)  # sequence-first, as most streaming models
        self.head = nn.Linear(STATE, 1)

    def forward(self, audio: torch.Tensor, state: torch.Tensor, sr: torch.Tensor):
        scale = torch.where(sr == 16000, 1.0, 16000.0 / sr.float())
        frames = torch.relu(self.front(audio.unsqueeze(1) * scale)).permute(2, 0, 1)
        out, next_state = self.gru(frames, state)
        return torch.sigmoid(self.head(out[-1])), next_state


DECODER = """
import torch
from torch import nn


class LstmDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(80, 512, num_layers=2)  # sequence-first
        self.out = nn.Linear(512, 256)  # a frame's 256 samples

    def forward(self, mel):
        hidden, _ = self.lstm(mel.permute(2, 0, 1))
        samples = torch.tanh(self.out(hidden)).permute(1, 0, 2)
        return samples.reshape(mel.shape[0], 1, -1)


def make():
    torch.manual_seed(0)
    return LstmDecoder().eval()
"""
DECODER_IO = """
inputs: [{name: mel, dtype: float32, shape: [batch, 80, frames], fill: mel}]
outputs: [audio]
dims: {batch: {min: 1, opt: 1, max: 4}, frames: {min: 8, opt: 64, max: 1024}}
audio: {output: audio, sample_rate: 22050}
"""


def export_detector(path: Path) -> None:
    """The detector as a model made elsewhere would come: torch.onnx, its own dim names."""
    torch.manual_seed(0)
    example = (torch.zeros(1, CHUNK), torch.zeros(1, 1, STATE), torch.tensor(16000))
    torch.onnx.export(
        Detector().eval(),
        example,
        str(path),
        input_names=["audio", "state", "sr"],
        output_names=["speech", "next_state"],
        dynamic_axes={"audio": {0: "batch", 1: "samples"}, "state": {1: "state_batch"}},
        dynamo=False,
    )


def speedy(*args: object, check: bool = True, cwd: Path | None = None) -> tuple[float, str]:
    """Run `speedy ARGS` in its own process; the wall seconds and what it printed."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "speedy", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if check and done.returncode:
        raise SystemExit(f"speedy {' '.join(map(str, args))} failed:\n{done.stderr}")
    return time.perf_counter() - start, (done.stdout + done.stderr).strip()


def said(output: str) -> list[str]:
    """What a command printed, less its notices (resampling, cache)."""
    return [line for line in output.splitlines() if not line.startswith(("notice:", "feature"))]


def bench(work: Path, artifacts: dict[str, Path], repeat: int, threads: int) -> dict:
    """`speedy bench` of the artifacts: per artifact its latency, size and error figures."""
    named = [f"{name}={path}" for name, path in artifacts.items()]
    report = work / "bench"
    speedy("bench", *named, "-o", report, "--repeat", repeat, "--threads", threads, "--no-html")
    found = json.loads((report / "bench.json").read_text())["artifacts"]
    return {
        name: {
            "latency_p50_ms": m["speed"]["latency_p50_ms"],
            "speedup": m["ratios"]["speedup"],
            "size_mb": m["size_bytes"] / 1e6,
            "rss_peak_mb": m["memory"]["rss_peak_bytes"] / 2**20,
            **m["quality"],
        }
        for name, m in found.items()
    }


def detector_example(work: Path, repeat: int, threads: int) -> dict:
    """Import (first without the sample rate, to show what it asks), dynamic INT8, bench."""
    model = work / "detector.onnx"
    export_detector(model)
    fills = ("--fill", "audio=audio")
    _, asked = speedy("import", model, "-o", work / "det", *fills, check=False)
    shapes = ("--shapes", "batch:1,1,4", "--shapes", f"samples:{CHUNK},{CHUNK},{4 * CHUNK}")
    fills = (*fills, "--fill", "sr=value:16000")
    seconds, imported = speedy("import", model, "-o", work / "det", *fills, *shapes)
    quantize = ("quantize", work / "det", "--precision", "dynamic", "-o", work / "det_int8")
    q_seconds, quantized = speedy(*quantize, "--threads", threads)
    artifacts = {"fp32": work / "det", "int8_dynamic": work / "det_int8"}
    return {
        "import_without_sample_rate": asked.splitlines()[-1],
        "import": said(imported),
        "quantize": quantized.splitlines()[-1],
        "seconds": {"import": seconds, "quantize": q_seconds},
        "bench": bench(work / "det_bench", artifacts, repeat, threads),
    }


def decoder_example(work: Path, repeat: int, threads: int) -> dict:
    """Export (first without the rewrite, to show the error), dynamic INT8, bench."""
    (work / "lstm_decoder.py").write_text(DECODER)
    (work / "io.yaml").write_text(DECODER_IO)
    export = ("export", "--model", "lstm_decoder:make", "--io", "io.yaml", "-o")
    _, refused = speedy(*export, "plain", check=False, cwd=work)
    seconds, exported = speedy(*export, "dec", "--rewrite", "lstm", cwd=work)
    quantize = ("quantize", "dec", "--precision", "dynamic", "-o", "dec_int8")
    q_seconds, quantized = speedy(*quantize, "--threads", threads, cwd=work)
    artifacts = {"fp32": work / "dec", "int8_dynamic": work / "dec_int8"}
    return {
        "export_without_rewrite": refused.splitlines()[-1],
        "export": said(exported),
        "quantize": quantized.splitlines()[-1],
        "seconds": {"export": seconds, "quantize": q_seconds},
        "bench": bench(work / "dec_bench", artifacts, repeat, threads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "byom_examples_cpu.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {
            "benchmark": "bring your own model: a stateful ONNX detector, an LSTM decoder",
            "weights": "seeded (no training): figures are speed, size and error vs float",
            "machine": machine_info(),
            "detector": detector_example(work, args.repeat, args.threads),
            "decoder": decoder_example(work, args.repeat, args.threads),
        }
    write_result(args.output, result, headline=["detector", "decoder"])


if __name__ == "__main__":
    main()
