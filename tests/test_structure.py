"""The package's shape: no module imports another that imports it back, the config tree and
the classes agree, and ARCHITECTURE.md's recipe for a new front-end works."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from elm_audio.config import choices, compose

PACKAGE = Path(__file__).parents[1] / "src" / "elm_audio"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The elm_audio modules ``path`` imports, anywhere in it (inside functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("elm_audio"):
                # ``from . import tracking`` names a sibling module; the package holding this
                # module is not an import of it (Python runs it first whatever the module does)
                if not name.startswith(base + "."):
                    found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("elm_audio"))
    return found


def test_no_module_imports_one_that_imports_it_back():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: {i for i in imports(p) if i in modules and i != m} for m, p in modules.items()}
    # a package's __init__ re-exports its modules: an import of the package reaches them
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# The package's parts from the bottom up (ARCHITECTURE.md draws them): a module imports from its
# own part or from parts below it, never above.
LAYERS = [
    {"config", "devices", "products", "resources"},  # what every part shares: the config's composition and errors, devices, matrix products, data files
    {"stores", "sound"},  # files, caches, MLflow; decoding, resampling, spectrograms
    {"datasets"},
    {"frontends"},
    {"classifiers"},
    {"extraction"},
    {"evaluation"},
    {"settings"},
    {"sweeps"},
    {"run"},
    {"report", "hear"},
    {"xares"},
    {"__main__", "data", "describe", "extract_only"},  # the commands
]


def part(module: str) -> str:
    """The top-level module or package below elm_audio that ``module`` belongs to."""
    return module.split(".")[1] if "." in module else module


def test_every_part_imports_only_from_parts_below_it():
    level = {name: i for i, names in enumerate(LAYERS) for name in names}
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    assert {part(m) for m in modules if m != "elm_audio"} == set(level), "a part ARCHITECTURE.md does not place"
    upward = [
        f"{m} imports {i}"
        for m, p in sorted(modules.items())
        if m != "elm_audio"
        for i in sorted(imports(p))
        if i != "elm_audio" and part(i) in level and level[part(i)] > level[part(m)]
    ]
    assert not upward, "imports from a part above:\n" + "\n".join(upward)


# The composed Hydra config (a DictConfig) is read by the settings builder
# (settings/settings.load, with validate, components and unknown_keys) and by the entries that
# hand it there; every other module takes a Settings part or plain values. A module "reads the
# config" where it imports omegaconf, names DictConfig / ListConfig / OmegaConf, or has a
# parameter named ``cfg`` (this code's name for the composed config, duck-typed or not).
CONFIG_READERS = {
    "elm_audio.settings": "the settings builder",
    "elm_audio.config": "composes the config tree (compose, build, as_yaml)",
    "elm_audio.__main__": "entry: the Hydra app",
    "elm_audio.data": "entry: data check (builds the dataset and front-end without a run's validation)",
    "elm_audio.describe": "entry: describe (builds front-ends without a run's validation)",
    "elm_audio.extract_only": "entry: composes each job and hands it to settings.load",
    "elm_audio.run.runner": "entry of a run: run(cfg) hands cfg to settings.load, and only there",
    "elm_audio.hear": "entry: HEAR's load_model builds a front-end from its YAML",
    "elm_audio.sweeps.grid": "entry: a Hydra callback, handed the config by Hydra",
    "elm_audio.stores.redaction": "a Hydra callback (RedactSecrets), handed the config by Hydra",
    "elm_audio.sweeps.cluster": "entry: the submitit launcher's launch, handed its queue config by Hydra",
}
# MLflow is touched by the tracking layer (stores/tracking) and what a run records (run/record) only.
MLFLOW_USERS = {"elm_audio.stores.tracking", "elm_audio.run.record"}


def reads_config(path: Path) -> list[str]:
    """What in ``path`` reads the composed config: see CONFIG_READERS."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "omegaconf"]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "omegaconf":
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Name) and node.id in ("DictConfig", "ListConfig", "OmegaConf"):
            found.append(f"{node.id} (line {node.lineno})")
        elif isinstance(node, ast.arg) and node.arg == "cfg":
            found.append(f"parameter cfg (line {node.lineno})")
    return found


def mlflow_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "mlflow"]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "mlflow":
            names.append(node.module)
    return names


def allowed(module: str, names) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_only_the_settings_builder_and_the_entries_read_the_config():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    readers = {m: reads_config(p) for m, p in sorted(modules.items())}
    unexpected = {m: r for m, r in readers.items() if r and not allowed(m, CONFIG_READERS)}
    assert not unexpected, "modules reading the config (take a Settings part instead):\n" + "\n".join(
        f"{m}: {', '.join(r)}" for m, r in unexpected.items()
    )


def test_mlflow_is_imported_only_by_the_tracking_layer():
    users = {m: mlflow_imports(p) for m, p in ((module_name(p), p) for p in PACKAGE.rglob("*.py"))}
    outside = sorted(f"{m}: {', '.join(n)}" for m, n in users.items() if n and m not in MLFLOW_USERS)
    assert not outside, "MLflow imported outside stores/tracking.py and run/record.py:\n" + "\n".join(outside)


def test_every_frontend_yaml_names_a_class_that_takes_its_keys():
    """One YAML per front-end; every key its ``net`` node sets is an argument of the class."""
    import inspect

    from hydra.utils import get_class

    for name in choices("frontend"):
        net = compose([f"frontend={name}"]).frontend.net
        cls = get_class(net._target_)
        params = inspect.signature(cls).parameters
        assert set(net) - {"_target_"} <= set(params), name


MINE = '''
import torch.nn.functional as F
from torch import nn
from .base import FrontEnd

class Mine(FrontEnd):
    input_kind = "spectrogram"

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(1, width, kernel_size=(5, 96))

    def features(self, x):
        h = F.relu(self.conv(x.unsqueeze(1)))
        return self.tap("conv", h)
'''
MINE_YAML = """name: mine
widths: {small: 120, large: 3500}
net:
  _target_: elm_audio.frontends.mine.Mine
  width: ${..widths.${feature_size.name}}
"""


@pytest.mark.slow
def test_a_front_end_is_added_by_one_module_and_one_yaml(tmp_path):
    """ARCHITECTURE.md's recipe, in a copy of the package: nothing else needs to change."""
    import shutil

    from helpers.runs import QUICK, logged_runs, run_cli

    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "elm_audio", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PACKAGE.parent / "hydra_plugins", src / "hydra_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "elm_audio" / "frontends" / "mine.py").write_text(MINE)
    (src / "elm_audio" / "conf" / "frontend" / "mine.yaml").write_text(MINE_YAML)
    cwd = tmp_path / "work"
    cwd.mkdir()
    run_cli("elm_audio", "frontend=mine", *QUICK, cwd=cwd, env={"PYTHONPATH": str(src)})
    _, (run,) = logged_runs(cwd)
    assert run.data.tags["frontend"] == "mine" and run.data.params["feature_dim"] == "120"
    assert run.data.params["frontend.net._target_"] == "elm_audio.frontends.mine.Mine"
