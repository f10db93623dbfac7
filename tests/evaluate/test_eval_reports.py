"""Reading real swebench harness files and the `srft report-eval` command end to end.

The summary reports are written by swebench's own `make_run_report` from per-instance
reports graded by its own `get_eval_report` (see make_harness_reports.py and conftest.py);
the predictions file is the real SWE-agent one in shared data."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from srft_megatron.cli import main as srft
from srft_megatron.errors import InputError
from srft_megatron.evaluate.results import load_model_results, read_predictions
from srft_megatron.swebench_report import read_harness_report
from tests.evaluate.conftest import INSTANCES, P, ROOT


def test_read_real_predictions_file(traj_dir, tmp_path):
    preds = read_predictions(traj_dir / "all_preds.jsonl")
    assert [p.instance_id for p in preds] == ["pydicom__pydicom-1458"]
    assert preds[0].model_name_or_path.startswith("gpt4__swe-bench-dev-easy")
    assert preds[0].model_patch.startswith("\ndiff --git a/pydicom/pixel_data_handlers/numpy_handler.py")
    # the same prediction as mini-swe-agent's preds.json (a JSON object keyed by instance id)
    raw = json.loads((traj_dir / "all_preds.jsonl").read_text())
    (tmp_path / "preds.json").write_text(json.dumps({raw["instance_id"]: raw}))
    assert read_predictions(tmp_path / "preds.json") == preds
    (tmp_path / "dup.jsonl").write_text(json.dumps(raw) + "\n" + json.dumps(raw) + "\n")
    with pytest.raises(InputError, match=r"dup.jsonl:2: duplicate prediction for pydicom__pydicom-1458"):
        read_predictions(tmp_path / "dup.jsonl")


def test_read_real_harness_reports(harness_reports):
    r1 = read_harness_report(harness_reports["srft"][0])
    assert r1.schema_version == 2 and r1.total_instances == 5
    assert r1.resolved_ids == {P, INSTANCES[1], INSTANCES[2]}
    assert r1.instance_ids == set(INSTANCES) and r1.empty_patch == 1
    assert r1.resolved_percent == pytest.approx(60.0)
    table, reports = load_model_results("srft", harness_reports["srft"])
    assert table.num_rollouts == 3 and table.num_instances == 5
    assert table.resolved.sum(axis=0).tolist() == [3, 2, 3]


def test_report_errors_name_the_file(harness_reports, tmp_path):
    per_instance = next((harness_reports["srft"][0].parent.parent / "logs").rglob("report.json"))
    with pytest.raises(InputError, match="per-instance report.json"):
        read_harness_report(per_instance)
    data = json.loads(harness_reports["rft"][0].read_text())
    data["total_instances"] = 500
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(InputError, match="different instance sets"):
        load_model_results("rft", [harness_reports["rft"][1], other])
    data["resolved_instances"] = 7
    other.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"other.json: resolved_instances=7 but resolved_ids has 2"):
        read_harness_report(other)


def test_ingest_reads_resolution_with_the_same_reader(harness_reports, tmp_path):
    """`srft ingest --resolved` and `srft report-eval` read the harness's reports through one
    reader: the same ids resolved, and the same refusal of a contradictory report."""
    from srft_megatron.ingest import read_resolved

    summary = harness_reports["srft"][0]
    resolved = read_resolved(summary)
    assert {iid for iid, ok in resolved.items() if ok} == read_harness_report(summary).resolved_ids
    assert set(resolved) == set(INSTANCES)  # unresolved, empty-patch and incomplete ids are False
    run_logs = summary.parent.parent / "logs" / "run_evaluation" / summary.parent.name  # this rollout's
    per_instance = sorted(run_logs.rglob("report.json"))
    assert per_instance
    for path in per_instance:  # get_eval_report's {instance_id: {"resolved": bool, ...}}
        ((iid, entry),) = json.loads(path.read_text()).items()
        assert read_resolved(path) == {iid: entry["resolved"]} and resolved[iid] == entry["resolved"]
    data = json.loads(summary.read_text())
    data["unresolved_ids"].append(sorted(data["resolved_ids"])[0])
    bad = tmp_path / "both.json"
    bad.write_text(json.dumps(data))
    for read in (read_resolved, read_harness_report):
        with pytest.raises(InputError, match=r"both.json: ids both resolved and unresolved"):
            read(bad)


def test_report_eval_cli_by_hand_values(harness_reports, tmp_path, capsys):
    srft_reports = ",".join(str(p) for p in harness_reports["srft"])
    rft_reports = ",".join(str(p) for p in harness_reports["rft"])
    out = tmp_path / "report"
    rc = srft(["report-eval", "--run", f"srft={srft_reports}", "--run", f"rft={rft_reports}",
               "--replicates", "2000", "--seed", "1", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "report.json").read_text())
    srft_m, rft_m = data["models"]
    # srft: 60, 40, 60 %; rft: 40, 20 % (see conftest.SPECS)
    assert srft_m["per_rollout"] == pytest.approx([60.0, 40.0, 60.0])
    assert srft_m["mean"] == pytest.approx(160 / 3) and srft_m["std"] == pytest.approx((400 / 3) ** 0.5)
    assert rft_m["per_rollout"] == pytest.approx([40.0, 20.0]) and rft_m["std"] == pytest.approx(200 ** 0.5)
    assert data["ks"] == [1, 2]
    # pass@2 srft: c = P2 a3 b2 c1 d0 of n=3 -> (1 + 1 + 1 + 2/3 + 0) / 5; rft: P1 a2 of n=2 -> 2/5
    assert srft_m["pass_at"]["2"] == pytest.approx(100 * (11 / 3) / 5)
    assert rft_m["pass_at"]["2"] == pytest.approx(40.0)
    comp = data["comparisons"][0]
    assert comp["difference"] == pytest.approx(160 / 3 - 30)
    assert comp["ci_low"] <= comp["difference"] <= comp["ci_high"]
    md = (out / "report.md").read_text()
    assert "| srft | 5 | 3 | 60.0 40.0 60.0 | 53.3 ± 11.5 | 53.3 | 73.3 |" in md
    assert "![resolved rates](report.png)" in md and "| pydicom__pydicom-1458 | 2 | 1 |" in md
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "53.3 ± 11.5" in printed and "srft − rft" in printed


def test_report_eval_reads_run_directories_and_rejects_bad_k(harness_reports, tmp_path, capsys):
    run = tmp_path / "eval-srft"
    for i, path in enumerate(harness_reports["srft"], start=1):
        (run / f"rollout-{i:02d}").mkdir(parents=True)
        shutil.copy(path, run / f"rollout-{i:02d}" / "report.json")
    assert srft(["report-eval", "--run", f"srft={run}", "--k", "1", "2", "3"]) == 0
    assert "53.3 ± 11.5" in capsys.readouterr().out
    rft = ",".join(str(p) for p in harness_reports["rft"])
    assert srft(["report-eval", "--run", f"srft={run}", "--run", f"rft={rft}", "--k", "3"]) == 2
    assert "pass@3 needs at least 3 rollouts" in capsys.readouterr().err
    assert srft(["report-eval", "--run", f"x={tmp_path}"]) == 2
    assert "no rollout-*/report.json" in capsys.readouterr().err
    # a run directory that asked for 4 rollouts but has 3 scored: an error unless --partial
    (run / "eval.json").write_text(json.dumps({"rollouts": 4}))
    assert srft(["report-eval", "--run", f"srft={run}"]) == 2
    assert "only 3 of 4 rollouts are scored (missing rollout-04)" in capsys.readouterr().err
    assert srft(["report-eval", "--run", f"srft={run}", "--partial"]) == 0


def test_report_eval_help_runs_as_a_command():
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "report-eval", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--compare" in proc.stdout and "--seed" in proc.stdout
