"""Protocols, metrics per task kind, and the premise test's training."""
