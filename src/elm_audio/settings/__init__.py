"""The config read once: composed, validated, the run's parts built, its plan settled."""
