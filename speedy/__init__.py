"""OpenSpeedy: convert and optimize speech-generation models, checked with audio-aware metrics."""

__version__ = "0.1.0"
