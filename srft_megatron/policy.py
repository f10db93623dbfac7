"""Weight policies (DESIGN §3): (resolved?, label, confidence) → a loss weight per step.

A policy is a small, named, versioned config. Presets are the paper's experiment rows:

| preset              | resolved trajectories      | unresolved trajectories             |
|---------------------|----------------------------|-------------------------------------|
| `naive`             | every step 1               | every step 1                        |
| `rft`               | every step 1               | dropped (all 0)                     |
| `srft`              | every step 1               | `harmful` → 0, others 1             |
| `unresolved-only`   | dropped                    | every step 1                        |
| `unresolved-masked` | dropped                    | `harmful` → 0, others 1             |
| `all-masked`        | `harmful` → 0, others 1    | `harmful` → 0, others 1             |

Knobs: which labels are rejected (`--reject-labels harmful,unnecessary`), a confidence
threshold (a rejection counts only when the critic's confidence is at least the threshold;
a label without confidence counts as confident), fractional weights per label
(`--label-weight unnecessary=0.5`), and how a trajectory of unknown resolution is treated.
Non-assistant tokens are never weighted: the renderer only puts step weights on step spans.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from srft_megatron.errors import ConfigError, InputError
from srft_megatron.trajectory import LABELS, LabelRecord, Trajectory, check_label_count

POLICY_VERSION = 1


@dataclass(frozen=True)
class WeightPolicy:
    name: str
    use_resolved: bool = True                      # keep resolved trajectories at all
    use_unresolved: bool = True                    # keep unresolved trajectories at all
    mask_resolved: bool = False                    # apply label rejection to resolved trajectories
    mask_unresolved: bool = False                  # apply label rejection to unresolved trajectories
    rejected_labels: tuple[str, ...] = ("harmful",)
    min_confidence: float | None = None            # reject only when confidence >= this
    label_weights: tuple[tuple[str, float], ...] = field(default_factory=tuple)  # fractional weights of kept labels
    unknown_resolved_as: str = "unresolved"        # "resolved" | "unresolved" | "error"
    version: int = POLICY_VERSION

    def __post_init__(self):
        for label in self.rejected_labels:
            if label not in LABELS:
                raise ConfigError(f"unknown label {label!r} in rejected labels (expected {', '.join(LABELS)})")
        for label, weight in self.label_weights:
            if label not in LABELS:
                raise ConfigError(f"unknown label {label!r} in label weights")
            if not 0.0 <= weight <= 1.0:
                raise ConfigError(f"label weight for {label} must be in [0, 1], got {weight}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"confidence threshold must be in [0, 1], got {self.min_confidence}")
        if self.unknown_resolved_as not in ("resolved", "unresolved", "error"):
            raise ConfigError("unknown_resolved_as must be resolved, unresolved or error")

    @property
    def needs_labels_for(self) -> tuple[bool, bool]:
        """(resolved, unresolved): whether labels are required to weight such a trajectory."""
        return (self.use_resolved and self.mask_resolved, self.use_unresolved and self.mask_unresolved)

    def to_json(self) -> dict:
        out = asdict(self)
        out["rejected_labels"] = list(self.rejected_labels)
        out["label_weights"] = dict(self.label_weights)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "WeightPolicy":
        """The policy a dataset was made with (`meta.json`'s `policy`), exactly as `to_json` wrote it."""
        if not isinstance(obj, dict):
            raise ConfigError(f"a weight policy is a JSON object, got {type(obj).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise ConfigError(f"unknown weight policy field(s) {', '.join(unknown)}")
        if obj.get("version", POLICY_VERSION) != POLICY_VERSION:
            raise ConfigError(f"weight policy version {obj.get('version')} (this srft reads {POLICY_VERSION})")
        values = dict(obj)
        values["rejected_labels"] = tuple(values.get("rejected_labels", ("harmful",)))
        values["label_weights"] = tuple((str(k), float(v)) for k, v in dict(values.get("label_weights") or {}).items())
        return cls(**values)

    def is_resolved(self, traj: Trajectory) -> bool:
        if traj.resolved is not None:
            return traj.resolved
        if self.unknown_resolved_as == "error":
            raise InputError("resolved status unknown (pass --resolved to ingest, or choose "
                             "--unknown-resolved)", traj_id=traj.id)
        return self.unknown_resolved_as == "resolved"

    def step_weights(self, traj: Trajectory, labels: LabelRecord | None) -> list[float]:
        """One weight per step. All zeros means the trajectory is not used by this policy."""
        resolved = self.is_resolved(traj)
        k = traj.num_steps
        if not (self.use_resolved if resolved else self.use_unresolved):
            return [0.0] * k
        mask = self.mask_resolved if resolved else self.mask_unresolved
        fractional = dict(self.label_weights)
        if labels is None:
            if mask or fractional:
                kind = "resolved" if resolved else "unresolved"
                raise InputError(f"no labels for this {kind} trajectory (policy {self.name} needs them)",
                                 traj_id=traj.id)
            return [1.0] * k
        check_label_count(len(labels.steps), k, traj.id)
        weights = []
        for step in labels.steps:
            confident = (self.min_confidence is None or step.confidence is None
                         or step.confidence >= self.min_confidence)
            if mask and step.label in self.rejected_labels and confident:
                weights.append(0.0)
            else:
                weights.append(fractional.get(step.label, 1.0))
        return weights


PRESETS: dict[str, WeightPolicy] = {
    "naive": WeightPolicy("naive"),
    "rft": WeightPolicy("rft", use_unresolved=False),
    "srft": WeightPolicy("srft", mask_unresolved=True),
    "unresolved-only": WeightPolicy("unresolved-only", use_resolved=False),
    "unresolved-masked": WeightPolicy("unresolved-masked", use_resolved=False, mask_unresolved=True),
    "all-masked": WeightPolicy("all-masked", mask_resolved=True, mask_unresolved=True),
}


def make_policy(name: str, *, reject_labels: str | None = None, min_confidence: float | None = None,
                label_weights: list[str] | None = None, unknown_resolved: str | None = None) -> WeightPolicy:
    """A preset with the command-line knobs applied (`label_weights` as `label=weight` strings)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown policy {name!r} (choose from {', '.join(PRESETS)})")
    policy = PRESETS[name]
    changes: dict = {}
    if reject_labels:
        changes["rejected_labels"] = tuple(x.strip() for x in reject_labels.split(",") if x.strip())
    if min_confidence is not None:
        changes["min_confidence"] = min_confidence
    if label_weights:
        pairs = []
        for item in label_weights:
            label, sep, value = item.partition("=")
            try:
                pairs.append((label.strip(), float(value)))
            except ValueError:
                raise ConfigError(f"label weight must be LABEL=WEIGHT, got {item!r}") from None
            if not sep:
                raise ConfigError(f"label weight must be LABEL=WEIGHT, got {item!r}")
        changes["label_weights"] = tuple(pairs)
    if unknown_resolved:
        changes["unknown_resolved_as"] = unknown_resolved
    return replace(policy, **changes) if changes else policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The policy options, the same in every command that weights steps (preprocess, view)."""
    group = parser.add_argument_group("weight policy (DESIGN §3)")
    group.add_argument("--policy", default="srft", choices=list(PRESETS),
                       help="weight policy preset (default: %(default)s)")
    group.add_argument("--reject-labels", metavar="L1,L2", help="labels given weight 0 (default: harmful)")
    group.add_argument("--min-confidence", type=float, metavar="C",
                       help="reject a step only if the critic's confidence >= C")
    group.add_argument("--label-weight", action="append", metavar="LABEL=W",
                       help="fractional weight for a kept label, e.g. unnecessary=0.5 (repeatable)")
    group.add_argument("--unknown-resolved", choices=["resolved", "unresolved", "error"],
                       help="how to treat trajectories with unknown resolution (default: unresolved)")


def from_args(args: argparse.Namespace) -> WeightPolicy:
    """The policy `add_arguments`' options describe."""
    return make_policy(args.policy, reject_labels=args.reject_labels, min_confidence=args.min_confidence,
                       label_weights=args.label_weight, unknown_resolved=args.unknown_resolved)
