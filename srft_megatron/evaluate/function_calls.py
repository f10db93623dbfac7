"""SWE-agent's `function_calling` parse function: which tool-call replies it takes and what it answers.

Why: in the `swe-agent` profile the model calls tools natively; what it was trained on includes how
SWE-agent reacts to a reply it cannot run (no call, two calls, bad JSON, an unknown tool, a missing
or an extra argument): one fixed error text per case. mini-swe-agent's own rules differ (it runs
several calls per reply and answers with its config's `format_error_template`), so the profile's
model (`mini_profile.ProfileModel`) uses these. Transcribed from SWE-agent/SWE-agent at 3ea751c
(`sweagent/tools/parsing.py`, `FunctionCallingParser`; `sweagent/exceptions.py`,
`FunctionCallingFormatError`), checked against the OpenAI tool schemas of the profile
(`required` and `properties` are SWE-agent's required and declared arguments). Argument names in
the two argument errors are sorted (SWE-agent joins a set: arbitrary order). The text-format
counterpart is `xml_actions.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Template


def error_template(missing: str) -> str:
    """A SWE-agent parse function's `error_message` (Jinja): the `missing` branch is the parser's
    own text, the others are the same in `function_calling` and `xml_function_calling`."""
    return ('{%- if error_code == "missing" -%}\n' + missing + '\n'
            '{%- elif error_code == "multiple" -%}\n'
            'Your last output included multiple tool calls!\n'
            'Please make sure your output includes a thought and exactly _ONE_ function call.\n'
            '{%- elif error_code == "unexpected_arg" -%}\n'
            'Your action could not be parsed properly: {{exception_message}}.\n'
            "Make sure your function call doesn't include any extra arguments that are not in the allowed "
            'arguments, and only use the allowed commands.\n'
            '{%- else -%}\n'
            'Your action could not be parsed properly: {{exception_message}}.\n'
            '{% endif %}\n')


ERROR_MESSAGE = error_template("""\
Your last output did not use any tool calls!
Please make sure your output includes exactly _ONE_ function call!
You must invoke the function directly using the function call format.
You cannot invoke commands with ```, you have to use the function call format.
If you think you have already resolved the issue, please submit your changes by running the `submit` command.
If you think you cannot solve the problem, please run `exit_forfeit` (if available) or `submit`.
Else, please continue with a new tool call!""")


class FunctionCallError(ValueError):
    """A refused reply: SWE-agent's message and error code (`missing`, `multiple`, `invalid_json`,
    `invalid_command`, `missing_arg`, `unexpected_arg`)."""

    def __init__(self, message: str, error_code: str, **extra: Any):
        super().__init__(f"{message} [error_code={error_code}]")
        self.message, self.error_code, self.extra = message, error_code, extra

    def reply(self) -> str:
        """What SWE-agent sends back (its template, rendered with the error's fields)."""
        return Template(ERROR_MESSAGE).render(error_code=self.error_code, exception_message=self.message,
                                              **self.extra)


@dataclass
class FunctionCall:
    tool: str
    arguments: dict[str, Any]
    tool_call_id: str | None


def parse_function_call(message: str, tool_calls: list[dict] | None, tools: list[dict[str, Any]]) -> FunctionCall:
    """The one call of a reply (`message` its text, `tool_calls` OpenAI tool calls) against `tools`."""
    if tool_calls is None or len(tool_calls) != 1:
        num_tools = len(tool_calls) if tool_calls else 0
        raise FunctionCallError(f"Expected exactly one tool call in model response - received {num_tools} "
                                f"tool calls with message: {message}", "missing" if num_tools == 0 else "multiple",
                                num_tools=num_tools)
    call = tool_calls[0]
    name = call["function"]["name"]
    schema = {t["function"]["name"]: t["function"] for t in tools}.get(name)
    if schema is None:
        raise FunctionCallError(f"Command '{name}' not found in list of available commands.", "invalid_command")
    values = call["function"].get("arguments")
    if not isinstance(values, dict):
        try:
            values = json.loads(values)
        except (json.JSONDecodeError, TypeError):
            raise FunctionCallError("Tool call arguments are not valid JSON.", "invalid_json") from None
    if not isinstance(values, dict):  # SWE-agent would fail on `.keys()`; a clear refusal instead
        raise FunctionCallError("Tool call arguments are not valid JSON.", "invalid_json")
    problem = argument_error(schema, values)
    if problem is not None:
        raise FunctionCallError(*problem)
    return FunctionCall(name, values, call.get("id"))


def argument_error(function: dict[str, Any], values: dict[str, Any]) -> tuple[str, str] | None:
    """SWE-agent's check of a call's arguments against the tool's schema (`function`), the same in
    both parse functions (this one and `xml_actions`): the message and error code of a missing
    required argument or an undeclared one, in that order, or None."""
    parameters = function.get("parameters") or {}
    missing = set(parameters.get("required") or []) - values.keys()
    if missing:
        return f"Required argument(s) missing: {', '.join(sorted(missing))}", "missing_arg"
    extra = set(values) - set(parameters.get("properties") or {})
    if extra:
        return f"Unexpected argument(s): {', '.join(sorted(extra))}", "unexpected_arg"
    return None


def _is_format_error(message: dict) -> bool:
    return (message.get("extra") or {}).get("interrupt_type") == "FormatError"


def requery_view(messages: list[dict]) -> list[dict]:
    """The history as SWE-agent sends it around refused replies: a refused reply and its error
    message are shown only in the very next request (`get_model_requery_history` adds them to a
    temporary copy), and after several refusals in a row only the last pair; mini-swe-agent keeps
    them all in its history (and its trajectory, the record of what happened)."""
    end = len(messages)
    while end and _is_format_error(messages[end - 1]):
        end -= 1
    last_pair = range(max(end, len(messages) - 2), len(messages))
    return [m for i, m in enumerate(messages) if not _is_format_error(m) or i in last_pair]
