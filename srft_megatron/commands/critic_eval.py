"""Score critic labels against expert (reference) labels: the paper's Table 3.

    srft critic-eval --labels labels.jsonl --reference expert_labels.jsonl [--json metrics.json]

Both files are labels files (DESIGN §2). Prints per-label precision / recall / F1 / support,
accuracy, macro F1 and the confusion matrix; steps are paired by trajectory id and step number.
Reference trajectories the critic did not label, and pairs with different step counts, are
counted and listed (`--json`), not silently dropped. A bad line in either file (not UTF-8, not
JSON, not a label record) is rejected: reported on stderr with file, line, id and reason, listed
under `rejected` in `--json`, and the rest is scored; `--strict` stops at it instead (exit 2).
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
    parser.add_argument("--strict", action="store_true", help="stop at the first bad line (exit 2)")
    parser.add_argument("--lenient", action="store_true", help=argparse.SUPPRESS)  # the default now


def _read(path: str, strict: bool, rejected: list[InputError]):
    records, errors = read_labels(path)
    if errors and strict:
        raise errors[0]
    for err in errors:
        print(f"rejected: {err}", file=sys.stderr)
    rejected.extend(errors)
    return records


def main(args: argparse.Namespace) -> int:
    rejected: list[InputError] = []
    predicted = _read(args.labels, args.strict, rejected)
    reference = _read(args.reference, args.strict, rejected)
    result = compare(predicted, reference)
    if result.steps == 0:
        raise InputError("no step is labelled in both files (do the trajectory ids match?)"
                         + (f"; {len(rejected)} bad lines rejected" if rejected else ""), file=args.labels)
    print(result.table())
    if rejected:
        print(f"rejected {len(rejected)} bad lines (listed on stderr)")
    if args.json:
        write_json(args.json, {**result.to_json(), "rejected": [
            {"file": e.file, "line": e.line, "id": e.traj_id, "reason": e.reason} for e in rejected]})
    return 0
