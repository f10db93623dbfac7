"""The on-disk dataset (DESIGN §4): two Megatron indexed datasets and a metadata file.

    PREFIX_tokens.{bin,idx}   megatron-core IndexedDataset, int32 token ids, one document per trajectory
    PREFIX_weights.{bin,idx}  IndexedDataset, float32, identical sequence lengths and document indices:
                              weights[i] is the loss weight of *predicting* token i
    PREFIX_labels.{bin,idx}   IndexedDataset, uint8, same lengths and documents (written by preprocess):
                              which kind of step each token belongs to, codes in meta `label_codes`
    PREFIX.meta.json          format_version, tokenizer identity, policy, counts, file sizes

So a training sample built from a token window `t[0..n]` uses inputs `t[:-1]`, labels `t[1:]`
and loss weights `w[1:]` — the same shift for both channels (`shifted_example`).

Writes are atomic as a whole: all files are written into a hidden temporary directory next to
PREFIX and renamed into place only after every file is complete, metadata last. A reader
checks the metadata against the files, so a dataset without its metadata (or with files of a
different size) is refused rather than half-read.

The label channel is additive: `format_version` stays 1 because a reader of tokens and weights
(the trainer) reads a dataset with labels exactly as one without, and datasets written before
the channel existed stay readable. Whether a dataset has labels is said by its metadata
(`label_codes`, and the label files in `files`, size-checked like the others); `open_labels`
refuses a dataset without them with a one-line reason.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
TOKEN_DTYPE = np.int32
WEIGHT_DTYPE = np.float32
SUFFIXES = ("_tokens.bin", "_tokens.idx", "_weights.bin", "_weights.idx")
LABEL_DTYPE = np.uint8
LABEL_SUFFIXES = ("_labels.bin", "_labels.idx")
# Which kind of step a token belongs to (DESIGN §4). The order is the on-disk code: never reorder,
# only append. `context`: not part of any step; `unlabelled`: a step without a label record.
LABEL_CODES = {name: code for code, name in enumerate(
    ("context", "good", "unnecessary", "harmful", "recover", "unlabelled"))}


def dataset_files(prefix: str | os.PathLike) -> dict[str, Path]:
    prefix = str(prefix)
    files = {s: Path(prefix + s) for s in (*SUFFIXES, *LABEL_SUFFIXES)}
    files[".meta.json"] = Path(prefix + ".meta.json")
    return files


class DatasetWriter:
    """Streams documents into a temporary directory; `commit(meta)` moves them into place.

    Use as a context manager: leaving the block with an exception removes everything written.
    `with_labels`: also write the label channel; every `add` must then pass `labels` (codes of
    `LABEL_CODES`, one per token)."""

    def __init__(self, prefix: str | os.PathLike, with_labels: bool = False):
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.prefix.name}.", suffix=".tmp", dir=self.prefix.parent))
        self._tmp_prefix = str(self.tmpdir / self.prefix.name)
        self.tokens = IndexedDatasetBuilder(self._tmp_prefix + "_tokens.bin", dtype=TOKEN_DTYPE)
        self.weights = IndexedDatasetBuilder(self._tmp_prefix + "_weights.bin", dtype=WEIGHT_DTYPE)
        self.labels = (IndexedDatasetBuilder(self._tmp_prefix + "_labels.bin", dtype=LABEL_DTYPE)
                       if with_labels else None)
        self.label_tokens = dict.fromkeys(LABEL_CODES, 0) if with_labels else None
        self.num_documents = 0
        self.num_tokens = 0
        self.weighted_tokens = 0.0
        self._done = False

    def add(self, token_ids: np.ndarray, weights: np.ndarray, labels: np.ndarray | None = None) -> None:
        if token_ids.shape != weights.shape or token_ids.ndim != 1:
            raise ValueError(f"tokens {token_ids.shape} and weights {weights.shape} must be equal 1-D shapes")
        if (labels is None) != (self.labels is None):
            raise ValueError("labels must be given for every document exactly when the writer has with_labels")
        if labels is not None:
            if labels.shape != token_ids.shape:
                raise ValueError(f"labels {labels.shape} and tokens {token_ids.shape} must be equal shapes")
            if labels.size and (labels.min() < 0 or labels.max() >= len(LABEL_CODES)):
                raise ValueError(f"label codes must lie in [0, {len(LABEL_CODES)})")
        if token_ids.size and (token_ids.min() < 0 or token_ids.max() > np.iinfo(TOKEN_DTYPE).max):
            raise ValueError("token id out of int32 range")  # IndexedDataset would wrap silently
        if weights.size and (weights.min() < 0.0 or weights.max() > 1.0):
            raise ValueError("loss weights must lie in [0, 1]")
        self.tokens.add_document(token_ids.astype(TOKEN_DTYPE, copy=False), [token_ids.size])
        self.weights.add_document(weights.astype(WEIGHT_DTYPE, copy=False), [weights.size])
        if labels is not None:
            self.labels.add_document(labels.astype(LABEL_DTYPE, copy=False), [labels.size])
            counts = np.bincount(labels.astype(np.int64), minlength=len(LABEL_CODES))
            for name, code in LABEL_CODES.items():
                self.label_tokens[name] += int(counts[code])
        self.num_documents += 1
        self.num_tokens += int(token_ids.size)
        self.weighted_tokens += float(weights.sum(dtype=np.float64))

    def commit(self, meta: dict[str, Any]) -> dict[str, Any]:
        self.tokens.finalize(self._tmp_prefix + "_tokens.idx")
        self.weights.finalize(self._tmp_prefix + "_weights.idx")
        suffixes = SUFFIXES
        meta = dict(meta)
        for key in ("label_codes", "files", "dtypes"):  # a rewritten dataset says only what it holds
            meta.pop(key, None)
        meta["format_version"] = FORMAT_VERSION
        meta["dtypes"] = {"tokens": np.dtype(TOKEN_DTYPE).name, "weights": np.dtype(WEIGHT_DTYPE).name}
        meta["counts"] = dict(meta.get("counts", {}))
        meta["counts"].pop("label_tokens", None)
        if self.labels is not None:
            self.labels.finalize(self._tmp_prefix + "_labels.idx")
            suffixes = (*SUFFIXES, *LABEL_SUFFIXES)
            meta["label_codes"] = dict(LABEL_CODES)
            meta["dtypes"]["labels"] = np.dtype(LABEL_DTYPE).name
            meta["counts"]["label_tokens"] = dict(self.label_tokens)
        meta["files"] = {s: os.path.getsize(self._tmp_prefix + s) for s in suffixes}
        meta["counts"].update({"documents": self.num_documents, "tokens": self.num_tokens,
                               "weighted_tokens": round(self.weighted_tokens, 6)})
        with open(self._tmp_prefix + ".meta.json", "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True)
            handle.write("\n")
        final = dataset_files(self.prefix)
        final[".meta.json"].unlink(missing_ok=True)  # the old dataset is invalid from here on
        for suffix in LABEL_SUFFIXES:                # an old label channel must not outlive its dataset
            if suffix not in suffixes:
                final[suffix].unlink(missing_ok=True)
        for suffix in (*suffixes, ".meta.json"):     # metadata last: its presence marks completeness
            os.replace(self._tmp_prefix + suffix, final[suffix])
        self._done = True
        self.close()
        return meta

    def close(self) -> None:
        for builder in (self.tokens, self.weights, self.labels):
            if builder is not None and not builder.data_file.closed:
                builder.data_file.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.close()


def read_meta(prefix: str | os.PathLike) -> dict[str, Any]:
    """The metadata, after checking every file of the dataset is present with the recorded size."""
    files = dataset_files(prefix)
    if not files[".meta.json"].is_file():
        raise FileNotFoundError(f"dataset {prefix}: {files['.meta.json']} missing (incomplete or not a dataset)")
    meta = json.loads(files[".meta.json"].read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"dataset {prefix}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
    for suffix, size in meta["files"].items():
        path = files[suffix]
        if not path.is_file() or path.stat().st_size != size:
            raise ValueError(f"dataset {prefix}: {path} missing or not the size recorded in the metadata")
    return meta


@dataclass
class WeightedDocuments:
    """Both channels of a dataset, read with megatron-core's `IndexedDataset` (mmap views:
    keep this object alive while using arrays it returned)."""

    prefix: str
    tokens: Any
    weights: Any
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.tokens)

    def document(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of one document's tokens and weights (safe to keep after this object is gone:
        the raw IndexedDataset arrays are mmap views that die with it)."""
        return np.array(self.tokens[index]), np.array(self.weights[index])


def open_dataset(prefix: str | os.PathLike) -> WeightedDocuments:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    meta = read_meta(prefix)
    tokens = IndexedDataset(str(prefix) + "_tokens")
    weights = IndexedDataset(str(prefix) + "_weights")
    if not np.array_equal(tokens.sequence_lengths, weights.sequence_lengths) or not np.array_equal(
            tokens.document_indices, weights.document_indices):
        raise ValueError(f"dataset {prefix}: tokens and weights differ in sequence lengths or documents")
    return WeightedDocuments(str(prefix), tokens, weights, meta)


@dataclass
class LabelChannel:
    """The label channel, read with megatron-core's `IndexedDataset`. Indexing returns a copy:
    unlike the mmap views of `WeightedDocuments`, `open_labels(p)[i]` is safe on its own."""

    prefix: str
    labels: Any
    codes: dict[str, int]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.array(self.labels[index])


def open_labels(prefix: str | os.PathLike) -> LabelChannel:
    """The label channel of a dataset (uint8 codes, see `LABEL_CODES` and the metadata's
    `label_codes`), checked to share the document index of the tokens: `open_labels(p)[i]`
    labels `open_dataset(p).tokens[i]` token for token."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    meta = read_meta(prefix)
    if "label_codes" not in meta or not all(s in meta["files"] for s in LABEL_SUFFIXES):
        raise ValueError(f"dataset {prefix}: no label channel (written before it existed, or not by "
                         "srft preprocess); re-run srft preprocess")
    if meta["label_codes"] != LABEL_CODES:
        raise ValueError(f"dataset {prefix}: label codes {meta['label_codes']} are not this version's {LABEL_CODES}")
    tokens = IndexedDataset(str(prefix) + "_tokens")
    labels = IndexedDataset(str(prefix) + "_labels")
    if not np.array_equal(tokens.sequence_lengths, labels.sequence_lengths) or not np.array_equal(
            tokens.document_indices, labels.document_indices):
        raise ValueError(f"dataset {prefix}: tokens and labels differ in sequence lengths or documents")
    return LabelChannel(str(prefix), labels, dict(meta["label_codes"]))


def shifted_example(tokens: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Next-token example from a window of n+1 tokens: inputs, labels and their loss weights."""
    return {"tokens": np.asarray(tokens[:-1], dtype=np.int64),
            "labels": np.asarray(tokens[1:], dtype=np.int64),
            "loss_weights": np.asarray(weights[1:], dtype=np.float32)}
