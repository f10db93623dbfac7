"""The normalised trajectory (DESIGN §1) and the step labels (DESIGN §2).

A trajectory is an OpenAI-format chat: roles `system`, `user`, `assistant`, `tool`.
A **step** is one assistant message (with its tool calls) that the agent itself produced;
steps are numbered 1..K in message order. Demonstration turns (SWE-agent's `is_demo`, marked
`"is_demo": true` on the message) are context the agent saw, never steps: not numbered, not
labelled, never trained. Everything downstream (critic prompts, loss weights, viewer) indexes
steps through `Trajectory.steps()` / `is_step`, so the numbering lives here and nowhere else.

`tools` is the list of OpenAI tool schemas the agent was given (DESIGN §1): rendered into the
context exactly as vLLM renders them when the agent sends them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

from srft_megatron.errors import InputError
from srft_megatron.io import iter_jsonl_tolerant

ROLES = ("system", "user", "assistant", "tool")
LABELS = ("good", "unnecessary", "harmful", "recover")
FORMAT_VERSION = 1
R = TypeVar("R")


def is_step(msg: dict[str, Any]) -> bool:
    """An assistant message the agent produced (a demonstration turn is context, not a step)."""
    return msg.get("role") == "assistant" and not msg.get("is_demo")


@dataclass(frozen=True)
class Step:
    number: int                 # 1..K, as labels index steps
    index: int                  # position in `Trajectory.messages`
    message: dict[str, Any]


@dataclass
class Trajectory:
    id: str
    messages: list[dict[str, Any]]
    instance_id: str | None = None
    resolved: bool | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None

    def steps(self) -> Iterator[Step]:
        """The agent's steps in order, numbered 1..K (demonstration turns skipped)."""
        for index, msg, step in message_steps(self.messages, self.id):
            if step is not None:
                yield Step(step, index, msg)

    @property
    def step_message_indices(self) -> list[int]:
        """Message index of step k+1 at position k."""
        return [s.index for s in self.steps()]

    @property
    def num_steps(self) -> int:
        return len(self.step_message_indices)

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "instance_id": self.instance_id, "resolved": self.resolved,
               "source": self.source, "messages": self.messages}
        if self.tools is not None:
            out["tools"] = self.tools
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "Trajectory":
        """Validate a normalised record; raises `InputError` naming the trajectory and step."""
        if not isinstance(obj, dict):
            raise InputError("record is not a JSON object")
        traj_id = obj.get("id")
        if not isinstance(traj_id, str) or not traj_id:
            raise InputError("missing or empty 'id'")
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InputError("empty trajectory (no messages)", traj_id=traj_id)
        validate_messages(messages, traj_id)
        resolved = obj.get("resolved")
        if resolved is not None and not isinstance(resolved, bool):
            raise InputError(f"'resolved' must be true, false or null, got {resolved!r}", traj_id=traj_id)
        tools = obj.get("tools")
        if tools is not None:
            validate_tools(tools, traj_id)
        return cls(id=traj_id, messages=messages, instance_id=obj.get("instance_id"),
                   resolved=resolved, source=obj.get("source"), extra=obj.get("extra") or {}, tools=tools)


def validate_tools(tools: Any, traj_id: str | None = None) -> None:
    """A list of OpenAI tool objects: `{"type": "function", "function": {"name": str, ...}}`."""
    if not isinstance(tools, list):
        raise InputError(f"'tools' must be a list of OpenAI tool objects, got {type(tools).__name__}",
                         traj_id=traj_id)
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or tool.get("type") != "function" \
                or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InputError(f"tool {i} is not an OpenAI function tool "
                             '({"type": "function", "function": {"name": ...}})', traj_id=traj_id)


def message_steps(messages: list[Any], traj_id: str | None = None) -> Iterator[tuple[int, dict[str, Any], int | None]]:
    """`(index, message, step)` for each message: `step` is its number 1..K if it is a step, else None.

    The one place steps are numbered (`Trajectory.steps()`, the validator, ingest, the renderer,
    the critic transcript and the viewer all walk messages through it). It also refuses what
    every walker relies on: a message that is not an object, or whose role is unknown."""
    number = 0
    for index, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise InputError(f"message {index} is not an object (got {type(msg).__name__})", traj_id=traj_id)
        step = None
        if is_step(msg):
            number += 1
            step = number
        if msg.get("role") not in ROLES:
            raise InputError(f"unknown role {msg.get('role')!r} in message {index}", traj_id=traj_id, step=step)
        yield index, msg, step


def validate_messages(messages: list[Any], traj_id: str) -> None:
    """Roles known, content a string, tool calls well formed, at least one step of the agent."""
    steps = 0
    for index, msg, step in message_steps(messages, traj_id):
        steps += step is not None
        where = {"traj_id": traj_id, "step": step}
        if not isinstance(msg.get("content", ""), str):
            raise InputError(f"content of message {index} is not a string (ingest flattens parts)", **where)
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InputError(f"malformed tool call in message {index}", **where)
    if steps == 0:
        raise InputError("trajectory has no assistant step (demonstration turns are not steps)",
                         traj_id=traj_id)


def read_trajectories(path: str) -> Iterator[tuple[int, Trajectory | InputError]]:
    """Yield `(line, Trajectory)` or `(line, InputError)` for each record of a JSONL file.

    Errors are yielded, not raised, so a stage can reject one record and go on (or stop under
    `--strict`); each error already names the file, line and trajectory id."""
    return _read_records(path, Trajectory.from_json)


def _read_records(path: str, parse: Callable[[Any], R]) -> Iterator[tuple[int, R | InputError]]:
    """`(line, parse(object))` for each JSONL record, or `(line, InputError)` located in the file."""
    for line, obj in iter_jsonl_tolerant(path):
        if isinstance(obj, InputError):
            yield line, obj
            continue
        try:
            yield line, parse(obj)
        except InputError as err:
            tid = obj.get("id") if isinstance(obj, dict) else None
            yield line, err.located(file=str(path), line=line, traj_id=tid if isinstance(tid, str) else None)


@dataclass
class StepLabel:
    step: int
    label: str
    confidence: float | None = None
    reason: str | None = None       # optional: expert labels and critics that explain themselves

    def to_json(self) -> dict[str, Any]:
        out = {"step": self.step, "label": self.label, "confidence": self.confidence}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def check_label_count(num_labels: int, num_steps: int, traj_id: str | None = None, *,
                      error: type[Exception] = InputError, **where: Any) -> None:
    """Exactly one label per step: the one check of the count, wherever labels meet a trajectory.

    `error`: the exception to raise (the critic client raises its own `InvalidAnswer` to retry);
    `where`: `file=`/`line=` for an `InputError` located in a labels file."""
    if num_labels == num_steps:
        return
    message = f"{num_labels} labels for {num_steps} steps"
    if error is InputError:
        raise InputError(message, traj_id=traj_id, **where)
    raise error(message)


@dataclass
class LabelRecord:
    id: str
    steps: list[StepLabel]
    critic: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    line: int | None = field(default=None, compare=False)  # line in its labels file (error messages)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "steps": [s.to_json() for s in self.steps], "critic": self.critic, "usage": self.usage}

    @classmethod
    def from_json(cls, obj: Any, num_steps: int | None = None) -> "LabelRecord":
        """Validate; with `num_steps`, also that there is exactly one label per step, in order."""
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise InputError("label record without a string 'id'")
        tid = obj["id"]
        raw_steps = obj.get("steps")
        if not isinstance(raw_steps, list):
            raise InputError("label record without a 'steps' list", traj_id=tid)
        steps = []
        for k, raw in enumerate(raw_steps, start=1):
            if not isinstance(raw, dict):
                raise InputError("step label is not an object", traj_id=tid, step=k)
            if raw.get("step") != k:
                raise InputError(f"step labels out of order: expected step {k}, got {raw.get('step')!r}",
                                 traj_id=tid, step=k)
            label = raw.get("label")
            if label not in LABELS:
                raise InputError(f"unknown label {label!r} (expected one of {', '.join(LABELS)})",
                                 traj_id=tid, step=k)
            conf = raw.get("confidence")
            if conf is not None and (not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0):
                raise InputError(f"confidence must be in [0, 1] or null, got {conf!r}", traj_id=tid, step=k)
            reason = raw.get("reason")
            steps.append(StepLabel(step=k, label=label, confidence=None if conf is None else float(conf),
                                   reason=reason if isinstance(reason, str) else None))
        if num_steps is not None:
            check_label_count(len(steps), num_steps, tid)
        return cls(id=tid, steps=steps, critic=obj.get("critic") or {}, usage=obj.get("usage") or {})


def read_labels(path: str) -> tuple[dict[str, LabelRecord], list[InputError]]:
    """Read a labels file into `{id: record}`; bad lines come back as errors (file + line named).

    Step counts are checked later, against the trajectory (`LabelRecord.from_json(num_steps=)`)."""
    records: dict[str, LabelRecord] = {}
    errors: list[InputError] = []
    for line, rec in _read_records(path, LabelRecord.from_json):
        if isinstance(rec, InputError):
            errors.append(rec)
            continue
        if rec.id in records:
            errors.append(InputError("duplicate label record", file=str(path), line=line, traj_id=rec.id))
            continue
        rec.line = line
        records[rec.id] = rec
    return records, errors


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)
