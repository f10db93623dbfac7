"""Normalise agent logs into one trajectories.jsonl (DESIGN §1): SWE-agent .traj files,
mini-swe-agent .traj.json files (what `srft evaluate` writes), rows of the SWE-smith,
SWE-Gym/OpenHands and nebius SWE-agent-trajectories datasets (JSONL/JSON/Parquet), and
normalised JSONL. Every rollout gets its own id (`ingest.rollout_id`, `ingest.content_id`).

    srft ingest ../shared/data/trajectories/*.traj rows.parquet -o trajectories.jsonl \\
        --resolved results/report.json

Bad records are written to a reject file with their reason (default: OUTPUT.rejects.jsonl)
and counted; `--strict` stops at the first one instead. The output is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from srft_megatron.errors import InputError
from srft_megatron.ingest import read_any, read_resolved
from srft_megatron.io import RejectLog, atomic_open
from srft_megatron.trajectory import Trajectory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="SWE-agent .traj, mini-swe-agent .traj.json, rows (.jsonl/.json/.parquet: SWE-smith, "
                             "SWE-Gym/OpenHands, nebius SWE-agent-trajectories) or normalised .jsonl")
    parser.add_argument("-o", "--output", required=True, help="trajectories.jsonl to write")
    parser.add_argument("--resolved", metavar="FILE",
                        help="resolved status: swebench harness report JSON, or JSONL/CSV of id -> resolved")
    parser.add_argument("--tools", metavar="FILE|PROFILE",
                        help="tools the agent was given, attached to every trajectory without its own: a JSON "
                             "list of OpenAI tool objects, or a shipped profile (swe-agent)")
    parser.add_argument("--rejects", metavar="FILE", help="reject file (default: OUTPUT.rejects.jsonl)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad record")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.tools import load_tools

    tools = load_tools(args.tools) if args.tools else None
    rejects = RejectLog(args.rejects or f"{args.output}.rejects.jsonl")

    def reject(err: InputError, raw=None) -> None:
        if args.strict:
            raise err
        print(f"rejected: {err}", file=sys.stderr)
        rejects.add(err, raw)

    resolved_errors: list[InputError] | None = None if args.strict else []
    resolved = read_resolved(args.resolved, resolved_errors) if args.resolved else {}
    for err in resolved_errors or []:
        reject(err)
    seen: dict[str, str] = {}  # id -> where it was first read, for the duplicate's reason
    counts = {"written": 0, "resolved": 0, "unresolved": 0, "unknown": 0, "steps": 0, "demo_turns": 0}
    with atomic_open(args.output, "w", encoding="utf-8") as out:
        for path in tqdm(args.inputs, desc="ingest", unit="file", disable=args.quiet):
            for item in read_any(path):
                result = item.result
                here = item.file + (f":{item.line}" if item.line is not None else "")
                if isinstance(result, Trajectory) and result.id in seen:
                    result = InputError(f"duplicate trajectory id (first read from {seen[result.id]}; every "
                                        "rollout needs its own id)", file=item.file, line=item.line,
                                        traj_id=result.id)
                if isinstance(result, InputError):
                    reject(result, item.raw)
                    continue
                seen[result.id] = here
                if tools is not None and result.tools is None:
                    result.tools = tools
                if result.id in resolved:
                    result.resolved = resolved[result.id]
                elif result.instance_id in resolved:
                    result.resolved = resolved[result.instance_id]
                key = {True: "resolved", False: "unresolved", None: "unknown"}[result.resolved]
                counts[key] += 1
                counts["written"] += 1
                counts["steps"] += result.num_steps
                counts["demo_turns"] += sum(bool(m.get("is_demo")) for m in result.messages)
                out.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
    rejects.write()
    demos = f", {counts['demo_turns']} demonstration turns kept as context" if counts["demo_turns"] else ""
    print(f"wrote {counts['written']} trajectories ({counts['steps']} steps{demos}; resolved {counts['resolved']}, "
          f"unresolved {counts['unresolved']}, unknown {counts['unknown']}) to {args.output}; "
          f"rejected {len(rejects)}" + (f" -> {rejects.path}" if len(rejects) else ""))
    return 0
