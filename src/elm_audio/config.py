"""Where the Hydra config tree lives, and composing it outside a Hydra app (for the
``describe`` and ``data check`` commands, and for tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).parent / "conf"


class ConfigError(ValueError):
    """A config key with a value that cannot work; the message names the key and the choices."""


def shown(value: object) -> str:
    """A value as a user writes it on the command line, for messages: a string as it is (quoted
    only when empty or padded with spaces), true, null, [a, b], {a: 1}; never a Python repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value and value.strip() == value else f'"{value}"'
    if isinstance(value, Mapping) or type(value).__name__ == "DictConfig":
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


CONFIG_NAME = "config"
# Targets that config files may instantiate (Hydra 1.4's execution whitelist).
EXECUTION_WHITELIST = [
    "elm_audio.*",
    "sklearn.svm.*",
    "hydra_plugins.*",
    "optuna.samplers.*",
    "optuna.storages.*",
]


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR)):
        return hydra_compose(CONFIG_NAME, overrides=list(overrides))


def choices(group: str) -> list[str]:
    """The options of a config group, e.g. every front-end name."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


# conf/frontend/ options that import a model or vectors from elsewhere (docs/interop.md)
IMPORTED_FRONTENDS = ("embeddings", "hear")


def native_frontends() -> list[str]:
    """elm_audio's own front-ends: the random-weight CNNs and the MFCC baseline."""
    return [name for name in choices("frontend") if name not in IMPORTED_FRONTENDS]


def build(node: DictConfig, **kwargs):
    """Instantiate a config node whose ``_target_`` is one of ours or a trusted library's."""
    return instantiate(node, _execution_whitelist_=EXECUTION_WHITELIST, **kwargs)


def as_yaml(container: Mapping) -> str:
    """A plain config container as OmegaConf writes a config (record.py's config.yaml)."""
    return OmegaConf.to_yaml(OmegaConf.create(container))
