"""A one-node Slurm cluster for the tests: munged, slurmctld and slurmd of this machine's Slurm
packages (`make slurm` installs them), each in the foreground under a private folder, with their
own munge key, ports, state and logs, so that nothing of the machine's own setup is read or changed.

The `slurm_cluster` fixture (session-scoped) writes the configuration, starts the three daemons,
waits until the node is idle and points the Slurm commands (sbatch, squeue, scontrol; submitit calls
them) at it through SLURM_CONF; at the end it stops the daemons by their process ids. Where the
cluster cannot start (no Slurm installed, not root) the tests that use it are skipped with a
one-line reason, unless RESBENCH_TEST_SLURM=required (CI), where that is a failure.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
NODE = socket.gethostname().split(".")[0]


class ClusterError(RuntimeError):
    """Why the cluster could not start (one line)."""


@dataclass
class Cluster:
    folder: Path
    conf: Path
    partition: str
    processes: list[subprocess.Popen]

    def log(self, daemon: str) -> str:
        path = self.folder / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(folder: Path, cpus: int) -> Path:
    """slurm.conf of one node with `cpus` cores whatever the machine has (config_overrides: the tests'
    tasks take one each and mostly wait, so several share a core): no cgroups (linuxproc, task/none), cores as the
    consumable resource, nine tenths of the machine's memory (so that jobs may ask for some), and
    a requeued job eligible after 10 s (cred_expire; Slurm's default keeps it pending for 2 minutes) and
    started within 2 s of that (sched_interval), a task's processes SIGKILLed 10 s after its SIGTERM."""
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 9 // 10
    conf = folder / "slurm.conf"
    conf.write_text(f"""\
ClusterName=resbench-test
SlurmctldHost={NODE}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge.socket,cred_expire=10
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=10
SchedulerParameters=sched_interval=2
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def start(folder: Path, cpus: int = 10, timeout_s: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd in `folder` and wait until the node is idle."""
    if os.geteuid() != 0:
        raise ClusterError("the Slurm daemons of the test cluster run as root")
    missing = [d for d in (*DAEMONS, "sinfo", "sbatch", "srun") if shutil.which(d) is None]
    if missing:
        raise ClusterError(f"no {', '.join(missing)} on PATH (`make slurm` installs Slurm)")
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = write_conf(folder, cpus)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    commands = [["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={folder}/munge.socket",
                 f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
                 f"--seed-file={folder}/munged.seed"],
                ["slurmctld", "-D", "-i", "-f", str(conf)],
                ["slurmd", "-D", "-f", str(conf), "-N", NODE]]
    cluster = Cluster(folder, conf, "test", [])
    try:
        for command in commands:
            out = open(folder / f"{command[0]}.out", "wb")
            cluster.processes.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
            if command[0] == "munged":
                _wait(lambda: (folder / "munge.socket").exists(), 10, "munged made no socket", cluster)
        _wait(lambda: _node_state(env) == "idle", timeout_s, "the node did not become idle", cluster)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def stop(cluster: Cluster) -> None:
    """Cancel the jobs left (their processes outlive slurmd), then stop the daemons by their process
    ids, the last started first."""
    env = {**os.environ, "SLURM_CONF": str(cluster.conf)}
    if all(p.poll() is None for p in cluster.processes):
        subprocess.run(["scancel", "--full", "--partition", cluster.partition], env=env, capture_output=True)
        end = time.monotonic() + 30
        while _queue(env) and time.monotonic() < end:
            time.sleep(0.5)
    for proc in reversed(cluster.processes):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _queue(env: dict) -> list[str]:
    result = subprocess.run(["squeue", "--noheader", "--format=%i"], env=env, capture_output=True, text=True)
    return result.stdout.split()


def _node_state(env: dict) -> str:
    result = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
    return result.stdout.strip()


def _wait(ready, timeout_s: float, what: str, cluster: Cluster) -> None:
    end = time.monotonic() + timeout_s
    while not ready():
        dead = [p.args[0] for p in cluster.processes if p.poll() is not None]
        if dead or time.monotonic() > end:
            why = f"{', '.join(dead)} exited" if dead else f"{what} in {timeout_s:.0f} s"
            raise ClusterError(f"{why}; logs in {cluster.folder}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Cluster:
    """A running one-node cluster; SLURM_CONF points every Slurm command of the session at it."""
    # a short path: slurmd's spool and munged's socket live here, and socket paths are limited to 107 bytes
    folder = Path(tmp_path_factory.mktemp("slurm"))
    try:
        cluster = start(folder)
    except ClusterError as err:
        if os.environ.get("RESBENCH_TEST_SLURM") == "required":
            pytest.fail(f"the test Slurm cluster did not start: {err}", pytrace=False)
        pytest.skip(f"no test Slurm cluster: {err}")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SLURM_CONF", str(cluster.conf))
            yield cluster
    finally:
        stop(cluster)
