"""slurm/critic_task.sh as two tasks of one two-node job with no key given (the nemo-run label
stage: no critic.sbatch in front), with stand-ins for vLLM, `srft label` and scontrol: both nodes'
replicas get the same key, in the environment and never in argv, each bound to its node's
NodeAddr; the labeller gets it as OPENAI_API_KEY; the shared key file is gone at the end.
(Seconds; the real vLLM replica and its 401: test_critic_api_key.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.launch.conftest import ROOT

RECORDER = """#!{python}
import glob, json, os, sys, time
role = {role!r}
if role == "label":   # as `srft label --wait-for-endpoints` does: the replicas are up before it labels
    deadline = time.monotonic() + 50
    while len(glob.glob(os.path.join({out!r}, "vllm-*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
with open(os.path.join({out!r}, f"{{role}}-{{os.getpid()}}.json"), "w") as f:
    json.dump({{"argv": sys.argv[1:], "vllm_key": os.environ.get("VLLM_API_KEY"),
               "openai_key": os.environ.get("OPENAI_API_KEY")}}, f)
if role == "vllm":
    time.sleep(600)   # a server: serves until critic_task.sh stops its process group
"""
SCONTROL = """#!/bin/sh
case "$2" in
  hostnames) printf 'n1\\nn2\\n' ;;
  node) [ "$4" = n1 ] && echo "NodeName=n1 NodeAddr=10.9.0.1 State=IDLE" || echo "NodeName=n2 NodeAddr=10.9.0.2 State=IDLE" ;;
esac
"""


def test_two_tasks_share_one_generated_key_kept_out_of_argv(tmp_path):
    out = tmp_path / "rec"
    out.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for role in ("vllm", "label"):
        (bin_dir / f"{role}-python").write_text(RECORDER.format(python=sys.executable, role=role, out=str(out)))
    (bin_dir / "scontrol").write_text(SCONTROL)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    run = tmp_path / "run"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "SRFT", "VLLM", "OPENAI"))}
    base.update(PATH=f"{bin_dir}:{base['PATH']}", SRFT_RUN_DIR=str(run), SRFT_REPO=str(ROOT),
                SRFT_CRITIC_MODEL="/models/critic", SRFT_VLLM_PYTHON=str(bin_dir / "vllm-python"),
                SRFT_PYTHON=str(bin_dir / "label-python"), SRFT_VLLM_PORT="8100",
                SLURM_JOB_ID="4242", SLURM_NNODES="2", SLURM_JOB_NODELIST="n[1-2]")
    tasks = [subprocess.Popen(["bash", str(ROOT / "slurm" / "critic_task.sh"), "--trajectories", "T.jsonl"],
                              env=dict(base, SLURM_PROCID=str(i), SLURM_NODEID=str(i), SLURMD_NODENAME=f"n{i + 1}"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 0)]   # the serving node first: it must wait for the first node's labeller
    logs = [t.communicate(timeout=60)[0] for t in tasks]
    assert [t.returncode for t in tasks] == [0, 0], logs
    records = [json.loads(p.read_text()) for p in sorted(out.iterdir())]
    servers = [json.loads(p.read_text()) for p in out.glob("vllm-*.json")]
    (label,) = [json.loads(p.read_text()) for p in out.glob("label-*.json")]
    assert label["argv"][:3] == ["-m", "srft_megatron.cli", "label"]
    assert len(servers) == 2
    keys = {s["vllm_key"] for s in servers}
    (key,) = keys                                             # one key for the whole job ...
    assert len(key) == 64 and label["openai_key"] == key      # ... and the labeller has it
    hosts = sorted(s["argv"][s["argv"].index("--host") + 1] for s in servers)
    assert hosts == ["10.9.0.1", "10.9.0.2"]                  # each replica on its node's address
    for r in records:
        assert not any(key in a for a in r["argv"]) and "--api-key" not in r["argv"]
    assert label["argv"][3:7] == ["--endpoint", "http://10.9.0.1:8100", "--endpoint", "http://10.9.0.2:8101"]
    assert not list((run / "labels").glob(".critic-key-*"))   # the shared key file is removed
    assert all(key not in log for log in logs)
