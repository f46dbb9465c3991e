"""elm_audio's Hydra sweeper: the Optuna sweeper plus shared storages, the paper's grid and
one MLflow parent run per sweep (see elm_audio.sweeps: storage, space, parent, pruning)."""
