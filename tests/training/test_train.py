"""End-to-end training: layouts agree (training and validation numbers), resume is exact, the CLI
runs the tiny config.

Every run starts from the same model-only dist checkpoint (`train.init_from`), so TP/PP/DP runs
begin from identical weights whatever their initialisation order, and loading that checkpoint
at TP=2 / PP=2 / interleaved PP also exercises resharding on load."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from srft_megatron.parallel.dims import destroy
from srft_megatron.training.config import load_config
from srft_megatron.training.trainer import Trainer

from .helpers import ROOT, TINY_CONFIG, make_dataset, read_metrics

pytestmark = pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (conftest)

STEPS = 3
COMMON = ["train.global_batch_size=8", "train.micro_batch_size=2", "model.seq_length=64",
          "logging.tensorboard=false", "checkpoint.save_on_exit=false"]
# per-label validation (training/evaluation.py) on held-out documents: before step 1, after step 2
# and at the end; 4 sequences = one micro-batch per rank at DP=2, two (a multiple of PP) otherwise
EVAL = ["data.validation_fraction=0.2", "train.eval_interval=2", "train.eval_samples=4"]


def _overrides(data, init, steps=STEPS, model="tiny", extra=()):
    return [f"data.prefixes=[{data}]", f"train.init_from={init}", f"train.steps={steps}",
            f"model.name={model}", *COMMON, *extra]


def _train(run_dir, overrides, trainer_cls=Trainer):
    cfg = load_config(TINY_CONFIG, overrides)
    try:
        return trainer_cls(cfg, run_dir).train()
    finally:
        destroy(process_group=True)


def _init_checkpoint(path, model_name):
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model
    from srft_megatron.parallel.dims import ParallelDims, initialize
    from srft_megatron.training.checkpoint import save_model_checkpoint

    shape = get_shape(model_name)
    initialize(ParallelDims(), seed=11)
    try:
        save_model_checkpoint([build_gpt_model(shape, precision="fp32")], path, shape=shape)
    finally:
        destroy(process_group=True)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_dataset(root / "data" / "synthetic", n_docs=40, max_len=50, labels=True)
    inits = {name: _init_checkpoint(root / f"init-{name}", name) for name in ("tiny", "tiny-untied")}
    return root, data, inits


def _assert_close_runs(base, other, what):
    from srft_megatron.training.metrics import is_eval_record

    base_evals, other_evals = ([m for m in run if is_eval_record(m)] for run in (base, other))
    base, other = ([m for m in run if not is_eval_record(m)] for run in (base, other))
    assert [m["step"] for m in base_evals] == [m["step"] for m in other_evals] == [0, 2, STEPS], what
    for a, b in zip(base_evals, other_evals):
        keys = {k for k in a if k == "val/loss" or k.startswith("val/nll/")}
        assert keys == {k for k in b if k == "val/loss" or k.startswith("val/nll/")}, (what, a, b)
        assert {"val/nll/good", "val/nll/harmful", "val/nll/resolved", "val/nll/unresolved"} <= keys
        for key in keys:
            assert abs(a[key] - b[key]) <= 1e-5 * abs(a[key]), (what, key, a, b)
    assert [m["step"] for m in base] == [m["step"] for m in other] == list(range(1, len(base) + 1))
    for a, b in zip(base, other):
        assert a["tokens"] == b["tokens"] and a["weighted_tokens"] == pytest.approx(b["weighted_tokens"])
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"]), (what, a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 1e-5 * abs(a["grad_norm"]), (what, a, b)


@pytest.mark.distributed
def test_tp_pp_dp_match_single_process(setup):
    root, data, inits = setup
    # Single-process references.
    for model in ("tiny", "tiny-untied"):
        assert _train(root / f"base-{model}", _overrides(data, inits[model], model=model, extra=EVAL)) == 0
    base = {m: read_metrics(root / f"base-{m}") for m in ("tiny", "tiny-untied")}
    # The global batch really has micro-batches with unequal kept-token counts.
    from srft_megatron.training.data import StepBatches, build_train_dataset

    ds = build_train_dataset([str(data)], None, seq_length=64, num_samples=24, seed=1234)
    sums = [float(mb["loss_weights"].sum()) for mb in
            StepBatches(ds, global_batch_size=8, micro_batch_size=2, dp_rank=0, dp_size=1).micro_batches(0)]
    assert max(sums) > 1.2 * min(sums), sums

    layouts = {
        "tp2": ("tiny", ["parallel.tensor=2"]),
        "pp2": ("tiny", ["parallel.pipeline=2"]),
        "dp2": ("tiny", []),
        "pp2-vpp2": ("tiny-untied", ["parallel.pipeline=2", "parallel.virtual_pipeline=2"]),
        "tp2-nodistopt": ("tiny-untied", ["parallel.tensor=2", "parallel.distributed_optimizer=false"]),
    }
    spec = {"config": str(TINY_CONFIG), "runs": [
        {"run_dir": str(root / name), "overrides": _overrides(data, inits[model], model=model, extra=[*EVAL, *extra])}
        for name, (model, extra) in layouts.items()]}
    spec_path = root / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "training" / "dist_worker.py"),
                           str(spec_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for name, (model, _) in layouts.items():
        _assert_close_runs(base[model], read_metrics(root / name), name)


class _SigtermAfter(Trainer):
    kill_at = 2

    def train_step(self):
        record = super().train_step()
        if self.step == self.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)  # pre-emption: handled after this step
        return record


def test_sigterm_then_resume_is_exact(setup):
    root, data, inits = setup
    steps = 5
    uninterrupted = root / "resume-ref"
    assert _train(uninterrupted, _overrides(data, inits["tiny"], steps=steps)) == 0
    run = root / "resume-run"
    save = ["checkpoint.save_on_exit=true"]
    assert _train(run, _overrides(data, inits["tiny"], steps=steps, extra=save),
                  _SigtermAfter) == 0
    first = read_metrics(run)
    assert [m["step"] for m in first] == [1, 2]  # stopped by the signal after step 2
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000002"
    assert _train(run, _overrides(data, inits["tiny"], steps=steps, extra=save)) == 0
    resumed, ref = read_metrics(run), read_metrics(uninterrupted)
    assert [m["step"] for m in resumed] == list(range(1, steps + 1))
    for a, b in zip(ref, resumed):
        for key in ("loss", "grad_norm", "lr", "tokens", "weighted_tokens", "consumed_samples"):
            assert a[key] == b[key], (key, a, b)  # bit-exact


def test_cli_runs_tiny_config_end_to_end(setup, tmp_path):
    root, data, _ = setup
    run = tmp_path / "cli"
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "train", "--config", str(TINY_CONFIG),
                           "--run-dir", str(run), f"data.prefixes=[{data}]", "train.steps=4",
                           "checkpoint.save_interval=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for m in metrics:
        assert {"step", "loss", "grad_norm", "tokens", "lr", "tokens_per_s", "tflops_per_gpu",
                "weighted_fraction"} <= set(m)
        assert 0 < m["weighted_fraction"] < 1 and m["tokens"] > 0
        positions = 8 * 128                                   # tiny.yaml: global batch 8, seq_length 128
        assert m["packing_utilisation"] == m["tokens"] / positions and 0 < m["packing_utilisation"] <= 1
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000004"
    assert sorted(p.name for p in (run / "checkpoints").glob("iter_*")) == ["iter_0000002", "iter_0000004"]
    assert list((run / "tensorboard").iterdir())
    assert "model:" in proc.stdout and "name: tiny" in proc.stdout  # config printed at start
