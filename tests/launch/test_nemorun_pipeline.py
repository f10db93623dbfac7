"""The nemo-run pipeline (`srft launch`) on the real two-node test cluster: stages chained with
afterok dependencies run in order; a failing stage is named with its exit code and log lines, and
the stages after it never run; --dry-run prints the generated srun/torchrun lines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.launch.conftest import ROOT

pytestmark = pytest.mark.slurm
FAKE_TRAIN = ROOT / "tests" / "launch" / "payloads" / "fake_train.py"
EXAMPLES = ROOT / "examples"


def _spec(tmp_path: Path, stages: dict, **executor) -> Path:
    spec = {"executor": {"kind": "slurm", "partition": "debug", "account": "ci", "time": "00:10:00", **executor},
            "stages": stages}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _tiny_stages(train_port: int, train_extra: list[str] | None = None) -> dict:
    return {
        "ingest": {"args": [*map(str, sorted((EXAMPLES / "trajectories").glob("*.traj"))),
                            "-o", "{data}/trajectories.jsonl", "--resolved", str(EXAMPLES / "resolved.jsonl"),
                            "--quiet"]},
        "preprocess": {"args": ["--trajectories", "{data}/trajectories.jsonl", "--labels",
                                str(EXAMPLES / "labels.jsonl"), "--policy", "srft", "--tokenizer", "qwen2.5",
                                "--seq-length", "4096", "--output-prefix", "{datasets}/tiny", "--workers", "1",
                                "--quiet"]},
        "train": {"nodes": 2, "nproc_per_node": 1, "rdzv_port": train_port,
                  "env": {"SRFT_ENTRY": str(FAKE_TRAIN)},
                  "args": ["--config", "{datasets}/tiny.meta.json", "--run-dir", "{train}", "steps=2",
                           *(train_extra or [])]},
    }


def _launch(cluster, spec: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "launch", str(spec), "--run-dir", str(run_dir),
                           *extra], env=dict(cluster.env, COLUMNS="200"), capture_output=True, text=True,
                          cwd=ROOT, timeout=400)


def test_pipeline_runs_stages_in_order_with_dependencies(slurm_cluster, launch_python, tmp_path):
    run_dir = tmp_path / "run"
    proc = _launch(slurm_cluster, _spec(tmp_path, _tiny_stages(29721)), run_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "pipeline: all stages succeeded" in proc.stdout
    launch = json.loads((run_dir / "run.json").read_text())["launches"][-1]
    stages = launch["stages"]
    assert [s["stage"] for s in stages] == ["ingest", "preprocess", "train"]
    assert all(s["state"] == "COMPLETED" for s in stages)
    infos = [slurm_cluster.job(s["job_id"]) for s in stages]
    for before, after in zip(infos, infos[1:]):   # afterok: each starts only after the previous ended
        assert after["StartTime"] >= before["EndTime"]
    assert infos[2]["NodeList"] == "n[1-2]" and infos[2]["NumNodes"] == "2"
    meta = json.loads((run_dir / "datasets" / "tiny.meta.json").read_text())
    assert meta["counts"]["documents"] == 8   # ingest -> preprocess handed over all 8 examples
    assert (run_dir / "datasets" / "tiny_tokens.bin").stat().st_size > 0
    result = json.loads((run_dir / "train" / "result-0.json").read_text())
    assert result["world"] == 2 and sorted(result["nodes"]) == ["0", "1"] and result["sums"] == [3.0, 3.0]
    assert json.loads((run_dir / "train" / "checkpoints" / "latest.json").read_text()) == {"step": 2}
    assert (run_dir / "configs" / "pipeline.yaml").exists()
    assert (run_dir / "logs" / f"log-srft-train_{stages[2]['job_id']}_0.out").exists()


def test_failing_stage_is_reported_and_dependants_do_not_run(slurm_cluster, launch_python, tmp_path):
    run_dir = tmp_path / "run"
    stages = _tiny_stages(29722)
    del stages["ingest"]   # preprocess now reads a trajectories file that does not exist
    proc = _launch(slurm_cluster, _spec(tmp_path, stages), run_dir)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    launch = json.loads((run_dir / "run.json").read_text())["launches"][-1]
    pre, train = launch["stages"]
    assert pre["state"] == "FAILED" and pre["exit_code"] == "2:0"
    assert train["state"] == "CANCELLED" and train["reason"] == "DependencyNeverSatisfied"
    assert "pipeline FAILED at stage preprocess" in out
    assert f"preprocess: job {pre['job_id']} FAILED, exit code 2:0" in out
    assert f"train: job {train['job_id']} did not run (CANCELLED): preprocess failed" in out
    # the cause, from srft preprocess's own one-line error, is quoted from its log
    assert any("trajectories.jsonl" in line and "error" in line for line in pre["error_lines"]), pre
    assert not (run_dir / "train" / "checkpoints").exists()


def test_dry_run_prints_srun_and_torchrun_lines(slurm_cluster, launch_python, tmp_path):
    stages = _tiny_stages(29723)
    stages["train"].update(nodes=4, nproc_per_node=8, gpus_per_node=8)
    spec = _spec(tmp_path, stages, container_image="nvcr.io/nvidia/pytorch:25.01-py3",
                 container_mounts=["/lustre:/lustre"])
    proc = _launch(slurm_cluster, spec, tmp_path / "run", "--dry-run", "--stages", "preprocess,train")
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "##### stage preprocess" in out and "##### stage train (after preprocess succeeds" in out
    assert "##### stage ingest" not in out
    train = out[out.index("##### stage train"):]
    assert "#SBATCH --nodes=4" in train and "#SBATCH --ntasks-per-node=1" in train
    assert "#SBATCH --gpus-per-node=8" in train and "#SBATCH --requeue" in train
    srun = next(line for line in train.splitlines() if line.startswith("srun "))
    assert "--container-image nvcr.io/nvidia/pytorch:25.01-py3" in srun and "/lustre:/lustre" in srun
    assert ("torchrun --rdzv-backend c10d --rdzv-endpoint $head_node_ip:29723" in srun
            and "--nnodes 4 --nproc-per-node 8 --node-rank $SLURM_NODEID" in srun)
    assert srun.rstrip().endswith(f"{FAKE_TRAIN} train --config {tmp_path}/run/datasets/tiny.meta.json "
                                  f"--run-dir {tmp_path}/run/train steps=2")
    pre = out[out.index("##### stage preprocess"):out.index("##### stage train")]
    assert "python -m srft_megatron.launch.entry preprocess --trajectories" in pre
    assert not list((tmp_path / "run" / "logs").iterdir())   # nothing was submitted
