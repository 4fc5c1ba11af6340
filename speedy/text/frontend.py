"""Text front end: Chinese and English text -> symbol ids of a recipe's vocabulary."""

import re
import unicodedata
from collections import Counter

import numpy as np

from speedy.console import notice
from speedy.errors import SpeedyError
from speedy.text.numbers import normalize_numbers
from speedy.text.pinyin import hanzi_symbols
from speedy.text.vocab import Vocabulary

# Chinese and typographic punctuation -> the vocabulary's ASCII punctuation.
_PUNCTUATION = str.maketrans(
    {
        "，": ",", "、": ",", "。": ".", "．": ".", "！": "!", "？": "?", "；": ";", "：": ":",
        "…": ".", "—": "-", "–": "-", "～": "-", "~": "-", "·": " ", "/": " ", "_": " ",
        "\t": " ", "\n": " ", "’": "'", "‘": "'",
    }
)  # fmt: skip
# Quotes and brackets carry no sound: removed silently (not "unknown").
_SILENT = re.compile(r"[\"“”「」『』《》〈〉()（）\[\]【】{}<>*]")
_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "st": "saint",
    "prof": "professor", "jr": "junior", "sr": "senior", "vs": "versus", "etc": "et cetera",
    "no": "number", "approx": "approximately", "dept": "department",
}  # fmt: skip
_ABBREVIATION = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.IGNORECASE)
_NO = re.compile(r"\bno\.(?=\s*\d)", re.IGNORECASE)
_SYMBOL_WORDS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "#": " number "}
_HANZI_RUN = re.compile(r"[\u4e00-\u9fff]+")


def _is_hanzi(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


def normalize(text: str) -> str:
    """Unicode-, number-, abbreviation- and punctuation-normalized text, still readable."""
    text = unicodedata.normalize("NFKC", text)  # full-width forms -> ASCII
    text = text.translate(_PUNCTUATION)
    text = normalize_numbers(text)
    text = _NO.sub("number", text)
    text = _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m[1].lower()], text)
    for symbol, words in _SYMBOL_WORDS.items():
        text = text.replace(symbol, words)
    text = _SILENT.sub(" ", text)
    # Accented Latin letters -> their base letters (café -> cafe); Hanzi are left alone.
    text = "".join(
        c if _is_hanzi(c) else unicodedata.normalize("NFKD", c)[0] if c.isalpha() else c
        for c in text
    )
    return text


def to_symbols(text: str) -> list[str]:
    """Symbols of normalized text: pinyin for Hanzi runs, lowercase letters and punctuation."""
    symbols: list[str] = []
    last = 0
    for run in _HANZI_RUN.finditer(text):
        symbols += _latin_symbols(text[last : run.start()])
        symbols += hanzi_symbols(run.group())
        last = run.end()
    symbols += _latin_symbols(text[last:])
    return _tidy(symbols)


def _latin_symbols(text: str) -> list[str]:
    return [" " if c.isspace() else c.lower() if c.isascii() else c for c in text]


def _tidy(symbols: list[str]) -> list[str]:
    """Collapse spaces and repeated punctuation, drop spaces before punctuation and at the ends."""
    out: list[str] = []
    for symbol in symbols:
        if symbol == " " and (not out or out[-1] == " "):
            continue
        if symbol in ",.!?;:" and out and out[-1] == " ":
            out.pop()
        if symbol in ",.!?;:-" and out and out[-1] == symbol:
            continue  # "……" -> "."
        out.append(symbol)
    while out and out[-1] == " ":
        out.pop()
    return out


class TextFrontEnd:
    """Text -> int64 symbol ids of one vocabulary; unknown symbols dropped with a notice."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary

    def symbols(self, text: str, where: str = "") -> list[str]:
        """The vocabulary's symbols for `text`; a notice (naming `where`) lists those dropped."""
        symbols = to_symbols(normalize(text))
        known = [s for s in symbols if s in self.vocabulary.ids]
        if unknown := Counter(s for s in symbols if s not in self.vocabulary.ids):
            listed = ", ".join(f"{s!r} x{n}" if n > 1 else repr(s) for s, n in unknown.items())
            place = f"{where}: " if where else ""
            notice(f"{place}dropped symbols the {self.vocabulary.name} vocabulary lacks: {listed}")
        return _tidy(known)

    def encode(self, text: str, where: str = "") -> np.ndarray:
        """Symbol ids of `text`, shape (symbols,), int64; an error when nothing is left."""
        symbols = self.symbols(text, where)
        if not symbols:
            shown = text if len(text) <= 40 else text[:37] + "..."
            place = f"{where}: " if where else ""
            raise SpeedyError(
                f"{place}text {shown!r} has nothing to say in the {self.vocabulary.name} "
                "vocabulary",
                "pass Chinese or English text with at least one letter, Hanzi or digit",
            )
        return np.array([self.vocabulary.ids[s] for s in symbols], dtype=np.int64)
