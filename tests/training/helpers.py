"""Shared helpers for the training tests: synthetic weighted datasets and config overrides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from srft_megatron.dataset import DatasetWriter

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"


def make_dataset(prefix: Path, *, n_docs: int = 24, vocab: int = 512, min_len: int = 8,
                 max_len: int = 60, seed: int = 0, fractional: bool = True, labels: bool = False) -> Path:
    """Random documents with step-like weight spans: 0 (prompt/observation), 1, or a fraction.

    Span weights vary per document, so micro-batches have unequal kept-token counts. With
    `labels`, also a label channel (weighted tokens good/unnecessary/recover/unlabelled, a third
    of the others harmful, the rest context) and per-document `resolved` records in the metadata
    (drawn from a second generator: the tokens and weights are those of `labels=False`)."""
    rng = np.random.RandomState(seed)
    lrng = np.random.RandomState(seed + 1)
    documents = []
    with DatasetWriter(prefix, with_labels=labels) as writer:
        for i in range(n_docs):
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
            if not labels:
                writer.add(tokens, weights)
                continue
            codes = np.where(weights > 0, lrng.choice([1, 2, 4, 5], n), np.where(lrng.rand(n) < 0.3, 3, 0))
            writer.add(tokens, weights, codes.astype(np.uint8))
            documents.append({"id": f"doc-{i}", "resolved": [True, False, None][(i // 2) % 3]})
        writer.commit({"source": "synthetic test data", **({"documents": documents} if labels else {})})
    return prefix


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


# ---- packed vs one-by-one, on a model whose outputs depend on context -----------------------
# Qwen's init (std 0.02) gives near-uniform attention: a token's NLL barely moves with its
# context, so a leaky mask hides in the noise. At 5x that std attention is sharp: on `tiny` a
# plain causal mask over these four packed documents moves a token's NLL by up to 1.8 nats (fp32;
# 3.3 in bf16) while the block-diagonal mask stays within 1e-6 (fp32) / 0.03 (bf16) of the
# documents run alone (measured on CPU).
CONTEXT_INIT_STD = 0.1
CONTEXT_DOC_LENGTHS = (33, 17, 65, 9)  # 120 input positions packed into 128, then padding


class DocStore:
    """In-memory documents with the `document(i) -> (tokens, weights)` API of a dataset."""

    def __init__(self, docs):
        self.docs = docs

    def document(self, i):
        return self.docs[i]


def context_docs(vocab: int, lengths=CONTEXT_DOC_LENGTHS, seed: int = 0) -> DocStore:
    rng = np.random.RandomState(seed)
    return DocStore([(rng.randint(1, vocab, n).astype(np.int32), np.ones(n, dtype=np.float32))
                     for n in lengths])


def packed_and_alone_nll(forward, store: DocStore, seq_length: int = 128):
    """Per-token NLL (float64, real positions only) of all documents packed into one sequence,
    and of each document run alone, concatenated in the same order.

    `forward(batch)` maps a collated batch (`srft_megatron.training.data.collate`) to the
    per-token NLL [1, s]; it chooses the attention mask (or THD params) from the batch."""
    import torch

    from srft_megatron.training.data import assemble_sample, collate

    ids = list(range(len(store.docs)))
    with torch.no_grad():
        packed = forward(collate([assemble_sample(store, ids, seq_length)]))[0].double().cpu()
        alone = [forward(collate([assemble_sample(store, [i], len(store.docs[i][0]) - 1)]))[0].double().cpu()
                 for i in ids]
    alone = torch.cat(alone)
    return packed[:alone.numel()], alone


def assert_nll_close(packed, alone, atol: float) -> float:
    """Fail unless every token's packed NLL is within `atol` nats of its one-by-one NLL."""
    gap = (packed - alone).abs()
    worst = int(gap.argmax())
    assert float(gap[worst]) <= atol, (f"packed vs one-by-one NLL differs by {float(gap[worst]):.3g} nats "
                                       f"at position {worst} (tolerance {atol})")
    return float(gap[worst])
