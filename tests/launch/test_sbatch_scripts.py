"""slurm/train.sbatch on the real two-node test cluster: torchrun across both nodes, and a
pre-empted (requeued) job that resumes from its checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.launch.conftest import ROOT

pytestmark = pytest.mark.slurm
FAKE_TRAIN = ROOT / "tests" / "launch" / "payloads" / "fake_train.py"


def _submit(cluster, run_dir: Path, port: int, *train_args: str) -> str:
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "configs").mkdir(exist_ok=True)
    (run_dir / "configs" / "train.yaml").write_text("stand-in: true\n")
    env = dict(cluster.env, SRFT_RUN_DIR=str(run_dir), SRFT_REPO=str(ROOT), SRFT_ENTRY=str(FAKE_TRAIN),
               SRFT_RDZV_PORT=str(port), SRFT_NPROC_PER_NODE="1")
    cmd = ["sbatch", "--parsable", "-N", "2", "-o", f"{run_dir}/logs/sbatch_train_%j.out",
           str(ROOT / "slurm" / "train.sbatch"), *train_args]
    import subprocess

    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return proc.stdout.strip().split(";")[0]


def test_train_sbatch_runs_torchrun_across_two_nodes(slurm_cluster, tmp_path):
    job = _submit(slurm_cluster, tmp_path, 29711, "steps=2")
    info = slurm_cluster.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED"})
    log = (tmp_path / "logs" / f"sbatch_train_{job}.out").read_text()
    assert info["JobState"] == "COMPLETED", log
    assert info["NodeList"] == "n[1-2]"
    result = json.loads((tmp_path / "train" / "result-0.json").read_text())
    assert result["world"] == 2 and sorted(result["nodes"]) == ["0", "1"]  # one rank on each node
    assert result["sums"] == [3.0, 3.0]                                      # all_reduce of 1 + 2
    assert json.loads((tmp_path / "train" / "checkpoints" / "latest.json").read_text()) == {"step": 2}
    assert "torchrun 2 nodes x 1 workers, rendezvous 127.0.0.1:29711" in log


def test_preempted_job_is_requeued_and_resumes_from_checkpoint(slurm_cluster, tmp_path):
    job = _submit(slurm_cluster, tmp_path, 29712, "steps=30", "step_seconds=0.3")
    ckpt = tmp_path / "train" / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 120
    while not (ckpt.exists() and json.loads(ckpt.read_text())["step"] >= 3):
        assert time.monotonic() < deadline, f"no checkpoint: {slurm_cluster.job(job)}"
        time.sleep(0.3)
    # Pre-emption as SLURM does it for PreemptMode=REQUEUE: SIGTERM to every task, job back in queue.
    slurm_cluster.run("scontrol", "requeue", job)
    slurm_cluster.wait_state(job, {"PENDING"}, timeout=60)
    # SLURM holds a requeued job ~2 min (BeginTime); release it now to keep the test short.
    slurm_cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now")
    info = slurm_cluster.wait_state(job, {"COMPLETED", "FAILED"}, timeout=180)
    log = (tmp_path / "logs" / f"sbatch_train_{job}.out").read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log
    first = json.loads((tmp_path / "train" / "result-0.json").read_text())
    second = json.loads((tmp_path / "train" / "result-1.json").read_text())
    assert first["preempted"] and 3 <= first["last_step"] < 30            # stopped early, checkpointed
    assert second["resumed_from"] == first["last_step"]                   # resumed where it stopped
    assert second["last_step"] == 30 and len(second["sums"]) == 30 - first["last_step"]
    assert "restart 1" in log and "SIGTERM" in log
