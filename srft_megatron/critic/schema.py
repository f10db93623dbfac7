"""The critic's answer: a JSON schema bounded by the trajectory, and the validator of answers.

Why bounded: vLLM decodes under the schema (`response_format` json_schema, xgrammar), so every
bound we state is one the model cannot break: exactly K entries, entry k has step number k,
labels from the enum, an optional confidence in [0, 1], an `ideal_path` string of bounded length. A bound
we leave out is room for a weak (or random) model to ramble until `max_tokens` and return a
truncated, invalid answer. The same schema validates the answer again on our side (jsonschema),
because a server may ignore it (vLLM silently ignores the old `guided_json` field) and because
`--prompt` users may point the labeller at servers we have not tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from srft_megatron.trajectory import LABELS, StepLabel, check_label_count

SCHEMA_NAME = "step_labels"


class InvalidAnswer(ValueError):
    """The critic's text is not a valid answer for this trajectory (the reason says why)."""


def label_schema(num_steps: int, ideal_path_chars: int = 1200, confidence: bool = True) -> dict[str, Any]:
    """JSON schema of an answer for a trajectory of `num_steps` steps.

    `{"ideal_path": str (<= ideal_path_chars; omitted when 0), "steps": [{"step": k, "label": L,
    "confidence": c}, ...]}` with exactly one entry per step, numbered 1..K in order. The ideal
    path comes first so that the model writes its plan before judging the steps against it."""
    if num_steps < 1:
        raise ValueError("a trajectory has at least one step")
    entries = []
    for k in range(1, num_steps + 1):
        props: dict[str, Any] = {"step": {"type": "integer", "enum": [k]},
                                 "label": {"type": "string", "enum": list(LABELS)}}
        if confidence:
            props["confidence"] = {"type": "number", "minimum": 0, "maximum": 1}
        entries.append({"type": "object", "properties": props, "required": ["step", "label"],
                        "additionalProperties": False})
    steps = {"type": "array", "minItems": num_steps, "maxItems": num_steps,
             "prefixItems": entries, "items": False}
    properties: dict[str, Any] = {}
    if ideal_path_chars > 0:
        properties["ideal_path"] = {"type": "string", "maxLength": ideal_path_chars}
    properties["steps"] = steps
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI `response_format` that vLLM enforces (never the ignored `guided_json`)."""
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": True}}


@dataclass
class Answer:
    steps: list[StepLabel]
    ideal_path: str | None


def parse_answer(text: str | None, num_steps: int, schema: dict[str, Any]) -> Answer:
    """Parse and validate the critic's text; raise `InvalidAnswer` with a one-line reason."""
    if text is None or not text.strip():
        raise InvalidAnswer("empty answer")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise InvalidAnswer(f"does not match the schema at {where}: {first.message[:200]}")
    raw_steps = obj["steps"]
    # also enforced by the schema; kept for servers given other schemas
    check_label_count(len(raw_steps), num_steps, error=InvalidAnswer)
    steps = []
    for k, raw in enumerate(raw_steps, start=1):
        if raw.get("step") != k:
            raise InvalidAnswer(f"entry {k} has step number {raw.get('step')!r}")
        conf = raw.get("confidence")
        steps.append(StepLabel(step=k, label=raw["label"], confidence=None if conf is None else float(conf)))
    return Answer(steps=steps, ideal_path=obj.get("ideal_path"))
