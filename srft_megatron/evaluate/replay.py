"""The evaluation agent's message building, driven by a deterministic replay model.

Why: to prove that what the agent sends at inference is what training rendered, the agent must
run as it would against vLLM, with the model's replies fixed. `ProfileAgent` keeps SWE-agent's
history (system prompt, instance prompt, one action and one observation per step, the
`message_type`s SWE-agent writes) built from an agent profile's templates, executes each tool
call (in an xml profile: the call written in the reply, `xml_actions`) in a `LocalEnvironment`,
and sends `profile.process_history(history)` (e.g. SWE-smith's `last_n_observations`) with the
profile's tools. `ReplayModel` answers each request with the
next recorded assistant message of a trajectory and keeps every request it was sent.

This is the profile's own message builder, not mini-swe-agent or SWE-agent: it reproduces
SWE-agent's history shape and template rules (agent_profile.py cites them) so `srft
check-scaffold` can compare token for token without an LLM or Docker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from srft_megatron.agent_profile import AgentProfile
from srft_megatron.errors import InputError
from srft_megatron.evaluate.local_env import LocalEnvironment, action_text
from srft_megatron.evaluate.xml_actions import XmlFormatError, parse_xml_action
from srft_megatron.ingest import normalise_messages
from srft_megatron.render import template_messages
from srft_megatron.trajectory import Trajectory


@dataclass
class Request:
    """One request the agent sent: the OpenAI messages and tools, before step `step`."""

    step: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None


@dataclass
class ReplayModel:
    """Answers the k-th request with the k-th recorded step (content and tool calls)."""

    steps: list[dict[str, Any]]
    requests: list[Request] = field(default_factory=list)

    @classmethod
    def from_trajectory(cls, traj: Trajectory, render: str = "tools") -> "ReplayModel":
        """The recorded steps as the model would reply in `render`: tool calls, or (xml) the
        calls written into the text exactly as the xml render trains them."""
        steps = [{"content": s.message.get("content") or "", "tool_calls": s.message.get("tool_calls") or []}
                 for s in traj.steps()]
        if render == "xml":
            steps = [{"content": xml_reply(s, traj.id), "tool_calls": []} if s["tool_calls"] else s for s in steps]
        return cls(steps)

    def done(self) -> bool:
        return len(self.requests) >= len(self.steps)

    def query(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        step = len(self.requests) + 1
        self.requests.append(Request(step, messages, tools))
        return self.steps[step - 1]


def xml_reply(step: dict[str, Any], traj_id: str) -> str:
    """A recorded tool-calling step as an xml model writes it: the xml render's text of the step
    (render.template_messages owns that format)."""
    message = {"role": "assistant", "content": step["content"], "tool_calls": step["tool_calls"]}
    return template_messages(Trajectory(traj_id, [message]), "xml")[0]["content"]


class ProfileAgent:
    """SWE-agent's loop with the templates and history processing of `profile`."""

    def __init__(self, profile: AgentProfile, env: LocalEnvironment, problem_statement: str, traj_id: str,
                 recorded_outputs: list[str] | None = None):
        """`recorded_outputs`: the raw tool outputs of the recorded run, one per step. When given,
        each call still runs (the repository evolves, `submit` diffs the real changes) but the
        observation is built from the recorded output, so a timing in a pytest summary cannot pass
        for a scaffold difference; steps whose live output differs are listed in `env_differences`."""
        self.profile, self.env, self.traj_id = profile, env, traj_id
        self.recorded_outputs = recorded_outputs
        self.env_differences: list[int] = []
        self.history: list[dict[str, Any]] = [
            {"role": "system", "content": profile.fill("system_template", problem_statement=problem_statement),
             "agent": "main", "message_type": "system_prompt"},
            {"role": "user", "content": profile.fill("instance_template", problem_statement=problem_statement),
             "agent": "main", "message_type": "observation"},
        ]
        self.trajectory: list[dict[str, Any]] = []
        self.exit_status: str | None = None

    def messages(self) -> list[dict[str, Any]]:
        """The OpenAI messages sent now: the processed history in the form litellm sends it
        (ingest's conversion of SWE-agent history, the one owner of that rule; it validates whole
        trajectories, which end in a step, so the request is closed by a placeholder step and
        that is taken off again)."""
        closing = {"role": "assistant", "content": ""}
        return normalise_messages(self.profile.process_history(self.history) + [closing], self.traj_id)[:-1]

    def _calls(self, reply: dict[str, Any], step: int) -> tuple[str, list[tuple[str, dict, str | None]]]:
        """The reply's thought and calls `(tool, arguments, tool_call_id)`: its tool calls, or in an
        xml profile the one call in its text (SWE-agent's `xml_function_calling`)."""
        if self.profile.render == "xml":
            try:
                action = parse_xml_action(reply["content"], self.profile.tool_schemas())
            except XmlFormatError as exc:
                raise InputError(f"the recorded step is not a valid xml action ({exc}); SWE-agent would "
                                 "send a format error", traj_id=self.traj_id, step=step) from None
            return action.thought, [(action.tool, action.arguments, None)]
        calls = reply["tool_calls"]
        if not calls:
            raise InputError("the recorded step has no tool call (SWE-agent would send a format error; "
                             "replay supports tool-calling steps only)", traj_id=self.traj_id, step=step)
        return reply["content"], [(c["function"]["name"], json.loads(c["function"]["arguments"] or "{}"), c.get("id"))
                                  for c in calls]

    def step(self, model: ReplayModel) -> None:
        reply = model.query(self.messages(), self.profile.request_tools())
        step = len(model.requests)
        thought, calls = self._calls(reply, step)
        actions = [action_text(name, args) for name, args, _ in calls]
        entry = {"role": "assistant", "content": reply["content"], "thought": thought,
                 "action": "\n".join(actions), "agent": "main", "message_type": "action"}
        if reply["tool_calls"]:
            entry["tool_calls"] = reply["tool_calls"]
        self.history.append(entry)
        for (name, args, call_id), action in zip(calls, actions):
            try:
                output = self.env.execute(name, args)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"tool call {name} cannot run: {exc}", traj_id=self.traj_id, step=step) from None
            if self.recorded_outputs is not None and len(calls) == 1:
                if output != self.recorded_outputs[step - 1]:
                    self.env_differences.append(step)
                output = self.recorded_outputs[step - 1]
            # SWE-agent: a tool-call observation is a `tool` turn, a text (xml) one a `user` turn
            observation = {"role": "user", "content": self.profile.observation(output), "agent": "main",
                           "message_type": "observation"}
            if call_id is not None or self.profile.render == "tools":
                observation.update(role="tool", tool_call_ids=[call_id])
            self.history.append(observation)
            self.trajectory.append({"action": action, "observation": output, "response": reply["content"],
                                    "thought": thought, "state": {"working_dir": self.env.workdir}})
            if name == "submit":
                self.exit_status = "submitted"

    def run(self, model: ReplayModel) -> None:
        limit = self.profile.limits.get("step_limit") or 0
        while not model.done() and self.exit_status is None:
            if limit and len(model.requests) >= limit:
                self.exit_status = "exit_cost"  # SWE-agent's per_instance_call_limit is a cost limit
                break
            self.step(model)
        if self.exit_status is None:
            self.exit_status = "exit_replay_exhausted"
        if self.env.submission is None:  # SWE-agent autosubmits the diff when a run stops early
            self.env.submission = self.env.diff()
            if self.exit_status == "exit_cost" and self.env.submission.strip():  # its handle_submission
                self.exit_status = "submitted (exit_cost)"

    def to_traj(self, instance_id: str, problem_statement: str) -> dict[str, Any]:
        """The run as a SWE-agent `.traj` (what `srft ingest` reads)."""
        replay = {"problem_statement": {"type": "text", "id": instance_id, "text": problem_statement},
                  "agent_profile": self.profile.name}
        return {"environment": instance_id, "history": self.history, "trajectory": self.trajectory,
                "replay_config": json.dumps(replay),
                "info": {"exit_status": self.exit_status, "submission": self.env.submission,
                         "model_stats": {"api_calls": len(self.trajectory), "instance_cost": 0.0},
                         "agent_profile": self.profile.name, "model": "replay"}}
