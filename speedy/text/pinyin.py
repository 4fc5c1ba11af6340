"""Mandarin text -> pinyin initials and tone-numbered finals, via the optional `pypinyin`."""

from functools import cache
from types import ModuleType

from speedy.errors import SpeedyError
from speedy.text.vocab import ZH_FINALS, ZH_PREFIX


@cache
def _pypinyin() -> ModuleType:
    try:
        import pypinyin
    except ImportError:
        raise SpeedyError(
            "Chinese text needs the pypinyin package", "pip install 'openspeedy[text]'"
        ) from None
    return pypinyin


def hanzi_symbols(run: str) -> list[str]:
    """Symbols of a run of Hanzi: each syllable's initial (if any), then its final with tone.

    The whole run goes to pypinyin at once so that its phrase dictionary picks the reading of
    heteronyms from context (银行 hang2, 行走 xing2). A character pypinyin cannot read gives a
    symbol the vocabulary does not hold, so the front end drops it with a notice.
    """
    pypinyin = _pypinyin()
    style = pypinyin.Style
    initials = pypinyin.lazy_pinyin(run, style=style.INITIALS, strict=False)
    finals = pypinyin.lazy_pinyin(
        run, style=style.FINALS_TONE3, strict=False, neutral_tone_with_five=True
    )
    symbols = []
    for char, initial, final in zip(run, initials, finals, strict=True):
        if final.rstrip("12345") not in ZH_FINALS:
            symbols.append(char)
            continue
        if initial:
            symbols.append(ZH_PREFIX + initial)
        symbols.append(ZH_PREFIX + final)
    return symbols
