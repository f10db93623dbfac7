"""Packing (training/packing.py): best-fit-decreasing over seeded windows of whole documents.

Lengths are drawn like SWE-agent/SWE-smith trajectories: log-normal around a 15k-token median
(sigma 0.6: ~10% above 32k), those above 32k cut at a step boundary by preprocess (uniform in
[16k, 32k+1]). Every test runs in well under a second."""

from __future__ import annotations

import numpy as np
import pytest

from srft_megatron.training.packing import (PackedEpochs, best_fit_decreasing, input_positions, pack_epoch,
                                            packed_order, packing_summary)

SEQ = 32768


def swe_lengths(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lengths = np.maximum(np.exp(rng.normal(np.log(15_000), 0.6, n)).astype(np.int64), 3_000)
    over = lengths > SEQ + 1
    assert 0.05 < over.mean() < 0.15  # the draw is the one the issue describes
    lengths[over] = rng.integers(SEQ // 2, SEQ + 2, over.sum())
    return lengths


def next_fit_utilisation(lengths: np.ndarray, seed: int) -> float:
    """The packing training used before (shuffled next-fit), as the baseline to beat."""
    used, fill, samples = lengths - 1, 0, 1
    for doc in np.random.default_rng(seed).permutation(len(lengths)):
        if fill + used[doc] > SEQ:
            samples, fill = samples + 1, 0
        fill += used[doc]
    return used.sum() / (samples * SEQ)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_utilisation_at_32k_on_swe_agent_lengths(seed):
    lengths = swe_lengths(2000, seed)
    packed = pack_epoch(lengths, SEQ, seed)
    positions = np.array([(lengths[packed.documents(i)] - 1).sum() for i in range(packed.num_samples)])
    assert positions.max() <= SEQ
    assert packed.utilisation == pytest.approx(positions.sum() / (packed.num_samples * SEQ))
    assert packed.utilisation >= 0.95
    assert next_fit_utilisation(lengths, seed) < 0.85  # what this replaces wasted a quarter


@pytest.mark.parametrize("window", [7, 64, 4096])
def test_every_document_exactly_once_per_epoch(window):
    lengths = swe_lengths(300, 3)
    epochs = PackedEpochs(lengths, SEQ, seed=5, window=window)
    for e in range(3):
        packed = epochs.epoch(e)
        np.testing.assert_array_equal(np.sort(packed.order), np.arange(len(lengths)))
        assert all(len(packed.documents(i)) >= 1 for i in range(packed.num_samples))
        assert max((lengths[packed.documents(i)] - 1).sum() for i in range(packed.num_samples)) <= SEQ
    assert not np.array_equal(epochs.epoch(0).order, epochs.epoch(1).order)  # each epoch its own shuffle


def test_sample_k_is_a_pure_function_of_seed_and_k():
    lengths = swe_lengths(200, 4)
    straight = PackedEpochs(lengths, SEQ, seed=11, window=50)
    run = [straight.sample(k) for k in range(350)]  # more than three epochs
    assert len({e for e, _ in run}) >= 3
    for k in (0, 97, 101, 349, 220):  # a resumed run builds nothing before k, in any order
        e, docs = PackedEpochs(lengths, SEQ, seed=11, window=50).sample(k)
        assert e == run[k][0] and np.array_equal(docs, run[k][1])
    other = PackedEpochs(lengths, SEQ, seed=12, window=50)
    assert any(not np.array_equal(other.sample(k)[1], run[k][1]) for k in range(10))


def test_best_fit_decreasing_places_into_the_tightest_bin():
    # 6 -> A(4 left); 5 -> B(5); 4 -> A (tightest that fits: full); 3 -> B(2); 2 -> B(0). Next-fit needs 3.
    bins = best_fit_decreasing(np.array([2, 6, 4, 5, 3]), 10)
    assert sorted(sorted(b) for b in bins) == [[0, 3, 4], [1, 2]]
    rng = np.random.default_rng(0)
    for _ in range(20):
        sizes = rng.integers(1, 11, 40)
        bins = best_fit_decreasing(sizes, 10)
        assert sorted(i for b in bins for i in b) == list(range(40))
        assert all(sizes[b].sum() <= 10 for b in map(np.array, bins))
        # near the lower bound sum / capacity (BFD: <= 11/9 OPT + 6/9)
        assert len(bins) <= int(np.ceil(sizes.sum() / 10 * 11 / 9)) + 1


def test_packed_order_has_the_trainer_contract():
    """`packed_order` is what the trainer's `pack_documents` returns: documents in order and sample
    bounds, whole epochs until `num_samples`; sample k equals `PackedEpochs.sample(k)`."""
    lengths = swe_lengths(120, 6)
    order, bounds = packed_order(lengths, SEQ, num_samples=150, seed=3, window=40)
    epochs = PackedEpochs(lengths, SEQ, seed=3, window=40)
    assert len(bounds) - 1 >= 150 and len(order) % len(lengths) == 0 and bounds[-1] == len(order)
    for k in range(len(bounds) - 1):
        np.testing.assert_array_equal(order[bounds[k]:bounds[k + 1]], epochs.sample(k)[1])
    one_epoch, one_bounds = packed_order(lengths, SEQ, num_samples=None, seed=3, window=40)
    assert len(one_epoch) == len(lengths) and len(one_bounds) - 1 == epochs.epoch(0).num_samples


def test_documents_are_never_split_and_too_long_ones_are_refused():
    assert input_positions(np.array([SEQ + 1, 2]), SEQ).tolist() == [SEQ, 1]  # exactly one full sample
    with pytest.raises(ValueError, match=r"document 1 has 32770 tokens, more than seq_length \+ 1"):
        pack_epoch(np.array([100, SEQ + 2]), SEQ, seed=0)
    summary = packing_summary(np.array([SEQ + 1, 10, 10]), SEQ)
    assert summary == {"seq_length": SEQ, "samples": 2, "utilisation": round((SEQ + 18) / (2 * SEQ), 6)}
