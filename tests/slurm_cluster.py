"""A single-node SLURM cluster with accounting, on this machine, for the SLURM tests.

    python tests/slurm_cluster.py start [STATE]   # brings it up (or finds it up); prints SLURM_CONF=...
    python tests/slurm_cluster.py stop [STATE]

Debian's slurmctld, slurmd, slurmdbd, munge and mariadb-server-core packages (installed by .ci/run),
run by hand: there is no systemd. Everything lives under STATE (default /tmp/elm_audio_slurm):
configs, munge key and socket, a private MariaDB on 127.0.0.1, pid files and logs. Accounting is
not optional: without slurmdbd, submitit cannot tell a job that died (scancel, killed, out of
memory) from one still running, and waits for ever.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_STATE = Path("/tmp/elm_audio_slurm")
DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")
CLUSTER = "elmtest"


class ClusterUnavailable(RuntimeError):
    """Why a cluster cannot be started here (the tests skip with this)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(state: Path) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}


def is_up(state: Path) -> bool:
    if not (state / "slurm.conf").exists():
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env(state), capture_output=True, text=True, timeout=10)
        acct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], env=env(state), capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated") and acct.returncode == 0


def missing() -> str | None:
    needed = ["slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sbatch", "sacct"]
    absent = [n for n in needed if shutil.which(n) is None and not Path("/usr/sbin", n).exists()]
    if absent:
        return f"no {', '.join(absent)} (Debian: slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core)"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


def _wait(what: str, ready, log: Path, seconds: float = 40) -> None:
    deadline = time.time() + seconds
    while not ready():
        if time.time() > deadline:
            tail = log.read_text()[-1500:] if log.exists() else "(no log)"
            raise ClusterUnavailable(f"{what} did not start; {log}:\n{tail}")
        time.sleep(0.3)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _spawn(cmd: list[str], log: Path, **kw) -> None:
    with open(log, "ab") as out:
        subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def _node_line(real_memory_mb: int) -> tuple[str, int]:
    """``slurmd -C``'s node line, with RealMemory below the real memory (or the node drains)."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split())
    cpus = int(fields["CPUs"])
    fields["RealMemory"] = str(real_memory_mb)
    fields.pop("NodeName")
    return " ".join(f"{k}={v}" for k, v in fields.items()), cpus


def start(state: Path = DEFAULT_STATE) -> dict[str, str]:
    """Bring the cluster up under ``state`` (or find it up); returns the environment its clients need."""
    if is_up(state):
        return env(state)
    why = missing()
    if why:
        raise ClusterUnavailable(why)
    stop(state)
    shutil.rmtree(state, ignore_errors=True)
    for sub in ("munge", "mysql", "ctld", "spool", "log", "run"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    host = socket.gethostname().split(".")[0]
    ports = {name: free_port() for name in ("ctld", "slurmd", "dbd", "mysql")}
    log = state / "log"

    # munge: own key and socket, run as the munge user (it refuses root's files)
    munge = pwd.getpwnam("munge")
    subprocess.run(["mungekey", "--create", "--keyfile", str(state / "munge" / "munge.key")], check=True, capture_output=True)
    for p in (state / "munge", state / "munge" / "munge.key"):
        os.chown(p, munge.pw_uid, munge.pw_gid)
    Path("/run/munge").mkdir(mode=0o755, exist_ok=True)
    os.chown("/run/munge", munge.pw_uid, munge.pw_gid)
    socket_path = Path("/run/munge/munge.socket.2")  # where every Slurm client looks for it
    subprocess.run(
        ["runuser", "-u", "munge", "--", "munged", f"--key-file={state / 'munge' / 'munge.key'}",
         f"--socket={socket_path}", f"--pid-file={state / 'munge' / 'munged.pid'}",
         f"--log-file={state / 'munge' / 'munged.log'}", f"--seed-file={state / 'munge' / 'munged.seed'}"],
        check=True, capture_output=True,
    )  # fmt: skip

    # a private MariaDB for slurmdbd, on 127.0.0.1
    datadir = state / "mysql"
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root", "--auth-root-authentication-method=normal",
         "--skip-test-db"],
        check=True, capture_output=True,
    )  # fmt: skip
    init = state / "mysql-init.sql"
    init.write_text(
        "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';\n"
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';\n"
    )
    _spawn(
        ["mariadbd", "--no-defaults", f"--datadir={datadir}", "--user=root", "--bind-address=127.0.0.1", f"--port={ports['mysql']}",
         f"--socket={state / 'run' / 'mysqld.sock'}", f"--pid-file={state / 'run' / 'mariadbd.pid'}", f"--init-file={init}",
         "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--skip-log-bin"],
        log / "mariadb.log",
    )  # fmt: skip
    _wait("MariaDB", lambda: _port_open(ports["mysql"]), log / "mariadb.log")

    auth = "AuthType=auth/munge\n"
    dbd_conf = state / "slurmdbd.conf"
    dbd_conf.write_text(
        f"{auth}DbdHost={host}\nDbdAddr=127.0.0.1\nDbdPort={ports['dbd']}\nSlurmUser=root\n"
        f"PidFile={state / 'run' / 'slurmdbd.pid'}\nLogFile={log / 'slurmdbd.log'}\n"
        f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={ports['mysql']}\n"
        "StorageUser=slurm\nStoragePass=slurm\nStorageLoc=slurm_acct_db\n"
    )
    dbd_conf.chmod(0o600)
    memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    node, cpus = _node_line(int(memory_mb * 0.8))
    (state / "slurm.conf").write_text(
        f"ClusterName={CLUSTER}\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser=root\n{auth}"
        f"SlurmctldPort={ports['ctld']}\nSlurmdPort={ports['slurmd']}\n"
        f"StateSaveLocation={state / 'ctld'}\nSlurmdSpoolDir={state / 'spool'}\n"
        f"SlurmctldPidFile={state / 'run' / 'slurmctld.pid'}\nSlurmdPidFile={state / 'run' / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={log / 'slurmctld.log'}\nSlurmdLogFile={log / 'slurmd.log'}\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
        "SwitchType=switch/none\nMpiDefault=none\nReturnToService=2\nKillWait=5\nMinJobAge=60\n"
        "SchedulerType=sched/backfill\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
        f"DefMemPerCPU={int(memory_mb * 0.8) // cpus // 2}\n"
        f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
        f"AccountingStoragePort={ports['dbd']}\nJobCompType=jobcomp/none\n"
        f"NodeName={host} NodeAddr=127.0.0.1 {node} State=UNKNOWN\n"
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n"
    )
    e = env(state)
    _spawn(["slurmdbd", "-D"], log / "slurmdbd.out", env=e)
    _wait("slurmdbd", lambda: _port_open(ports["dbd"]), log / "slurmdbd.log")
    subprocess.run(["sacctmgr", "-i", "add", "cluster", CLUSTER], env=e, capture_output=True, timeout=30)
    _spawn(["slurmctld", "-D", "-f", str(state / "slurm.conf")], log / "slurmctld.out", env=e)
    _wait("slurmctld", lambda: _port_open(ports["ctld"]), log / "slurmctld.log")
    _spawn(["slurmd", "-D", "-f", str(state / "slurm.conf")], log / "slurmd.out", env=e)
    _wait("the cluster", lambda: is_up(state), log / "slurmd.log")
    return e


def stop(state: Path = DEFAULT_STATE) -> None:
    """Stop the daemons a start under ``state`` left running, by their pid files."""
    for pidfile in ("run/slurmd.pid", "run/slurmctld.pid", "run/slurmdbd.pid", "run/mariadbd.pid", "munge/munged.pid"):
        try:
            pid = int((state / pidfile).read_text())
            os.kill(pid, 15)
        except (OSError, ValueError):
            continue
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "start"
    where = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_STATE
    if action == "stop":
        stop(where)
    else:
        t0 = time.time()
        try:
            start(where)
        except ClusterUnavailable as err:
            sys.exit(f"slurm_cluster: {err}")
        print(f"SLURM_CONF={where / 'slurm.conf'}  (up in {time.time() - t0:.0f} s)")
