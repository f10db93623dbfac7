"""Submit pipeline stages to SLURM (or run them on this machine) with nemo-run.

    srft launch launch/pipelines/qwen2.5-32b.yaml --run-dir runs/qwen32b
    srft launch launch/pipelines/tiny-cpu.yaml --run-dir runs/tiny --stages preprocess,train,convert
    srft launch launch/pipelines/tiny-cpu.yaml --run-dir runs/tiny --dry-run   # print the sbatch scripts
    srft launch tiny-cpu --run-dir runs/tiny --executor local                   # a shipped spec, by name

Shipped specs are package data (`srft_megatron/pipelines/`, linked from `launch/pipelines/`).
nemo-run lives in its own venv (.venv-launch, made by scripts/nemorun_venv.sh on first use), so
this command runs the driver `python -m srft_megatron.launch.driver` there, with the checkout on
its PYTHONPATH. To submit one stage by hand instead, use the sbatch
scripts in slurm/ (README: "Running on a SLURM cluster").

Before anything is submitted (and before the nemo-run venv is made) the train stage's layout
is checked against its GPUs' memory with `srft plan`'s model (`srft_megatron/launch/fit.py`;
`--gpu-memory-gb`, default the spec's `executor.gpu_memory_gb` or 80; `--no-fit-check`): a
layout that cannot fit is refused with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from srft_megatron import settings
from srft_megatron.errors import ConfigError
from srft_megatron.launch.pipeline import add_arguments  # noqa: F401  (the driver's own options)


def ensure_launch_venv() -> str:
    """Create the nemo-run venv if missing (idempotent, fast when present); return its python."""
    subprocess.run(settings.LAUNCH.build_command(), check=True)
    return str(settings.LAUNCH.python)


def fit_check(args: argparse.Namespace, repo) -> str:
    """The train stage's fit check on the spec as it will be launched (ConfigError if it cannot fit)."""
    from srft_megatron.launch.fit import check_training_fits
    from srft_megatron.launch.pipeline import load_from_args
    from srft_megatron.launch.rundir import RunDir

    return check_training_fits(load_from_args(args, RunDir.at(args.run_dir), repo), args.gpu_memory_gb)


def main(args: argparse.Namespace) -> int:
    # Jobs run the checkout on the shared filesystem (its .venv, slurm/ scripts), so the driver
    # and the specs are the checkout's: an installed package alone cannot launch.
    repo = settings.checkout_root()
    if repo is None:
        raise ConfigError("srft launch runs from a source checkout on the shared filesystem "
                          "(the jobs run its .venv and slurm/ scripts); run it there")
    if not args.no_fit_check:
        print(f"[srft launch] {fit_check(args, repo)}", file=sys.stderr, flush=True)
    python = ensure_launch_venv()
    argv = [python, "-m", "srft_megatron.launch.driver", args.pipeline, "--run-dir", args.run_dir]
    if args.stages:
        argv += ["--stages", args.stages]
    if args.executor:
        argv += ["--executor", args.executor]
    argv += [flag for flag, on in (("--dry-run", args.dry_run), ("--detach", args.detach)) if on]
    env = dict(os.environ, PYTHONPATH=str(repo), COLUMNS=os.environ.get("COLUMNS", "160"))
    return subprocess.run(argv, env=env).returncode
