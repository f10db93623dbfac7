"""Fixtures for the launcher tests: one real two-node SLURM cluster per test session, and the
nemo-run venv.

`scripts/slurm_cluster.sh` installs munge + SLURM when missing (apt-get, as root) and starts
munged, slurmctld and two slurmd (nodes n1, n2) on loopback under a temp dir; the tests submit
real jobs to it (no mocks of sbatch). Ports are picked free so a developer's own test cluster
(default port 16817) can keep running beside it.
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

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cluster:
    dir: Path
    env: dict[str, str]

    def run(self, *cmd: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, check=check, **kwargs)

    def job(self, job_id: str) -> dict[str, str]:
        out = self.run("scontrol", "show", "job", "-o", str(job_id)).stdout
        return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)

    def wait_state(self, job_id: str, states: set[str], timeout: float = 180) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} not in {states} after {timeout}s: {self.job(job_id)}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port() -> int:
    for base in range(17817, 19817, 7):
        if all(_free(p) for p in (base, base + 100, base + 101)):
            return base
    raise RuntimeError("no free ports for the test SLURM cluster")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Cluster:
    # Short path: slurmd socket paths under the spool dir must stay below the 108-byte limit.
    cdir = Path(f"/tmp/srft-slurm-{os.getpid()}")
    port = _pick_port()
    env = dict(os.environ, SRFT_SLURM_PORT=str(port))
    script = ROOT / "scripts" / "slurm_cluster.sh"
    proc = subprocess.run(["bash", str(script), "start", str(cdir)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"could not start the local SLURM cluster:\n{proc.stdout}\n{proc.stderr}")
    env.update(SLURM_CONF=str(cdir / "etc" / "slurm.conf"), PATH=f"{cdir / 'bin'}:{env['PATH']}")
    try:
        yield Cluster(cdir, env)
    finally:
        subprocess.run(["bash", str(script), "stop", str(cdir)], env=env, capture_output=True)
        shutil.rmtree(cdir, ignore_errors=True)


@pytest.fixture(scope="session")
def launch_python() -> Path:
    """The python of .venv-launch (nemo-run), created by the repo's own script when missing."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "nemorun_venv.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/nemorun_venv.sh failed:\n{proc.stderr[-3000:]}")
    return ROOT / ".venv-launch" / "bin" / "python"


EXAMPLES = ROOT / "examples"
SRFT = ROOT / ".venv" / "bin" / "srft"
SEQ = 1024   # the tiny model trains at this length on CPU; the examples fit after cutting


def ingest_args(out: str) -> list[str]:
    """`srft ingest` of the repo's bundled example trajectories (8, with resolved status)."""
    return [*map(str, sorted((EXAMPLES / "trajectories").glob("*.traj"))), "-o", out,
            "--resolved", str(EXAMPLES / "resolved.jsonl"), "--quiet"]


def preprocess_args(trajectories: str, prefix: str) -> list[str]:
    return ["--trajectories", trajectories, "--labels", str(EXAMPLES / "labels.jsonl"), "--policy", "srft",
            "--tokenizer", "qwen2.5", "--seq-length", str(SEQ), "--output-prefix", prefix, "--workers", "1",
            "--quiet"]


def train_overrides(prefix: str, steps: int) -> list[str]:
    """configs/tiny.yaml with the real Qwen2.5 vocabulary, 1 sample per rank per step."""
    return ["model.name=tiny-qwen-vocab", f"model.seq_length={SEQ}", f"train.steps={steps}",
            "train.global_batch_size=2", "train.micro_batch_size=1", f"data.prefixes=[{prefix}]"]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """The bundled examples, ingested and preprocessed (tokens + loss weights): a dataset prefix."""
    out = tmp_path_factory.mktemp("launch-data")
    subprocess.run([str(SRFT), "ingest", *ingest_args(str(out / "trajectories.jsonl"))], check=True)
    subprocess.run([str(SRFT), "preprocess", *preprocess_args(str(out / "trajectories.jsonl"), str(out / "tiny"))],
                   check=True, stdout=subprocess.DEVNULL)
    return str(out / "tiny")
