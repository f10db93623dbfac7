"""Resolved rates, pass@k and paired bootstrap CIs from swebench harness reports.

Each --run names a model and its rollouts: harness summary reports (the JSON that
`swebench.harness.run_evaluation` writes, one per rollout) or `srft evaluate` run
directories. Prints terminal tables; with --out also writes report.md, report.json and
report.png.

    srft report-eval --run srft=runs/eval-srft --run rft=runs/eval-rft --compare srft rft --out reports/srft-vs-rft
    srft report-eval --run base=r1/base.r1.json,r2/base.r2.json --k 1 2
"""

from __future__ import annotations

import argparse

from srft_megatron.errors import InputError


def _run_spec(text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=REPORT[,REPORT...], got {text!r}")
    return name, [p for p in rest.split(",") if p]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", action="append", type=_run_spec, required=True, metavar="NAME=REPORT[,REPORT...]",
                        help="a model and its rollouts: harness summary report JSON files (one per rollout) "
                             "or `srft evaluate` run directories; repeat for each model")
    parser.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="paired bootstrap CI of resolved %% A - B (repeatable); default: the two "
                             "models when exactly two are given")
    parser.add_argument("--k", type=int, nargs="+", default=None,
                        help="k values for pass@k (default: 1 and the smallest rollout count)")
    parser.add_argument("--replicates", type=int, default=10_000, help="bootstrap replicates (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0; same seed, same CI)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    parser.add_argument("--partial", action="store_true",
                        help="accept `srft evaluate` run directories with fewer scored rollouts than asked for")
    parser.add_argument("--out", default=None, help="directory for report.md, report.json and report.png")
    parser.add_argument("--instances", type=int, default=20,
                        help="per-instance rows shown in the terminal (all go to the Markdown; default 20)")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.evaluate.summary import build_report, print_terminal, write_outputs
    from srft_megatron.evaluate.results import load_model_results

    names = [name for name, _ in args.run]
    if len(set(names)) != len(names):
        raise InputError(f"each --run needs its own NAME, got {names}")
    tables, sources = [], {}
    for name, specs in args.run:
        table, reports = load_model_results(name, specs, partial=args.partial)
        tables.append(table)
        sources[name] = [str(r.path) for r in reports]
    compare = [tuple(pair) for pair in args.compare]
    if not compare and len(tables) == 2:
        compare = [(tables[0].name, tables[1].name)]
    report = build_report(tables, compare, ks=args.k, replicates=args.replicates, seed=args.seed,
                          confidence=args.confidence, sources=sources)
    print_terminal(report, instance_limit=args.instances)
    if args.out:
        paths = write_outputs(report, args.out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
