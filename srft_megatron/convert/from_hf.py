"""HF `Qwen2ForCausalLM` directory -> megatron-core distributed checkpoint.

    srft convert from-hf --hf Qwen2.5-Coder-32B-Instruct --output ckpt/init --tp 8 --pp 2
    torchrun --nproc-per-node 16 -m srft_megatron.cli convert from-hf --hf ... --tp 8 --pp 2
    (under torchrun: one process per GPU as in training, or CUDA_VISIBLE_DEVICES= for CPU/gloo)

Every rank builds the trainer's model for its TP/PP shard, fills it from the safetensors
(lazily, only the tensors it needs) and all ranks write one dist checkpoint together, which
megatron-core reshards on load (any TP/PP). Outside torchrun with TP x PP > 1 the command
starts that many local gloo processes itself, on the CPU. Everything that can be wrong with the input
(not Qwen2, TP not dividing the heads, a missing tensor) is checked before anything is
written, and the checkpoint appears at `--output` only once complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from srft_megatron.convert.hf_io import HFCheckpointReader, read_hf_config
from srft_megatron.convert.mapping import expected_hf_names, expected_hf_shape
from srft_megatron.convert.megatron_io import attention_dims, fill_from_hf
from srft_megatron.errors import ConfigError, InputError
from srft_megatron.ports import free_port

DTYPES = {"float32": "fp32", "fp32": "fp32", "bfloat16": "bf16", "bf16": "bf16"}


def normalised_hf_config(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Check the Qwen2 features we convert, and flatten transformers-5 `rope_parameters`
    into `rope_theta` (what `Qwen2Shape.from_hf_config` and the published configs use).

    YaRN (`rope_parameters.rope_type` or `rope_scaling.type` "yarn") is kept, and also written
    as `rope_scaling`, the key Qwen documents and vLLM reads, so to-hf gives it back."""
    from srft_megatron.model.configs import YarnScaling, rope_type

    config = dict(config)
    rope = config.get("rope_parameters") or {}
    kind = rope_type(config)
    if kind not in ("default", "yarn"):
        raise InputError(f"rope type {kind!r} is not supported (default RoPE or yarn)", file=source)
    if kind == "yarn" and not config.get("rope_scaling"):
        try:
            config["rope_scaling"] = YarnScaling.from_hf(rope).to_hf()
        except ConfigError as exc:
            raise InputError(str(exc), file=source) from None
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    if config.get("use_sliding_window"):
        raise InputError("sliding-window attention is not supported by the Megatron model", file=source)
    if config.get("hidden_act", "silu") != "silu":
        raise InputError(f"hidden_act={config['hidden_act']!r}; Qwen2 uses silu", file=source)
    return config


def shape_from_hf(config: dict[str, Any], source: str):
    from srft_megatron.model.configs import Qwen2Shape

    try:
        return Qwen2Shape.from_hf_config(normalised_hf_config(config, source))
    except ConfigError as exc:
        raise InputError(str(exc), file=source) from None


def default_precision(config: dict[str, Any]) -> str:
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return DTYPES.get(dtype, "bf16")


def check_inputs(hf_dir: str, tp: int, pp: int):
    """Everything that can fail about the input, before any process group or file exists.

    Returns (config, shape)."""
    from srft_megatron.parallel.dims import ParallelDims

    config = read_hf_config(hf_dir)
    source = str(Path(hf_dir) / "config.json")
    shape = shape_from_hf(config, source)
    try:
        ParallelDims(tp=tp, pp=pp).validate_model(
            num_layers=shape.num_layers, num_attention_heads=shape.num_attention_heads,
            num_query_groups=shape.num_query_groups, vocab_size=shape.vocab_size)
    except ConfigError as exc:
        raise InputError(str(exc), file=source) from None
    dims = attention_dims(shape)
    with HFCheckpointReader(hf_dir) as reader:
        names = expected_hf_names(shape.num_layers, tied=shape.tie_word_embeddings)
        reader.require(names)
        for name in names:  # shapes from the safetensors headers, no data read
            want, got = expected_hf_shape(name, dims, shape.ffn_hidden_size), tuple(reader.shape(name))
            if got != want:
                raise InputError(f"tensor {name!r} has shape {got}, config.json implies {want}", file=hf_dir)
    return config, shape


def build_stage_model(shape, dims, precision: str, use_te: bool | None = None):
    """This rank's GPTModel (its PP stage and TP shard), uninitialised: every weight is filled."""
    from megatron.core import parallel_state as ps

    from srft_megatron.model.provider import build_gpt_model

    return build_gpt_model(shape, pre_process=ps.is_pipeline_first_stage(),
                           post_process=ps.is_pipeline_last_stage(), precision=precision,
                           use_te=use_te, tp=dims.tp, pp=dims.pp, perform_initialization=False)


def _check_output(output: str, overwrite: bool) -> None:
    final = Path(output)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise InputError("output exists and is not empty (pass --overwrite to replace it)", file=str(final))


def _rank_main(hf_dir: str, output: str, tp: int, pp: int, precision: str | None, overwrite: bool) -> None:
    """Body run by every rank (inside torchrun or a spawned local process)."""
    import torch.distributed as dist
    from tqdm import tqdm

    from srft_megatron.parallel.dims import ParallelDims, initialize, world_from_env
    from srft_megatron.training.checkpoint import save_model_checkpoint

    config, shape = check_inputs(hf_dir, tp, pp)
    _check_output(output, overwrite)
    precision = precision or default_precision(config)
    try:  # extra processes (world > tp x pp) are data-parallel replicas: megatron saves one copy
        dims = ParallelDims.from_world(world_from_env()[1], tp=tp, pp=pp)
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    initialize(dims)
    model = build_stage_model(shape, dims, precision)
    with HFCheckpointReader(hf_dir) as reader, \
            tqdm(desc="from-hf tensors", unit="tensor", disable=dist.get_rank() != 0) as bar:
        fill_from_hf(model.sharded_state_dict(), reader.get, attention_dims(shape), progress=bar.update)
    # The trainer's own writer (staged, renamed into place when every rank is done), with the
    # source config (normalised) as the recorded hf_config so to-hf restores it as it was.
    hf_config = normalised_hf_config(config, hf_dir)
    save_model_checkpoint([model], output, shape=shape,
                          extra={"hf_config": hf_config, "converted_from": str(Path(hf_dir).resolve()),
                                 "precision": precision})


def _spawned(local_rank: int, world: int, port: int, args: tuple) -> None:
    # Local processes convert on the CPU (gloo): conversion is memory copies, and tp x pp
    # processes need not match the number of GPUs of this machine.
    os.environ.update(CUDA_VISIBLE_DEVICES="", RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from srft_megatron.parallel.cpu_compat import enable_cpu_compat

    enable_cpu_compat()  # these processes see no GPU: megatron-core on the CPU
    _rank_main(*args)


def convert_hf_to_megatron(hf_dir: str, output: str, tp: int = 1, pp: int = 1,
                           precision: str | None = None, overwrite: bool = False) -> None:
    """Entry point: validates, then runs on this torchrun world or spawns tp x pp processes."""
    check_inputs(hf_dir, tp, pp)
    _check_output(output, overwrite)
    if precision is not None and precision not in DTYPES.values():
        raise InputError(f"precision must be fp32 or bf16, got {precision!r}")
    if "WORLD_SIZE" in os.environ or tp * pp == 1:
        _rank_main(hf_dir, output, tp, pp, precision, overwrite)
        return
    import torch.multiprocessing as mp

    world = tp * pp
    mp.start_processes(_spawned, args=(world, free_port(), (hf_dir, output, tp, pp, precision, overwrite)),
                       nprocs=world, start_method="spawn")
