"""`srft launch --executor local` (nemo-run LocalExecutor): stages run one after another on this
machine; the first failure stops the pipeline and the report names it."""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from tests.launch.conftest import ROOT, ingest_args, preprocess_args


def test_local_pipeline_runs_in_order_and_stops_at_first_failure(launch_python, tmp_path):
    args = preprocess_args("{data}/trajectories.jsonl", "{datasets}/tiny")
    args[args.index("--labels") + 1] = "{labels}/missing.jsonl"   # preprocess must fail on this
    spec = {"executor": {"kind": "local"},
            "stages": {"ingest": {"args": ingest_args("{data}/trajectories.jsonl")},
                       "preprocess": {"args": args},
                       "train": {"nproc_per_node": 2, "args": ["--config", str(ROOT / "configs" / "tiny.yaml"),
                                                               "--run-dir", "{train}"]}}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    run = tmp_path / "run"
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "launch", str(path), "--run-dir", str(run)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = json.loads((run / "run.json").read_text())["launches"][-1]["stages"]
    assert [(s["stage"], s["state"]) for s in stages] == [
        ("ingest", "SUCCEEDED"), ("preprocess", "FAILED"), ("train", "NOT_RUN")]
    assert len((run / "data" / "trajectories.jsonl").read_text().splitlines()) == 8
    assert "pipeline FAILED at stage preprocess" in proc.stdout
    assert "train: did not run (NOT_RUN): preprocess failed" in proc.stdout
    assert any("missing.jsonl" in line for line in stages[1]["error_lines"]), stages[1]
    assert not list((run / "train").iterdir())   # the trainer never started


def test_shipped_tiny_cpu_pipeline_runs_from_its_defaults(launch_python, tmp_path):
    """launch/pipelines/tiny-cpu.yaml as shipped, on this machine, in a run dir with a space: the
    train stage is torchrun with 2 workers and gets its arguments whole (nemo-run's torchrun
    launcher would have shell-quoted them for a shell the local executor does not use)."""
    run = tmp_path / "tiny run"
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "launch", str(ROOT / "launch" / "pipelines" /
                           "tiny-cpu.yaml"), "--run-dir", str(run), "--executor", "local"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, SRFT_LAUNCH_LINKS=str(tmp_path / "links")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = json.loads((run / "run.json").read_text())["launches"][-1]["stages"]
    assert [(s["stage"], s["state"]) for s in stages] == [
        ("ingest", "SUCCEEDED"), ("preprocess", "SUCCEEDED"), ("train", "SUCCEEDED"), ("convert", "SUCCEEDED")]
    ckpt = run / "train" / "checkpoints"
    marker = json.loads((ckpt / (ckpt / "latest").read_text().strip() / "srft_checkpoint.json").read_text())
    assert marker["step"] == 4 and marker["parallel"]["dp"] == 2      # train.steps=4 on 2 workers
    assert json.loads((run / "hf" / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
