"""A one-node Slurm started inside the test session: munged, slurmctld and slurmd as background
processes with a generated slurm.conf in a temporary directory (no systemd). Facts in
shared/docs/slurm-local.md: proctrack/linuxproc, task/none, cons_tres with CR_Core, the node
with this machine's CPUs. The daemons are stopped by their PIDs (never by name) when the
session ends; jobs still queued are cancelled first.

``cpus`` is the node's CPU count as Slurm sees it (default: this machine's); a larger count is
accepted (``SlurmdParameters=config_overrides``) to run more tasks at once than there are cores.

``SLURM_CONF`` is set in this process's environment while the cluster runs, so sbatch, squeue
and scancel (and dfptmag's Slurm engine, which calls them) find it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NEEDED = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged", "munge")


def available() -> str | None:
    """None if the tools are installed and we are root, else why not."""
    missing = [t for t in NEEDED if shutil.which(t) is None and not Path("/usr/sbin", t).exists()]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _munge_ok() -> bool:
    try:
        enc = subprocess.run([_exe("munge"), "-n"], capture_output=True, timeout=10)
        dec = subprocess.run([_exe("unmunge")], input=enc.stdout, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return enc.returncode == 0 and b"Success" in dec.stdout


CONF = """\
ClusterName=dfptmagtest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
KillWait=5
MinJobAge=2
InactiveLimit=0
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """Start with :meth:`start`, stop with :meth:`stop` (idempotent)."""

    def __init__(self, directory, cpus: int | None = None):
        self.dir = Path(directory)
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = self.dir / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self._procs: list[subprocess.Popen] = []
        self._munged_pid: int | None = None
        self._old_conf = os.environ.get("SLURM_CONF")

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60.0) -> "LocalSlurm":
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        ctld, d = _free_ports(2)
        self.conf.write_text(CONF.format(host=self.host, ctld_port=ctld, d_port=d, d=self.dir,
                                         cpus=self.cpus))
        self._start_munge()
        os.environ["SLURM_CONF"] = str(self.conf)
        env = self.env
        for exe, args in (("slurmctld", ["-D", "-i", "-f", str(self.conf)]),
                          ("slurmd", ["-D", "-f", str(self.conf)])):
            log = open(self.dir / f"{exe}.stdout", "w")
            self._procs.append(subprocess.Popen([_exe(exe), *args], stdout=log, stderr=subprocess.STDOUT,
                                                env=env, start_new_session=True))
            log.close()
            if exe == "slurmctld":
                self._wait(lambda: subprocess.run(["scontrol", "ping"], env=env, capture_output=True,
                                                  text=True).stdout.count("UP") > 0, timeout, "slurmctld")
        self._wait(self._node_idle, timeout, "slurmd (node idle in sinfo)")
        return self

    def _start_munge(self):
        if _munge_ok():
            return                              # a munged already serves the default socket
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        for sub in ("/var/lib/munge", "/var/log/munge"):
            Path(sub).mkdir(parents=True, exist_ok=True)
            shutil.chown(sub, "munge", "munge")
        if not Path("/etc/munge/munge.key").is_file():
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "-c"], check=True)
        pidfile = run / "munged.pid"
        subprocess.run(["runuser", "-u", "munge", "--", _exe("munged"), f"--pid-file={pidfile}"],
                       check=True, timeout=30)
        self._wait(_munge_ok, 20, "munged")
        self._munged_pid = int(pidfile.read_text().split()[0])

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
        return out.stdout.strip().startswith("idle")

    def _wait(self, ok, timeout, what):
        t0 = time.time()
        while time.time() - t0 < timeout:
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited ({p.returncode}); see {self.dir}")
            if ok():
                return
            time.sleep(0.5)
        raise RuntimeError(f"{what} not ready after {timeout} s; see {self.dir}")

    def jobs(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T %j"], env=self.env, capture_output=True, text=True)
        return [ln for ln in out.stdout.splitlines() if ln.strip()]

    def wait_idle(self, timeout: float = 900.0, poll: float = 2.0) -> None:
        """Until no job is queued or running."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if not self.jobs():
                return
            time.sleep(poll)
        raise TimeoutError(f"Slurm jobs still queued after {timeout} s: {self.jobs()}")

    def stop(self) -> None:
        if self._procs:
            subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True)
            try:
                self.wait_idle(timeout=30, poll=1)
            except TimeoutError:
                pass
        for p in reversed(self._procs):          # slurmd, then slurmctld: by PID
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self._procs = []
        if self._munged_pid is not None:
            try:
                os.kill(self._munged_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._munged_pid = None
        if self._old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self._old_conf
