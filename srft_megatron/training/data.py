"""Training data: blends of preprocessed datasets, packed into fixed-length sequences.

A dataset from `srft preprocess` holds one document per trajectory in two aligned channels:
`PREFIX_tokens` (int32) and `PREFIX_weights` (float32, the loss weight of *predicting* each
token). `WeightedPackedDataset` is a megatron-core `MegatronDataset`, so megatron-core's
`BlendedMegatronDatasetBuilder` blends several prefixes with weights (e.g. resolved +
unresolved) exactly as for pre-training. Both channels are read through the *same* document
index, so a weight can never drift from its token.

Packing: unlike `GPTDataset`, which cuts the token stream at fixed offsets (splitting
trajectories and losing their context), each sample here is a group of *whole* documents chosen
by best-fit-decreasing over seeded windows (`training/packing.py`: 0.97-0.99 of the positions
are real tokens on SWE-agent-like lengths at 32k, where shuffled next-fit filled 0.73-0.75),
then padded with weight-0 tokens. Sample k is a pure function of the seed and k (exact resume).
Each document is shifted on its own (inputs `t[:-1]`, labels `t[1:]`, weights `w[1:]`),
positions restart at 0 per document, and `segment_ids` name the document of every position so
attention never crosses documents (block-diagonal causal mask on the local spec, THD
`cu_seqlens` on Transformer Engine). A document longer than `seq_length + 1` tokens is never
split: the checks before training refuse it (and packing raises). With `pack=False` every sample
is one document (its first `seq_length + 1` tokens, counted in `truncated_documents`).

Validation samples (`training/evaluation.py`) are assembled the same way with the dataset's label
channel: `label_codes` (the step label of each predicted token, shifted by `dataset.shifted_example`
like the weights) and `resolved` (the outcome of each position's trajectory) ride next to
`loss_weights`. `held_out_documents` picks the documents `data.validation_fraction` keeps out of
training.

Every document is checked as it is read (`srft_megatron.dataset.document_problem`: loss weights
finite and non-negative, token ids inside the model's vocabulary); a bad one is left out of its
sample and named in the sample's `bad` list, and the trainer skips the step that holds it.

Data position for exact resume is the global sample index: step k uses samples
[k*G, (k+1)*G) of the blend; DP rank r takes the r-th contiguous share, in micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
from megatron.core.datasets.megatron_dataset import MegatronDataset

from srft_megatron.dataset import WeightedDocuments, document_problem, open_dataset, shifted_example
from srft_megatron.training.packing import packed_order

PAD_TOKEN = 0


@dataclass
class WeightedDatasetConfig(BlendedMegatronDatasetConfig):
    pack: bool = True
    vocab_size: int | None = None  # token ids must be below it (checked as documents are read)
    held_out_fraction: float = 0.0  # documents kept for validation (`held_out_documents`), never trained
    length_multiple: int = 1  # pack documents as if padded to this (2 x CP: training/context_parallel.py)


def held_out_documents(n_docs: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted ids of the documents of a dataset held out for validation (`data.validation_fraction`):
    round(fraction x n_docs), at least one, drawn by a permutation seeded with `data.seed` — the
    same function for the training side (which leaves them out) and the validation side."""
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    n_val = max(1, int(round(fraction * n_docs)))
    return np.sort(np.random.RandomState(seed).permutation(n_docs)[:n_val]).astype(np.int64)


def pack_documents(lengths: np.ndarray, seq_length: int, num_samples: int | None, seed: int,
                   pack: bool, length_multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Order documents and cut the order into samples: best-fit-decreasing packing
    (`packing.packed_order`), or one document per sample in a seeded order (`pack=False`).
    With `length_multiple` > 1 each document is packed as if its positions were padded to a
    multiple of it, as context parallelism pads them, so the padded sample still fits.

    Returns `(order, bounds)`: sample i holds documents `order[bounds[i]:bounds[i+1]]`. Builds
    whole epochs until at least `num_samples` samples exist (one epoch when None)."""
    n_docs = len(lengths)
    if n_docs == 0:
        raise ValueError("dataset has no documents")
    if pack:
        if length_multiple > 1:  # n tokens are n - 1 positions, padded up to the multiple
            lengths = -(-(lengths - 1) // length_multiple) * length_multiple + 1
        return packed_order(lengths, seq_length, num_samples, seed)
    epochs = 1 if num_samples is None else max(1, -(-num_samples // n_docs))
    order = np.concatenate([np.random.RandomState(seed + e).permutation(n_docs) for e in range(epochs)])
    return order, np.arange(len(order) + 1, dtype=np.int64)


class WeightedPackedDataset(MegatronDataset):
    """Packed samples of whole documents with their loss weights (see module docstring)."""

    def __init__(self, dataset: WeightedDocuments, dataset_path: str | None, indices: np.ndarray,
                 num_samples: int | None, index_split, config: WeightedDatasetConfig) -> None:
        if config.held_out_fraction > 0:
            indices = np.setdiff1d(indices, held_out_documents(len(dataset), config.held_out_fraction,
                                                               config.random_seed)).astype(indices.dtype)
        super().__init__(dataset, dataset_path, indices, num_samples, index_split, config)
        lengths = dataset.tokens.sequence_lengths[indices].astype(np.int64)
        self.truncated_documents = int((lengths > config.sequence_length + 1).sum())
        order, self.bounds = pack_documents(lengths, config.sequence_length, num_samples,
                                            config.random_seed, config.pack, config.length_multiple)
        self.order = indices[order]

    @staticmethod
    def numel_low_level_dataset(low_level_dataset: WeightedDocuments) -> int:
        return len(low_level_dataset)

    @staticmethod
    def build_low_level_dataset(dataset_path: str, config: WeightedDatasetConfig) -> WeightedDocuments:
        return open_dataset(dataset_path)

    @staticmethod
    def _key_config_attributes() -> list[str]:
        return super(WeightedPackedDataset, WeightedPackedDataset)._key_config_attributes() + ["pack", "held_out_fraction",
                                                                                       "length_multiple"]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def documents(self, idx: int) -> np.ndarray:
        return self.order[self.bounds[idx]:self.bounds[idx + 1]]

    def __getitem__(self, idx: int) -> dict[str, np.ndarray]:
        return assemble_sample(self.dataset, self.documents(idx), self.config.sequence_length,
                               self.config.vocab_size)


def _describe_document(docs, doc: int) -> str:
    prefix = getattr(docs, "prefix", None)
    meta_docs = (getattr(docs, "meta", None) or {}).get("documents") or []
    traj = meta_docs[doc].get("id") if doc < len(meta_docs) and isinstance(meta_docs[doc], dict) else None
    return (f"dataset {prefix} " if prefix else "") + f"document {doc}" + (f" (trajectory {traj})" if traj else "")


def _resolved_code(docs, doc: int) -> int:
    """`label_nll.RESOLVED_CODES` code of a document's trajectory, from the per-document records
    preprocess writes into meta.json (`documents[i].resolved`: true / false / null)."""
    from srft_megatron.training.label_nll import RESOLVED_CODES

    meta_docs = (getattr(docs, "meta", None) or {}).get("documents") or []
    record = meta_docs[doc] if doc < len(meta_docs) and isinstance(meta_docs[doc], dict) else {}
    resolved = record.get("resolved")
    return RESOLVED_CODES["unknown" if resolved is None else "resolved" if resolved else "unresolved"]


def assemble_sample(docs: WeightedDocuments, doc_ids, seq_length: int,
                    vocab_size: int | None = None, labels=None) -> dict[str, np.ndarray]:
    """Concatenate shifted documents (`dataset.shifted_example`) into one padded sequence of
    `seq_length` positions.

    With `labels` (the dataset's label channel, `dataset.open_labels`) the sample also carries
    `label_codes` (the step label of each predicted token, -1 on padding) and `resolved` (the
    `label_nll.RESOLVED_CODES` code of each position's trajectory, -1 on padding), for validation.
    A document whose read part fails `document_problem` is left out and described in `bad`."""
    tokens = np.full(seq_length, PAD_TOKEN, dtype=np.int64)
    targets = np.full(seq_length, PAD_TOKEN, dtype=np.int64)
    weights = np.zeros(seq_length, dtype=np.float32)
    position_ids = np.zeros(seq_length, dtype=np.int64)
    segment_ids = np.full(seq_length, len(doc_ids), dtype=np.int64)  # padding: its own segment
    codes = np.full(seq_length, -1, dtype=np.int64) if labels is not None else None
    resolved = np.full(seq_length, -1, dtype=np.int64) if labels is not None else None
    doc_lengths = []
    bad = []
    at = 0
    for seg, doc in enumerate(doc_ids):
        tok, w = docs.document(int(doc))
        n = min(len(tok), seq_length + 1) - 1
        if n <= 0:
            continue
        ex = shifted_example(tok[:n + 1], w[:n + 1], labels[int(doc)][:n + 1] if labels is not None else None)
        problem = document_problem(tok[:n + 1], ex["loss_weights"], vocab_size)
        if problem is not None:
            bad.append(f"{_describe_document(docs, int(doc))}: {problem}")
            continue
        tokens[at:at + n] = ex["tokens"]
        targets[at:at + n] = ex["labels"]
        weights[at:at + n] = ex["loss_weights"]
        if labels is not None:
            codes[at:at + n] = ex["label_codes"]
            resolved[at:at + n] = _resolved_code(docs, int(doc))
        position_ids[at:at + n] = np.arange(n)
        segment_ids[at:at + n] = seg
        doc_lengths.append(n)
        at += n
    if at < seq_length:
        position_ids[at:] = np.arange(seq_length - at)
    sample = {"tokens": tokens, "labels": targets, "loss_weights": weights,
              "position_ids": position_ids, "segment_ids": segment_ids,
              "num_real_tokens": np.int64(at), "doc_lengths": np.asarray(doc_lengths, dtype=np.int64),
              "bad": bad}
    if labels is not None:
        sample.update(label_codes=codes, resolved=resolved)
    return sample


def build_train_dataset(prefixes: list[str], weights: list[float] | None, *, seq_length: int,
                        num_samples: int, seed: int, pack: bool = True,
                        cache_dir: str | None = None, vocab_size: int | None = None,
                        held_out_fraction: float = 0.0, length_multiple: int = 1):
    """The blended training dataset with at least `num_samples` samples (megatron-core builder);
    the documents `held_out_documents` picks for validation are left out; `length_multiple`:
    `pack_documents`."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder

    config = WeightedDatasetConfig(
        random_seed=seed, sequence_length=seq_length,
        blend=(list(prefixes), list(weights) if weights is not None else None),
        split="100,0,0", path_to_cache=cache_dir, pack=pack, vocab_size=vocab_size,
        held_out_fraction=held_out_fraction, length_multiple=length_multiple,
        mid_level_dataset_surplus=0.05,
    )
    if len(prefixes) == 1:
        sizes = [num_samples, 0, 0]
    else:
        sizes = [num_samples, 0, 0] if weights is not None else [None, None, None]
    train, _, _ = BlendedMegatronDatasetBuilder(WeightedPackedDataset, sizes, lambda: True, config).build()
    if train is None or len(train) < num_samples:
        # Without weights the builder concatenates the datasets one epoch each: grow epochs.
        if weights is None and len(prefixes) > 1:
            n_docs = [len(open_dataset(p)) for p in prefixes]
            per = [n - len(held_out_documents(n, held_out_fraction, seed)) for n in n_docs]
            return build_train_dataset(prefixes, [float(n) for n in per], seq_length=seq_length,
                                       num_samples=num_samples, seed=seed, pack=pack,
                                       cache_dir=cache_dir, vocab_size=vocab_size,
                                       held_out_fraction=held_out_fraction, length_multiple=length_multiple)
        raise ValueError(f"could not build {num_samples} samples from {prefixes}")
    return train


def collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    keys = ("tokens", "labels", "loss_weights", "position_ids", "segment_ids")
    if all("label_codes" in s for s in samples):  # validation samples (assemble_sample with labels)
        keys += ("label_codes", "resolved")
    batch = {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in keys}
    batch["num_real_tokens"] = torch.tensor(sum(int(s["num_real_tokens"]) for s in samples))
    batch["attn_pairs"] = torch.tensor(sum(int((s["doc_lengths"] ** 2).sum()) for s in samples))
    # documents left out because they failed their read check (assemble_sample); a tensor like
    # every value of the batch, the descriptions are in StepBatches.bad_documents
    batch["bad_documents"] = torch.tensor(sum(len(s.get("bad", ())) for s in samples))
    return batch


class StepBatches:
    """The micro-batches of one optimizer step for this data-parallel rank (deterministic)."""

    def __init__(self, dataset, *, global_batch_size: int, micro_batch_size: int, dp_rank: int,
                 dp_size: int):
        self.dataset = dataset
        self.global_batch_size = global_batch_size
        self.micro_batch_size = micro_batch_size
        self.dp_rank, self.dp_size = dp_rank, dp_size
        self.share = global_batch_size // dp_size
        self.num_microbatches = self.share // micro_batch_size
        self.bad_documents: list[str] = []

    def sample_indices(self, step: int) -> list[int]:
        start = step * self.global_batch_size + self.dp_rank * self.share
        return [(start + i) % len(self.dataset) for i in range(self.share)]

    def micro_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        """The step's micro-batches; `self.bad_documents` then describes the documents of this
        rank's share that failed their read check (left out of their samples)."""
        idx = self.sample_indices(step)
        mbs = self.micro_batch_size
        samples = [self.dataset[i] for i in idx]
        self.bad_documents = [b for s in samples for b in s.get("bad", ())]
        return [collate(samples[m * mbs:(m + 1) * mbs]) for m in range(self.num_microbatches)]


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[b, 1, s, s] bool, True where attention is *masked*: later positions or another document."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    s = segment_ids.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool, device=segment_ids.device).tril()
    return ~(same & causal)[:, None]


def trim_padding(mb: dict[str, torch.Tensor], multiple: int = 1) -> dict[str, torch.Tensor]:
    """A packed micro-batch of size 1 cut after its real tokens, rounded up to `multiple`
    (`preflight.sequence_multiple`: FP8 / sequence parallelism), so that on Transformer Engine THD
    the packer's trailing padding is neither a segment attention computes nor rows the linear
    layers compute: with `multiple` 1 nothing of it is left, else fewer than `multiple` positions.

    Only without pipelining: pipeline stages exchange activations of the fixed shape
    (`model.seq_length`). Every per-position tensor (shape [1, seq]) is cut alike; the counts
    (`num_real_tokens`, ...) are kept."""
    if mb["tokens"].shape[0] != 1:
        raise ValueError("trimming packed THD sequences needs micro_batch_size=1")
    seq = mb["tokens"].shape[1]
    real = int(mb["num_real_tokens"])
    keep = min(seq, max(multiple, -(-real // multiple) * multiple))
    return {k: (v[:, :keep] if isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[1] == seq else v)
            for k, v in mb.items()}


def packed_seq_params(segment_ids: torch.Tensor):
    """THD `PackedSeqParams` (cu_seqlens per document) for TE attention; micro-batch size 1."""
    from megatron.core.packed_seq_params import PackedSeqParams

    if segment_ids.shape[0] != 1:
        raise ValueError("THD packing on Transformer Engine needs micro_batch_size=1")
    seg = segment_ids[0]
    change = torch.nonzero(seg[1:] != seg[:-1]).flatten() + 1
    cu = torch.cat([torch.zeros(1, dtype=torch.int64, device=seg.device), change,
                    torch.tensor([seg.numel()], device=seg.device)]).to(torch.int32)
    max_len = int((cu[1:] - cu[:-1]).max())
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                           max_seqlen_q=max_len, max_seqlen_kv=max_len)
