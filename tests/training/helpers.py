"""Shared helpers for the training tests: synthetic weighted datasets and config overrides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from srft_megatron.dataset import DatasetWriter

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"


def make_dataset(prefix: Path, *, n_docs: int = 24, vocab: int = 512, min_len: int = 8,
                 max_len: int = 60, seed: int = 0, fractional: bool = True) -> Path:
    """Random documents with step-like weight spans: 0 (prompt/observation), 1, or a fraction.

    Span weights vary per document, so micro-batches have unequal kept-token counts."""
    rng = np.random.RandomState(seed)
    with DatasetWriter(prefix) as writer:
        for _ in range(n_docs):
            n = int(rng.randint(min_len, max_len))
            tokens = rng.randint(1, vocab, n).astype(np.int32)
            weights = np.zeros(n, dtype=np.float32)
            at = int(rng.randint(1, max(2, n // 3)))
            while at < n:
                span = int(rng.randint(2, 8))
                choice = rng.rand()
                value = 1.0 if choice < 0.5 else (0.0 if choice < 0.75 or not fractional else 0.25 + 0.5 * rng.rand())
                weights[at:at + span] = value
                at += span + int(rng.randint(1, 6))
            writer.add(tokens, weights)
        writer.commit({"source": "synthetic test data"})
    return prefix


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
