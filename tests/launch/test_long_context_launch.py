"""Launching long-context training (issue 15): the 64k/128k pipeline specs and the fit check
`srft launch` runs on the train stage before anything is submitted. No GPU and no cluster: the
specs are loaded and dry-run (nemo-run writes the sbatch scripts without submitting), and a
layout that cannot fit is refused before any subprocess starts."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from srft_megatron.errors import ConfigError
from srft_megatron.launch.fit import check_training_fits
from srft_megatron.launch.pipeline import load_pipeline, resolve_pipeline
from srft_megatron.launch.rundir import RunDir
from srft_megatron.training.config import load_config
from tests.launch.conftest import ROOT

LONG = {"64k": (65536, 4), "128k": (131072, 8)}


def _spec(name: str, tmp_path, **kwargs):
    return load_pipeline(resolve_pipeline(name), RunDir.at(tmp_path / "run"), ROOT, **kwargs)


@pytest.mark.parametrize("length", sorted(LONG))
def test_long_context_specs_train_their_config_on_its_layout(tmp_path, length):
    seq, nodes = LONG[length]
    spec = _spec(f"qwen2.5-32b-{length}", tmp_path)
    run = RunDir.at(tmp_path / "run")
    train = spec.stage("train")
    config = ROOT / "configs" / f"qwen2.5-coder-32b-srft-{length}.yaml"
    assert train.args[:4] == ["--config", str(config), "--run-dir", str(run.train)]
    assert f"data.prefixes=[{run.datasets}/srft-{length}]" in train.args
    assert f"train.init_from={run.root}/init" in train.args
    cfg = load_config(config, train.args[4:])
    p = cfg.parallel
    assert cfg.model.seq_length == seq and p.context > 1 and cfg.model.name.endswith("-128k")
    assert (train.nodes, train.nproc_per_node, train.gpus_per_node) == (nodes, 8, 8)
    assert train.nodes * train.nproc_per_node == p.tensor * p.pipeline * p.context  # DP 1
    pre = spec.stage("preprocess").args
    assert pre[pre.index("--seq-length") + 1] == str(seq)
    assert pre[pre.index("--output-prefix") + 1] == f"{run.datasets}/srft-{length}"
    ev = spec.stage("evaluate").args
    assert ev[ev.index("--max-model-len") + 1] == str(seq)
    assert check_training_fits(spec).startswith(f"fit check: {cfg.model.name} at {seq} tokens")
    with pytest.raises(ConfigError, match=r"stages.train .*more than 16 GiB less headroom; run 'srft plan'"):
        check_training_fits(spec, gpu_memory_gb=16)


def test_fit_check_skips_cpu_pipelines_and_names_bad_layouts(tmp_path):
    assert "skipped" in check_training_fits(_spec("tiny-cpu", tmp_path))
    assert "no train stage" in check_training_fits(_spec("qwen2.5-32b-64k", tmp_path, only=["preprocess"]))
    raw = yaml.safe_load((ROOT / "launch" / "pipelines" / "qwen2.5-32b-128k.yaml").read_text())
    raw["stages"]["train"]["nodes"] = 3   # 24 GPUs cannot hold TP 8 x CP 8
    path = tmp_path / "three-nodes.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_pipeline(path, RunDir.at(tmp_path / "run"), ROOT)
    with pytest.raises(ConfigError, match="3 nodes x 8 GPUs: world size 24 is not divisible by tensor x pipeline "
                                          "x context = 8 x 1 x 8"):
        check_training_fits(spec)
    raw["stages"]["train"]["nodes"] = 8
    raw["stages"]["train"]["args"] = ["--config", "{configs}/train.yaml", "--run-dir", "{train}"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="training config .*/configs/train.yaml not found: write it there"):
        check_training_fits(load_pipeline(path, RunDir.at(tmp_path / "run"), ROOT))


def test_launch_refuses_a_layout_that_cannot_fit_before_submitting(tmp_path, monkeypatch, capsys):
    from srft_megatron import cli
    from srft_megatron.commands import launch

    def no_submission(*args, **kwargs):
        raise AssertionError(f"nothing may run before the fit check passes: {args}")

    monkeypatch.setattr(launch, "ensure_launch_venv", no_submission)
    monkeypatch.setattr(launch.subprocess, "run", no_submission)
    code = cli.main(["launch", "qwen2.5-32b-128k", "--run-dir", str(tmp_path / "run"), "--gpu-memory-gb", "24"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert "qwen2.5-coder-32b-instruct-128k, seq_length 131072, 64 GPUs of 24 GiB" in err and "srft plan" in err
    assert not (tmp_path / "run").exists()


def test_dry_run_prints_the_long_context_commands(launch_python, tmp_path):
    """`srft launch NAME --dry-run` end to end (fit check, then nemo-run's sbatch scripts); the
    128k spec only (the 64k one differs in numbers the test above checks; ~20 s a launch here)."""
    for length, (seq, nodes) in [("128k", LONG["128k"])]:
        run = tmp_path / f"run-{length}"
        proc = subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "launch", f"qwen2.5-32b-{length}", "--run-dir",
                               str(run), "--dry-run", "--stages", "train"], capture_output=True, text=True, cwd=ROOT,
                              env=dict(os.environ, COLUMNS="200"), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "[srft launch] fit check: qwen2.5-coder-32b-instruct-128k" in proc.stderr
        out = proc.stdout
        assert f"#SBATCH --nodes={nodes}" in out and "#SBATCH --gpus-per-node=8" in out
        srun = next(line for line in out.splitlines() if line.startswith("srun "))
        assert f"--nnodes {nodes} --nproc-per-node 8" in srun
        assert (f"-m srft_megatron.cli train --config {ROOT}/configs/qwen2.5-coder-32b-srft-{length}.yaml "
                f"--run-dir {run}/train 'data.prefixes=[{run}/datasets/srft-{length}]' "
                f"train.init_from={run}/init") in srun
        assert not list((run / "logs").iterdir())   # nothing was submitted
