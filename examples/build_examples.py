"""Build the example SWE-agent trajectories from the hand-written scenarios, with real observations.

Why this exists: the demo needs trajectories and step labels that belong to this project (the
files in ../shared are third-party and stay outside it). Each scenario in `scenarios/*.yaml` is
written by hand: the issue, and for every step the agent's thought, its one tool call, and the
expert's label with the reason. Hand-writing the *observations* too would make them drift from
the code (line numbers, tracebacks, pytest summaries), so this script replays every tool call in
a scratch copy of the tiny repository `datekit/`: bash commands really run, and SWE-agent's
`str_replace_editor` (view / create / str_replace / insert / undo_edit, `srft_megatron/evaluate/editor.py`, run by
`srft_megatron/evaluate/local_env.py` as `srft check-scaffold` runs it) acts on
the real files. `resolved` is decided the way SWE-bench decides it: the submitted patch is
applied to a clean copy and the hidden tests of the issue (`hidden_tests/`) must pass.

Outputs (committed; rerun after editing a scenario):
    examples/trajectories/<id>.traj   SWE-agent function-calling .traj (history + info)
    examples/labels.jsonl             DESIGN §2 labels, critic {"model": "expert"}
    examples/resolved.jsonl           {"id", "instance_id", "resolved"} per trajectory

    .venv/bin/python examples/build_examples.py [--output DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from srft_megatron.evaluate.local_env import WORKDIR, LocalEnvironment, action_text, shell_env
from srft_megatron.evaluate.local_env import init_repo as _init_repo

HERE = Path(__file__).resolve().parent
LABELS = ("good", "unnecessary", "harmful", "recover")
NO_OUTPUT = "Your command ran successfully and did not produce any output."


def load_issues() -> dict:
    return yaml.safe_load((HERE / "scenarios" / "issues.yaml").read_text())


def init_repo(dest: Path) -> Path:
    """A git repository holding the base commit of datekit (the agent's /testbed)."""
    return _init_repo(HERE / "datekit", dest)


def hidden_tests_pass(patch: str, instance: str) -> bool:
    """SWE-bench's verdict: apply the patch to a clean checkout, run the issue's hidden tests."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = init_repo(Path(tmp))
        if patch.strip():
            (repo.parent / "patch.diff").write_text(patch)
            subprocess.run(["git", "apply", str(repo.parent / "patch.diff")], cwd=repo, check=True)
        test = HERE / "hidden_tests" / f"test_{instance.replace('-', '_')}.py"
        shutil.copy(test, repo / "tests" / test.name)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                              cwd=repo, env=shell_env(repo), capture_output=True, text=True, timeout=120)
        return proc.returncode == 0


def call_id(traj_id: str, step: int) -> str:
    return "call_" + hashlib.sha256(f"{traj_id}/{step}".encode()).hexdigest()[:24]


def tool_call(step: dict) -> tuple[str, dict]:
    if "bash" in step:
        return "bash", {"command": step["bash"].rstrip("\n")}
    if "editor" in step:
        return "str_replace_editor", dict(step["editor"])
    if step.get("submit"):
        return "submit", {}
    raise ValueError(f"step without a tool call: {step}")


def build(scenario_path: Path, issues: dict) -> tuple[dict, dict, dict]:
    scen = yaml.safe_load(scenario_path.read_text())
    traj_id, instance = scen["id"], scen["instance_id"]
    issue = issues[instance]
    history = [
        {"role": "system", "content": issues["system_prompt"].strip(), "agent": "main", "message_type": "system_prompt"},
        {"role": "user", "content": issues["instance_template"].format(working_dir=WORKDIR, problem_statement=issue.strip()).strip(),
         "agent": "main", "message_type": "observation"},
    ]
    trajectory, labels = [], []
    patch = ""
    with tempfile.TemporaryDirectory() as tmp:
        env = LocalEnvironment(init_repo(Path(tmp)), WORKDIR)
        for k, step in enumerate(scen["steps"], start=1):
            name, arguments = tool_call(step)
            thought = step["thought"].strip()
            action = action_text(name, arguments)
            started = time.monotonic()
            out = env.execute(name, arguments)
            if name == "submit":
                patch = env.submission
            elapsed = round(time.monotonic() - started, 3)
            observation = f"OBSERVATION:\n{out}" if out.strip() else NO_OUTPUT
            cid = call_id(traj_id, k)
            history.append({"role": "assistant", "content": thought, "thought": thought, "action": action,
                            "agent": "main", "message_type": "action",
                            "tool_calls": [{"id": cid, "type": "function",
                                            "function": {"name": name, "arguments": json.dumps(arguments)}}]})
            last = k == len(scen["steps"]) and scen.get("exit_status", "submitted") != "submitted"
            history.append({"role": "tool", "content": observation, "agent": "main",
                            "message_type": "observation", "tool_call_ids": [cid]})
            trajectory.append({"action": action, "observation": out, "response": thought, "thought": thought,
                               "execution_time": elapsed, "state": {"working_dir": WORKDIR}})
            label = step["label"]
            if label not in LABELS:
                raise SystemExit(f"{scenario_path}: step {k}: unknown label {label!r}")
            labels.append({"step": k, "label": label, "confidence": float(step.get("confidence", 1.0)),
                           "reason": " ".join(step["why"].split())})
            if last:  # the run stopped without a submit call: SWE-agent autosubmits the diff
                patch = env.diff()
    resolved = hidden_tests_pass(patch, instance)
    if "expect_resolved" in scen and scen["expect_resolved"] != resolved:
        raise SystemExit(f"{traj_id}: hidden tests say resolved={resolved}, the scenario expects {scen['expect_resolved']}")
    steps = len(labels)
    replay = {"problem_statement": {"type": "text", "id": instance, "text": issue.strip()},
              "env": {"repo": {"repo_name": "testbed", "type": "preexisting"}}}
    traj = {"environment": instance, "history": history, "trajectory": trajectory,
            "replay_config": json.dumps(replay),
            "info": {"exit_status": scen.get("exit_status", "submitted"), "submission": patch,
                     "model_stats": {"api_calls": steps, "instance_cost": 0.0},
                     "note": "hand-written example of srft-megatron (examples/scenarios); observations are "
                             "real outputs of replaying each tool call on examples/datekit"}}
    label_rec = {"id": traj_id, "steps": labels,
                 "critic": {"model": "expert", "prompt_sha256": None, "temperature": None,
                            "rubric": "good / unnecessary / harmful / recover (critic issue)", "by": "hand"},
                 "usage": {"prompt_tokens": 0, "completion_tokens": 0}}
    return traj, label_rec, {"id": traj_id, "instance_id": instance, "resolved": resolved}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build examples/trajectories, labels.jsonl and resolved.jsonl.")
    parser.add_argument("--output", type=Path, default=HERE,
                        help="directory to write into (default: examples/ itself); tests rebuild into a temp dir")
    args = parser.parse_args(argv)
    issues = load_issues()
    out_dir = args.output / "trajectories"
    out_dir.mkdir(parents=True, exist_ok=True)
    label_lines, resolved_lines = [], []
    for path in sorted((HERE / "scenarios").glob("datekit-*.yaml")):
        traj, label_rec, resolved = build(path, issues)
        (out_dir / f"{label_rec['id']}.traj").write_text(json.dumps(traj, indent=2, ensure_ascii=False) + "\n")
        label_lines.append(json.dumps(label_rec, ensure_ascii=False))
        resolved_lines.append(json.dumps(resolved))
        counts = {lab: sum(s["label"] == lab for s in label_rec["steps"]) for lab in LABELS}
        print(f"{label_rec['id']:<32} steps {len(label_rec['steps']):>2}  resolved {str(resolved['resolved']):<5}  {counts}")
    (args.output / "labels.jsonl").write_text("\n".join(label_lines) + "\n")
    (args.output / "resolved.jsonl").write_text("\n".join(resolved_lines) + "\n")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
