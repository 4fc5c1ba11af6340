"""Model families: one adapter per architecture, found by name."""

from speedy.errors import SpeedyError
from speedy.families.base import Family
from speedy.families.hifigan import HiFiGAN

FAMILIES: dict[str, type[Family]] = {HiFiGAN.name: HiFiGAN}


def family_class(name: str) -> type[Family]:
    """The adapter class registered under `name`."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise SpeedyError(
            f"unknown model family '{name}'", f"use one of: {', '.join(sorted(FAMILIES))}"
        ) from None
