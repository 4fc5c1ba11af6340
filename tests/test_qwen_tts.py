"""The qwen3_tts family: the Qwen3-TTS talker and code predictor built from the installed
`qwen-tts` package's classes, a tiny configuration saved with upstream `save_pretrained` (with
its text tokenizer) and read back as a user's checkpoint directory, through export; the ONNX
graphs' generation loop against upstream `generate` frame for frame, batches, sampling, and
one-line errors."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speedy import runtime
from speedy.errors import SpeedyError
from speedy.families import resolve
from speedy.recipe import load_recipe
from speedy.tasks.frame_codes import FrameCodes, Utterance
from speedy.tasks.sampling import Sampling

if importlib.util.find_spec("qwen_tts") is None:
    pytest.skip("qwen-tts is not installed", allow_module_level=True)

FIXTURE = Path(__file__).parent / "fixtures" / "qwen3_tts_tiny.yaml"
SAVED_SEED = 12  # the checkpoint's weights (not the recipe's seed 0): its stops come late
SPECIALS = {
    "<|im_start|>": 290,
    "<|im_end|>": 291,
    "<|tts_pad|>": 295,
    "<|tts_bos|>": 296,
    "<|tts_eos|>": 297,
}
PROMPTS = [  # three lengths, none in the recipe's data; the first stops before 130 frames
    ("今天天气很好，我们去公园散步吧，然后回家吃饭。", "bo"),
    ("天气很好。", "bo"),
    ("Where does the river go when it leaves the old mill?", "amy"),
]

pytestmark = pytest.mark.slow  # export and upstream generation take about a minute


def tiny_family(seed: int = 0):
    spec = load_recipe(str(FIXTURE)).model_spec()
    return resolve(spec.model_copy(update={"network": spec.network | {"seed": seed}}))


def save_text_tokenizer(directory: Path) -> None:
    """A byte-level BPE tokenizer (Qwen2's kind) sized for the tiny text vocabulary, saved by
    transformers' `Qwen2TokenizerFast` as a Qwen3-TTS directory holds it."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)} | {"Ġt": 256, "he": 257, "assistant": 258}
    vocab |= {f"<|unused_{i}|>": i for i in range(259, 300) if i not in SPECIALS.values()}
    vocab |= SPECIALS
    model = models.BPE(vocab=vocab, merges=[("Ġ", "t"), ("h", "e")])
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in SPECIALS])
    tokenizer.add_tokens([AddedToken("assistant")])  # one token, as Qwen2's merges make it
    Qwen2TokenizerFast(tokenizer_object=tokenizer).save_pretrained(directory)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen3-TTS directory as a user holds one: upstream `save_pretrained` of the tiny
    configuration (config.json, model.safetensors), its generation_config.json and tokenizer."""
    directory = tmp_path_factory.mktemp("qwen3_tts") / "Qwen3-TTS-tiny-CustomVoice"
    tiny_family(SAVED_SEED).build().save_pretrained(directory)
    # save_pretrained writes a model_type into speaker_encoder_config that upstream's own config
    # class refuses on loading (published directories do not hold one)
    config = json.loads((directory / "config.json").read_text())
    del config["speaker_encoder_config"]["model_type"]
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "generation_config.json").write_text(
        '{"do_sample": true, "top_k": 50, "top_p": 1.0, "temperature": 0.9, '
        '"repetition_penalty": 1.05, "subtalker_dosample": true, "subtalker_top_k": 50, '
        '"subtalker_top_p": 1.0, "subtalker_temperature": 0.9, "max_new_tokens": 8192}'
    )
    save_text_tokenizer(directory)
    return directory


@pytest.fixture(scope="module")
def upstream(checkpoint: Path) -> torch.nn.Module:
    """The reference: the installed package's model, loaded by transformers' `from_pretrained`
    (upstream's own override also loads the speech tokenizer, which is a model of its own)."""
    from transformers import PreTrainedModel

    from speedy.families.qwen_upstream import tts_model

    modeling, _ = tts_model()
    load = PreTrainedModel.from_pretrained.__func__  # type: ignore[attr-defined]
    return load(modeling.Qwen3TTSForConditionalGeneration, checkpoint).eval()


@pytest.fixture(scope="module")
def built(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from speedy.pipeline import run_recipe

    build = tmp_path_factory.mktemp("qwen3_tts_build")
    outcomes, ctx = run_recipe(load_recipe(str(FIXTURE)), build, checkpoint=checkpoint)
    return {"ctx": ctx, **{o.stage: o.artifact for o in outcomes}}


@pytest.fixture(scope="module")
def model(built: dict) -> runtime.Model:
    return runtime.load(built["export"].path, threads=2)


@pytest.fixture(scope="module")
def task(built: dict) -> FrameCodes:
    assert isinstance(built["ctx"].task, FrameCodes)
    return built["ctx"].task


def prompt(task: FrameCodes, index: int) -> dict:
    text, speaker = PROMPTS[index]
    return task.inputs(Utterance("", text, "auto", speaker))


# ----------------------------------------------------------------------------------------------
# The upstream classes, the checkpoint directory, the text tokenizer


def test_the_network_is_the_installed_packages_own(checkpoint: Path, upstream) -> None:
    """The network is upstream's class; only the talker's and the 12 Hz tokenizer's modules are
    imported (never the 25 Hz tokenizer, torchaudio or sox); the checkpoint's tensors are what
    the recipe builds with the saved seed, not its default seed."""
    from speedy.families.qwen_upstream import tts_model

    modeling, _ = tts_model()
    network = tiny_family(SAVED_SEED).build()
    assert type(network) is modeling.Qwen3TTSForConditionalGeneration
    assert "site-packages/qwen_tts/core/models/" in modeling.__file__
    assert not [k for k in sys.modules if k.split(".")[0] in ("torchaudio", "sox")]
    assert not [k for k in sys.modules if k.startswith("qwen_tts.core.tokenizer_25hz")]
    saved, seeded = upstream.state_dict(), tiny_family().build().state_dict()
    assert all(torch.equal(saved[k], v) for k, v in network.state_dict().items())
    assert not torch.equal(saved["talker.codec_head.weight"], seeded["talker.codec_head.weight"])


def test_text_ids_are_upstreams_tokenizer(checkpoint: Path, task: FrameCodes) -> None:
    """The artifact's torch-free tokenizer gives the ids upstream's processor gives (its
    `_build_assistant_text` around each text), Chinese and merges included."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    for text in ["the theme", "今天天气很好", "Numbers 12, 3.5 and the end."]:
        turn = f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"
        assert task.text_ids(text).tolist() == tokenizer(turn)["input_ids"]
    assert 256 in task.text_ids("at the") and 258 in task.text_ids("x")  # merges, "assistant"


def test_the_recipe_network_is_the_checkpoints(checkpoint: Path, built: dict) -> None:
    """--checkpoint replaces the recipe's network with the directory's config.json, generation
    config and tokenizer; the task's default sampling is the generation config's."""
    spec = built["export"].manifest.model
    assert spec.checkpoint is not None and spec.network["text_tokenizer"] is not None
    assert spec.network["generation"]["subtalker_temperature"] == 0.9
    defaults = built["ctx"].task.defaults
    assert defaults.sampling == Sampling(temperature=0.9, top_k=50, repetition_penalty=1.05)
    assert defaults.predictor == Sampling(temperature=0.9, top_k=50)


# ----------------------------------------------------------------------------------------------
# The generation loop against upstream `generate`


def upstream_run(upstream, task: FrameCodes, frames: int) -> list[dict]:
    """Upstream greedy `generate` of the prompts in one batch (it pads them on the left), with
    the talker's and the predictor's logits of every step (hooks on their heads), per item."""
    talker, predictor = [], []
    hooks = [
        upstream.talker.codec_head.register_forward_hook(
            lambda m, i, o: talker.append(o[:, -1].numpy())
        )
    ]
    hooks += [
        head.register_forward_hook(lambda m, i, o: predictor.append(o[:, -1].numpy()))
        for head in upstream.talker.code_predictor.lm_head
    ]
    ids = [torch.from_numpy(task.text_ids(text))[None] for text, _ in PROMPTS]
    try:
        with torch.no_grad():
            codes, _ = upstream.generate(
                input_ids=ids,
                languages=["auto"] * len(ids),
                speakers=[speaker for _, speaker in PROMPTS],
                do_sample=False,
                subtalker_dosample=False,
                max_new_tokens=frames + 1,
            )
    finally:
        for hook in hooks:
            hook.remove()
    return [
        {
            "codes": c.numpy().T,
            "logits": np.stack(talker)[:, i],
            "predictor_logits": np.stack(predictor)[:, i],
        }
        for i, c in enumerate(codes)
    ]


def test_greedy_frames_equal_upstream_generate(upstream, task: FrameCodes, model) -> None:
    """Greedy codes of every codebook from the ONNX graphs, one prompt at a time, equal upstream
    `generate` (do_sample=False, subtalker_dosample=False, its repetition penalty) frame for
    frame on three prompts for over 100 frames, with the stop at the same frame (the first
    prompt stops on its own); the talker's and the predictor's logits of every step within
    1e-4 of upstream's."""
    frames = 130
    generation = task.generation.model_copy(update={"max_frames": frames})
    for index, expected in enumerate(upstream_run(upstream, task, frames)):
        ours = task.generate(model, prompt(task, index), generation)
        length = int(ours["code_lengths"][0])
        assert length > 100 and (length < frames) == (index == 0)
        np.testing.assert_array_equal(ours["codes"][0][:, :length], expected["codes"])
        steps = length + 1  # the last step chose the stop, or ended the run
        assert np.abs(ours["logits"][0] - expected["logits"][:steps]).max() < 1e-4
        predictor = ours["predictor_logits"][0].reshape(-1, task.s.codebook_size)
        assert np.abs(predictor - expected["predictor_logits"][: len(predictor)]).max() < 1e-4


def test_a_batch_equals_its_items_alone(task: FrameCodes, model) -> None:
    """Prompts of three lengths in one batch (left padding, as upstream batches) give each
    item's codes and stop frame alone."""
    generation = task.generation.model_copy(update={"max_frames": 40})
    utterances = [Utterance("", text, "auto", speaker) for text, speaker in PROMPTS]
    batch = task.generate(model, task._prompt(utterances), generation)
    for i, utterance in enumerate(utterances):
        alone = task.generate(model, task.inputs(utterance), generation)
        n = int(alone["code_lengths"][0])
        assert batch["code_lengths"][i] == n
        np.testing.assert_array_equal(batch["codes"][i][:, :n], alone["codes"][0][:, :n])


def test_seeded_sampling_at_both_levels(task: FrameCodes, model) -> None:
    """Sampling with the model's defaults (temperature, top-k at both levels, the penalty) is
    reproducible under a seed, differs between seeds and from greedy, and never chooses a
    control code but the stop."""
    inputs = prompt(task, 2)
    defaults = task.defaults.model_copy(update={"max_frames": 30})
    runs = [
        task.generate(
            model,
            inputs,
            defaults.model_copy(
                update={"sampling": defaults.sampling.model_copy(update={"seed": seed})}
            ),
        )["codes"]
        for seed in (3, 3, 4)
    ]
    greedy = task.generate(model, inputs, task.generation.model_copy(update={"max_frames": 30}))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2]) and not np.array_equal(runs[0], greedy["codes"])
    first = np.concatenate([r[:, 0].ravel() for r in runs])
    assert ((first < task.s.codebook_size) | (first == task.s.codes["eos"])).all()
    assert (np.concatenate([r[:, 1:].ravel() for r in runs]) < task.s.codebook_size).all()


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=0.9, top_k=50),
        Sampling(temperature=0.7, top_p=0.8),
        Sampling(temperature=1.3, top_k=7, top_p=0.6),
        Sampling(),
    ],
)
def test_the_predictor_graph_draws_as_pick(sampling: Sampling) -> None:
    """The code predictor's in-graph choice takes the same code as `pick` (the talker's) from
    the same logits and uniform draws: temperature, top-k, top-p and greedy."""
    from speedy.families.qwen_tts_graphs import choose
    from speedy.tasks.sampling import pick

    logits = 3 * np.random.default_rng(11).standard_normal((400, 300)).astype(np.float32)
    draws = np.random.default_rng(sampling.top_k).random(len(logits))
    chosen = choose(
        torch.from_numpy(logits),
        torch.from_numpy(draws.astype(np.float32)),
        torch.tensor([sampling.temperature]),
        torch.tensor([sampling.top_k]),
        torch.tensor([sampling.top_p]),
    ).numpy()
    empty = np.zeros((len(logits), 0), np.int64)
    expected = pick(logits, empty, sampling, np.random.default_rng(sampling.top_k))
    np.testing.assert_array_equal(chosen, expected)
    assert len(np.unique(expected)) > (1 if sampling.temperature else 0)


def test_teacher_forced_quality_of_the_export(task: FrameCodes, built: dict, model) -> None:
    """The export against its torch parent, on a prompt of the recipe's data: every code
    agrees, no divergence, and the teacher-forced KL is at float rounding."""
    torch_model = runtime.load(built["torch"].path)
    inputs = task.inputs(built["ctx"].examples[5])
    expected = task.run(torch_model, inputs)
    figures = task.evaluate(expected, model, inputs, task.report_metrics)
    assert figures["agreement"] == 1.0 and figures["stop_diff"] == 0.0
    assert figures["divergence"] == expected["codes"].shape[2]
    assert 0.0 <= figures["kl"] < 1e-6


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"text": "hello", "speaker": "zed"}, "speaker 'zed' is not one of the model's"),
        ({"text": "hello", "language": "klingon"}, "language 'klingon' is not one of the model's"),
        ({"text": ""}, "the text is empty"),
    ],
)
def test_bad_requests_are_refused_by_name(task: FrameCodes, controls: dict, message: str) -> None:
    with pytest.raises(SpeedyError, match=message):
        task.request(task.Controls(**controls))


def test_a_directory_of_another_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_tts_tokenizer_12hz"}')
    from speedy.families.qwen_tts import QwenTts

    with pytest.raises(SpeedyError, match="model_type is 'qwen3_tts_tokenizer_12hz'"):
        QwenTts.checkpoint_network(tmp_path)


# ----------------------------------------------------------------------------------------------
# Speech: the codes through the Qwen3-TTS-Tokenizer-12Hz of their code space


@pytest.fixture(scope="module")
def codec(qwen_tokenizer_build: dict):
    """The tiny Qwen3-TTS-Tokenizer-12Hz (4 codebooks of 64 codes at 12.5 Hz, the tiny talker's
    code space), exported to ONNX from its saved directory (test_qwen_tokenizer checks it)."""
    return qwen_tokenizer_build["export"]


def test_synth_says_the_text_through_the_codec(
    speedy_cli, built: dict, codec, tmp_path: Path
) -> None:
    """`speedy synth` chains the talker with the codec of its code space: the WAV is the codec's
    audio of the talker's greedy codes for the request, one 1,920-sample frame per code frame."""
    import soundfile as sf

    from speedy.tasks.codec import Codec

    out = tmp_path / "evening.wav"
    args = ["--acoustic", built["export"].path, "--vocoder", codec.path, "--speaker", "bo"]
    code, stdout, err = speedy_cli("synth", *args, "--text", "Good evening.", "-o", out)
    assert code == 0, err
    assert "acoustic" in stdout and "vocoder" in stdout
    task, decoder = built["ctx"].task, runtime.load(codec.path)
    inputs = task.request(task.Controls(text="Good evening.", speaker="bo"))
    (codes,) = task.handoff(task.run(runtime.load(built["export"].path), inputs))
    codec_task = Codec(decoder.manifest.model)
    expected = codec_task.run(decoder, codec_task.chained_inputs(codes))["audio"].reshape(-1)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 24_000 and audio.size == codes.shape[1] * 1920 > 0
    assert np.abs(audio - np.clip(expected, -1, 1)).max() <= 1 / 32767


SHARING_SPEEDY = """
import sys
from speedy.backends.ort import pool
from speedy.cli import main
sys.argv = ["speedy", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("shared pool of", pool.shared_threads())
"""


def test_synth_on_one_shared_pool_says_the_same(
    speedy_cli, built: dict, codec, tmp_path: Path
) -> None:
    """`speedy synth` on CPU, in a process of its own, runs every graph of the talker and the
    codec on one thread pool (ONNX Runtime's global pool, which then refuses any session with a
    pool of its own): its WAV equals the one made with a pool per session."""
    import soundfile as sf

    args = ["--acoustic", built["export"].path, "--vocoder", codec.path, "--speaker", "amy"]
    args += ["--text", "The lamp is on.", "--threads", "2", "-o"]
    code, _, err = speedy_cli("synth", *args, tmp_path / "own.wav")
    assert code == 0, err
    done = subprocess.run(
        [sys.executable, "-c", SHARING_SPEEDY, "synth", *map(str, args), tmp_path / "one.wav"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "shared pool of 2"
    assert "thread_pool_size" not in done.stderr  # no per-session pool settings to ignore
    shared, own = (sf.read(tmp_path / f"{name}.wav", dtype="float32")[0] for name in ("one", "own"))
    assert shared.size == own.size > 0
    assert np.abs(shared - own).max() <= 1 / 32767


def test_a_request_with_a_seed_samples_as_the_model_does(
    speedy_cli, built: dict, codec, tmp_path: Path
) -> None:
    """A request's seed samples its codes with the model's own settings (`generate`'s
    defaults) drawn from that seed: one seed says one utterance, whole, streamed or through
    `synth --seed`; another seed, or none (greedy), says another."""
    import soundfile as sf

    from speedy.chain import Chain

    task, model = built["ctx"].task, runtime.load(built["export"].path)
    said = {"text": "The rain has stopped.", "speaker": "amy"}
    inputs = task.request(task.Controls(**said, seed=9))
    sampled = task.run(model, inputs)["codes"]
    drawn = task.defaults.sampling.model_copy(update={"seed": 9})
    limit = {"max_frames": task.generation.max_frames, "sampling": drawn}
    expected = task.generate(model, inputs, task.defaults.model_copy(update=limit))["codes"]
    np.testing.assert_array_equal(sampled, expected)
    for other in (task.Controls(**said, seed=10), task.Controls(**said)):
        assert not np.array_equal(task.run(model, task.request(other))["codes"], sampled)
    chain = Chain.load(built["export"].path, codec.path)
    pieces = list(chain.handed_pieces(chain.request(**said, seed=9)))
    np.testing.assert_array_equal(np.concatenate(pieces, 1), sampled[0])
    args = ["--acoustic", built["export"].path, "--vocoder", codec.path, "--speaker", "amy"]
    args += ["--text", said["text"], "--seed", "9", "-o", tmp_path / "nine.wav"]
    code, _, err = speedy_cli("synth", *args)
    assert code == 0, err
    audio = sf.read(tmp_path / "nine.wav", dtype="float32")[0]
    whole = chain(**said, seed=9).audio
    assert audio.size == whole.size == sampled.shape[2] * 1920
    assert np.abs(audio - np.clip(whole, -1, 1)).max() <= 1 / 32767


def test_a_codec_of_another_code_space_is_refused(
    speedy_cli, built: dict, codec_build: dict
) -> None:
    """A codec whose code space differs gets a one-line error naming both code spaces."""
    args = ["--acoustic", built["export"].path, "--vocoder", codec_build["export"].path]
    code, _, err = speedy_cli("synth", *args, "--text", "Hi.", "-o", "never.wav")
    assert code != 0 and "Traceback" not in err
    assert "makes 4 codebooks of 64 codes at 12.5 Hz" in err and "different code spaces" in err


def test_a_server_pairs_the_talker_with_its_codec(built: dict, codec) -> None:
    """`speedy serve`'s catalog makes the talker and the codec of its code space one voice whose
    speakers are the model's; a request's audio is the chain's."""
    from speedy.chain import Chain
    from speedy.serve.catalog import Catalog

    catalog = Catalog.load([f"talker={built['export'].path}", f"codec={codec.path}"], [], 0.08)
    voice = catalog.voice(None)
    assert voice.name == "talker+codec" and voice.describe()["choices"]["speaker"] == ["amy", "bo"]
    request = {"text": "Good evening.", "speaker": "bo"}
    expected = Chain.load(built["export"].path, codec.path)(**request).audio
    np.testing.assert_array_equal(voice.chain(**request).audio, expected)
    assert voice.streamer is not None  # /v1/tts?stream=1 streams frames as they are made


def test_int4_weight_only_matmuls(built: dict, tmp_path: Path) -> None:
    """`--precision int4` stores every MatMul weight of the talker and predictor graphs in 4
    bits (ONNX Runtime's MatMulNBits, float activations); the embedding tables stay float; the
    report gives code agreement and teacher-forced KL against FP32."""
    from dataclasses import replace

    import onnx

    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    graphs = ["decode", "predictor"]
    options = {"graphs": graphs, "precision": "int4", "no_budget": True}
    ctx = replace(built["ctx"], examples=built["ctx"].examples[:4])  # quality on 4 sentences
    artifact = execute(make_stage("quantize", options), built["export"], tmp_path / "q", ctx)
    settings, projections = built["ctx"].task.s, 7  # q, k, v, o, gate, up, down
    reads = {  # once per step: every layer's projections, the head (and the predictor's input
        # projection from the talker's width, which the tiny configuration has)
        "decode": settings.layers * projections + 1,
        "predictor": (settings.groups - 1) * (settings.predictor_layers * projections + 2),
    }
    for graph in graphs:
        proto = onnx.load(str(artifact.file(graph)))
        weights = {t.name for t in proto.graph.initializer}
        assert [n.op_type for n in proto.graph.node].count("MatMulNBits") == reads[graph]
        assert not [
            n for n in proto.graph.node if n.op_type in ("MatMul", "Gemm") and weights & {*n.input}
        ]
        assert artifact.manifest.graphs[graph].precision == "int4-weights"
    assert artifact.manifest.graphs["embed"].precision == "fp32"
    metrics = artifact.manifest.reports["quality"]["metrics"]
    assert 0 <= metrics["agreement"] <= 1 and metrics["kl"] >= 0


def test_speech_streams_from_the_first_frame_and_equals_the_whole(built: dict, codec) -> None:
    """Chained with its codec, the talker's frames are decoded (decoder_step, one frame per
    call) as soon as each is made: the first 80 ms of audio comes before the talker's first
    decode step, and the stream equals the whole synthesis within 1e-4."""
    from speedy.chain import Chain
    from speedy.runtime import Model
    from speedy.tasks import streamer_of
    from speedy.tasks.base import _Recorder

    chain = Chain.load(built["export"].path, codec.path)
    decode = _Recorder(chain.first["decode"], limit=10_000)
    sessions = {name: chain.first[name] for name in chain.first.graphs} | {"decode": decode}
    chain.first = Model(chain.first.artifact, sessions)
    codec_task = chain.tasks[1]
    streamer = streamer_of(codec_task, 0.08)
    assert streamer is not None
    pieces = chain.handed_pieces(chain.request(text="Good evening.", speaker="bo"))
    stream = streamer.stream(chain.second, (codec_task.chained_inputs(p) for p in pieces))
    first = next(stream)
    assert first.size == 1920 and not decode.calls
    streamed = np.concatenate([first, *stream])
    whole = chain(text="Good evening.", speaker="bo").audio
    assert streamed.size == whole.size > 1920 and np.abs(streamed - whole).max() <= 1e-4


def test_triton_serves_the_talker_with_its_codec(built: dict, codec, tmp_path: Path) -> None:
    """`speedy deploy triton` of the talker and its codec: the repository's Python model runs
    the generation loop and the codec's decoder (whole, or decoder_step per frame when
    streamed) as BLS requests to the graph models, and answers the chain's audio."""
    pytest.importorskip("tritonclient.grpc", reason="the [deploy] extra is missing")
    from speedy.chain import Chain
    from speedy.deploy.triton_repo import write_repository
    from tests.triton_loop import ask, audio_of, loop_model_of

    repository = tmp_path / "repo"
    written = write_repository([f"talker={built['export'].path}", f"codec={codec.path}"], [],
                               repository)  # fmt: skip
    assert written.graphs["talker"]["predictor"] == "talker__predictor"
    assert written.graphs["codec"]["decoder_step"] == "codec__decoder_step"
    assert not written.ensembles  # loops run in the Python model
    request = {"text": "Where is the mill?", "speaker": "amy"}
    expected = Chain.load(built["export"].path, codec.path)(**request).audio.reshape(-1)
    with loop_model_of(repository) as loop:
        (whole,) = ask(loop, {"route": "tts", "voice": "talker+codec", **request})
        streamed = ask(loop, {"route": "tts", "voice": "talker+codec", "stream": True, **request})
    assert expected.size > 1920 and np.array_equal(whole.tensors[0].as_numpy(), expected)
    assert len(streamed) > 1 and np.abs(audio_of(streamed) - expected).max() <= 1e-4


def test_fp16_talker_and_predictor(built: dict, tmp_path: Path) -> None:
    """`--precision fp16` of the talker and predictor graphs: every weight matrix in float16,
    float32 at the graphs' edges, judged against FP32 by teacher-forced KL and code agreement."""
    from dataclasses import replace

    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    graphs = ["prefill", "decode", "predictor"]
    options = {"graphs": graphs, "precision": "fp16", "no_budget": True}
    ctx = replace(built["ctx"], examples=built["ctx"].examples[:4])
    artifact = execute(make_stage("quantize", options), built["export"], tmp_path / "q", ctx)
    import onnx

    for graph in graphs:
        proto = onnx.load(str(artifact.file(graph)))
        floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        kinds = {t.data_type for t in proto.graph.initializer
                 if len(t.dims) == 2 and t.data_type in floats}  # fmt: skip
        assert kinds == {onnx.TensorProto.FLOAT16}, (graph, kinds)  # every weight matrix
        edges = [*proto.graph.input, *proto.graph.output]
        assert onnx.TensorProto.FLOAT16 not in {v.type.tensor_type.elem_type for v in edges}
    assert {artifact.manifest.graphs[g].precision for g in graphs} == {"fp16"}
    metrics = artifact.manifest.reports["quality"]["metrics"]
    assert metrics["kl"] < 1e-3 and metrics["agreement"] > 0.5, metrics


def test_compiled_for_onnx_runtime_generates_the_same_codes(
    built: dict, model: runtime.Model, task: FrameCodes, tmp_path: Path
) -> None:
    """`speedy compile --backend ort` (every graph optimized offline, its session settings
    stored) generates the export's greedy codes, every codebook, on a prompt of its own."""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    stage = make_stage("compile", {"backend": "ort"})
    compiled = execute(stage, built["export"], tmp_path / "ort", built["ctx"])
    assert {g.runtime.backend for g in compiled.manifest.graphs.values()} == {"ort"}
    inputs = task.inputs(Utterance("", "A compiled voice speaks.", "auto", "amy"))
    generation = task.generation.model_copy(update={"max_frames": 40, "stop": False})
    expected = task.generate(model, inputs, generation)["codes"]
    codes = task.generate(runtime.load(compiled.path, threads=2), inputs, generation)["codes"]
    assert codes.shape == expected.shape and np.array_equal(codes, expected)


def test_the_talker_step_compiled_by_aotinductor_generates_the_same_codes(
    built: dict, model: runtime.Model, task: FrameCodes, tmp_path: Path
) -> None:
    """`speedy compile --backend aoti --graph decode` compiles the talker's per-frame step
    (its cache inputs a `*args` tuple) into an AOTInductor package; with the other graphs carried
    over, the artifact generates the export's greedy codes, every codebook, on a prompt of its
    own. (All four graphs compile too, in about 100 s here: too long for this suite.)"""
    from speedy.pipeline import make_stage
    from speedy.stages.base import execute

    stage = make_stage("compile", {"backend": "aoti", "graphs": ["decode"]})
    compiled = execute(stage, built["torch"], tmp_path / "aoti", built["ctx"])
    kinds = {name: graph.kind for name, graph in compiled.manifest.graphs.items()}
    assert kinds == {"embed": "torch", "prefill": "torch", "decode": "aoti", "predictor": "torch"}
    inputs = task.inputs(Utterance("", "A compiled step speaks.", "auto", "bo"))
    generation = task.generation.model_copy(update={"max_frames": 40, "stop": False})
    expected = task.generate(model, inputs, generation)["codes"]
    loaded = runtime.load(compiled.path, threads=2, trust=True)  # built here: its code is ours
    codes = task.generate(loaded, inputs, generation)["codes"]
    assert codes.shape == expected.shape and np.array_equal(codes, expected)
