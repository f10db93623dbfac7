"""Agent profiles: one named description of everything the agent sees, shared by training and evaluation.

Why: the context trained on must be the context the model sees at inference (DESIGN §1). The
tools alone (`srft_megatron.tools`) are not enough: the system and instance templates, how a
tool's output becomes an observation turn (`OBSERVATION:\\n...`, the no-output sentence, the
truncation note), and how old turns are shortened (SWE-smith infers with
`last_n_observations: 5`) all change the tokens the model conditions on. A profile names them
once, as package data (`srft_megatron/agent_profiles/NAME.yaml`, this module is `agent_profile`), so `srft check-scaffold`
can prove, step by step, that the evaluation agent sends what training rendered.

    srft check-scaffold --trajectory examples/trajectories/datekit-1__clean.traj --profile swe-agent --json out.json

Profile fields (SWE-agent's names and semantics, its templates are Jinja2):
  render       `tools` (native tool calls, tools passed to the chat template) or `xml` (SWE-smith)
  tools        a tool profile name (`srft_megatron/tool_profiles/`): the schemas are not repeated here
  templates    system_template, instance_template, next_step_template, next_step_no_output_template,
               next_step_truncated_observation_template
  max_observation_length, history_processors (`last_n_observations` with `n`, `polling`), limits
               (step_limit = `per_instance_call_limit`, cost_limit, max_requeries, ...)
A SWE-agent run config (e.g. SWE-smith's `agent/swesmith_infer.yaml`) becomes a profile with
`profile_from_swe_agent_config`; shipped: `swe-agent` (SWE-agent 1.x function calling, the
examples' and `--tools swe-agent`'s scaffold) and `swe-smith` (converted from that YAML).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from srft_megatron.errors import InputError
from srft_megatron.render import RENDER_MODES
from srft_megatron.tools import function_docs, load_profile, profile_names as tool_profile_names

PROFILE_PACKAGE = "srft_megatron.agent_profiles"
TEMPLATE_KEYS = ("system_template", "instance_template", "next_step_template", "next_step_no_output_template",
                 "next_step_truncated_observation_template")
# SWE-agent's TemplateConfig defaults (sweagent/agent/agents.py), for run configs that leave them out.
SWE_AGENT_DEFAULT_TEMPLATES = {
    "system_template": "",
    "instance_template": "",
    "next_step_template": "Observation: {{observation}}",
    "next_step_no_output_template": None,  # SWE-agent: falls back to next_step_template
    "next_step_truncated_observation_template": (
        "Observation: {{observation[:max_observation_length]}}<response clipped>"
        "<NOTE>Observations should not exceeded {{max_observation_length}} characters. "
        "{{elided_chars}} characters were elided. Please try a different command that produces less output "
        "or use head/tail/grep/redirect the output to a file. Do not use interactive pagers.</NOTE>"),
}
SWE_AGENT_DEFAULT_MAX_OBSERVATION = 100_000
SWE_AGENT_MAX_REQUERIES = 3  # SWE-agent's `agent.max_requeries` default
# SWE-agent parse functions -> our render modes; the text formats (thought_action) are not supported.
PARSE_FUNCTION_RENDER = {"function_calling": "tools", "xml_function_calling": "xml"}
# Tool bundles of SWE-agent that together give exactly the `swe-agent` tool profile's functions.
BASH_BUNDLES = {"tools/registry"}
EDIT_BUNDLES = {"tools/edit_anthropic"}
SUBMIT_BUNDLES = {"tools/submit", "tools/review_on_submit_m", "tools/review_on_submit"}
HISTORY_PROCESSORS = ("default", "last_n_observations")


@dataclass
class AgentProfile:
    name: str
    render: str
    tools: str
    templates: dict[str, str]
    max_observation_length: int = SWE_AGENT_DEFAULT_MAX_OBSERVATION
    history_processors: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    working_dir: str = "/testbed"
    description: str = ""
    source: str = ""

    def validate(self, origin: str) -> "AgentProfile":
        """Refuse what the agent could not run, naming the profile file and the field."""
        def bad(reason: str) -> InputError:
            return InputError(f"agent profile: {reason}", file=origin)
        if self.render not in RENDER_MODES:
            raise bad(f"render must be one of {RENDER_MODES}, got {self.render!r}")
        if self.tools not in tool_profile_names():
            raise bad(f"tools {self.tools!r} is not a tool profile ({', '.join(tool_profile_names())})")
        missing = [k for k in TEMPLATE_KEYS if not isinstance(self.templates.get(k), str)]
        if missing:
            raise bad(f"templates lack {', '.join(missing)}")
        for proc in self.history_processors:
            if proc.get("type") not in HISTORY_PROCESSORS:
                raise bad(f"history processor {proc.get('type')!r} is not supported ({', '.join(HISTORY_PROCESSORS)})")
            if proc["type"] == "last_n_observations" and not (isinstance(proc.get("n"), int) and proc["n"] > 0):
                raise bad("last_n_observations needs a positive integer n")
        for key, text in self.templates.items():
            try:
                jinja2.Template(text)
            except jinja2.TemplateSyntaxError as exc:
                raise bad(f"{key}: Jinja syntax error line {exc.lineno}: {exc.message}") from None
        return self

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The OpenAI tool schemas (from the tool profile, a fresh copy)."""
        return load_profile(self.tools)

    def request_tools(self) -> list[dict[str, Any]] | None:
        """What the agent sends as `tools` with each request: none in xml (the docs are in the prompt)."""
        return self.tool_schemas() if self.render == "tools" else None

    def fill(self, key: str, **variables: Any) -> str:
        """Render one template as SWE-agent does (Jinja2; an unknown variable is an error here)."""
        template = jinja2.Template(self.templates[key], undefined=jinja2.StrictUndefined)
        try:
            return template.render(working_dir=self.working_dir, **variables)
        except jinja2.UndefinedError as exc:
            raise InputError(f"agent profile {self.name}: {key}: {exc.message}") from None

    def observation(self, output: str) -> str:
        """A tool's output as the next user/tool turn (SWE-agent's choice of the three templates)."""
        if not output.strip():
            return self.fill("next_step_no_output_template", observation=output)
        if len(output) > self.max_observation_length:
            return self.fill("next_step_truncated_observation_template", observation=output,
                             max_observation_length=self.max_observation_length,
                             elided_chars=len(output) - self.max_observation_length)
        return self.fill("next_step_template", observation=output)

    def max_requeries(self) -> int:
        """SWE-agent's `agent.max_requeries` (limits): the refused replies in a row that end the run
        with `exit_format` (and an autosubmission); mini-swe-agent's `max_consecutive_format_errors`."""
        return int(self.limits.get("max_requeries") or SWE_AGENT_MAX_REQUERIES)

    def process_history(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages sent to the model: `history` through the profile's history processors."""
        for proc in self.history_processors:
            if proc["type"] == "last_n_observations":
                history = last_n_observations(history, proc["n"], proc.get("polling", 1))
        return history

    def to_yaml(self) -> str:
        return yaml.dump(asdict(self), Dumper=_ProfileDumper, sort_keys=False, allow_unicode=True, width=120)


class _ProfileDumper(yaml.SafeDumper):
    """Writes multi-line templates as YAML block scalars, so a written profile reads like SWE-agent's."""


def _literal_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text and not any(line != line.rstrip() for line in text.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ProfileDumper.add_representer(str, _literal_str)


def last_n_observations(history: list[dict[str, Any]], n: int, polling: int = 1) -> list[dict[str, Any]]:
    """SWE-agent's `LastNObservations`: all observations but the first (the instance prompt) and
    the last `n` become `Old environment output: (K lines omitted)`; demonstrations are kept."""
    observations = [i for i, m in enumerate(history)
                     if m.get("message_type") == "observation" and not m.get("is_demo")]
    omit = set(observations[1:max(0, (len(observations) // polling) * polling - n)])
    out = []
    for i, msg in enumerate(history):
        if i in omit:
            lines = len((msg.get("content") or "").splitlines())
            msg = dict(msg, content=f"Old environment output: ({lines} lines omitted)")
        out.append(msg)
    return out


def profile_names() -> list[str]:
    """Names of the agent profiles shipped with the package."""
    root = resources.files(PROFILE_PACKAGE)
    return sorted(p.name[:-len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _from_mapping(data: Any, origin: str) -> AgentProfile:
    if not isinstance(data, dict):
        raise InputError("agent profile must be a YAML mapping", file=origin)
    known = set(AgentProfile.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"agent profile: unknown keys {', '.join(unknown)}", file=origin)
    for key in ("name", "render", "tools", "templates"):
        if key not in data:
            raise InputError(f"agent profile: missing {key!r}", file=origin)
    return AgentProfile(**data).validate(origin)


def load_agent_profile(spec: str) -> AgentProfile:
    """`spec` is a profile YAML file, a SWE-agent run config (a YAML with an `agent` mapping,
    converted on the fly) or the name of a shipped profile; a file wins."""
    path = Path(spec)
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise InputError(f"agent profile is not valid YAML ({exc})".splitlines()[0], file=spec) from None
        if isinstance(data, dict) and "agent" in data and "templates" not in data:
            return profile_from_swe_agent_config(spec)
        return _from_mapping(data, spec)
    if spec not in profile_names():
        raise InputError(f"--profile {spec!r} is neither a file nor an agent profile "
                         f"(profiles: {', '.join(profile_names())})")
    text = resources.files(PROFILE_PACKAGE).joinpath(f"{spec}.yaml").read_text(encoding="utf-8")
    return _from_mapping(yaml.safe_load(text), f"agent profile {spec}")


def documented_tools(system_template: str) -> str:
    """The tool profile whose xml documentation (`tools.function_docs`) the system template holds
    word for word: SWE-smith's config writes its own tool descriptions there (its `bash` is "Execute
    a bash command in the terminal.", not SWE-agent 1.x's), and what the model reads is what the
    profile's tools must say. Else `swe-agent`, the function-calling tools SWE-agent sends."""
    for name in tool_profile_names():
        if function_docs(load_profile(name)) in system_template:
            return name
    return "swe-agent"


def profile_from_swe_agent_config(path: str, name: str | None = None) -> AgentProfile:
    """A SWE-agent run config (`agent.templates`, `agent.tools`, `agent.history_processors`,
    `agent.model` limits) as a profile. Refuses what has no profile equivalent, naming it."""
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read SWE-agent config ({exc})".splitlines()[0], file=path) from None
    agent = (config or {}).get("agent") if isinstance(config, dict) else None
    if not isinstance(agent, dict):
        raise InputError("not a SWE-agent run config (no 'agent' mapping)", file=path)
    given = agent.get("templates") or {}
    templates = {k: given.get(k, SWE_AGENT_DEFAULT_TEMPLATES[k]) for k in TEMPLATE_KEYS}
    if templates["next_step_no_output_template"] is None:
        templates["next_step_no_output_template"] = templates["next_step_template"]
    tools_cfg = agent.get("tools") or {}
    parse = (tools_cfg.get("parse_function") or {}).get("type", "function_calling")
    if parse not in PARSE_FUNCTION_RENDER:
        raise InputError(f"agent.tools.parse_function {parse!r} has no render mode "
                         f"(supported: {', '.join(PARSE_FUNCTION_RENDER)})", file=path)
    bundles = {b.get("path") for b in tools_cfg.get("bundles") or [] if isinstance(b, dict)}
    has_bash = tools_cfg.get("enable_bash_tool", True) or bundles & BASH_BUNDLES
    if not (has_bash and bundles & EDIT_BUNDLES and bundles & SUBMIT_BUNDLES):
        raise InputError(f"agent.tools bundles {sorted(bundles)} are not bash + str_replace_editor + submit "
                         "(the only tool profile shipped is swe-agent)", file=path)
    processors = []
    for proc in agent.get("history_processors") or []:
        processors.append({k: v for k, v in proc.items()})
    model = agent.get("model") or {}
    limits = {"step_limit": model.get("per_instance_call_limit"), "cost_limit": model.get("per_instance_cost_limit"),
              "execution_timeout": tools_cfg.get("execution_timeout"), "temperature": model.get("temperature"),
              "max_requeries": agent.get("max_requeries", SWE_AGENT_MAX_REQUERIES)}
    profile = AgentProfile(
        name=name or Path(path).stem, render=PARSE_FUNCTION_RENDER[parse],
        tools=documented_tools(templates["system_template"]), templates=templates,
        max_observation_length=int(given.get("max_observation_length", SWE_AGENT_DEFAULT_MAX_OBSERVATION)),
        history_processors=processors, limits={k: v for k, v in limits.items() if v is not None},
        description=f"converted from the SWE-agent run config {Path(path).name}", source=Path(path).name)
    return profile.validate(path)
