"""The nemo-run pipeline (`srft launch`) on the real two-node test cluster: stages chained with
afterok dependencies run in order; a failing stage is named with its exit code and log lines, and
the stages after it never run; --dry-run prints the generated srun/torchrun lines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.launch.conftest import ROOT, ingest_args, preprocess_args, train_overrides

pytestmark = pytest.mark.slurm
TINY = ROOT / "configs" / "tiny.yaml"


def _spec(tmp_path: Path, stages: dict, **executor) -> Path:
    spec = {"executor": {"kind": "slurm", "partition": "debug", "account": "ci", "time": "00:20:00", **executor},
            "stages": stages}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _tiny_stages(train_port: int, steps: int = 2) -> dict:
    """ingest -> preprocess -> train (2 nodes) -> convert, all the real srft stages."""
    return {
        "ingest": {"args": ingest_args("{data}/trajectories.jsonl")},
        "preprocess": {"args": preprocess_args("{data}/trajectories.jsonl", "{datasets}/tiny")},
        "train": {"nodes": 2, "nproc_per_node": 1, "rdzv_port": train_port,
                  "args": ["--config", str(TINY), "--run-dir", "{train}",
                           *train_overrides("{datasets}/tiny", steps)]},
        "convert": {"args": ["to-hf", "--checkpoint", "@latest:{train}/checkpoints", "--output", "{hf}",
                             "--overwrite", "--quiet"]},
    }


def _launch(cluster, spec: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(cluster.env, COLUMNS="200", SRFT_LAUNCH_LINKS=str(spec.parent / "links"))
    return subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "launch", str(spec), "--run-dir", str(run_dir),
                           *extra], env=env, capture_output=True, text=True, cwd=ROOT, timeout=400)


def test_pipeline_runs_stages_in_order_with_dependencies(slurm_cluster, launch_python, tmp_path):
    run_dir = tmp_path / "my run"   # a space: every stage gets the path whole (nemo-run via a safe link)
    proc = _launch(slurm_cluster, _spec(tmp_path, _tiny_stages(29721)), run_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "pipeline: all stages succeeded" in proc.stdout
    launch = json.loads((run_dir / "run.json").read_text())["launches"][-1]
    stages = launch["stages"]
    assert [s["stage"] for s in stages] == ["ingest", "preprocess", "train", "convert"]
    assert all(s["state"] == "COMPLETED" for s in stages)
    infos = [slurm_cluster.job(s["job_id"]) for s in stages]
    for before, after in zip(infos, infos[1:]):   # afterok: each starts only after the previous ended
        assert after["StartTime"] >= before["EndTime"]
    assert infos[2]["NodeList"] == "n[1-2]" and infos[2]["NumNodes"] == "2"
    meta = json.loads((run_dir / "datasets" / "tiny.meta.json").read_text())
    assert meta["counts"]["documents"] == 8        # ingest -> preprocess handed over all 8 examples
    ckpt = run_dir / "train" / "checkpoints" / "iter_0000002"
    marker = json.loads((ckpt / "srft_checkpoint.json").read_text())
    assert marker["step"] == 2 and marker["parallel"]["dp"] == 2   # trained on both nodes
    hf = json.loads((run_dir / "hf" / "config.json").read_text())  # convert found @latest
    assert hf["architectures"] == ["Qwen2ForCausalLM"] and (run_dir / "hf" / "model.safetensors.index.json").exists()
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
    pre, train, convert = launch["stages"]
    assert pre["state"] == "FAILED" and pre["exit_code"] == "2:0"
    for later in (train, convert):
        assert later["state"] == "CANCELLED" and later["reason"] == "DependencyNeverSatisfied"
    assert "pipeline FAILED at stage preprocess" in out
    assert f"preprocess: job {pre['job_id']} FAILED, exit code 2:0" in out
    assert f"train: job {train['job_id']} did not run (CANCELLED): preprocess failed" in out
    assert f"convert: job {convert['job_id']} did not run (CANCELLED): preprocess failed" in out
    # the cause, from srft preprocess's own one-line error, is quoted from its log
    assert any("trajectories.jsonl" in line and "error" in line for line in pre["error_lines"]), pre
    assert not (run_dir / "train" / "checkpoints").exists() and not list((run_dir / "hf").iterdir())


def test_dry_run_prints_srun_and_torchrun_lines(slurm_cluster, launch_python, tmp_path):
    stages = _tiny_stages(29723)
    stages["train"].update(nodes=4, nproc_per_node=8, gpus_per_node=8)
    stages["label"] = {"nodes": 2, "nproc_per_node": 2, "env": {"SRFT_CRITIC_MODEL": "/models/critic"}}
    spec = _spec(tmp_path, stages, container_image="nvcr.io/nvidia/pytorch:25.01-py3",
                 container_mounts=["/lustre:/lustre"])
    proc = _launch(slurm_cluster, spec, tmp_path / "run", "--dry-run", "--stages", "label,preprocess,train")
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "##### stage label" in out and "##### stage preprocess (after label succeeds" in out
    assert "##### stage train (after preprocess succeeds" in out
    assert "##### stage ingest" not in out
    train = out[out.index("##### stage train"):]
    assert "#SBATCH --nodes=4" in train and "#SBATCH --ntasks-per-node=1" in train
    assert "#SBATCH --gpus-per-node=8" in train and "#SBATCH --requeue" in train
    srun = next(line for line in train.splitlines() if line.startswith("srun "))
    assert "--container-image nvcr.io/nvidia/pytorch:25.01-py3" in srun and "/lustre:/lustre" in srun
    assert ("torchrun --rdzv-backend c10d --rdzv-endpoint $head_node_ip:29723" in srun
            and "--nnodes 4 --nproc-per-node 8 --node-rank $SLURM_NODEID" in srun)
    assert f"-m srft_megatron.cli train --config {TINY} --run-dir {tmp_path}/run/train " in srun
    assert f"data.prefixes=[{tmp_path}/run/datasets/tiny]" in srun
    label = out[out.index("##### stage label"):out.index("##### stage preprocess")]
    assert "#SBATCH --nodes=2" in label and "#SBATCH --ntasks-per-node=1" in label   # one task per node
    assert "export SRFT_VLLM_REPLICAS_PER_NODE=2" in label and "export SRFT_CRITIC_MODEL=/models/critic" in label
    assert f"bash {ROOT}/slurm/critic_task.sh --trajectories {tmp_path}/run/data/trajectories.jsonl" in label
    pre = out[out.index("##### stage preprocess"):out.index("##### stage train")]
    assert "python -m srft_megatron.launch.entry preprocess --trajectories" in pre
    assert not list((tmp_path / "run" / "logs").iterdir())   # nothing was submitted
