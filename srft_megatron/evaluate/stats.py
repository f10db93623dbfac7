"""Statistics of repeated SWE-bench rollouts: resolved %, mean ± std, pass@k, paired bootstrap.

Why this module exists: the paper's claim rests on differences of about one point (SRFT
32.2 ± 0.9 vs RFT 30.9 ± 1.1 resolved, 7 rollouts each) while a single rollout can move by
several points. So every number we print must say how it was computed:

* **resolved % of a rollout** = resolved instances / instances of the benchmark (the
  harness's `total_instances`, e.g. 500 for Verified), not / submitted instances: an
  instance the agent never submitted counts as unresolved.
* **mean ± std** over rollouts; std is the *sample* standard deviation (ddof=1), the
  spread one more rollout would show. One rollout has no std (reported as NaN, never 0).
* **pass@k**: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language
  Models Trained on Code", eq. 1), per instance 1 - C(n-c, k) / C(n, k) with n rollouts
  and c resolved, averaged over instances. pass@n is the share resolved at least once.
* **paired bootstrap** of the difference of mean resolved % between two models on the same
  instances: each replicate draws instances with replacement (the same draw for both
  models: that is the pairing) and, independently per model, rollouts with replacement.
  The 95% CI is the 2.5th and 97.5th percentile of the replicates (numpy's default
  linear interpolation). A seed makes it reproducible.

Unequal rollout counts are handled explicitly: inside one model every rollout must cover
the same instances (else `InputError`); two models may have different rollout counts (each
model's rollouts are resampled from its own), and pass@k needs k <= the rollouts of every
model it is reported for (else `ValueError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from srft_megatron.errors import InputError


@dataclass
class ResultTable:
    """One model's results: `resolved[i, r]` is True when instance i was resolved in rollout r.

    `instance_ids` names the rows. Rows may include instances that no rollout submitted
    (all False): they keep the denominator equal to the benchmark size."""

    name: str
    instance_ids: list[str]
    resolved: np.ndarray  # bool, shape (instances, rollouts)
    rollout_names: list[str]

    def __post_init__(self) -> None:
        self.resolved = np.asarray(self.resolved, dtype=bool)
        if self.resolved.ndim != 2:
            raise ValueError(f"{self.name}: resolved must be a 2-D instances x rollouts table")
        n_inst, n_roll = self.resolved.shape
        if n_inst != len(self.instance_ids) or len(set(self.instance_ids)) != n_inst:
            raise ValueError(f"{self.name}: instance ids must be unique, one per row")
        if n_roll != len(self.rollout_names):
            raise ValueError(f"{self.name}: one rollout name per column")
        if n_roll == 0 or n_inst == 0:
            raise InputError(f"model {self.name!r} has no rollouts or no instances")

    @property
    def num_instances(self) -> int:
        return self.resolved.shape[0]

    @property
    def num_rollouts(self) -> int:
        return self.resolved.shape[1]

    @classmethod
    def from_rollouts(cls, name: str, rollouts: dict[str, set[str]], instance_ids: list[str]) -> "ResultTable":
        """Build from {rollout name: resolved ids} over the given instance universe."""
        index = {iid: i for i, iid in enumerate(instance_ids)}
        table = np.zeros((len(instance_ids), len(rollouts)), dtype=bool)
        for col, (rname, ids) in enumerate(rollouts.items()):
            unknown = sorted(set(ids) - index.keys())
            if unknown:
                raise InputError(f"model {name!r}, rollout {rname!r}: resolved ids outside the "
                                 f"instance set: {', '.join(unknown[:5])}")
            for iid in ids:
                table[index[iid], col] = True
        return cls(name, list(instance_ids), table, list(rollouts))

    def aligned(self, instance_ids: list[str]) -> "ResultTable":
        """The same results over a larger instance universe (new rows all unresolved)."""
        missing = set(self.instance_ids) - set(instance_ids)
        if missing:
            raise ValueError(f"{self.name}: universe lacks {sorted(missing)[:5]}")
        row = {iid: i for i, iid in enumerate(self.instance_ids)}
        table = np.zeros((len(instance_ids), self.num_rollouts), dtype=bool)
        for i, iid in enumerate(instance_ids):
            if iid in row:
                table[i] = self.resolved[row[iid]]
        return ResultTable(self.name, list(instance_ids), table, list(self.rollout_names))


def resolved_percent(table: ResultTable) -> np.ndarray:
    """Resolved % of each rollout (denominator: every instance of the table)."""
    return 100.0 * table.resolved.mean(axis=0)


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); std is NaN for a single value."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_std of no values")
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), std


def pass_at_k_instance(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one instance with n samples of which c are correct (Chen et al. 2021)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n rollouts, have n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_at_k(table: ResultTable, k: int) -> float:
    """Mean unbiased pass@k over the table's instances, in percent."""
    n = table.num_rollouts
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} for model {table.name!r} needs k <= its {n} rollouts")
    counts = table.resolved.sum(axis=1)
    return 100.0 * float(np.mean([pass_at_k_instance(n, int(c), k) for c in counts]))


@dataclass
class ModelSummary:
    name: str
    instances: int
    rollouts: int
    per_rollout: list[float]
    mean: float
    std: float
    pass_at: dict[int, float]


def summarize(table: ResultTable, ks: list[int] | None = None) -> ModelSummary:
    """Resolved % per rollout, mean ± std and pass@k for k in `ks` (default: 1 and n)."""
    per = resolved_percent(table)
    mean, std = mean_std(per)
    ks = sorted(set(ks or [1, table.num_rollouts]))
    return ModelSummary(table.name, table.num_instances, table.num_rollouts,
                        [float(x) for x in per], mean, std, {k: pass_at_k(table, k) for k in ks})


@dataclass
class BootstrapResult:
    name_a: str
    name_b: str
    difference: float        # observed mean resolved % of A minus B, percentage points
    ci_low: float
    ci_high: float
    confidence: float
    replicates: int
    seed: int | None
    prob_a_not_better: float  # share of replicates with difference <= 0
    rollouts_a: int
    rollouts_b: int
    instances: int


def paired_bootstrap(a: ResultTable, b: ResultTable, *, replicates: int = 10_000,
                     seed: int | None = 0, confidence: float = 0.95,
                     chunk: int = 1000) -> BootstrapResult:
    """Paired bootstrap CI of mean resolved %(A) - mean resolved %(B).

    Both tables must have the same instances in the same order (see `align_tables`).
    Each replicate resamples instances (shared by A and B) and each model's rollouts."""
    if a.instance_ids != b.instance_ids:
        raise InputError(f"models {a.name!r} and {b.name!r} are not evaluated on the same instances; "
                         "a paired comparison needs the same instance set")
    if replicates < 1 or not 0 < confidence < 1:
        raise ValueError("need replicates >= 1 and 0 < confidence < 1")
    rng = np.random.default_rng(seed)
    ra, rb = a.resolved.astype(float), b.resolved.astype(float)
    n_inst, n_a, n_b = ra.shape[0], ra.shape[1], rb.shape[1]
    diffs = np.empty(replicates)
    for start in range(0, replicates, chunk):
        m = min(chunk, replicates - start)
        # Resampling with replacement == multinomial counts; the statistic is linear in them.
        w_inst = rng.multinomial(n_inst, np.full(n_inst, 1.0 / n_inst), size=m)  # (m, I)
        w_a = rng.multinomial(n_a, np.full(n_a, 1.0 / n_a), size=m)               # (m, Ra)
        w_b = rng.multinomial(n_b, np.full(n_b, 1.0 / n_b), size=m)               # (m, Rb)
        per_inst = (w_a @ ra.T) / n_a - (w_b @ rb.T) / n_b                           # (m, I)
        diffs[start:start + m] = 100.0 * (w_inst * per_inst).sum(axis=1) / n_inst
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    observed = 100.0 * (ra.mean() - rb.mean())
    return BootstrapResult(a.name, b.name, float(observed), float(low), float(high), confidence,
                           replicates, seed, float(np.mean(diffs <= 0.0)), n_a, n_b, n_inst)


def align_tables(tables: list[ResultTable]) -> list[ResultTable]:
    """Put every table on the union of their instance ids, in sorted order."""
    universe = sorted(set().union(*(t.instance_ids for t in tables)))
    return [t.aligned(universe) for t in tables]


def per_instance(tables: list[ResultTable]) -> list[tuple[str, list[int]]]:
    """(instance id, resolved count per model), for instances some model resolved at least once;
    tables must be aligned. Sorted by total count descending, then id (deterministic on ties)."""
    ids = tables[0].instance_ids
    counts = np.stack([t.resolved.sum(axis=1) for t in tables], axis=1)
    rows = [(ids[i], [int(c) for c in counts[i]]) for i in range(len(ids)) if counts[i].sum() > 0]
    rows.sort(key=lambda row: (-sum(row[1]), row[0]))
    return rows
