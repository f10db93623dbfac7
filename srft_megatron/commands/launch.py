"""Submit pipeline stages to SLURM (or run them on this machine) with nemo-run.

    srft launch launch/pipelines/qwen2.5-32b.yaml --run-dir runs/qwen32b
    srft launch launch/pipelines/tiny-cpu.yaml --run-dir runs/tiny --stages preprocess,train,convert
    srft launch launch/pipelines/tiny-cpu.yaml --run-dir runs/tiny --dry-run   # print the sbatch scripts

nemo-run lives in its own venv (.venv-launch, made by scripts/nemorun_venv.sh on first use), so
this command runs `launch/pipeline.py` there. To submit one stage by hand instead, use the sbatch
scripts in slurm/ (README: "Running on a SLURM cluster").
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAUNCH_VENV = Path(os.environ.get("SRFT_LAUNCH_VENV", REPO / ".venv-launch"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the options are launch/pipeline.py's own, so both entry points always agree
    spec = importlib.util.spec_from_file_location("srft_launch_pipeline", REPO / "launch" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.add_arguments(parser)


def ensure_launch_venv() -> Path:
    """Create .venv-launch if missing (idempotent, fast when present); return its python."""
    subprocess.run(["bash", str(REPO / "scripts" / "nemorun_venv.sh"), str(LAUNCH_VENV)], check=True)
    return LAUNCH_VENV / "bin" / "python"


def main(args: argparse.Namespace) -> int:
    python = ensure_launch_venv()
    argv = [str(python), str(REPO / "launch" / "pipeline.py"), args.pipeline, "--run-dir", args.run_dir]
    if args.stages:
        argv += ["--stages", args.stages]
    if args.executor:
        argv += ["--executor", args.executor]
    argv += [flag for flag, on in (("--dry-run", args.dry_run), ("--detach", args.detach)) if on]
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS=os.environ.get("COLUMNS", "160"))
    return subprocess.run(argv, env=env).returncode
