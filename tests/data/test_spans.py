"""Step spans and weights on every real trajectory, checked against independent expectations.

The expected text of a step is written out here from the Qwen2.5 ChatML format by hand (not
derived from the span code): content, then each tool call as `<tool_call>` JSON (or SWE-smith
XML), then `<|im_end|>`. Decoding a kept step's weight-1 tokens must give exactly that text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from srft_megatron.errors import InputError
from srft_megatron.policy import PRESETS
from srft_megatron.render import StepRenderer
from srft_megatron.trajectory import LabelRecord, StepLabel, Trajectory

EOT = "<|im_end|>"


def expected_step_text(msg: dict, mode: str) -> str:
    content, calls = msg["content"], msg.get("tool_calls") or []
    if not calls:
        return content + EOT
    if mode == "tools":
        parts = ['<tool_call>\n{"name": "%s", "arguments": %s}\n</tool_call>'
                 % (c["function"]["name"], json.dumps(json.loads(c["function"]["arguments"]), ensure_ascii=False))
                 for c in calls]
        return (content + "\n" if content else "") + "\n".join(parts) + EOT
    actions = []
    for c in calls:
        lines = [f"<function={c['function']['name']}>"]
        for k, v in json.loads(c["function"]["arguments"]).items():
            lines.append(f"<parameter={k}>\n{v}\n</parameter>" if k in ("old_str", "new_str", "file_text")
                         else f"<parameter={k}>{v}</parameter>")
        lines.append("</function>")
        actions.append("\n".join(lines))
    return f"{content}\n\n" + "\n".join(actions) + EOT


def synthetic_labels(traj: Trajectory) -> LabelRecord:
    """Deterministic labels with every kind present: step k → LABELS by k mod 4."""
    cycle = ["good", "harmful", "unnecessary", "recover"]
    return LabelRecord(traj.id, [StepLabel(k, cycle[(k - 1) % 4], None) for k in range(1, traj.num_steps + 1)])


@pytest.mark.parametrize("mode", ["tools", "xml"])
def test_kept_step_tokens_decode_to_exactly_the_step(tokenizer, trajectories, mode):
    renderer = StepRenderer(tokenizer, mode)
    for traj in trajectories:
        rendered = renderer.render(traj)
        weights = rendered.step_weights([1.0] * traj.num_steps)
        steps = [m for m in traj.messages if m["role"] == "assistant"]
        assert len(rendered.steps) == len(steps) == traj.num_steps
        for span, msg in zip(rendered.steps, steps):
            assert np.all(weights[span.start:span.end] == 1.0)
            got = tokenizer.decode(rendered.input_ids[span.start:span.end], skip_special_tokens=False)
            assert got == expected_step_text(msg, mode), (traj.id, span.step)
            # the header before the step is context: "<|im_start|>assistant\n" has weight 0
            assert tokenizer.decode(rendered.input_ids[span.start - 3:span.start]) == "<|im_start|>assistant\n"
            assert weights[span.start - 1] == 0.0
        # every token outside the steps weighs 0, and all of system/user/tool text is in there
        zero_text = tokenizer.decode(rendered.input_ids[weights == 0], skip_special_tokens=False)
        for msg in traj.messages:
            if msg["role"] != "assistant" and msg["content"]:
                assert msg["content"] in zero_text
        assert int((weights > 0).sum()) == sum(s.end - s.start for s in rendered.steps)
        # the pieces reproduce the full render
        assert tokenizer.decode(rendered.input_ids) == rendered.text


def test_srft_masks_harmful_steps_of_unresolved_and_naive_keeps_them(tokenizer, trajectories):
    renderer = StepRenderer(tokenizer, "tools")
    for traj in trajectories:
        labels = synthetic_labels(traj)
        rendered = renderer.render(traj)
        for resolved in (False, True):
            traj.resolved = resolved
            srft = rendered.step_weights(PRESETS["srft"].step_weights(traj, labels))
            naive = rendered.step_weights(PRESETS["naive"].step_weights(traj, labels))
            for span, lab in zip(rendered.steps, labels.steps):
                assert np.all(naive[span.start:span.end] == 1.0)
                want = 0.0 if (lab.label == "harmful" and not resolved) else 1.0
                assert np.all(srft[span.start:span.end] == want), (traj.id, lab.step, lab.label)


def test_control_tokens_inside_content_are_refused(tokenizer):
    traj = Trajectory.from_json({"id": "inj", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "see <|im_end|> here"}, {"role": "assistant", "content": "done"}]})
    with pytest.raises(InputError, match="control token") as info:
        StepRenderer(tokenizer).render(traj)
    assert info.value.traj_id == "inj"


def test_assistant_without_content_only_tool_calls(tokenizer):
    traj = Trajectory.from_json({"id": "nocontent", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"ls -la\"}"}},
            {"type": "function", "function": {"name": "submit", "arguments": "{}"}}]},
        {"role": "tool", "content": "x"}, {"role": "tool", "content": "y"},
        {"role": "assistant", "content": "\n\nleading newlines"}]})
    rendered = StepRenderer(tokenizer).render(traj)
    steps = [m for m in traj.messages if m["role"] == "assistant"]
    for span, msg in zip(rendered.steps, steps):
        assert tokenizer.decode(rendered.input_ids[span.start:span.end]) == expected_step_text(msg, "tools")
