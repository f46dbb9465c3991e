"""Sweeps: Optuna studies and their parent runs, SLURM trials, grid progress."""
