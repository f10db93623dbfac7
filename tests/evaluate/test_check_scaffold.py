"""`srft check-scaffold` and agent profiles: the evaluation agent of the `swe-agent` profile sends,
before every step of every bundled example, exactly the tokens training rendered; a profile whose
template or history processing differs is caught at the step where it first shows; a SWE-agent
run config (SWE-smith's inference YAML) converts into the shipped `swe-smith` profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from srft_megatron.agent_profile import (AgentProfile, last_n_observations, load_agent_profile,
                                         profile_from_swe_agent_config)
from srft_megatron.errors import InputError
from srft_megatron.evaluate.scaffold_check import check_scaffold, read_recorded
from srft_megatron.ingest import read_swe_agent_traj
from srft_megatron.render import StepRenderer
from srft_megatron.tools import XML_DOCS_MARKER, load_profile

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "trajectories").glob("*.traj"))
PROFILE_YAML = ROOT / "srft_megatron" / "agent_profiles" / "swe-agent.yaml"


@pytest.fixture(scope="module")
def tokenizer():
    from srft_megatron import load_tokenizer

    return load_tokenizer("qwen2.5")


def _profile_copy(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(PROFILE_YAML.read_text())
    change(data)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_bundled_example_replays_with_the_training_context_at_every_step(path, tokenizer, tmp_path):
    agent_traj = tmp_path / "agent.traj"
    result = check_scaffold(path, load_agent_profile("swe-agent"), tokenizer, agent_traj_path=agent_traj)
    recorded, raw = read_recorded(path)
    summary = result.summary()
    assert summary["steps_compared"] == recorded.num_steps >= 7
    assert summary["mismatched_steps"] == 0 and summary["first_mismatch"] is None
    assert summary["observations"] == "recorded"
    # the agent really ran the calls: submit's diff of the replayed repository is the recorded patch
    written = json.loads(agent_traj.read_text())
    assert written["info"]["submission"] == raw["info"]["submission"]
    stopped = "submitted" if raw["info"]["exit_status"] == "submitted" else "exit_replay_exhausted"  # autosubmitted
    assert written["info"]["exit_status"] == stopped
    (item,) = read_swe_agent_traj(agent_traj)  # what the agent wrote is training data again
    assert item.result.num_steps == recorded.num_steps
    assert [m["content"] for m in item.result.messages] == [m["content"] for m in recorded.messages]


def test_changed_observation_template_is_caught_at_step_2_by_the_cli(tmp_path):
    """SWE-agent's default observation template in place of SWE-smith's: the first request with an
    observation in it is step 2's; exit 1 and the JSON say so."""
    profile = _profile_copy(tmp_path, lambda d: d["templates"].update(next_step_template="Observation: {{observation}}"))
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "check-scaffold", "--trajectory",
                           str(EXAMPLES[0]), "--profile", str(profile), "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["steps_compared"] == len(summary["steps"]) >= 7
    assert summary["first_mismatch"]["step"] == 2
    assert summary["mismatched_steps"] == summary["steps_compared"] - 1
    assert summary["first_mismatch"]["expected"] != summary["first_mismatch"]["got"]
    assert Path(summary["agent_trajectory"]).is_file()
    assert "DIFFERS at token" in proc.stdout


def test_changed_system_template_is_caught_at_step_1(tokenizer, tmp_path):
    profile = load_agent_profile(str(_profile_copy(
        tmp_path, lambda d: d["templates"].update(system_template=d["templates"]["system_template"] + " "))))
    summary = check_scaffold(EXAMPLES[0], profile, tokenizer).summary()
    assert summary["first_mismatch"]["step"] == 1 and summary["mismatched_steps"] == summary["steps_compared"]


def test_last_n_observations_at_inference_differs_from_training_from_step_7(tokenizer, tmp_path):
    """SWE-smith's inference elides all but the last 5 observations (and the instance prompt); its
    training data holds them whole. Before step k the agent has k observations, so the first elision
    is before step 7."""
    profile = load_agent_profile(str(_profile_copy(
        tmp_path, lambda d: d.update(history_processors=[{"type": "last_n_observations", "n": 5}]))))
    path = next(p for p in EXAMPLES if p.stem == "datekit-2__wandering")
    summary = check_scaffold(path, profile, tokenizer).summary()
    assert summary["first_mismatch"]["step"] == 7
    assert [s["step"] for s in summary["steps"] if s["first_diff"] is not None] == list(range(7, 14))


def test_last_n_observations_is_swe_agents(traj_dir):
    """SWE-agent's own test of LastNObservations (tests/test_history_processors.py) on its trajectory."""
    history = json.loads((traj_dir / "6e44b9__sweagenttestrepo-1c2844.traj").read_text())["history"]
    processed = last_n_observations(history, n=3)
    observations = sum(m["message_type"] == "observation" for m in history)
    assert sum("Old environment output" in m["content"] for m in processed) == observations - 3 - 1
    assert processed[1] == history[1] and processed[-1] == history[-1]


def test_swe_smith_run_config_converts_to_the_shipped_profile(traj_dir):
    converted = profile_from_swe_agent_config(str(traj_dir / "swesmith_infer.yaml"), name="swe-smith")
    shipped = load_agent_profile("swe-smith")
    assert converted.templates == shipped.templates
    assert load_agent_profile(str(traj_dir / "swesmith_infer.yaml")).templates == shipped.templates  # --profile
    # its system prompt documents SWE-smith's own tool descriptions: the swe-smith tool profile
    assert (converted.render, converted.tools, converted.max_observation_length) == ("xml", "swe-smith", 70000)
    assert converted.history_processors == shipped.history_processors == [{"type": "last_n_observations", "n": 5}]
    assert converted.limits["step_limit"] == 75
    assert XML_DOCS_MARKER in converted.templates["system_template"]
    assert converted.request_tools() is None and load_agent_profile("swe-agent").request_tools()
    assert converted.observation("") == "Your command ran successfully and did not produce any output."
    assert converted.observation("x" * 70001).endswith("1 characters were elided. Please try a different command "
                                                       "that produces less output or use head/tail/grep/redirect "
                                                       "the output to a file. Do not use interactive pagers.</NOTE>")


def test_unsupported_run_config_and_profile_are_refused_in_one_line(traj_dir, tmp_path):
    config = yaml.safe_load((traj_dir / "swesmith_infer.yaml").read_text())
    config["agent"]["tools"]["parse_function"]["type"] = "thought_action"
    bad = tmp_path / "text.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError) as err:
        profile_from_swe_agent_config(str(bad))
    assert str(err.value).startswith(str(bad)) and "thought_action" in str(err.value)
    with pytest.raises(InputError, match="history processor 'closed_window'"):
        AgentProfile(**{**vars(load_agent_profile("swe-agent")),
                        "history_processors": [{"type": "closed_window"}]}).validate("p.yaml")
    with pytest.raises(InputError, match="neither a file nor an agent profile"):
        load_agent_profile("no-such-profile")


def test_trajectory_without_problem_statement_is_refused_naming_the_file(tmp_path):
    data = json.loads(EXAMPLES[0].read_text())
    del data["replay_config"]
    bad = tmp_path / "trajectories" / "datekit-1__noproblem.traj"
    bad.parent.mkdir()
    bad.write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "check-scaffold", "--trajectory", str(bad),
                           "--repo", str(ROOT / "examples" / "datekit"), "--json", str(tmp_path / "c.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert str(bad) in line and "problem_statement" in line


@pytest.mark.parametrize("name", ["datekit-1__clean", "datekit-2__wandering", "datekit-2__drops_validation"])
def test_mini_swe_agent_with_the_profile_sends_the_training_context(agent_python, name, tokenizer, tmp_path):
    """mini-swe-agent itself (ProfileAgent/ProfileModel/ProfileEnvironment loaded by import path, in
    .venv-agent) replays the example with the same tokens before every step; its trajectory ingests."""
    path = EXAMPLES[0].parent / f"{name}.traj"
    out = tmp_path / "mini.traj.json"
    result = check_scaffold(path, load_agent_profile("swe-agent"), tokenizer, agent_traj_path=out,
                            agent_python=agent_python)
    recorded, raw = read_recorded(path)
    summary = result.summary()
    assert summary["driver"] == "mini-swe-agent"
    assert summary["steps_compared"] == recorded.num_steps and summary["mismatched_steps"] == 0
    written = json.loads(out.read_text())
    assert written["info"]["config"]["agent_type"] == "srft_megatron.evaluate.mini_profile.ProfileAgent"
    if raw["info"]["exit_status"] == "submitted":
        assert written["info"]["exit_status"] == "Submitted"
        assert written["info"]["submission"] == raw["info"]["submission"]
    (item,) = read_swe_agent_traj(out)
    assert item.result.num_steps == recorded.num_steps


def test_mini_swe_agent_with_a_changed_template_is_caught_at_step_2(agent_python, tokenizer, tmp_path):
    profile = load_agent_profile(str(_profile_copy(
        tmp_path, lambda d: d["templates"].update(next_step_template="Observation: {{observation}}"))))
    summary = check_scaffold(EXAMPLES[0], profile, tokenizer, agent_python=agent_python).summary()
    assert summary["first_mismatch"]["step"] == 2 and summary["mismatched_steps"] == summary["steps_compared"] - 1


def test_agent_rollouts_close_the_loop_through_ingest_and_preprocess(tokenizer, tmp_path):
    """The agent's trajectories, scored by the hidden tests as the harness would (patch on a clean
    checkout, hidden tests run), become the next round's data: `srft ingest --resolved REPORT`
    then `srft preprocess --policy rft` keeps the resolved rollout's steps and no others."""
    sys.path.insert(0, str(ROOT / "examples"))
    import build_examples

    run = tmp_path / "run"
    report = {"resolved_ids": [], "unresolved_ids": []}
    for name in ("datekit-1__clean", "datekit-2__drops_validation"):
        path = EXAMPLES[0].parent / f"{name}.traj"
        instance = read_recorded(path)[0].instance_id
        out = run / instance / f"{instance}.traj"
        out.parent.mkdir(parents=True)
        check_scaffold(path, load_agent_profile("swe-agent"), tokenizer, agent_traj_path=out)
        patch = json.loads(out.read_text())["info"]["submission"]
        resolved = build_examples.hidden_tests_pass(patch, instance)
        report["resolved_ids" if resolved else "unresolved_ids"].append(instance)
    assert report == {"resolved_ids": ["datekit-1"], "unresolved_ids": ["datekit-2"]}
    (tmp_path / "report.json").write_text(json.dumps(report))

    def srft(*args):
        proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=ROOT, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    srft("ingest", *sorted(run.glob("*/*.traj")), "--resolved", tmp_path / "report.json", "-o", tmp_path / "t.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert {r["id"]: r["resolved"] for r in rows} == {"run/datekit-1": True, "run/datekit-2": False}
    srft("preprocess", "--trajectories", tmp_path / "t.jsonl", "--policy", "rft", "--tools", "swe-agent",
         "--seq-length", 8192, "--output-prefix", tmp_path / "data" / "rft", "--quiet")
    meta = json.loads((tmp_path / "data" / "rft.meta.json").read_text())
    counts = meta["counts"]
    assert counts["trajectories_in"] == 2 and counts["documents"] == 1
    assert counts["skipped"] == {"no trained tokens under policy rft": 1}
    assert counts["kept_steps"] == {"resolved": 11, "unknown": 0, "unresolved": 0}
    (doc,) = meta["documents"]
    recorded = read_recorded(EXAMPLES[0].parent / "datekit-1__clean.traj")[0]
    same = StepRenderer(tokenizer, "tools", tools=load_profile("swe-agent")).render(recorded)
    assert doc["id"] == "run/datekit-1" and doc["tokens"] == len(same.input_ids)  # the rollout is the example


def test_editor_as_shell_commands_gives_the_in_process_output(agent_python, tmp_path):
    """What a SWE-bench container would run (`ShellTools`: the editor's source through python3 -c,
    undo history in a file, submit as git diff) prints what the in-process editor prints, for every
    editor and submit call of four examples (views, create, str_replace, insert, refusals)."""
    names = ["datekit-1__clean", "datekit-1__indent_recover", "datekit-3__edits_tests", "datekit-3__misused_tools"]
    assert '\\"insert\\"' in (EXAMPLES[0].parent / "datekit-3__edits_tests.traj").read_text()
    env = dict(os.environ, PYTHONPATH=str(ROOT), MSWEA_SILENT_STARTUP="1", LITELLM_LOCAL_MODEL_COST_MAP="True",
               MSWEA_GLOBAL_CONFIG_DIR=str(tmp_path / "mswea"))
    proc = subprocess.run([str(agent_python), str(Path(__file__).with_name("shell_tools_check.py")), *names],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["calls"] >= 15 and result["differ"] == []
