"""Run the agent scaffold (mini-swe-agent's SWE-bench batch runner) against our endpoint.

Why mini-swe-agent: it is the light, maintained SWE-agent scaffold with a batch runner for
SWE-bench that writes exactly what the harness reads (`preds.json`, keyed by instance id)
plus one trajectory per instance, and it resumes by itself: instances already in
`preds.json` are skipped on a rerun. It lives in .venv-agent (scripts/agent_venv.sh); we
run it as a subprocess:

    .venv-agent/bin/python -m minisweagent.run.benchmarks.swebench --subset verified --split test \\
        -o RUN/rollout-01/agent -c swebench.yaml -c RUN/rollout-01/agent_overlay.yaml

With `--profile` the same runner starts through `srft_megatron.evaluate.mini_batch`, whose
agent autosubmits on limits and errors as SWE-agent does. The overlay points its litellm model
at the vLLM server (`openai/SERVED_NAME` with `api_base`), sets the sampling temperature and a
per-rollout seed, and turns off cost tracking (a self-hosted model has no price). Everything is
written to the rollout directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import yaml

from srft_megatron.agent_profile import load_agent_profile
from srft_megatron.io import atomic_open

PREDS = "preds.json"  # mini-swe-agent's predictions file in its output directory
PROFILE_MODEL = "srft_megatron.evaluate.mini_profile.ProfileModel"
PROFILE_RUNNER = "srft_megatron.evaluate.mini_batch"


class AgentError(RuntimeError):
    """The agent runner failed (the message carries the tail of its log)."""


@dataclass
class AgentConfig:
    python: str                     # .venv-agent's interpreter
    dataset: str                    # mini-swe-agent --subset: a name (verified, lite) or a dataset dir
    split: str = "test"
    config: str = "swebench.yaml"   # mini-swe-agent config: a builtin name or a path
    model_class: str = "litellm"    # litellm (tool calls) or litellm_textbased (actions in text)
    environment_class: str = "docker"
    workers: int = 4
    temperature: float = 0.0
    max_tokens: int | None = None
    instance_ids: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # extra KEY=VALUE config specs
    timeout_s: float | None = None
    profile: str | None = None      # an agent profile (name or YAML): the scaffold the model was trained in


def instance_filter(ids: list[str]) -> str:
    """A regex that matches exactly these ids (mini-swe-agent's --filter uses re.match)."""
    return "^(" + "|".join(re.escape(i) for i in ids) + ")$"


def endpoint_secret(endpoint: str) -> str | None:
    """The password in an endpoint URL's userinfo (`https://user:secret@host/v1`), or None."""
    return urlsplit(endpoint).password or None


def write_overlay(path: Path, cfg: AgentConfig, endpoint: str, served_name: str, seed: int) -> None:
    # no api_key here: the overlay is a file (and mini-swe-agent copies it into every trajectory);
    # litellm reads the key from OPENAI_API_KEY, set by run_agent. An endpoint with a password in
    # it is not written either: litellm takes it from OPENAI_BASE_URL (run_agent's environment)
    secret = endpoint_secret(endpoint)
    kwargs = {"temperature": cfg.temperature, "seed": seed}
    if secret is None:
        kwargs = {"api_base": endpoint, **kwargs}
    if cfg.max_tokens:
        kwargs["max_tokens"] = cfg.max_tokens
    overlay = {
        "model": {"model_name": f"openai/{served_name}", "model_class": cfg.model_class,
                  "model_kwargs": kwargs, "cost_tracking": "ignore_errors"},
        "agent": {"cost_limit": 0},  # no price for a self-hosted model: limit steps, not dollars
        "environment": {"environment_class": cfg.environment_class},
    }
    if secret is not None:  # the agent's commands (a local environment inherits the
        # agent's environment) must not read the endpoint back: `env` would print it into a trajectory
        overlay["environment"]["env"] = {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": ""}
    if cfg.profile:
        overlay = profile_overlay(overlay, cfg.profile, path.with_name("agent_profile.yaml"))
    with atomic_open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(overlay, handle, sort_keys=False)


def profile_overlay(overlay: dict, spec: str, profile_path: Path) -> dict:
    """The overlay that makes mini-swe-agent's SWE-bench runner use an agent profile.

    Its batch runner builds its own agent class, so the profile plugs in through the model
    (`mini_profile.ProfileModel`: the profile's tools, history processors and observation
    templates; its tool calls become shell commands that the stock environments run) and the
    agent's config (the profile's system/instance templates, its step limit, SWE-agent's
    `max_requeries` as the format errors in a row that end the run; `agent_command` runs the batch
    runner through `mini_batch`, whose agent autosubmits on these exits as SWE-agent). The templates name
    the task `problem_statement` (SWE-agent's name) where mini-swe-agent says `task`: a Jinja `set`
    at the start binds one to the other and prints nothing. The profile is written next to the
    overlay, so the agent's venv reads the same file whatever `spec` was."""
    profile = load_agent_profile(spec)  # xml profiles too: ProfileModel parses the call in the text
    with atomic_open(profile_path, "w", encoding="utf-8") as handle:
        handle.write(profile.to_yaml())
    bind = "{%- set problem_statement = task -%}"
    out = {key: dict(value) for key, value in overlay.items()}
    out["model"].update(model_class=PROFILE_MODEL, profile=str(profile_path), shell_actions=True)
    out["agent"].update(system_template=bind + profile.templates["system_template"],
                        instance_template=bind + profile.templates["instance_template"],
                        step_limit=int(profile.limits.get("step_limit") or 0),
                        max_consecutive_format_errors=profile.max_requeries())
    return out


def agent_command(cfg: AgentConfig, out_dir: Path, overlay: Path) -> list[str]:
    # with a profile: the same batch runner, with the agent that autosubmits as SWE-agent (mini_batch.py)
    runner = PROFILE_RUNNER if cfg.profile else "minisweagent.run.benchmarks.swebench"
    cmd = [cfg.python, "-m", runner, "--subset", cfg.dataset,
           "--split", cfg.split, "-o", str(out_dir), "-w", str(cfg.workers), "-c", cfg.config,
           "-c", str(overlay)]
    for spec in cfg.overrides:
        cmd += ["-c", spec]
    if cfg.instance_ids:
        cmd += ["--filter", instance_filter(cfg.instance_ids)]
    return cmd


def _copy_masked(stream, log, secret: str) -> None:
    """The agent's output into its log, line by line, with the endpoint's password as `***`
    (as written and percent-encoded, the two forms a URL or an error message can show)."""
    forms = sorted({secret, quote(secret, safe="")}, key=len, reverse=True)
    for line in iter(stream.readline, b""):
        text = line.decode("utf-8", errors="replace")
        for form in forms:
            text = text.replace(form, "***")
        log.write(text.encode("utf-8"))
        log.flush()


def count_predictions(out_dir: Path) -> int:
    try:
        return len(json.loads((out_dir / PREDS).read_text()))
    except (OSError, ValueError):
        return 0


def run_agent(cfg: AgentConfig, rollout_dir: Path, endpoint: str, served_name: str, seed: int,
              progress=None, api_key: str | None = None) -> Path:
    """Run one rollout of the agent; return its predictions file. Resumes a partial rollout."""
    out_dir = rollout_dir / "agent"
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay = rollout_dir / "agent_overlay.yaml"
    write_overlay(overlay, cfg, endpoint, served_name, seed)
    env = dict(os.environ, MSWEA_COST_TRACKING="ignore_errors", MSWEA_SILENT_STARTUP="1",
               MSWEA_GLOBAL_CONFIG_DIR=str(rollout_dir / ".mswea"),
               OPENAI_API_KEY=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
               LITELLM_LOCAL_MODEL_COST_MAP="True")  # no fetch from GitHub (3 tries, offline nodes)
    secret = endpoint_secret(endpoint)
    if secret is not None:  # by environment only, never in a file or an argv (ps shows argv)
        env["OPENAI_BASE_URL"] = endpoint
    if cfg.profile:  # mini-swe-agent imports the profile's classes from this package
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    log_path = rollout_dir / "agent.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(agent_command(cfg, out_dir, overlay), stdout=subprocess.PIPE if secret else log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=rollout_dir)
        copier = None
        if secret is not None:  # an error message quoting the URL must not put the password in the log
            copier = threading.Thread(target=_copy_masked, args=(proc.stdout, log, secret), daemon=True)
            copier.start()
        start, seen = time.monotonic(), -1
        while proc.poll() is None:
            done = count_predictions(out_dir)
            if progress is not None and done != seen:
                progress(done)
                seen = done
            if cfg.timeout_s and time.monotonic() - start > cfg.timeout_s:
                proc.kill()
                proc.wait()
                raise AgentError(f"agent timed out after {cfg.timeout_s:.0f} s; log: {log_path}")
            time.sleep(1.0)
        if copier is not None:
            copier.join()
    if progress is not None:
        progress(count_predictions(out_dir))
    preds = out_dir / PREDS
    if proc.returncode != 0:
        raise AgentError(f"agent exited with code {proc.returncode}; last lines of {log_path}:\n"
                         + "\n".join(log_path.read_text(errors="replace").splitlines()[-25:]))
    if not preds.exists():
        raise AgentError(f"agent finished without writing {preds} (no instances selected?); log: {log_path}")
    _retry_environment_failures(out_dir, log_path, cfg.environment_class)
    return preds


def docker_problem() -> str | None:
    """Why mini-swe-agent's docker environment (it runs the `docker` CLI) cannot start here, or None."""
    executable = os.environ.get("MSWEA_DOCKER_EXECUTABLE", "docker")
    if shutil.which(executable) is None:
        return f"no `{executable}` executable on PATH"
    try:
        proc = subprocess.run([executable, "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"`{executable} info` did not answer in 30 s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return f"no Docker daemon is reachable (`{executable} info`: {lines[-1] if lines else proc.returncode})"
    return None


def _retry_environment_failures(out_dir: Path, log_path: Path, environment_class: str) -> None:
    """Instances whose environment never started must not count as attempts.

    mini-swe-agent records them in preds.json with an empty patch but saves no trajectory
    (the agent never ran), and on a rerun skips every id already in preds.json. Left alone,
    a node without Docker would produce a "done" rollout that resolves nothing. We take them
    out of preds.json (so the rerun retries them) and fail the step."""
    preds_path = out_dir / PREDS
    preds = json.loads(preds_path.read_text())
    failed = sorted(iid for iid in preds if not (out_dir / iid / f"{iid}.traj.json").exists())
    if not failed:
        return
    with atomic_open(preds_path, "w", encoding="utf-8") as handle:
        json.dump({k: v for k, v in preds.items() if k not in failed}, handle, indent=2)
    problem = docker_problem() if "docker" in environment_class else None
    if problem is not None:
        raise AgentError(f"the agent's environment is Docker (SWE-bench's instance images) and {problem}: "
                         f"{len(failed)} of {len(preds)} instances failed before the agent started. Run the agent "
                         "on a machine with Docker (README: Evaluation, the Docker path on a cluster), or with "
                         "--environment local on a checkout (no isolation, tests only); the failed instances were "
                         f"taken out of preds.json and run again on the next try (log: {log_path})")
    raise AgentError(f"{len(failed)} of {len(preds)} instances failed before the agent started (their "
                     f"environment did not start, e.g. no Docker; first: {failed[0]}; see {log_path}); "
                     "they were taken out of preds.json and run again on the next try")
