"""``python -m elm_audio [overrides]``: one run; ``-m`` for a sweep (Optuna by default)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .audio import AudioError
from .cache import CacheError
from .config import CONFIG_DIR, CONFIG_NAME, EXECUTION_WHITELIST, ConfigError
from .datasets import DatasetError
from .redaction import redact


def main() -> None:
    """Refuse overrides of keys the config does not define (Hydra would add them with ``+``),
    then run the Hydra app."""
    from .unknown_keys import check_command_line

    try:
        check_command_line(sys.argv[1:])
    except ConfigError as err:
        raise SystemExit(f"elm_audio: {err}") from None
    app()


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, execution_whitelist=EXECUTION_WHITELIST)
def app(cfg: DictConfig) -> float:
    from .validate import validate

    try:
        validate(cfg)  # before the run's own imports (MLflow, matplotlib): a bad value is refused sooner
        from .runner import run

        return run(cfg)
    except (DatasetError, AudioError, ConfigError, CacheError) as err:
        # the data or the config is at fault, not the code: say what to do, without a traceback
        raise SystemExit(f"elm_audio: {redact(err)}") from None
    except KeyboardInterrupt as err:  # runner.Interrupted carries the run it ended
        run_id = getattr(err, "run_id", None)
        logged = f"; run {run_id} ended as KILLED" if run_id else ""
        raise SystemExit(f"elm_audio: interrupted{logged}; no partial features were kept") from None


if __name__ == "__main__":
    main()
