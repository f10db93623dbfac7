"""`srft evaluate` up to the Docker boundary: real vLLM CPU server, real mini-swe-agent, real harness.

The harness test runs swebench's `run_evaluation` on the real SWE-agent predictions file; it
reads the predictions and the dataset and then needs Docker, which our machines lack: the
call must end in one clear error, not a fake report. The end-to-end test serves a tiny
random-weight Qwen2 with vLLM (venv and model from srft_megatron.evaluate.serve and convert.tiny_hf; the server itself is
started by `srft evaluate`'s own serving code, which is under test), lets mini-swe-agent
(local environment, not Docker) query it on one toy instance and checks that the answers came
from that server and that a predictions file was written; then the harness step stops at the same Docker error, and a
rerun resumes at the harness without starting the agent again."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from srft_megatron.evaluate.agent import instance_filter
from srft_megatron.evaluate.harness import HarnessConfig, HarnessUnavailable, run_harness
from srft_megatron.evaluate.results import read_predictions
from tests.evaluate.conftest import ROOT
from srft_megatron.convert.tiny_hf import save_tiny_served_model
from srft_megatron.evaluate.serve import vllm_python

SRFT = str(ROOT / ".venv" / "bin" / "srft")


def _docker_reachable() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


def _instance(iid: str, problem: str) -> dict:
    return {"instance_id": iid, "repo": "example/calc", "base_commit": "HEAD", "problem_statement": problem,
            "version": "0.1", "patch": "", "test_patch": "", "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]",
            "environment_setup_commit": "HEAD", "created_at": "2026-01-01", "hints_text": ""}


def test_instance_filter_matches_exact_ids():
    import re

    rx = instance_filter(["a__b-1", "c.d__e-2"])
    assert re.match(rx, "a__b-1") and re.match(rx, "c.d__e-2")
    assert not re.match(rx, "a__b-10") and not re.match(rx, "cxd__e-2")


@pytest.mark.skipif(_docker_reachable(), reason="Docker is reachable here: the harness would really run")
def test_harness_without_docker_fails_clearly(agent_python, traj_dir, tmp_path):
    preds = traj_dir / "all_preds.jsonl"
    iid = read_predictions(preds)[0].instance_id
    dataset = tmp_path / "instances.jsonl"
    dataset.write_text(json.dumps(_instance(iid, "pixel data without PixelRepresentation")) + "\n")
    cfg = HarnessConfig(python=str(agent_python), dataset=str(dataset), workers=1)
    with pytest.raises(HarnessUnavailable, match="needs a running Docker daemon"):
        run_harness(cfg, tmp_path / "rollout-01", preds, "test-run")
    log = (tmp_path / "rollout-01" / "harness.log").read_text()
    assert "DockerException" in log           # it got as far as the docker client
    assert not (tmp_path / "rollout-01" / "report.json").exists()


@pytest.mark.skipif(_docker_reachable(), reason="Docker is reachable here: the environment would start")
def test_agent_environment_failures_are_not_counted_as_attempts(agent_python, tmp_path):
    """Without Docker the agent's environment never starts: the rollout must fail, not be 'done'
    with empty patches, and the instance must be retried on the next try."""
    dataset = tmp_path / "instances.jsonl"
    dataset.write_text(json.dumps(_instance("example__calc-1", "fix calc.add")) + "\n")
    run = tmp_path / "eval"
    # relative paths on purpose: the agent runs inside the rollout directory
    cmd = [SRFT, "evaluate", "--endpoint", "http://127.0.0.1:9/v1", "--served-name", "none", "--subset",
           dataset.name, "--rollouts", "1", "--output", "eval", "--environment", "docker", "--agent-workers", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 of 1 instances failed before the agent started" in proc.stderr
    assert "no Docker daemon is reachable" in proc.stderr or "no `docker` executable" in proc.stderr
    assert json.loads((run / "rollout-01" / "agent" / "preds.json").read_text()) == {}
    assert not (run / "rollout-01" / "agent.done").exists()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_served_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2")


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(_docker_reachable(), reason="Docker is reachable here: the harness would really run")
def test_evaluate_serves_runs_agent_writes_predictions_then_stops_at_docker(
        agent_python, tiny_model, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    dataset = tmp_path / "instances.jsonl"
    dataset.write_text(json.dumps(_instance("example__calc-1", "add(2, 3) returns -1; fix calc.add")) + "\n")
    run = tmp_path / "eval-tiny"
    cmd = [SRFT, "evaluate", "--model", str(tiny_model), "--served-name", "tiny", "--vllm-python", str(vllm_python()),
           "--vllm-cpu", "--tool-call-parser", "none", "--max-model-len", "32768", "--subset", str(dataset),
           "--rollouts", "1", "--output", str(run), "--agent-config", "swebench_xml.yaml",
           "--model-class", "litellm_textbased", "--environment", "local", "--agent-set",
           f"environment.cwd={repo}", "--agent-set", "agent.step_limit=2", "--max-tokens", "24",
           "--agent-workers", "1", "--ready-timeout", "300"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "needs a running Docker daemon" in proc.stderr

    rollout = run / "rollout-01"
    preds = read_predictions(rollout / "agent" / "preds.json")
    assert [(p.instance_id, p.model_name_or_path) for p in preds] == [("example__calc-1", "openai/tiny")]
    traj = json.loads((rollout / "agent" / "example__calc-1" / "example__calc-1.traj.json").read_text())
    assert traj["info"]["model_stats"]["api_calls"] == 2
    replies = [m["extra"]["response"] for m in traj["messages"] if "response" in m.get("extra", {})]
    assert len(replies) == 2 and all(r["model"] == "tiny" for r in replies)
    assert all(r["system_fingerprint"].startswith("vllm-") for r in replies)  # answered by our vLLM
    assert (run / "vllm.log").read_text().count("POST /v1/chat/completions") == 2

    # Resume: the agent step is done, so no server starts; the harness is tried again.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 3 and "rollout 1/1: agent" not in again.stderr
    # Different settings on the same run directory are refused.
    changed = subprocess.run(cmd + ["--temperature", "0.7"], capture_output=True, text=True, timeout=120)
    assert changed.returncode == 2 and "different settings (temperature)" in changed.stderr
