"""The experiment matrix: one valid `srft launch` pipeline per paper row, and the comparison report.

Specs are checked with the launch stage's own parser (srft_megatron.launch.pipeline), so a
matrix that `srft launch` would reject fails here. Launching on SLURM itself is the launch
stage's concern (its tests run a local cluster)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import yaml

from srft_megatron import cli
from srft_megatron.launch import matrix as em
from srft_megatron.launch.pipeline import build_pipeline
from srft_megatron.launch.rundir import RunDir
from tests.evaluate.conftest import ROOT

PAPER = ROOT / "configs" / "experiments" / "paper.yaml"
PAPER_ROWS = {"base": None, "naive": "naive", "rft": "rft", "unresolved-only": "unresolved-only",
              "unresolved-masked": "unresolved-masked", "srft": "srft", "all-masked": "all-masked"}


def test_paper_matrix_has_every_row_as_a_valid_pipeline(tmp_path):
    matrix = em.load_matrix(PAPER)
    seeds = matrix["seeds"]
    assert len(seeds) >= 2  # training-seed noise is part of the comparison
    rows = em.build_rows(matrix, tmp_path)
    assert {r.group: r.policy for r in rows} == PAPER_ROWS
    assert len(rows) == 1 + (len(PAPER_ROWS) - 1) * len(seeds)  # base is not trained: one run
    em.validate(rows)
    for row in rows:
        spec = build_pipeline(row.spec, RunDir.at(row.run_dir), ROOT, source=row.name)
        stages = [s.name for s in spec.stages]
        evaluate = spec.stage("evaluate").args
        assert evaluate[evaluate.index("--rollouts") + 1] == "7"
        assert evaluate[evaluate.index("--subset") + 1] == "verified"
        assert evaluate[evaluate.index("--output") + 1] == str(row.run_dir / "eval")
        if row.policy is None:  # the base model is evaluated as it is, nothing trained
            assert stages == ["evaluate"] and row.name == "base"
            assert evaluate[evaluate.index("--model") + 1] == matrix["base_model"]
            continue
        assert row.name == f"{row.group}-s{row.seed}" and row.run_dir.name == row.name
        assert stages == ["preprocess", "train", "convert", "evaluate"]
        pre = spec.stage("preprocess").args
        assert pre[pre.index("--policy") + 1] == row.policy
        prefix = str(row.run_dir / "datasets" / row.policy)
        assert pre[pre.index("--output-prefix") + 1] == prefix
        train = spec.stage("train").args
        assert f"data.prefixes=[{prefix}]" in train
        assert f"train.seed={row.seed}" in train and f"data.seed={row.seed}" in train
        assert f"train.init_from={matrix['base_checkpoint']}" in train
        assert evaluate[evaluate.index("--model") + 1] == str(row.run_dir / "hf")


def test_specs_action_writes_specs_and_train_configs(tmp_path):
    raw = yaml.safe_load(PAPER.read_text())
    raw["train_config"] = str(ROOT / "configs" / "tiny.yaml")
    raw["runs_root"] = str(tmp_path / "runs")
    cfg = tmp_path / "matrix.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    raw["seeds"] = [7]  # one seed: run dirs keep the row names
    cfg.write_text(yaml.safe_dump(raw))
    assert cli.main(["matrix", "specs", str(cfg), "--rows", "srft,base"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "specs").iterdir()) == ["base.yaml", "srft.yaml"]
    assert (tmp_path / "runs" / "srft" / "configs" / "train.yaml").read_text() == (ROOT / "configs" / "tiny.yaml").read_text()
    assert not (tmp_path / "runs" / "base" / "configs" / "train.yaml").exists()
    assert "train.seed=7" in (tmp_path / "runs" / "specs" / "srft.yaml").read_text()
    assert cli.main(["matrix", "specs", str(cfg), "--rows", "nope"]) == 2
    raw["rows"]["bad"] = {"policy": "everything"}
    cfg.write_text(yaml.safe_dump(raw))
    assert cli.main(["matrix", "specs", str(cfg)]) == 2


def test_report_action_compares_rows_with_report_eval(harness_reports, tmp_path):
    raw = yaml.safe_load(PAPER.read_text())
    raw["runs_root"] = str(tmp_path / "runs")
    cfg = tmp_path / "matrix.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    # rollouts spread over the two training seeds of each row; the report pools them per row
    seeds = raw["seeds"]
    for row in ("srft", "rft"):
        for i, report in enumerate(harness_reports[row], start=1):
            dest = tmp_path / "runs" / f"{row}-s{seeds[(i - 1) % 2]}" / "eval" / f"rollout-{i:02d}"
            dest.mkdir(parents=True)
            shutil.copy(report, dest / "report.json")
    cmd = em.report_command(raw, em.build_rows(raw, tmp_path, ["srft", "rft"]), tmp_path / "out")
    assert cmd[cmd.index("--compare") + 1:cmd.index("--compare") + 3] == ["srft", "rft"]
    assert f"srft={tmp_path}/runs/srft-s{seeds[0]}/eval,{tmp_path}/runs/srft-s{seeds[1]}/eval" in cmd
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "matrix", "report", str(cfg),
                           "--rows", "srft,rft", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| srft | 5 | 3 | 60.0 60.0 40.0 | 53.3 ± 11.5 |" in md  # seed 1234: r1, r3; seed 2345: r2
    assert "| srft − rft | +23.33 |" in md
