"""What the viewer shows, computed with the same renderer and weight policy as preprocessing.

A page must not tell a different story from the dataset: the tokens marked "trained" are
exactly the step spans that `srft preprocess` gives a non-zero weight, because both come from
`StepRenderer` (chat-template render, per-segment tokenisation) and `WeightPolicy.step_weights`.
This module turns a trajectory + its labels into plain data (`TrajectoryView`); `html.py` only
formats it. The page shows the context the model saw, as the dataset renders it: the tools the
trajectory is rendered with (its own, or `--tools`) and demonstration turns, shown as context and
never numbered as steps (`Trajectory.steps()`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from srft_megatron.errors import InputError
from srft_megatron.policy import WeightPolicy
from srft_megatron.render import StepRenderer
from srft_megatron.trajectory import LabelRecord, Trajectory, check_label_count, message_steps


@dataclass
class Token:
    id: int
    text: str


@dataclass
class Observation:
    """A message that is not a step (tool result, user turn, demonstration turn): weight 0."""

    role: str
    text: str
    demo: bool = False                      # a demonstration turn (SWE-agent `is_demo`)


@dataclass
class StepView:
    step: int
    label: str | None
    confidence: float | None
    reason: str | None
    weight: float
    thought: str
    calls: list[tuple[str, str]]            # (tool name, arguments rendered for reading)
    tokens: list[Token]                     # the step's trained span as the model sees it
    context_tokens_after: int               # tokens between this step and the next (weight 0)
    observations: list[Observation] = field(default_factory=list)

    @property
    def kept(self) -> bool:
        return self.weight > 0


@dataclass
class TrajectoryView:
    id: str
    instance_id: str | None
    resolved: bool | None
    source: str | None
    policy: str
    critic: dict[str, Any]
    prompt: list[Observation]               # system + user messages before step 1
    prompt_tokens: int
    steps: list[StepView]
    total_tokens: int
    tools: list[dict[str, Any]] | None = None  # the tools in the rendered context

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools or []]

    @property
    def trained_tokens(self) -> float:
        return sum(s.weight * len(s.tokens) for s in self.steps)

    def counts(self) -> dict[str, int]:
        kept = sum(s.kept for s in self.steps)
        return {"steps": len(self.steps), "kept": kept, "rejected": len(self.steps) - kept}


def _readable_arguments(raw: str) -> str:
    """Tool-call arguments for a human: `command` strings shown as-is, the rest as JSON."""
    try:
        args = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return str(raw)
    if isinstance(args, dict) and set(args) == {"command"} and isinstance(args["command"], str):
        return args["command"]
    return json.dumps(args, indent=2, ensure_ascii=False)


def _tokens(renderer: StepRenderer, text: str, ids: list[int], traj_id: str, step: int) -> list[Token]:
    """Split the step's text into its tokens. The span was tokenised on its own (a segment
    boundary), so tokenising its text again must give the same ids; the offsets then say
    which characters each token covers."""
    enc = renderer.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(ids):
        raise InputError("re-tokenising the step does not reproduce its token ids", traj_id=traj_id, step=step)
    return [Token(int(i), text[a:b]) for i, (a, b) in zip(ids, enc["offset_mapping"])]


def build_view(traj: Trajectory, labels: LabelRecord | None, renderer: StepRenderer,
               policy: WeightPolicy) -> TrajectoryView:
    if labels is not None:
        check_label_count(len(labels.steps), traj.num_steps, traj.id)
    weights = policy.step_weights(traj, labels)
    rendered = renderer.render(traj)
    ids = rendered.input_ids.tolist()
    spans = rendered.steps

    prompt: list[Observation] = []
    steps: list[StepView] = []
    for _, msg, k in message_steps(traj.messages, traj.id):
        if k is not None:
            span = spans[k - 1]
            nxt = spans[k].start if k < len(spans) else len(ids)
            lab = labels.steps[k - 1] if labels is not None else None
            steps.append(StepView(
                step=k, label=lab.label if lab else None, confidence=lab.confidence if lab else None,
                reason=lab.reason if lab else None, weight=float(weights[k - 1]), thought=msg.get("content") or "",
                calls=[(c["function"]["name"], _readable_arguments(c["function"]["arguments"]))
                       for c in msg.get("tool_calls") or []],
                tokens=_tokens(renderer, rendered.text[span.char_start:span.char_end],
                               ids[span.start:span.end], traj.id, k),
                context_tokens_after=nxt - span.end))
        else:
            text = msg.get("content") or ""
            calls = "\n".join(f"[tool call: {c['function']['name']}] {_readable_arguments(c['function']['arguments'])}"
                              for c in msg.get("tool_calls") or [])
            obs = Observation(msg["role"], "\n".join(t for t in (text, calls) if t), bool(msg.get("is_demo")))
            (steps[-1].observations if steps else prompt).append(obs)
    return TrajectoryView(
        id=traj.id, instance_id=traj.instance_id, resolved=traj.resolved, source=traj.source,
        policy=policy.name, critic=labels.critic if labels is not None else {}, prompt=prompt,
        prompt_tokens=spans[0].start if spans else len(ids), steps=steps, total_tokens=len(ids),
        tools=renderer.tools_for(traj))

