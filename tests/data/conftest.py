"""Fixtures for the data path: the shared trajectories ingested once per session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def run_srft(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `srft` CLI (the console entry point's module) in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"srft {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def tokenizer():
    from srft_megatron import load_tokenizer

    return load_tokenizer("qwen2.5")


@pytest.fixture(scope="session")
def ingested(tmp_path_factory, traj_dir) -> Path:
    """Every shared .traj file plus the SWE-smith sample rows, through `srft ingest`."""
    out = tmp_path_factory.mktemp("ingest") / "trajectories.jsonl"
    inputs = sorted(traj_dir.glob("*.traj")) + [traj_dir / "swesmith_rows_sample.jsonl"]
    run_srft("ingest", *inputs, "-o", out, "--quiet")
    return out


@pytest.fixture(scope="session")
def trajectories(ingested):
    from srft_megatron.trajectory import read_trajectories

    return [t for _, t in read_trajectories(str(ingested))]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def srft(*args, check: bool = True):
    """Run `srft` in this process (same argument parsing and error handling as the console
    script, without paying the megatron-core import for every call)."""
    import contextlib
    import io
    from types import SimpleNamespace

    from srft_megatron.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            code = exc.code
    result = SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check and code != 0:
        raise AssertionError(f"srft {' '.join(map(str, args))} failed ({code}):\n{result.stderr[-3000:]}")
    return result
