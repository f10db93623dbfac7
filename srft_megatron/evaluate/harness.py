"""Score a rollout's predictions with the swebench harness (`run_evaluation`).

Why the real harness, run as a subprocess from .venv-agent: resolved/unresolved is decided
by running each instance's tests in its Docker image (or on Modal with `--modal true`), and
only the harness knows how. It writes per-instance logs under `logs/run_evaluation/RUN_ID/`
of its working directory and a summary report `{model}.{run_id}.json` into `--report_dir`;
we run it inside the rollout's `harness/` directory and copy the summary to
`rollout-NN/report.json` (atomically: its presence means the rollout is scored).

    .venv-agent/bin/python -m swebench.harness.run_evaluation --dataset_name princeton-nlp/SWE-bench_Verified \\
        --split test --predictions_path RUN/rollout-01/agent/preds.json --run_id NAME-rollout-01 \\
        --max_workers 8 --report_dir RUN/rollout-01/harness

Docker is missing on many machines (ours included). The harness then fails deep inside the
docker client; we recognise that and raise `HarnessUnavailable` with one clear line instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from srft_megatron.evaluate.results import ROLLOUT_REPORT
from srft_megatron.io import atomic_path
from srft_megatron.swebench_report import read_harness_report


class HarnessUnavailable(RuntimeError):
    """The harness cannot run here (no Docker daemon, no Modal credentials)."""


class HarnessError(RuntimeError):
    """The harness ran and failed."""


_DOCKER_MISSING = ("DockerException", "Error while fetching server API version", "docker.errors")


@dataclass
class HarnessConfig:
    python: str                # .venv-agent's interpreter
    dataset: str               # harness --dataset_name: HF name or a local .json/.jsonl file
    split: str = "test"
    workers: int = 4
    timeout_s: int = 1800      # per instance test run
    modal: bool = False
    instance_ids: list[str] = field(default_factory=list)


def harness_command(cfg: HarnessConfig, preds: Path, run_id: str, report_dir: Path) -> list[str]:
    cmd = [cfg.python, "-m", "swebench.harness.run_evaluation", "--dataset_name", cfg.dataset,
           "--split", cfg.split, "--predictions_path", str(preds.resolve()), "--run_id", run_id,
           "--max_workers", str(cfg.workers), "--timeout", str(cfg.timeout_s),
           "--report_dir", str(report_dir.resolve()), "--modal", "true" if cfg.modal else "false"]
    if cfg.instance_ids:
        cmd += ["--instance_ids", *cfg.instance_ids]
    return cmd


def run_harness(cfg: HarnessConfig, rollout_dir: Path, preds: Path, run_id: str) -> Path:
    """Score one rollout; returns `rollout_dir/report.json` (the harness's summary report)."""
    final = rollout_dir / ROLLOUT_REPORT
    if final.exists():
        return final
    if not json.loads(preds.read_text() or "{}"):
        raise HarnessError(f"{preds} has no predictions: nothing to score")
    work = rollout_dir / "harness"
    work.mkdir(parents=True, exist_ok=True)
    log_path = rollout_dir / "harness.log"
    with open(log_path, "ab") as log:
        proc = subprocess.run(harness_command(cfg, preds, run_id, work), stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, cwd=work)
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        if not cfg.modal and any(marker in text for marker in _DOCKER_MISSING):
            raise HarnessUnavailable(
                "the swebench harness needs a running Docker daemon to run each instance's tests, and "
                f"none is reachable here (docker.from_env() failed; see {log_path}). Run this step on a "
                "machine with Docker, or with --harness modal; the agent's predictions are kept and the "
                "rerun resumes at the harness")
        tail = "\n".join(text.splitlines()[-25:])
        raise HarnessError(f"swebench harness exited with code {proc.returncode}; last lines of {log_path}:\n{tail}")
    reports = sorted(work.glob(f"*.{run_id}.json"))
    if len(reports) != 1:
        raise HarnessError(f"expected one summary report *.{run_id}.json in {work}, found {len(reports)}")
    read_harness_report(reports[0])  # validates the format before we mark the rollout scored
    with atomic_path(final) as tmp:
        shutil.copyfile(reports[0], tmp)
    return final
