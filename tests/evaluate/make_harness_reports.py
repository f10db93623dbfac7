"""Make real swebench harness report files, with the swebench package's own grading and reporting code.

Runs in .venv-agent (swebench 5.0.2), called by tests/evaluate/conftest.py:

    .venv-agent/bin/python tests/evaluate/make_harness_reports.py SPEC.json OUT_DIR

Docker is not available on our machines, so no container runs the tests. Everything after
that is the package's own code on files laid out exactly where `run_evaluation` puts them:
for each prediction we write the test log the container would have produced (a pytest log
between the harness's START/END markers, whose FAIL_TO_PASS test passes when the spec says
the rollout resolves the instance and fails otherwise), grade it with
`swebench.harness.grading.get_eval_report` into `logs/run_evaluation/RUN/MODEL/ID/report.json`,
and build the summary with `swebench.harness.reporting.make_run_report` (client=None: no
Docker). SPEC.json:

    {"instances": [ids...],                       # the dataset (full_dataset)
     "predictions": "PATH.jsonl" | null,          # real predictions to include (e.g. all_preds.jsonl)
     "model": "NAME",                             # model_name_or_path of the other predictions
     "rollouts": [{"run_id": "r1", "resolved": [ids], "empty": [ids], "missing": [ids]}, ...]}
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from swebench.harness.constants import (END_TEST_OUTPUT, LOG_REPORT, LOG_TEST_OUTPUT,
                                        RUN_EVALUATION_LOG_DIR, START_TEST_OUTPUT)
from swebench.harness.grading import get_eval_report
from swebench.harness.reporting import make_run_report
from swebench.types import TestSpec

F2P, P2P = "tests/test_fix.py::test_issue", "tests/test_fix.py::test_existing"


def _test_log(resolved: bool) -> str:
    status = "PASSED" if resolved else "FAILED"
    return "\n".join(["+ pytest -rA tests/test_fix.py", START_TEST_OUTPUT,
                      "============================= test session starts ==============================",
                      "collected 2 items", "", "=========================== short test summary info ============================",
                      f"{status} {F2P}", f"PASSED {P2P}", "========================= 2 passed in 0.10s =========================",
                      END_TEST_OUTPUT, ""])


def main(spec_path: str, out_dir: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # the harness writes logs/run_evaluation relative to the working directory
    real = {}
    if spec.get("predictions"):
        for line in Path(spec["predictions"]).read_text().splitlines():
            if line.strip():
                pred = json.loads(line)
                real[pred["instance_id"]] = pred
    dataset = [{"instance_id": iid} for iid in spec["instances"]]
    written = []
    for rollout in spec["rollouts"]:
        run_id = rollout["run_id"]
        predictions = {}
        for iid in spec["instances"]:
            if iid in rollout.get("missing", []):
                continue
            pred = dict(real.get(iid) or {"instance_id": iid, "model_name_or_path": spec["model"],
                                          "model_patch": f"diff --git a/src/{iid}.py b/src/{iid}.py\n"})
            if iid in rollout.get("empty", []):
                pred["model_patch"] = ""
            predictions[iid] = pred
        for iid, pred in predictions.items():
            if not pred["model_patch"]:
                continue
            log_dir = RUN_EVALUATION_LOG_DIR / run_id / pred["model_name_or_path"].replace("/", "__") / iid
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / LOG_TEST_OUTPUT).write_text(_test_log(iid in rollout["resolved"]))
            test_spec = TestSpec(instance_id=iid, image="", eval_script_list=[], repo="example/repo",
                                 version="0.0", FAIL_TO_PASS=[F2P], PASS_TO_PASS=[P2P],
                                 log_parser="parse_log_pytest", eval_type="pass_and_fail")
            report = get_eval_report(test_spec, pred, str(log_dir / LOG_TEST_OUTPUT), include_tests_status=True)
            (log_dir / LOG_REPORT).write_text(json.dumps(report, indent=4))
        # make_run_report names the file after the first prediction's model
        written.append(str(make_run_report(predictions, dataset, run_id, None, report_dir=str(out / run_id))))
    print(json.dumps(written))


if __name__ == "__main__":
    main(*sys.argv[1:])
