"""Weight policies (DESIGN §3): presets and strictness knobs, step by step."""

from __future__ import annotations

import pytest

from srft_megatron.errors import ConfigError, InputError
from srft_megatron.policy import PRESETS, make_policy
from srft_megatron.trajectory import LabelRecord, StepLabel, Trajectory


def _traj(resolved):
    msgs = [{"role": "user", "content": "task"}]
    for k in range(4):
        msgs += [{"role": "assistant", "content": f"step {k + 1}"}, {"role": "user", "content": "obs"}]
    return Trajectory.from_json({"id": "t", "resolved": resolved, "messages": msgs})


LABELS = LabelRecord("t", [StepLabel(1, "good", 0.9), StepLabel(2, "harmful", 0.4),
                           StepLabel(3, "unnecessary", None), StepLabel(4, "harmful", 0.95)])


@pytest.mark.parametrize("name,resolved,expected", [
    ("naive", True, [1, 1, 1, 1]), ("naive", False, [1, 1, 1, 1]),
    ("rft", True, [1, 1, 1, 1]), ("rft", False, [0, 0, 0, 0]),
    ("srft", True, [1, 1, 1, 1]), ("srft", False, [1, 0, 1, 0]),
    ("unresolved-only", True, [0, 0, 0, 0]), ("unresolved-only", False, [1, 1, 1, 1]),
    ("unresolved-masked", True, [0, 0, 0, 0]), ("unresolved-masked", False, [1, 0, 1, 0]),
    ("all-masked", True, [1, 0, 1, 0]), ("all-masked", False, [1, 0, 1, 0]),
])
def test_presets(name, resolved, expected):
    assert PRESETS[name].step_weights(_traj(resolved), LABELS) == expected


def test_strictness_knobs():
    unresolved = _traj(False)
    strict = make_policy("srft", reject_labels="harmful,unnecessary")
    assert strict.step_weights(unresolved, LABELS) == [1, 0, 0, 0]
    confident = make_policy("srft", min_confidence=0.5)  # step 2 (harmful, 0.4) is not confident enough
    assert confident.step_weights(unresolved, LABELS) == [1, 1, 1, 0]
    fractional = make_policy("srft", label_weights=["unnecessary=0.25", "good=0.75"])
    assert fractional.step_weights(unresolved, LABELS) == [0.75, 0, 0.25, 0]


def test_labels_required_only_where_the_policy_needs_them():
    assert PRESETS["srft"].step_weights(_traj(True), None) == [1, 1, 1, 1]
    with pytest.raises(InputError, match="no labels for this unresolved trajectory"):
        PRESETS["srft"].step_weights(_traj(False), None)
    # unknown resolution: treated as unresolved by default, or an error when asked
    assert PRESETS["srft"].step_weights(_traj(None), LABELS) == [1, 0, 1, 0]
    with pytest.raises(InputError, match="resolved status unknown"):
        make_policy("rft", unknown_resolved="error").step_weights(_traj(None), LABELS)


def test_bad_knobs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown label"):
        make_policy("srft", reject_labels="terrible")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        make_policy("srft", label_weights=["good=1.5"])
    with pytest.raises(ConfigError, match="LABEL=WEIGHT"):
        make_policy("srft", label_weights=["good"])
    with pytest.raises(ConfigError, match="unknown policy"):
        make_policy("best")
    assert make_policy("srft", min_confidence=0.5).to_json()["min_confidence"] == 0.5


def test_a_policy_travels_with_its_dataset_through_json():
    """meta.json records `to_json()`; `from_json` gives back the very policy, knobs included."""
    import argparse
    import json

    from srft_megatron.policy import WeightPolicy, add_arguments, from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--policy", "srft", "--reject-labels", "harmful,unnecessary",
                              "--min-confidence", "0.7", "--label-weight", "good=0.5",
                              "--unknown-resolved", "error"])
    custom = from_args(args)
    assert custom.label_weights == (("good", 0.5),) and custom.unknown_resolved_as == "error"
    for policy in [*PRESETS.values(), custom]:
        assert WeightPolicy.from_json(json.loads(json.dumps(policy.to_json()))) == policy
    with pytest.raises(ConfigError, match="unknown weight policy field"):
        WeightPolicy.from_json({**custom.to_json(), "temperature": 1})
    with pytest.raises(ConfigError, match="unknown label"):
        WeightPolicy.from_json({**custom.to_json(), "rejected_labels": ["terrible"]})
