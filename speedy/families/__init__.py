"""Model families: one adapter per architecture, found by name."""

from speedy.errors import SpeedyError
from speedy.families.base import Family
from speedy.families.hifigan import HiFiGAN
from speedy.families.sambert import SambertFamily

FAMILIES: dict[str, type[Family]] = {HiFiGAN.name: HiFiGAN, SambertFamily.name: SambertFamily}


def family_class(name: str) -> type[Family]:
    """The adapter class registered under `name`."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise SpeedyError(
            f"unknown model family '{name}'", f"use one of: {', '.join(sorted(FAMILIES))}"
        ) from None
