"""A grid (``-m ... hydra/sweeper=basic``) says where it is: how many jobs it holds, each job as it
starts with an estimate of the time left once one has finished, and a closing table of what each
job scored, best first.

Jobs may run in other processes (the joblib launcher), so the grid's size is written to
``grid.json`` in the sweep's folder when it starts, and each finished job appends a line to
``grid.jsonl`` there, which the estimate and the closing table read.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from tabulate import tabulate

from ..evaluation.scoring import PRIMARY
from ..stores.redaction import redact

SCORES = tuple(f"test_{name}" for name in PRIMARY.values())  # a job is ranked by its kind's
LOG = "grid.jsonl"
SIZE = "grid.json"


def is_grid(config: DictConfig) -> bool:
    """A multirun of Hydra's basic sweeper: elm_audio's own sweepers print a line a trial already."""
    return str(config.hydra.mode).endswith("MULTIRUN") and str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper")


def jobs_in(task_overrides: list[str]) -> tuple[int, list[str]]:
    """How many jobs the command line's sweep overrides make, and the swept keys with their counts."""
    swept = []
    total = 1
    for override in OverridesParser.create().parse_overrides(list(task_overrides)):
        if override.is_sweep_override():
            n = len(list(override.sweep_string_iterator()))
            total *= n
            swept.append(f"{override.get_key_element()}: {n}")
    return total, swept


def job_name(config: DictConfig) -> str:
    return f"{config.frontend.name} {config.feature_size.name} {config.classifier.name}"


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def read_log(sweep_dir: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in (sweep_dir / LOG).read_text().splitlines() if line.strip()]
    except OSError:
        return []


class GridProgress(Callback):
    """Hydra callback: the grid's header, a line a job, and the closing table (see the module)."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_grid(config):
            return
        total, swept = jobs_in(config.hydra.overrides.task)
        parallel = int(config.hydra.launcher.get("n_jobs") or 1)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SIZE).write_text(json.dumps({"jobs": total, "parallel": parallel}))
        at_once = f", {parallel} at a time" if parallel > 1 else ""
        print(f"grid: {total} jobs ({' x '.join(swept) or 'one of each'}{at_once}); "
              "the time left is estimated once the first job has finished", flush=True)  # fmt: skip

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_grid(config):
            return
        self.started = time.monotonic()
        sweep_dir = Path(config.hydra.sweep.dir)
        size = json.loads((sweep_dir / SIZE).read_text())
        total, parallel = size["jobs"], size["parallel"]
        done = read_log(sweep_dir)
        left = ""
        if done:
            mean = sum(job["seconds"] for job in done) / len(done)
            left = f" (about {minutes(mean * math.ceil((total - len(done)) / parallel))} left)"
        print(f"job {int(config.hydra.job.num) + 1}/{total}: {job_name(config)}{left}", flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if not is_grid(config):
            return
        from ..stores import tracking

        failed = job_return is None or getattr(job_return.status, "name", "") != "COMPLETED"
        metrics = {} if failed else tracking.last_run_metrics()
        metric = next((name for name in SCORES if name in metrics), SCORES[0])
        line = {"job": int(config.hydra.job.num) + 1, "frontend": config.frontend.name, "size": config.feature_size.name,
                "classifier": config.classifier.name, "metric": metric, "score": metrics.get(metric),
                "seconds": time.monotonic() - self.started}  # fmt: skip
        with (Path(config.hydra.sweep.dir) / LOG).open("a") as fh:  # one short append: whole lines
            fh.write(json.dumps(line) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_grid(config):
            return
        done = sorted(read_log(Path(config.hydra.sweep.dir)), key=lambda j: math.inf if j["score"] is None else -j["score"])
        if not done:
            return
        rows = [[j["job"], j["frontend"], j["size"], j["classifier"],
                 "failed" if j["score"] is None else f"{j['score']:.4f}", minutes(j["seconds"])] for j in done]  # fmt: skip
        print("\ngrid finished, best first:", flush=True)
        print(tabulate(rows, headers=["job", "front-end", "size", "classifier", done[0]["metric"], "time"]), flush=True)
        uri = config.tracking.uri
        print(f"compare them: python -m elm_audio.report{f' --tracking-uri {redact(uri)}' if uri else ''}", flush=True)
