"""Submit SRFT pipeline stages with nemo-run (runs in .venv-launch; `srft launch` calls it).

    .venv-launch/bin/python launch/pipeline.py launch/pipelines/qwen2.5-32b.yaml \
        --run-dir runs/qwen32b --stages label,preprocess,train,convert,evaluate
    .venv-launch/bin/python launch/pipeline.py launch/pipelines/tiny-cpu.yaml --run-dir runs/tiny --dry-run

Stages run in pipeline order, each `afterok` on the previous one (SlurmExecutor), or one after
another on this machine (`--executor local`, LocalExecutor). Without --detach it waits, prints
one line per stage (SLURM state, exit code, reason), names the stage that failed with the end of
its log, records everything in RUN/run.json and exits 1 if any stage did not succeed.
nemo-run re-imports this file in its experiment dir: keep the `__main__` guard.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from srft_megatron.errors import ConfigError  # noqa: E402
from srft_megatron.launch.jobs import format_report  # noqa: E402
from srft_megatron.launch.pipeline import add_arguments, load_pipeline, resolve_pipeline  # noqa: E402
from srft_megatron.launch.rundir import RunDir  # noqa: E402


def main(args: argparse.Namespace) -> int:
    args.pipeline = str(resolve_pipeline(args.pipeline, REPO))
    run_dir = RunDir.at(args.run_dir).create()
    only = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    spec = load_pipeline(args.pipeline, run_dir, REPO, only=only, executor_kind=args.executor)
    from srft_megatron.launch import nemorun  # imports nemo_run: only in .venv-launch

    if args.dry_run:
        print(nemorun.dry_run(spec, run_dir, REPO))
        return 0
    shutil.copyfile(args.pipeline, run_dir.configs / "pipeline.yaml")
    results = nemorun.run_pipeline(spec, run_dir, REPO, detach=args.detach)
    report = format_report(results)
    print(report, flush=True)
    run_dir.record_launch({"engine": "nemo-run", "executor": spec.executor.kind, "pipeline": spec.source,
                           "stages": [r.to_json() for r in results]})
    if args.detach:
        return 0
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except ConfigError as exc:
        print(f"launch/pipeline.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
