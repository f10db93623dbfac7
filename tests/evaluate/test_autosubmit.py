"""On limits and errors the profile agent submits as SWE-agent does (`attempt_autosubmission_after_error`).

`srft evaluate --profile`'s own agent step (`evaluate.agent.run_agent`: mini-swe-agent's SWE-bench
batch runner through `evaluate.mini_batch`) runs on the bundled examples' repository with the
deterministic replay model of `srft check-scaffold` in place of the LLM (the recorded replies of
`datekit-1__clean.traj`, which edits `datekit/calendar.py` at step 6 and submits at step 11) and
the in-process local environment: no server, no Docker. A step limit cuts the recording short.
Past the edit, the working tree's diff is the submission, with SWE-agent's exit status
`submitted (exit_cost)`, in the trajectory and in preds.json (what the harness grades); before any
edit, SWE-agent's bare `exit_cost` and an empty patch. The same after three refused replies in a
row (`exit_format`) and after a request past the context window (`exit_context`). mini-swe-agent
alone would submit an empty patch in all of them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from srft_megatron.agent_profile import load_agent_profile
from srft_megatron.evaluate.agent import PROFILE_RUNNER, AgentConfig, agent_command, run_agent, write_overlay
from srft_megatron.evaluate.local_env import init_repo
from srft_megatron.evaluate.results import read_predictions
from srft_megatron.evaluate.scaffold_check import problem_statement, read_recorded
from tests.evaluate.conftest import ROOT
from tests.evaluate.test_eval_pipeline import _instance

INSTANCE = "datekit-1"
EXAMPLE = ROOT / "examples" / "trajectories" / f"{INSTANCE}__clean.traj"
MINI = "srft_megatron.evaluate.mini_profile"


def _rollout(agent_python, tmp_path, step_limit: int, replayed: Path = EXAMPLE,
             model: tuple[str, ...] = (f"model.model_class={MINI}.ReplayModel",)) -> tuple[dict, dict, str]:
    """One batch run of `replayed`'s replies, at most `step_limit` steps: (trajectory, prediction,
    the checkout's diff)."""
    _, raw = read_recorded(EXAMPLE)
    dataset = tmp_path / "dataset" / "test.jsonl"  # a dataset directory, split `test` (as rollouts.py)
    dataset.parent.mkdir()
    dataset.write_text(json.dumps(_instance(INSTANCE, problem_statement(raw, EXAMPLE))) + "\n")
    checkout = init_repo(ROOT / "examples" / "datekit", tmp_path / "checkout")
    cfg = AgentConfig(python=str(agent_python), dataset=str(dataset.parent), profile="swe-agent", workers=1,
                      environment_class=f"{MINI}.ProfileEnvironment", timeout_s=300,
                      overrides=[*model, f"model.trajectory={replayed}",
                                 f"model.requests_path={tmp_path / 'requests.jsonl'}", "model.shell_actions=false",
                                 f"environment.cwd={checkout}", f"agent.step_limit={step_limit}"])
    preds = run_agent(cfg, tmp_path / "rollout", "http://127.0.0.1:9/v1", "replay", seed=0)
    traj = json.loads((preds.parent / INSTANCE / f"{INSTANCE}.traj.json").read_text())
    (prediction,) = read_predictions(preds)
    diff = subprocess.run(["git", "diff", "--cached"], cwd=checkout, capture_output=True, text=True, check=True)
    return traj, {"instance_id": prediction.instance_id, "model_patch": prediction.model_patch}, diff.stdout


def test_the_profile_runner_and_the_format_error_limit_are_swe_agents(tmp_path):
    cfg = AgentConfig(python="python", dataset="verified", profile="swe-smith")
    write_overlay(tmp_path / "agent_overlay.yaml", cfg, "http://127.0.0.1:8000/v1", "srft-7b", seed=1)
    assert agent_command(cfg, tmp_path, tmp_path / "agent_overlay.yaml")[2] == PROFILE_RUNNER
    assert agent_command(AgentConfig(python="python", dataset="verified"), tmp_path, tmp_path)[2] == \
        "minisweagent.run.benchmarks.swebench"
    overlay = yaml.safe_load((tmp_path / "agent_overlay.yaml").read_text())
    assert overlay["agent"]["max_consecutive_format_errors"] == load_agent_profile("swe-smith").max_requeries() == 3


def test_a_run_that_edited_then_hit_the_step_limit_submits_its_diff(agent_python, tmp_path):
    traj, prediction, diff = _rollout(agent_python, tmp_path, step_limit=6)
    assert traj["info"]["model_stats"]["api_calls"] == 6
    assert traj["info"]["exit_status"] == "submitted (exit_cost)"
    assert "datekit/calendar.py" in diff and "reproduce.py" in diff  # git add -A: as SWE-agent's submission
    assert traj["info"]["submission"] == prediction["model_patch"] == diff
    exit_message = traj["messages"][-1]
    assert exit_message["role"] == "exit" and exit_message["content"] == "Exited (autosubmitted)"
    assert prediction["instance_id"] == INSTANCE


def test_a_run_that_never_edited_submits_an_empty_patch(agent_python, tmp_path):
    traj, prediction, diff = _rollout(agent_python, tmp_path, step_limit=3)  # three views
    assert traj["info"]["model_stats"]["api_calls"] == 3
    assert diff == "" and prediction["model_patch"] == traj["info"]["submission"] == ""
    assert traj["info"]["exit_status"] == "exit_cost"


def test_format_errors_in_a_row_after_an_edit_submit_the_diff_as_exit_format(agent_python, tmp_path):
    """The example's first six steps (the edit among them), then replies without a tool call:
    SWE-agent's max_requeries (3) of them end the run with `submitted (exit_format)`."""
    data = json.loads(EXAMPLE.read_text())
    assistant = [i for i, m in enumerate(data["history"]) if m["role"] == "assistant"]
    data["history"] = data["history"][:assistant[6]] + 3 * [
        {"role": "assistant", "content": "The fix is in place.", "agent": "main", "message_type": "action"},
        {"role": "user", "content": "Your last output did not use any tool calls!", "agent": "main",
         "message_type": "user"}]
    data["trajectory"] = data["trajectory"][:6]
    replayed = tmp_path / "format-errors.traj"
    replayed.write_text(json.dumps(data))
    traj, prediction, diff = _rollout(agent_python, tmp_path, step_limit=75, replayed=replayed)
    assert traj["info"]["model_stats"]["api_calls"] == 9
    assert [m["content"] for m in traj["messages"] if m["role"] == "assistant"][-3:] == ["The fix is in place."] * 3
    assert traj["info"]["exit_status"] == "submitted (exit_format)"
    assert "datekit/calendar.py" in diff and prediction["model_patch"] == traj["info"]["submission"] == diff


def test_a_step_that_fails_after_an_edit_submits_the_diff_as_swe_agent(agent_python, tmp_path):
    """The 7th request overflows the context window (tests/evaluate/overflow_model.py): mini-swe-agent
    re-raises and its batch runner would record an empty patch; SWE-agent autosubmits, `exit_context`."""
    overflow = ("model.model_class=tests.evaluate.overflow_model.OverflowModel", "model.overflow_after=6")
    traj, prediction, diff = _rollout(agent_python, tmp_path, step_limit=75, model=overflow)
    assert traj["info"]["model_stats"]["api_calls"] == 7
    assert traj["info"]["exit_status"] == "submitted (exit_context)"
    assert "datekit/calendar.py" in diff and prediction["model_patch"] == traj["info"]["submission"] == diff
    assert "maximum context length" in traj["messages"][-1]["extra"]["exception_str"]


@pytest.mark.parametrize("step_limit, status", [(6, "submitted (exit_cost)"), (3, "exit_cost")])
def test_check_scaffolds_own_replay_agent_ends_on_the_limit_with_swe_agents_status(tmp_path, step_limit, status):
    """`replay.ProfileAgent` (srft check-scaffold's in-process driver) names the same exits."""
    from dataclasses import replace

    from srft_megatron.evaluate.local_env import LocalEnvironment
    from srft_megatron.evaluate.replay import ProfileAgent, ReplayModel

    traj, raw = read_recorded(EXAMPLE)
    profile = load_agent_profile("swe-agent")
    profile = replace(profile, limits={**profile.limits, "step_limit": step_limit})
    env = LocalEnvironment(init_repo(ROOT / "examples" / "datekit", tmp_path), profile.working_dir)
    agent = ProfileAgent(profile, env, problem_statement(raw, EXAMPLE), traj.id)
    agent.run(ReplayModel.from_trajectory(traj, profile.render))
    written = agent.to_traj(INSTANCE, "")
    assert written["info"]["exit_status"] == status and len(written["trajectory"]) == step_limit
    assert ("datekit/calendar.py" in written["info"]["submission"]) == (step_limit == 6)
