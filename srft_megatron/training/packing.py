"""Packing whole documents into fixed-length samples: best-fit-decreasing over seeded windows.

Why not next-fit: on real SWE-agent/SWE-smith token lengths (3k-57k, median ~15k) at 32k,
next-fit in shuffled order fills 75-81% of positions; the rest is padding that is computed.
Best-fit-decreasing (BFD) fills 96-98% (issue 13; `tests/training/test_packing.py` measures it).

The rule, per epoch e of a dataset with documents of `lengths` tokens:

1. `perm` = a permutation of the documents seeded by `(seed, e)`.
2. `perm` is cut into windows of `window` documents; each window is packed on its own by BFD:
   documents by decreasing length (ties in `perm` order), each into the open sample with the
   least room that still holds it, else into a new sample. A window bounds the memory and makes
   an epoch's packing cost O(n * samples-per-window), and keeps documents of distant parts of
   the shuffle apart (no global sort by length: sample k is not "all long documents").
3. The samples of a window are put in an order seeded by `(seed, e, w)`, so long and short
   documents are not trained in length order.

A document of n tokens occupies n - 1 input positions (inputs t[:-1], labels t[1:], shifted per
document, as `dataset.shifted_example`), so a sample of `seq_length` positions holds documents
whose (n - 1) sum to at most `seq_length`. Documents are never split: one longer than
`seq_length + 1` tokens is refused here (`ValueError` naming it) — preprocess cuts it at a step
boundary, and the checks before training should refuse it earlier; it is never truncated.

Every function here is pure: the samples of epoch e are a function of (lengths, seq_length,
seed, window, e) only, every document is in exactly one sample per epoch, and global sample k
is found by counting epochs (`PackedEpochs.sample`), so a resumed run at step k sees exactly
the samples an uninterrupted run would have.

`packing_utilisation` = real input positions / (samples * seq_length): the fraction of
computed positions that are tokens of a document. `srft report PREFIX --seq-length N` prints
it for a dataset with this same function, so the report shows what training gets.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

DEFAULT_WINDOW = 4096  # documents per BFD window: ~2k samples of 32k at a 15k median


@dataclass(frozen=True)
class EpochPacking:
    """One epoch: sample i holds documents `order[bounds[i]:bounds[i + 1]]` (indices into lengths)."""

    order: np.ndarray    # int64, a permutation of all documents
    bounds: np.ndarray   # int64, len = samples + 1
    real_positions: int  # sum over documents of (tokens - 1)
    seq_length: int

    @property
    def num_samples(self) -> int:
        return len(self.bounds) - 1

    @property
    def utilisation(self) -> float:
        return self.real_positions / max(self.num_samples * self.seq_length, 1)

    def documents(self, sample: int) -> np.ndarray:
        return self.order[self.bounds[sample]:self.bounds[sample + 1]]


def too_long_documents(lengths: np.ndarray, seq_length: int) -> np.ndarray:
    """Indices of documents that cannot fit whole in one sample of `seq_length` positions."""
    return np.flatnonzero(np.asarray(lengths, dtype=np.int64) > seq_length + 1)


def input_positions(lengths: np.ndarray, seq_length: int) -> np.ndarray:
    """Positions each document takes in a sample (tokens - 1); refuses one that cannot fit whole."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or lengths.size == 0:
        raise ValueError("packing needs at least one document")
    if seq_length < 1:
        raise ValueError(f"seq_length must be positive, got {seq_length}")
    too_long = too_long_documents(lengths, seq_length)
    if too_long.size:
        doc = int(too_long[0])
        raise ValueError(f"document {doc} has {int(lengths[doc])} tokens, more than seq_length + 1 = "
                         f"{seq_length + 1} ({too_long.size} such); documents are never split: "
                         "re-run srft preprocess with this --seq-length (it cuts at a step boundary)")
    if (lengths < 2).any():
        raise ValueError(f"document {int(np.flatnonzero(lengths < 2)[0])} has fewer than 2 tokens")
    return lengths - 1


def best_fit_decreasing(sizes: np.ndarray, capacity: int) -> list[list[int]]:
    """Bins (lists of indices into `sizes`) by best-fit-decreasing; ties keep index order.

    Open bins are kept sorted by free room, so each placement is a binary search: O(n log n)
    plus list insertion."""
    order = sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin number), sorted
    for i in order:
        size = int(sizes[i])
        at = bisect.bisect_left(free, (size, -1))  # the tightest bin with room >= size
        if at < len(free):
            room, b = free.pop(at)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - size > 0:
            bisect.insort(free, (room - size, b))
    return bins


def pack_epoch(lengths: np.ndarray, seq_length: int, seed: int, epoch: int = 0,
               window: int = DEFAULT_WINDOW) -> EpochPacking:
    """The samples of one epoch (see the module docstring for the rule)."""
    used = input_positions(lengths, seq_length)
    if window < 1:
        raise ValueError(f"packing window must be positive, got {window}")
    perm = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(len(used))
    order: list[int] = []
    bounds = [0]
    for w, start in enumerate(range(0, len(perm), window)):
        docs = perm[start:start + window]
        bins = best_fit_decreasing(used[docs], seq_length)
        shuffle = np.random.Generator(np.random.PCG64([seed, epoch, w])).permutation(len(bins))
        for b in shuffle:
            order.extend(int(docs[i]) for i in bins[b])
            bounds.append(len(order))
    return EpochPacking(np.asarray(order, dtype=np.int64), np.asarray(bounds, dtype=np.int64),
                        int(used.sum()), seq_length)


@dataclass
class PackedEpochs:
    """Global sample k over as many epochs as needed (each epoch packed with its own seed).

    `sample(k)` depends only on (lengths, seq_length, seed, window, k); epochs are computed on
    first use and cached."""

    lengths: np.ndarray
    seq_length: int
    seed: int
    window: int = DEFAULT_WINDOW
    _epochs: list[EpochPacking] = field(default_factory=list, repr=False)
    _starts: list[int] = field(default_factory=lambda: [0], repr=False)

    def epoch(self, e: int) -> EpochPacking:
        while len(self._epochs) <= e:
            packed = pack_epoch(self.lengths, self.seq_length, self.seed, len(self._epochs), self.window)
            self._epochs.append(packed)
            self._starts.append(self._starts[-1] + packed.num_samples)
        return self._epochs[e]

    def sample(self, k: int) -> tuple[int, np.ndarray]:
        """`(epoch, documents)` of global sample k."""
        if k < 0:
            raise ValueError(f"sample index must be >= 0, got {k}")
        while self._starts[-1] <= k:
            self.epoch(len(self._epochs))
        e = bisect.bisect_right(self._starts, k) - 1
        return e, self._epochs[e].documents(k - self._starts[e])


def packed_order(lengths: np.ndarray, seq_length: int, num_samples: int | None, seed: int,
                 window: int = DEFAULT_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """`(order, bounds)`: sample i holds documents `order[bounds[i]:bounds[i + 1]]`, whole epochs
    until at least `num_samples` samples (one epoch when None); epochs never share a sample.

    The shape `training/data.py`'s `pack_documents` returns, so the trainer can switch to this
    packing in one place; sample k is `PackedEpochs(...).sample(k)`."""
    epochs = PackedEpochs(np.asarray(lengths), seq_length, seed, window)
    orders, bounds = [], [np.zeros(1, dtype=np.int64)]
    samples = placed = 0
    while not orders or (num_samples is not None and samples < num_samples):
        packed = epochs.epoch(len(orders))
        bounds.append(packed.bounds[1:] + placed)
        orders.append(packed.order)
        samples, placed = samples + packed.num_samples, placed + len(packed.order)
    return np.concatenate(orders), np.concatenate(bounds)


def packing_summary(lengths: np.ndarray, seq_length: int, seed: int = 0,
                    window: int = DEFAULT_WINDOW) -> dict[str, float | int]:
    """What training gets at `seq_length`: `{seq_length, utilisation, samples}` of epoch 0
    (later epochs differ only by their shuffle)."""
    packed = pack_epoch(lengths, seq_length, seed, 0, window)
    return {"seq_length": int(seq_length), "utilisation": round(packed.utilisation, 6),
            "samples": packed.num_samples}
