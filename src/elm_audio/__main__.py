"""``python -m elm_audio [overrides]``: one run; ``-m`` for a sweep (Optuna by default)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .config import CONFIG_DIR, CONFIG_NAME, EXECUTION_WHITELIST, ConfigError
from .datasets import DatasetError
from .sound.decode import AudioError
from .stores.cache import CacheError
from .stores.redaction import guard_streams, redact, remember


def main() -> None:
    """Refuse overrides of keys the config does not define (Hydra would add them with ``+``),
    then run the Hydra app.

    First the secrets of every override are remembered and sys.stdout and sys.stderr redact what
    is written to them: Hydra prints a failed job's overrides ("Error executing job with
    overrides: [...]") and its traceback straight to stderr, past the logging filter, and so does
    Python an uncaught exception (HYDRA_FULL_ERROR=1) or a SystemExit's message."""
    from .settings.unknown_keys import check_command_line

    for override in sys.argv[1:]:
        remember(override)
    guard_streams()
    try:
        check_command_line(sys.argv[1:])
    except ConfigError as err:
        raise SystemExit(f"elm_audio: {err}") from None
    app()


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, execution_whitelist=EXECUTION_WHITELIST)
def app(cfg: DictConfig) -> float:
    from .settings.validate import validate

    try:
        validate(cfg)  # before the run's own imports (MLflow, matplotlib): a bad value is refused sooner
        from .run.runner import run

        return run(cfg)
    except (DatasetError, AudioError, ConfigError, CacheError) as err:
        # the data or the config is at fault, not the code: say what to do, without a traceback
        raise SystemExit(f"elm_audio: {redact(err)}") from None
    except KeyboardInterrupt as err:  # runner.Interrupted carries the run it ended
        run_id = getattr(err, "run_id", None)
        logged = f"; run {run_id} ended as KILLED" if run_id else ""
        raise SystemExit(f"elm_audio: interrupted{logged}; the feature chunks computed so far are kept: the next run with the same settings resumes from them") from None


if __name__ == "__main__":
    main()
