"""`srft check-scaffold`: does the evaluation agent send, at every step, what training rendered?

Why: a checkpoint trained on one scaffold and evaluated in another is measured on prompts it
never saw. This replays a trajectory's recorded actions through the agent (`replay.ProfileAgent`
with a `ReplayModel`, tool calls run by `LocalEnvironment` on a fresh git copy of `--repo`) and
compares, before every step k, two token sequences:

  expected  the training render of the recorded trajectory (`render.StepRenderer`, the profile's
            render mode and tools, as `srft preprocess --tools` renders it) up to step k's span;
  got       the agent's request before step k, tokenised as the server would: the chat template
            applied to its messages and tools with `add_generation_prompt` (locally with the same
            tokenizer, or by a real vLLM server's `POST /tokenize` when `endpoint` is given).

In an xml profile (`swe-smith`) the replay model answers with each recorded call written as the xml
render trains it, and the agent reads it back with SWE-agent's xml parser (`xml_actions.py`).

Any difference is reported at its first token (index, expected and got token text). The bundled
examples find their repository by themselves: `examples/trajectories/datekit-1__clean.traj`
replays on `examples/datekit/` (the directory named by the instance id up to its last `-`, next
to the trajectories' directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import srft_megatron
from srft_megatron.agent_profile import AgentProfile
from srft_megatron.errors import InputError
from srft_megatron.evaluate.local_env import LocalEnvironment, init_repo
from srft_megatron.evaluate.replay import ProfileAgent, ReplayModel, Request
from srft_megatron.ingest import read_swe_agent_traj
from srft_megatron.io import atomic_open, write_json
from srft_megatron.render import StepRenderer, template_messages
from srft_megatron.trajectory import Trajectory


@dataclass
class StepCheck:
    step: int
    expected_tokens: int
    got_tokens: int
    first_diff: int | None = None     # token index of the first difference, None when equal
    expected: str | None = None       # the token text there (None: the sequence ended)
    got: str | None = None


@dataclass
class ScaffoldCheck:
    trajectory: str
    profile: str
    steps: list[StepCheck] = field(default_factory=list)
    recorded_steps: int = 0
    agent_trajectory: str | None = None
    observations: str = "live"          # built from the recorded or the live tool outputs
    driver: str = "profile"             # the agent: the profile's builder or mini-swe-agent
    env_differences: list[int] = field(default_factory=list)  # steps whose live output differed

    @property
    def mismatched(self) -> list[StepCheck]:
        return [s for s in self.steps if s.first_diff is not None]

    def summary(self) -> dict[str, Any]:
        first = self.mismatched[0] if self.mismatched else None
        return {"trajectory": self.trajectory, "profile": self.profile, "recorded_steps": self.recorded_steps,
                "steps_compared": len(self.steps), "mismatched_steps": len(self.mismatched),
                "first_mismatch": None if first is None else
                {"step": first.step, "token": first.first_diff, "expected": first.expected, "got": first.got},
                "agent_trajectory": self.agent_trajectory, "observations": self.observations, "driver": self.driver,
                "env_differences": self.env_differences,
                "steps": [vars(s) for s in self.steps]}


def read_recorded(path: Path) -> tuple[Trajectory, dict[str, Any]]:
    """The recorded trajectory (as `srft ingest` reads it) and the raw `.traj` object."""
    (item,) = list(read_swe_agent_traj(path))
    if isinstance(item.result, InputError):
        raise item.result
    return item.result, json.loads(path.read_text(encoding="utf-8"))


def problem_statement(data: dict[str, Any], path: Path) -> str:
    replay = data.get("replay_config")
    replay = json.loads(replay) if isinstance(replay, str) else replay
    problem = (replay or {}).get("problem_statement") if isinstance(replay, dict) else None
    text = problem.get("text") if isinstance(problem, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InputError("the .traj has no replay_config.problem_statement.text to fill the instance template",
                         file=str(path))
    return text


def recorded_outputs(data: dict[str, Any], steps: int) -> list[str] | None:
    """The raw tool outputs of a SWE-agent `.traj` (`trajectory[i].observation`), one per step, or
    None when the file does not have exactly one per step."""
    entries = data.get("trajectory")
    if not isinstance(entries, list) or len(entries) != steps:
        return None
    outputs = [e.get("observation") if isinstance(e, dict) else None for e in entries]
    return outputs if all(isinstance(o, str) for o in outputs) else None


def find_repo(path: Path, instance_id: str | None) -> Path:
    """The bundled examples' layout: `<root>/trajectories/X.traj` replays on `<root>/<repo>/`."""
    name = (instance_id or "").rsplit("-", 1)[0]
    candidate = path.resolve().parent.parent / name
    if name and candidate.is_dir():
        return candidate
    raise InputError(f"no repository found for instance {instance_id!r} (looked for {candidate}); give --repo DIR",
                     file=str(path))


def first_difference(expected: list[int], got: list[int]) -> int | None:
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return i
    return None if len(expected) == len(got) else min(len(expected), len(got))


class LocalTokenize:
    """The server's tokenisation of a chat request, done here with the same tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, request: Request, mode: str) -> list[int]:
        messages = template_messages(Trajectory("request", request.messages), mode, None)
        text = self.tokenizer.apply_chat_template(messages, tools=request.tools, tokenize=False,
                                                  add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


class VllmTokenize:
    """A real vLLM server's `POST /tokenize` of the request the agent sends (tools mode: its
    OpenAI messages and tools as they are; xml: the text messages the xml agent sends)."""

    def __init__(self, endpoint: str, served_name: str):
        import httpx

        self.client = httpx.Client(base_url=endpoint.rstrip("/").removesuffix("/v1"), timeout=120)
        self.served_name = served_name

    def __call__(self, request: Request, mode: str) -> list[int]:
        messages = request.messages if mode == "tools" else template_messages(Trajectory("r", request.messages), mode)
        body = {"model": self.served_name, "messages": messages, "add_generation_prompt": True}
        if request.tools is not None:
            body["tools"] = request.tools
        reply = self.client.post("/tokenize", json=body)
        if reply.status_code != 200:
            raise RuntimeError(f"vLLM /tokenize answered {reply.status_code}: {reply.text[:300]}")
        return reply.json()["tokens"]


def run_mini_swe_agent(path: Path, profile: AgentProfile, repo: Path, statement: str,
                       outputs: list[str] | None, tmp: Path, agent_python: Path) -> tuple[list[Request], Path]:
    """The same replay through mini-swe-agent itself (`evaluate/mini_profile.py`, in .venv-agent):
    its requests and the trajectory file it saved."""
    (tmp / "profile.yaml").write_text(profile.to_yaml(), encoding="utf-8")
    (tmp / "task.txt").write_text(statement, encoding="utf-8")
    cmd = [str(agent_python), "-m", "srft_megatron.evaluate.mini_profile", "--trajectory", str(path.resolve()),
           "--profile", str(tmp / "profile.yaml"), "--repo", str(repo), "--task", str(tmp / "task.txt"),
           "--requests", str(tmp / "requests.jsonl"), "--output", str(tmp / "mini.traj.json")]
    if outputs is not None:
        (tmp / "outputs.json").write_text(json.dumps(outputs), encoding="utf-8")
        cmd += ["--recorded-outputs", str(tmp / "outputs.json")]
    env = dict(os.environ, PYTHONPATH=str(Path(srft_megatron.__file__).resolve().parents[1]),
               MSWEA_SILENT_STARTUP="1", MSWEA_GLOBAL_CONFIG_DIR=str(tmp / ".mswea"),
               MSWEA_COST_TRACKING="ignore_errors", LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"mini-swe-agent replay failed ({proc.returncode}): " + proc.stderr.strip()[-2000:])
    requests = [Request(r["step"], r["messages"], r["tools"])
                for r in map(json.loads, (tmp / "requests.jsonl").read_text(encoding="utf-8").splitlines())]
    return requests, tmp / "mini.traj.json"


def check_scaffold(path: Path, profile: AgentProfile, tokenizer, repo: Path | None = None,
                   tokenize=None, agent_traj_path: Path | None = None, live: bool = False,
                   agent_python: Path | None = None) -> ScaffoldCheck:
    """Replay `path` through the agent of `profile` and compare every request with the training render.

    `live`: observations from the live tool outputs instead of the recorded ones (see
    `ProfileAgent`); then an environment that answers differently (timings) is a mismatch too.
    `agent_python`: drive mini-swe-agent (that venv's python) instead of `replay.ProfileAgent`."""
    traj, data = read_recorded(path)
    statement = problem_statement(data, path)
    repo = repo or find_repo(path, traj.instance_id)
    tokenize = tokenize or LocalTokenize(tokenizer)
    rendered = StepRenderer(tokenizer, profile.render, tools=profile.tool_schemas()).render(traj)
    outputs = None if live else recorded_outputs(data, traj.num_steps)
    result = ScaffoldCheck(str(path), profile.name, recorded_steps=traj.num_steps,
                           observations="recorded" if outputs is not None else "live")
    with tempfile.TemporaryDirectory(prefix="srft-check-scaffold-") as tmp:
        checkout = init_repo(Path(repo), Path(tmp))
        if agent_python is not None:
            requests, written = run_mini_swe_agent(path, profile, checkout, statement, outputs, Path(tmp), agent_python)
            result.driver = "mini-swe-agent"
            if agent_traj_path is not None:
                with atomic_open(agent_traj_path, "w", encoding="utf-8") as handle:
                    handle.write(written.read_text(encoding="utf-8"))
        else:
            model = ReplayModel.from_trajectory(traj, profile.render)
            agent = ProfileAgent(profile, LocalEnvironment(checkout, profile.working_dir), statement, traj.id, outputs)
            agent.run(model)
            requests, result.env_differences = model.requests, agent.env_differences
            if agent_traj_path is not None:
                write_json(agent_traj_path, agent.to_traj(traj.instance_id or traj.id, statement))
    if agent_traj_path is not None:
        result.agent_trajectory = str(agent_traj_path)
    for request, span in zip(requests, rendered.steps):
        expected = [int(t) for t in rendered.input_ids[:span.start]]
        got = [int(t) for t in tokenize(request, profile.render)]
        check = StepCheck(request.step, len(expected), len(got), first_difference(expected, got))
        if check.first_diff is not None:
            i = check.first_diff
            check.expected = tokenizer.decode(expected[i:i + 1]) if i < len(expected) else None
            check.got = tokenizer.decode(got[i:i + 1]) if i < len(got) else None
        result.steps.append(check)
    return result


def table(result: ScaffoldCheck) -> str:
    """The per-step table `srft check-scaffold` prints."""
    lines = [f"{'step':>4}  {'training':>9}  {'agent':>9}  result"]
    for s in result.steps:
        verdict = "same" if s.first_diff is None else \
            f"DIFFERS at token {s.first_diff}: expected {s.expected!r}, got {s.got!r}"
        lines.append(f"{s.step:>4}  {s.expected_tokens:>9}  {s.got_tokens:>9}  {verdict}")
    return "\n".join(lines)
