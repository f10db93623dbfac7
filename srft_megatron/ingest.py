"""Readers that turn agent logs into normalised trajectories (DESIGN §1).

Sources:
- SWE-agent `.traj` files, both the function-calling format (assistant `tool_calls`, `tool`
  observations with `tool_call_ids`) and the old text format (actions inside the assistant
  text, observations as `user` turns). The message list is the file's `history`, or else the
  last `trajectory[-1].messages` (the full context of the last query).
- mini-swe-agent `INSTANCE.traj.json` files (what `srft evaluate` runs): `messages`, `info`.
- Rows (JSONL, a JSON list, or Parquet), dispatched on their shape: the SWE-smith trajectories
  dataset (`traj_id`; `messages` a JSON string or a list; `instance_id`, `model`, `resolved`);
  SWE-Gym / OpenHands (`instance_id`, OpenAI `messages`, the agent's `tools`, `resolved`, no
  id); nebius SWE-agent-trajectories (`instance_id`, `trajectory` of `{role: system|user|ai,
  text}`, `target`); already-normalised trajectories (`id` + a `messages` list). Anything else
  is "unsupported format" naming its keys.

Every rollout gets a distinct, stable id (`rollout_id` from the run directory, `content_id` for
rows without one); `instance_id` keeps the task. SWE-agent demonstration turns keep `is_demo`:
context the agent saw, never steps. Bad bytes and odd shapes are `InputError`s naming file, line
and id, never tracebacks.

Every message comes out as OpenAI chat format with string content: list-of-parts content is
flattened (text parts joined by newlines; a non-text part is an error rather than a silent
drop); tool-call arguments are JSON strings; a tool message carries `tool_call_id`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from srft_megatron.errors import InputError
from srft_megatron.io import iter_jsonl_tolerant, iter_lines, read_text
from srft_megatron.swebench_report import resolved_by_id
from srft_megatron.trajectory import Trajectory, message_steps, validate_messages, validate_tools


@dataclass
class IngestItem:
    """One record read from a source: a trajectory, or the error that stopped it."""

    file: str
    line: int | None
    result: Trajectory | InputError
    raw: Any = None


def _flatten_content(content: Any, where: dict) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InputError(f"content part of type {kind!r} cannot be flattened to text", **where)
        return "\n".join(texts)
    raise InputError(f"content of type {type(content).__name__} is neither a string nor a list of parts", **where)


def _normalise_tool_calls(calls: Any, where: dict) -> list[dict]:
    out = []
    for call in calls or []:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InputError("tool call without a function name", **where)
        args = fn.get("arguments", "{}")
        if isinstance(args, (dict, list)):
            args = json.dumps(args, ensure_ascii=False)
        elif not isinstance(args, str):
            raise InputError(f"tool call arguments of type {type(args).__name__}", **where)
        try:
            json.loads(args)
        except json.JSONDecodeError as exc:
            raise InputError(f"tool call arguments are not valid JSON ({exc.msg})", **where) from None
        out.append({"id": call.get("id"), "type": "function", "function": {"name": fn["name"], "arguments": args}})
    return out


def normalise_messages(raw_messages: Any, traj_id: str, roles: dict[str, str] | None = None,
                       text_key: str = "content") -> list[dict]:
    """OpenAI-format messages with string content; raises `InputError` naming the step.

    `roles` renames source roles (nebius rows say `ai`); `text_key` is where a source keeps the
    text (`text` in nebius rows). A demonstration turn keeps `"is_demo": true`: it is context the
    agent saw, not one of its steps (`trajectory.message_steps` numbers them)."""
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InputError("empty trajectory (no messages)", traj_id=traj_id)
    if roles:  # a shallow copy under our role name, so that steps are numbered as in the output
        raw_messages = [dict(raw, role=roles.get(raw["role"], raw["role"]))
                        if isinstance(raw, dict) and isinstance(raw.get("role"), str) else raw for raw in raw_messages]
    messages = []
    for _, raw, step in message_steps(raw_messages, traj_id):  # refuses non-objects and unknown roles
        role, demo = raw["role"], bool(raw.get("is_demo"))
        where = {"traj_id": traj_id, "step": step}
        msg: dict[str, Any] = {"role": role, "content": _flatten_content(raw.get(text_key), where)}
        if role == "assistant" and raw.get("tool_calls"):
            msg["tool_calls"] = _normalise_tool_calls(raw["tool_calls"], where)
        if role == "tool":
            ids = raw.get("tool_call_ids") or ([raw["tool_call_id"]] if raw.get("tool_call_id") else [])
            if ids:
                msg["tool_call_id"] = ids[0]
        if demo:
            msg["is_demo"] = True  # context the agent saw (SWE-agent put_demos_in_history), never a step
        messages.append(msg)
    validate_messages(messages, traj_id)
    return messages


def rollout_id(path: Path, instance: str) -> str:
    """A distinct, stable id for the rollout stored at `path`.

    Agents write one directory per instance inside one directory per run: SWE-agent
    `RUN/INSTANCE/INSTANCE.traj`, mini-swe-agent `OUT/INSTANCE/INSTANCE.traj.json` (and `srft
    evaluate` puts OUT at `RUN/rollout-NN/agent`). Several rollouts of one task differ only in
    the run directory, so the id is `RUN/INSTANCE` (`RUN/rollout-NN/INSTANCE` for srft evaluate);
    a file outside that layout keeps its file name (`instance`), as before."""
    parents = [p.name for p in Path(os.path.abspath(path)).parents]  # not resolve(): keep symlinked run dirs
    if not parents or parents[0] != instance or len(parents) < 2 or not parents[1]:
        return instance
    if parents[1] == "agent" and len(parents) >= 4 and parents[2].startswith("rollout-"):
        return f"{parents[3]}/{parents[2]}/{instance}"
    return f"{parents[1]}/{instance}"


def content_id(instance_id: str, messages: list[dict]) -> str:
    """Id for a row that has none (SWE-Gym / OpenHands, nebius): the instance plus a digest of
    the normalised messages. Stable across runs and input order, distinct for distinct rollouts
    of one instance; the same rollout given twice gets the same id (and is rejected as a duplicate)."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return f"{instance_id}#{digest[:12]}"


def _traj_instance_id(data: dict, stem: str) -> str:
    replay = data.get("replay_config")
    if isinstance(replay, str):
        try:
            replay = json.loads(replay)
        except json.JSONDecodeError:
            replay = None
    if isinstance(replay, dict):
        problem = replay.get("problem_statement")
        ps_id = problem.get("id") if isinstance(problem, dict) else None
        if isinstance(ps_id, str) and ps_id:
            return ps_id
    return stem


def _traj_messages(data: Any) -> Any:
    """The message list of a SWE-agent `.traj`: `history`, else the last `trajectory` entry's
    `messages` (or `query`). Odd shapes are `InputError`s, not tracebacks."""
    if not isinstance(data, dict):
        raise InputError(f"a .traj file must hold a JSON object, got {type(data).__name__}")
    raw = data.get("history")
    if raw:
        if not isinstance(raw, list):
            raise InputError(f"'history' must be a list of messages, got {type(raw).__name__}")
        return raw
    steps = data.get("trajectory")
    if not steps:
        keys = ", ".join(sorted(map(str, data))[:20]) or "none"
        raise InputError(f"unsupported format: a .traj with keys [{keys}] and no 'history' or 'trajectory' "
                         "(not a SWE-agent or mini-swe-agent trajectory)")
    if not isinstance(steps, list):
        raise InputError(f"'trajectory' must be a list of steps, got {type(steps).__name__}")
    last = steps[-1]
    if not isinstance(last, dict):
        raise InputError(f"the last 'trajectory' entry must be an object, got {type(last).__name__}")
    return last.get("messages") or last.get("query")


def _read_json_file(path: Path, traj_id: str) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg}", line=exc.lineno) from None
    except InputError as err:
        raise err.located(traj_id=traj_id) from None


def read_swe_agent_traj(path: Path) -> Iterator[IngestItem]:
    """One `.traj` file → one trajectory (id from the run directory, `rollout_id`)."""
    instance = path.stem
    traj_id = rollout_id(path, instance)
    try:
        data = _read_json_file(path, traj_id)
        if _is_mini_swe_agent(data):
            yield from read_mini_swe_agent(path, data)
            return
        messages = normalise_messages(_traj_messages(data), traj_id)
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        traj = Trajectory(id=traj_id, messages=messages, instance_id=_traj_instance_id(data, instance),
                          resolved=None, source=f"swe-agent-traj:{path.name}",
                          extra={k: info[k] for k in ("exit_status",) if k in info})
        yield IngestItem(str(path), None, traj)
    except InputError as err:
        yield IngestItem(str(path), None, err.located(file=str(path), traj_id=traj_id))


def _mini_messages(data: Any, traj_id: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise InputError("a mini-swe-agent trajectory must be an object with a 'messages' list")
    # mini-swe-agent 2 ends the list with {"role": "exit", "extra": {exit_status, submission}}:
    # a record of how the run ended, not a turn the model saw
    return normalise_messages([m for m in data["messages"] if not (isinstance(m, dict) and m.get("role") == "exit")],
                              traj_id)


def _mini_extra(data: dict) -> dict:
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    return {k: info[k] for k in ("exit_status",) if isinstance(info.get(k), str)}


def read_mini_swe_agent(path: Path, data: Any = None) -> Iterator[IngestItem]:
    """A mini-swe-agent trajectory (`INSTANCE/INSTANCE.traj.json`, what `srft evaluate` runs):
    `{"info": {exit_status, submission, ...}, "messages": [...], "instance_id": ...,
    "trajectory_format": "mini-swe-agent-1.1"}` (version 2: tool calls, a final `exit` message;
    version 1: `mini-swe-agent-1`, no `instance_id`, which the file name then gives)."""
    stem = path.name[: -len(".traj.json")] if path.name.endswith(".traj.json") else path.stem
    traj_id = rollout_id(path, stem)
    try:
        if data is None:
            data = _read_json_file(path, traj_id)
        messages = _mini_messages(data, traj_id)
        instance = data.get("instance_id") if isinstance(data.get("instance_id"), str) else stem
        traj = Trajectory(id=traj_id, messages=messages, instance_id=instance, resolved=None,
                          source=f"mini-swe-agent:{path.name}", extra=_mini_extra(data))
        yield IngestItem(str(path), None, traj)
    except InputError as err:
        yield IngestItem(str(path), None, err.located(file=str(path), traj_id=traj_id))


def _mini_row(row: dict, file: str) -> Trajectory:
    """A mini-swe-agent trajectory as one row of a JSONL file (no run directory): the id is the
    instance plus a digest of the messages (`content_id`)."""
    instance = row.get("instance_id")
    if not isinstance(instance, str) or not instance:
        raise InputError("a mini-swe-agent trajectory in a rows file needs its 'instance_id' "
                         "(or give its INSTANCE.traj.json file)")
    messages = _mini_messages(row, instance)
    return Trajectory(id=content_id(instance, messages), messages=messages, instance_id=instance, resolved=None,
                      source=f"mini-swe-agent-row:{Path(file).name}", extra=_mini_extra(row))


def _parse_json_column(value: Any, name: str, traj_id: str | None) -> Any:
    """Dataset columns holding JSON are strings in some exports and nested values in others."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(f"'{name}' is not valid JSON ({exc.msg})", traj_id=traj_id) from None


def _resolved_field(row: dict, key: str, traj_id: str) -> bool | None:
    value = row.get(key)
    if value is not None and not isinstance(value, bool):
        raise InputError(f"'{key}' must be a boolean, got {value!r}", traj_id=traj_id)
    return value


def _swe_smith_row(row: dict, file: str) -> Trajectory:
    """SWE-smith trajectories dataset: `messages` a JSON string (or already a list), `traj_id`."""
    traj_id = row.get("traj_id")
    if not isinstance(traj_id, str) or not traj_id:
        raise InputError("SWE-smith row with an empty or non-string 'traj_id'")
    raw = _parse_json_column(row.get("messages"), "messages", traj_id)
    extra = {"model": row["model"]} if row.get("model") else {}
    return Trajectory(id=traj_id, messages=normalise_messages(raw, traj_id),
                      instance_id=row.get("instance_id"), resolved=_resolved_field(row, "resolved", traj_id),
                      source=f"swe-smith-row:{Path(file).name}", extra=extra)


def _openhands_row(row: dict, file: str) -> Trajectory:
    """SWE-Gym / OpenHands rows: OpenAI `messages` (several tool calls per turn), the agent's
    `tools`, `instance_id`, `resolved`, and no id (`content_id` gives one)."""
    instance = row.get("instance_id")
    if not isinstance(instance, str) or not instance:
        raise InputError("row without an id needs a string 'instance_id'")
    messages = normalise_messages(_parse_json_column(row.get("messages"), "messages", instance), instance)
    traj_id = content_id(instance, messages)
    tools = _parse_json_column(row.get("tools"), "tools", traj_id)
    if tools is not None:
        validate_tools(tools, traj_id)
    return Trajectory(id=traj_id, messages=messages, instance_id=instance,
                      resolved=_resolved_field(row, "resolved", traj_id),
                      source=f"openhands-row:{Path(file).name}", tools=tools or None)


NEBIUS_ROLES = {"ai": "assistant"}


def _nebius_row(row: dict, file: str) -> Trajectory:
    """nebius/SWE-agent-trajectories rows: `trajectory` of `{role: system|user|ai, text}`,
    `instance_id`, `model_name`, `target` (resolved), no id (`content_id` gives one)."""
    instance = row.get("instance_id")
    if not isinstance(instance, str) or not instance:
        raise InputError("nebius row without a string 'instance_id'")
    raw = _parse_json_column(row.get("trajectory"), "trajectory", instance)
    messages = normalise_messages(raw, instance, roles=NEBIUS_ROLES, text_key="text")
    traj_id = content_id(instance, messages)
    extra = {k: row[k] for k in ("model_name", "exit_status") if isinstance(row.get(k), str)}
    return Trajectory(id=traj_id, messages=messages, instance_id=instance,
                      resolved=_resolved_field(row, "target", traj_id),
                      source=f"nebius-row:{Path(file).name}", extra=extra)


def _is_nebius(row: dict) -> bool:
    steps = row.get("trajectory")
    if isinstance(steps, str):
        return steps.lstrip().startswith("[") and '"text"' in steps[:2000]
    return isinstance(steps, list) and bool(steps) and isinstance(steps[0], dict) and "text" in steps[0]


def _is_mini_swe_agent(obj: Any) -> bool:
    fmt = obj.get("trajectory_format") if isinstance(obj, dict) else None
    return isinstance(fmt, str) and fmt.startswith("mini-swe-agent")


def _row_to_trajectory(row: Any, file: str) -> Trajectory:
    """Dispatch one record on its shape; an unknown shape is 'unsupported format' with its keys."""
    if not isinstance(row, dict):
        raise InputError(f"record is not a JSON object (got {type(row).__name__})")
    if _is_mini_swe_agent(row):
        return _mini_row(row, file)
    if "traj_id" in row and "messages" in row:
        return _swe_smith_row(row, file)
    if "id" in row and isinstance(row.get("messages"), list):  # normalised form (idempotent)
        traj_id = row.get("id")
        if not isinstance(traj_id, str) or not traj_id:
            raise InputError("record with an empty or non-string 'id'")
        tools = _parse_json_column(row.get("tools"), "tools", traj_id)
        return Trajectory.from_json({**row, "tools": tools,
                                     "messages": normalise_messages(row.get("messages"), traj_id)})
    if "messages" in row and "instance_id" in row:
        return _openhands_row(row, file)
    if "trajectory" in row and "instance_id" in row and _is_nebius(row):
        return _nebius_row(row, file)
    keys = ", ".join(sorted(map(str, row))[:20]) or "none"
    raise InputError(f"unsupported format: a record with keys [{keys}] (expected a normalised trajectory "
                     "(id, messages), a SWE-smith row (traj_id, messages), a SWE-Gym/OpenHands row "
                     "(instance_id, messages, tools) or a nebius row (instance_id, trajectory))")


def _row_id(row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    for key in ("traj_id", "id", "instance_id"):
        if isinstance(row.get(key), str) and row[key]:
            return row[key]
    return None


def read_rows(path: Path) -> Iterator[IngestItem]:
    """JSONL of rows (any supported shape); Parquet of rows."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield _row_item(row, str(path), index)
        return
    for line, obj in iter_jsonl_tolerant(path):
        if isinstance(obj, InputError):
            yield IngestItem(str(path), line, obj)
        else:
            yield _row_item(obj, str(path), line)


def read_json(path: Path) -> Iterator[IngestItem]:
    """A `.json` file: a mini-swe-agent trajectory, a JSON list of rows, or one row; a file that
    holds one JSON value per line is read as JSONL."""
    try:
        data = json.loads(read_text(path))
    except InputError as err:
        yield IngestItem(str(path), err.line, err)
        return
    except json.JSONDecodeError:
        yield from read_rows(path)  # JSON Lines under a .json name
        return
    if _is_mini_swe_agent(data):
        yield from read_mini_swe_agent(path, data)
    elif isinstance(data, list):
        for index, row in enumerate(data, start=1):
            yield _row_item(row, str(path), index)  # "line" = position in the list
    else:
        yield _row_item(data, str(path), 1)


def _row_item(row: Any, file: str, line: int) -> IngestItem:
    try:
        return IngestItem(file, line, _row_to_trajectory(row, file), raw=row)
    except InputError as err:
        return IngestItem(file, line, err.located(file=file, line=line, traj_id=_row_id(row)), raw=row)


def read_any(path: str | Path) -> Iterator[IngestItem]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path}")
    if path.suffix == ".traj":
        yield from read_swe_agent_traj(path)
    elif path.suffix == ".json":
        yield from read_json(path)
    elif path.suffix in (".jsonl", ".parquet"):
        yield from read_rows(path)
    else:
        raise InputError(f"unknown input type {path.suffix!r} (expected .traj, .traj.json, .json, .jsonl "
                         "or .parquet)", file=str(path))


def read_resolved(path: str | Path, errors: list[InputError] | None = None) -> dict[str, bool]:
    """Resolved status by id: a swebench harness report (`resolved_ids`/`unresolved_ids`, or the
    per-instance `{id: {"resolved": bool}}` form), JSONL or CSV of id → resolved.

    A bad JSONL line or CSV row (not UTF-8, not JSON, not an object, no id, no boolean) is
    appended to `errors`, located by file and line, and the rest is read; without `errors` the
    first one is raised (`--strict`). A whole file that is no known form always raises."""
    path = Path(path)
    out: dict[str, bool] = {}

    def bad(err: InputError) -> None:
        if errors is None:
            raise err
        errors.append(err)

    if path.suffix == ".csv":
        lines = list(iter_lines(path))
        header = next((text for _, text in lines if not isinstance(text, InputError)), "")
        for err in (text for _, text in lines if isinstance(text, InputError)):
            bad(err)
        good = [(n, text) for n, text in lines if not isinstance(text, InputError)]
        for (line, _), row in zip(good[1:], csv.DictReader(text for _, text in good)):
            key = row.get("id") or row.get("instance_id") or row.get("traj_id")
            val = (row.get("resolved") or "").strip().lower()
            if not key or val not in ("true", "false", "1", "0", "yes", "no"):
                bad(InputError(f"CSV row needs id and resolved (true/false) under the header {header.strip()!r}, "
                               f"got {dict(row)}", file=str(path), line=line, traj_id=key or None))
                continue
            out[key] = val in ("true", "1", "yes")
        return out
    if path.suffix == ".jsonl":
        for line, obj in iter_jsonl_tolerant(path):
            if isinstance(obj, InputError):
                bad(obj)
                continue
            key = _row_id(obj)
            if not isinstance(obj, dict):
                bad(InputError(f"line is not a JSON object (got {type(obj).__name__})", file=str(path), line=line))
            elif key is None or not isinstance(obj.get("resolved"), bool):
                bad(InputError("JSONL row needs an id (id, instance_id or traj_id) and a boolean 'resolved', "
                               f"got {json.dumps(obj)[:120]}", file=str(path), line=line, traj_id=key))
            else:
                out[key] = obj["resolved"]
        return out
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    report = resolved_by_id(data, path)  # the harness's summary or per-instance report
    if report is not None:
        return report
    raise InputError("not a swebench report, JSONL or CSV of id -> resolved", file=str(path))
