"""Commands that use artifacts: `infer` (one example), `synth` (text to a wave file) and `serve`
(HTTP)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from speedy.cli.app import app
from speedy.cli.params import (
    Force,
    ForceFile,
    NoVerify,
    Threads,
    Trust,
    given,
    validated,
    with_flags,
)
from speedy.console import out, shown
from speedy.errors import SpeedyError
from speedy.serve.options import ServeOptions


def _share_threads(device: str, threads: int) -> None:
    """This process runs only the artifacts' sessions: on CPU, one thread pool serves them all."""
    if device == "cpu":
        from speedy.backends.ort import pool

        pool.share(threads)


@app.command()
def infer(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory of a model making audio.")],
    input: Annotated[
        Path, typer.Option("--input", "-i", help="An example: a .wav (resynthesis) or mel .npy.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Threads = 2,
    no_verify: NoVerify = False,
    trust: Trust = False,
    force: Force = False,
    force_file: ForceFile = False,
) -> None:
    """Run an artifact on one example so a person can listen to it."""
    from speedy import runtime
    from speedy.audio.cache import FeatureCache, default_cache_dir
    from speedy.audio.io import write_audio, written_by_speedy
    from speedy.outputs import check_file_writable
    from speedy.tasks import task_for
    from speedy.tasks.capabilities import TakesControls

    if trust:
        runtime.trust_code()
    check_file_writable(output, force, force_file, written_by_speedy)
    _share_threads(device, threads)
    model = runtime.load(artifact, device=device, threads=threads, verify=not no_verify)
    task = task_for(model.manifest.model)
    if input.suffix.lower() not in task.data_suffixes:
        raise SpeedyError(
            f"{input} is not {task.data_kind}, what a {task.name} model takes",
            f"pass a {' or '.join(task.data_suffixes)} file"
            + (
                " (text models speak through `speedy synth`)"
                if isinstance(task, TakesControls)
                else ""
            ),
        )
    (example, *_) = task.read_data(input, FeatureCache(default_cache_dir()))
    waves = task.waveforms(task.run(model, task.inputs(example)))
    if waves is None:
        raise SpeedyError(
            f"a {task.name} model makes {task.produces}, not audio",
            "chain a model that makes audio of it: `speedy synth --acoustic ... --vocoder ...`",
        )
    rate = model.manifest.model.audio.sample_rate
    write_audio(output, waves[0], rate)
    out.print(f"wrote {shown(output)} ({waves[0].size / rate:.2f} s at {rate} Hz)")


@app.command()
def synth(
    acoustic: Annotated[
        Path, typer.Option(help="Artifact of a text model: text-to-mel, or a text-to-wave voice.")
    ],
    text: Annotated[str, typer.Option(help="What to say (in the model's language).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write.")],
    vocoder: Annotated[
        Path | None,
        typer.Option(help="Artifact of a vocoder of its mels, or the codec of its codes."),
    ] = None,
    speaker: Annotated[
        str | None, typer.Option(help="Speaker: an id, or a name for models with named voices.")
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="Language, for models that take one (default: auto).")
    ] = None,
    emotion: Annotated[
        str | None, typer.Option(help="Emotion label (default: the model's first).")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Clip whose emotion to take (instead of --emotion).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Speaking rate: 2 is twice as fast (default: 1).")
    ] = None,
    pitch_shift: Annotated[float | None, typer.Option(help="Pitch shift in semitones.")] = None,
    noise_scale: Annotated[
        float | None, typer.Option(help="Text-to-wave voices: noise scale (default: the voice's).")
    ] = None,
    noise_w: Annotated[
        float | None,
        typer.Option(help="Text-to-wave voices: duration noise (default: the voice's)."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Codes models: sample as the model's generation config says, from this "
            "seed (default: greedy).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Threads = 2,
    no_verify: NoVerify = False,
    trust: Trust = False,
    force: Force = False,
    force_file: ForceFile = False,
) -> None:
    """Text to wave: an acoustic model's mels through a vocoder, a codes model's codes through
    its codec, or a text-to-wave voice, with per-stage RTF."""
    from speedy import runtime
    from speedy.audio.io import write_audio, written_by_speedy
    from speedy.chain import Chain
    from speedy.outputs import check_file_writable

    if trust:
        runtime.trust_code()
    check_file_writable(output, force, force_file, written_by_speedy)
    _share_threads(device, threads)
    chain = Chain.load(acoustic, vocoder, device, threads, verify=not no_verify)
    asked = {
        "speaker": speaker,
        "language": language,
        "speed": speed,
        "emotion": emotion,
        "reference": reference,
        "pitch_shift": pitch_shift,
        "noise_scale": noise_scale,
        "noise_w": noise_w,
        "seed": seed,
    }
    result = chain(text=text, **{name: value for name, value in asked.items() if value is not None})
    write_audio(output, result.audio, result.sample_rate)
    rtf = ", ".join(f"{stage} {value:.3f}" for stage, value in result.rtf().items())
    seconds = f"{result.audio_seconds:.2f} s at {result.sample_rate} Hz"
    out.print(f"wrote {shown(output)} ({seconds}; RTF {rtf})")


@app.command()
@with_flags(ServeOptions)
def serve(
    artifacts: Annotated[
        list[str],
        typer.Argument(
            help="Artifacts to serve: text models, text-to-wave voices and vocoders; NAME=PATH "
            "names one."
        ),
    ],
    no_verify: NoVerify = False,
    trust: Trust = False,
    **options: Any,
) -> None:
    """Serve artifacts over HTTP: POST /v1/tts, /v1/audio/speech (OpenAI's speech API) and
    /v1/vocode, GET /v1/models, /v1/audio/voices, /health, /metrics, and a page at / that plays
    two voices side by side or blind."""
    from speedy import runtime
    from speedy.serve.server import serve as run_server

    if trust:
        runtime.trust_code()
    settings = given(options) | {"artifacts": artifacts, "verify": not no_verify}
    serve_options = validated(ServeOptions, settings, "serve")
    _share_threads(serve_options.device, serve_options.threads)
    run_server(serve_options)
