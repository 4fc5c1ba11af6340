"""GPT-TTS (IndexTTS2's GPT shape, seeded weights) greedy decoding speed on a GPU, standalone.

Needs only torch and numpy: loads `speedy/families/gpt_tts_model.py` by file path (the `speedy`
package itself imports pydantic). Batch 1, a prompt of 32 conditioning latents + 100 text tokens,
`--tokens` codes generated with the stop code disabled. Paths:

* eager_dynamic: PyTorch eager, Prefill then Decode steps concatenating the KV cache (the ONNX
  graphs' computation);
* eager_static_graph: StaticDecode (preallocated cache written in place), the whole greedy step
  (decode, argmax, buffer updates) captured once in a CUDA graph and replayed;
* compiled_static_graph: the same with StaticDecode compiled by torch.compile (`--compile-mode`,
  default inductor "default": fused Triton kernels, no autotuning) and captured in a manual CUDA
  graph; with `--compile-mode reduce-overhead` torch's own CUDA graphs are used instead;
* no_cache: the whole sequence recomputed every step (`--no-cache-tokens` steps): per-token time
  grows with the context.

Reports tokens/s (decode only, and end to end with prefill), prefill latency, peak GPU memory,
greedy agreement with eager_dynamic (FP16 may diverge: reported, not failed), compile seconds and
the device. Times are medians of `--repeats` runs after a warm-up, with torch.cuda.synchronize.

    python benchmarks/gpu_gpt_tts.py                      # H200: IndexTTS2 shape, FP16
    python benchmarks/gpu_gpt_tts.py --shape tiny --device cpu --tokens 40 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_model_module():
    """speedy.families.gpt_tts_model, without importing the speedy package (pydantic-free)."""
    name = "speedy.families.gpt_tts_model"
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "speedy" / "families" / "gpt_tts_model.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gtm = load_model_module()

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
SHAPES = {
    "indextts2": gtm.GptTtsConfig.indextts2,
    "mid": gtm.GptTtsConfig.mid,
    "tiny": gtm.GptTtsConfig.tiny,
}


def device_info(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    if device.type != "cuda":
        return {**info, "device": "cpu", "processor": platform.processor() or platform.machine()}
    props = torch.cuda.get_device_properties(device)
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        driver = ""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        **info,
        "device": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "driver": driver.splitlines()[0] if driver else None,
        "triton": triton_version,
    }


class Clock:
    """Wall time between synchronised points of the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


def first_divergence(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """Index of the first differing code (None: identical)."""
    diff = (a != b).nonzero()
    return None if diff.numel() == 0 else int(diff[:, -1].min())


def agreement(reference: torch.Tensor, codes: torch.Tensor) -> dict:
    return {
        "first_divergence_step": first_divergence(reference, codes),
        "equal_fraction": round(float((reference == codes).float().mean()), 4),
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.dtype = DTYPES[args.dtype]
        self.clock = Clock(self.device)
        self.cuda = self.device.type == "cuda"
        t0 = time.perf_counter()
        self.config = SHAPES[args.shape]()
        model = gtm.build(self.config)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.build_s = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(1234)
        d = self.config.d_model
        self.inputs = (
            torch.randn(1, self.config.cond_latents, d, generator=gen),
            torch.randn(1, d, generator=gen) * 0.1,
            torch.randint(2, self.config.text_vocab, (1, args.text), generator=gen),
            torch.ones(1, args.text, dtype=torch.int64),
        )
        self.inputs = tuple(
            x.to(self.device, self.dtype if x.is_floating_point() else torch.int64)
            for x in self.inputs
        )
        self.prefill = gtm.Prefill(self.model)
        self.decode = gtm.Decode(self.model)
        self.past = self.config.prefix_length(args.text)
        self.tokens = args.tokens
        self.results: dict = {}

    # -- helpers ----------------------------------------------------------------------------

    def peak_reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None

    def timed(self, run: Callable[[], tuple[torch.Tensor, float, float]]) -> dict:
        """Warm up once, then `repeats` runs of `run` -> (codes, prefill s, decode s)."""
        run()
        self.peak_reset()
        prefill, decode, codes = [], [], None
        for _ in range(self.args.repeats):
            codes, p, d = run()
            prefill.append(p)
            decode.append(d)
        p, d = statistics.median(prefill), statistics.median(decode)
        return {
            "codes": codes,
            "prefill_ms": round(p * 1e3, 3),
            "decode_ms_per_token": round(d * 1e3 / (self.tokens - 1), 4),
            "decode_tokens_per_s": round((self.tokens - 1) / d, 1),
            "end_to_end_tokens_per_s": round(self.tokens / (p + d), 1),
            "peak_allocated_mib": self.peak_mib(),
            "decode_s_runs": [round(x, 4) for x in decode],
        }

    @torch.no_grad()
    def run_prefill(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        logits, _, mask, *presents = self.prefill(*self.inputs)
        return logits.argmax(-1, keepdim=True), mask, presents

    # -- paths ------------------------------------------------------------------------------

    @torch.no_grad()
    def eager_dynamic(self) -> tuple[torch.Tensor, float, float]:
        clock, offset = self.clock, self.config.decode_position_offset
        t0 = clock()
        token, mask, presents = self.run_prefill()
        t1 = clock()
        codes = torch.empty(1, self.tokens, dtype=torch.int64, device=self.device)
        codes[:, 0:1] = token
        positions = torch.arange(offset, offset + self.tokens, device=self.device).view(1, -1)
        ones = torch.ones_like(mask[:, :1])
        for i in range(1, self.tokens):
            mask = torch.cat([mask, ones], dim=1)
            logits, _, *presents = self.decode(token, positions[:, i - 1 : i], mask, *presents)
            token = logits.argmax(-1, keepdim=True)
            codes[:, i : i + 1] = token
        t2 = clock()
        return codes, t1 - t0, t2 - t1

    @torch.no_grad()
    def no_cache(self, steps: int) -> dict:
        """Greedy steps recomputing the whole sequence; ms per step at the start and the end."""
        codes = torch.empty(1, 0, dtype=torch.int64, device=self.device)
        times = []
        for _ in range(steps):
            t0 = self.clock()
            logits, _ = self.model(*self.inputs, codes)
            codes = torch.cat([codes, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            times.append(self.clock() - t0)
        window = max(1, min(10, steps // 4))
        return {
            "codes": codes,
            "steps": steps,
            "tokens_per_s": round(steps / sum(times), 1),
            "first_ms_per_token": round(statistics.median(times[1 : 1 + window] or times) * 1e3, 3),
            "last_ms_per_token": round(statistics.median(times[-window:]) * 1e3, 3),
        }

    def static_path(self, compile_mode: str | None) -> dict:
        """StaticDecode (optionally compiled) run step by step, in a CUDA graph when on CUDA."""
        cfg, device = self.config, self.device
        max_len = self.past + self.tokens
        static = gtm.StaticDecode(self.model, 1, max_len, self.dtype, device)
        token = torch.zeros(1, 1, dtype=torch.int64, device=device)
        position = torch.zeros(1, 1, dtype=torch.int64, device=device)
        slot = torch.zeros(1, dtype=torch.int64, device=device)
        index = torch.zeros(1, dtype=torch.int64, device=device)
        codes = torch.zeros(1, self.tokens, dtype=torch.int64, device=device)
        use_graph = self.cuda and compile_mode != "reduce-overhead"
        step_module: Callable = static
        compile_s = None
        if compile_mode is not None:
            if hasattr(torch._dynamo, "mark_static_address"):
                for buffer in [*static.caches(), static.key_mask]:
                    torch._dynamo.mark_static_address(buffer)
            options = {"mode": compile_mode} if compile_mode != "default" else {}
            step_module = torch.compile(static, fullgraph=True, dynamic=False, **options)

        @torch.no_grad()
        def reset() -> None:
            first, mask, presents = self.run_prefill()
            static.load(presents, mask)
            token.copy_(first)
            codes[:, 0:1] = first
            position.fill_(cfg.decode_position_offset)
            slot.fill_(self.past)
            index.fill_(1)

        @torch.no_grad()
        def step() -> None:
            if compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            logits, _ = step_module(token, position, slot)
            nxt = logits.argmax(-1, keepdim=True)
            token.copy_(nxt)
            codes.index_copy_(1, index, nxt)
            position.add_(1)
            slot.add_(1)
            index.add_(1)

        reset()
        if compile_mode is not None:
            t0 = self.clock()
            step()  # compiles
            compile_s = self.clock() - t0
            reset()
        replay = step
        if use_graph:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(stream)
            reset()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            replay = graph.replay

        def run() -> tuple[torch.Tensor, float, float]:
            t0 = self.clock()
            reset()  # prefill + loading the static cache
            t1 = self.clock()
            for _ in range(self.tokens - 1):
                replay()
            t2 = self.clock()
            return codes.clone(), t1 - t0, t2 - t1

        result = self.timed(run)
        result["cuda_graph"] = "manual" if use_graph else compile_mode == "reduce-overhead"
        result["compile_mode"] = compile_mode
        result["compile_s"] = round(compile_s, 2) if compile_s is not None else None
        result["max_len"] = max_len
        return result

    # -- all --------------------------------------------------------------------------------

    def run(self) -> dict:
        args, t_start = self.args, time.perf_counter()
        params = gtm.parameter_count(self.model)
        report = {
            "benchmark": "gpu_gpt_tts",
            "shape": args.shape,
            "config": {
                "layers": self.config.layers,
                "d_model": self.config.d_model,
                "heads": self.config.heads,
                "parameters": params,
                "weights_mib": round(params * self.model.mel_head.weight.element_size() / 2**20, 1),
            },
            "dtype": args.dtype,
            "batch": 1,
            "prompt": {"cond": self.config.cond_latents, "text": args.text, "past": self.past},
            "tokens": self.tokens,
            "repeats": args.repeats,
            "stop_token": "disabled",
            "device": device_info(self.device),
            "build_s": round(self.build_s, 2),
            "paths": {},
        }
        paths = report["paths"]
        print(f"built {args.shape} ({params / 1e6:.1f} M parameters) in {self.build_s:.1f} s")

        paths["eager_dynamic"] = self.timed(self.eager_dynamic)
        print(f"eager_dynamic done at {time.perf_counter() - t_start:.1f} s")
        name = "eager_static_graph" if self.cuda else "eager_static"
        try:
            paths[name] = self.static_path(None)
        except Exception as error:  # report, keep the other results
            paths[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
        print(f"eager static done at {time.perf_counter() - t_start:.1f} s")
        if args.compile_mode != "none":
            name = "compiled_static_graph" if self.cuda else "compiled_static"
            try:
                paths[name] = self.static_path(args.compile_mode)
            except Exception as error:  # report, keep the other results
                paths[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
            print(f"compiled static done at {time.perf_counter() - t_start:.1f} s")
        if args.no_cache_tokens > 0:
            paths["no_cache"] = self.no_cache(min(args.no_cache_tokens, self.tokens))

        reference = paths["eager_dynamic"]["codes"]
        for result in paths.values():
            if "codes" in result:
                codes = result.pop("codes")
                n = codes.shape[1]
                result["agreement_with_eager_dynamic"] = agreement(reference[:, :n], codes)
                result["distinct_codes"] = len(set(codes[0].tolist()))
        fastest = max(
            (n for n in paths if "decode_tokens_per_s" in paths[n]),
            key=lambda n: paths[n]["decode_tokens_per_s"],
        )
        report["fastest"] = fastest
        report["speedup_fastest_vs_eager_dynamic"] = round(
            paths[fastest]["decode_tokens_per_s"] / paths["eager_dynamic"]["decode_tokens_per_s"], 2
        )
        report["elapsed_s"] = round(time.perf_counter() - t_start + self.build_s, 1)
        return report


def summary(report: dict) -> str:
    rows = [
        f"{'path':24} {'tok/s':>9} {'e2e tok/s':>9} {'ms/tok':>8} {'prefill ms':>10} "
        f"{'peak MiB':>9} {'diverge@':>8} {'compile s':>9}"
    ]
    for name, r in report["paths"].items():
        if "error" in r:
            rows.append(f"{name:24} ERROR {r['error'][:70]}")
            continue
        agree = r.get("agreement_with_eager_dynamic", {}).get("first_divergence_step")
        if name == "no_cache":
            rows.append(
                f"{name:24} {r['tokens_per_s']:>9} {'':>9} "
                f"{r['first_ms_per_token']:>4}->{r['last_ms_per_token']:<4} "
                f"{'':>10} {'':>9} {agree if agree is not None else '-':>8}  "
                f"({r['steps']} steps)"
            )
            continue
        rows.append(
            f"{name:24} {r['decode_tokens_per_s']:>9} {r['end_to_end_tokens_per_s']:>9} "
            f"{r['decode_ms_per_token']:>8} {r['prefill_ms']:>10} "
            f"{r['peak_allocated_mib'] if r['peak_allocated_mib'] is not None else '-':>9} "
            f"{agree if agree is not None else '-':>8} "
            f"{r.get('compile_s') if r.get('compile_s') is not None else '-':>9}"
        )
    dev = report["device"]
    head = (
        f"gpt_tts {report['shape']} {report['dtype']} batch 1, prompt {report['prompt']['past']} "
        f"steps, {report['tokens']} tokens, on {dev['device']} "
        f"(torch {dev['torch']}, cuda {dev.get('cuda')}, driver {dev.get('driver')})"
    )
    tail = f"fastest: {report['fastest']} ({report['speedup_fastest_vs_eager_dynamic']}x eager)"
    return "\n".join([head, *rows, tail, f"total {report['elapsed_s']} s"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="indextts2")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="fp16 on cuda")
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--text", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune-no-cudagraphs", "none"],
    )
    parser.add_argument("--no-cache-tokens", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpu_gpt_tts.json")
    args = parser.parse_args(argv)
    if args.dtype is None:
        args.dtype = "fp16" if args.device.startswith("cuda") else "fp32"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("CUDA is not available: use --device cpu (with --shape tiny)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tokens < 2:
        parser.error("--tokens must be >= 2")

    report = Bench(args).run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
