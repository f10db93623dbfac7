"""Fixtures of the critic tests: normalised trajectories from shared data, and real vLLM replicas.

The corpus is made with `srft ingest` from the shared examples (read in place) into a temporary
directory; copies under new ids make it long enough that a kill lands mid-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srft_megatron.cli import main as srft


@pytest.fixture(scope="session")
def trajectories(tmp_path_factory, traj_dir) -> Path:
    """The shared examples as normalised trajectories.jsonl (8 trajectories, 84 steps)."""
    out = tmp_path_factory.mktemp("critic-data") / "trajectories.jsonl"
    inputs = sorted(str(p) for p in traj_dir.glob("*.traj")) + [str(traj_dir / "swesmith_rows_sample.jsonl")]
    assert srft(["ingest", *inputs, "-o", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def corpus(trajectories, tmp_path_factory) -> Path:
    """`copies` renamed copies of every shared trajectory (ids `ID~cN`): 32 trajectories."""
    copies = 4
    rows = [json.loads(line) for line in trajectories.read_text().splitlines() if line.strip()]
    out = tmp_path_factory.mktemp("critic-corpus") / "corpus.jsonl"
    with open(out, "w") as handle:
        for c in range(copies):
            for row in rows:
                handle.write(json.dumps(dict(row, id=f"{row['id']}~c{c}")) + "\n")
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from srft_megatron.convert.tiny_hf import save_tiny_served_model

    return save_tiny_served_model(tmp_path_factory.mktemp("tiny-qwen2") / "model")


@pytest.fixture(scope="module")
def vllm_replicas(tiny_model, tmp_path_factory):
    """Two real vLLM CPU servers (one core each) serving the tiny model as `tiny`.

    Module-scoped: their ~5 GiB are given back as soon as the module's tests are done."""
    from srft_megatron.evaluate.serve import local_cpu_configs, start_servers

    servers = start_servers(local_cpu_configs(tiny_model, 2, max_model_len=8192,
                                              run_dir=tmp_path_factory.mktemp("vllm-replicas")))
    yield servers
    for server in servers:
        server.stop()
