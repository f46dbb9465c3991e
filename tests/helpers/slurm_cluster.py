"""A single-node SLURM cluster with accounting, on this machine, for the SLURM tests.

    python tests/helpers/slurm_cluster.py start [STATE]   # brings it up (or finds it up); prints SLURM_CONF=...
    python tests/helpers/slurm_cluster.py stop [STATE]

Debian's slurmctld, slurmd, slurmdbd, munge and mariadb-server-core packages (installed by .ci/run),
run by hand: there is no systemd. Everything lives under STATE: configs, its own munge daemon
(key, socket: slurm.conf's AuthInfo points every Slurm daemon and client at it), a private
MariaDB on 127.0.0.1, pid files and logs, on ports picked free when it starts. STATE defaults to
/tmp/elm_audio_slurm-<digest of this tests folder's path>: each clone has its own cluster, and
the suites run from one clone share theirs (a lock beside STATE lets one start it while the
others wait for it). Accounting is not optional: without slurmdbd, submitit cannot tell a job
that died (scancel, killed, out of memory) from one still running, and waits for ever.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

DEFAULT_STATE = Path("/tmp") / f"elm_audio_slurm-{hashlib.sha256(str(Path(__file__).resolve().parent).encode()).hexdigest()[:10]}"
CLUSTER = "elmtest"
# the daemons stop() stops, by their pid files (a pid is only signalled while it is that daemon)
PID_FILES = {"slurmd": "run/slurmd.pid", "slurmctld": "run/slurmctld.pid", "slurmdbd": "run/slurmdbd.pid",
             "mariadbd": "run/mariadbd.pid", "munged": "munge/munged.pid"}  # fmt: skip


class ClusterUnavailable(RuntimeError):
    """Why SLURM cannot run here at all, in one line (the tests skip with it)."""


class ClusterFailed(RuntimeError):
    """SLURM could run here but a daemon did not start (the tests fail with its log)."""


def free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """A distinct free port on 127.0.0.1 for each name (held together while they are picked)."""
    with ExitStack() as stack:
        socks = {name: stack.enter_context(socket.socket()) for name in names}
        for s in socks.values():
            s.bind(("127.0.0.1", 0))
        return {name: s.getsockname()[1] for name, s in socks.items()}


@contextmanager
def _locked(state: Path):
    """Holds ``STATE.lock`` (beside STATE, which start() recreates): one start or stop at a time."""
    state.parent.mkdir(parents=True, exist_ok=True)
    with open(state.parent / f"{state.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (Debian's munge package makes it)"
    return None


def _failed(what: str, log: Path) -> ClusterFailed:
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
    return ClusterFailed(f"{what} did not start; the end of {log}:\n{tail}")


def _wait(what: str, ready, log: Path, proc: subprocess.Popen | None = None, seconds: float = 40) -> None:
    """Until ``ready()``; a ClusterFailed with ``log``'s end if ``proc`` ends or time runs out first."""
    deadline = time.time() + seconds
    while not ready():
        if time.time() > deadline or (proc is not None and proc.poll() is not None):
            raise _failed(what, log)
        time.sleep(0.3)


def _run(what: str, cmd: list[str], log: Path | None = None) -> None:
    """``cmd``, which must succeed; a ClusterFailed with its output (and ``log``'s end) if not."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        err = _failed(what, log) if log is not None and log.exists() else ClusterFailed(f"{what} did not start")
        raise ClusterFailed(f"{err}\n{' '.join(cmd)}: exit {done.returncode}: {(done.stdout + done.stderr).strip()[-1500:]}")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _spawn(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kw)


def _node_line(real_memory_mb: int) -> tuple[str, int]:
    """``slurmd -C``'s node line, with RealMemory below the real memory (or the node drains)."""
    line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    fields = dict(f.split("=", 1) for f in line.split())
    cpus = int(fields["CPUs"])
    fields["RealMemory"] = str(real_memory_mb)
    fields.pop("NodeName")
    return " ".join(f"{k}={v}" for k, v in fields.items()), cpus


def start(state: Path = DEFAULT_STATE) -> dict[str, str]:
    """Bring the cluster up under ``state`` (or find it up); returns the environment its clients
    need. A ClusterUnavailable (one line) where SLURM cannot run here, a ClusterFailed (with the
    daemon's log) where it could but did not start."""
    state = Path(state).absolute()
    if is_up(state):  # (its clients need no root)
        return env(state)
    why = missing()
    if why:
        raise ClusterUnavailable(why)
    munge_socket = state / "munge" / "munge.socket.2"
    if len(os.fsencode(munge_socket)) >= 100:  # a Unix socket's path: 108 bytes at most, with munge's ".lock"
        raise ClusterUnavailable(f"{state} is too long a path for munge's socket in it; pass a shorter STATE")
    with _locked(state):  # a suite starting it while another one does waits, then finds it up
        if is_up(state):
            return env(state)
        _stop(state)
        shutil.rmtree(state, ignore_errors=True)
        try:
            _start(state, munge_socket)
        except BaseException:
            _stop(state)  # no half cluster left running (its logs stay, for the error)
            raise
    return env(state)


def _start(state: Path, munge_socket: Path) -> None:
    for sub in ("munge", "mysql", "ctld", "spool", "log", "run"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    host = socket.gethostname().split(".")[0]
    ports = free_ports(("ctld", "slurmd", "dbd", "mysql"))
    log = state / "log"

    # munge: this cluster's own key and socket (AuthInfo names it, and AccountingStoragePass for
    # the connections to slurmdbd), run as the munge user (it refuses root's files)
    munge = pwd.getpwnam("munge")
    _run("mungekey", ["mungekey", "--create", "--keyfile", str(state / "munge" / "munge.key")])
    for p in (state / "munge", state / "munge" / "munge.key"):
        os.chown(p, munge.pw_uid, munge.pw_gid)
    _run(
        "munged",
        ["runuser", "-u", "munge", "--", "munged", f"--key-file={state / 'munge' / 'munge.key'}",
         f"--socket={munge_socket}", f"--pid-file={state / 'munge' / 'munged.pid'}",
         f"--log-file={state / 'munge' / 'munged.log'}", f"--seed-file={state / 'munge' / 'munged.seed'}"],
        state / "munge" / "munged.log",
    )  # fmt: skip

    # a private MariaDB for slurmdbd, on 127.0.0.1
    datadir = state / "mysql"
    _run(
        "mariadb-install-db",
        ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root", "--auth-root-authentication-method=normal",
         "--skip-test-db"],
    )  # fmt: skip
    init = state / "mysql-init.sql"
    init.write_text(
        "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';\n"
        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';\n"
    )
    proc = _spawn(
        ["mariadbd", "--no-defaults", f"--datadir={datadir}", "--user=root", "--bind-address=127.0.0.1", f"--port={ports['mysql']}",
         f"--socket={state / 'run' / 'mysqld.sock'}", f"--pid-file={state / 'run' / 'mariadbd.pid'}", f"--init-file={init}",
         "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--skip-log-bin"],
        log / "mariadb.log",
    )  # fmt: skip
    _wait("MariaDB", lambda: _port_open(ports["mysql"]), log / "mariadb.log", proc)

    auth = f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\n"
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
        f"AccountingStoragePort={ports['dbd']}\nAccountingStoragePass={munge_socket}\nJobCompType=jobcomp/none\n"
        f"NodeName={host} NodeAddr=127.0.0.1 {node} State=UNKNOWN\n"
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n"
    )
    e = env(state)
    proc = _spawn(["slurmdbd", "-D"], log / "slurmdbd.out", env=e)
    _wait("slurmdbd", lambda: _port_open(ports["dbd"]), log / "slurmdbd.log", proc)
    subprocess.run(["sacctmgr", "-i", "add", "cluster", CLUSTER], env=e, capture_output=True, timeout=30)
    proc = _spawn(["slurmctld", "-D", "-f", str(state / "slurm.conf")], log / "slurmctld.out", env=e)
    _wait("slurmctld", lambda: _port_open(ports["ctld"]), log / "slurmctld.log", proc)
    proc = _spawn(["slurmd", "-D", "-f", str(state / "slurm.conf")], log / "slurmd.out", env=e)
    _wait("the cluster", lambda: is_up(state), log / "slurmd.log", proc)


def stop(state: Path = DEFAULT_STATE) -> None:
    """Stop the daemons a start under ``state`` left running, by their pid files."""
    state = Path(state).absolute()
    with _locked(state):
        _stop(state)


def _stop(state: Path) -> None:
    for daemon, pidfile in PID_FILES.items():  # slurmd first, munged last
        try:
            pid = int((state / pidfile).read_text())
        except (OSError, ValueError):
            continue
        if _running(pid) != daemon:  # a stale pid file may name another process now
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 10
        while _running(pid) and time.time() < deadline:
            time.sleep(0.05)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> str | None:
    """The name of the program process ``pid`` runs, None once it has ended (a zombie child of
    this process, which started it, is reaped)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name or None
    except (OSError, IndexError, UnicodeDecodeError):
        return None


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "start"
    where = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_STATE
    if action == "stop":
        stop(where)
    else:
        t0 = time.time()
        try:
            start(where)
        except (ClusterUnavailable, ClusterFailed) as err:
            sys.exit(f"slurm_cluster: {err}")
        print(f"SLURM_CONF={where / 'slurm.conf'}  (up in {time.time() - t0:.0f} s)")
