"""Data shipped with elm_audio (the GTZAN fault-filtered split lists, with their attribution)
and ``python -m elm_audio.data check``, which says what is wrong with a copy of a dataset."""
