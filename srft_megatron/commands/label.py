"""Label every assistant step of each trajectory with a critic LLM served by vLLM replicas.

    srft label --trajectories trajectories.jsonl -o labels.jsonl \\
        --endpoint http://node1:8000 --endpoint http://node2:8000 --model critic \\
        --tokenizer qwen2.5 --max-in-flight 32

Each endpoint is an OpenAI-compatible server (vLLM: `python -m vllm.entrypoints.openai.api_server`
started with `--structured-outputs-config '{"backend":"xgrammar","disable_any_whitespace":true}'`).
Requests go to the least-loaded healthy replica; a replica that stops answering is taken out and
its requests are re-sent to the others; it is taken back when it answers again. The output is
append-only and flushed per record: run the same command again after a crash or pre-emption and
it labels only what is missing. Failures (invalid answers after retries, requests that cannot be
served, bad input records) go to OUTPUT.failures.jsonl with their reasons and raw answers, and are
retried on the next run unless --skip-failed. Exit code: 0 when every trajectory is labelled,
1 when some failed, 2 on bad input or configuration, 3 when no replica answers (what was labelled
before is kept; rerun to resume).

Credentials (a hosted critic, or replicas started with an API key as slurm/critic.sbatch does):
the key is read from `OPENAI_API_KEY` or from `--api-key-file FILE` (never from the command line,
where `ps` shows it) and sent as `Authorization: Bearer KEY`; `http://user:password@host:8000`
is sent as basic auth (give such URLs in `--endpoints-file` to keep them out of `ps` too). Labels, failures and the summary name endpoints with credentials
redacted (`http://***@host:8000/v1`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from srft_megatron.critic.client import NoHealthyEndpoint, PoolConfig
from srft_megatron.critic.labeller import LabelConfig, Labeller
from srft_megatron.critic.prompt import load_prompt
from srft_megatron.critic.transcript import TokenCounter
from srft_megatron.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trajectories", required=True, metavar="T.jsonl",
                        help="normalised trajectories (srft ingest output, DESIGN §1)")
    parser.add_argument("-o", "--output", required=True, metavar="LABELS.jsonl",
                        help="labels file to write or resume (append-only, DESIGN §2)")
    parser.add_argument("--endpoint", action="append", default=[], metavar="URL",
                        help="OpenAI-compatible server, e.g. http://host:8000 or http://host:8000/v1; repeat per replica")
    parser.add_argument("--endpoints-file", metavar="FILE",
                        help="more endpoints, one URL per line (keeps http://user:password@host URLs out of `ps`)")
    parser.add_argument("--api-key-file", metavar="FILE",
                        help="file holding the servers' API key (default: the OPENAI_API_KEY environment variable)")
    parser.add_argument("--model", required=True, help="model name as the servers serve it (--served-model-name)")
    parser.add_argument("--tokenizer", default="qwen2.5",
                        help="tokenizer of the critic for token budgets: 'qwen2.5' or a HF directory (default qwen2.5)")
    parser.add_argument("--prompt", metavar="FILE",
                        help="own prompt template with {{trajectory}} (and optionally {{num_steps}}); default: ours")
    parser.add_argument("--max-in-flight", type=int, default=16, metavar="N",
                        help="outstanding requests per replica (default 16)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")
    parser.add_argument("--max-tokens", type=int, metavar="N",
                        help="answer token cap (default: 64 + --ideal-path-chars + 40 per step)")
    parser.add_argument("--ideal-path-chars", type=int, default=1200, metavar="N",
                        help="length bound of the critic's ideal-path summary; 0 leaves it out (default 1200)")
    parser.add_argument("--max-model-len", type=int, metavar="N",
                        help="critic context length in tokens (default: max_model_len reported by the servers)")
    parser.add_argument("--failures", metavar="FILE", help="failure side file (default: OUTPUT.failures.jsonl)")
    parser.add_argument("--skip-failed", action="store_true",
                        help="do not retry trajectories already in the failures file")
    parser.add_argument("--invalid-retries", type=int, default=2, metavar="N",
                        help="times an invalid answer is asked again before it is a failure (default 2)")
    parser.add_argument("--retries", type=int, default=6, metavar="N",
                        help="retries of a request after a time-out, connection error, 5xx or 429 (default 6)")
    parser.add_argument("--request-timeout", type=float, default=600.0, metavar="S",
                        help="seconds one request may take (default 600)")
    parser.add_argument("--eject-after", type=int, default=2, metavar="N",
                        help="consecutive failures after which a replica is taken out (default 2)")
    parser.add_argument("--health-interval", type=float, default=2.0, metavar="S",
                        help="seconds between health checks of a replica that was taken out (default 2)")
    parser.add_argument("--all-down-timeout", type=float, default=300.0, metavar="S",
                        help="give up when every replica has been down this long (default 300)")
    parser.add_argument("--wait-for-endpoints", type=float, default=60.0, metavar="S",
                        help="at start, wait this long for at least one replica to answer (default 60)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file, else $OPENAI_API_KEY, else None (servers without a key)."""
    if args.api_key_file:
        try:
            key = open(args.api_key_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise ConfigError(f"--api-key-file {args.api_key_file}: {exc.strerror}") from None
        if not key or "\n" in key:
            raise ConfigError(f"--api-key-file {args.api_key_file}: expected the key alone on one line")
        return key
    return os.environ.get("OPENAI_API_KEY", "").strip() or None


def endpoints(args: argparse.Namespace) -> list[str]:
    urls = list(args.endpoint)
    if args.endpoints_file:
        try:
            text = open(args.endpoints_file, encoding="utf-8").read()
        except OSError as exc:
            raise ConfigError(f"--endpoints-file {args.endpoints_file}: {exc.strerror}") from None
        urls += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not urls:
        raise ConfigError("give at least one --endpoint URL (or --endpoints-file)")
    return urls


def build_config(args: argparse.Namespace) -> LabelConfig:
    if args.max_in_flight < 1:
        raise ConfigError("--max-in-flight must be at least 1")
    if args.ideal_path_chars < 0:
        raise ConfigError("--ideal-path-chars must be >= 0")
    pool = PoolConfig(max_in_flight=args.max_in_flight, request_timeout=args.request_timeout,
                      retries=args.retries, eject_after=args.eject_after, health_interval=args.health_interval,
                      all_down_timeout=args.all_down_timeout)
    return LabelConfig(model=args.model, endpoints=endpoints(args), template=load_prompt(args.prompt),
                       tokenizer=args.tokenizer, temperature=args.temperature, max_tokens=args.max_tokens,
                       ideal_path_chars=args.ideal_path_chars, max_model_len=args.max_model_len,
                       invalid_retries=args.invalid_retries, wait_for_endpoints=args.wait_for_endpoints, pool=pool,
                       api_key=api_key(args))


def main(args: argparse.Namespace) -> int:
    config = build_config(args)
    open(args.trajectories, encoding="utf-8").close()  # a missing input fails here, before any server is asked
    labeller = Labeller(config, TokenCounter.load(args.tokenizer))
    failures = args.failures or f"{args.output}.failures.jsonl"
    try:
        totals = asyncio.run(labeller.run(args.trajectories, args.output, failures,
                                          retry_failed=not args.skip_failed, progress=not args.quiet))
    except (NoHealthyEndpoint, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"srft label: error: {exc}", file=sys.stderr)
        print(labeller.totals.summary(), file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 3
    print(totals.summary())
    if totals.failed:
        print(f"{totals.failed} failures recorded in {failures}", file=sys.stderr)
        return 1
    return 0
