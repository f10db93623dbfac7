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

`check_dataset(PREFIX)` is the one validation every reader runs first (`srft train` and
`--check` before any process group starts, `srft report`, the training data loader): the
metadata parses, every file has the size the metadata records, both index headers are
megatron-core's with the dtypes the metadata names, their sequence counts, lengths, pointers
and document boundaries agree with each other and with the `.bin` sizes, and the dataset is not
empty. It reads the metadata and the two `.idx` files, never the tokens (well under a second
for a 10 GB dataset: `tests/training/test_checks.py`). Every failure is one `DatasetError` line
naming the dataset, the file and the number that is wrong. Token ids and loss weights are
checked as documents are read for training (`document_problem`).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srft_megatron.errors import DatasetError

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
        self.max_token_id = -1
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
        if weights.size and not np.isfinite(weights).all():
            raise ValueError("loss weights must be finite")  # NaN passes the range test below
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
        if token_ids.size:
            self.max_token_id = max(self.max_token_id, int(token_ids.max()))

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
                               "weighted_tokens": round(self.weighted_tokens, 6),
                               # checked against the model's vocabulary before training starts
                               "max_token_id": self.max_token_id if self.num_documents else None})
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


_DOCUMENTS_KEY = b'\n  "documents": ['


def _parse_meta(text: bytes, documents: bool) -> dict[str, Any]:
    """json.loads of the metadata; with `documents=False` the per-document list (one record per
    trajectory: most of the file, ~90% of its parse time on a large dataset) is cut out of the
    text first and comes back as None. The cut relies on the writer's layout (`indent=2`: the
    top-level list closes at the first newline + two spaces + `]`, as no JSON string holds a raw
    newline); any other layout is parsed whole."""
    if not documents:
        start = text.find(_DOCUMENTS_KEY)
        body = start + len(_DOCUMENTS_KEY)
        end = text.find(b"\n  ]", body) if start >= 0 else -1
        if end >= 0 and text[body:body + 1] != b"]":
            try:
                meta = json.loads(text[:start] + b'\n  "documents": null' + text[end + 4:])
                if isinstance(meta, dict):
                    return meta
            except json.JSONDecodeError:
                pass
    return json.loads(text)


def read_meta(prefix: str | os.PathLike, *, documents: bool = True) -> dict[str, Any]:
    """The metadata, after checking every file of the dataset is present with the recorded size.

    `documents=False` leaves out the per-document records (`meta["documents"]` is None): what the
    checks before training read. FileNotFoundError without metadata; DatasetError (one line) when
    it is unreadable, of another format version, or a file is missing or of another size."""
    files = dataset_files(prefix)
    if not files[".meta.json"].is_file():
        raise FileNotFoundError(f"dataset {prefix}: {files['.meta.json']} missing (incomplete or not a dataset)")
    try:
        meta = _parse_meta(files[".meta.json"].read_bytes(), documents)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"dataset {prefix}: cannot read {files['.meta.json']}: "
                           f"{type(exc).__name__}: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise DatasetError(f"dataset {prefix}: {files['.meta.json']} is not dataset metadata (no 'files')")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"dataset {prefix}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
    for suffix in (*SUFFIXES, *(s for s in meta["files"] if s not in SUFFIXES)):  # + the label channel
        size = meta["files"].get(suffix)
        path = files.get(suffix)
        if path is None:
            raise DatasetError(f"dataset {prefix}: the metadata lists an unknown file {suffix!r}")
        if not path.is_file():
            raise DatasetError(f"dataset {prefix}: {path} missing")
        actual = path.stat().st_size
        if size is None or actual != size:
            raise DatasetError(f"dataset {prefix}: {path} has {actual} bytes, the metadata records {size}")
    return meta


# ---- the one validation before reading (headers and metadata, never the tokens) ------------
INDEX_MAGIC = b"MMIDIDX\x00\x00"   # megatron-core IndexedDataset (indexed_dataset._INDEX_HEADER)
INDEX_VERSION = 1
INDEX_HEADER_BYTES = 34           # magic 9 + version 8 + dtype code 1 + sequences 8 + documents 8
DTYPE_CODES = {"int32": 4, "float32": 7, "int64": 5, "float64": 6, "uint16": 8, "int16": 3,
               "uint8": 1, "int8": 2}  # megatron-core's DType enum
CHANNEL_DTYPES = {"tokens": np.dtype(TOKEN_DTYPE).name, "weights": np.dtype(WEIGHT_DTYPE).name}


@dataclass
class DatasetInfo:
    """What `check_dataset` learned from the metadata (without its per-document records) and
    the index headers."""

    prefix: str
    meta: dict[str, Any]
    documents: int
    tokens: int
    max_document_tokens: int
    lengths: np.ndarray                 # tokens per document (from the index)

    @property
    def max_token_id(self) -> int | None:
        """The largest token id (recorded by preprocess; None for datasets written before)."""
        value = (self.meta.get("counts") or {}).get("max_token_id")
        return int(value) if value is not None else None

    @property
    def tokenizer_vocab_size(self) -> int | None:
        value = (self.meta.get("tokenizer") or {}).get("vocab_size")
        return int(value) if value is not None else None

    @property
    def tokenizer_name(self) -> str | None:
        return (self.meta.get("tokenizer") or {}).get("name")

    @property
    def seq_length(self) -> int | None:
        """The --seq-length preprocess cut documents to (None for datasets written otherwise)."""
        value = self.meta.get("seq_length")
        return int(value) if value is not None else None

    @property
    def weighted_tokens(self) -> float:
        return float((self.meta.get("counts") or {}).get("weighted_tokens", 0.0))


def _read_index(prefix, path: Path, channel: str, dtype_name: str, bin_size: int) -> np.ndarray:
    """The sequence lengths of one channel's `.idx`, after checking the header, the file size,
    the pointers and the document boundaries against each other and against the `.bin` size."""
    where = f"dataset {prefix}: {path}"
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(INDEX_HEADER_BYTES)
        if len(head) < INDEX_HEADER_BYTES or head[:9] != INDEX_MAGIC:
            raise DatasetError(f"{where} is not a megatron-core index (header {head[:9]!r})")
        version, code, n_seq, n_doc = struct.unpack("<QBQQ", head[9:])
        if version != INDEX_VERSION:
            raise DatasetError(f"{where}: index version {version}, expected {INDEX_VERSION}")
        if code != DTYPE_CODES.get(dtype_name):
            raise DatasetError(f"{where}: dtype code {code} in the header, the metadata says {channel} are "
                               f"{dtype_name} (code {DTYPE_CODES.get(dtype_name)})")
        expected = INDEX_HEADER_BYTES + 4 * n_seq + 8 * n_seq + 8 * n_doc
        if n_seq > size or n_doc > size or size != expected:
            raise DatasetError(f"{where} has {size} bytes, its header ({n_seq} sequences, {n_doc} document "
                               f"boundaries) needs {expected}")
        lengths = np.fromfile(handle, dtype=np.int32, count=n_seq)
        pointers = np.fromfile(handle, dtype=np.int64, count=n_seq)
        boundaries = np.fromfile(handle, dtype=np.int64, count=n_doc)
    if n_seq and int(lengths.min()) < 0:
        bad = int(np.argmax(lengths < 0))
        raise DatasetError(f"{where}: document {bad} has length {int(lengths[bad])}")
    itemsize = np.dtype(dtype_name).itemsize
    ends = np.cumsum(lengths, dtype=np.int64) * itemsize
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]]) if n_seq else ends
    if not np.array_equal(pointers, starts):
        bad = int(np.argmax(pointers != starts))
        raise DatasetError(f"{where}: document {bad} starts at byte {int(pointers[bad])}, its preceding "
                           f"lengths put it at {int(starts[bad])} (index corrupted)")
    if not np.array_equal(boundaries, np.arange(n_seq + 1, dtype=np.int64)):
        bad = int(np.argmax(boundaries != np.arange(n_doc, dtype=np.int64))) if n_doc == n_seq + 1 else -1
        raise DatasetError(f"{where}: document boundaries are not one per sequence "
                           f"({n_doc} boundaries for {n_seq} sequences"
                           + (f", boundary {bad} is {int(boundaries[bad])})" if bad >= 0 else ")"))
    total = int(ends[-1]) if n_seq else 0
    if total != bin_size:
        raise DatasetError(f"{where}: {n_seq} documents of {total // itemsize} {channel} need "
                           f"{total} bytes, {path.with_suffix('.bin').name} has {bin_size}")
    return lengths


def check_dataset(prefix: str | os.PathLike) -> DatasetInfo:
    """Validate a dataset from its metadata and index headers (see the module docstring)."""
    prefix = str(prefix)
    meta = read_meta(prefix, documents=False)
    files = dataset_files(prefix)
    counts = meta.get("counts") or {}
    dtypes = {**CHANNEL_DTYPES, **(meta.get("dtypes") or {})}
    for channel, expected in CHANNEL_DTYPES.items():
        if dtypes[channel] != expected:
            raise DatasetError(f"dataset {prefix}: metadata says {channel} are {dtypes[channel]}, "
                               f"srft datasets hold {expected}")
    if counts.get("documents") == 0 or meta["files"].get("_tokens.bin") == 0:
        raise DatasetError(f"dataset {prefix} is empty: 0 documents{_empty_reason(prefix, counts)}")
    channels = ["tokens", "weights"] + (["labels"] if all(s in meta["files"] for s in LABEL_SUFFIXES) else [])
    try:
        lengths = {}
        for channel in channels:
            idx, binf = files[f"_{channel}.idx"], files[f"_{channel}.bin"]
            dtype = dtypes.get(channel, np.dtype(LABEL_DTYPE).name)
            lengths[channel] = _read_index(prefix, idx, channel, dtype, binf.stat().st_size)
    except OSError as exc:
        raise DatasetError(f"dataset {prefix}: cannot read its index: {type(exc).__name__}: {exc}") from None
    tok = lengths["tokens"]
    for channel in channels[1:]:
        other = lengths[channel]
        if tok.size != other.size:
            raise DatasetError(f"dataset {prefix}: {tok.size} token documents but {other.size} {channel} documents")
        if not np.array_equal(tok, other):
            bad = int(np.argmax(tok != other))
            raise DatasetError(f"dataset {prefix}: document {bad} has {int(tok[bad])} tokens but "
                               f"{int(other[bad])} {channel}")
    if tok.size == 0:
        raise DatasetError(f"dataset {prefix} is empty: 0 documents{_empty_reason(prefix, counts)}")
    n_tokens = int(tok.sum(dtype=np.int64))
    for key, actual in (("documents", int(tok.size)), ("tokens", n_tokens)):
        if counts.get(key) is not None and int(counts[key]) != actual:
            raise DatasetError(f"dataset {prefix}: the index holds {actual} {key}, the metadata records "
                               f"{counts[key]}")
    weighted = counts.get("weighted_tokens", 0.0)
    if not isinstance(weighted, (int, float)) or not np.isfinite(weighted) or weighted < 0:
        raise DatasetError(f"dataset {prefix}: the metadata records {weighted!r} weighted tokens "
                           "(must be finite and non-negative)")
    return DatasetInfo(prefix=prefix, meta=meta, documents=int(tok.size), tokens=n_tokens,
                       max_document_tokens=int(tok.max()), lengths=tok)


def _empty_reason(prefix: str, counts: dict[str, Any]) -> str:
    seen = counts.get("trajectories_in")
    dropped = {**(counts.get("skipped") or {}), **(counts.get("rejected") or {})}
    if not seen:
        return " (nothing to train on: re-run srft preprocess on trajectories that have assistant steps)"
    top = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items(), key=lambda kv: -kv[1])[:3])
    return (f": preprocess kept none of its {seen} trajectories ({top}; see {prefix}.rejects.jsonl)"
            if top else f": preprocess kept none of its {seen} trajectories")


def document_problem(tokens: np.ndarray, weights: np.ndarray, vocab_size: int | None = None) -> str | None:
    """Why a document read for training must not be trained on (None if it is fine): loss
    weights that are not finite or are negative, token ids outside the model's vocabulary.
    Costs one pass over the document's values (cheap beside the model)."""
    finite = np.isfinite(weights)
    if not finite.all():
        return f"{int((~finite).sum())} non-finite loss weights"
    if weights.size and float(weights.min()) < 0:
        return f"{int((weights < 0).sum())} negative loss weights (min {float(weights.min()):g})"
    if tokens.size:
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or (vocab_size is not None and hi >= vocab_size):
            bad = lo if lo < 0 else hi
            return f"token id {bad} outside the model's vocabulary of {vocab_size}"
    return None


class WeightedDocuments:
    """Both channels of a dataset, read with megatron-core's `IndexedDataset` (mmap views:
    keep this object alive while using arrays it returned). `meta` is the whole metadata, read
    on first use (the checks before it skip the per-document records)."""

    def __init__(self, prefix: str, tokens: Any, weights: Any, meta: dict[str, Any] | None = None):
        self.prefix, self.tokens, self.weights = prefix, tokens, weights
        self._meta = meta if meta is not None and meta.get("documents") is not None else None
        self.brief_meta = meta

    @property
    def meta(self) -> dict[str, Any]:
        if self._meta is None:
            self._meta = read_meta(self.prefix)
        return self._meta

    def __len__(self) -> int:
        return len(self.tokens)

    def document(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of one document's tokens and weights (safe to keep after this object is gone:
        the raw IndexedDataset arrays are mmap views that die with it)."""
        return np.array(self.tokens[index]), np.array(self.weights[index])


def open_dataset(prefix: str | os.PathLike) -> WeightedDocuments:
    """Both channels, after `check_dataset` (so a bad or empty dataset is one DatasetError line,
    never a traceback from the memory map)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    info = check_dataset(prefix)
    try:
        tokens = IndexedDataset(str(prefix) + "_tokens")
        weights = IndexedDataset(str(prefix) + "_weights")
    except (OSError, ValueError, AssertionError) as exc:
        raise DatasetError(f"dataset {prefix}: cannot open: {type(exc).__name__}: {exc}") from None
    return WeightedDocuments(str(prefix), tokens, weights, info.meta)


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


def shifted_example(tokens: np.ndarray, weights: np.ndarray,
                    label_codes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Next-token example from a window of n+1 tokens: inputs, labels and their loss weights
    (and, given the label channel's window, the step label of each predicted token). The one
    input/label shift rule: the training data (`training.data.assemble_sample`) calls this."""
    out = {"tokens": np.asarray(tokens[:-1], dtype=np.int64),
           "labels": np.asarray(tokens[1:], dtype=np.int64),
           "loss_weights": np.asarray(weights[1:], dtype=np.float32)}
    if label_codes is not None:
        out["label_codes"] = np.asarray(label_codes[1:], dtype=np.int64)
    return out
