"""Readers for the swebench harness's files: the run summary report and prediction files.

Why: `srft report-eval` must read what the harness really writes, not a format of ours.
The summary report is the JSON that `swebench.harness.reporting.make_run_report` writes to
`{model_name_or_path}.{run_id}.json` (schema_version 2 in swebench 5.0.2): counts
(`total_instances`, `resolved_instances`, ...) and id lists (`resolved_ids`,
`unresolved_ids`, `completed_ids`, `incomplete_ids`, `empty_patch_ids`, `error_ids`, ...).
`incomplete_ids` lists every dataset instance without a prediction, so the union of the id
lists is the evaluated instance set; we check it against `total_instances`.

Prediction files are what `run_evaluation --predictions_path` accepts: JSONL (one
`{instance_id, model_name_or_path, model_patch}` a line), a JSON list of those, or a JSON
object keyed by instance id (SWE-agent's and mini-swe-agent's `preds.json`).

A run directory of `srft evaluate` works in place of a list of reports: its
`rollout-*/report.json` files, in rollout order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from srft_megatron.errors import InputError
from srft_megatron.evaluate.stats import ResultTable
from srft_megatron.io import iter_jsonl

# Every id list of the summary report whose ids are dataset instances.
_INSTANCE_LISTS = ("resolved_ids", "unresolved_ids", "completed_ids", "incomplete_ids",
                   "empty_patch_ids", "error_ids")
_REQUIRED = ("total_instances", "resolved_ids", "unresolved_ids", "completed_ids")
ROLLOUT_REPORT = "report.json"  # name of the summary report copied into each rollout dir


@dataclass
class HarnessReport:
    """One rollout's harness summary report."""

    path: Path
    total_instances: int
    resolved_ids: set[str]
    instance_ids: set[str]  # the evaluated instances named in the report
    submitted: int
    empty_patch: int
    errors: int
    schema_version: int | None

    @property
    def resolved_percent(self) -> float:
        return 100.0 * len(self.resolved_ids) / self.total_instances


def read_harness_report(path: str | Path) -> HarnessReport:
    """Parse a `make_run_report` summary JSON; `InputError` names the file and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("harness report not found", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno}", file=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("not a swebench harness summary report (expected a JSON object)", file=str(path))
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        hint = " (a per-instance report.json? pass the run's summary report)" if len(data) == 1 else ""
        raise InputError(f"not a swebench harness summary report: missing {', '.join(missing)}{hint}",
                         file=str(path))
    total = data["total_instances"]
    if not isinstance(total, int) or total <= 0:
        raise InputError(f"total_instances must be a positive integer, got {total!r}", file=str(path))
    lists: dict[str, set[str]] = {}
    for key in _INSTANCE_LISTS:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise InputError(f"{key} must be a list of instance ids", file=str(path))
        lists[key] = set(value)
    resolved = lists["resolved_ids"]
    if data.get("resolved_instances", len(resolved)) != len(resolved):
        raise InputError(f"resolved_instances={data['resolved_instances']} but resolved_ids has "
                         f"{len(resolved)} ids", file=str(path))
    if resolved & lists["unresolved_ids"]:
        raise InputError(f"ids both resolved and unresolved: {sorted(resolved & lists['unresolved_ids'])[:3]}",
                         file=str(path))
    instance_ids = set().union(*lists.values())
    if len(instance_ids) > total:
        raise InputError(f"the report names {len(instance_ids)} instances but total_instances is {total}",
                         file=str(path))
    return HarnessReport(path, total, resolved, instance_ids, int(data.get("submitted_instances", 0)),
                         int(data.get("empty_patch_instances", 0)), int(data.get("error_instances", 0)),
                         data.get("schema_version"))


def expand_report_paths(spec: str | Path, partial: bool = False) -> list[Path]:
    """A report file, or an `srft evaluate` run directory (its rollout-*/report.json).

    A run directory whose eval.json asked for more rollouts than are scored is an error
    unless `partial`: a report over 5 of 7 rollouts must be a choice, not an accident."""
    path = Path(spec)
    if path.is_dir():
        reports = sorted(path.glob(f"rollout-*/{ROLLOUT_REPORT}"))
        if not reports:
            raise InputError(f"no rollout-*/{ROLLOUT_REPORT} in this directory (is it an `srft evaluate` "
                             "run whose harness step finished?)", file=str(path))
        settings = path / "eval.json"
        if settings.is_file() and not partial:
            wanted = int(json.loads(settings.read_text()).get("rollouts", 0))
            have = {p.parent.name for p in reports}
            missing = [f"rollout-{r:02d}" for r in range(1, wanted + 1) if f"rollout-{r:02d}" not in have]
            if missing:
                raise InputError(f"only {wanted - len(missing)} of {wanted} rollouts are scored (missing "
                                 f"{', '.join(missing)}); finish them with `srft evaluate` or pass --partial",
                                 file=str(path))
        return reports
    if not path.exists():
        raise InputError("harness report not found", file=str(path))
    return [path]


def load_model_results(name: str, specs: list[str | Path],
                       partial: bool = False) -> tuple[ResultTable, list[HarnessReport]]:
    """Read one model's rollouts into a `ResultTable`.

    Every rollout must cover the same benchmark: equal `total_instances` (else the resolved
    rates have different denominators and cannot be averaged). Instances a report does not
    name at all (older reports without `incomplete_ids`) become rows `<unlisted-k>` that
    are unresolved everywhere, so the denominator stays `total_instances`."""
    paths = [p for spec in specs for p in expand_report_paths(spec, partial)]
    if not paths:
        raise InputError(f"model {name!r}: no reports given")
    reports = [read_harness_report(p) for p in paths]
    totals = {r.total_instances for r in reports}
    if len(totals) != 1:
        detail = ", ".join(f"{r.path}: {r.total_instances}" for r in reports)
        raise InputError(f"model {name!r}: rollouts were evaluated on different instance sets "
                         f"(total_instances {detail}); resolved rates are not comparable")
    total = totals.pop()
    named = sorted(set().union(*(r.instance_ids for r in reports)))
    if len(named) > total:
        raise InputError(f"model {name!r}: its rollouts name {len(named)} different instances but each "
                         f"report has total_instances={total}; they were run on different subsets")
    universe = named + [f"<unlisted-{k}>" for k in range(1, total - len(named) + 1)]
    rollouts: dict[str, set[str]] = {}
    for index, report in enumerate(reports, start=1):
        label = report.path.parent.name if report.path.name == ROLLOUT_REPORT else report.path.stem
        rollouts[f"{index}:{label}"] = report.resolved_ids
    return ResultTable.from_rollouts(name, rollouts, universe), reports


@dataclass
class Prediction:
    instance_id: str
    model_name_or_path: str
    model_patch: str | None


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read a predictions file the harness accepts (.jsonl, JSON list, JSON dict by id)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        records = list(iter_jsonl(path))
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno}", file=str(path)) from None
        if isinstance(data, dict):
            data = list(data.values())
        if not isinstance(data, list):
            raise InputError("predictions must be a list or an object keyed by instance id", file=str(path))
        records = [(None, rec) for rec in data]
    else:
        raise InputError("predictions file must end in .jsonl or .json (as the harness requires)", file=str(path))
    out, seen = [], set()
    for line, rec in records:
        if not isinstance(rec, dict):
            raise InputError("prediction is not a JSON object", file=str(path), line=line)
        iid, model = rec.get("instance_id"), rec.get("model_name_or_path")
        if not isinstance(iid, str) or not iid:
            raise InputError("prediction without instance_id", file=str(path), line=line)
        if not isinstance(model, str) or not model:
            raise InputError(f"prediction for {iid} without model_name_or_path", file=str(path), line=line)
        patch = rec.get("model_patch")
        if patch is not None and not isinstance(patch, str):
            raise InputError(f"model_patch of {iid} is not a string", file=str(path), line=line)
        if iid in seen:
            raise InputError(f"duplicate prediction for {iid}", file=str(path), line=line)
        seen.add(iid)
        out.append(Prediction(iid, model, patch))
    return out
