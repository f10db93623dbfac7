"""SWE-agent's `xml_function_calling` parse function: an action written in the reply's text.

Why: SWE-smith's models (SWE-agent-LM) were trained on the `xml` render (DESIGN §1) and infer with
SWE-agent's `XMLFunctionCallingParser`: no tool schemas go to the server, the model writes

    Let's look at the files in the current directory.
    <function=bash>
    <parameter=command>find /testbed -type f -name "_discovery.py"</parameter>
    </function>

and the agent cuts the call out of the text. The evaluation agent (`srft evaluate --profile
swe-smith`, `srft check-scaffold`) must accept and refuse exactly what SWE-agent does, and answer
a refused reply with SWE-agent's words, or the model is evaluated on other feedback than the one it
was trained to read. Transcribed from SWE-agent/SWE-agent at 3ea751c (`sweagent/tools/parsing.py`):

- the first `<function=NAME>\\n...</function>` (regex, DOTALL) is the call; anything else, before
  or after it, is the thought (stripped); a second call is ignored, as there;
- SWE-Gym's names are SWE-agent's: `execute_bash` is `bash`, `finish` is `submit`;
- every `<parameter=KEY>VALUE</parameter>` is an argument, one leading and one trailing newline
  of VALUE removed; `view_range` must match `[\\d+,\\s*\\d+]` and is read as JSON;
- a missing required argument or an argument the tool does not declare is refused.

The differences, on purpose: SWE-agent then quotes the values into a shell command line for its
tool bundles; here the arguments go to the same tools as a dictionary (`insert_line` stays a
string, as it is on that command line, and the editor reads it as an integer). The argument names
in the two "argument(s)" errors are sorted (SWE-agent joins a Python set: its order is arbitrary).
A refused reply is answered with `format_error(message)`: SWE-agent's `error_message` template of
this parser, rendered as SWE-agent renders it (its FormatError carries no `error_code`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import Template

from srft_megatron.evaluate.function_calls import argument_error, error_template

FN_REGEX_PATTERN = r"<function=([^>]+)>\n(.*?)</function>"
FN_PARAM_REGEX_PATTERN = r"<parameter=([^>]+)>(.*?)</parameter>"
NAME_ALIASES = {"execute_bash": "bash", "finish": "submit"}  # SWE-Gym's names
VIEW_RANGE_PATTERN = r"\[\d+,\s*\d+\]"

ERROR_MESSAGE = error_template("""\
Your last output did not use any tool calls!
Please make sure your output includes exactly _ONE_ function call!
If you think you have already resolved the issue, please submit your changes by running the `submit` command.
If you think you cannot solve the problem, please run `submit`.
Else, please continue with a new tool call!""")


class XmlFormatError(ValueError):
    """The reply holds no valid call; `str(err)` is SWE-agent's exception message."""


@dataclass
class XmlAction:
    thought: str
    tool: str
    arguments: dict[str, Any]


def parse_xml_action(message: str, tools: list[dict[str, Any]]) -> XmlAction:
    """The call in `message` against the OpenAI tool schemas `tools` (their names, `required`
    and `properties` are SWE-agent's command names, required and declared arguments)."""
    fn_match = re.search(FN_REGEX_PATTERN, message, re.DOTALL)
    if not fn_match:
        raise XmlFormatError("No function found in model response.")
    fn_name = fn_match.group(1).strip()
    fn_name = NAME_ALIASES.get(fn_name, fn_name)
    thought = (message[: fn_match.start()] + message[fn_match.end():]).strip()
    schemas = {t["function"]["name"]: t["function"] for t in tools}
    schema = schemas.get(fn_name)
    if schema is None:
        raise XmlFormatError(f"Command '{fn_name}' not found in list of available commands.")
    params = {key: re.sub(r"^\n|\n$", "", value)
              for key, value in re.findall(FN_PARAM_REGEX_PATTERN, fn_match.group(2), re.DOTALL)}
    if "view_range" in params:
        value = params["view_range"]
        if not re.match(VIEW_RANGE_PATTERN, value):
            raise XmlFormatError(f"view_range must be in the format [<start>, <end>], got {value}.")
        params["view_range"] = json.loads(value)
    problem = argument_error(schema, params)
    if problem is not None:
        raise XmlFormatError(problem[0])  # SWE-agent's xml parser has no error codes
    return XmlAction(thought, fn_name, params)


def format_error(message: str) -> str:
    """SWE-agent's reply to a refused xml action (its parser's `error_message`, no error code)."""
    return Template(ERROR_MESSAGE).render(exception_message=message)
