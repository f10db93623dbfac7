"""The rules trajectory.py owns, called by every other module: step numbering (`message_steps`),
the label count (`check_label_count`) and the fields a label file carries (`reason`, `line`)."""

from __future__ import annotations

import json

import pytest

from srft_megatron.critic.schema import InvalidAnswer
from srft_megatron.errors import InputError
from srft_megatron.trajectory import Trajectory, check_label_count, message_steps, read_labels

MESSAGES = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "task"},
    {"role": "assistant", "content": "demo", "is_demo": True},
    {"role": "assistant", "content": "one"},
    {"role": "tool", "content": "out"},
    {"role": "assistant", "content": "two"},
]


def test_steps_are_numbered_once_demonstrations_skipped():
    assert [step for _, _, step in message_steps(MESSAGES)] == [None, None, None, 1, None, 2]
    traj = Trajectory(id="t", messages=MESSAGES)
    assert [(s.number, s.index) for s in traj.steps()] == [(1, 3), (2, 5)]
    assert traj.num_steps == 2 and traj.step_message_indices == [3, 5]


def test_message_steps_refuses_what_every_walker_relies_on():
    with pytest.raises(InputError, match=r"message 1 is not an object \(got list\)"):
        list(message_steps([{"role": "user", "content": ""}, []], "t"))
    with pytest.raises(InputError, match="unknown role 'robot' in message 0") as err:
        list(message_steps([{"role": "robot"}], "t"))
    assert err.value.traj_id == "t"


def test_label_count_names_the_place_and_raises_the_callers_error():
    check_label_count(3, 3, "t")
    with pytest.raises(InputError, match="2 labels for 3 steps") as err:
        check_label_count(2, 3, "t", file="labels.jsonl", line=7)
    assert (err.value.traj_id, err.value.file, err.value.line) == ("t", "labels.jsonl", 7)
    with pytest.raises(InvalidAnswer, match="4 labels for 3 steps"):
        check_label_count(4, 3, error=InvalidAnswer)


def test_label_records_keep_their_line_and_reasons(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [{"id": "a", "steps": [{"step": 1, "label": "good"}]},
            {"id": "b", "steps": [{"step": 1, "label": "harmful", "reason": "deletes the tests"},
                                  {"step": 2, "label": "good", "reason": 3}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, errors = read_labels(str(path))
    assert not errors and records["a"].line == 1 and records["b"].line == 2
    assert [s.reason for s in records["b"].steps] == ["deletes the tests", None]  # a non-string reason is dropped
    assert records["b"].to_json()["steps"][0]["reason"] == "deletes the tests"
    assert "reason" not in records["a"].to_json()["steps"][0]


def test_viewer_shows_each_steps_reason_from_the_label_file():
    """The reasons of examples/labels.jsonl reach the viewer through `StepLabel.reason`."""
    from pathlib import Path

    from srft_megatron import load_tokenizer
    from srft_megatron.ingest import read_any
    from srft_megatron.policy import make_policy
    from srft_megatron.render import StepRenderer
    from srft_megatron.view.model import build_view

    examples = Path(__file__).resolve().parents[2] / "examples"
    traj = next(iter(read_any(examples / "trajectories" / "datekit-1__clean.traj"))).result
    assert traj.id == "datekit-1__clean"
    labels, errors = read_labels(str(examples / "labels.jsonl"))
    assert not errors
    view = build_view(traj, labels[traj.id], StepRenderer(load_tokenizer("qwen2.5")), make_policy("srft"))
    raw = next(json.loads(line) for line in (examples / "labels.jsonl").read_text().splitlines()
               if json.loads(line)["id"] == traj.id)
    assert [s.reason for s in view.steps] == [s["reason"] for s in raw["steps"]] and view.steps[0].reason
