"""Sweeps: Optuna studies and their parent runs, SLURM trials, grid progress.

storage (where a study lives: in memory, an RDB URL, a journal file; the study opened once),
space (what a sweep searches: distributions, conditions, the paper's grid), trials (how trials
ended, which sweeper owns one still running), pruning (pruners, the per-fold report a trial
makes), parent (the sweep's MLflow parent run and its summary), interruption (Ctrl-C and
SIGTERM, the joblib workers stopped), cluster (trials as SLURM jobs), grid (a hydra/sweeper=basic grid's progress and closing table).
The Hydra sweeper plugin ``hydra_plugins.elm_audio_sweeper`` drives them; nothing here runs a trial.
"""
