"""`srft evaluate --profile NAME`: the overlay that puts an agent profile into mini-swe-agent's
SWE-bench runner. The classes it names are tested in test_check_scaffold.py (ProfileModel in the
mini-swe-agent replay, the shell form of the tools against the in-process editor); here: the
overlay names them, the profile file the agent's venv reads is the profile, and the templates as
mini-swe-agent renders them (its variable `task`) give the profile's text."""

from __future__ import annotations

import jinja2
import pytest
import yaml

from srft_megatron.agent_profile import load_agent_profile
from srft_megatron.errors import InputError
from srft_megatron.evaluate.agent import PROFILE_MODEL, AgentConfig, write_overlay


def _overlay(tmp_path, profile):
    cfg = AgentConfig(python="python", dataset="verified", profile=profile)
    path = tmp_path / "agent_overlay.yaml"
    write_overlay(path, cfg, "http://127.0.0.1:8000/v1", "srft-7b", seed=3)
    return yaml.safe_load(path.read_text())


def test_profile_overlay_puts_the_profile_into_mini_swe_agent(tmp_path):
    overlay = _overlay(tmp_path, "swe-agent")
    model, agent = overlay["model"], overlay["agent"]
    assert model["model_class"] == PROFILE_MODEL and model["shell_actions"] is True
    assert model["model_name"] == "openai/srft-7b" and model["model_kwargs"]["seed"] == 3
    profile = load_agent_profile("swe-agent")
    written = load_agent_profile(model["profile"])
    assert written == profile
    assert agent["step_limit"] == profile.limits["step_limit"] == 75 and agent["cost_limit"] == 0
    task = "parse_date rejects 29 February 2000"
    for key in ("system_template", "instance_template"):  # as DefaultAgent._render_template renders them
        text = jinja2.Template(agent[key], undefined=jinja2.StrictUndefined).render(task=task, working_dir="/testbed")
        assert text == profile.fill(key, problem_statement=task)
    assert task in jinja2.Template(agent["instance_template"]).render(task=task, working_dir="/testbed")


def test_without_a_profile_the_overlay_is_mini_swe_agents_own(tmp_path):
    overlay = _overlay(tmp_path, None)
    assert overlay["model"]["model_class"] == "litellm" and "system_template" not in overlay["agent"]
    assert not (tmp_path / "agent_profile.yaml").exists()


def test_the_xml_profile_runs_in_mini_swe_agent_too(tmp_path):
    """swe-smith (render xml): the same model class, which parses the call out of the text
    (test_xml_actions.py); its prompt documents the functions, and no tools are sent."""
    overlay = _overlay(tmp_path, "swe-smith")
    profile = load_agent_profile(overlay["model"]["profile"])
    assert profile == load_agent_profile("swe-smith") and profile.request_tools() is None
    assert overlay["model"]["model_class"] == PROFILE_MODEL
    system = jinja2.Template(overlay["agent"]["system_template"]).render(task="t", working_dir="/testbed")
    assert system == profile.fill("system_template", problem_statement="t") and "<function=" in system


def test_an_unusable_profile_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(InputError, match="neither a file nor an agent profile"):
        _overlay(tmp_path, "no-such-profile")


@pytest.mark.slow
@pytest.mark.vllm
def test_evaluate_with_a_profile_runs_mini_swe_agents_batch_runner_on_vllm(agent_python, tmp_path):
    """End to end up to the harness: `srft evaluate --profile swe-agent` serves a tiny random model
    with vLLM CPU and mini-swe-agent's own SWE-bench runner loads the profile's model class by
    import path, renders the profile's prompts, and sends the profile's tools with each request."""
    import json
    import subprocess

    from tests.evaluate.conftest import ROOT
    from tests.evaluate.test_eval_pipeline import _instance
    from srft_megatron.convert.tiny_hf import save_tiny_served_model
    from srft_megatron.evaluate.serve import vllm_python

    model = save_tiny_served_model(tmp_path / "tiny-qwen2")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    problem = "add(2, 3) returns -1; fix calc.add"
    dataset = tmp_path / "instances.jsonl"
    dataset.write_text(json.dumps(_instance("example__calc-1", problem)) + "\n")
    run = tmp_path / "eval-profile"
    cmd = [str(ROOT / ".venv" / "bin" / "srft"), "evaluate", "--model", str(model), "--served-name", "tiny",
           "--vllm-python", str(vllm_python()), "--vllm-cpu", "--max-model-len", "32768", "--subset", str(dataset),
           "--rollouts", "1", "--output", str(run), "--profile", "swe-agent", "--environment", "local",
           "--agent-set", f"environment.cwd={repo}", "--agent-set", "agent.step_limit=2", "--max-tokens", "24",
           "--agent-workers", "1", "--ready-timeout", "300", "--harness", "skip"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    traj = json.loads((run / "rollout-01" / "agent" / "example__calc-1" / "example__calc-1.traj.json").read_text())
    config = traj["info"]["config"]
    assert config["model_type"] == PROFILE_MODEL and config["model"]["shell_actions"] is True
    profile = load_agent_profile("swe-agent")
    system, user = traj["messages"][:2]
    assert system["content"] == profile.fill("system_template", problem_statement=problem)
    assert user["content"] == profile.fill("instance_template", problem_statement=problem)
    assert traj["info"]["model_stats"]["api_calls"] == 2
    assert (run / "vllm.log").read_text().count("POST /v1/chat/completions") == 2


def test_a_password_in_the_endpoint_stays_out_of_the_overlay(tmp_path):
    """The agent gets such an endpoint by environment (OPENAI_BASE_URL, run_agent), the overlay and
    the profile files never hold it, and the agent's own commands cannot read it back."""
    cfg = AgentConfig(python="python", dataset="verified", profile="swe-smith", environment_class="local")
    path = tmp_path / "agent_overlay.yaml"
    write_overlay(path, cfg, "https://user:s3cret%2Fx@host:8000/v1", "srft-7b", seed=1)
    assert not [p for p in tmp_path.iterdir() if b"s3cret" in p.read_bytes()]
    overlay = yaml.safe_load(path.read_text())
    assert "api_base" not in overlay["model"]["model_kwargs"]
    assert overlay["environment"]["env"] == {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""}
    write_overlay(path, cfg, "http://node17:8000/v1", "srft-7b", seed=1)  # no password: as before
    overlay = yaml.safe_load(path.read_text())
    assert overlay["model"]["model_kwargs"]["api_base"] == "http://node17:8000/v1"
    assert "env" not in overlay["environment"]
