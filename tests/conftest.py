"""Fixtures and pytest hooks only; what tests share besides fixtures is in tests/helpers."""

from __future__ import annotations

import os
from pathlib import Path

# The suite runs as two xdist workers on two cores (pyproject's addopts): one thread per process,
# set before torch, NumPy or any run the tests start is loaded. With torch's default of a thread
# per core, two processes' OpenMP threads spin waiting on each other's cores: two runs side by
# side took 54 s of CPU each where one thread each takes 28 s, and finished later. A test that
# needs more threads sets them (torch.set_num_threads); OMP_NUM_THREADS set by hand wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from helpers.audio import tone_folder
from helpers.runs import EMPTY_STORE


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """<root>/<class>/<clip>: two classes (low and high tones), twelve clips each, in mixed
    formats and sample rates, some stereo, as a real collection would be."""
    formats = ["wav", "flac", "ogg", "mp3", "au", "wav"]
    return tone_folder(tmp_path / "collection", 12, seconds=1.5, sr=(44_100, 22_050, 16_000), step=0.03, formats=formats, stereo=True)


@pytest.fixture(autouse=True, scope="session")
def _empty_store_folder(tmp_path_factory):
    EMPTY_STORE["factory"] = tmp_path_factory  # where helpers.runs.empty_store makes its store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first, so that the quick tests fill both workers at the end rather than one worker
    finishing the report's store or the SLURM cluster alone: the report store's group (several
    minutes on one worker, in its file's order) and the SLURM sweep, then the other end-to-end
    (``slow``) tests, then the rest, each in collection order."""

    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        if (group and group.args == ("report_store",)) or item.get_closest_marker("slurm"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)
