"""A model's rollouts as a `ResultTable`, from the swebench harness's summary reports, and the
prediction files the harness reads.

Why: `srft report-eval` must read what the harness really writes, not a format of ours. The
summary report itself is read by `srft_megatron.swebench_report` (the one reader, shared with
`srft ingest --resolved`); this module gathers a model's reports, checks that its rollouts cover
one benchmark, and builds the per-instance table that `stats` works on.

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
from srft_megatron.swebench_report import HarnessReport, read_harness_report

ROLLOUT_REPORT = "report.json"  # name of the summary report copied into each rollout dir


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
