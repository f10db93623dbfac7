"""`srft plan`: exact parameter counts and static memory against the real libraries.

The parameter count of every shipped shape is compared with a transformers `Qwen2ForCausalLM`
built from the same config on the meta device; the static memory of tiny layouts with the bytes
megatron-core allocates on CPU (one 2-process torchrun, several layouts: `plan_worker.py`)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from srft_megatron.errors import ConfigError
from srft_megatron.model.configs import QWEN2_SHAPES, get_shape
from srft_megatron.plan import (activation_bytes, check_fits, layer_activation_bytes, plan, stage_param_numels,
                                static_memory)

from .helpers import ROOT, TINY_CONFIG, make_dataset


@pytest.mark.parametrize("name", sorted(QWEN2_SHAPES))
def test_parameter_count_matches_transformers(name):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shape = QWEN2_SHAPES[name]
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**shape.to_hf_config()))
    assert shape.num_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["qwen2.5-coder-32b-instruct", "qwen2.5-0.5b", "tiny-untied"])
@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 2), (2, 4)])
def test_rank_shards_add_up_to_the_model(name, tp, pp):
    shape = QWEN2_SHAPES[name]
    total = 0
    for stage in range(pp):
        groups = stage_param_numels(shape, tp=tp, pp=pp, stage=stage)
        total += sum(map(sum, groups.values()))
    tied_copy = shape.vocab_size * shape.hidden_size if shape.tie_word_embeddings and pp > 1 else 0
    norms = 2 * shape.hidden_size * shape.num_layers + shape.hidden_size  # replicated across TP
    assert total * tp - (tp - 1) * norms == shape.num_parameters() + tied_copy


def test_activations_follow_the_paper_for_its_own_model():
    """With MHA, a 4h MLP and the dropout masks put back, our per-layer term is the paper's 34sbh.

    (SwiGLU of width f stores 6sbf + 2sbh where a 4h GeLU stores 16sbh + 2sbh: at f = 8h/3 the
    MLP term is 18sbh, the paper's 19sbh less its mask.)"""
    s, h = 1024, 256
    mha = QWEN2_SHAPES["tiny"].replace(hidden_size=h, num_attention_heads=4, num_query_groups=4, kv_channels=64,
                                       ffn_hidden_size=8 * h // 3)
    per_layer = layer_activation_bytes(mha, seq=s)
    masks = 2 * s * h  # attention-output and MLP-output dropout masks, 1 byte each
    assert per_layer + masks == pytest.approx(34 * s * h, rel=1e-3)
    assert layer_activation_bytes(mha, seq=s, tp=4) == per_layer / 4
    none = activation_bytes(mha, seq_length=s, recompute="none")
    full = activation_bytes(mha, seq_length=s, recompute="full")
    assert full < none
    assert activation_bytes(mha, seq_length=s, cp=2) < none


def test_plan_ranks_layouts_and_refuses_what_cannot_fit():
    shape = get_shape("qwen2.5-coder-32b-instruct")
    result = plan(shape, seq_length=32768, nodes=4, gpus_per_node=8, gpu_memory_gb=80)
    layouts = result["layouts"]
    assert result["parameters"] == shape.num_parameters()
    assert all(l["tp"] * l["pp"] * l["cp"] * l["dp"] == 32 for l in layouts)
    fits = [l["fits"] for l in layouts]
    assert fits == sorted(fits, reverse=True) and any(fits) and not all(fits)
    best = layouts[0]
    assert best["memory_gb"]["total"] <= 80 * 0.9
    with pytest.raises(ConfigError, match="GiB"):
        check_fits(shape, seq_length=32768, tp=1, pp=1, cp=1, dp=32, distributed_optimizer=False,
                   recompute=None, gpu_memory_gb=80, global_batch_size=32)
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        plan(shape, seq_length=131072, nodes=8, gpus_per_node=8, gpu_memory_gb=80)
    odd = plan(shape, seq_length=32760, nodes=4, gpus_per_node=8, gpu_memory_gb=80)["layouts"]
    assert odd and all(32760 % (2 * l["cp"] if l["cp"] > 1 else 1) == 0 and (32760 // l["cp"]) % l["tp"] == 0
                       for l in odd)
    assert {l["cp"] for l in odd} == {1, 2, 4} and {l["tp"] for l in odd} == {1, 2, 4, 8}


LAYOUTS = {  # name: (model, precision, overrides); 2 processes
    "tp2": ("tiny", "fp32", ["parallel.tensor=2"]),
    "tp2-bf16-nodistopt": ("tiny-untied", "bf16", ["parallel.tensor=2", "parallel.distributed_optimizer=false"]),
    "pp2-tied": ("tiny", "fp32", ["parallel.pipeline=2"]),
    "pp2-bf16-untied": ("tiny-untied", "bf16", ["parallel.pipeline=2"]),
    "pp2-nodistopt": ("tiny", "fp32", ["parallel.pipeline=2", "parallel.distributed_optimizer=false"]),
    "dp2": ("tiny", "fp32", []),
    "dp2-bf16": ("tiny-untied", "bf16", []),
    "dp2-nodistopt": ("tiny", "bf16", ["parallel.distributed_optimizer=false"]),
}


def _dims(overrides):
    get = lambda key: int(next((o.split("=")[1] for o in overrides if o.startswith(key)), 1))  # noqa: E731
    tp, pp = get("parallel.tensor="), get("parallel.pipeline=")
    return tp, pp, 2 // (tp * pp), "parallel.distributed_optimizer=false" not in overrides


@pytest.mark.distributed
def test_static_memory_equals_megatron_allocation(tmp_path):
    data = make_dataset(tmp_path / "data" / "synthetic", n_docs=16, max_len=40)
    spec = {"config": str(TINY_CONFIG), "runs": [
        {"name": name, "overrides": [f"data.prefixes=[{data}]", f"model.name={model}",
                                     f"model.precision={precision}", "train.steps=1",
                                     "train.global_batch_size=4", "model.seq_length=64",
                                     "logging.tensorboard=false", "checkpoint.save_on_exit=false", *extra]}
        for name, (model, precision, extra) in LAYOUTS.items()]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc-per-node", "2",
                           str(ROOT / "tests" / "training" / "plan_worker.py"), str(tmp_path / "spec.json"),
                           str(out)], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for name, (model, precision, extra) in LAYOUTS.items():
        tp, pp, dp, distopt = _dims(extra)
        ranks = [json.loads((out / f"{name}.rank{r}.json").read_text()) for r in range(2)]
        shape = get_shape(model)
        for got in ranks:
            want = static_memory(shape, tp=tp, pp=pp, dp=dp, stage=got["pp_rank"], precision=precision,
                                 distributed_optimizer=distopt, use_te=False)
            assert (got["weights"], got["gradients"]) == (want.weights, want.gradients), (name, got, want)
            assert got["optimizer"] <= want.optimizer, (name, got, want)
            if not distopt:
                assert got["optimizer"] == want.optimizer, (name, got, want)
        if distopt and dp == 2:  # the shards of the padded buffers hold exactly the parameters' state
            want = static_memory(shape, dp=dp, precision=precision, use_te=False)
            unsharded = static_memory(shape, precision=precision, distributed_optimizer=False, use_te=False)
            assert sum(r["optimizer"] for r in ranks) == unsharded.optimizer, (name, ranks)
            assert want.weights > unsharded.weights  # the padding is modelled


@pytest.mark.parametrize("length,nodes", [("64k", 4), ("128k", 8)])
def test_long_context_configs_fit_their_nodes(length, nodes):
    """The shipped 64k/128k configs: YaRN shape, a layout `srft plan` says fits 80 GB GPUs, and
    the config check refuses CP on this TE-less machine with a clear error."""
    from srft_megatron.training.config import load_config
    from srft_megatron.training.preflight import validate

    cfg = load_config(TINY_CONFIG.parent / f"qwen2.5-coder-32b-srft-{length}.yaml")
    shape = get_shape(cfg.model.name)
    assert shape.rope_scaling is not None and cfg.model.seq_length <= shape.max_position_embeddings
    p = cfg.parallel
    world = nodes * 8
    layout = check_fits(shape, seq_length=cfg.model.seq_length, tp=p.tensor, pp=p.pipeline, cp=p.context,
                        dp=world // (p.tensor * p.pipeline * p.context),
                        distributed_optimizer=p.distributed_optimizer, recompute=cfg.model.recompute,
                        gpu_memory_gb=80, global_batch_size=cfg.train.global_batch_size)
    assert layout.fits and layout.tp * layout.pp * layout.cp * layout.dp == world
    with pytest.raises(ConfigError, match=f"parallel.context={p.context} needs Transformer Engine"):
        validate(cfg, world, check_data=False)
    cfg.model.use_te = True  # as on the GPU machines it is written for: the CP layout is accepted
    _, dims = validate(cfg, world, check_data=False)
    assert (dims.tp, dims.cp, dims.dp) == (p.tensor, p.context, 1)


def test_cli_json_and_one_line_errors(tmp_path, capsys):
    from srft_megatron.cli import main

    out = tmp_path / "plan.json"
    assert main(["plan", "--model", "qwen2.5-7b", "--seq-length", "32768", "--nodes", "1", "--gpus-per-node", "8",
                 "--gpu-memory-gb", "80", "--json", str(out), "--top", "3"]) == 0
    table = capsys.readouterr().out
    assert "parameters: 7,615,616,512" in table and len(table.splitlines()) == 6
    result = json.loads(out.read_text())
    assert result["parameters"] == get_shape("qwen2.5-7b").num_parameters()
    row = result["layouts"][0]
    assert {"tp", "pp", "cp", "dp", "recompute", "memory_gb", "fits", "tokens_per_s"} <= set(row)
    assert set(row["memory_gb"]) == {"weights", "gradients", "optimizer", "activations", "total"}
    assert main(["plan", "--model", "qwen2.5-coder-32b-instruct", "--seq-length", "131072", "--nodes", "8",
                 "--gpus-per-node", "8", "--gpu-memory-gb", "80"]) == 2
    err = capsys.readouterr().err.strip()
    assert "exceeds max_position_embeddings" in err and "\n" not in err
