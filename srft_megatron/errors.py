"""Errors that name the input that caused them.

Every stage reads user data (trajectories, labels, configs). When something is wrong the
user must learn *where*: the file, the line, the trajectory id and the step. `InputError`
carries those fields and renders them as one line, which the CLI prints before exiting
with a non-zero code, and which reject files record as the reason.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InputError(Exception):
    """Bad input, located as precisely as the caller knows it."""

    reason: str
    file: str | None = None
    line: int | None = None
    traj_id: str | None = None
    step: int | None = None

    def where(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(f"{self.file}" + (f":{self.line}" if self.line is not None else ""))
        if self.traj_id is not None:
            parts.append(f"trajectory {self.traj_id}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.reason}" if where else self.reason

    def located(self, **fields) -> "InputError":
        """Return a copy with missing location fields filled in (inner code knows the step,
        outer code knows the file and line)."""
        merged = {k: getattr(self, k) for k in ("reason", "file", "line", "traj_id", "step")}
        for key, value in fields.items():
            if merged.get(key) is None:
                merged[key] = value
        return InputError(**merged)


class ConfigError(ValueError):
    """A configuration that cannot work (raised before any process group starts)."""


class DatasetError(ValueError):
    """A dataset that cannot be read or trained on: empty, unreadable, its files disagreeing with
    their index headers or metadata, or not fitting the model. The message is one line naming
    the dataset (and file) and the number that is wrong."""


class CheckpointError(ConfigError):
    """A checkpoint that must not be loaded or exported: partial (a file missing), truncated,
    corrupted (a file whose checksum differs from the one recorded at save time), or holding
    non-finite parameters. The message is one line naming the checkpoint and the file."""
