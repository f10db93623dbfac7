"""A real vLLM CPU replica started by slurm/critic_task.sh (the script every critic job runs, one
task per node) listens on the node's address only and refuses requests without the job's key
(HTTP 401); `srft label`, started by the same script, gets the key from the environment and
labels. The key is on no command line (`ps`) and in no file the job writes (logs included).

One server start (~60-130 s on a 2-core machine): the labeller is held back by a wrapper
(SRFT_PYTHON) until the test has probed the replica, so nothing races the clock."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import httpx
import pytest

from tests.launch.conftest import ROOT

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
KEY = "job-key-5e0c7a31d2b94f68"

HELD_PYTHON = """#!/bin/bash
# `srft label` as critic_task.sh starts it, held until the test says go; records what it was given
printf '%s\\n' "$@" > "{argv}"
[ "$OPENAI_API_KEY" = "{key}" ] && echo yes > "{got_key}"
while [ ! -e "{go}" ]; do sleep 0.2; done
exec "{python}" "$@"
"""


@pytest.fixture
def socket_dir():
    from srft_megatron.evaluate.serve import ipc_scratch_dir

    path = ipc_scratch_dir()
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


def _wait_listening(url: str, proc: subprocess.Popen, log, timeout: float = 420) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text() if log.exists() else "critic_task.sh exited"
        try:
            return httpx.get(f"{url}/v1/models", timeout=5)
        except httpx.HTTPError:
            time.sleep(1)
    raise AssertionError(f"no vLLM replica at {url} after {timeout} s")


def test_replica_refuses_requests_without_the_job_key(traj_files, tmp_path, socket_dir):
    from srft_megatron.convert.tiny_hf import save_tiny_served_model
    from srft_megatron.evaluate.serve import vllm_python
    from srft_megatron.ports import free_port

    vpython = vllm_python()
    model = save_tiny_served_model(tmp_path / "critic")
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "ingest", *map(str, traj_files[:2]),
                    "-o", str(run / "data" / "trajectories.jsonl"), "--quiet"], check=True)
    go, argv_file, got_key = tmp_path / "go", tmp_path / "label-argv", tmp_path / "label-got-key"
    held = tmp_path / "held-python"
    held.write_text(HELD_PYTHON.format(argv=argv_file, key=KEY, got_key=got_key, go=go,
                                       python=ROOT / ".venv" / "bin" / "python"))
    held.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "OPENAI", "VLLM"))}
    env.update(SRFT_RUN_DIR=str(run), SRFT_REPO=str(ROOT), SRFT_CRITIC_MODEL=str(model), SRFT_PYTHON=str(held),
               SRFT_VLLM_PYTHON=str(vpython), SRFT_VLLM_PORT=str(port), SRFT_CRITIC_API_KEY=KEY,
               SRFT_VLLM_ARGS="--dtype float32 --max-model-len 8192 --enforce-eager",
               VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1", VLLM_HOST_IP="127.0.0.1", TMPDIR=socket_dir,
               VLLM_RPC_BASE_PATH=socket_dir, VLLM_CACHE_ROOT=f"{socket_dir}/cache", HF_HUB_OFFLINE="1",
               VLLM_NO_USAGE_STATS="1")
    task_log = run / "task.log"
    with open(task_log, "w") as log:
        proc = subprocess.Popen(["bash", str(ROOT / "slurm" / "critic_task.sh"), "--trajectories",
                                 str(run / "data" / "trajectories.jsonl"), "-o", str(run / "labels" / "labels.jsonl"),
                                 "--tokenizer", str(model), "--quiet"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        refused = _wait_listening(url, proc, run / "logs" / f"vllm-local-node0-r0.log")
        assert refused.status_code == 401                                   # no key
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        models = httpx.get(f"{url}/v1/models", headers=auth, timeout=30)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "critic"
        chat = {"model": "critic", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60).status_code == 401
        assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers=auth, timeout=120).status_code == 200
        # bound to the node's address (127.0.0.1 outside SLURM), not 0.0.0.0
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        local = [line.split()[3] for line in listening.splitlines() if line.strip()]   # State Recv-Q Send-Q Local Peer
        assert local == [f"127.0.0.1:{port}"], listening
        # the key is on no command line: not vLLM's, not the labeller's (waiting in its wrapper)
        assert argv_file.exists() and got_key.read_text().strip() == "yes"
        table = subprocess.run(["ps", "-eo", "args", "ww"], capture_output=True, text=True).stdout
        assert "vllm.entrypoints.openai.api_server" in table and KEY not in table
        go.touch()
        assert proc.wait(timeout=400) == 0, task_log.read_text()[-4000:]
    finally:
        go.touch()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    labels = [json.loads(line) for line in (run / "labels" / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 2 and all(r["critic"]["endpoint"] == f"{url}/v1" for r in labels)
    assert f"--endpoint\n{url}\n" in argv_file.read_text()
    for path in run.rglob("*"):                                             # logs, labels, vLLM's log
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
