"""The swebench harness's reports, read in one place — by `srft ingest --resolved` (which
trajectories resolved their issue) and by `srft report-eval` (resolved rates).

Why one module: the harness decides resolved/unresolved, and its files are the only source of
that fact. Two readers of one format drift apart (one checks that an id is not both resolved and
unresolved, the other does not); here every caller gets the same checks and the same errors.

The harness writes two kinds of report (swebench 5.0.2):

- the **summary report** of a run, `{model_name_or_path}.{run_id}.json` from
  `swebench.harness.reporting.make_run_report` (schema_version 2): counts (`total_instances`,
  `resolved_instances`, ...) and id lists (`resolved_ids`, `unresolved_ids`, `completed_ids`,
  `incomplete_ids`, `empty_patch_ids`, `error_ids`). `incomplete_ids` lists every dataset
  instance without a prediction, so the union of the lists is the evaluated instance set;
- the **per-instance report** `logs/run_evaluation/RUN_ID/MODEL/INSTANCE/report.json` from
  `swebench.harness.grading.get_eval_report`: `{instance_id: {"resolved": bool, ...}}`.

`read_harness_report` reads a summary report whole and strictly (a resolved rate needs its
denominator `total_instances`); `resolved_by_id` reads either kind as id -> resolved, and
accepts a summary report without its counts (all that ingest needs are the id lists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srft_megatron.errors import InputError

# Every id list of the summary report whose ids are dataset instances.
INSTANCE_LISTS = ("resolved_ids", "unresolved_ids", "completed_ids", "incomplete_ids",
                  "empty_patch_ids", "error_ids")
_REQUIRED = ("total_instances", "resolved_ids", "unresolved_ids", "completed_ids")


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


def load_json(path: str | Path) -> Any:
    """The parsed file; `InputError` naming the file (and line) when it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("harness report not found", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg}", file=str(path), line=exc.lineno) from None


def is_summary_report(data: Any) -> bool:
    return isinstance(data, dict) and ("resolved_ids" in data or "unresolved_ids" in data)


def is_instance_report(data: Any) -> bool:
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(v, dict) and isinstance(v.get("resolved"), bool) for v in data.values()))


def id_lists(data: dict, path: str | Path) -> dict[str, set[str]]:
    """The summary report's instance id lists, checked: lists of strings, no id both resolved
    and unresolved, `resolved_instances` (when present) equal to the number of resolved ids."""
    lists: dict[str, set[str]] = {}
    for key in INSTANCE_LISTS:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise InputError(f"swebench report field {key!r} must be a list of instance ids", file=str(path))
        lists[key] = set(value)
    resolved = lists["resolved_ids"]
    if data.get("resolved_instances", len(resolved)) != len(resolved):
        raise InputError(f"resolved_instances={data['resolved_instances']} but resolved_ids has "
                         f"{len(resolved)} ids", file=str(path))
    both = resolved & lists["unresolved_ids"]
    if both:
        raise InputError(f"ids both resolved and unresolved: {sorted(both)[:3]}", file=str(path))
    return lists


def read_harness_report(path: str | Path) -> HarnessReport:
    """Parse a `make_run_report` summary JSON; `InputError` names the file and the problem."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise InputError("not a swebench harness summary report (expected a JSON object)", file=str(path))
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        hint = " (a per-instance report.json? pass the run's summary report)" if is_instance_report(data) else ""
        raise InputError(f"not a swebench harness summary report: missing {', '.join(missing)}{hint}",
                         file=str(path))
    total = data["total_instances"]
    if not isinstance(total, int) or total <= 0:
        raise InputError(f"total_instances must be a positive integer, got {total!r}", file=str(path))
    lists = id_lists(data, path)
    instance_ids = set().union(*lists.values())
    if len(instance_ids) > total:
        raise InputError(f"the report names {len(instance_ids)} instances but total_instances is {total}",
                         file=str(path))
    return HarnessReport(path, total, lists["resolved_ids"], instance_ids, int(data.get("submitted_instances", 0)),
                         int(data.get("empty_patch_instances", 0)), int(data.get("error_instances", 0)),
                         data.get("schema_version"))


def resolved_by_id(data: Any, path: str | Path) -> dict[str, bool] | None:
    """Instance id -> resolved from a parsed summary or per-instance report; None when `data` is
    neither (the caller may know other forms). In a summary report every listed instance that is
    not resolved (unresolved, empty patch, error, incomplete) counts as unresolved."""
    if is_summary_report(data):
        lists = id_lists(data, path)
        out = dict.fromkeys(lists["resolved_ids"], True)
        for key in INSTANCE_LISTS:
            for iid in sorted(lists[key]):
                out.setdefault(iid, False)
        return out
    if is_instance_report(data):
        return {iid: entry["resolved"] for iid, entry in data.items()}
    return None
