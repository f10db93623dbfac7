"""`srft demo` end to end, as `make demo` runs it, in a shorter variant for CI time: the real
stages as subprocesses (ingest, view, preprocess with the Qwen2.5 tokenizer, torchrun training
with TP=2 over two gloo processes, conversion to Hugging Face, transformers generate, report).
The full-length demo (`make demo`, 20 steps) differs only in --steps and --seq-length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "demo", "--output", str(out),
                           "--steps", str(STEPS), "--seq-length", "1024", "--new-tokens", "8"],
                          capture_output=True, text=True, cwd=ROOT, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.distributed
@pytest.mark.slow
def test_demo_runs_every_stage_and_says_what_it_produced(demo):
    out, stdout = demo
    for number, stage in enumerate(("ingest", "label", "view", "preprocess", "train", "convert", "generate",
                                    "report"), start=1):
        assert f"[{number}/8] {stage}" in stdout
    # ingest: the 8 bundled trajectories, resolved flags attached
    rows = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and sum(r["resolved"] for r in rows) == 5
    # view: the HTML page of the labelled steps
    assert "SRFT trajectory viewer" in (out / "trajectories.html").read_text()
    # preprocess: tokens + weights datasets and metadata with the expert-labelled steps
    meta = json.loads((out / "data" / "srft.meta.json").read_text())
    assert meta["counts"]["documents"] == 8
    assert 0 < meta["counts"]["weighted_tokens"] < meta["counts"]["tokens"]
    for suffix in ("_tokens.bin", "_tokens.idx", "_weights.bin", "_weights.idx"):
        assert (out / "data" / f"srft{suffix}").stat().st_size > 0
    # train: TP=2 over two processes, a checkpoint at the last step, one metrics row per step, and
    # the per-label validation NLL before the first and after the last step (printed as a table)
    from srft_megatron.training.metrics import is_eval_record

    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    metrics = [m for m in records if not is_eval_record(m)]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    evals = [m for m in records if is_eval_record(m)]
    assert [m["step"] for m in evals] == [0, STEPS]
    table = stdout.split("per-label validation NLL on the 8 training trajectories")[1]
    for label in ("good", "harmful", "resolved", "unresolved"):
        assert f"{evals[0]['val/nll/' + label]:.3f}" in table and f"{evals[1]['val/nll/' + label]:.3f}" in table
    assert all(0 < m["weighted_fraction"] < 1 for m in metrics)
    # the run page plots every label's validation NLL (srft view --run; the chart is tested in Chromium)
    page = (out / "run.html").read_text()
    assert "<svg" in page and all(f'data-series="{label}"' in page for label in ("good", "harmful"))
    assert (out / "run" / "checkpoints" / "latest").read_text().strip() == f"iter_{STEPS:07d}"
    assert "TP=2 over 2 processes" in stdout
    # convert + generate: an HF directory that transformers loaded and generated from
    config = json.loads((out / "hf" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert "greedy continuation (8 tokens" in stdout
    # report and the closing summary with the cluster equivalent
    assert "weighted" in stdout.split("[8/8] report")[1]
    assert "Summary" in stdout and "total" in stdout
    assert "The same pipeline on a cluster" in stdout and "srft launch" in stdout and "slurm/train.sbatch" in stdout


def test_demo_refuses_to_empty_a_directory_it_did_not_write(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "demo", "--output", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "not a previous demo output" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_rejects_impossible_settings(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "demo", "--output", str(tmp_path / "x"),
                           "--steps", "0"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "--steps must be at least 1" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.vllm
@pytest.mark.slow
def test_critic_option_labels_every_step_on_a_real_vllm_server(tmp_path):
    """`make demo CRITIC=1`, its first two stages: `srft label` against a tiny model on a real
    vLLM CPU server, then `srft critic-eval` against the expert labels."""
    import argparse

    from srft_megatron.commands import demo as demo_cmd
    from srft_megatron.trajectory import read_labels, read_trajectories

    parser = argparse.ArgumentParser()
    demo_cmd.add_arguments(parser)
    run = demo_cmd.Demo(parser.parse_args(["--output", str(tmp_path / "out"), "--critic"]))
    run.out.mkdir(parents=True)
    run.stage("ingest", run.ingest)
    result = run.stage("label", run.label)
    assert run.labels == run.out / "labels.critic.jsonl"
    labels, errors = read_labels(str(run.labels))
    assert errors == []
    trajs = {t.id: t for _, t in read_trajectories(str(run.trajectories))}
    assert set(labels) == set(trajs)
    for tid, rec in labels.items():
        assert len(rec.steps) == trajs[tid].num_steps
        assert rec.critic["model"] == "tiny"
    metrics = json.loads((run.out / "critic-eval.json").read_text())
    # every critic label was scored against the expert labels of examples/labels.jsonl
    assert metrics["trajectories"] == 8 and metrics["steps"] == 74 and metrics["missing"] == []
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert any("agreement with the expert labels" in fact for fact in result.facts)
