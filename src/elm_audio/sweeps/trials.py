"""A study's trials: how many ended how, and which sweeper owns a trial still RUNNING, so that a
sweep restarted after a kill settles what the killed sweeper left behind and leaves alone what a
live one runs (on this host or another)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import TrialState

from ..stores import processes, tracking


class ClaimsTrials:
    """Storage side of `claim`: a trial this process asks for names its sweeper from its first
    write, so that no kill, however timed, leaves a RUNNING trial no later sweep can settle.

    - A new trial (``study.ask()`` with nothing queued) is created claimed: the claim rides in
      the creating write.
    - A queued trial (a grid point) is taken by a second write (WAITING to RUNNING) that other
      servers may race for. Before it, this process adds itself to the trial's claimants; the
      winner then claims it as its owner (`claim`). A trial taken but not yet claimed is
      therefore settled once all its claimants are proven gone, the one that took it among them.
    """

    def create_new_trial(self, study_id: int, template_trial: optuna.trial.FrozenTrial | None = None) -> int:
        if template_trial is None:
            template_trial = optuna.trial.FrozenTrial(
                number=-1, trial_id=-1, state=optuna.trial.TrialState.RUNNING, value=None,
                datetime_start=datetime.now(timezone.utc), datetime_complete=None, params={}, distributions={},
                user_attrs=tracking.process_tags(), system_attrs={}, intermediate_values={},
            )  # fmt: skip
        return super().create_new_trial(study_id, template_trial)

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState, values=None) -> bool:
        if state == optuna.trial.TrialState.RUNNING and self.get_trial(trial_id).state == optuna.trial.TrialState.WAITING:
            identity = processes.identity()
            self.set_trial_user_attr(trial_id, CLAIMANT_PREFIX + claimant_key(identity), identity)
        return super().set_trial_state_values(trial_id, state, values)


CLAIMANT_PREFIX = "elm_audio.claimant."


def claimant_key(identity: Mapping[str, str]) -> str:
    """One user attribute per process that tried to take a queued trial."""
    return hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()[:16]


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def pruned(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))


def claim(trial: optuna.Trial) -> None:
    """Mark a trial as this sweeper's, so that a later sweep on the same host can tell that it
    was interrupted (the sweeper asked for it, then was killed before telling its result). A
    trial ClaimsTrials created is claimed already; a queued one is claimed here, one attribute
    per write, the pid last: until it is written, the trial's claimants decide (interrupted)."""
    if tracking.owner_tagged(trial.user_attrs):
        return
    tags = tracking.process_tags()
    pid = tracking.PROCESS_TAG_PREFIX + "pid"
    for key, value in sorted(tags.items(), key=lambda item: item[0] == pid):
        trial.set_user_attr(key, value)


def interrupted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials still RUNNING whose sweeper is proven gone (tracking.owner_gone), or, for a queued
    trial taken but not yet claimed, all of whose claimants are (ClaimsTrials). Trials of live
    sweepers, or of sweepers that cannot be proven gone (other hosts, other containers, older
    versions' trials), are left alone: they may be running right now."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if (tracking.owner_gone(t.user_attrs) if tracking.owner_tagged(t.user_attrs) else claimants_gone(t.user_attrs))
    ]


def claimants_gone(attrs: Mapping[str, Any]) -> bool:
    claimants = [v for k, v in attrs.items() if k.startswith(CLAIMANT_PREFIX) and isinstance(v, dict)]
    return bool(claimants) and all(processes.proven_gone(c) for c in claimants)


def own_running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials still RUNNING that this process claimed (`claim`): the trials in flight when it is
    interrupted. A queued trial taken but not yet claimed may be another server's, which won the
    race for it: it is left to its claimants (`interrupted`)."""
    mine = tracking.process_tags()
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if tracking.owner_tagged(t.user_attrs) and all(t.user_attrs.get(k) == v for k, v in mine.items())
    ]


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """The study's finished trials by state (complete, pruned, failed), those it holds none of left out."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED), "failed": states.count(TrialState.FAIL)}
    return {k: n for k, n in counts.items() if n or k == "complete"}
