"""Command-line overrides that name an option or a key the config does not have, refused in one
line with the nearest real one.

Hydra refuses ``frontend=vggg`` in twenty lines (the missing file, every option, its search
path), and ``classifer=elm`` with the hint "use +classifer=elm", and then accepts the ``+``
form, adding a key nothing reads: the run goes on with the default classifier. Here every
option a group override picks (``frontend=vggg``, ``-m frontend=vgg,vggg``,
``hydra/sweeper=serch``) must exist, and every override (``key=``, ``+key=``, ``++key=``,
``~key``) must name a key that the config composed from the command line's group choices
defines, or a config group; Hydra's own ``hydra.*`` keys are left to Hydra.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence

from hydra import initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, ListConfig

from ..config import CONFIG_DIR, ConfigError, compose

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic"
# Options Hydra accepts that are not meant to be chosen (docs/sweeps.md): never suggested or listed.
INTERNAL_OPTIONS = {"hydra/sweeper": ("optuna", "elm_audio_optuna")}


def is_group(name: str) -> bool:
    return name != "hydra" and not name.startswith("hydra/") and (CONFIG_DIR / name).is_dir()


def groups() -> list[str]:
    """Every config group a user can pick an option of (``frontend``, ``original/classifier`` ...)."""
    return sorted(str(p.parent.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob("*.yaml") if p.parent != CONFIG_DIR
                  and is_group(str(p.parent.relative_to(CONFIG_DIR))))  # fmt: skip


def paths(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[str]:
    """Every key path of a config, inner nodes included (``classifier``, ``classifier.C`` ...)."""
    if not isinstance(node, DictConfig):
        return
    for key in node.keys():
        path = f"{prefix}{key}"
        yield path
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from paths(child, path + ".")


def options(override: Override) -> list[str]:
    """The values an override gives, as a command line writes them (``null``, not ``None``)."""
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    value = override.value()
    return [value if isinstance(value, str) else override.get_value_element_as_str()]


def known_keys(chosen: list[Override]) -> set[str]:
    """The keys of the config composed with the group choices given; a swept group adds the keys
    of each of its options."""
    first = [f"{o.get_key_element()}={options(o)[0]}" for o in chosen]
    variants = [first] + [
        [f"{o.get_key_element()}={value}" if k == i else first[k] for k, o in enumerate(chosen)]
        for i, o in enumerate(chosen) for value in options(o)[1:]
    ]  # fmt: skip
    keys: set[str] = set()
    for overrides in variants:
        keys |= set(paths(compose(overrides)))
    return keys


def close(word: str, candidates: list[str]) -> str | None:
    """A case-insensitive match, else difflib's closest."""
    folded = {c.lower(): c for c in sorted(candidates)}
    if word.lower() in folded:
        return folded[word.lower()]
    near = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
    return folded[near[0]] if near else None


def hint(key: str, keys: set[str]) -> str:
    """The real key a misspelt one most likely meant: a sibling first (``classifier.c`` ->
    ``classifier.C``), else any key or group; else the keys its parent holds."""
    parent, _, leaf = key.rpartition(".")
    siblings = sorted(k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent)
    if parent and parent in keys:
        if sibling := close(leaf, siblings):
            return f"did you mean {parent}.{sibling}?"
        return f"{parent} holds: {', '.join(siblings)}"
    if suggestion := close(key, sorted(keys | set(groups()))):
        return f"did you mean {suggestion}?"
    return "python -m elm_audio --help lists the keys"


def check_options(parsed: list[Override]) -> None:
    """Raise ConfigError naming the first option of a config group (ours, Hydra's or a plugin's:
    ``hydra/sweeper``, ``hydra/launcher``) that does not exist, with the nearest option, else
    the group's options."""
    with initialize_config_dir(str(CONFIG_DIR)):
        loader = GlobalHydra.instance().config_loader()
        for o in parsed:
            group = o.key_or_group
            if group == "hydra" or o.is_delete() or o.value_type == ValueType.GLOB_CHOICE_SWEEP:
                continue  # a glob picks among the options that exist
            available = loader.get_group_options(group)
            if not available:  # a key, not a group (its sweep may be a range or an interval)
                continue
            for option in options(o):
                if option not in available:
                    offered = [a for a in available if a not in INTERNAL_OPTIONS.get(group, ())]
                    near = close(option, offered)
                    advice = f"did you mean {near}?" if near else f"its options are {', '.join(offered)}"
                    raise ConfigError(f"{o.input_line}: {group} has no option {option}; {advice}")


def check(overrides: Sequence[str]) -> None:
    """Raise ConfigError naming the first override whose option does not exist or whose key the
    config does not define."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:  # Hydra's message: three lines, every override as a Python list
        raise ConfigError(f"{err.override}: not an override Hydra can read; the grammar: {GRAMMAR}") from None
    check_options(parsed)
    parsed = [o for o in parsed if o.key_or_group != "hydra" and not o.key_or_group.startswith(("hydra.", "hydra/"))]
    chosen = [o for o in parsed if is_group(o.key_or_group) and not o.is_delete()]
    try:
        keys = known_keys(chosen)
    except HydraException:
        return  # left to Hydra's own message (a glob of options, say, which Hydra expands at run time)
    for o in parsed:
        key = o.key_or_group
        if is_group(key) or key in keys:
            continue
        raise ConfigError(f"{o.input_line}: the config has no key {key}; {hint(key, keys)}")


def check_command_line(argv: Sequence[str]) -> None:
    """The overrides of a ``python -m elm_audio`` command line (flags such as ``-m`` aside)."""
    args = get_args_parser().parse_intermixed_args(list(argv))  # as Hydra parses them: -m anywhere
    if args.help or args.hydra_help or args.info or args.shell_completion:
        return
    check(args.overrides)
