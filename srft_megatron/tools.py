"""The tools an agent was given: named profiles, `--tools FILE|PROFILE`, their hash and their docs.

Why this module: the context trained on must be the context the model sees at inference. When
SWE-agent (function calling) or OpenHands runs on vLLM, it sends OpenAI tool schemas with every
request and the Qwen2.5 chat template writes them into the system turn (`# Tools ... <tools>`).
A trajectory that does not carry its tools must get them from somewhere, or the model is trained
to call tools it was never shown. Users name them once:

    srft ingest run/*.traj -o trajectories.jsonl --tools swe-agent      # attach to each record
    srft preprocess --trajectories trajectories.jsonl --tools tools.json ...   # override

A tools spec is either a JSON file holding a list of OpenAI tool objects
(`{"type": "function", "function": {"name", "description", "parameters"}}`) or the name of a
profile shipped as package data (`srft_megatron/tool_profiles/NAME.json`, same format):

- `swe-agent`: SWE-agent's default function-calling tools (config/default.yaml: the built-in
  `bash` tool plus the `edit_anthropic` and `review_on_submit_m` bundles), i.e. `bash`,
  `str_replace_editor`, `submit`, in the order and shape SWE-agent's
  `Command.get_function_calling_tool()` sends them (transcribed from SWE-agent/SWE-agent at
  3ea751c, YAML folding of the docstrings kept as SWE-agent loads it).

- `swe-smith`: the same three tools as SWE-smith's inference config (agent/swesmith_infer.yaml)
  documents them in its system prompt, in its order (`bash`, `submit`, `str_replace_editor`) and
  words (its `bash` is "Execute a bash command in the terminal."): `function_docs` of this profile
  is that documentation character for character. The `swe-smith` agent profile uses it.

In `--render xml` the model sees no `<tools>` block: SWE-smith's inference config writes the
function documentation into the system message instead (`---- BEGIN FUNCTION #1: bash ----`).
`xml_system_content` keeps that documentation when the source has it and writes it from the
tools, in the same format, when it does not.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from srft_megatron.errors import InputError
from srft_megatron.trajectory import validate_tools

PROFILE_PACKAGE = "srft_megatron.tool_profiles"
XML_DOCS_MARKER = "---- BEGIN FUNCTION #"

# SWE-smith's inference system prompt around the function documentation (agent/swesmith_infer.yaml),
# verbatim: two blank lines after the last function block (`srft check-scaffold --profile swe-smith`
# proves the xml render equals that prompt token for token).
_XML_DOCS_HEAD = "You have access to the following functions:\n\n"
_XML_DOCS_TAIL = """


If you choose to call a function ONLY reply in the following format with NO suffix:

Provide any reasoning for the function call here.
<function=example_function_name>
<parameter=example_parameter_1>value_1</parameter>
<parameter=example_parameter_2>
This is the value for the second parameter
that can span
multiple lines
</parameter>
</function>

<IMPORTANT>
Reminder:
- Function calls MUST follow the specified format, start with <function= and end with </function>
- Required parameters MUST be specified
- Only call one function at a time
- Always provide reasoning for your function call in natural language BEFORE the function call (not after)
</IMPORTANT>"""


def profile_names() -> list[str]:
    """Names of the tool profiles shipped with the package."""
    root = resources.files(PROFILE_PACKAGE)
    return sorted(p.name[:-len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def _parse_tools(text: str, origin: str) -> list[dict[str, Any]]:
    try:
        tools = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"tools file is not valid JSON ({exc.msg}, line {exc.lineno})", file=origin) from None
    try:
        validate_tools(tools)
    except InputError as err:
        raise err.located(file=origin) from None
    return tools


def load_profile(name: str) -> list[dict[str, Any]]:
    """The tools of a shipped profile (a fresh copy each call)."""
    if name not in profile_names():
        raise InputError(f"unknown tools profile {name!r} (known: {', '.join(profile_names())})")
    text = resources.files(PROFILE_PACKAGE).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return _parse_tools(text, f"profile {name}")


def load_tools(spec: str) -> list[dict[str, Any]]:
    """`spec` is a JSON file (a list of OpenAI tool objects), a tool profile name, or an agent
    profile (a name or a profile YAML, `srft_megatron.agent_profile`): its tools. One name means
    one scaffold everywhere: `--tools swe-smith` in ingest/preprocess gives the tools that
    `--profile swe-smith` gives the agent, and the critic transcript shows those. A file wins."""
    path = Path(spec)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        from srft_megatron.agent_profile import load_agent_profile  # it imports this module

        return load_agent_profile(spec).tool_schemas()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"tools file is not UTF-8 ({exc.reason} at byte {exc.start})", file=spec) from None
        return _parse_tools(text, spec)
    if spec in profile_names():
        return load_profile(spec)
    from srft_megatron.agent_profile import load_agent_profile, profile_names as agent_profile_names

    if spec in agent_profile_names():
        return load_agent_profile(spec).tool_schemas()
    raise InputError(f"--tools {spec!r} is neither a file nor a tools profile "
                     f"(profiles: {', '.join(sorted(set(profile_names()) | set(agent_profile_names())))})")


def tools_sha256(tools: list[dict[str, Any]] | None) -> str | None:
    """Hash of the tools as the template sees them: key order kept (`tojson` keeps it, so two
    orders are two different contexts), whitespace and escaping fixed."""
    if tools is None:
        return None
    canonical = json.dumps(tools, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def function_docs(tools: list[dict[str, Any]]) -> str:
    """The tools as SWE-smith's xml prompt documents them (`---- BEGIN FUNCTION #i: NAME ----`,
    description, numbered parameters with type and required/optional, allowed values)."""
    blocks = []
    for i, tool in enumerate(tools, start=1):
        fn = tool["function"]
        lines = [f"---- BEGIN FUNCTION #{i}: {fn['name']} ----",
                 f"Description: {(fn.get('description') or '').rstrip()}"]
        params = fn.get("parameters") or {}
        properties = params.get("properties") or {}
        if properties:
            required = set(params.get("required") or [])
            lines.append("")
            lines.append("Parameters:")
            for j, (name, info) in enumerate(properties.items(), start=1):
                status = "required" if name in required else "optional"
                lines.append(f"  ({j}) {name} ({info.get('type', 'string')}, {status}): "
                             f"{info.get('description', 'No description provided')}")
                if "enum" in info:
                    lines.append("Allowed values: [" + ", ".join(f"`{v}`" for v in info["enum"]) + "]")
        else:
            lines.append("No parameters are required for this function.")
        lines.append(f"---- END FUNCTION #{i} ----")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def xml_system_content(content: str, tools: list[dict[str, Any]] | None) -> str:
    """The system message of the xml render: as the source wrote it when it already documents
    the functions (SWE-smith data does), else with the documentation of `tools` appended."""
    if not tools or XML_DOCS_MARKER in content:
        return content
    docs = _XML_DOCS_HEAD + function_docs(tools) + _XML_DOCS_TAIL
    return f"{content}\n\n{docs}" if content else docs
