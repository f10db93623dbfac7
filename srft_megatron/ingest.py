"""Readers that turn agent logs into normalised trajectories (DESIGN §1).

Sources:
- SWE-agent `.traj` files, both the function-calling format (assistant `tool_calls`, `tool`
  observations with `tool_call_ids`) and the old text format (actions inside the assistant
  text, observations as `user` turns). The message list is the file's `history`, or else the
  last `trajectory[-1].messages` (the full context of the last query).
- Rows of the SWE-smith trajectories dataset (JSONL or Parquet): `messages` is a JSON string;
  `traj_id`, `instance_id`, `model`, `resolved` columns.
- Already-normalised JSONL (`id` + a `messages` list), passed through validation.

Every message comes out as OpenAI chat format with string content: list-of-parts content is
flattened (text parts joined by newlines; a non-text part is an error rather than a silent
drop); tool-call arguments are JSON strings; a tool message carries `tool_call_id`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from srft_megatron.errors import InputError
from srft_megatron.io import iter_jsonl_tolerant
from srft_megatron.trajectory import ROLES, Trajectory, validate_messages


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


def normalise_messages(raw_messages: Any, traj_id: str) -> list[dict]:
    """OpenAI-format messages with string content; raises `InputError` naming the step."""
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InputError("empty trajectory (no messages)", traj_id=traj_id)
    messages, step = [], 0
    for index, raw in enumerate(raw_messages):
        if not isinstance(raw, dict):
            raise InputError(f"message {index} is not an object", traj_id=traj_id)
        role = raw.get("role")
        if role == "assistant":
            step += 1
        where = {"traj_id": traj_id, "step": step if role == "assistant" else None}
        if role not in ROLES:
            raise InputError(f"unknown role {role!r} in message {index}", **where)
        msg: dict[str, Any] = {"role": role, "content": _flatten_content(raw.get("content"), where)}
        if role == "assistant" and raw.get("tool_calls"):
            msg["tool_calls"] = _normalise_tool_calls(raw["tool_calls"], where)
        if role == "tool":
            ids = raw.get("tool_call_ids") or ([raw["tool_call_id"]] if raw.get("tool_call_id") else [])
            if ids:
                msg["tool_call_id"] = ids[0]
        if raw.get("is_demo"):
            msg["is_demo"] = True  # part of the context the agent saw; kept, flagged for viewers
        messages.append(msg)
    validate_messages(messages, traj_id)
    return messages


def _traj_instance_id(data: dict, stem: str) -> str:
    replay = data.get("replay_config")
    if isinstance(replay, str):
        try:
            replay = json.loads(replay)
        except json.JSONDecodeError:
            replay = None
    if isinstance(replay, dict):
        ps_id = (replay.get("problem_statement") or {}).get("id")
        if isinstance(ps_id, str) and ps_id:
            return ps_id
    return stem


def read_swe_agent_traj(path: Path) -> Iterator[IngestItem]:
    """One `.traj` file → one trajectory (id = file stem)."""
    traj_id = path.stem
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        yield IngestItem(str(path), None, InputError(f"malformed JSON: {exc.msg} at line {exc.lineno}",
                                                     file=str(path), traj_id=traj_id))
        return
    try:
        if not isinstance(data, dict):
            raise InputError("a .traj file must hold a JSON object")
        raw = data.get("history")
        if not raw and data.get("trajectory"):
            last = data["trajectory"][-1]
            raw = last.get("messages") or last.get("query")
        messages = normalise_messages(raw, traj_id)
        info = data.get("info") or {}
        traj = Trajectory(id=traj_id, messages=messages, instance_id=_traj_instance_id(data, traj_id),
                          resolved=None, source=f"swe-agent-traj:{path.name}",
                          extra={k: info[k] for k in ("exit_status",) if k in info})
        yield IngestItem(str(path), None, traj)
    except InputError as err:
        yield IngestItem(str(path), None, err.located(file=str(path), traj_id=traj_id))


def _row_to_trajectory(row: dict, file: str) -> Trajectory:
    if not isinstance(row, dict):
        raise InputError("record is not a JSON object")
    if isinstance(row.get("messages"), str):  # SWE-smith dataset row
        traj_id = row.get("traj_id") or row.get("id") or row.get("instance_id")
        if not isinstance(traj_id, str) or not traj_id:
            raise InputError("SWE-smith row without traj_id/instance_id")
        try:
            raw = json.loads(row["messages"])
        except json.JSONDecodeError as exc:
            raise InputError(f"'messages' is not valid JSON ({exc.msg})", traj_id=traj_id) from None
        resolved = row.get("resolved")
        if resolved is not None and not isinstance(resolved, bool):
            raise InputError(f"'resolved' must be a boolean, got {resolved!r}", traj_id=traj_id)
        extra = {"model": row["model"]} if row.get("model") else {}
        return Trajectory(id=traj_id, messages=normalise_messages(raw, traj_id),
                          instance_id=row.get("instance_id"), resolved=resolved,
                          source=f"swe-smith-row:{Path(file).name}", extra=extra)
    # normalised form: flatten/normalise the messages (idempotent), then validate the record
    traj_id = row.get("id")
    if not isinstance(traj_id, str) or not traj_id:
        raise InputError("record without a string 'id' (and not a SWE-smith row)")
    return Trajectory.from_json({**row, "messages": normalise_messages(row.get("messages"), traj_id)})


def read_rows(path: Path) -> Iterator[IngestItem]:
    """JSONL of SWE-smith rows or normalised trajectories; Parquet of SWE-smith rows."""
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


def _row_item(row: Any, file: str, line: int) -> IngestItem:
    tid = None
    if isinstance(row, dict):
        tid = row.get("traj_id") or row.get("id")
    try:
        return IngestItem(file, line, _row_to_trajectory(row, file), raw=row)
    except InputError as err:
        return IngestItem(file, line, err.located(file=file, line=line, traj_id=tid if isinstance(tid, str) else None),
                          raw=row)


def read_any(path: str | Path) -> Iterator[IngestItem]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path}")
    if path.suffix == ".traj":
        yield from read_swe_agent_traj(path)
    elif path.suffix in (".jsonl", ".json", ".parquet"):
        yield from read_rows(path)
    else:
        raise InputError(f"unknown input type {path.suffix!r} (expected .traj, .jsonl or .parquet)", file=str(path))


def read_resolved(path: str | Path) -> dict[str, bool]:
    """Resolved status by id: a swebench harness report (`resolved_ids`/`unresolved_ids`, or the
    per-instance `{id: {"resolved": bool}}` form), JSONL or CSV of id → resolved."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    out: dict[str, bool] = {}
    if path.suffix == ".csv":
        for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            key = row.get("id") or row.get("instance_id") or row.get("traj_id")
            val = (row.get("resolved") or "").strip().lower()
            if not key or val not in ("true", "false", "1", "0", "yes", "no"):
                raise InputError(f"CSV row needs id and resolved (true/false), got {row}", file=str(path), line=line)
            out[key] = val in ("true", "1", "yes")
        return out
    if path.suffix == ".jsonl":
        for line, obj in iter_jsonl_tolerant(path):
            if isinstance(obj, InputError):
                raise obj
            key = obj.get("id") or obj.get("instance_id") or obj.get("traj_id")
            if not isinstance(key, str) or not isinstance(obj.get("resolved"), bool):
                raise InputError("JSONL row needs an id and a boolean 'resolved'", file=str(path), line=line)
            out[key] = obj["resolved"]
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    if isinstance(data, dict) and ("resolved_ids" in data or "unresolved_ids" in data):
        for key in data.get("resolved_ids", []):
            out[key] = True
        for field in ("unresolved_ids", "error_ids", "empty_patch_ids", "incomplete_ids"):
            for key in data.get(field, []):
                out.setdefault(key, False)
        return out
    if isinstance(data, dict) and all(isinstance(v, dict) and "resolved" in v for v in data.values()):
        return {k: bool(v["resolved"]) for k, v in data.items()}
    raise InputError("not a swebench report, JSONL or CSV of id -> resolved", file=str(path))
