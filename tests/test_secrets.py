"""No secret of the command line reaches the terminal or a file: a password in a URI override is
hidden in what the run prints (its own lines, Hydra's "Error executing job with overrides: [...]"
and tracebacks, with HYDRA_FULL_ERROR unset or set) and in what it writes (the job's .log,
Hydra's saved configs, the MLflow store)."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
from pathlib import Path

import pytest
from helpers.runs import QUICK, run_cli

from elm_audio.stores.redaction import RedactingFilter

SMALL = [*QUICK, "frontend=mfcc"]


def assert_nowhere(pieces: list[str], proc: subprocess.CompletedProcess, cwd: Path) -> None:
    """None of ``pieces`` in what the run printed or in any file it wrote under ``cwd``
    (outputs/, multirun/, mlruns/, the cache)."""
    for piece in pieces:
        assert piece not in proc.stdout + proc.stderr, piece
        written = [p for p in cwd.rglob("*") if p.is_file() and piece.encode() in p.read_bytes()]
        assert not written, (piece, written)


@pytest.mark.slow
def test_a_raw_slash_in_a_tracking_password_leaves_one_line_and_no_piece_of_the_password(tmp_path):
    # urllib ends the authority at the first '/', took "Qz7pa" for a port and printed it in a traceback
    password = "Qz7pa/Wq9ss"
    proc = run_cli("elm_audio", *SMALL, f"tracking.uri=http://alice:{password}@127.0.0.1:9/x", cwd=tmp_path, check=False)
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "no MLflow server answers" in line, proc.stderr
    assert "tracking.uri=http://alice:***@127.0.0.1:9/x" in line
    assert (tmp_path / "outputs").exists()  # the job ran and saved its configs and log
    assert_nowhere(password.split("/"), proc, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None, reason="the crash used needs MySQLdb missing")
@pytest.mark.parametrize("full_error", ["0", "1"])
def test_a_crashed_job_prints_its_overrides_and_traceback_without_their_secrets(tmp_path, full_error):
    # A real crash: MLflow's MySQL store needs the MySQLdb driver, not installed here, and the
    # ImportError is no error the run expects; Hydra prints the failed job's overrides itself.
    password = "Kx4my/Vb8sql"
    proc = run_cli(
        "elm_audio",
        *SMALL,
        f"tracking.uri=mysql://elm:{password}@127.0.0.1:1/mlflow",
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": full_error},
        check=False,
    )
    assert proc.returncode == 1 and "Error executing job with overrides" in proc.stderr, proc.stderr
    assert "Traceback" in proc.stderr and "tracking.uri=mysql://elm:***@127.0.0.1:1/mlflow" in proc.stderr
    assert_nowhere([password, *password.split("/")], proc, tmp_path)


def test_a_logged_traceback_is_redacted_in_the_log_file(tmp_path):
    # Hydra writes a failed job's exception to the job's .log file as a record with exc_info
    log = logging.getLogger("test_secrets.job")
    handler = logging.FileHandler(tmp_path / "job.log")
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError("cannot open postgresql://elm:Zr8db/Yp2pg@dbhost/optuna")
        except RuntimeError:
            log.exception("Job failed")
    finally:
        log.removeHandler(handler)
        handler.close()
    text = (tmp_path / "job.log").read_text()
    assert "Job failed" in text and "postgresql://elm:***@dbhost/optuna" in text
    assert "Zr8db" not in text and "Yp2pg" not in text
