"""elm_audio: compare audio CNN front-ends with random weights, scored by SVMs and ELMs."""

__version__ = "0.1.0"
