"""Summarise a preprocessed dataset: the paper's Table 1 for our data.

    srft report data/srft            # a table on the terminal
    srft report data/srft --json     # the same numbers as JSON
    srft report data/srft --seq-length 32768 --json report.json
                                     # + the packing training gets at 32768, written to a file
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefixes", nargs="+", metavar="PREFIX", help="dataset prefix(es) from srft preprocess")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help="print JSON instead of tables; with FILE, print the tables and write the JSON "
                             "there (atomically; a list when several prefixes are given)")
    parser.add_argument("--seq-length", type=int, default=None, metavar="N",
                        help="also report the packing training gets at N: utilisation and samples per epoch")
    parser.add_argument("--seed", type=int, default=1234, help="packing seed (train.seed; default %(default)s)")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.dataset_report import dataset_summary, print_summary

    summaries = []
    for prefix in args.prefixes:
        summary = dataset_summary(prefix, args.seq_length, args.seed)
        summaries.append(summary)
        if args.json == "-":
            print(json.dumps(summary, indent=2))
        else:  # with --json FILE the tables are printed too, and the file holds all they show
            print_summary(summary)
    if args.json not in (None, "-"):
        from srft_megatron.io import write_json

        write_json(args.json, summaries[0] if len(summaries) == 1 else summaries)
        print(f"wrote {args.json}")
    return 0
