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


QWEN_TOKENIZER_SERVED = "qwen-tokenizer"


@pytest.fixture(scope="session")
def qwen_tokenizer_server(tmp_path_factory):
    """One vLLM CPU server for the session whose model directory holds the real Qwen2.5 tokenizer and
    our chat template (a tiny random Qwen2: only its tokenizer matters), for the `/tokenize` parity
    tests of the training render and of the evaluation agent. ~30 s to start; started once more if
    the first start dies (another process's /dev/shm clean-up on a shared machine, see
    `srft_megatron.evaluate.serve.start_servers`), reported with the log on the second failure."""
    from srft_megatron.convert.tiny_hf import save_tiny_qwen2
    from srft_megatron.evaluate.serve import local_cpu_configs, start_servers

    tmp = tmp_path_factory.mktemp("tiny-qwen-tok")
    model = save_tiny_qwen2(tmp / "model", vocab_size=151936,
                            tokenizer=True, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                            max_position_embeddings=32768)
    server, = start_servers(local_cpu_configs(model, served_name=QWEN_TOKENIZER_SERVED, max_model_len=32768,
                                              run_dir=tmp), attempts=2)
    yield server
    server.stop()


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
