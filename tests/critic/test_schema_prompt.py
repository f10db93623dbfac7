"""The answer schema, answer validation, the prompt template and the shortened transcript."""

from __future__ import annotations

import json

import pytest

from srft_megatron.critic.prompt import DEFAULT_PROMPT, load_prompt
from srft_megatron.critic.schema import InvalidAnswer, label_schema, parse_answer
from srft_megatron.critic.transcript import CUT_MARK, MIN_CAP, TokenCounter, build_prompt, split_pieces
from srft_megatron.errors import InputError
from srft_megatron.trajectory import Trajectory, read_trajectories


def answer(k, **over):
    steps = [{"step": i, "label": "good", "confidence": 0.5} for i in range(1, k + 1)]
    return json.dumps({"ideal_path": "fix it", "steps": steps} | over)


def test_valid_answer_parses():
    schema = label_schema(3, ideal_path_chars=100)
    got = parse_answer(answer(3), 3, schema)
    assert [s.step for s in got.steps] == [1, 2, 3] and got.ideal_path == "fix it"
    assert schema["properties"]["steps"]["minItems"] == schema["properties"]["steps"]["maxItems"] == 3


@pytest.mark.parametrize("text, why", [
    ("not json at all", "not valid JSON"),
    ("", "empty answer"),
    (answer(2), "at steps"),  # too few steps
    (answer(3, steps=[{"step": 2, "label": "good"}, {"step": 1, "label": "good"}, {"step": 3, "label": "good"}]),
     "at steps/0/step"),
    (answer(3, steps=[{"step": i, "label": "great"} for i in (1, 2, 3)]), "at steps/0/label"),
    (answer(3, steps=[{"step": i, "label": "good", "confidence": 2} for i in (1, 2, 3)]), "confidence"),
    (answer(3, ideal_path="x" * 101), "at ideal_path"),
])
def test_invalid_answers_are_rejected_with_a_reason(text, why):
    with pytest.raises(InvalidAnswer, match=why):
        parse_answer(text, 3, label_schema(3, ideal_path_chars=100))


def test_confidence_is_optional_and_ideal_path_can_be_left_out():
    schema = label_schema(2, ideal_path_chars=0)
    assert "ideal_path" not in schema["properties"]
    got = parse_answer(json.dumps({"steps": [{"step": 1, "label": "harmful"}, {"step": 2, "label": "recover"}]}), 2,
                       label_schema(2, ideal_path_chars=0, confidence=False))
    assert [(s.label, s.confidence) for s in got.steps] == [("harmful", None), ("recover", None)]


def test_default_prompt_follows_the_rubric_and_hides_the_outcome():
    for word in ("ideal solution path", '"good"', '"unnecessary"', '"harmful"', '"recover"', "{{trajectory}}"):
        assert word in DEFAULT_PROMPT
    assert "resolved" not in DEFAULT_PROMPT.lower()
    filled = load_prompt(None).fill("TRANSCRIPT", 7)
    assert "TRANSCRIPT" in filled and "{{" not in filled and "7 numbered steps" in filled


def test_own_prompt_file(tmp_path):
    good = tmp_path / "p.txt"
    good.write_text("Label {{num_steps}} steps:\n{{trajectory}}")
    tpl = load_prompt(str(good))
    assert tpl.fill("T", 2) == "Label 2 steps:\nT" and tpl.sha256 != load_prompt(None).sha256
    bad = tmp_path / "bad.txt"
    bad.write_text("no slot here")
    with pytest.raises(InputError, match=r"bad.txt.*\{\{trajectory\}\}"):
        load_prompt(str(bad))


@pytest.fixture(scope="module")
def counter(tiny_model):
    return TokenCounter.load(str(tiny_model))


def test_transcript_numbers_steps_like_the_trajectory(trajectories):
    for _, traj in read_trajectories(str(trajectories)):
        pieces = split_pieces(traj)
        action_messages = [p.message for p in pieces if p.is_action]
        assert action_messages == traj.step_message_indices
        assert [p.step for p in pieces if p.is_action] == list(range(1, traj.num_steps + 1))


def test_long_trajectories_are_shortened_to_the_budget(trajectories, counter):
    template = load_prompt(None)
    by_id = {t.id: t for _, t in read_trajectories(str(trajectories))}
    longest = max(by_id.values(), key=lambda t: sum(len(m.get("content") or "") for m in t.messages))
    for budget in (20000, 8000, 4000):
        prompt = build_prompt(longest, template, counter, budget)
        exact = counter.count_messages(prompt.messages)
        assert exact == prompt.prompt_tokens <= budget
        info = prompt.truncation
        assert info["budget_tokens"] == budget and info["original_prompt_tokens"] > budget
        assert info["cuts"] and all(c["kept"] < c["tokens"] for c in info["cuts"])
        text = prompt.messages[0]["content"]
        assert text.count("tokens cut ...]") == len(info["cuts"])
        for k in range(1, longest.num_steps + 1):  # every step is still there
            assert f"=== Step {k} ===" in text
        # head and tail of a cut observation are kept
        cut = info["cuts"][0]
        original = longest.messages[cut["message"]]["content"]
        ids = counter.encode(original)
        head = counter.decode(ids[: max(8, cut["kept"] // 4)])
        assert head.strip()[:20] in text
    small = next(t for t in by_id.values() if counter.count_messages(template.messages("x", 1)) < 2000)
    whole = build_prompt(small, template, counter, 10**6)
    assert whole.truncation["cuts"] == [] and "tokens cut" not in whole.messages[0]["content"]


def test_a_budget_too_small_is_an_error_naming_the_trajectory(trajectories, counter):
    traj = next(t for _, t in read_trajectories(str(trajectories)))
    with pytest.raises(InputError, match=f"trajectory {traj.id}: does not fit"):
        build_prompt(traj, load_prompt(None), counter, MIN_CAP)


def test_actions_are_cut_only_when_observations_at_the_minimum_do_not_fit(counter):
    long_action = "edit " * 3000
    traj = Trajectory.from_json({"id": "t", "messages": [
        {"role": "user", "content": "fix the bug"},
        {"role": "assistant", "content": long_action},
        {"role": "tool", "content": "ok " * 50, "tool_call_id": "x"},
    ]})
    prompt = build_prompt(traj, load_prompt(None), counter, 1500)
    info = prompt.truncation
    assert info["observation_cap"] == MIN_CAP and info["action_cap"] is not None
    assert any(c["role"] == "assistant" and c["step"] == 1 for c in info["cuts"])
    assert prompt.prompt_tokens <= 1500
    assert CUT_MARK.split("{")[0] in prompt.messages[0]["content"]


def test_transcript_shows_the_agents_tools_and_demonstrations_as_context(trajectories):
    """The critic sees what the agent saw: its tools (documented once, before step 1) and the
    demonstration turns (headed as such, never numbered, never an action to label)."""
    from srft_megatron.critic.transcript import layout
    from srft_megatron.tools import function_docs, load_profile

    real = next(t for _, t in read_trajectories(str(trajectories))
                if t.num_steps >= 3 and any(m.get("tool_calls") for m in t.messages))
    first = real.step_message_indices[0]
    demo = [dict(m, is_demo=True) for m in real.messages[first:first + 2]]
    traj = Trajectory.from_json({**real.to_json(), "tools": load_profile("swe-agent"),
                                 "messages": [*real.messages[:first], *demo, *real.messages[first:]]})
    pieces = split_pieces(traj)
    assert pieces[0].message == -1 and pieces[0].body == function_docs(traj.tools) and not pieces[0].is_action
    assert [p.message for p in pieces if p.is_action] == traj.step_message_indices
    assert sum(p.is_action for p in pieces) == real.num_steps
    demo_pieces = [p for p in pieces if p.header.startswith("[demonstration")]
    assert [p.message for p in demo_pieces] == [first, first + 1] and all(p.step == 0 for p in demo_pieces)
    text = layout(pieces, [p.body for p in pieces])
    assert text.count("=== Step ") == real.num_steps and text.index("---- BEGIN FUNCTION #1: bash") < text.index("=== Step 1 ===")
    assert demo[0]["tool_calls"][0]["function"]["arguments"] in text.split("=== Step 1 ===")[0]
