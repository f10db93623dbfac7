"""The context trained on is the context the model sees at inference, token for token.

For every real trajectory (../shared/data/trajectories, read in place, and examples/) and every
step k, the dataset's tokens before step k's span must equal what an inference server computes
for the conversation up to step k: the chat template rendered with the same tools and
`add_generation_prompt=True`, then tokenised as one text. Here the expectation is built with
transformers' `apply_chat_template` directly from the OpenAI messages (arguments parsed the way
vLLM parses them), not with the renderer's code; tests/data/test_parity_vllm.py asks a real vLLM
server. Function-calling trajectories are given the shipped `swe-agent` tools profile.

The one allowed difference (render.py docstring): a step whose text starts with a newline is
tokenised as generated, so once such a step is in the context the whole-text tokenisation of
later prompts merges its first newline with the header's. Those steps must be exactly the ones
`newline_steps` lists, and everything before the first of them must still match token for token.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from srft_megatron.render import StepRenderer, template_messages
from srft_megatron.tools import XML_DOCS_MARKER, function_docs, load_profile
from srft_megatron.trajectory import Trajectory, read_trajectories
from tests.conftest import ROOT
from tests.data.conftest import srft

NEWLINE_START = re.compile(r"[^\S\r\n]*[\r\n]")  # what merges with the "\n" ending the header


@pytest.fixture(scope="module")
def example_trajectories(tmp_path_factory) -> list[Trajectory]:
    out = tmp_path_factory.mktemp("examples") / "trajectories.jsonl"
    srft("ingest", *sorted((ROOT / "examples" / "trajectories").glob("*.traj")), "-o", out, "--quiet")
    return [t for _, t in read_trajectories(str(out))]


@pytest.fixture(scope="module")
def brought_trajectories(tmp_path_factory, traj_dir) -> list[Trajectory]:
    """Through `srft ingest`: SWE-agent's real marshmallow demonstration put in the history of a
    real run (`put_demos_in_history`, turns marked `is_demo`), and SWE-Gym/OpenHands rows that
    carry their own tools and make two calls in one turn (rows as in test_formats.py)."""
    from tests.data.test_formats import _openhands_row

    d = tmp_path_factory.mktemp("brought")
    demo = json.loads((traj_dir / "marshmallow-1867__function_calling_replace.traj").read_text())["history"]
    run = json.loads((traj_dir / "function_calling_simple.traj").read_text())["history"]
    history = [run[0]] + [{**m, "is_demo": True} for m in demo if m["role"] != "system"] + run[1:]
    (d / "with-demo.traj").write_text(json.dumps({"history": history}))
    rows = d / "gym.jsonl"
    rows.write_text("".join(json.dumps(_openhands_row("repo__x-1", a, True)) + "\n" for a in ("done", "\nfixed")))
    srft("ingest", d / "with-demo.traj", rows, "-o", d / "t.jsonl", "--quiet")
    trajs = [t for _, t in read_trajectories(str(d / "t.jsonl"))]
    assert len(trajs) == 3 and sum(bool(m.get("is_demo")) for m in trajs[0].messages) == len(demo) - 1
    assert trajs[1].tools and trajs[2].tools
    return trajs


def with_agent_tools(traj: Trajectory) -> Trajectory:
    """A copy with the tools the agent had: the SWE-agent profile when it calls tools."""
    calls = any(m.get("tool_calls") for m in traj.messages)
    return dataclasses.replace(traj, tools=traj.tools or (load_profile("swe-agent") if calls else None))


def openai_to_template(messages: list[dict]) -> list[dict]:
    """What an OpenAI-compatible server hands the template: arguments strings parsed to objects."""
    out = []
    for msg in messages:
        msg = {k: v for k, v in msg.items() if k != "is_demo"}
        if msg.get("tool_calls"):
            msg["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                                 for c in msg["tool_calls"]]
        out.append(msg)
    return out


def expected_prompt_ids(tokenizer, traj: Trajectory, index: int, mode: str) -> list[int]:
    if mode == "tools":
        messages, tools = openai_to_template(traj.messages[:index]), traj.tools
    else:  # the xml format is defined by the renderer's message writer; tools only as system docs
        full = template_messages(traj, "xml", traj.tools)
        messages, tools = full[: index + len(full) - len(traj.messages)], None
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_parity(tokenizer, traj: Trajectory, mode: str, expected=expected_prompt_ids) -> int:
    """Assert the principle for every step of `traj`; returns the number of steps checked.

    `expected(tokenizer, traj, index, mode)`: the inference prompt's ids before message `index`."""
    rendered = StepRenderer(tokenizer, mode).render(traj)
    ids = rendered.input_ids.tolist()
    assert [s.step for s in rendered.steps] == [s.number for s in traj.steps()]
    texts = {s.step: rendered.text[s.char_start:s.char_end] for s in rendered.steps}
    assert rendered.newline_steps == [k for k, t in texts.items() if NEWLINE_START.match(t)], traj.id
    for span, step in zip(rendered.steps, traj.steps()):
        want = expected(tokenizer, traj, step.index, mode)
        earlier = [k for k in rendered.newline_steps if k < step.number]
        if not earlier:
            assert ids[: span.start] == want, (traj.id, mode, step.number)
        else:  # same text; tokens equal up to the first step kept as generated
            first = rendered.steps[earlier[0] - 1].start - 1  # the header's "\n" is merged too
            assert tokenizer.decode(ids[: span.start]) == tokenizer.decode(want), (traj.id, step.number)
            assert ids[:first] == want[:first], (traj.id, mode, step.number)
    return len(rendered.steps)


@pytest.mark.parametrize("mode", ["tools", "xml"])
def test_context_before_every_step_is_the_inference_prompt(tokenizer, trajectories, example_trajectories, mode):
    checked, with_tools = 0, 0
    for traj in [*trajectories, *example_trajectories]:
        traj = with_agent_tools(traj)
        with_tools += traj.tools is not None
        checked += check_parity(tokenizer, traj, mode)
    assert with_tools >= 10 and checked >= 100  # the function-calling ones really got tools


@pytest.mark.parametrize("mode", ["tools", "xml"])
def test_parity_with_real_demonstrations_and_own_tools(tokenizer, brought_trajectories, mode):
    for traj in brought_trajectories:
        assert check_parity(tokenizer, with_agent_tools(traj), mode) == traj.num_steps


def test_tools_block_is_in_the_system_turn(tokenizer, trajectories):
    """The function-calling render shows the agent its tools; the xml render documents them in
    the system message exactly once (SWE-smith's format), never as a `<tools>` block."""
    traj = next(with_agent_tools(t) for t in trajectories if any(m.get("tool_calls") for m in t.messages))
    tools_text = StepRenderer(tokenizer, "tools").render(traj).text
    system_turn = tools_text.split("<|im_end|>")[0]
    assert "# Tools" in system_turn and "<tools>" in system_turn
    for tool in traj.tools:
        assert json.dumps(tool, ensure_ascii=False) in system_turn
    xml_text = StepRenderer(tokenizer, "xml").render(traj).text
    xml_system = xml_text.split("<|im_end|>")[0]
    assert "<tools>" not in xml_text and xml_system.count(XML_DOCS_MARKER) == len(traj.tools)
    assert function_docs(traj.tools) in xml_system
    assert xml_system.startswith("<|im_start|>system\n" + traj.messages[0]["content"])
    # a source that already documents its functions (SWE-smith xml data) is left as it is
    documented = dataclasses.replace(traj, messages=[{"role": "system", "content": xml_system[len("<|im_start|>system\n"):]},
                                                     *traj.messages[1:]])
    again = StepRenderer(tokenizer, "xml").render(documented).text
    assert again.split("<|im_end|>")[0] == xml_system


def test_tools_override_and_no_tools(tokenizer, trajectories):
    traj = next(t for t in trajectories if any(m.get("tool_calls") for m in t.messages))
    assert traj.tools is None
    bare = StepRenderer(tokenizer, "tools").render(traj)
    profile = load_profile("swe-agent")
    override = StepRenderer(tokenizer, "tools", tools=profile).render(traj)
    own = StepRenderer(tokenizer, "tools").render(dataclasses.replace(traj, tools=profile))
    assert "<tools>" not in bare.text and "<tools>" in override.text
    assert override.input_ids.tolist() == own.input_ids.tolist()
    assert len(override.input_ids) > len(bare.input_ids) + 300
    # the trained spans are the same steps whatever the context
    for a, b in zip(bare.steps, override.steps):
        assert bare.input_ids[a.start:a.end].tolist() == override.input_ids[b.start:b.end].tolist()


def test_demonstration_turns_are_context_with_weight_zero(tokenizer, trajectories):
    """SWE-agent's `put_demos_in_history`: the demo's assistant and tool turns sit in the history
    (marked `is_demo`); they are rendered as context, never numbered, never weighted."""
    real = next(with_agent_tools(t) for t in trajectories if t.num_steps >= 4
                and any(m.get("tool_calls") for m in t.messages))
    first_step = real.step_message_indices[0]
    demo = [dict(m, is_demo=True) for m in real.messages[first_step:first_step + 4]]  # 2 steps + results
    messages = [*real.messages[:first_step], *demo, *real.messages[first_step:]]
    traj = dataclasses.replace(real, id="with-demo", messages=messages)
    assert traj.num_steps == real.num_steps
    rendered = StepRenderer(tokenizer, "tools").render(traj)
    weights = rendered.step_weights([1.0] * traj.num_steps)
    for m in demo:  # the demo's text is in the render, and all of it weighs 0
        if m["content"]:
            assert m["content"] in tokenizer.decode(rendered.input_ids[weights == 0])
    trained = tokenizer.decode(rendered.input_ids[weights > 0])
    plain = StepRenderer(tokenizer, "tools").render(real)
    assert trained == tokenizer.decode(plain.input_ids[plain.step_weights([1.0] * real.num_steps) > 0])
    assert "is_demo" not in rendered.text
    check_parity(tokenizer, traj, "tools")


def newline_trajectory() -> Trajectory:
    """Three steps; the second's content starts with two newlines; the first makes two tool
    calls (as SWE-Gym/OpenHands rows do), whose results the template merges into one turn."""
    return Trajectory.from_json({"id": "nl", "tools": load_profile("swe-agent"), "messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "go"},
        {"role": "assistant", "content": "Look first.", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"ls\"}"}},
            {"id": "1b", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"pwd\"}"}}]},
        {"role": "tool", "content": "a.py", "tool_call_id": "1"},
        {"role": "tool", "content": "/repo", "tool_call_id": "1b"},
        {"role": "assistant", "content": "\n\nThen edit.", "tool_calls": [
            {"id": "2", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"cat a.py\"}"}}]},
        {"role": "tool", "content": "x = 1", "tool_call_id": "2"},
        {"role": "assistant", "content": "Done.", "tool_calls": [
            {"id": "3", "type": "function", "function": {"name": "submit", "arguments": "{}"}}]}]})


def test_step_starting_with_a_newline_is_kept_as_generated(tokenizer):
    """Whole-text tokenisation merges "assistant\\n" + "\\n\\nText" differently from generation;
    the span stays as generated, the step is listed, and only later prompts see the difference."""
    traj = newline_trajectory()
    rendered = StepRenderer(tokenizer, "tools").render(traj)
    assert rendered.newline_steps == [2]
    span = rendered.steps[1]
    assert tokenizer.decode(rendered.input_ids[span.start:span.end]).startswith("\n\nThen edit.")
    assert rendered.input_ids[span.start] == tokenizer("\n\n", add_special_tokens=False)["input_ids"][0]
    whole = expected_prompt_ids(tokenizer, traj, traj.step_message_indices[2], "tools")
    assert rendered.input_ids[: rendered.steps[2].start].tolist() != whole  # the difference is real
    assert check_parity(tokenizer, traj, "tools") == 3
