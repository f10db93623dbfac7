"""The paper's experiment matrix: one `srft launch` pipeline per row (and training seed), then
one `srft report-eval` comparing the rows (`srft_megatron/launch/matrix.py`).

    srft matrix specs configs/experiments/paper.yaml                        # write + validate specs
    srft matrix launch configs/experiments/paper.yaml --rows srft,rft --dry-run   # print sbatch scripts
    srft matrix launch configs/experiments/paper.yaml                       # submit every row
    srft matrix report configs/experiments/paper.yaml                       # table, CIs, plot

`specs` writes RUNS_ROOT/specs/ROW.yaml (checked with `srft launch`'s own parser) and each
trained row's configs/train.yaml; `launch` does that, then runs `srft launch` per row (detached
on SLURM, so rows run in parallel); `report` runs `srft report-eval` over the rows' evaluations,
pooling a row's training seeds.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["specs", "launch", "report"],
                        help="specs: write one pipeline spec per row; launch: specs + `srft launch` per row; "
                             "report: `srft report-eval` over the rows' evaluations")
    parser.add_argument("matrix", metavar="CONFIG", help="matrix config (configs/experiments/*.yaml)")
    parser.add_argument("--rows", default=None, help="comma-separated subset of rows (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="launch: print the sbatch scripts, submit nothing")
    parser.add_argument("--executor", choices=["slurm", "local"], default=None, help="override executor.kind")
    parser.add_argument("--base-dir", default=".", help="directory that relative paths in the config start from")
    parser.add_argument("--out", default=None, help="report: output directory (default RUNS_ROOT/report)")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.launch import matrix as em

    matrix = em.load_matrix(args.matrix)
    base = Path(args.base_dir)
    only = [r.strip() for r in args.rows.split(",")] if args.rows else None
    rows = em.build_rows(matrix, base, only)
    if args.action == "report":
        out = Path(args.out) if args.out else (base / matrix["runs_root"] / "report")
        return subprocess.run(em.report_command(matrix, rows, out)).returncode
    em.write_specs(matrix, rows, base)
    em.validate(rows)
    for row in rows:
        print(f"{row.name}: {row.spec_path} -> run dir {row.run_dir}")
    if args.action == "specs":
        return 0
    return em.launch(rows, dry_run=args.dry_run, executor=args.executor)
