"""Model families: one adapter per architecture, found by name in this registry and imported
(with torch and the network's code) only when a model of that family is described or built;
building networks is `speedy.families.network`'s job."""

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from speedy.audio.mel import AudioSpec
from speedy.errors import SpeedyError, first_invalid
from speedy.model_spec import CheckpointInfo, ModelSpec, ParityOptions
from speedy.registry import Registry
from speedy.specs import DimRange, symbols

if TYPE_CHECKING:
    from speedy.families.base import Family

__all__ = ["FAMILIES", "describe", "family_class", "register", "resolve"]

FAMILIES: "Registry[type[Family]]" = Registry(
    "model family",
    "speedy.families",
    {
        "hifigan": "speedy.families.hifigan:HiFiGAN",
        "sambert": "speedy.families.sambert:SambertFamily",
        "codec_12hz": "speedy.families.codec_12hz:Codec12Hz",
        "qwen_tokenizer_12hz": "speedy.families.qwen_codec:QwenTokenizer12Hz",
        "qwen3_tts": "speedy.families.qwen_tts:QwenTts",
        "gpt_tts": "speedy.families.gpt_tts:GptTts",
        "custom": "speedy.families.custom:Custom",
    },
)


def register(family: "type[Family]") -> None:
    """Add a family to the registry (a plugin's, or a test's)."""
    FAMILIES.register(family.name, family)


def family_class(name: str) -> "type[Family]":
    """The adapter class registered under `name`."""
    return FAMILIES.get(name)


def _adapter(family: str, network: dict[str, Any], audio: AudioSpec) -> "Family":
    cls = family_class(family)
    try:
        params = cls.Params.model_validate(network)
    except ValidationError as exc:
        raise SpeedyError(
            f"network.{first_invalid(exc)}",
            f"fix the `network:` settings of the {family} model",
        ) from exc
    return cls(params, audio)


def resolve(spec: ModelSpec) -> "Family":
    """The family adapter configured with a model spec's settings."""
    return _adapter(spec.family, spec.network, spec.audio)


def describe(
    recipe: str,
    family: str,
    network: dict[str, Any],
    audio: AudioSpec,
    dims: dict[str, DimRange],
    parity: ParityOptions,
    factory: str | None = None,
    checkpoint: CheckpointInfo | None = None,
) -> ModelSpec:
    """The model spec of a family's network: settings checked, task and its settings filled in,
    and every symbolic input dim of every graph given a range."""
    adapter = _adapter(family, network, audio)
    inputs = [spec for graph in adapter.graphs() for spec in graph.inputs]
    if missing := set(symbols(inputs)) - dims.keys():
        raise SpeedyError(f"dims has no range for {sorted(missing)}", "add them to `dims:`")
    for sizes in parity.sizes:
        if unknown := sizes.keys() - dims.keys():
            raise SpeedyError(
                f"parity size names unknown dims {sorted(unknown)}",
                f"use dims of the model: {', '.join(dims)}",
            )
    return ModelSpec(
        recipe=recipe,
        family=family,
        task=adapter.task,
        network=network,
        audio=audio,
        dims=dims,
        parity=parity,
        task_settings=adapter.task_settings(),
        factory=factory,
        checkpoint=checkpoint,
    )
