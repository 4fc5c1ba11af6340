"""gpt_tts network (tiny shape, CPU): KV cache vs no cache, padding, positions, static cache,
upstream state-dict names, and dynamo ONNX export of Prefill and Decode."""

import re
from collections.abc import Iterator

import numpy as np
import onnxruntime
import pytest
import torch
from torch.export import Dim

from speedy.families.gpt_tts_model import (
    Decode,
    GptTts,
    GptTtsConfig,
    Prefill,
    StaticDecode,
    build,
    from_upstream,
)
from tests.gpt_tts_reference import generate, io_names, load_upstream, to_upstream

CONFIG = GptTtsConfig.tiny()
ATOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small ops run far faster single-threaded on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> GptTts:
    return build(CONFIG)


def prompt(batch: int, text: int, seed: int = 0, cond: int | None = None) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    d = CONFIG.d_model
    cond = cond or CONFIG.cond_latents
    return (
        torch.randn(batch, cond, d, generator=gen),
        torch.randn(batch, d, generator=gen) * 0.1,
        torch.randint(2, CONFIG.text_vocab, (batch, text), generator=gen),
        torch.ones(batch, text, dtype=torch.int64),
    )


def pad_batch(prompts: list[tuple]) -> tuple:
    """Stack single-item prompts, right-padding text (junk ids under a 0 mask)."""
    text = max(p[2].shape[1] for p in prompts)
    ids = torch.full((len(prompts), text), 7, dtype=torch.int64)
    mask = torch.zeros(len(prompts), text, dtype=torch.int64)
    for i, p in enumerate(prompts):
        ids[i, : p[2].shape[1]] = p[2][0]
        mask[i, : p[2].shape[1]] = 1
    return torch.cat([p[0] for p in prompts]), torch.cat([p[1] for p in prompts]), ids, mask


@torch.no_grad()
def cached_logits(model: GptTts, inputs: tuple, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy codes [batch, steps] and each step's logits [batch, steps, vocab] via the cache."""
    logits, _, mask, *presents = Prefill(model)(*inputs)
    decode = Decode(model)
    all_logits, codes = [logits], [logits.argmax(-1, keepdim=True)]
    for step in range(steps - 1):
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        position = torch.full_like(codes[-1], CONFIG.decode_position_offset + step)
        logits, _, *presents = decode(codes[-1], position, mask, *presents)
        all_logits.append(logits)
        codes.append(logits.argmax(-1, keepdim=True))
    return torch.cat(codes, 1), torch.stack(all_logits, 1)


def test_cache_matches_the_full_forward(model: GptTts) -> None:
    inputs = pad_batch([prompt(1, 9, seed=1), prompt(1, 14, seed=2)])
    codes, logits = cached_logits(model, inputs, steps=20)
    with torch.no_grad():
        full, _ = model(*inputs, codes[:, :-1])  # logits at start_speech and each fed-back code
    assert full.shape == logits.shape
    assert (full - logits).abs().max() < ATOL
    no_cache = generate(model, *inputs, max_new_tokens=20, cache="none")
    assert torch.equal(no_cache, codes)


def test_greedy_decoding_moves_through_many_codes(model: GptTts) -> None:
    codes = generate(model, *prompt(1, 16), max_new_tokens=200)
    assert codes.shape == (1, 200)
    assert len(set(codes[0].tolist())) >= 20
    assert CONFIG.stop_speech_token not in codes
    assert int(codes.max()) < CONFIG.speech_codes  # neither start nor stop


def test_padded_batch_matches_each_prompt_alone(model: GptTts) -> None:
    short, long = prompt(1, 6, seed=3), prompt(1, 17, seed=4)
    batch = generate(model, *pad_batch([short, long]), max_new_tokens=30)
    assert torch.equal(batch[0:1], generate(model, *short, max_new_tokens=30))
    assert torch.equal(batch[1:2], generate(model, *long, max_new_tokens=30))
    _, batch_logits = cached_logits(model, pad_batch([short, long]), steps=5)
    _, alone = cached_logits(model, short, steps=5)
    assert (batch_logits[0:1] - alone).abs().max() < ATOL


def test_positions_are_inputs(model: GptTts) -> None:
    logits, _, mask, *presents = Prefill(model)(*prompt(1, 8))
    token = logits.argmax(-1, keepdim=True)
    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    decode = Decode(model)
    at_2 = decode(token, torch.tensor([[2]]), mask, *presents)[0]
    at_9 = decode(token, torch.tensor([[9]]), mask, *presents)[0]
    assert (at_2 - at_9).abs().max() > 1e-2


def test_stop_code_ends_generation() -> None:
    eager_stop = build(GptTtsConfig.tiny(special_logit_bias=0.0))
    with torch.no_grad():
        eager_stop.mel_head.bias[CONFIG.stop_speech_token] = 1e3  # always the argmax
    codes = generate(eager_stop, *prompt(2, 5), max_new_tokens=50)
    assert codes.tolist() == [[CONFIG.stop_speech_token]] * 2


def test_static_cache_step_matches_the_dynamic_step(model: GptTts) -> None:
    inputs = pad_batch([prompt(1, 5, seed=5), prompt(1, 11, seed=6)])
    codes, logits = cached_logits(model, inputs, steps=8)
    _, _, mask, *presents = Prefill(model)(*inputs)
    step = StaticDecode(model, batch=2, max_len=mask.shape[1] + 16)
    past = step.load(presents, mask)
    with torch.no_grad():
        for i in range(7):
            position = torch.full((2, 1), CONFIG.decode_position_offset + i)
            out, _ = step(codes[:, i : i + 1], position, torch.tensor([past + i]))
            assert (out - logits[:, i + 1]).abs().max() < ATOL
    assert torch.equal(generate(model, *inputs, max_new_tokens=8, cache="static"), codes)


UPSTREAM_EXTRA = {  # upstream UnifiedVoice parts this module ignores
    "conditioning_encoder.init.weight": torch.zeros(3),
    "perceiver_encoder.latents": torch.zeros(3),
    "emo_conditioning_encoder.embed.out.0.weight": torch.zeros(3),
    "emo_perceiver_encoder.proj_context.weight": torch.zeros(3),
    "emovec_layer.weight": torch.zeros(3),
    "emo_layer.bias": torch.zeros(3),
    "gpt.h.0.attn.bias": torch.zeros(3),
    "gpt.h.0.attn.masked_bias": torch.zeros(()),
    "inference_model.lm_head.1.weight": torch.zeros(3),
}


def test_upstream_state_dict_round_trip(model: GptTts) -> None:
    state = to_upstream(model)
    d = CONFIG.d_model
    assert state["gpt.h.0.attn.c_attn.weight"].shape == (d, 3 * d)  # HF Conv1D: [in, out]
    assert state["gpt.h.3.mlp.c_proj.weight"].shape == (4 * d, d)
    assert state["mel_pos_embedding.emb.weight"].shape[0] == CONFIG.max_speech_tokens + 3
    assert state["text_pos_embedding.emb.weight"].shape[0] == CONFIG.max_text_tokens + 2
    expected = {
        "text_embedding.weight",
        "mel_embedding.weight",
        "text_pos_embedding.emb.weight",
        "mel_pos_embedding.emb.weight",
        "speed_emb.weight",
        "gpt.ln_f.weight",
        "gpt.ln_f.bias",
        "final_norm.weight",
        "final_norm.bias",
        "text_head.weight",
        "text_head.bias",
        "mel_head.weight",
        "mel_head.bias",
    }
    per_layer = {
        f"{part}.{p}"
        for part in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
        for p in ("weight", "bias")
    }
    expected |= {f"gpt.h.{i}.{k}" for i in range(CONFIG.layers) for k in per_layer}
    assert set(state) == expected

    upstream = {**{k: v.half() for k, v in state.items()}, **UPSTREAM_EXTRA}
    loaded, ignored = load_upstream(upstream, heads=CONFIG.heads, special_logit_bias=-30.0)
    assert sorted(ignored) == sorted(UPSTREAM_EXTRA)
    assert loaded.config.layers == CONFIG.layers
    assert loaded.config.max_speech_tokens == CONFIG.max_speech_tokens
    reference = GptTts(CONFIG)
    reference.load_state_dict({k: v.half().float() for k, v in state.items()})
    inputs = prompt(1, 7)
    with torch.no_grad():
        codes = torch.tensor([[5, 6, 7]])
        assert torch.equal(loaded.eval()(*inputs, codes)[0], reference.eval()(*inputs, codes)[0])
    ours, _ = from_upstream({f"module.{k}": v for k, v in upstream.items()})
    assert set(ours) == expected
    with pytest.raises(KeyError, match="unexpected upstream key"):
        from_upstream({**upstream, "something_else.weight": torch.zeros(1)})


def onnx_session(module: Prefill | Decode, args: tuple, dynamic_shapes: tuple):
    inputs, outputs = io_names(module)
    program = torch.onnx.export(
        module,
        args,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        opset_version=18,
        input_names=inputs,
        output_names=outputs,
        verbose=False,
    )
    proto = program.model_proto
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & {"If", "Loop", "NonZero"}, ops
    dims = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*proto.graph.input, *proto.graph.output]
    }
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session, dims


def assert_onnx_matches(session, module: Prefill | Decode, inputs: tuple) -> None:
    input_names, output_names = io_names(module)
    feeds = {name: x.numpy() for name, x in zip(input_names, inputs, strict=True)}
    outputs = session.run(None, feeds)
    with torch.no_grad():
        expected = module(*inputs)
    assert len(outputs) == len(expected)
    for name, got, want in zip(output_names, outputs, expected, strict=True):
        assert got.shape == tuple(want.shape), name
        assert np.abs(got - want.numpy()).max() < 1e-4, name


def test_decode_exports_with_dynamic_batch_and_past(model: GptTts) -> None:
    decode = Decode(model)
    batch, past = Dim("batch", min=1, max=64), Dim("past", min=1, max=4096)
    layers = CONFIG.layers
    shapes = (
        {0: batch},
        {0: batch},
        {0: batch, 1: past + 1},
        tuple({0: batch, 2: past} for _ in range(2 * layers)),
    )

    def inputs(batch: int, past: int, seed: int) -> tuple:
        gen = torch.Generator().manual_seed(seed)
        cache = (batch, CONFIG.heads, past, CONFIG.head_dim)
        mask = torch.ones(batch, past + 1, dtype=torch.int64)
        mask[0, past // 2 : past // 2 + 3] = 0  # padding slots in the middle of the cache
        token = torch.randint(0, CONFIG.speech_codes, (batch, 1), generator=gen)
        position = torch.randint(1, 100, (batch, 1), generator=gen)
        past_kv = [torch.randn(cache, generator=gen) for _ in range(2 * layers)]
        return (token, position, mask, *past_kv)

    session, dims = onnx_session(decode, inputs(2, 9, seed=0), shapes)
    assert dims["token"] == ["batch", 1]
    assert dims["position"] == ["batch", 1]
    assert dims["past_key_0"] == ["batch", CONFIG.heads, "past", CONFIG.head_dim]
    assert dims[f"present_value_{layers - 1}"][2] == dims["attention_mask"][1]
    assert dims["logits"] == ["batch", CONFIG.speech_vocab]
    assert_onnx_matches(session, decode, inputs(3, 23, seed=1))  # past never traced
    assert_onnx_matches(session, decode, inputs(1, 40, seed=2))


def test_prefill_exports_with_dynamic_batch_and_text(model: GptTts) -> None:
    prefill = Prefill(model)
    batch, cond = Dim("batch", min=1, max=64), Dim("cond", min=1, max=256)
    text = Dim("text", min=2, max=CONFIG.max_text_tokens)
    shapes = ({0: batch, 1: cond}, {0: batch}, {0: batch, 1: text}, {0: batch, 1: text})
    traced = pad_batch([prompt(1, 4, seed=7), prompt(1, 7, seed=8)])
    session, dims = onnx_session(prefill, traced, shapes)
    assert dims["text_ids"] == ["batch", "text"]
    assert dims["speaker_latents"] == ["batch", "cond", CONFIG.d_model]
    assert re.fullmatch(r"cond \+ text \+ 5", str(dims["present_key_0"][2]))
    unseen = pad_batch([prompt(1, 19, seed=9), prompt(1, 12, seed=10), prompt(1, 3, seed=11)])
    assert_onnx_matches(session, prefill, unseen)
    assert_onnx_matches(session, prefill, prompt(1, 25, seed=12, cond=CONFIG.cond_latents))
