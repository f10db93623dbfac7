"""GPU-only paths: Transformer Engine layer spec, FP8 (delayed and current scaling), THD packing.

Skipped on CPU (conftest marks `gpu` tests skipped without CUDA). They use the same checks as
the CPU tests: packed THD loss equals the documents run one by one, and FP8 training runs and
lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def te_world():
    from srft_megatron.model.provider import te_available
    from srft_megatron.parallel.dims import ParallelDims, destroy, initialize

    if not te_available():
        pytest.skip("Transformer Engine not importable")
    initialize(ParallelDims(), seed=3)
    yield
    destroy(process_group=True)


def test_te_spec_has_standard_names(te_world):
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model

    model = build_gpt_model(get_shape("tiny"), precision="bf16", use_te=True)
    names = {n for n, _ in model.named_parameters()}
    assert "decoder.layers.0.self_attention.linear_qkv.layer_norm_weight" in names
    assert "decoder.layers.0.mlp.linear_fc1.weight" in names


class _Docs:
    def __init__(self, docs):
        self.docs = docs

    def document(self, i):
        return self.docs[i]


def test_thd_packed_loss_equals_documents_one_by_one(te_world):
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import build_gpt_model
    from srft_megatron.training.data import assemble_sample, collate, packed_seq_params

    shape = get_shape("tiny")
    model = build_gpt_model(shape, precision="bf16", use_te=True)
    rng = np.random.RandomState(0)
    docs = [(rng.randint(1, shape.vocab_size, n).astype(np.int32), rng.rand(n).astype(np.float32))
            for n in (33, 17, 65, 9)]
    store = _Docs(docs)
    packed = collate([assemble_sample(store, [0, 1, 2, 3], 128)])
    cuda = lambda t: t.cuda()  # noqa: E731
    out = model(cuda(packed["tokens"]), cuda(packed["position_ids"]), None, labels=cuda(packed["labels"]),
                packed_seq_params=packed_seq_params(cuda(packed["segment_ids"])))
    packed_sum = float((out.float() * cuda(packed["loss_weights"])).sum())
    alone = 0.0
    for i, (tok, _) in enumerate(docs):
        one = collate([assemble_sample(store, [i], len(tok) - 1)])
        o = model(cuda(one["tokens"]), cuda(one["position_ids"]), None, labels=cuda(one["labels"]))
        alone += float((o.float() * cuda(one["loss_weights"])).sum())
    assert packed_sum == pytest.approx(alone, rel=2e-2)  # bf16 kernels differ by layout


@pytest.mark.parametrize("recipe", ["delayed", "tensorwise"])
def test_fp8_training_lowers_loss(tmp_path, recipe):
    from srft_megatron.model.provider import te_available
    from srft_megatron.parallel.dims import destroy
    from srft_megatron.training.config import load_config
    from srft_megatron.training.trainer import Trainer

    from .helpers import TINY_CONFIG, make_dataset, read_metrics

    if not te_available():
        pytest.skip("Transformer Engine not importable")
    data = make_dataset(tmp_path / "d", n_docs=16)
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{data}]", "model.precision=fp8",
                                    f"model.fp8_recipe={recipe}", "train.steps=30",
                                    "train.micro_batch_size=1", "logging.tensorboard=false"])
    try:
        assert Trainer(cfg, tmp_path / "run").train() == 0
    finally:
        destroy(process_group=True)
    m = read_metrics(tmp_path / "run")
    assert m[-1]["loss"] < m[0]["loss"]
