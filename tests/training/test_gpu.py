"""GPU-only paths: megatron-core's local spec on CUDA (no TE needed), and Transformer Engine: layer
spec, FP8 (delayed and current scaling), THD packing.

Skipped on CPU (conftest marks `gpu` tests skipped without CUDA); the TE tests also skip where
Transformer Engine does not import (e.g. the lent H200, see bench/gpu_check.sh). The packing
checks are the CPU ones of `test_gpu_path.py` on the GPU kernels: per-token NLL of packed vs
one-by-one documents on a model whose outputs depend on context, and a leaky (plain causal)
layout that must fail the same check."""

from __future__ import annotations

import pytest
import torch

from .helpers import (CONTEXT_INIT_STD, TINY_CONFIG, assert_nll_close, context_docs, make_dataset,
                      packed_and_alone_nll, read_metrics)

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("cpu_shim")]  # cpu_shim: no-op with CUDA

# bf16 kernels differ by layout (CPU bf16 measured 0.028 nats max); a leaky layout moves 3.3 nats.
BF16_NLL_ATOL = 0.1


@pytest.fixture(scope="module")
def cuda_world():
    from srft_megatron.parallel.dims import ParallelDims, destroy, initialize

    initialize(ParallelDims(), seed=3)
    yield
    destroy(process_group=True)


@pytest.fixture(scope="module")
def te_world(cuda_world):
    from srft_megatron.model.provider import te_available

    if not te_available():
        pytest.skip("Transformer Engine not importable")


def _cuda(batch):
    return {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---- megatron-core local spec on CUDA (what a GPU without TE runs) ---------------------------------
def test_local_spec_bf16_packed_equals_one_by_one_on_cuda(cuda_world):
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model
    from srft_megatron.training.data import block_causal_mask

    shape = get_shape("tiny")
    model = build_gpt_model(shape, precision="bf16", use_te=False, init_method_std=CONTEXT_INIT_STD)
    assert next(model.parameters()).is_cuda and not model.config.masked_softmax_fusion

    def forward(leaky):
        def run(batch):
            b = _cuda(batch)
            seg = torch.zeros_like(b["segment_ids"]) if leaky else b["segment_ids"]
            return model(b["tokens"], b["position_ids"], block_causal_mask(seg), labels=b["labels"])
        return run

    store = context_docs(shape.vocab_size)
    packed, alone = packed_and_alone_nll(forward(False), store)
    assert_nll_close(packed, alone, atol=BF16_NLL_ATOL)
    leaky, _ = packed_and_alone_nll(forward(True), store)
    with pytest.raises(AssertionError):
        assert_nll_close(leaky, alone, atol=BF16_NLL_ATOL)


# ---- Transformer Engine ---------------------------------------------------------------------------
def test_te_spec_has_standard_names(te_world):
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model

    model = build_gpt_model(get_shape("tiny"), precision="bf16", use_te=True)
    names = {n for n, _ in model.named_parameters()}
    assert "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight" in names
    assert "decoder.layers.0.mlp.linear_fc1.weight" in names


def test_thd_packed_per_token_nll_equals_one_by_one(te_world):
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model
    from srft_megatron.training.data import packed_seq_params

    shape = get_shape("tiny")
    model = build_gpt_model(shape, precision="bf16", use_te=True, init_method_std=CONTEXT_INIT_STD)

    def forward(thd):
        def run(batch):
            b = _cuda(batch)
            kwargs = {"packed_seq_params": packed_seq_params(b["segment_ids"])} if thd else {}
            return model(b["tokens"], b["position_ids"], None, labels=b["labels"], **kwargs)
        return run

    store = context_docs(shape.vocab_size)
    packed, alone = packed_and_alone_nll(forward(True), store)
    assert_nll_close(packed, alone, atol=BF16_NLL_ATOL)
    # Negative control: the same packed sequence without cu_seqlens is one causal sequence.
    leaky, _ = packed_and_alone_nll(forward(False), store)
    with pytest.raises(AssertionError):
        assert_nll_close(leaky, alone, atol=BF16_NLL_ATOL)


def test_thd_trimmed_padding_keeps_every_real_token_nll(te_world):
    """What the trainer feeds TE without pipelining (`data.trim_padding`): the packed sequence cut
    after its real tokens (no padding segment) gives each real token the NLL it has alone."""
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model
    from srft_megatron.training.data import packed_seq_params, trim_padding

    shape = get_shape("tiny")
    model = build_gpt_model(shape, precision="bf16", use_te=True, init_method_std=CONTEXT_INIT_STD)

    def run(batch):
        b = _cuda(trim_padding(batch, 1))
        assert int(b["segment_ids"].max()) + 1 == len(packed_seq_params(b["segment_ids"]).cu_seqlens_q) - 1
        return model(b["tokens"], b["position_ids"], None, labels=b["labels"],
                     packed_seq_params=packed_seq_params(b["segment_ids"]))

    packed, alone = packed_and_alone_nll(run, context_docs(shape.vocab_size))
    assert torch.isfinite(packed).all()
    assert_nll_close(packed, alone, atol=BF16_NLL_ATOL)


@pytest.mark.parametrize("recipe", ["delayed", "tensorwise"])
def test_fp8_training_lowers_loss(tmp_path, recipe):
    """configs/tiny.yaml as it is (packed, micro-batch 1) with FP8 on TE."""
    from srft_megatron.model.provider import te_available
    from srft_megatron.parallel.dims import destroy
    from srft_megatron.training.config import load_config
    from srft_megatron.training.trainer import Trainer

    if not te_available():
        pytest.skip("Transformer Engine not importable")
    data = make_dataset(tmp_path / "d", n_docs=16)
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{data}]", "model.precision=fp8",
                                    f"model.fp8_recipe={recipe}", "train.steps=30",
                                    "logging.tensorboard=false"])
    try:
        trainer = Trainer(cfg, tmp_path / "run")
        tf = trainer.tf_config
        assert (tf.fp8_amax_history_len, tf.fp8_amax_compute_algo, tf.fp8_margin) == (1024, "max", 0)
        assert trainer.train() == 0
    finally:
        destroy(process_group=True)
    m = read_metrics(tmp_path / "run")
    assert m[-1]["loss"] < m[0]["loss"]


# Trainer runs last: they tear down the process group the module fixture started.
def test_local_spec_bf16_training_lowers_loss_on_cuda(tmp_path):
    from srft_megatron.parallel.dims import destroy
    from srft_megatron.training.config import load_config
    from srft_megatron.training.trainer import Trainer

    data = make_dataset(tmp_path / "d", n_docs=16)
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{data}]", "model.precision=bf16", "model.use_te=false",
                                    "train.steps=30", "logging.tensorboard=false"])
    try:
        assert Trainer(cfg, tmp_path / "run").train() == 0
    finally:
        destroy(process_group=True)
    m = read_metrics(tmp_path / "run")
    assert m[-1]["loss"] < m[0]["loss"] and all(r["tflops_per_gpu"] > 0 for r in m)


def test_context_parallel_2_equals_cp1(tmp_path):
    """Issue 15: the trainer under CP=2 (each packed document padded to a multiple of 4, split
    by megatron-core's `get_batch_on_this_cp_rank`, TE's CP attention) against DP=2 x CP=1 on
    the same global batches from the same weights: per-step loss within 1e-3 (relative) and
    gradient norm within 1%. Tiny model, packed sequences of 2048 tokens (its longest context);
    needs two GPUs and Transformer Engine. Runs last in this module: it tears the process group
    down."""
    import json
    import os
    import subprocess

    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model, te_available
    from srft_megatron.parallel.dims import ParallelDims, destroy, initialize
    from srft_megatron.training.checkpoint import save_model_checkpoint

    from .helpers import ROOT

    if not te_available() or torch.cuda.device_count() < 2:
        pytest.skip("context parallelism needs Transformer Engine and two GPUs")
    shape = get_shape("tiny")
    initialize(ParallelDims(), seed=11)
    try:
        init = save_model_checkpoint([build_gpt_model(shape, precision="fp32", use_te=True)], tmp_path / "init",
                                     shape=shape)
    finally:
        destroy(process_group=True)
    data = make_dataset(tmp_path / "d", n_docs=48, min_len=100, max_len=900, seed=5)
    common = [f"data.prefixes=[{data}]", f"train.init_from={init}", "model.seq_length=2048", "train.steps=3",
              "train.global_batch_size=4", "train.micro_batch_size=1", "model.precision=bf16",
              "logging.tensorboard=false", "checkpoint.save_on_exit=false"]
    runs = {"cp1": [], "cp2": ["parallel.context=2"]}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"config": str(TINY_CONFIG), "runs": [
        {"run_dir": str(tmp_path / name), "overrides": common + extra} for name, extra in runs.items()]}))
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "training" / "dist_worker.py"), str(spec)],
                          cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    base, cp = read_metrics(tmp_path / "cp1"), read_metrics(tmp_path / "cp2")
    assert len(base) == len(cp) == 3
    for a, b in zip(base, cp):
        assert a["weighted_tokens"] == pytest.approx(b["weighted_tokens"])
        assert abs(a["loss"] - b["loss"]) <= 1e-3 * abs(a["loss"]), (a, b)
        assert abs(a["grad_norm"] - b["grad_norm"]) <= 0.01 * abs(a["grad_norm"]), (a, b)
