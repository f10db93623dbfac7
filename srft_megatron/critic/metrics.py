"""Agreement of critic labels with expert labels: per-label precision, recall, F1, accuracy.

Why per step and per label: SRFT rejects steps by label, so what matters is how well the critic
finds each class, `harmful` most of all (it decides which tokens get zero weight). This is the
paper's Table 3 (its critic: good F1 0.737, harmful F1 0.384, accuracy 0.586). Steps are paired
by (trajectory id, step number); a trajectory is compared only when both files label it with
the same number of steps, and everything left out is counted and reported, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from srft_megatron.errors import InputError
from srft_megatron.trajectory import LABELS, LabelRecord


@dataclass
class EvalResult:
    confusion: dict[str, dict[str, int]]  # confusion[reference][predicted]
    trajectories: int = 0
    missing: list[str] = field(default_factory=list)  # in the reference, not labelled by the critic
    extra: int = 0  # labelled by the critic, not in the reference
    mismatched: list[InputError] = field(default_factory=list)  # different step counts

    @property
    def steps(self) -> int:
        return sum(sum(row.values()) for row in self.confusion.values())

    @property
    def accuracy(self) -> float:
        correct = sum(self.confusion[label][label] for label in LABELS)
        return correct / self.steps if self.steps else 0.0

    def per_label(self) -> dict[str, dict[str, float]]:
        out = {}
        for label in LABELS:
            tp = self.confusion[label][label]
            predicted = sum(self.confusion[ref][label] for ref in LABELS)
            support = sum(self.confusion[label].values())
            precision = tp / predicted if predicted else 0.0
            recall = tp / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support,
                          "predicted": predicted}
        return out

    def macro_f1(self) -> float:
        rows = [r for r in self.per_label().values() if r["support"]]
        return sum(r["f1"] for r in rows) / len(rows) if rows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "trajectories": self.trajectories, "accuracy": self.accuracy,
                "macro_f1": self.macro_f1(), "per_label": self.per_label(), "confusion": self.confusion,
                "missing": self.missing, "extra": self.extra,
                "mismatched": [str(e) for e in self.mismatched]}

    def table(self) -> str:
        lines = [f"{'label':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}"]
        for label, row in self.per_label().items():
            lines.append(f"{label:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
                         f"{row['support']:>8d}")
        lines.append(f"accuracy {self.accuracy:.3f}, macro F1 {self.macro_f1():.3f} over {self.steps} steps "
                     f"of {self.trajectories} trajectories")
        lines.append("confusion (rows: reference, columns: critic): "
                     + "; ".join(f"{ref}: " + " ".join(str(self.confusion[ref][p]) for p in LABELS) for ref in LABELS))
        if self.missing or self.extra or self.mismatched:
            lines.append(f"left out: {len(self.missing)} reference trajectories without critic labels, "
                         f"{self.extra} critic trajectories without reference, "
                         f"{len(self.mismatched)} with different step counts")
        return "\n".join(lines)


def compare(predicted: dict[str, LabelRecord], reference: dict[str, LabelRecord]) -> EvalResult:
    result = EvalResult(confusion={ref: {p: 0 for p in LABELS} for ref in LABELS})
    result.extra = len(set(predicted) - set(reference))
    for tid, ref in reference.items():
        pred = predicted.get(tid)
        if pred is None:
            result.missing.append(tid)
            continue
        if len(pred.steps) != len(ref.steps):
            result.mismatched.append(InputError(f"critic labels {len(pred.steps)} steps, reference "
                                                f"{len(ref.steps)}", traj_id=tid))
            continue
        result.trajectories += 1
        for p, r in zip(pred.steps, ref.steps):
            result.confusion[r.label][p.label] += 1
    return result
