"""mini-swe-agent running an agent profile, through its own extension points (classes by import path).

Why: `srft evaluate` runs mini-swe-agent, whose stock configs are not the scaffold our models are
trained in (another system prompt, a bash-only tool, `<returncode>` observations). mini-swe-agent
loads agent, model and environment classes by import path, so the profile plugs in without a fork:

  agent.agent_class             srft_megatron.evaluate.mini_profile.ProfileAgent
      system/instance templates from the profile (`problem_statement` = the task, `working_dir`),
      SWE-agent's `message_type` on every message (what history processors read), the step limit
      and `max_requeries`, SWE-agent's autosubmission when a limit ends the run (`SweAgentExits`;
      `ProfileBatchAgent` is the same for the SWE-bench batch runner, `evaluate/mini_batch.py`);
  model.model_class             srft_megatron.evaluate.mini_profile.ProfileModel
      litellm with the profile's tools (bash, str_replace_editor, submit), the history processed by
      the profile (`last_n_observations`), observations from the profile's templates;
  environment.environment_class srft_megatron.evaluate.mini_profile.ProfileEnvironment
      the calls run by `evaluate.local_env.LocalEnvironment` on `cwd` (no Docker), `submit` ends the run.

`ReplayModel` / `ReplayEnvironment` are the deterministic pair `srft check-scaffold --driver
mini-swe-agent` uses: recorded replies and recorded tool outputs, every request written to a JSONL
file. This module runs inside .venv-agent (mini-swe-agent's venv) with the repository on
PYTHONPATH; the entry point is

    .venv-agent/bin/python -m srft_megatron.evaluate.mini_profile --trajectory T.traj --profile swe-agent \\
        --repo CHECKOUT --requests requests.jsonl --output agent.traj.json
In a `render: xml` profile (SWE-smith) no tools are sent: the model writes its call into the
text, parsed by SWE-agent's `xml_function_calling` rules (`evaluate/xml_actions.py`), a refused
reply is answered with that parser's error message, and observations are `user` turns.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from minisweagent.agents import get_agent_class
from minisweagent.agents.default import AgentConfig, DefaultAgent
from minisweagent.environments import get_environment
from minisweagent.environments.docker import DockerEnvironment
from minisweagent.environments.local import LocalEnvironment as MiniLocalEnvironment
from minisweagent.exceptions import FormatError, LimitsExceeded, Submitted
from minisweagent.models import get_model
from minisweagent.models.litellm_model import LitellmModel, LitellmModelConfig
from minisweagent.run.benchmarks.utils.common import ProgressTrackingAgent
from pydantic import BaseModel

from srft_megatron.agent_profile import load_agent_profile
from srft_megatron.evaluate import editor
from srft_megatron.evaluate.function_calls import FunctionCallError, parse_function_call, requery_view
from srft_megatron.evaluate.local_env import LocalEnvironment, refused
from srft_megatron.evaluate.xml_actions import XmlFormatError, format_error, parse_xml_action

API_KEYS = ("role", "content", "tool_calls", "tool_call_id")  # what SWE-agent sends of a history entry
MESSAGE_TYPES = {"system": "system_prompt", "user": "observation", "tool": "observation", "assistant": "action"}


# mini-swe-agent's exits that SWE-agent ends with an autosubmission, as SWE-agent names them
# (sweagent/agent/agents.py, forward_with_handling): its step limit is SWE-agent's
# `per_instance_call_limit`, which raises a CostLimitExceededError like the cost limit -> exit_cost
AUTOSUBMIT_EXITS = {"LimitsExceeded": "exit_cost", "TimeExceeded": "exit_total_execution_time",
                    "RepeatedFormatError": "exit_format"}


def error_exit(exc: Exception) -> str:
    """SWE-agent's exit status for an error that ends a step (forward_with_handling): the context
    window (litellm maps vLLM's "maximum context length" to ContextWindowExceededError), the model
    API after its retries, anything else."""
    if type(exc).__name__ == "ContextWindowExceededError":
        return "exit_context"
    if type(exc).__module__.split(".")[0] in ("litellm", "openai"):
        return "exit_api"
    return "exit_error"


class SweAgentExits:
    """Ends a run on a limit or on repeated format errors as SWE-agent does, for any DefaultAgent.

    Why: SWE-agent then autosubmits (`attempt_autosubmission_after_error`): it runs the submission
    command (`git add -A && git diff --cached`) and the working tree's diff becomes the submission,
    exit status `submitted (exit_cost)` / `submitted (exit_format)`, or the bare `exit_cost` with no
    patch when nothing changed (`handle_submission`). mini-swe-agent submits an empty patch, so a
    rollout with its fix in place would count as unresolved and resolve rates would not compare
    with the paper's. The hook is the exit message: every exit passes through `add_messages`."""

    def add_messages(self, *messages: dict) -> list[dict]:
        if messages and messages[-1].get("role") == "exit":
            status = AUTOSUBMIT_EXITS.get(messages[-1].get("extra", {}).get("exit_status"))
            if status is not None:
                messages = (*messages[:-1], self.autosubmit(messages[-1], status))
        return super().add_messages(*messages)

    def autosubmit(self, message: dict, status: str) -> dict:
        """`message` (the run's exit) with SWE-agent's submission and exit status `status`."""
        extra = message.get("extra", {})
        try:  # the profile's `submit` in every environment kind: a tool (ProfileEnvironment, ShellTools)
            # or mini-swe-agent's own submit command (its stock environments end the run on the marker)
            self.env.execute({"tool": "submit", "arguments": {}, "command": tool_command("submit", {})})
            submission = ""
        except Submitted as done:
            submission = done.messages[0].get("extra", {}).get("submission") or ""
        except Exception as exc:  # SWE-agent: a failed submission command leaves the run unsubmitted
            self.logger.error("autosubmission failed: %s", exc)
            submission = ""
        if not submission.strip():
            return {**message, "extra": {**extra, "exit_status": status, "submission": ""}}
        return {**message, "content": "Exited (autosubmitted)",
                "extra": {**extra, "exit_status": f"submitted ({status})", "submission": submission}}


class ProfileAgentConfig(AgentConfig):
    profile: str = "swe-agent"
    system_template: str = ""
    instance_template: str = ""


class ProfileAgent(SweAgentExits, DefaultAgent):
    def __init__(self, model, env, **kwargs):
        super().__init__(model, env, config_class=ProfileAgentConfig, **kwargs)
        self.profile = load_agent_profile(self.config.profile)
        self.config.system_template = self.profile.templates["system_template"]
        self.config.instance_template = self.profile.templates["instance_template"]
        if not self.config.step_limit:
            self.config.step_limit = int(self.profile.limits.get("step_limit") or 0)
        if "max_consecutive_format_errors" not in kwargs:
            self.config.max_consecutive_format_errors = self.profile.max_requeries()

    def get_template_vars(self, **kwargs) -> dict:
        return super().get_template_vars(problem_statement=self.extra_template_vars.get("task", ""),
                                         working_dir=self.profile.working_dir, **kwargs)

    def add_messages(self, *messages: dict) -> list[dict]:
        return super().add_messages(*({"message_type": MESSAGE_TYPES[m["role"]], **m}
                                      if m.get("role") in MESSAGE_TYPES else m for m in messages))


class ProfileModelConfig(LitellmModelConfig):
    profile: str = "swe-agent"
    model_name: str = "replay"
    shell_actions: bool = False
    """Give every action a shell `command` (`tool_command`), so mini-swe-agent's stock environments
    (docker, singularity, local) run the profile's tools: what `srft evaluate --profile` uses."""


def parse_tool_calls(content: str, calls: list[dict], tools: list[dict]) -> list[dict]:
    """The one action of a tool-calling reply, by SWE-agent's `function_calling` rules
    (`evaluate/function_calls.py`); a refused reply raises FormatError like `parse_xml_actions`."""
    try:
        call = parse_function_call(content or "", calls, tools)
    except FunctionCallError as exc:
        raise _refused(content, exc.reply()) from None
    return [{"tool": call.tool, "arguments": call.arguments, "tool_call_id": call.tool_call_id}]


def _refused(content: str, reply: str) -> FormatError:
    """mini-swe-agent's FormatError for a refused reply, carrying what SWE-agent's requery shows:
    the reply's text and SWE-agent's answer (`message_type` assistant and user: history processors
    count neither)."""
    return FormatError({"role": "assistant", "content": content or "", "message_type": "assistant",
                        "extra": {"interrupt_type": "FormatError"}},
                       {"role": "user", "content": reply, "message_type": "user",
                        "extra": {"interrupt_type": "FormatError"}})


def parse_xml_actions(content: str, tools: list[dict]) -> list[dict]:
    """The one action of an xml reply (SWE-agent's `xml_function_calling`, `evaluate/xml_actions.py`)."""
    try:
        action = parse_xml_action(content or "", tools)
    except XmlFormatError as exc:
        raise _refused(content, format_error(str(exc))) from None
    return [{"tool": action.tool, "arguments": action.arguments, "tool_call_id": None}]


class ProfileModel(LitellmModel):
    def __init__(self, *, config_class=ProfileModelConfig, **kwargs):
        super().__init__(config_class=config_class, **kwargs)
        self.profile = load_agent_profile(self.config.profile)

    def _prepare_messages_for_api(self, messages: list[dict]) -> list[dict]:
        # message types from roles where the agent class did not set them (mini-swe-agent's batch
        # runner uses its own agent class): what SWE-agent's history processors read
        typed = [{"message_type": MESSAGE_TYPES.get(m.get("role")), **m} for m in requery_view(messages)]
        processed = self.profile.process_history(typed)
        # a text (xml) reply has no tool calls: litellm's `tool_calls: None` is not sent
        return [{k: m[k] for k in API_KEYS if k in m and (k == "content" or m[k] is not None)} for m in processed]

    def get_template_vars(self, **kwargs) -> dict[str, Any]:
        return super().get_template_vars(**kwargs) | {"working_dir": self.profile.working_dir}

    def _actions(self, calls: list[dict], content: str = "") -> list[dict]:
        if self.profile.render == "xml":
            actions = parse_xml_actions(content, self.profile.tool_schemas())
        else:
            actions = parse_tool_calls(content, calls, self.profile.tool_schemas())
        if self.config.shell_actions:
            for action in actions:
                action["command"] = tool_command(action["tool"], action["arguments"])
        return actions

    def _query(self, messages: list[dict], **kwargs):
        import litellm

        # _skip_mcp_handler: with `tools`, litellm (.venv-agent's pin) first imports its MCP gateway,
        # which needs the `mcp` package the agent venv lacks (ModuleNotFoundError on every request);
        # our tools are plain function schemas, never MCP servers
        return litellm.completion(model=self.config.model_name, messages=messages, tools=self.profile.request_tools(),
                                  _skip_mcp_handler=True, **(self.config.model_kwargs | kwargs))

    def _parse_actions(self, response) -> list[dict]:
        message = response.choices[0].message
        return self._actions([c.model_dump() for c in (message.tool_calls or [])], message.content or "")

    def format_observation_messages(self, message: dict, outputs: list[dict], template_vars=None) -> list[dict]:
        actions = message.get("extra", {}).get("actions", [])
        if self.config.shell_actions:
            outputs = [shell_output(a["tool"], o) for a, o in zip(actions, outputs)]
        if self.profile.render == "xml":  # SWE-agent: an observation without a tool call is a user turn
            return [{"role": "user", "content": self.profile.observation(o["output"])} for o in outputs]
        return [{"role": "tool", "tool_call_id": a["tool_call_id"], "content": self.profile.observation(o["output"])}
                for a, o in zip(actions, outputs)]


class ReplayModelConfig(ProfileModelConfig):
    trajectory: str
    requests_path: str


class ReplayModel(ProfileModel):
    """The recorded replies of a SWE-agent `.traj`, in order; every request is appended to a JSONL file."""

    def __init__(self, *, config_class: type = ReplayModelConfig, **kwargs):
        super().__init__(config_class=config_class, **kwargs)
        from srft_megatron.evaluate import replay
        from srft_megatron.ingest import read_swe_agent_traj

        (item,) = read_swe_agent_traj(Path(self.config.trajectory))
        self.steps = replay.ReplayModel.from_trajectory(item.result, self.profile.render).steps
        self.n = 0

    def query(self, messages: list[dict], **kwargs) -> dict:
        prepared = self._prepare_messages_for_api(messages)
        with open(self.config.requests_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": self.n + 1, "messages": prepared,
                                     "tools": self.profile.request_tools()}) + "\n")
        if self.n >= len(self.steps):  # the recording ends without a submit: SWE-agent would autosubmit
            raise LimitsExceeded({"role": "exit", "content": "replay exhausted",
                                  "extra": {"exit_status": "exit_replay_exhausted", "submission": ""}})
        recorded = self.steps[self.n]
        self.n += 1
        calls = recorded.get("tool_calls") or []
        actions = self._actions(calls, recorded.get("content") or "")
        return {"role": "assistant", "content": recorded.get("content") or "", **({"tool_calls": calls} if calls else {}),
                "extra": {"actions": actions, "cost": 0.0}}


class ProfileEnvironmentConfig(BaseModel):
    cwd: str
    working_dir: str = "/testbed"


class ProfileEnvironment:
    def __init__(self, *, config_class: type = ProfileEnvironmentConfig, **kwargs):
        self.config = config_class(**kwargs)
        self.env = LocalEnvironment(Path(self.config.cwd), self.config.working_dir)

    def run_tool(self, action: dict) -> str:
        return self.env.execute(action["tool"], action["arguments"])

    def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        output = self.run_tool(action)
        if action["tool"] == "submit":
            raise Submitted({"role": "exit", "content": output,
                             "extra": {"exit_status": "Submitted", "submission": self.env.submission}})
        return {"output": output, "returncode": 0, "exception_info": ""}

    def get_template_vars(self, **kwargs) -> dict[str, Any]:
        return self.config.model_dump() | kwargs

    def serialize(self) -> dict:
        return {"info": {"config": {"environment": self.config.model_dump(mode="json"),
                                    "environment_type": f"{self.__class__.__module__}.{self.__class__.__name__}"}}}


SUBMIT_MARKER = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"  # mini-swe-agent's environments end the run on it
EDITOR_HISTORY_FILE = "/tmp/.srft_editor_history.json"


def tool_command(tool: str, args: dict, history_file: str = EDITOR_HISTORY_FILE) -> str:
    """One call of the profile's tools as the shell command any environment can run: bash as is
    (an interactive program is answered with SWE-agent's refusal), `str_replace_editor` as
    `evaluate/editor.py`'s own source through `python3 -c` (a container has no srft_megatron) with
    its undo history in a file, `submit` as mini-swe-agent's submit marker then `git diff --cached`."""
    if tool == "bash":
        command = args.get("command", "")
        message = refused(command)
        return command if message is None else f"echo {shlex.quote(message)}"
    if tool == "str_replace_editor":
        source = Path(editor.__file__).read_text(encoding="utf-8")
        return f"python3 -c {shlex.quote(source)} {shlex.quote(json.dumps(args))} {shlex.quote(history_file)}"
    if tool == "submit":
        return f"echo {SUBMIT_MARKER} && git add -A && git diff --cached"
    raise ValueError(f"no shell command for tool {tool!r}")


class ShellTools:
    """The profile's tools as shell commands, for any mini-swe-agent environment (Docker, Singularity,
    local): bash as is (interactive programs refused as SWE-agent does), `str_replace_editor` as
    `evaluate/editor.py` run by the environment's python3 with its undo history in a file, `submit`
    as `git add -A && git diff --cached` in the working directory, which ends the run."""

    HISTORY_FILE = EDITOR_HISTORY_FILE

    def execute(self, action: dict, cwd: str = "", *, timeout: int | None = None) -> dict[str, Any]:
        tool = action.get("tool", "bash")
        try:
            command = tool_command(tool, action.get("arguments") or {}, self.HISTORY_FILE)
        except ValueError as exc:
            return {"output": str(exc), "returncode": 1, "exception_info": ""}
        try:
            return shell_output(tool, super().execute({"command": command}, cwd, timeout=timeout))
        except Submitted as done:  # the environment saw the marker: the submission is the diff
            done.messages[0]["content"] = done.messages[0]["extra"]["submission"].rstrip("\n")
            raise


def shell_output(tool: str, result: dict[str, Any]) -> dict[str, Any]:
    """As local_env returns it: a tool's output without its trailing newlines (the editor's exact)."""
    if tool != "str_replace_editor":
        result = dict(result, output=result["output"].rstrip("\n"))
    return result


class ProfileBatchAgent(SweAgentExits, ProgressTrackingAgent):
    """The agent of mini-swe-agent's SWE-bench batch runner (`evaluate/mini_batch.py`), exiting as
    SWE-agent: on limits and format errors (SweAgentExits) and on an error in a step, which
    mini-swe-agent re-raises (its batch runner then records an empty patch) where SWE-agent
    autosubmits (`exit_context`, `exit_api`, `exit_error`). Only here: in `srft check-scaffold`'s
    replay (ProfileAgent) an error must surface."""

    def run(self, task: str = "", **kwargs) -> dict:
        try:
            return super().run(task, **kwargs)
        except Exception as exc:  # DefaultAgent.run has recorded it (traceback) as the exit message
            self.messages[-1] = self.autosubmit(self.messages[-1], error_exit(exc))
            return self.messages[-1]["extra"]


class ProfileDockerEnvironment(ShellTools, DockerEnvironment):
    """SWE-bench's Docker image with the profile's tools (`srft evaluate --profile`)."""


class ProfileShellEnvironment(ShellTools, MiniLocalEnvironment):
    """The profile's tools as shell commands on this machine (`environment.cwd`), no container."""


class ReplayEnvironmentConfig(ProfileEnvironmentConfig):
    recorded_outputs: list[str] | None = None


class ReplayEnvironment(ProfileEnvironment):
    """Runs every call, but answers with the recorded output (a pytest wall time is not a scaffold change)."""

    def __init__(self, **kwargs):
        super().__init__(config_class=ReplayEnvironmentConfig, **kwargs)
        self.n = 0

    def run_tool(self, action: dict) -> str:
        live = super().run_tool(action)
        outputs = self.config.recorded_outputs
        self.n += 1
        return outputs[self.n - 1] if outputs is not None else live


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="replay a .traj through mini-swe-agent with an agent profile")
    parser.add_argument("--trajectory", required=True)
    parser.add_argument("--profile", default="swe-agent")
    parser.add_argument("--repo", required=True, help="a git checkout the calls run on")
    parser.add_argument("--task", required=True, help="file holding the problem statement")
    parser.add_argument("--recorded-outputs", help="JSON file: the recorded tool outputs, one per step")
    parser.add_argument("--requests", required=True, help="JSONL file the requests are appended to")
    parser.add_argument("--output", required=True, help="where mini-swe-agent saves its trajectory")
    args = parser.parse_args(argv)
    profile = load_agent_profile(args.profile)
    outputs = json.loads(Path(args.recorded_outputs).read_text()) if args.recorded_outputs else None
    module = __name__ if __name__ != "__main__" else "srft_megatron.evaluate.mini_profile"
    model = get_model(config={"model_class": f"{module}.ReplayModel", "model_name": "replay", "profile": args.profile,
                              "trajectory": args.trajectory, "requests_path": args.requests})
    env = get_environment({"environment_class": f"{module}.ReplayEnvironment", "cwd": args.repo,
                           "working_dir": profile.working_dir, "recorded_outputs": outputs})
    agent = get_agent_class(f"{module}.ProfileAgent")(model, env, profile=args.profile,
                                                       output_path=Path(args.output), cost_limit=0)
    result = agent.run(task=Path(args.task).read_text(encoding="utf-8"))
    print(json.dumps({"exit_status": result.get("exit_status"), "steps": model.n}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
