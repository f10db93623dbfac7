"""SWE-agent's `function_calling` rules in the `swe-agent` profile (evaluate/function_calls.py): the
replies it refuses and its exact answers, and SWE-agent's requery view of refused replies (shown
once, in the next request only)."""

from __future__ import annotations

import json

import pytest

from srft_megatron.evaluate.function_calls import FunctionCallError, parse_function_call, requery_view
from srft_megatron.tools import load_profile

TOOLS = load_profile("swe-agent")
MISSING = """Your last output did not use any tool calls!
Please make sure your output includes exactly _ONE_ function call!
You must invoke the function directly using the function call format.
You cannot invoke commands with ```, you have to use the function call format.
If you think you have already resolved the issue, please submit your changes by running the `submit` command.
If you think you cannot solve the problem, please run `exit_forfeit` (if available) or `submit`.
Else, please continue with a new tool call!"""


def _call(name: str, arguments, call_id: str = "call_1") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_one_valid_call_is_taken_as_sent():
    call = parse_function_call("Let me look.", [_call("str_replace_editor", json.dumps(
        {"command": "view", "path": "/testbed", "view_range": [1, -1]}))], TOOLS)
    assert (call.tool, call.tool_call_id) == ("str_replace_editor", "call_1")
    assert call.arguments == {"command": "view", "path": "/testbed", "view_range": [1, -1]}
    assert parse_function_call("", [_call("submit", {})], TOOLS).arguments == {}  # already parsed: as is


@pytest.mark.parametrize("calls, code, message, reply", [
    (None, "missing", "Expected exactly one tool call in model response - received 0 tool calls with message: hm",
     MISSING),
    ([_call("bash", '{"command": "ls"}'), _call("bash", '{"command": "pwd"}', "call_2")], "multiple",
     "Expected exactly one tool call in model response - received 2 tool calls with message: hm",
     "Your last output included multiple tool calls!\n"
     "Please make sure your output includes a thought and exactly _ONE_ function call."),
    ([_call("python", "{}")], "invalid_command", "Command 'python' not found in list of available commands.",
     "Your action could not be parsed properly: Command 'python' not found in list of available commands..\n"),
    ([_call("bash", '{"command": ')], "invalid_json", "Tool call arguments are not valid JSON.",
     "Your action could not be parsed properly: Tool call arguments are not valid JSON..\n"),
    ([_call("str_replace_editor", '{"command": "view"}')], "missing_arg", "Required argument(s) missing: path",
     "Your action could not be parsed properly: Required argument(s) missing: path.\n"),
    ([_call("bash", '{"command": "ls", "timeout": 5, "cwd": "/"}')], "unexpected_arg",
     "Unexpected argument(s): cwd, timeout",
     "Your action could not be parsed properly: Unexpected argument(s): cwd, timeout.\n"
     "Make sure your function call doesn't include any extra arguments that are not in the allowed arguments, "
     "and only use the allowed commands."),
])
def test_refusals_and_answers_are_swe_agents(calls, code, message, reply):
    with pytest.raises(FunctionCallError) as err:
        parse_function_call("hm", calls, TOOLS)
    assert (err.value.error_code, err.value.message) == (code, message)
    assert str(err.value) == f"{message} [error_code={code}]"
    assert err.value.reply() == reply


def _refused(text: str) -> list[dict]:
    mark = {"interrupt_type": "FormatError"}
    return [{"role": "assistant", "content": text, "extra": mark}, {"role": "user", "content": "no", "extra": mark}]


def test_refused_replies_are_shown_once_in_the_next_request_only():
    base = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    ok = [{"role": "assistant", "content": "go", "tool_calls": [_call("bash", "{}")]},
          {"role": "tool", "content": "out", "tool_call_id": "call_1"}]
    assert requery_view(base) == base
    assert requery_view(base + _refused("a")) == base + _refused("a")
    assert requery_view(base + _refused("a") + _refused("b")) == base + _refused("b")  # only the last pair
    assert requery_view(base + _refused("a") + ok) == base + ok  # gone once a reply was taken
