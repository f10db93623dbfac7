"""Build the example SWE-agent trajectories from the hand-written scenarios, with real observations.

Why this exists: the demo needs trajectories and step labels that belong to this project (the
files in ../shared are third-party and stay outside it). Each scenario in `scenarios/*.yaml` is
written by hand: the issue, and for every step the agent's thought, its one tool call, and the
expert's label with the reason. Hand-writing the *observations* too would make them drift from
the code (line numbers, tracebacks, pytest summaries), so this script replays every tool call in
a scratch copy of the tiny repository `datekit/`: bash commands really run, and SWE-agent's
`str_replace_editor` (view / create / str_replace / insert / undo_edit, see `swe_agent_editor.py`) acts on
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from swe_agent_editor import Editor, editor_action  # noqa: E402

WORKDIR = "/testbed"  # where the agent believes the repository is (as in SWE-bench images)
LABELS = ("good", "unnecessary", "harmful", "recover")
# SWE-agent refuses interactive programs; the message is its blocklist_error_template.
BLOCKED_PROGRAMS = ("vim", "vi", "nano", "emacs", "less")
BLOCKED_STANDALONE = ("python", "python3", "ipython", "bash", "sh")
NO_OUTPUT = "Your command ran successfully and did not produce any output."


def load_issues() -> dict:
    return yaml.safe_load((HERE / "scenarios" / "issues.yaml").read_text())


def init_repo(dest: Path) -> Path:
    """A git repository holding the base commit of datekit (the agent's /testbed)."""
    repo = dest / "testbed"
    shutil.copytree(HERE / "datekit", repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=datekit", "-c", "user.email=datekit@example.com", "commit", "-qm", "datekit 0.3.1")
    return repo


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def shell_env(repo: Path) -> dict:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(repo.parent),
           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "TERM": "dumb", "COLUMNS": "100"}
    return env


def run_bash(repo: Path, command: str) -> str:
    first = command.strip().split()[0] if command.strip() else ""
    if first in BLOCKED_PROGRAMS or command.strip() in BLOCKED_STANDALONE:
        return f"Operation '{command.strip()}' is not supported by this environment."
    real = command.replace(WORKDIR, str(repo))
    proc = subprocess.run(["bash", "-c", real], cwd=repo, env=shell_env(repo), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = (proc.stdout + proc.stderr).replace(str(repo), WORKDIR)
    return out.rstrip("\n")


def submission(repo: Path) -> str:
    """What SWE-agent's submit tool returns: the diff of everything the agent changed."""
    git(repo, "add", "-A")
    return git(repo, "diff", "--cached")


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
        repo = init_repo(Path(tmp))
        editor = Editor(repo, WORKDIR)
        for k, step in enumerate(scen["steps"], start=1):
            name, arguments = tool_call(step)
            thought = step["thought"].strip()
            action = {"bash": lambda a: a["command"], "submit": lambda a: "submit",
                      "str_replace_editor": editor_action}[name](arguments)
            started = time.monotonic()
            if name == "bash":
                out = run_bash(repo, arguments["command"])
            elif name == "str_replace_editor":
                out = editor.run(**arguments)
            else:
                patch = submission(repo)
                out = patch.rstrip("\n")
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
                patch = submission(repo)
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
