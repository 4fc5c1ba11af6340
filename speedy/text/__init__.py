"""Text front ends: normalization, pinyin and English letters, recipe vocabularies."""

from speedy.text.frontend import TextFrontEnd, normalize
from speedy.text.vocab import VOCABULARIES, Vocabulary, vocabulary

__all__ = ["VOCABULARIES", "TextFrontEnd", "Vocabulary", "normalize", "vocabulary"]
