"""Submit pipeline stages to SLURM (or run them on this machine) with nemo-run.

    srft launch launch/pipelines/qwen2.5-32b.yaml --run-dir runs/qwen32b
    srft launch launch/pipelines/tiny-cpu.yaml --run-dir runs/tiny --stages preprocess,train,convert
    srft launch launch/pipelines/tiny-cpu.yaml --run-dir runs/tiny --dry-run   # print the sbatch scripts
    srft launch tiny-cpu --run-dir runs/tiny --executor local                   # a shipped spec, by name

nemo-run lives in its own venv (.venv-launch, made by scripts/nemorun_venv.sh on first use), so
this command runs `launch/pipeline.py` there. To submit one stage by hand instead, use the sbatch
scripts in slurm/ (README: "Running on a SLURM cluster").
"""

from __future__ import annotations

import argparse
import os
import subprocess

from srft_megatron import settings
from srft_megatron.errors import ConfigError
from srft_megatron.launch.pipeline import add_arguments  # noqa: F401  (the driver's own options)


def ensure_launch_venv() -> str:
    """Create the nemo-run venv if missing (idempotent, fast when present); return its python."""
    subprocess.run(settings.LAUNCH.build_command(), check=True)
    return str(settings.LAUNCH.python)


def main(args: argparse.Namespace) -> int:
    # Jobs run the checkout on the shared filesystem (its .venv, slurm/ scripts), so the driver
    # and the specs are the checkout's: an installed package alone cannot launch.
    repo = settings.checkout_root()
    if repo is None:
        raise ConfigError("srft launch runs from a source checkout on the shared filesystem "
                          "(the jobs run its .venv and slurm/ scripts); run it there")
    python = ensure_launch_venv()
    argv = [python, str(repo / "launch" / "pipeline.py"), args.pipeline, "--run-dir", args.run_dir]
    if args.stages:
        argv += ["--stages", args.stages]
    if args.executor:
        argv += ["--executor", args.executor]
    argv += [flag for flag, on in (("--dry-run", args.dry_run), ("--detach", args.detach)) if on]
    env = dict(os.environ, PYTHONPATH=str(repo), COLUMNS=os.environ.get("COLUMNS", "160"))
    return subprocess.run(argv, env=env).returncode
