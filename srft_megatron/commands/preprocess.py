"""Tokenise trajectories by step into Megatron indexed datasets with a loss-weight channel.

    srft preprocess --trajectories trajectories.jsonl --labels labels.jsonl --policy srft \\
        --tokenizer qwen2.5 --seq-length 32768 --output-prefix data/srft --workers 8
    srft preprocess ... --profile swe-smith   # the scaffold of evaluation: xml render, SWE-smith's tools

Writes PREFIX_tokens.{bin,idx}, PREFIX_weights.{bin,idx} and PREFIX.meta.json (DESIGN §4),
atomically: an interrupted run leaves no dataset behind. Bad records go to
PREFIX.rejects.jsonl with their reason (or stop the run under --strict).
Policies: naive, rft, srft, unresolved-only, unresolved-masked, all-masked (see
srft_megatron/policy.py); knobs refine them.
"""

from __future__ import annotations

import argparse

from srft_megatron import policy as policy_options
from srft_megatron.errors import ConfigError
from srft_megatron.render import RENDER_MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trajectories", required=True, help="trajectories.jsonl (from srft ingest)")
    parser.add_argument("--labels", help="labels.jsonl (from srft label); needed by masking policies")
    policy_options.add_arguments(parser)
    parser.add_argument("--tokenizer", default="qwen2.5", help="'qwen2.5' (offline) or a HF tokenizer directory")
    parser.add_argument("--profile", metavar="NAME|YAML",
                        help="agent profile the model will be evaluated in (srft evaluate/check-scaffold --profile): "
                             "its render and tools, e.g. swe-agent (tools render) or swe-smith (xml)")
    parser.add_argument("--render", default=None, choices=RENDER_MODES,
                        help="tools (default): native tool calls; xml: SWE-smith's <function=...> text format")
    parser.add_argument("--tools", metavar="FILE|PROFILE",
                        help="tools the agent was given, for every trajectory (overrides their own): a JSON "
                             "list of OpenAI tool objects, or a shipped profile (swe-agent, swe-smith)")
    parser.add_argument("--seq-length", type=int, required=True, help="training sequence length")
    parser.add_argument("--overlong", default="cut", choices=["cut", "drop"],
                        help="a trajectory longer than seq-length is cut at a step boundary, or dropped")
    parser.add_argument("--output-prefix", required=True, help="PREFIX of the dataset files")
    parser.add_argument("--workers", type=int, default=1, help="tokeniser worker processes")
    parser.add_argument("--rejects", help="reject file (default: PREFIX.rejects.jsonl)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad record")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def render_and_tools(args: argparse.Namespace) -> tuple[str, str | None]:
    """`--profile` decides the render and the tools (its tool profile), as it does for the agent;
    `--render`/`--tools` alone keep their meaning. Both, disagreeing, is refused."""
    if not args.profile:
        return args.render or "tools", args.tools
    from srft_megatron.agent_profile import load_agent_profile

    profile = load_agent_profile(args.profile)
    if args.render and args.render != profile.render:
        raise ConfigError(f"--render {args.render} contradicts --profile {profile.name} (render {profile.render})")
    if args.tools:
        raise ConfigError(f"--tools with --profile: the profile's tools are {profile.tools!r}; give one of them")
    return profile.render, profile.tools


def main(args: argparse.Namespace) -> int:
    from srft_megatron.preprocess import PreprocessJob, run_preprocess

    policy = policy_options.from_args(args)
    render, tools = render_and_tools(args)
    job = PreprocessJob(trajectories=args.trajectories, labels=args.labels, policy=policy,
                        tokenizer=args.tokenizer, render=render, tools=tools, seq_length=args.seq_length,
                        overlong=args.overlong, output_prefix=args.output_prefix, workers=args.workers,
                        strict=args.strict, rejects=args.rejects, progress=not args.quiet)
    meta = run_preprocess(job)
    c = meta["counts"]
    frac = c["weighted_tokens"] / c["tokens"] if c["tokens"] else 0.0
    print(f"wrote {c['documents']} documents, {c['tokens']} tokens ({frac:.1%} weighted) to "
          f"{args.output_prefix}_{{tokens,weights}}; skipped {sum(c['skipped'].values())}, "
          f"rejected {sum(c['rejected'].values())}, cut {c['truncated']}")
    if c.get("newline_steps"):
        print(f"{c['newline_steps']} steps start with a newline: trained as generated, their first newline "
              "merges with the header's when a later prompt is tokenised as a whole (README)")
    print(f"summary: srft report {args.output_prefix}")
    return 0
