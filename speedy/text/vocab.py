"""Symbol inventories (vocabularies) that a recipe's token embedding is sized for."""

from dataclasses import dataclass, field
from functools import cached_property
from string import ascii_lowercase

from speedy.errors import SpeedyError

PAD = "<pad>"
PUNCTUATION = (",", ".", "!", "?", ";", ":", "-")
# Mandarin initials and finals as pypinyin writes them with strict=False (y and w as initials,
# ü as v); every Hanzi in U+4E00..U+9FA5 maps onto these.
# fmt: off
ZH_INITIALS = (
    "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "zh", "ch", "sh", "r",
    "z", "c", "s", "y", "w",
)
ZH_FINALS = (
    "a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er", "i", "ia", "ian", "iang", "iao",
    "ie", "in", "ing", "iong", "iu", "m", "n", "o", "ong", "ou", "u", "ua", "uai", "uan", "uang",
    "ue", "ui", "un", "uo", "v", "ve",
)
# fmt: on
ZH_TONES = ("1", "2", "3", "4", "5")  # 5: neutral tone
ZH_PREFIX = "zh:"  # keeps pinyin symbols apart from English letters ("zh:b" vs "b")


@dataclass(frozen=True)
class Vocabulary:
    """An ordered symbol set; a symbol's id is its index (0 is padding)."""

    name: str
    symbols: tuple[str, ...] = field(repr=False)

    @cached_property
    def ids(self) -> dict[str, int]:
        return {symbol: i for i, symbol in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)


def _zh_en_v1() -> Vocabulary:
    zh = [ZH_PREFIX + i for i in ZH_INITIALS]
    zh += [f"{ZH_PREFIX}{final}{tone}" for final in ZH_FINALS for tone in ZH_TONES]
    return Vocabulary("zh_en_v1", (PAD, " ", *PUNCTUATION, "'", *ascii_lowercase, *zh))


VOCABULARIES: dict[str, Vocabulary] = {v.name: v for v in (_zh_en_v1(),)}


def vocabulary(name: str) -> Vocabulary:
    """The built-in vocabulary called `name`."""
    try:
        return VOCABULARIES[name]
    except KeyError:
        raise SpeedyError(
            f"unknown vocabulary '{name}'", f"use one of: {', '.join(sorted(VOCABULARIES))}"
        ) from None
