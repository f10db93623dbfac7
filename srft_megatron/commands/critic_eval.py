"""Score critic labels against expert (reference) labels: the paper's Table 3.

    srft critic-eval --labels labels.jsonl --reference expert_labels.jsonl [--json metrics.json]

Both files are labels files (DESIGN §2). Prints per-label precision / recall / F1 / support,
accuracy, macro F1 and the confusion matrix; steps are paired by trajectory id and step number.
Reference trajectories the critic did not label, and pairs with different step counts, are
counted and listed (`--json`), not silently dropped. Malformed lines in either file are an
error naming file and line (exit 2), unless --lenient, which skips and reports them.
"""

from __future__ import annotations

import argparse
import sys

from srft_megatron.critic.metrics import compare
from srft_megatron.errors import InputError
from srft_megatron.io import write_json
from srft_megatron.trajectory import read_labels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", required=True, metavar="L.jsonl", help="critic labels (srft label output)")
    parser.add_argument("--reference", required=True, metavar="R.jsonl", help="expert labels, same format")
    parser.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    parser.add_argument("--lenient", action="store_true", help="skip malformed lines (reported) instead of failing")


def _read(path: str, lenient: bool):
    records, errors = read_labels(path)
    if errors and not lenient:
        raise errors[0]
    for err in errors:
        print(f"srft critic-eval: skipped: {err}", file=sys.stderr)
    return records


def main(args: argparse.Namespace) -> int:
    predicted = _read(args.labels, args.lenient)
    reference = _read(args.reference, args.lenient)
    result = compare(predicted, reference)
    if result.steps == 0:
        raise InputError("no step is labelled in both files (do the trajectory ids match?)", file=args.labels)
    print(result.table())
    if args.json:
        write_json(args.json, result.to_json())
    return 0
