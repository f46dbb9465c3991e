"""Real servers for the shared-study tests: PostgreSQL and an MLflow tracking server, on
loopback ports of this machine, started and stopped by the tests."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user where we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def postgres(databases: tuple[str, ...]):
    """A throw-away cluster on a free port, trusting loopback connections; yields its base URL."""
    bindir = postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="elm_pg_"))
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    run = lambda *cmd: subprocess.run(_as_postgres(list(cmd)), check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(str(bindir / "initdb"), "-D", str(data / "db"), "--auth=trust", "-U", "postgres")
        run(
            str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w", "start",
            "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
        )  # fmt: skip
        for db in databases:
            run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path):
    port = free_port()
    log = open(artifacts.parent / "mlflow_server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
            "--artifacts-destination", artifacts.as_uri(), "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log_text = (artifacts.parent / "mlflow_server.log").read_text()
                    raise RuntimeError(f"MLflow server did not start: {log_text}") from None
                time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:  # a loaded machine: its workers are slow to stop
                os.killpg(proc.pid, 9)
                proc.wait(10)
        log.close()
