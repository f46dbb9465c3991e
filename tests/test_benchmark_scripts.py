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


def test_product_bound_times_the_products_a_front_ends_layers_amount_to():
    bound = script("product_bound")
    front = bound.build_frontend(bound.compose(["frontend=timbral_temporal", "feature_size=small"]))
    rows, flops = bound.shapes(front)
    # the 16 small 1 x 38 filters: a product of every frame's window at each of 59 offsets, 2 clips
    assert rows[(38, 16)] == 2 * 1376 * 59 and rows[(32, 31)] == 2 * 1376  # the 32-tap temporal filters
    assert flops == sum(2 * n * inner * outputs for (inner, outputs), n in rows.items())
    row = bound.measure("timbral_temporal", "small", reps=1)
    for figures in (row["fp32"], row.get("bf16", row["fp32"])):
        assert figures["products_gflops"] > 0 and figures["network_gflops"] > 0 and figures["of_products"] > 0
