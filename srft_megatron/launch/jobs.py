"""What happened to each submitted stage: SLURM state, exit code, reason and the log's last lines.

Why: a pipeline of five jobs that "did not work" is useless to debug from nemo-run's one-word
states. The report names the job that failed, its exit code and SLURM's reason, and quotes the
end of its log; stages that never ran because a dependency failed say so. It reads
`scontrol show job -o` (jobs stay there for MinJobAge after they end), so it needs no
accounting database.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

OK_STATES = {"COMPLETED", "SUCCEEDED"}
# Lines that usually carry the cause: an exception line (the last line of a traceback), a CLI's
# one-line error, SLURM's own notices. torchrun/srun prefixes ("[default0]:[rank1]: ") are removed.
_PREFIX = re.compile(r"^(?:\[[\w.-]+\]:\s?)+")
_CAUSE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b(:.*)?$"
                    r"|\berror:|\bslurmstepd\b.*\*\*\*|out of memory|oom-kill|\bKilled\b|failing", re.IGNORECASE)


@dataclass
class StageResult:
    stage: str
    job_id: str | None
    state: str                      # SLURM JobState (or nemo-run's AppState for local runs)
    exit_code: str | None = None    # SLURM "code:signal"
    reason: str | None = None
    restarts: int = 0
    log: str | None = None
    log_tail: list[str] | None = None
    error_lines: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.state in OK_STATES

    def to_json(self) -> dict:
        return asdict(self)


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict (empty when SLURM no longer knows the job)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {}
    fields: dict[str, str] = {}
    for token in proc.stdout.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def tail(path: str | Path | None, lines: int = 15) -> list[str]:
    if not path or not Path(path).is_file():
        return []
    with open(path, errors="replace") as handle:
        return [line.rstrip("\n") for line in handle.readlines()[-lines:]]


def error_lines(path: str | Path | None, limit: int = 6) -> list[str]:
    """The first distinct lines of a log that look like the cause of a failure."""
    if not path or not Path(path).is_file():
        return []
    found: list[str] = []
    with open(path, errors="replace") as handle:
        for raw in handle:
            line = _PREFIX.sub("", raw.rstrip("\n")).strip()
            if line and _CAUSE.search(line) and line not in found:
                found.append(line)
                if len(found) >= limit:
                    break
    return found


def slurm_stage_result(stage: str, job_id: str, log_dir: Path, job_name: str, lines: int = 15) -> StageResult:
    info = scontrol_job(job_id)
    restarts = int(info.get("Restarts", "0") or 0)
    log = log_dir / f"log-{job_name}_{job_id}_{restarts}.out"
    if not log.exists():
        log = Path(info.get("StdOut", "")) if info.get("StdOut") else None
    state = info.get("JobState", "UNKNOWN")
    reason = info.get("Reason")
    return StageResult(stage=stage, job_id=job_id, state=state, exit_code=info.get("ExitCode"),
                       reason=None if reason in (None, "None") else reason, restarts=restarts,
                       log=str(log) if log else None,
                       log_tail=None if state in OK_STATES else tail(log, lines),
                       error_lines=None if state in OK_STATES else error_lines(log))


def explain(result: StageResult, results: list[StageResult]) -> str:
    """One line saying why a stage did not succeed."""
    if result.ok:
        return f"{result.stage}: job {result.job_id} completed"
    if result.state == "NOT_RUN" or result.reason == "DependencyNeverSatisfied":
        failed = [r.stage for r in results if not r.ok and r is not result
                  and results.index(r) < results.index(result)
                  and r.state != "NOT_RUN" and r.reason != "DependencyNeverSatisfied"]
        cause = f"{failed[0]} failed" if failed else "a dependency failed"
        job = f"job {result.job_id} " if result.job_id else ""
        return f"{result.stage}: {job}did not run ({result.state}): {cause}"
    exit_note = f", exit code {result.exit_code}" if result.exit_code else ""
    reason = f", reason {result.reason}" if result.reason else ""
    job = f"job {result.job_id} " if result.job_id else ""
    return f"{result.stage}: {job}{result.state}{exit_note}{reason}; log: {result.log}"


def format_report(results: list[StageResult]) -> str:
    width = max([len(r.stage) for r in results] + [5])
    out = [f"{'stage':<{width}}  {'job':>8}  {'state':<12} {'exit':<6} reason"]
    for r in results:
        out.append(f"{r.stage:<{width}}  {r.job_id or '-':>8}  {r.state:<12} {r.exit_code or '-':<6} "
                   f"{r.reason or '-'}")
    if results and all(r.state == "SUBMITTED" for r in results):
        out.append("pipeline submitted (detached): follow it with `squeue --me`; logs in RUN/logs")
        return "\n".join(out)
    first_failed = next((r for r in results if not r.ok), None)
    if first_failed is None:
        out.append("pipeline: all stages succeeded")
        return "\n".join(out)
    out.append(f"pipeline FAILED at stage {first_failed.stage}")
    for r in results:
        if not r.ok:
            out.append("  " + explain(r, results))
    if first_failed.error_lines:
        out.append(f"error lines in {first_failed.log}:")
        out.extend("  ! " + line for line in first_failed.error_lines)
    if first_failed.log_tail:
        out.append(f"last lines of {first_failed.log}:")
        out.extend("  | " + line for line in first_failed.log_tail)
    return "\n".join(out)
