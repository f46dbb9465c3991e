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
    {"config", "devices", "resources"},  # what every part shares: the config's composition and errors, devices, data files
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

    from conftest import QUICK, logged_runs, run_cli

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
