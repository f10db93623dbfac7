"""Render a trajectory with the chat template and find the exact token span of every step.

The chat template is the single source of truth for what the model sees. Rendering messages
one at a time does not reproduce it (Qwen's template merges consecutive tool results into one
user turn, inserts a default system prompt, encodes tool-call arguments), so spans come from
*rendering prefixes and diffing*: for the assistant message at index i,

    P = render(messages[:i], add_generation_prompt=True)   # context, ends "<|im_start|>assistant\\n"
    F = render(messages[:i + 1])                            # context + the step

The step's text is `F[len(P):]`, which must end with `<|im_end|>\\n`; the full render must start
with F. What is trained for a step is its content (and tool calls) plus `<|im_end|>`; the
header `<|im_start|>assistant\\n` and the newline after `<|im_end|>` belong to the context.

Tokenisation is per segment (context, step, context, step, ...): each step is tokenised from a
fresh boundary, exactly as at inference time, where the prompt ends with the generation header
and the model produces the step from there. The decoded ids must give back the full render,
character for character; any mismatch raises `InputError` naming the trajectory and step.

The context is what the model sees at inference: the trajectory's `tools` (or the `--tools`
override, `srft_megatron.tools`) are passed to the template as vLLM passes them when the agent
sends them, so for every step k the tokens before step k's span are exactly
`tokenize(render(messages[:i_k], tools, add_generation_prompt=True))` (tests/data/test_parity.py
proves it against transformers and a real vLLM `/tokenize`). Demonstration turns (`is_demo`)
are rendered as context and never get a span. The one place per-step tokenisation must differ
from whole-text tokenisation: a step whose text starts with a newline (more precisely, whose
first pre-token would merge with the `\n` ending `<|im_start|>assistant\n`). Generated, it
starts a fresh token; re-read as part of a later prompt, vLLM merges it (`\n\n` is one token).
The span is kept as generated, and such steps are listed in `RenderedTrajectory.newline_steps`
(counted in the dataset metadata).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srft_megatron.errors import InputError
from srft_megatron.tokenizer import normalised_text
from srft_megatron.tools import xml_system_content
from srft_megatron.trajectory import Trajectory, check_label_count, message_steps

RENDER_MODES = ("tools", "xml")
END_OF_TURN = "<|im_end|>"
CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
XML_MULTILINE_PARAMS = ("old_str", "new_str", "file_text")  # as SWE-smith's transform_traj_xml


@dataclass
class StepSpan:
    """Token span `[start, end)` of step `step` (1-based); `end - 1` is its `<|im_end|>`."""

    step: int
    start: int
    end: int
    char_start: int
    char_end: int


@dataclass
class RenderedTrajectory:
    id: str
    text: str
    input_ids: np.ndarray  # int32
    steps: list[StepSpan] = field(default_factory=list)
    newline_steps: list[int] = field(default_factory=list)  # see the module docstring

    def step_weights(self, weights: list[float]) -> np.ndarray:
        """Per-token loss weights: `weights[k]` on the tokens of step k+1, 0 everywhere else.

        Position i carries the weight of *predicting* token i (DESIGN §4)."""
        if len(weights) != len(self.steps):
            raise InputError(f"{len(weights)} weights for {len(self.steps)} steps", traj_id=self.id)
        out = np.zeros(len(self.input_ids), dtype=np.float32)
        for span, w in zip(self.steps, weights):
            out[span.start:span.end] = w
        return out

    def step_label_codes(self, labels: list[str | None]) -> np.ndarray:
        """Per-token label codes (the dataset's label channel, `dataset.LABEL_CODES`): the code of
        `labels[k]` (None: `unlabelled`) on the tokens of step k+1, `context` everywhere else.
        Painted on the same spans as `step_weights`, so the two channels cannot disagree."""
        from srft_megatron.dataset import LABEL_CODES, LABEL_DTYPE

        check_label_count(len(labels), len(self.steps), self.id)
        out = np.full(len(self.input_ids), LABEL_CODES["context"], dtype=LABEL_DTYPE)
        for span, label in zip(self.steps, labels):
            if (label or "unlabelled") not in LABEL_CODES:
                raise InputError(f"unknown label {label!r}", traj_id=self.id, step=span.step)
            out[span.start:span.end] = LABEL_CODES[label or "unlabelled"]
        return out


def _tool_arguments(raw: str, traj_id: str, step: int) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"tool call arguments are not valid JSON ({exc.msg})", traj_id=traj_id, step=step) from None


def _xml_action(call: dict, traj_id: str, step: int) -> str:
    fn = call["function"]
    lines = [f"<function={fn['name']}>"]
    args = _tool_arguments(fn["arguments"], traj_id, step)
    for key, value in (args.items() if isinstance(args, dict) else []):
        if key in XML_MULTILINE_PARAMS:
            lines.append(f"<parameter={key}>\n{value}\n</parameter>")
        else:
            lines.append(f"<parameter={key}>{value}</parameter>")
    lines.append("</function>")
    return "\n".join(lines)


def template_messages(traj: Trajectory, mode: str = "tools", tools: list[dict] | None = None) -> list[dict]:
    """Messages as the chat template wants them for render `mode` (DESIGN §1), one per message
    of `traj` (demonstration turns included, their `is_demo` key dropped).

    `tools`: native tool calls, arguments parsed into objects (the template applies `tojson`;
    a JSON string would come out double-encoded). `xml`: calls written into the assistant text
    as `<function=NAME>` blocks and tool results as plain user turns; the system message keeps
    the function documentation of `tools`, written in when the source lacks it (SWE-smith's
    format); without a system message, one holding only that documentation is put first."""
    if mode not in RENDER_MODES:
        raise ValueError(f"render mode must be one of {RENDER_MODES}, got {mode!r}")
    out = []
    for _, msg, step in message_steps(traj.messages, traj.id):  # step: None for a message that is no step
        role, content = msg["role"], msg.get("content") or ""
        for token in CONTROL_TOKENS:
            if token in content:
                raise InputError(f"{role} content contains the control token {token}, which would be "
                                 "tokenised as a real turn boundary", traj_id=traj.id, step=step)
        calls = msg.get("tool_calls") or []
        if role == "assistant" and calls:
            if mode == "tools":
                out.append({"role": "assistant", "content": content, "tool_calls": [
                    {"type": "function", "function": {"name": c["function"]["name"],
                                                      "arguments": _tool_arguments(c["function"]["arguments"], traj.id, step)}}
                    for c in calls]})
            else:
                actions = "\n".join(_xml_action(c, traj.id, step) for c in calls)
                out.append({"role": "assistant", "content": f"{content}\n\n{actions}"})
        elif role == "tool" and mode == "xml":
            out.append({"role": "user", "content": content})
        else:
            out.append({"role": role, "content": content})
    if mode == "xml" and tools:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": xml_system_content(out[0]["content"], tools)}
        else:
            out.insert(0, {"role": "system", "content": xml_system_content("", tools)})
    return out


class StepRenderer:
    """Renders and tokenises trajectories with one tokenizer and render mode."""

    def __init__(self, tokenizer, mode: str = "tools", tools: list[dict] | None = None):
        """`tools`: an override for every trajectory (`--tools`); None renders each trajectory
        with its own `tools` (none when it carries none)."""
        self.tokenizer = tokenizer
        self.mode = mode
        self.tools = tools
        self.eot_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if self.eot_id is None or self.eot_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {END_OF_TURN} token: not a ChatML (Qwen2.5) tokenizer")
        self._newline_id = tokenizer("\n", add_special_tokens=False)["input_ids"]

    def tools_for(self, traj: Trajectory) -> list[dict] | None:
        """The tools `traj` is rendered with: the override, else its own."""
        return self.tools if self.tools is not None else traj.tools

    def template_messages(self, traj: Trajectory) -> list[dict]:
        return template_messages(traj, self.mode, self.tools_for(traj))

    def _render(self, messages: list[dict], generation_prompt: bool = False,
                tools: list[dict] | None = None) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools if self.mode == "tools" else None, tokenize=False,
            add_generation_prompt=generation_prompt)

    def segments(self, traj: Trajectory) -> tuple[str, list[tuple[str, int]]]:
        """The full render and its pieces: `(text, step)` with step 0 for context."""
        tools = self.tools_for(traj)
        messages = self.template_messages(traj)
        shift = len(messages) - len(traj.messages)  # template_messages maps messages 1:1 after it
        full = self._render(messages, tools=tools)
        pieces: list[tuple[str, int]] = []
        cursor = 0
        for step_ in traj.steps():
            step, index = step_.number, step_.index + shift
            prefix = self._render(messages[:index], True, tools)
            with_step = self._render(messages[: index + 1], tools=tools)
            if not with_step.startswith(prefix) or not full.startswith(with_step) or len(prefix) < cursor:
                raise InputError("chat template render of the prefix does not line up with the full "
                                 "render (template is not prefix-stable)", traj_id=traj.id, step=step)
            step_text = with_step[len(prefix):]
            if not step_text.endswith(END_OF_TURN + "\n"):
                raise InputError(f"rendered step does not end with {END_OF_TURN}", traj_id=traj.id, step=step)
            trained_end = len(with_step) - 1  # keep "<|im_end|>", leave its "\n" to the context
            pieces.append((full[cursor:len(prefix)], 0))
            pieces.append((full[len(prefix):trained_end], step))
            cursor = trained_end
        pieces.append((full[cursor:], 0))
        return full, pieces

    def render(self, traj: Trajectory) -> RenderedTrajectory:
        full, pieces = self.segments(traj)
        texts = [text for text, _ in pieces]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        ids: list[int] = []
        spans: list[StepSpan] = []
        char = 0
        for (text, step), piece_ids in zip(pieces, encoded):
            if step:
                if not piece_ids or piece_ids[-1] != self.eot_id:
                    raise InputError(f"step tokens do not end with {END_OF_TURN}", traj_id=traj.id, step=step)
                spans.append(StepSpan(step, len(ids), len(ids) + len(piece_ids), char, char + len(text)))
            ids.extend(piece_ids)
            char += len(text)
        newline_steps = [step for text, step in pieces if step and self._merges_after_newline(text)]
        decoded = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if decoded != normalised_text(self.tokenizer, full):  # the tokenizer's NFC is not a mismatch
            bad = next((s.step for s in spans if self.tokenizer.decode(ids[s.start:s.end])
                        != normalised_text(self.tokenizer, full[s.char_start:s.char_end])), None)
            raise InputError("token pieces do not reproduce the full render (tokeniser round trip "
                             "changed the text)", traj_id=traj.id, step=bad)
        return RenderedTrajectory(traj.id, full, np.asarray(ids, dtype=np.int32), spans, newline_steps)

    def _merges_after_newline(self, step_text: str) -> bool:
        """Would the step's first pre-token merge with the header's `\n` in one whole text?
        (Only the start matters: pre-tokens do not cross the first boundary that holds.)"""
        head = step_text[:64]
        encode = self.tokenizer
        return (encode("\n" + head, add_special_tokens=False)["input_ids"]
                != self._newline_id + encode(head, add_special_tokens=False)["input_ids"])
