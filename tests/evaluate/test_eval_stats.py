"""The statistics against values computed by hand on small tables."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from srft_megatron.errors import InputError
from srft_megatron.evaluate.summary import build_report
from srft_megatron.evaluate.stats import (ResultTable, mean_std, paired_bootstrap, pass_at_k,
                                          pass_at_k_instance, per_instance, resolved_percent, summarize)


def table(name, rollouts, ids=("a", "b", "c", "d")):
    return ResultTable.from_rollouts(name, {f"r{i}": set(r) for i, r in enumerate(rollouts, 1)}, list(ids))


def test_resolved_mean_std_pass_at_k_by_hand():
    # a resolved 3/3, b 2/3, c 1/3, d never: rollouts 50, 25, 75 %
    t = table("m", [{"a", "b"}, {"a"}, {"a", "b", "c"}])
    assert resolved_percent(t).tolist() == [50.0, 25.0, 75.0]
    mean, std = mean_std(resolved_percent(t))
    assert mean == 50.0 and std == pytest.approx(25.0)  # sqrt((0 + 625 + 625) / 2): ddof=1
    assert pass_at_k(t, 1) == pytest.approx(50.0)        # pass@1 == mean resolved
    # pass@2: a 1, b 1 (n-c=1 < 2), c 1 - C(2,2)/C(3,2) = 2/3, d 0  ->  (8/3)/4
    assert pass_at_k(t, 2) == pytest.approx(100 * (8 / 3) / 4)
    assert pass_at_k(t, 3) == pytest.approx(75.0)        # pass@n: resolved at least once
    s = summarize(t)
    assert sorted(s.pass_at) == [1, 3] and s.rollouts == 3 and s.instances == 4


def test_pass_at_k_matches_enumeration_of_subsets():
    for n in range(1, 7):
        for c in range(n + 1):
            outcomes = [1] * c + [0] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(outcomes, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k_instance(n, c, k) == pytest.approx(brute)


def test_model_that_never_resolves():
    t = table("zero", [set(), set(), set()])
    assert resolved_percent(t).tolist() == [0.0, 0.0, 0.0]
    assert mean_std(resolved_percent(t)) == (0.0, 0.0)
    assert pass_at_k(t, 3) == 0.0
    other = table("one", [{"a"}, {"a"}, {"a"}])
    res = paired_bootstrap(other, t, replicates=2000, seed=1)
    assert res.difference == 25.0
    assert res.prob_a_not_better == pytest.approx((3 / 4) ** 4, abs=0.03)  # no draw of "a" in 4 -> diff 0
    # draws of "a" ~ Binomial(4, 1/4): cumulative .316 .738 .949 .996 -> 2.5%: 0, 97.5%: 3 draws
    assert (res.ci_low, res.ci_high) == (0.0, 75.0)


def test_single_rollout_has_no_std_and_no_pass_at_2():
    t = table("one", [{"a"}])
    mean, std = mean_std(resolved_percent(t))
    assert mean == 25.0 and math.isnan(std)
    with pytest.raises(ValueError, match="pass@2"):
        pass_at_k(t, 2)


def test_ties_identical_models_and_instance_order():
    a = table("a", [{"a", "b"}, {"c"}])
    b = table("b", [{"a", "b"}, {"c"}])
    res = paired_bootstrap(a, b, replicates=500, seed=0)
    # Both models identical, but rollouts are resampled independently per model: the
    # difference is 0 observed, the interval straddles 0, and by symmetry
    # P(A <= B) = P(diff < 0) + P(diff = 0) = (1 + P(diff = 0)) / 2 >= 1/2.
    assert res.difference == 0.0
    assert res.ci_low < 0.0 < res.ci_high
    assert res.prob_a_not_better >= 0.5
    # One rollout each, identical: every replicate is exactly 0 -> a tie at 0, P(A <= B) = 1.
    a1, b1 = table("a", [{"a", "c"}]), table("b", [{"a", "c"}])
    res = paired_bootstrap(a1, b1, replicates=300, seed=0)
    assert (res.ci_low, res.ci_high, res.prob_a_not_better) == (0.0, 0.0, 1.0)
    # Per-instance rows: ties in total broken by instance id, never-resolved rows left out.
    rows = per_instance([table("x", [{"b", "a"}, {"c"}]), table("y", [{"c"}, {"a"}])])
    assert rows == [("a", [1, 1]), ("c", [1, 1]), ("b", [1, 0])]


def test_bootstrap_equals_enumerated_distribution():
    # 2 instances, 1 rollout each: A = [1, 0], B = [0, 0]. Instance draws {a,a} 1/4 -> +100,
    # {a,b} 1/2 -> +50, {b,b} 1/4 -> 0 points.
    a = ResultTable.from_rollouts("A", {"r": {"a"}}, ["a", "b"])
    b = ResultTable.from_rollouts("B", {"r": set()}, ["a", "b"])
    res = paired_bootstrap(a, b, replicates=20_000, seed=3)
    assert res.difference == 50.0
    assert (res.ci_low, res.ci_high) == (0.0, 100.0)
    assert res.prob_a_not_better == pytest.approx(0.25, abs=0.015)
    # 1 instance; A has 2 rollouts [1, 0], B has 1 rollout [0] (unequal counts, handled):
    # rollout draws of A give 100 (1/4), 50 (1/2), 0 (1/4): the same distribution.
    a = ResultTable.from_rollouts("A", {"r1": {"x"}, "r2": set()}, ["x"])
    b = ResultTable.from_rollouts("B", {"r1": set()}, ["x"])
    res = paired_bootstrap(a, b, replicates=20_000, seed=3)
    assert (res.difference, res.ci_low, res.ci_high) == (50.0, 0.0, 100.0)
    assert res.prob_a_not_better == pytest.approx(0.25, abs=0.015)
    assert (res.rollouts_a, res.rollouts_b) == (2, 1)


def test_bootstrap_is_seedable_and_pairs_instances():
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(200)]
    base = rng.random((200, 5)) < 0.3
    better = base | (rng.random((200, 5)) < 0.1)
    a = ResultTable("A", ids, better, [f"r{k}" for k in range(5)])
    b = ResultTable("B", ids, base, [f"r{k}" for k in range(5)])
    r1 = paired_bootstrap(a, b, replicates=3000, seed=7)
    r2 = paired_bootstrap(a, b, replicates=3000, seed=7)
    r3 = paired_bootstrap(a, b, replicates=3000, seed=8)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    assert (r1.ci_low, r1.ci_high) != (r3.ci_low, r3.ci_high)
    assert r1.ci_low < r1.difference < r1.ci_high and r1.ci_low > 0  # A >= B on every cell
    # Pairing: shuffling B's rows breaks the pairing and must widen the interval.
    shuffled = ResultTable("B", ids, base[rng.permutation(200)], b.rollout_names)
    unpaired = paired_bootstrap(a, shuffled, replicates=3000, seed=7)
    assert (unpaired.ci_high - unpaired.ci_low) > (r1.ci_high - r1.ci_low)


def test_unequal_rollout_counts_and_instance_sets_are_explicit():
    seven = table("seven", [{"a"}] * 7)
    two = table("two", [{"a"}, {"b"}])
    report = build_report([seven, two], [("seven", "two")], replicates=200)
    assert report.ks == [1, 2]  # pass@k up to the smallest rollout count, same k for both
    assert [m.rollouts for m in report.models] == [7, 2]
    assert (report.comparisons[0].rollouts_a, report.comparisons[0].rollouts_b) == (7, 2)
    with pytest.raises(InputError, match="pass@7 needs at least 7 rollouts"):
        build_report([seven, two], [], ks=[7])
    other = table("other", [{"a"}], ids=("a", "b", "c", "e"))
    with pytest.raises(InputError, match="different instance sets"):
        build_report([seven, other], [("seven", "other")])
    with pytest.raises(InputError, match="not a --run"):
        build_report([seven, two], [("seven", "nope")])
