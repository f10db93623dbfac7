"""slurm/critic.sbatch on the two-node test cluster with real vLLM CPU servers: one replica per
node, `srft label` on the first node finds both through SLURM and labels every trajectory, and
every server is stopped when labelling is done.

Two vLLM CPU servers take minutes to start on a 2-core CI machine, so this test runs only with
SRFT_TEST_CRITIC_SLURM=1 (measured: 282 s on a loaded 2-core machine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.launch.conftest import ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("SRFT_TEST_CRITIC_SLURM") != "1",
                                 reason="minutes of vLLM start-up on CPU: set SRFT_TEST_CRITIC_SLURM=1")]


@pytest.fixture
def socket_dir():
    """vLLM's IPC sockets need a short path (tmp_path is too deep): the same rule as srft evaluate."""
    from srft_megatron.evaluate.serve import ipc_scratch_dir

    path = ipc_scratch_dir()
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


def test_critic_sbatch_serves_one_replica_per_node_and_labels(slurm_cluster, traj_files, tmp_path, socket_dir):
    from srft_megatron.convert.tiny_hf import save_tiny_served_model
    from srft_megatron.evaluate.serve import vllm_python
    from srft_megatron.ports import free_port

    vpython = vllm_python()
    model = save_tiny_served_model(tmp_path / "critic")
    run = tmp_path / "run"
    for sub in ("logs", "data"):
        (run / sub).mkdir(parents=True)
    # two short trajectories keep CPU labelling quick
    subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "ingest", *map(str, traj_files[:2]),
                    "-o", str(run / "data" / "trajectories.jsonl"), "--quiet"], check=True)
    port = free_port()
    env = dict(slurm_cluster.env, SRFT_RUN_DIR=str(run), SRFT_REPO=str(ROOT), SRFT_CRITIC_MODEL=str(model),
               SRFT_VLLM_PYTHON=str(vpython), SRFT_VLLM_PORT=str(port),
               SRFT_VLLM_ARGS="--dtype float32 --max-model-len 8192 --enforce-eager",
               VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1", VLLM_HOST_IP="127.0.0.1", TMPDIR=socket_dir,
               VLLM_RPC_BASE_PATH=socket_dir, VLLM_CACHE_ROOT=f"{socket_dir}/cache", HF_HUB_OFFLINE="1",
               VLLM_NO_USAGE_STATS="1")
    proc = subprocess.run(["sbatch", "--parsable", "--wait", "-N", "2", "-o", f"{run}/logs/sbatch_label_%j.out",
                           str(ROOT / "slurm" / "critic.sbatch"), "--tokenizer", str(model), "--quiet"],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    job = proc.stdout.strip().split(";")[0]
    log = (run / "logs" / f"sbatch_label_{job}.out").read_text()
    assert proc.returncode == 0, log
    assert slurm_cluster.job(job)["JobState"] == "COMPLETED"
    # one replica per node, on distinct ports, both handed to srft label
    assert f"node 0 replica 0 on 127.0.0.1:{port}" in log and f"node 1 replica 0 on 127.0.0.1:{port + 1}" in log
    assert (f"--endpoint http://127.0.0.1:{port} --endpoint http://127.0.0.1:{port + 1}") in log
    ids = [json.loads(l)["id"] for l in (run / "data" / "trajectories.jsonl").read_text().splitlines()]
    labels = [json.loads(l) for l in (run / "labels" / "labels.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in labels) == sorted(ids)
    assert all(len(r["steps"]) >= 1 for r in labels)
    assert (run / "logs" / f"vllm-{job}-node0-r0.log").exists() and (run / "logs" / f"vllm-{job}-node1-r0.log").exists()
    # the servers were stopped with the job: nothing listens on their ports any more
    left = subprocess.run(["pgrep", "-f", f"--port {port}"], capture_output=True, text=True).stdout.split()
    assert not left
