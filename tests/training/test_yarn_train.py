"""A YaRN model trains: the trainer builds megatron-core's YaRN rotary embedding for a shape
with `rope_scaling` and the loss goes down (CPU, local spec; and `gpu`: TE spec, bf16)."""

from __future__ import annotations

import pytest

from .helpers import TINY_CONFIG, make_dataset, read_metrics

pytestmark = pytest.mark.usefixtures("cpu_shim")  # megatron-core in this process (conftest)


def _train_yarn(tmp_path, extra):
    from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import YarnRotaryEmbedding

    from srft_megatron.parallel.dims import destroy
    from srft_megatron.training.config import load_config
    from srft_megatron.training.trainer import Trainer

    data = make_dataset(tmp_path / "d", n_docs=16, max_len=120)
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{data}]", "model.name=tiny-yarn", "model.seq_length=256",
                                    "train.steps=12", "train.global_batch_size=4", "logging.tensorboard=false",
                                    "checkpoint.save_on_exit=false", *extra])
    try:
        trainer = Trainer(cfg, tmp_path / "run")
        rotary = trainer.model[0].module.rotary_pos_emb
        assert isinstance(rotary, YarnRotaryEmbedding) and rotary.scaling_factor == 4.0
        assert trainer.tf_config.yarn_original_max_position_embeddings == 512
        assert trainer.train() == 0
    finally:
        destroy(process_group=True)
    return read_metrics(tmp_path / "run")


def test_yarn_model_trains_on_cpu(tmp_path):
    m = _train_yarn(tmp_path, [])
    assert m[-1]["loss"] < m[0]["loss"] - 0.1, [r["loss"] for r in m]


@pytest.mark.gpu
def test_yarn_model_trains_on_te_bf16(tmp_path):
    from srft_megatron.model.provider import te_available

    if not te_available():
        pytest.skip("Transformer Engine not importable")
    m = _train_yarn(tmp_path, ["model.precision=bf16"])
    assert m[-1]["loss"] < m[0]["loss"] - 0.1, [r["loss"] for r in m]
