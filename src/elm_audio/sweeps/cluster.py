"""Trials as SLURM jobs through hydra-submitit-launcher, each job's result collected on its own.

The launcher's own ``launch`` gathers a batch's results in one expression, so a single job that
died without a result (``scancel``, killed, out of memory, past its time limit: submitit raises
``UncompletedJobError`` once SLURM's accounting says it ended) would lose the whole batch and
leave its trials RUNNING. ``launch_each`` submits the batch as the launcher does (same executor,
same parameters, one job array) and turns a dead job into a failed ``JobReturn`` whose error
(``JobDied``) names the SLURM job id and its log files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

log = logging.getLogger("hydra_plugins.hydra_submitit_launcher.submitit_launcher")  # the launcher's own lines


class JobDied(RuntimeError):
    """A job that ended without its trial's result: cancelled, killed, out of memory, or stopped
    by submitit at its time limit (SLURM's warning signal, ``signal_delay_s`` before it)."""

    def __init__(self, job_id: str, why: str, stdout: Path, stderr: Path):
        self.job_id = job_id
        super().__init__(
            f"SLURM job {job_id} {why} (cancelled, killed, out of memory or past its time limit: see "
            f"sacct -j {job_id}); its log: {stdout} and {stderr}"
        )


def is_submitit(launcher: Any) -> bool:
    try:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
            BaseSubmititLauncher,
        )
    except ImportError:
        return False
    return isinstance(launcher, BaseSubmititLauncher)


def launch_each(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """``BaseSubmititLauncher.launch`` (hydra-submitit-launcher 1.4.0rc3), results collected per job."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = launcher.params
    specific = {"max_num_timeout", "python"}
    init = {"folder": params["submitit_folder"], **{f"{launcher._EXECUTOR}_{k}": v for k, v in params.items() if k in specific}}
    executor = submitit.AutoExecutor(cluster=launcher._EXECUTOR, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in base else f"{launcher._EXECUTOR}_{k}": v for k, v in params.items() if k not in specific | {"submitit_folder"}}
    )
    sweep = launcher.config.hydra.sweep
    Path(str(sweep.dir)).mkdir(parents=True, exist_ok=True)
    if "mode" in sweep:
        os.chmod(str(sweep.dir), int(str(sweep.mode), 8))
    job_params = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
    jobs = executor.map_array(launcher, *zip(*job_params))
    return [_result(job, overrides) for job, overrides in zip(jobs, job_overrides)]


def _result(job: Any, overrides: Sequence[str]) -> JobReturn:
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        return job.results()[0]
    except UncompletedJobError:
        why = f"ended {job.state} without a result"
    except FailedJobError as err:  # submitit's wrapper stopped the job (the task's own errors come as JobReturns)
        causes = [line for line in str(err).splitlines() if "Error: " in line]
        why = f"was stopped by submitit ({causes[-1].split('Error: ', 1)[1] if causes else 'see its log'})"
    died = JobDied(job.job_id, why, job.paths.stdout, job.paths.stderr)
    return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=died)
