"""Summarise a preprocessed dataset: the paper's Table 1 for our data.

    srft report data/srft            # a table on the terminal
    srft report data/srft --json     # the same numbers as JSON
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefixes", nargs="+", metavar="PREFIX", help="dataset prefix(es) from srft preprocess")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.report import dataset_summary, print_summary

    for prefix in args.prefixes:
        summary = dataset_summary(prefix)
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print_summary(summary)
    return 0
