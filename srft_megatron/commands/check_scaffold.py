"""Replay a trajectory through the evaluation agent of a profile and prove, step by step and token
for token, that its requests are the training render of the same trajectory.

The recorded actions are executed in a local environment (a git copy of --repo, mapped to the
profile's working directory; the bundled examples find theirs), the model is a replay of the
recorded replies, and the agent's messages + tools before each step are tokenised as the server
would (the chat template here, or a real vLLM server's /tokenize with --endpoint). Exit 1 when
any step differs, 2 on bad input.

    srft check-scaffold --trajectory examples/trajectories/datekit-1__clean.traj --json check.json
    srft check-scaffold --trajectory run/x.traj --profile swe-smith --repo /src/project --json check.json
    srft check-scaffold --trajectory T.traj --endpoint http://127.0.0.1:8000/v1 --served-name srft-7b --json c.json

--json writes {steps_compared, mismatched_steps, first_mismatch: {step, token, expected, got},
agent_trajectory, steps: [...]}; the agent's own run is written next to it as FILE.agent.traj
(a SWE-agent .traj that `srft ingest` reads).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trajectory", required=True, help="a SWE-agent .traj with tool-calling steps")
    parser.add_argument("--profile", default="swe-agent",
                        help="agent profile: a shipped name (swe-agent, swe-smith), a profile YAML or a SWE-agent "
                             "run config YAML (converted; default swe-agent)")
    parser.add_argument("--repo", help="the repository at the task's base commit (default: found for bundled examples)")
    parser.add_argument("--tokenizer", default="qwen2.5", help="tokenizer name or directory (default qwen2.5)")
    parser.add_argument("--endpoint", help="a running vLLM server (…/v1): tokenise the agent's requests with its /tokenize")
    parser.add_argument("--served-name", help="the model name on --endpoint")
    parser.add_argument("--live-observations", action="store_true",
                        help="build observations from the live tool outputs, not the recorded ones (a timing "
                             "in a test summary then counts as a mismatch)")
    parser.add_argument("--driver", choices=("profile", "mini-swe-agent"), default="profile",
                        help="the agent: the profile's own message builder (default) or mini-swe-agent with the "
                             "profile's agent/model/environment classes (needs .venv-agent)")
    parser.add_argument("--json", required=True, metavar="FILE", help="write the per-step comparison as JSON")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.agent_profile import load_agent_profile
    from srft_megatron.errors import ConfigError, InputError
    from srft_megatron.evaluate.scaffold_check import VllmTokenize, check_scaffold, table
    from srft_megatron.io import write_json
    from srft_megatron.tokenizer import load_tokenizer

    path = Path(args.trajectory)
    if not path.is_file():
        raise InputError("trajectory file not found", file=str(path))
    if args.endpoint and not args.served_name:
        raise ConfigError("--endpoint needs --served-name (the model name that server serves)")
    profile = load_agent_profile(args.profile)
    tokenizer = load_tokenizer(args.tokenizer)
    tokenize = VllmTokenize(args.endpoint, args.served_name) if args.endpoint else None
    out = Path(args.json)
    agent_traj = out.with_name(out.name.removesuffix(".json") + ".agent.traj")
    agent_python = None
    if args.driver == "mini-swe-agent":
        from srft_megatron import settings

        agent_python = settings.AGENT.python
        if not agent_python.exists():
            raise ConfigError(f"{agent_python} missing: run `bash scripts/agent_venv.sh` first "
                              f"(or set {settings.AGENT.env_var} to a venv with mini-swe-agent)")
    result = check_scaffold(path, profile, tokenizer, repo=Path(args.repo) if args.repo else None,
                            tokenize=tokenize, agent_traj_path=agent_traj, live=args.live_observations,
                            agent_python=agent_python)
    print(table(result))
    summary = result.summary()
    write_json(out, summary)
    verdict = "same context at every step" if not result.mismatched else \
        f"{summary['mismatched_steps']} steps differ, first at step {summary['first_mismatch']['step']}"
    if result.env_differences:
        print(f"note: the live output differed from the recorded one at steps {result.env_differences} "
              f"(observations built from the {result.observations} outputs)")
    print(f"{path.name} in profile {profile.name} ({result.driver}): {summary['steps_compared']}/{result.recorded_steps} steps "
          f"compared ({'local tokenizer' if tokenize is None else 'vLLM /tokenize'}): {verdict}")
    return 1 if result.mismatched else 0
