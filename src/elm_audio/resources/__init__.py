"""Data shipped with elm_audio: the GTZAN fault-filtered split lists, with their attribution."""
