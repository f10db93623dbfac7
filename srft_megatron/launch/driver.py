"""The nemo-run driver: submit a pipeline's stages with nemo-run (runs in .venv-launch).

`srft launch` runs this module in the nemo-run venv, with the checkout on PYTHONPATH:

    .venv-launch/bin/python -m srft_megatron.launch.driver qwen2.5-32b \
        --run-dir runs/qwen32b --stages label,preprocess,train,convert,evaluate
    .venv-launch/bin/python -m srft_megatron.launch.driver tiny-cpu --run-dir runs/tiny --dry-run

Why a module of the package and not a script: the driver, its options (`pipeline.add_arguments`)
and the recipes (`nemorun.py`) are one package, so nothing loads code by file path. It runs
from the checkout (`settings.checkout_root()`): the jobs run that checkout's .venv and slurm/
scripts on the shared filesystem.

Stages run in pipeline order, each `afterok` on the previous one (SlurmExecutor), or one after
another on this machine (`--executor local`, LocalExecutor). Without --detach it waits, prints
one line per stage (SLURM state, exit code, reason), names the stage that failed with the end of
its log, records everything in RUN/run.json and exits 1 if any stage did not succeed.
nemo-run copies the source of `__main__` (this module) into its experiment dir and re-executes
it when an experiment is reloaded: keep the `__main__` guard and no work at import.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from srft_megatron import settings
from srft_megatron.errors import ConfigError
from srft_megatron.launch.jobs import format_report
from srft_megatron.launch.pipeline import add_arguments, load_from_args
from srft_megatron.launch.rundir import RunDir


def main(args: argparse.Namespace) -> int:
    repo = settings.checkout_root()
    if repo is None:
        raise ConfigError("the nemo-run driver runs the package from a source checkout on the shared filesystem "
                          "(put the checkout on PYTHONPATH; the jobs run its .venv and slurm/ scripts)")
    run_dir = RunDir.at(args.run_dir)
    spec = load_from_args(args, run_dir, repo)  # a spec that cannot be read creates no run dir
    run_dir.create()
    from srft_megatron.launch import nemorun  # imports nemo_run: only in .venv-launch

    if args.dry_run:
        print(nemorun.dry_run(spec, run_dir, repo))
        return 0
    shutil.copyfile(spec.source, run_dir.configs / "pipeline.yaml")
    results = nemorun.run_pipeline(spec, run_dir, repo, detach=args.detach)
    report = format_report(results)
    print(report, flush=True)
    run_dir.record_launch({"engine": "nemo-run", "executor": spec.executor.kind, "pipeline": spec.source,
                           "stages": [r.to_json() for r in results]})
    if args.detach:
        return 0
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m srft_megatron.launch.driver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except ConfigError as exc:
        print(f"srft_megatron.launch.driver: error: {exc}", file=sys.stderr)
        sys.exit(2)
