"""``python -m elm_audio [overrides]``: one run; ``-m`` for a sweep (Optuna by default)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .config import CONFIG_DIR, CONFIG_NAME, EXECUTION_WHITELIST


@hydra.main(
    config_path=str(CONFIG_DIR),
    config_name=CONFIG_NAME,
    execution_whitelist=EXECUTION_WHITELIST,
)
def main(cfg: DictConfig) -> float:
    from .runner import run

    return run(cfg)


if __name__ == "__main__":
    main()
