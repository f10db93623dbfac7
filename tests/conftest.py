"""Fixtures shared by every test: where the shared third-party data lives, GPU skipping.

The trajectories in ../shared/data/trajectories are third-party data: tests read them in
place and never copy them into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SRFT_SHARED", ROOT.parent / "shared")).resolve()
TRAJ_DIR = SHARED / "data" / "trajectories"
VENV_BIN = ROOT / ".venv" / "bin"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="GPU-only: no CUDA device here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def cpu_shim():
    """megatron-core in the test process: the CPU shim (srft_megatron.parallel.cpu_compat) for this
    module only, switched off after it, so the suite passes in any order. Subprocess workers
    enable it themselves, as `srft train` does."""
    from srft_megatron.parallel.cpu_compat import cpu_compat_active, disable_cpu_compat, enable_cpu_compat

    was_active = cpu_compat_active()
    enable_cpu_compat()
    yield
    if not was_active:
        disable_cpu_compat()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data not found at {SHARED} (set SRFT_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def traj_dir(shared_dir) -> Path:
    return shared_dir / "data" / "trajectories"


@pytest.fixture(scope="session")
def traj_files(traj_dir) -> list[Path]:
    """Every SWE-agent .traj example in shared data."""
    return sorted(traj_dir.glob("*.traj"))
