"""The step-numbered transcript the critic reads, shortened to fit the critic's context.

Why this exists: the critic labels steps by number, so it must see the numbers exactly as the
labels will be indexed (step k = the k-th assistant message, `Trajectory.step_message_indices`).
And SWE-agent observations can be huge (a `cat` of a 5,000-line file, a full test log): one such
output must not make a whole trajectory unlabellable. So every trajectory is made to fit:

1. Each message becomes a piece: the context before step 1 (the tools the agent was given,
   documented as in SWE-smith's prompt; system prompt, task; demonstration turns, marked as such
   and never numbered), then for each step its action (assistant text and tool calls) and the
   observations that followed it. The critic sees the context the agent saw.
2. If the filled prompt exceeds the token budget (context length - answer tokens - margin), all
   *observations* get a common token cap, the largest that fits ("water filling": short outputs
   stay whole, long ones are cut to the cap). Cut text keeps its head and tail, and a marker
   says how many tokens were cut. Only if observations at the minimum cap still do not fit are
   the agent's own actions capped the same way.
3. The exact prompt is counted again with the critic's tokenizer and chat template; BPE merges
   across a cut can differ from the estimate, so the budget is tightened and the fit repeated.

The budget, the caps and every cut (message index, step, original and kept tokens) are returned
for the label record, so a reader knows what the critic did not see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from srft_megatron.critic.prompt import PromptTemplate
from srft_megatron.errors import InputError
from srft_megatron.tools import function_docs
from srft_megatron.trajectory import Trajectory, message_steps

MIN_CAP = 16  # tokens a cut message keeps at the least (head + tail)
CUT_MARK = "\n[... {n} tokens cut ...]\n"


class TokenCounter:
    """Counts tokens with the critic's own tokenizer (`srft_megatron.load_tokenizer` name or dir)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))

    @classmethod
    def load(cls, name_or_path: str) -> "TokenCounter":
        from srft_megatron import load_tokenizer

        return cls(load_tokenizer(name_or_path))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def count_messages(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens as the server will count them (chat template + generation header)."""
        if self.has_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return len(self.encode(text))
        return sum(len(self.encode(m["content"])) + 8 for m in messages) + 8


@dataclass
class Piece:
    message: int  # index in the trajectory's messages (-1: the tools the agent was given)
    role: str
    step: int  # the step this piece belongs to (0: before step 1)
    header: str
    body: str
    is_action: bool  # the agent's own step (capped only as a last resort)


@dataclass
class CriticPrompt:
    messages: list[dict[str, str]]
    num_steps: int
    prompt_tokens: int
    truncation: dict[str, Any] = field(default_factory=dict)


def _tool_calls_text(msg: dict[str, Any]) -> str:
    lines = []
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        lines.append(f"[tool call: {fn.get('name')}] {args}")
    return "\n".join(lines)


def split_pieces(traj: Trajectory) -> list[Piece]:
    """One piece per message, tagged with its step (`Trajectory.steps()` numbering); the agent's
    tools first when it had any; demonstration turns are context, headed as demonstrations."""
    pieces, step = [], 0  # step: the last step at or before the message (0: the task, before step 1)
    if traj.tools:
        pieces.append(Piece(-1, "tools", 0, "[tools the agent was given]", function_docs(traj.tools), False))
    for index, msg, number in message_steps(traj.messages, traj.id):
        role = msg["role"]
        content = msg.get("content") or ""
        if number is not None:
            step = number
            calls = _tool_calls_text(msg)
            body = "\n".join(part for part in (content, calls) if part)
            pieces.append(Piece(index, role, step, "[agent]", body, True))
        else:
            header = {"tool": "[tool output]", "user": "[user]" if step == 0 else "[environment]",
                      "system": "[system]", "assistant": "[agent]"}.get(role, f"[{role}]")
            if msg.get("is_demo"):
                header = f"[demonstration, not a step] {header}"
                calls = _tool_calls_text(msg)
                content = "\n".join(part for part in (content, calls) if part)
            pieces.append(Piece(index, role, step, header, content, False))
    return pieces


def layout(pieces: list[Piece], bodies: list[str]) -> str:
    """Join the pieces under step headers: `=== Step k ===`."""
    out, current = [], None
    for piece, body in zip(pieces, bodies):
        if piece.step != current:
            current = piece.step
            out.append("=== Task and context ===" if current == 0 else f"=== Step {current} ===")
        out.append(f"{piece.header}\n{body}" if body else piece.header)
    return "\n\n".join(out)


class _Shortener:
    def __init__(self, pieces: list[Piece], counter: TokenCounter):
        self.pieces = pieces
        self.counter = counter
        self.ids = [counter.encode(p.body) for p in pieces]
        self.mark_tokens = len(counter.encode(CUT_MARK.format(n=10**6)))

    def cap_for(self, piece: Piece, obs_cap: int | None, act_cap: int | None) -> int | None:
        return act_cap if piece.is_action else obs_cap

    def estimate(self, overhead: int, obs_cap: int | None, act_cap: int | None) -> int:
        total = overhead
        for piece, ids in zip(self.pieces, self.ids):
            cap = self.cap_for(piece, obs_cap, act_cap)
            total += len(ids) if cap is None or len(ids) <= cap else cap + self.mark_tokens
        return total

    def bodies(self, obs_cap: int | None, act_cap: int | None) -> tuple[list[str], list[dict[str, Any]]]:
        bodies, cuts = [], []
        for piece, ids in zip(self.pieces, self.ids):
            cap = self.cap_for(piece, obs_cap, act_cap)
            if cap is None or len(ids) <= cap:
                bodies.append(piece.body)
                continue
            head = cap - cap // 2
            tail = cap - head
            cut = len(ids) - cap
            bodies.append(self.counter.decode(ids[:head]) + CUT_MARK.format(n=cut) + self.counter.decode(ids[-tail:]))
            cuts.append({"message": piece.message, "role": piece.role, "step": piece.step,
                         "tokens": len(ids), "kept": cap})
        return bodies, cuts

    def largest_cap(self, fits: Callable[[int], bool], longest: int) -> int | None:
        """Largest cap in [MIN_CAP, longest] with fits(cap), by bisection (fits is monotone)."""
        if longest < MIN_CAP or not fits(MIN_CAP):
            return None
        lo, hi = MIN_CAP, longest
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo


def build_prompt(traj: Trajectory, template: PromptTemplate, counter: TokenCounter, budget: int) -> CriticPrompt:
    """The critic's messages for `traj`, shortened to at most `budget` prompt tokens.

    Raises `InputError` (naming the trajectory) when even minimum caps do not fit."""
    pieces = split_pieces(traj)
    num_steps = sum(p.is_action for p in pieces)
    shortener = _Shortener(pieces, counter)

    def render(obs_cap, act_cap):
        bodies, cuts = shortener.bodies(obs_cap, act_cap)
        messages = template.messages(layout(pieces, bodies), num_steps)
        return messages, cuts, counter.count_messages(messages)

    messages, cuts, tokens = render(None, None)
    info: dict[str, Any] = {"budget_tokens": budget, "observation_cap": None, "action_cap": None,
                            "original_prompt_tokens": tokens, "cuts": []}
    if tokens <= budget:
        return CriticPrompt(messages, num_steps, tokens, info)
    overhead = tokens - sum(len(ids) for ids in shortener.ids)
    target = budget
    for _ in range(6):
        longest_obs = max((len(i) for p, i in zip(pieces, shortener.ids) if not p.is_action), default=0)
        obs_cap = shortener.largest_cap(lambda c: shortener.estimate(overhead, c, None) <= target, longest_obs)
        act_cap = None
        if obs_cap is None:
            obs_cap = MIN_CAP
            longest_act = max((len(i) for p, i in zip(pieces, shortener.ids) if p.is_action), default=0)
            act_cap = shortener.largest_cap(lambda c: shortener.estimate(overhead, MIN_CAP, c) <= target, longest_act)
            if act_cap is None:
                raise InputError(f"does not fit the critic's context: {tokens} prompt tokens, budget {budget} "
                                 f"even with every message cut to {MIN_CAP} tokens", traj_id=traj.id)
        messages, cuts, got = render(obs_cap, act_cap)
        if got <= budget:
            info.update(observation_cap=obs_cap, action_cap=act_cap, cuts=cuts)
            return CriticPrompt(messages, num_steps, got, info)
        target -= got - budget + 8  # estimate was short (merges across cuts): tighten and refit
    raise InputError(f"could not shorten to the budget of {budget} tokens", traj_id=traj.id)
