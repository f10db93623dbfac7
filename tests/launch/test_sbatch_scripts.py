"""slurm/train.sbatch on the real two-node test cluster, running the real `srft train`
(configs/tiny.yaml): torchrun on both nodes (one worker each, gloo, data parallel 2), pre-empted
mid-training (`scontrol requeue`: SIGTERM to every task, job back in the queue), resumed by the
requeued job from the checkpoint written on SIGTERM, and run to the last step."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.launch.conftest import ROOT, train_overrides

pytestmark = pytest.mark.slurm
STEPS = 8


def _metrics(run_dir) -> list[dict]:
    path = run_dir / "train" / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_train_sbatch_two_nodes_preempted_requeued_resumes(slurm_cluster, tiny_dataset, tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    env = dict(slurm_cluster.env, SRFT_RUN_DIR=str(run), SRFT_REPO=str(ROOT),
               SRFT_TRAIN_CONFIG=str(ROOT / "configs" / "tiny.yaml"), SRFT_RDZV_PORT="29711",
               SRFT_NPROC_PER_NODE="1")
    proc = subprocess.run(["sbatch", "--parsable", "-N", "2", "-o", f"{run}/logs/sbatch_train_%j.out",
                           str(ROOT / "slurm" / "train.sbatch"), *train_overrides(tiny_dataset, STEPS)],
                          env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    job = proc.stdout.strip().split(";")[0]
    log_path = run / "logs" / f"sbatch_train_{job}.out"

    deadline = time.monotonic() + 300
    while len(_metrics(run)) < 2:   # training is under way
        info = slurm_cluster.job(job)
        assert info["JobState"] in ("PENDING", "RUNNING"), log_path.read_text() if log_path.exists() else info
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.3)
    # Pre-emption as SLURM does it for PreemptMode=REQUEUE: SIGTERM to every task, job back in queue.
    slurm_cluster.run("scontrol", "requeue", job)
    slurm_cluster.wait_state(job, {"PENDING"}, timeout=120)
    ckpt_root = run / "train" / "checkpoints"
    first_stop = (ckpt_root / "latest").read_text().strip()          # saved on SIGTERM
    stopped_at = int(first_stop.split("_")[1])
    assert 2 <= stopped_at < STEPS, first_stop
    # SLURM holds a requeued job ~2 min (BeginTime); release it now to keep the test short.
    slurm_cluster.run("scontrol", "update", f"jobid={job}", "StartTime=now")
    info = slurm_cluster.wait_state(job, {"COMPLETED", "FAILED"}, timeout=400)
    log = log_path.read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log
    assert info["NodeList"] == "n[1-2]"
    assert "torchrun 2 nodes x 1 workers, rendezvous 127.0.0.1:29711" in log and "restart 1" in log

    final = json.loads((ckpt_root / f"iter_{STEPS:07d}" / "srft_checkpoint.json").read_text())
    assert (ckpt_root / "latest").read_text().strip() == f"iter_{STEPS:07d}"
    assert final["parallel"]["dp"] == 2                                # one rank on each node
    assert final["consumed_samples"] == 2 * STEPS                     # data position continued
    pre = json.loads((ckpt_root / first_stop / "srft_checkpoint.json").read_text())
    assert pre["step"] == stopped_at and pre["consumed_samples"] == 2 * stopped_at
    # the requeued run logged exactly the steps after the checkpoint, not from step 1 again
    steps = [r["step"] for r in _metrics(run)]
    assert steps[-(STEPS - stopped_at):] == list(range(stopped_at + 1, STEPS + 1))
    assert steps.count(stopped_at + 1) == 1
