"""The critic prompt: our default, written to the SRFT rubric, or a user's own (`--prompt FILE`).

Why a template with two placeholders: the labeller must be able to put the step-numbered
transcript (`{{trajectory}}`) and the number of steps (`{{num_steps}}`) into any wording, while
the answer format stays fixed by the JSON schema sent with each request. Double braces keep
the template free to contain JSON examples. The template's sha256 goes into every label record
(`critic.prompt_sha256`), so labels made with different prompts are never confused.

The default prompt follows the rubric of the critic issue: build the ideal solution path first,
then judge each step against it. It never tells the critic whether the trajectory was resolved:
the label must come from what the steps did, not from the outcome.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from srft_megatron.errors import InputError

TRAJECTORY_SLOT = "{{trajectory}}"
NUM_STEPS_SLOT = "{{num_steps}}"

DEFAULT_PROMPT = """\
You are an expert software engineer reviewing the work of an AI coding agent. The agent was given \
a task on a software repository (for example, fixing an issue) and worked on it step by step. \
Below is its whole trajectory: the task, then {{num_steps}} numbered steps. Each step is one action \
of the agent (its reasoning and its tool calls), followed by what the environment returned. Long \
outputs may have been shortened; a marker shows where text was cut.

Your job is to label every step.

First, work out the ideal solution path: from the task and from everything the trajectory reveals \
about the repository, state the shortest sequence of actions that solves the task correctly (for \
example: find the relevant code, reproduce the problem, make the minimal correct change, verify \
it, submit). You are not told whether the agent succeeded; judge only from what you see.

Then judge each step against that ideal path and give it exactly one label:
- "good": the step is on the shortest correct path. It makes necessary progress: locating the \
relevant code, reproducing the problem, a correct edit, a needed check, submitting a correct fix.
- "unnecessary": the step neither helps nor harms. Redundant exploration, repeating an action \
already done, reading something that turns out to be irrelevant, re-running a command that gives \
no new information.
- "harmful": the step moves away from the correct path. A wrong or broken edit, changes to \
irrelevant files, introducing a bug, removing needed code, misusing a tool, submitting an \
incorrect or incomplete solution.
- "recover": the step repairs an earlier mistake of the agent (undoes or fixes a harmful edit, \
restores a broken state) and brings it back to the correct path.

Give each label a confidence between 0 and 1.

<trajectory>
{{trajectory}}
</trajectory>

Answer with a single JSON object and nothing else:
{"ideal_path": "<the ideal solution path, in a few sentences>", \
"steps": [{"step": 1, "label": "good", "confidence": 0.9}, ...]}
with exactly one entry for each of the {{num_steps}} steps, numbered 1 to {{num_steps}} in order.
"""


@dataclass(frozen=True)
class PromptTemplate:
    text: str
    source: str  # "default" or the file it came from

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def fill(self, transcript: str, num_steps: int) -> str:
        return self.text.replace(NUM_STEPS_SLOT, str(num_steps)).replace(TRAJECTORY_SLOT, transcript)

    def messages(self, transcript: str, num_steps: int) -> list[dict[str, str]]:
        """The chat messages of one critic request (one user turn: works with any chat model)."""
        return [{"role": "user", "content": self.fill(transcript, num_steps)}]


def load_prompt(path: str | None) -> PromptTemplate:
    """The default prompt, or the template in `path` (must contain `{{trajectory}}`)."""
    if path is None:
        return PromptTemplate(DEFAULT_PROMPT, "default")
    text = Path(path).read_text(encoding="utf-8")
    if TRAJECTORY_SLOT not in text:
        raise InputError(f"prompt template has no {TRAJECTORY_SLOT} placeholder "
                         f"(where the step-numbered trajectory goes)", file=str(path))
    return PromptTemplate(text, str(path))
