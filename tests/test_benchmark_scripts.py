"""The benchmark scripts the docs name still run against the package as it is, each on its
smallest case (their figures are the scripts' to print, not checked here): extraction_resume.py
and memory.py had fallen behind a change of the package's functions unnoticed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extraction_resume_extracts_in_a_process_of_its_own(tmp_path):
    resume = script("extraction_resume")
    resume.make_clips(tmp_path / "clips", 24)
    (result,) = resume.run(tmp_path, "whole", resume.overrides(tmp_path / "clips", tmp_path / "cache", "mfcc"))
    assert result["computed"] == 3 and result["assembled"]  # 24 clips in batches of 8: three chunks
    assert result["seconds"] > 0 and len(result["sha256"]) == 64


def test_memory_measures_a_front_ends_peak():
    row = script("memory").measure("mfcc")
    assert row["frontend"] == "mfcc" and row["peak_rss_mb"] >= row["idle_rss_mb"] > 0


def test_hear_memory_embeds_a_long_sound():
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "hear_memory.py"), "--frontend", "mfcc", "--minutes", "0.1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "scene embedding" in out.stdout and "timestamp embeddings" in out.stdout
