"""Bad configs fail with a one-line error before any process group starts (exit code 2)."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from srft_megatron import cli
from srft_megatron.errors import ConfigError
from srft_megatron.model.configs import QWEN2_SHAPES, Qwen2Shape, get_shape
from srft_megatron.training.config import load_config
from srft_megatron.training.preflight import validate

from .helpers import TINY_CONFIG, make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("cfgdata") / "d", n_docs=4)


def _run(args, capsys):
    code = cli.main(["train", "--config", str(TINY_CONFIG), "--run-dir", "/nonexistent/run", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("override, message", [
    ("parallel.tensor=3", "parallel.tensor=3 does not divide num_attention_heads=4"),
    ("model.seq_length=4096", "model.seq_length=4096 exceeds tiny's max_position_embeddings=2048"),
    ("parallel.pipeline=4", "num_layers=2 is not divisible by pipeline x virtual stages = 4"),
    ("train.global_batch_size=3", "train.global_batch_size=3 is not divisible"),
    ("model.precision=fp16", "model.precision must be one of"),
    ("train.stepz=3", "unknown key train.stepz"),
])
def test_bad_config_is_one_clear_line(dataset, capsys, override, message, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "12")  # as under torchrun: 12 divides by 3 and 4
    code, err = _run([f"data.prefixes=[{dataset}]", override], capsys)
    assert code == 2
    assert len(err) == 1 and message in err[0], err
    assert not dist.is_initialized()


def test_missing_dataset(tmp_path, capsys):
    code, err = _run([f"data.prefixes=[{tmp_path}/nope]"], capsys)
    assert code == 2 and len(err) == 1
    assert "data.prefixes" in err[0] and f"{tmp_path}/nope" in err[0]
    assert not dist.is_initialized()


def test_world_size_must_match_layout(dataset, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{dataset}]", "parallel.tensor=2"])
    with pytest.raises(ConfigError, match="world size 3 is not divisible by tensor x pipeline = 2 x 1"):
        validate(cfg, 3)


def test_overrides_types_and_lists(dataset):
    cfg = load_config(TINY_CONFIG, [f"data.prefixes=[{dataset},{dataset}]", "data.weights=[0.3,0.7]",
                                    "optimizer.lr=1e-4", "train.steps=7"])
    assert cfg.data.prefixes == [str(dataset)] * 2 and cfg.data.weights == [0.3, 0.7]
    assert cfg.optimizer.lr == 1e-4 and cfg.train.steps == 7
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        load_config(TINY_CONFIG, ["train.steps=abc"])


def test_hf_config_round_trip_and_param_counts():
    # Published totals: 0.49B, 1.54B, 3.09B, 7.62B, 14.7B, 32.8B parameters.
    expected = {"qwen2.5-0.5b": 0.494, "qwen2.5-1.5b": 1.544, "qwen2.5-3b": 3.086,
                "qwen2.5-7b": 7.616, "qwen2.5-14b": 14.770, "qwen2.5-32b": 32.764,
                "qwen2.5-coder-32b-instruct": 32.764}
    for name, billions in expected.items():
        shape = QWEN2_SHAPES[name]
        assert round(shape.num_parameters() / 1e9, 3) == billions, name
        back = Qwen2Shape.from_hf_config(shape.to_hf_config(), seq_length=shape.seq_length)
        assert back == shape
    with pytest.raises(ConfigError, match="unknown model"):
        get_shape("qwen9-1t")


@pytest.mark.parametrize("row", ["naive", "rft", "srft", "unresolved-only", "unresolved-masked"])
def test_paper_row_configs_are_valid_at_32_gpus(row):
    cfg = load_config(TINY_CONFIG.parent / f"qwen2.5-coder-32b-{row}.yaml")
    with pytest.raises(ConfigError, match="sequence_parallel=true needs Transformer Engine"):
        validate(cfg, 32, check_data=False)  # TE checks run before any process group, not after
    cfg.model.use_te = True  # checked as for the GPU machines it is written for
    shape, dims = validate(cfg, 32, check_data=False)
    assert (dims.tp, dims.pp, dims.dp) == (8, 4, 1)
    assert shape.num_layers == 64 and cfg.data.prefixes == [f"data/{row}"]


def test_7b_config_used_by_the_experiment_matrix():
    cfg = load_config(TINY_CONFIG.parent / "qwen2.5-7b.yaml", ["data.prefixes=[data/rft]", "model.use_te=true"])
    shape, dims = validate(cfg, 8, check_data=False)
    assert (dims.tp, dims.pp, dims.dp) == (4, 1, 2) and shape.hidden_size == 3584


def test_rope_base_is_read_from_transformers_5_rope_parameters():
    """transformers 5 writes the RoPE base under `rope_parameters`; it must not fall back to 1e6."""
    from transformers import Qwen2Config

    from srft_megatron.model.configs import Qwen2Shape

    cfg = Qwen2Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                      num_hidden_layers=2, vocab_size=512, rope_theta=12345.0).to_dict()
    assert Qwen2Shape.from_hf_config(cfg).rotary_base == 12345.0
    assert Qwen2Shape.from_hf_config({**cfg, "rope_parameters": None, "rope_theta": 500.0}).rotary_base == 500.0


@pytest.mark.parametrize("overrides, message", [
    (["model.use_te=false", "model.precision=fp8"], "model.precision=fp8 needs Transformer Engine"),
    (["model.use_te=false", "parallel.tensor=2", "parallel.sequence_parallel=true"],
     "sequence_parallel=true needs Transformer Engine"),
    (["model.use_te=true", "train.micro_batch_size=2"], "THD sequences on Transformer Engine need train.micro_batch_size=1"),
    (["model.use_te=true", "parallel.context=2", "model.seq_length=130"], "multiple of 2 x parallel.context = 4"),
])
def test_transformer_engine_needs_are_checked_before_process_groups(overrides, message):
    """validate() is the one check (issue 16): what once failed only after the process groups
    started (sequence parallelism and THD without TE / with micro-batches of two) fails here."""
    cfg = load_config(TINY_CONFIG, overrides)
    with pytest.raises(ConfigError, match=message):
        validate(cfg, 2, check_data=False)
    assert not dist.is_initialized()


def test_build_methods_make_the_megatron_objects():
    """The config sections build megatron-core's objects (OLMo-core's `XConfig.build()`)."""
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig as MegatronOptimizerConfig

    cfg = load_config(TINY_CONFIG, ["model.use_te=false", "model.precision=bf16", "parallel.tensor=2",
                                    "optimizer.lr=3e-4", "optimizer.clip_grad=0.5"])
    shape, dims = validate(cfg, 4, check_data=False)
    tf = cfg.model.build(shape, cfg.parallel)
    assert (tf.tensor_model_parallel_size, tf.context_parallel_size, tf.num_layers) == (2, 1, shape.num_layers)
    assert tf.calculate_per_token_loss and tf.bf16
    ddp = cfg.parallel.build_ddp_config()
    assert isinstance(ddp, DistributedDataParallelConfig) and ddp.grad_reduce_in_fp32
    assert ddp.use_distributed_optimizer == cfg.parallel.distributed_optimizer
    opt = cfg.optimizer.build(precision="bf16", distributed_optimizer=True)
    assert isinstance(opt, MegatronOptimizerConfig)
    assert (opt.lr, opt.clip_grad, opt.bf16, opt.loss_scale) == (3e-4, 0.5, True, 1.0)


def test_shipped_configs_load_by_name_dots_included():
    """`srft train --config qwen2.5-coder-32b-srft-128k` (a dot in the name is not a file suffix)."""
    from srft_megatron.training.config import resolve_config, shipped_configs

    for name in ("tiny", "qwen2.5-7b", "qwen2.5-coder-32b-srft-128k"):
        assert name in shipped_configs() and resolve_config(name).name == f"{name}.yaml"
    with pytest.raises(ConfigError, match="config file qwen2.5-nope not found"):
        resolve_config("qwen2.5-nope")
