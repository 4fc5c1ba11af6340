"""Qwen3-TTS talker + code predictor (the `qwen-tts` classes, seeded weights) on a GPU: upstream
eager `generate` against a static-cache frame step replayed as a CUDA graph, in FP32, FP16 and
BF16, at 1 and 8 concurrent requests (issue 33).

Paths, greedy at both levels (upstream's repetition penalty on the first codes), every run
`--frames` frames long (the stop is disabled: the talker's stop id is moved past its vocabulary,
so upstream's suppression covers every control code and `generate` never stops):

* upstream_eager: the installed package's `Qwen3TTSForConditionalGeneration.generate` (HF
  generate, dynamic cache, its own prompt assembly), do_sample=False, subtalker_dosample=False,
  max_new_tokens=frames + 1;
* static_graph (static on CPU): the prompt assembled as upstream's `generate` (and speedy's
  frame_codes task) lays it out, the prefill of speedy.families.qwen_tts_graphs, then one frame
  per step over preallocated caches written in place: the talker's [batch, kv_heads, prompt +
  frames, head_dim] per layer (index_copy_ at the step's slot, attention under a key mask) and
  the code predictor's 16 slots. The whole frame step (talker decode of the previous frame, the
  first code's penalty, suppression and argmax, the predictor's 15 passes) is captured once as a
  CUDA graph and replayed; the first frame's step (no talker decode) is a second graph. It skips
  the talker decode after the last frame, which upstream runs and discards.

Every weight, norm, MLP, rotary table and rotary function is upstream's (qwen_tts_graphs'
helpers). Reports per dtype and batch: frames/s (all requests' frames over the whole run, prompt
included; per request; after the first frame), first-frame latency (from the call to the first
frame's 16 codes on the device, synchronised: prompt, prefill, first code, the predictor's first
pass), peak GPU memory, capture seconds, and code agreement with FP32 upstream eager (share of
equal codes over all codebooks, first divergent frame; reported, not failed). Times are medians
of `--repeats` runs after a warm-up, synchronised. FP32 is IEEE (no TF32).

Standalone on the lent machine (no pydantic): transformers 4.57.3 and qwen-tts 0.1.1 travel in
--vendor (made as benchmarks/gpu_qwen_tokenizer.py says); librosa (the speaker encoder's mel
filters, unused here) is stubbed where missing. Text ids are speedy's byte stand-in.

    python benchmarks/gpu_qwen_tts.py                         # 0.6B, fp32/fp16/bf16, batch 1 and 8
    python benchmarks/gpu_qwen_tts.py --device cpu --shape tiny --frames 12 --repeats 1 \
        --dtypes float32 --out /tmp/gpu_qwen_tts_smoke.json
"""

import argparse
import importlib
import importlib.util
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import gpu_codec as common  # device facts, IEEE FP32, JSON writer
import torch
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPES = {
    "0.6b": ROOT / "speedy" / "data" / "recipes" / "qwen3_tts_0.6b.yaml",
    "tiny": ROOT / "tests" / "fixtures" / "qwen3_tts_tiny.yaml",
}
DESCRIPTION = " ".join(__doc__.split("\n\n")[0].split())
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SPECIAL_CODES = 1024  # the talker vocabulary's last ids: control codes
ROLE, TAIL = 3, 5  # "<|im_start|>assistant\n" and "<|im_end|>\n<|im_start|>assistant\n"
NOT_CONFIG = ("generation", "text_tokenizer", "generate_frames", "seed")
PROMPTS = [  # (text, language, speaker: index into the sorted speakers, or None)
    ("The quick brown fox jumps over the lazy dog, and then it runs back home.", "auto", 0),
    ("今天天气很好，我们去公园散步吧。", "chinese", 1),
    ("Could you tell me the way to the railway station, please?", "english", None),
    ("Good night.", "auto", None),
    ("The meeting has been moved to Thursday morning at nine.", "english", 2),
    ("请把窗户打开，屋里有点儿闷。", "auto", 3),
    ("She bought 3 apples for $2.40 at the corner shop.", "english", 4),
    ("Benjamin Franklin was born in Boston in 1706.", "auto", 5),
]


def from_file(name: str) -> ModuleType:
    """speedy.families.<name>, loaded from its file (the package __init__ needs pydantic)."""
    full = f"speedy.families.{name}"
    if full not in sys.modules:
        path = ROOT / "speedy" / "families" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(full, path)
        sys.modules[full] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[full])
    return sys.modules[full]


def upstream_modules() -> tuple[ModuleType, ModuleType]:
    """(modeling, configuration) of the installed qwen-tts talker, without its package __init__
    files (the 25 Hz tokenizer, sox); the speech tokenizer loader (`from_pretrained` only) and,
    where missing, librosa (the speaker encoder's mel filters) are stand-ins."""
    for package in ("qwen_tts", "qwen_tts.core", "qwen_tts.inference"):
        if package not in sys.modules:
            sys.modules[package] = importlib.util.module_from_spec(
                importlib.util.find_spec(package)
            )
    loader = ModuleType("qwen_tts.inference.qwen3_tts_tokenizer")
    loader.Qwen3TTSTokenizer = None
    sys.modules.setdefault(loader.__name__, loader)
    if importlib.util.find_spec("librosa") is None:
        filters = ModuleType("librosa.filters")
        filters.mel = None
        sys.modules["librosa"], sys.modules["librosa.filters"] = ModuleType("librosa"), filters
    models = "qwen_tts.core.models"
    return (
        importlib.import_module(f"{models}.modeling_qwen3_tts"),
        importlib.import_module(f"{models}.configuration_qwen3_tts"),
    )


def configure(recipe: Path, configuration: ModuleType):
    """The recipe's network as upstream's `Qwen3TTSConfig`."""
    network = yaml.safe_load(recipe.read_text())["network"]
    return configuration.Qwen3TTSConfig(**{k: v for k, v in network.items() if k not in NOT_CONFIG})


def build(config, seed: int, modeling: ModuleType):
    """Upstream's model with seeded weights (as speedy's family builds it; the same on every
    device), its stop id moved past the vocabulary (never chosen, every control code
    suppressed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = modeling.Qwen3TTSForConditionalGeneration(config).eval()
    model.config.talker_config.codec_eos_token_id = config.talker_config.vocab_size
    return model


def requests(config) -> list[dict]:
    """PROMPTS as upstream's `generate` takes them, with speedy's byte stand-in text ids (the
    assistant turn, as frame_codes makes it) and the prompt's control codes."""
    tokens = {"<|im_start|>": config.im_start_token_id, "<|im_end|>": config.im_end_token_id}
    tokens["assistant"] = 256
    split = re.compile("(" + "|".join(map(re.escape, tokens)) + ")")
    t = config.talker_config
    speakers = sorted(t.spk_id or {})
    made = []
    for text, language, index in PROMPTS:
        turn = f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"
        ids = []
        for part in split.split(turn):
            ids += [tokens[part]] if part in tokens else list(part.encode())
        speaker = speakers[index % len(speakers)] if index is not None and speakers else None
        dialect = (t.spk_is_dialect or {}).get(speaker) if speaker else None
        code = t.codec_language_id.get(
            dialect if dialect and language in ("chinese", "auto") else language
        )
        prefix = (
            [t.codec_nothink_id, t.codec_think_bos_id, t.codec_think_eos_id]
            if code is None
            else [t.codec_think_id, t.codec_think_bos_id, code, t.codec_think_eos_id]
        )
        spoken = [t.spk_id[speaker]] if speaker else []
        spoken = [s[0] if isinstance(s, list) else s for s in spoken]
        codec = prefix + spoken + [t.codec_pad_id, t.codec_bos_id]
        made.append(
            {"text": text, "language": language, "speaker": speaker, "ids": ids, "codec": codec}
        )
    return made


def agreement(reference: torch.Tensor, codes: torch.Tensor) -> dict:
    """Share of equal codes [batch, groups, frames] and the first frame where any differs."""
    same = reference == codes
    differ = (~same).any(0).any(0).nonzero()
    return {
        "equal_fraction": round(float(same.float().mean()), 4),
        "first_divergent_frame": int(differ[0]) if differ.numel() else None,
    }


class Clock(common.Clock):
    def now(self) -> float:
        """Wall time at a synchronised point of the device."""
        self.sync()
        return time.perf_counter()


class Upstream:
    """upstream_eager: the installed package's `generate`, the first frame timed where its code
    predictor's first `generate` returns."""

    def __init__(self, model, items: list[dict], frames: int, penalty: float, clock: Clock):
        self.model, self.frames, self.penalty, self.clock = model, frames, penalty, clock
        device = next(model.parameters()).device
        self.ids = [torch.tensor([item["ids"]], device=device) for item in items]
        self.languages = [item["language"] for item in items]
        self.speakers = [item["speaker"] for item in items]

    @torch.no_grad()
    def run(self) -> tuple[torch.Tensor, float, float]:
        predictor, clock, marks = self.model.talker.code_predictor, self.clock, []
        original = predictor.generate

        def first_pass(*args, **kwargs):
            out = original(*args, **kwargs)
            if not marks:
                marks.append(clock.now())
            return out

        predictor.generate = first_pass
        try:
            start = clock.now()
            codes, _ = self.model.generate(
                input_ids=self.ids,
                languages=self.languages,
                speakers=self.speakers,
                do_sample=False,
                subtalker_dosample=False,
                repetition_penalty=self.penalty,
                max_new_tokens=self.frames + 1,
            )
            end = clock.now()
        finally:
            del predictor.generate
        return torch.stack(codes).transpose(1, 2), marks[0] - start, end - start


class Static:
    """static_graph: preallocated caches written in place; a frame step over them, captured as
    a CUDA graph on CUDA (run as it is on CPU)."""

    def __init__(self, model, modeling: ModuleType, items: list[dict], frames: int, penalty: float):
        graphs = from_file("qwen_tts_graphs")
        self.graphs, self.modeling, self.frames, self.penalty = graphs, modeling, frames, penalty
        self.config, self.talker = model.config, model.talker
        self.predictor = self.talker.code_predictor
        self.parameter = next(model.parameters())
        device, dtype = self.parameter.device, self.parameter.dtype
        self.prefill = graphs.Prefill(self.talker, modeling)
        self.rotary = graphs.Talker(self.talker, modeling)
        self.items = [
            (torch.tensor([i["ids"]], device=device), torch.tensor([i["codec"]], device=device))
            for i in items
        ]
        t, p = self.config.talker_config, self.predictor.config
        batch, groups = len(items), t.num_code_groups
        self.prompt_length = max(len(i["codec"]) + ROLE for i in items)
        slots = self.prompt_length + frames

        def zeros(*shape: int, kind: torch.dtype = dtype) -> torch.Tensor:
            return torch.zeros(*shape, dtype=kind, device=device)

        long, layers = torch.int64, t.num_hidden_layers
        self.keys = [zeros(batch, t.num_key_value_heads, slots, t.head_dim) for _ in range(layers)]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.key_mask = zeros(batch, 1, 1, 1, slots, kind=torch.bool)
        shape = (batch, p.num_key_value_heads, groups, p.head_dim)
        self.predictor_keys = [zeros(*shape) for _ in range(p.num_hidden_layers)]
        self.predictor_values = [torch.zeros_like(k) for k in self.predictor_keys]
        self.causal = torch.ones(groups, groups, dtype=torch.bool, device=device).tril()
        positions = torch.arange(groups, device=device)[None].expand(batch, -1)
        self.cos, self.sin = self.predictor.model.rotary_emb(zeros(1), positions)
        self.control = torch.arange(t.vocab_size, device=device) >= t.vocab_size - SPECIAL_CODES
        self.logits, self.hidden = zeros(batch, t.vocab_size), zeros(batch, t.hidden_size)
        self.texts = zeros(batch, frames, t.hidden_size)
        self.real, self.made = zeros(batch, 1, kind=long), zeros(1, kind=long)
        self.seen = zeros(batch, t.vocab_size, kind=torch.bool)
        self.frame, self.codes = (
            zeros(batch, groups, kind=long),
            zeros(batch, groups, frames, kind=long),
        )
        self.first_step, self.step = self.predict, self.frame_step

    # -- the prompt and the prefill (eager) -------------------------------------------------

    def load(self) -> None:
        """The prompt's embeddings (upstream's layout, left padding), its prefill, and the
        caches, streamed text and counters loaded for the first frame."""
        t, c = self.talker, self.config

        def text(ids: torch.Tensor) -> torch.Tensor:
            return t.text_projection(t.get_text_embeddings()(ids))

        special = [[c.tts_bos_token_id, c.tts_eos_token_id, c.tts_pad_token_id]]
        bos, eos, pad = text(torch.tensor(special, device=self.parameter.device))[0]
        self.key_mask.zero_()
        self.seen.zero_()
        self.made.zero_()
        self.texts.copy_(pad.expand_as(self.texts))
        embeds = pad.new_zeros(len(self.items), self.prompt_length, pad.shape[-1])
        mask = torch.zeros(embeds.shape[:2], dtype=torch.int64, device=pad.device)
        for i, (ids, codec_ids) in enumerate(self.items):
            codec = t.get_input_embeddings()(codec_ids)[0]
            controls = torch.cat([pad.expand(len(codec) - 2, -1), bos[None]]) + codec[:-1]
            first = text(ids[:, ROLE : ROLE + 1])[0] + codec[-1:]
            prompt = torch.cat([text(ids[:, :ROLE])[0], controls, first])
            embeds[i, -len(prompt) :], mask[i, -len(prompt) :] = prompt, 1
            streamed = torch.cat([text(ids[:, ROLE + 1 : -TAIL])[0], eos[None]])[: self.frames]
            self.texts[i, : len(streamed)] = streamed
        logits, hidden, _, *presents = self.prefill(embeds, mask)
        for cache, present in zip(
            [*self.keys, *self.values], [*presents[::2], *presents[1::2]], strict=True
        ):
            cache[:, :, : self.prompt_length] = present
        self.key_mask[..., : self.prompt_length] = mask.bool()[:, None, None, None]
        self.real.copy_(mask.sum(-1, keepdim=True))
        self.logits.copy_(logits)
        self.hidden.copy_(hidden)

    # -- the frame step (captured) ----------------------------------------------------------

    def attend(self, attn, x, rotate, key, value, slot) -> tuple[torch.Tensor, ...]:
        """One talker step: its key and value written at `slot`, attention over every slot
        under the key mask."""
        q, k, v = self.graphs._heads(attn, x, rotate)
        key.index_copy_(2, slot, k)
        value.index_copy_(2, slot, v)
        scores = (q @ key.unsqueeze(2).transpose(-1, -2)) * attn.scaling
        weights = torch.softmax(scores.masked_fill(~self.key_mask, float("-inf")), dim=-1)
        return self.graphs._out(attn, weights @ value.unsqueeze(2)), k, v

    def decode(self) -> None:
        """The talker over the last frame (its codes' embeddings summed, plus its streamed text
        embedding), at the next slot: the next logits and hidden state."""
        t, previous = self.talker, self.made - 1
        tables = self.predictor.get_input_embeddings()
        rows = [t.get_input_embeddings()(self.frame[:, :1])]
        rows += [table(self.frame[:, i + 1 : i + 2]) for i, table in enumerate(tables)]
        x = torch.cat(rows, dim=1).sum(1, keepdim=True) + self.texts.index_select(1, previous)
        slot = previous + self.prompt_length
        self.key_mask.index_fill_(4, slot, True)
        rotate = self.rotary.rotate(x, self.real + previous)
        for block, key, value in zip(t.model.layers, self.keys, self.values, strict=True):
            x, _, _ = self.graphs.layer(block, x, self.attend, rotate, key, value, slot)
        logits, hidden = self.rotary.head(x)
        self.logits.copy_(logits)
        self.hidden.copy_(hidden)

    def attend_predictor(self, attn, x, rotate, start, key, value) -> tuple[torch.Tensor, ...]:
        """The predictor's positions `start`.. written into its cache, attending causally."""
        q, k, v = self.graphs._heads(attn, x, rotate)
        end = start + k.shape[2]
        key[:, :, start:end], value[:, :, start:end] = k, v
        scores = (q @ key[:, :, :end].unsqueeze(2).transpose(-1, -2)) * attn.scaling
        scores = scores.masked_fill(~self.causal[start:end, :end], float("-inf"))
        out = torch.softmax(scores, dim=-1) @ value[:, :, :end].unsqueeze(2)
        return self.graphs._out(attn, out), k, v

    def predictor_pass(self, x: torch.Tensor, start: int, head: int) -> torch.Tensor:
        """The code predictor over `x` (talker-sized) at positions `start`..; codebook
        `head` + 1's logits."""
        p = self.predictor
        x = p.small_to_mtp_projection(x)
        end = start + x.shape[1]
        cos, sin = self.cos[:, start:end], self.sin[:, start:end]

        def rotate(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.modeling.apply_rotary_pos_emb(q, k, cos, sin)

        caches = zip(p.model.layers, self.predictor_keys, self.predictor_values, strict=True)
        for block, key, value in caches:
            x, _, _ = self.graphs.layer(block, x, self.attend_predictor, rotate, start, key, value)
        return p.lm_head[head](p.model.norm(x)[:, -1])

    def predict(self) -> None:
        """The frame's first code (repetition penalty over the first codes so far, control codes
        suppressed, argmax), then the predictor's codes one by one; the frame written."""
        logits = self.logits.float()
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        logits = torch.where(self.seen, penalised, logits).masked_fill(self.control, float("-inf"))
        code = logits.argmax(-1, keepdim=True)
        self.seen.scatter_(1, code, True)
        x = torch.cat([self.hidden[:, None], self.talker.get_input_embeddings()(code)], dim=1)
        codes, tables, start = [code], self.predictor.get_input_embeddings(), 0
        groups = self.frame.shape[1]
        for group in range(1, groups):  # codebook `group` from position `start`'s pass
            code = self.predictor_pass(x, start, group - 1).argmax(-1, keepdim=True)
            codes.append(code)
            if group < groups - 1:
                x, start = tables[group - 1](code), group + 1
        self.frame.copy_(torch.cat(codes, dim=1))
        self.codes.index_copy_(2, self.made, self.frame[:, :, None])
        self.made.add_(1)

    def frame_step(self) -> None:
        """One whole frame after the first: the talker's decode, then `predict`."""
        self.decode()
        self.predict()

    # -- capture and runs -------------------------------------------------------------------

    def capture(self) -> None:
        """Both steps captured as CUDA graphs (after warm-up on a side stream) sharing one
        memory pool; `first_step` and `step` become their replays."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.made.zero_()
                self.predict()
                self.frame_step()
        torch.cuda.current_stream().wait_stream(stream)
        first, whole = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        self.made.zero_()
        with torch.cuda.graph(first):
            self.predict()
        with torch.cuda.graph(whole, pool=first.pool()):
            self.frame_step()
        self.first_step, self.step = first.replay, whole.replay

    @torch.no_grad()
    def run(self, clock: Clock) -> tuple[torch.Tensor, float, float]:
        start = clock.now()
        self.load()
        self.first_step()
        first = clock.now()
        for _ in range(self.frames - 1):
            self.step()
        end = clock.now()
        return self.codes.clone(), first - start, end - start


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.clock = Clock(self.device)
        self.fp32 = common.ieee_fp32()
        self.modeling, configuration = upstream_modules()
        self.config = configure(RECIPES[args.shape], configuration)
        self.requests = requests(self.config)
        self.build_s: list[float] = []
        self.facts: dict = {}
        self.reference: dict[int, torch.Tensor] = {}  # FP32 upstream eager codes per batch

    def model(self, dtype: torch.dtype):
        """A fresh seeded build (the model does not deep-copy) on the device in `dtype`."""
        begin = time.perf_counter()
        model = build(self.config, self.args.seed, self.modeling)
        self.facts = {
            "parameters": sum(x.numel() for x in model.parameters()),
            "attn_implementation": model.talker.config._attn_implementation,
        }
        model = model.to(device=self.device, dtype=dtype)
        for module in model.modules():  # rotary frequencies stay FP32, as from_pretrained has them
            if hasattr(module, "original_inv_freq"):
                module.inv_freq = module.original_inv_freq.to(self.device)
        self.build_s.append(round(time.perf_counter() - begin, 2))
        return model

    def peak_reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1) if self.cuda else None

    def timed(self, run: Callable[[], tuple[torch.Tensor, float, float]], batch: int) -> dict:
        """A warm-up, then `repeats` runs -> (codes, first-frame s, total s); medians."""
        run()
        self.peak_reset()
        firsts, totals, codes = [], [], None
        for _ in range(self.args.repeats):
            codes, first, total = run()
            firsts.append(first)
            totals.append(total)
        first, total = statistics.median(firsts), statistics.median(totals)
        frames = self.args.frames
        return {
            "codes": codes,
            "frames_per_s": round(batch * frames / total, 2),
            "frames_per_s_per_request": round(frames / total, 2),
            "frames_per_s_after_first": round(batch * (frames - 1) / (total - first), 2),
            "first_frame_ms": round(first * 1e3, 3),
            "total_s": round(total, 4),
            "peak_allocated_mib": self.peak_mib(),
            "total_s_runs": [round(x, 4) for x in totals],
        }

    def upstream(self, model, batch: int) -> dict:
        args = self.args
        runner = Upstream(model, self.requests[:batch], args.frames, args.penalty, self.clock)
        return self.timed(runner.run, batch)

    def static(self, model, batch: int) -> dict:
        args = self.args
        static = Static(model, self.modeling, self.requests[:batch], args.frames, args.penalty)
        capture_s = None
        if self.cuda:
            begin = self.clock.now()
            with torch.no_grad():
                static.capture()
            capture_s = round(self.clock.now() - begin, 3)
        result = self.timed(lambda: static.run(self.clock), batch)
        return result | {"capture_s": capture_s, "cache_slots": static.keys[0].shape[2]}

    def guarded(self, work: Callable[[], dict]) -> dict:
        """`work`'s result, or its error (the other figures still stand)."""
        try:
            return work()
        except Exception as error:  # reported, not fatal
            return {"error": f"{type(error).__name__}: {error}"[:2000]}

    def run(self) -> dict:
        args, began = self.args, time.perf_counter()
        static_name = "static_graph" if self.cuda else "static"
        results: dict = {}
        if "float32" not in args.dtypes:  # the reference codes, untimed
            model = self.model(torch.float32)
            for batch in args.batches:
                self.reference[batch] = Upstream(
                    model, self.requests[:batch], args.frames, args.penalty, self.clock
                ).run()[0]
            del model
        for name in args.dtypes:
            model = self.model(DTYPES[name])
            results[name] = {}
            for batch in args.batches:
                paths = {
                    "upstream_eager": self.guarded(lambda m=model, b=batch: self.upstream(m, b)),
                    static_name: self.guarded(lambda m=model, b=batch: self.static(m, b)),
                }
                upstream = paths["upstream_eager"].get("codes")
                if name == "float32" and upstream is not None:
                    self.reference[batch] = upstream
                for path, result in paths.items():
                    if "codes" not in result:
                        continue
                    codes = result.pop("codes").cpu()
                    if batch in self.reference:
                        reference = self.reference[batch].cpu()
                        result["agreement_with_float32_upstream"] = agreement(reference, codes)
                    if path == static_name and upstream is not None:
                        same = agreement(upstream.cpu(), codes)
                        result["agreement_with_upstream_same_dtype"] = same
                if all("frames_per_s" in r for r in paths.values()):
                    fps = [r["frames_per_s"] for r in paths.values()]
                    paths["static_speedup"] = round(fps[1] / fps[0], 2)
                results[name][f"batch_{batch}"] = paths
                print(f"{name} batch {batch} done at {time.perf_counter() - began:.1f} s")
            del model
            if self.cuda:
                torch.cuda.empty_cache()
        t = self.config.talker_config
        p = t.code_predictor_config
        return {
            "benchmark": "gpu_qwen_tts",
            "description": DESCRIPTION,
            "shape": args.shape,
            "recipe": str(RECIPES[args.shape].relative_to(ROOT)),
            "weights": f"seeded weights (seed {args.seed}): codes compare paths and precisions",
            "config": {
                "talker_layers": t.num_hidden_layers,
                "hidden": t.hidden_size,
                "predictor_layers": p.num_hidden_layers,
                "codebooks": t.num_code_groups,
                **self.facts,
            },
            "frames": args.frames,
            "repeats": args.repeats,
            "sampling": f"greedy at both levels, repetition penalty {args.penalty} (first codes)",
            "stop": "disabled (every control code suppressed)",
            "first_frame": "from the call until the first frame's codes of every codebook are "
            "on the device: prompt, prefill, first code, the predictor's first pass",
            "frames_per_s": "all requests' frames over the whole run, prompt and prefill included",
            "prompts": [
                {k: item[k] for k in ("text", "language", "speaker")}
                | {"text_ids": len(item["ids"]), "prompt": len(item["codec"]) + ROLE}
                for item in self.requests[: max(args.batches)]
            ],
            "device": common.device_info(self.device),
            "fp32": self.fp32,
            "build_s": self.build_s,
            "results": results,
            "elapsed_s": round(time.perf_counter() - began, 1),
        }


def summary(report: dict) -> str:
    rows = [
        f"{'dtype':9} {'batch':>5} {'path':15} {'frames/s':>9} {'per req':>8} {'first ms':>9} "
        f"{'peak MiB':>9} {'capture s':>9} {'equal':>6} {'diverge@':>8}"
    ]
    for name, batches in report["results"].items():
        for batch, paths in batches.items():
            for path, r in paths.items():
                if path == "static_speedup":
                    continue
                size = batch.split("_")[1]
                if "error" in r:
                    rows.append(f"{name:9} {size:>5} {path:15} ERROR {r['error'][:70]}")
                    continue
                agree = r.get("agreement_with_float32_upstream", {})
                diverge = agree.get("first_divergent_frame")
                rows.append(
                    f"{name:9} {size:>5} {path:15} {r['frames_per_s']:>9} "
                    f"{r['frames_per_s_per_request']:>8} {r['first_frame_ms']:>9} "
                    f"{r['peak_allocated_mib'] if r['peak_allocated_mib'] is not None else '-':>9} "
                    f"{r.get('capture_s') if r.get('capture_s') is not None else '-':>9} "
                    f"{agree.get('equal_fraction', '-'):>6} "
                    f"{diverge if diverge is not None else '-':>8}"
                )
    dev = report["device"]
    head = (
        f"qwen3_tts {report['shape']} ({report['weights']}), {report['frames']} frames, on "
        f"{dev['name']} (torch {dev['torch']}, cuda {dev.get('cuda')})"
    )
    return "\n".join([head, *rows, f"total {report['elapsed_s']} s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--shape", choices=sorted(RECIPES), default="0.6b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="of the seeded weights")
    parser.add_argument("--penalty", type=float, default=1.05, help="upstream's repetition one")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--vendor", type=Path, default=ROOT / "benchmarks" / "gpu_vendor")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_qwen_tts.json"
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("CUDA is not available: use --device cpu (with --shape tiny)")
    if args.frames < 2 or max(args.batches) > len(PROMPTS):
        parser.error(f"--frames must be >= 2 and --batches at most {len(PROMPTS)}")
    if args.vendor.is_dir():
        sys.path.insert(0, str(args.vendor))
    if args.threads:
        torch.set_num_threads(args.threads)
    args.dtypes = sorted(args.dtypes, key=list(DTYPES).index)  # float32 first: the reference
    warnings.filterwarnings("ignore")  # generate's notes on unused sampling settings
    from transformers.utils import logging

    logging.set_verbosity_error()
    report = Bench(args).run()
    common.write_json(args.out, report)
    print(summary(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
