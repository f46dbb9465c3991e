"""What a sweep searches: Hydra's sweep overrides as Optuna distributions, entries sampled only
under conditions, the paper's grid (scikit-learn's param_grid), and what a classifier's search
adds for the dataset's task kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from sklearn.model_selection import ParameterGrid


def expand_grid(blocks: Sequence[Mapping[str, Sequence[Any]]] | Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """scikit-learn's param_grid, in ParameterGrid's order (blocks in turn; within a block the
    keys sorted, the first outermost), which is the order the original's GridSearchCV broke
    ties in: trials run in this order and the earliest of equally good ones is the best."""
    return [dict(point) for point in ParameterGrid([dict(b) for b in ([blocks] if isinstance(blocks, Mapping) else blocks)])]


def _optuna_value(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def distribution(override: Override) -> BaseDistribution | None:
    """The Optuna distribution of a Hydra sweep override (choice, range, interval, with the
    ``log`` tag for log scales); None for a plain value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution([_optuna_value(v) for v in override.sweep_iterator(transformer=Transformer.encode)])
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    if isinstance(value, RangeSweep):
        return CategoricalDistribution([_optuna_value(v) for v in override.sweep_iterator(transformer=Transformer.encode)])
    raise ValueError(f"{override.input_line}: not a sweep the Optuna sweeper can search")


@dataclass
class SearchSpace:
    """What each trial sets: distributions to sample (define-by-run, so an entry can depend on
    another's value) and fixed overrides. ``conditions`` maps an entry to the values other
    entries must take for it to be sampled, e.g. gamma only for the rbf kernel."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]
    conditions: dict[str, dict[str, Any]]

    @classmethod
    def parse(cls, entries: Mapping[str, Any], conditions: Mapping[str, Mapping[str, Any]] | None = None) -> "SearchSpace":
        overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in entries.items()])
        distributions, fixed = {}, {}
        for override in overrides:
            key = override.get_key_element()
            dist = distribution(override)
            if dist is None:
                fixed[key] = override.get_value_element_as_str()
            else:
                distributions[key] = dist
        conditions = {k: dict(v) for k, v in (conditions or {}).items()}
        for key, needs in conditions.items():
            unknown = [n for n in needs if n not in distributions and n not in fixed]
            if unknown:
                raise ValueError(f"hydra.sweeper.conditions.{key} names {', '.join(unknown)}, not in the search space")
        return cls(distributions, fixed, conditions)

    @classmethod
    def from_grid(cls, points: list[dict[str, Any]], given: Mapping[str, str], conditions=None) -> "SearchSpace":
        """The grid's values as choices; ``given`` (the command line's other overrides) fixed."""
        fixed = cls.parse(given)
        if fixed.distributions:
            raise ValueError(
                f"{', '.join(fixed.distributions)}: a grid sweep runs the grid's points only; "
                "fix these on the command line, or sweep them with hydra/sweeper=search"
            )
        choices: dict[str, list] = {}
        for point in points:
            for key, value in point.items():
                if value not in choices.setdefault(key, []):
                    choices[key].append(value)
        return cls({k: CategoricalDistribution(v) for k, v in choices.items()}, fixed.fixed, dict(conditions or {}))

    def applies(self, key: str, chosen: Mapping[str, Any]) -> bool:
        return all(str(chosen.get(k)) == str(v) for k, v in self.conditions.get(key, {}).items())

    def suggest(self, trial: optuna.Trial, only: Sequence[str] | None = None) -> dict[str, Any]:
        """Sample this trial's values, entry by entry, skipping entries whose conditions the
        values chosen so far do not meet (and, for a grid point, entries it does not set)."""
        chosen: dict[str, Any] = dict(self.fixed)
        for key, dist in self.distributions.items():
            if (only is None or key in only) and self.applies(key, chosen):
                chosen[key] = suggest(trial, key, dist)
        return chosen


def suggest(trial: optuna.Trial, key: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
