"""The run directory: one folder per run holding everything each stage reads and writes.

Why fixed: the sbatch scripts (`slurm/common.sh`) and the nemo-run pipeline must agree on where
labels, datasets, checkpoints and logs live, so a run started one way can be continued, inspected
or resubmitted the other way. The same names are created by `slurm/common.sh`.

    RUN/
      run.json        every launch: engine, stages, SLURM job ids, states, commands
      logs/           SLURM logs: sbatch_<job-name>_<jobid>.out (batch script),
                      log-<job-name>_<jobid>_<restart>.out (the stage itself, nemo-run)
      configs/        configs used by the run (train.yaml, pipeline.yaml)
      data/           trajectories.jsonl (from `srft ingest`)
      labels/         labels.jsonl (+ rejects) from `srft label`
      datasets/       PREFIX_{tokens,weights}.{bin,idx} + PREFIX.meta.json from `srft preprocess`
      train/          `srft train --run-dir RUN/train`: checkpoints, logs, resumes from here
      hf/             Hugging Face model from `srft convert to-hf`
      eval/           `srft evaluate` results and report
      nemorun/        nemo-run's experiment records (generated sbatch scripts, task configs)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srft_megatron.io import write_json

SUBDIRS = ("logs", "configs", "data", "labels", "datasets", "train", "hf", "eval", "nemorun")


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> "RunDir":
        return cls(Path(path).expanduser().resolve())

    def create(self) -> "RunDir":
        for name in SUBDIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        return self

    def __getattr__(self, name: str) -> Path:
        if name in SUBDIRS:
            return self.root / name
        raise AttributeError(name)

    @property
    def record_path(self) -> Path:
        return self.root / "run.json"

    def placeholders(self, repo: Path) -> dict[str, str]:
        """Values for `{run}`, `{repo}` and `{<subdir>}` in pipeline stage arguments."""
        values = {"run": str(self.root), "repo": str(repo)}
        values.update({name: str(self.root / name) for name in SUBDIRS})
        return values

    def read_record(self) -> dict[str, Any]:
        if self.record_path.exists():
            return json.loads(self.record_path.read_text())
        return {"format_version": 1, "launches": []}

    def record_launch(self, entry: dict[str, Any]) -> None:
        """Append one launch (engine, stages, job ids, final states) to run.json, atomically."""
        record = self.read_record()
        record["launches"].append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry})
        write_json(self.record_path, record)
