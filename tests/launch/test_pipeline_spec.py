"""Pipeline specs, the run-dir layout and run-time references: fast checks without a cluster."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from srft_megatron.errors import ConfigError
from srft_megatron.launch.entry import main as entry_main
from srft_megatron.launch.jobs import StageResult, error_lines, format_report, tail
from srft_megatron.launch.entry import resolve
from srft_megatron.launch.pipeline import DEFAULT_ARGS, build_pipeline, load_pipeline
from srft_megatron.launch.rundir import SUBDIRS, RunDir
from tests.launch.conftest import ROOT


def test_defaults_follow_the_run_dir_layout_and_stage_order(tmp_path):
    run = RunDir.at(tmp_path / "run")
    spec = build_pipeline({"stages": {"convert": None, "train": {"nodes": 2}, "preprocess": {}}}, run, ROOT)
    assert [s.name for s in spec.stages] == ["preprocess", "train", "convert"]   # pipeline order, not file order
    train = spec.stage("train")
    assert train.kind == "torchrun" and train.nodes == 2
    assert train.args == ["--config", f"{run.root}/configs/train.yaml", "--run-dir", f"{run.root}/train"]
    assert spec.stage("convert").args[:3] == ["to-hf", "--checkpoint", f"@latest:{run.root}/train/checkpoints"]
    assert spec.stage("preprocess").args[-2:] == ["--output-prefix", f"{run.root}/datasets/srft"]


def test_args_extra_args_placeholders_and_stage_selection(tmp_path):
    run = RunDir.at(tmp_path / "run")
    raw = {"executor": {"kind": "slurm", "env": {"HF_HOME": "{run}/hf-cache"}},
           "stages": {"preprocess": {"extra_args": ["--policy", "rft"]},
                      "train": {"args": ["--config", "{repo}/configs/tiny.yaml", "x=[{datasets}/a]"]},
                      "evaluate": {}}}
    spec = build_pipeline(raw, run, ROOT, only=["train", "evaluate"])
    assert [s.name for s in spec.stages] == ["train", "evaluate"]
    assert spec.stage("train").args == ["--config", f"{ROOT}/configs/tiny.yaml", f"x=[{run.root}/datasets/a]"]
    assert spec.executor.env == {"HF_HOME": f"{run.root}/hf-cache"}
    full = build_pipeline(raw, run, ROOT)
    defaults = [a.format(**run.placeholders(ROOT)) for a in DEFAULT_ARGS["preprocess"]]
    assert full.stage("preprocess").args == defaults + ["--policy", "rft"]   # last --policy wins


@pytest.mark.parametrize("raw, message", [
    ({"stages": {"trian": {}}}, "unknown stage 'trian'"),
    ({"stages": {"train": {"nodez": 2}}}, "stages.train: unknown key(s) nodez"),
    ({"stages": {"train": {"args": ["{nope}/x"]}}}, "unknown placeholder 'nope'"),
    ({"executor": {"kind": "k8s"}, "stages": {"train": {}}}, "executor.kind must be 'slurm' or 'local'"),
    ({"executor": {"kind": "local"}, "stages": {"train": {"nodes": 2}}}, "local executor runs on one node"),
    ({"stages": {}}, "'stages' must map stage names"),
    ({"stages": {"train": {"nodes": 0}}}, "nodes and nproc_per_node must be >= 1"),
    ({"stages": {"ingest": {}}}, "stages.ingest: give 'args'"),   # no default: srft ingest takes files
    ({"stages": {"train": {"env": {"A;touch x": "1"}}}}, "stages.train: env: 'A;touch x' is not an environment"),
    ({"executor": {"env": {"B C": "1"}}, "stages": {"train": {}}}, "executor: env: 'B C' is not an environment"),
])
def test_bad_specs_are_one_line_config_errors(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        build_pipeline(raw, RunDir.at(tmp_path), ROOT, source="p.yaml")
    assert str(err.value).startswith("p.yaml") and "\n" not in str(err.value)


def test_stage_selection_must_exist_in_the_spec(tmp_path):
    with pytest.raises(ConfigError, match="--stages names evaluate"):
        build_pipeline({"stages": {"train": {}}}, RunDir.at(tmp_path), ROOT, only=["evaluate"])


def test_shipped_pipeline_specs_are_valid(tmp_path):
    specs = sorted((ROOT / "srft_megatron" / "pipelines").glob("*.yaml"))
    assert specs
    for path in specs:
        spec = load_pipeline(path, RunDir.at(tmp_path / path.stem), ROOT)
        assert spec.stages, path


def test_run_dir_layout_and_record(tmp_path):
    run = RunDir.at(tmp_path / "r").create()
    assert sorted(p.name for p in run.root.iterdir()) == sorted(SUBDIRS)
    run.record_launch({"engine": "nemo-run", "stages": [{"stage": "train", "job_id": "7"}]})
    run.record_launch({"engine": "nemo-run", "stages": []})
    record = yaml.safe_load(run.record_path.read_text())
    assert [len(l["stages"]) for l in record["launches"]] == [1, 0]


def test_sbatch_scripts_agree_with_the_layout(tmp_path):
    """slurm/common.sh creates the same sub-directories as RunDir (both paths share the layout)."""
    env = {"SRFT_RUN_DIR": str(tmp_path / "run"), "SRFT_REPO": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", "-c", f"source {ROOT}/slurm/common.sh"], env=env, check=True)
    made = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert made == sorted(s for s in SUBDIRS if s != "nemorun")
    for script in sorted((ROOT / "slurm").glob("*.sbatch")) + [ROOT / "slurm" / "critic_task.sh"]:
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_latest_reference_resolves_to_the_newest_checkpoint(tmp_path, capsys):
    ckpts = tmp_path / "checkpoints"
    (ckpts / "iter_0000004").mkdir(parents=True)
    (ckpts / "iter_0000004" / "srft_checkpoint.json").write_text("{}")   # complete: its marker is there
    (ckpts / "latest").write_text("iter_0000004\n")
    assert resolve(f"@latest:{ckpts}") == str(ckpts / "iter_0000004")
    assert resolve("--output") == "--output"
    (ckpts / "latest").write_text("iter_0000009\n")
    assert entry_main(["convert", "to-hf", "--checkpoint", f"@latest:{ckpts}", "--output", "x"]) == 2
    assert "checkpoints/iter_0000009 named by" in capsys.readouterr().err     # missing: refused, named
    (ckpts / "iter_0000009").mkdir()
    assert entry_main(["convert", "to-hf", "--checkpoint", f"@latest:{ckpts}", "--output", "x"]) == 2
    assert "incomplete (no srft_checkpoint.json)" in capsys.readouterr().err  # no marker: refused too
    assert entry_main(["convert", "to-hf", "--checkpoint", f"@latest:{tmp_path / 'none'}"]) == 2
    assert "did training save one?" in capsys.readouterr().err


def test_report_names_the_failed_stage_and_why(tmp_path):
    log = tmp_path / "log-srft-train_12_0.out"
    log.write_text("[default0]:[rank0]: Traceback (most recent call last):\n"
                   "[default0]:[rank0]: ValueError: cannot mmap an empty file\n" + "x\n" * 20)
    results = [StageResult("preprocess", "11", "COMPLETED", "0:0"),
               StageResult("train", "12", "FAILED", "1:0", "NonZeroExitCode", log=str(log),
                           log_tail=tail(log, 3), error_lines=error_lines(log)),
               StageResult("convert", "13", "CANCELLED", "0:0", "DependencyNeverSatisfied")]
    report = format_report(results)
    assert "pipeline FAILED at stage train" in report
    assert f"train: job 12 FAILED, exit code 1:0, reason NonZeroExitCode; log: {log}" in report
    assert "  ! ValueError: cannot mmap an empty file" in report        # the cause, prefix stripped
    assert "convert: job 13 did not run (CANCELLED): train failed" in report
    assert report.count("  | x") == 3
    detached = format_report([StageResult("train", "12", "SUBMITTED")])
    assert "pipeline submitted (detached)" in detached and "FAILED" not in detached
    assert "pipeline: all stages succeeded" in format_report(results[:1])


def test_a_shipped_spec_is_named_by_its_name(tmp_path, monkeypatch):
    from srft_megatron.launch.pipeline import resolve_pipeline, shipped_pipelines

    # package data, found by name from any directory; launch/pipelines/ is the same files
    monkeypatch.chdir(tmp_path)
    assert {"tiny-cpu", "qwen2.5-32b", "qwen2.5-32b-128k"} <= set(shipped_pipelines())
    shipped = resolve_pipeline("tiny-cpu")
    assert shipped == ROOT / "srft_megatron" / "pipelines" / "tiny-cpu.yaml"
    assert (ROOT / "launch" / "pipelines" / "tiny-cpu.yaml").resolve() == shipped.resolve()
    own = tmp_path / "tiny-cpu"                      # a file of that name wins over the shipped spec
    own.write_text("stages: {}\n")
    assert resolve_pipeline("tiny-cpu") == Path("tiny-cpu")
    assert resolve_pipeline(str(own)) == own
    with pytest.raises(ConfigError, match=r"neither a file nor a shipped spec \(known: .*tiny-cpu"):
        resolve_pipeline("no-such-pipeline")
    with pytest.raises(ConfigError, match="neither a file"):
        resolve_pipeline("pipelines/tiny-cpu")       # a path that is not a file is not a name
