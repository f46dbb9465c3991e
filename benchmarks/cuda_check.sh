#!/usr/bin/env bash
# Issue 37's GPU check, in one run from the repository root on a CUDA machine that has torch,
# NumPy, SciPy, scikit-learn, pandas, matplotlib, numba and pytest but not the rest of
# elm_audio's dependencies, and no network: those come as wheels in .whl/ (pure Python, or
# manylinux x86-64 for CPython 3.12), installed beside the source, which is used in place
# (PYTHONPATH, no pip install -e). What the benchmark path imports needs no MLflow: only
# hydra-core, omegaconf, antlr4, the Optuna sweeper plugin's imports (optuna, colorlog,
# hydra-optuna-sweeper: composing the config needs its config groups), soundfile, cffi, soxr,
# librosa and what it imports at load (audioread, decorator, pooch, platformdirs).
#
# Writes $OUT/tests.log, $OUT/cuda.log and $OUT/cuda.json (the table of benchmarks/run.py
# --device cuda, saved as each part is measured). About 5 minutes on an H200 (4 before the kernels
# and chunked extraction were added).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src || exit 1
nvidia-smi -L
OUT=${OUT:-/tmp/cuda_check}
mkdir -p "$OUT"
set -o pipefail
# the plain forms against the CPU's loops, and CUDA's features and gradients against the CPU's;
# no conftest.py (it imports MLflow) and no xdist (pyproject's addopts)
timeout 150 python3 -m pytest -q -p no:cacheprovider --noconftest -o addopts="" -rs tests/test_device_paths.py 2>&1 | tee "$OUT/tests.log"
tests=$?
PYTHONUNBUFFERED=1 timeout 420 python3 benchmarks/run.py --device cuda --json "$OUT/cuda.json" 2>&1 | tee "$OUT/cuda.log"
bench=$?
echo "tests exit $tests, benchmark exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
