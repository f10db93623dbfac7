"""megatron-core distributed checkpoint (any TP/PP) -> HF `Qwen2ForCausalLM` directory.

    srft convert to-hf --checkpoint ckpt/iter_0001000 --output hf/srft-32b [--tokenizer DIR]

One process, no model: the checkpoint is read one decoder layer at a time and streamed into
5 GB safetensors shards, so a 32B model needs a few GB of memory. The output directory
(config.json, model-*.safetensors + index, generation_config.json, tokenizer files) is what
`transformers.AutoModelForCausalLM.from_pretrained` and vLLM load; it appears only once
complete.

Before anything is read the checkpoint's checksums are verified (a partial, truncated or
corrupted checkpoint is one line naming the file, exit 2), and every tensor is checked to be
finite as it streams: NaN or Inf weights are never exported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from srft_megatron.convert.from_hf import shape_from_hf
from srft_megatron.convert.hf_io import (DEFAULT_SHARD_BYTES, ShardedSafetensorsWriter, staged_directory,
                                         write_generation_config, write_tokenizer)
from srft_megatron.convert.megatron_io import CheckpointTensors, attention_dims, iter_hf_tensors
from srft_megatron.convert.mapping import expected_hf_names
from srft_megatron.errors import InputError

OUT_DTYPES = {"auto": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
              "float16": torch.float16, "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
_DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def source_hf_dir(ckpt_dir: str) -> Path | None:
    """The HF directory a from-hf checkpoint was converted from, if it still exists."""
    from srft_megatron.errors import ConfigError
    from srft_megatron.training.checkpoint import read_marker

    try:
        source = read_marker(ckpt_dir).get("converted_from")
    except ConfigError:
        return None
    return Path(source) if source and Path(source).is_dir() else None


def checkpoint_hf_config(ckpt_dir: str, model: str | None = None) -> dict[str, Any]:
    """The HF config of a checkpoint: `model` (a QWEN2_SHAPES name or HF config path) if
    given, else the `hf_config` that from-hf or the trainer recorded in its marker file."""
    from srft_megatron.errors import ConfigError
    from srft_megatron.training.checkpoint import MARKER, read_marker

    try:
        if model is not None:
            from srft_megatron.model.configs import get_shape

            return get_shape(model).to_hf_config()
        recorded = read_marker(ckpt_dir).get("hf_config")
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    if not recorded:
        raise InputError(f"{MARKER} records no hf_config; pass --model NAME or a config.json", file=str(ckpt_dir))
    return dict(recorded)


def convert_megatron_to_hf(ckpt_dir: str, output: str, *, tokenizer: str | None = "auto",
                           model: str | None = None, dtype: str = "auto",
                           max_shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False,
                           progress: bool = True) -> Path:
    """Write the HF directory; returns its path.

    `tokenizer`: an HF directory or a name for `load_tokenizer`; "auto" takes the tokenizer
    files (and generation_config.json) of the HF directory the checkpoint was converted from
    when it is still there, else the offline "qwen2.5" tokenizer; None writes none."""

    if dtype not in OUT_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(OUT_DTYPES)}, got {dtype!r}")
    if not Path(ckpt_dir).is_dir():
        raise InputError("checkpoint directory not found", file=str(ckpt_dir))
    from srft_megatron.training.integrity import describe, verify_checkpoint

    # CheckpointError (exit 2) naming the bad file; a checkpoint from elsewhere (no marker) is read as is
    report = verify_checkpoint(ckpt_dir, require_marker=False)
    ckpt = CheckpointTensors(ckpt_dir)
    print(f"checkpoint {ckpt_dir}: {describe(report)}", flush=True)
    config = checkpoint_hf_config(ckpt_dir, model)
    shape = shape_from_hf(config, f"{ckpt_dir} (model config)")
    layers = ckpt.num_layers()
    if layers != shape.num_layers:
        raise InputError(f"checkpoint has {layers} layers, model config says {shape.num_layers}", file=str(ckpt_dir))
    tied = not ckpt.has("output_layer.weight")
    if tied != shape.tie_word_embeddings:
        raise InputError(f"checkpoint {'has no' if tied else 'has an'} output layer but the config says "
                         f"tie_word_embeddings={shape.tie_word_embeddings}", file=str(ckpt_dir))
    dims = attention_dims(shape, megatron_vocab_size=ckpt.vocab_rows())
    out_dtype = OUT_DTYPES[dtype] or ckpt.dtype()
    # `dtype` for transformers >= 5, `torch_dtype` for older readers (vLLM's pinned transformers)
    dtype_name = _DTYPE_NAMES.get(out_dtype, "bfloat16")
    config.update(dtype=dtype_name, torch_dtype=dtype_name, architectures=["Qwen2ForCausalLM"])
    names = expected_hf_names(shape.num_layers, tied=tied)
    with staged_directory(output, overwrite=overwrite) as stage:
        writer = ShardedSafetensorsWriter(stage, max_shard_bytes)
        bar = tqdm(total=len(names), desc="to-hf tensors", unit="tensor", disable=not progress)
        for name, tensor in iter_hf_tensors(ckpt, dims, shape.num_layers, tied):
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                raise InputError(f"tensor {name} has {int((~finite).sum())} non-finite values (NaN/Inf); "
                                 "refusing to export it", file=str(ckpt_dir))
            writer.add(name, tensor.to(out_dtype))
            bar.update(1)
        bar.close()
        written = writer.close()
        if sorted(written) != sorted(names):  # the table and the writer disagree: never ship that
            raise RuntimeError(f"wrote {len(written)} tensors, expected {len(names)}")
        (stage / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        source = source_hf_dir(ckpt_dir) if tokenizer == "auto" else None
        if source is not None and (source / "generation_config.json").is_file():
            shutil.copy2(source / "generation_config.json", stage / "generation_config.json")
        else:
            write_generation_config(stage, config)
        if tokenizer == "auto":
            has_files = source is not None and any((source / n).is_file() for n in ("tokenizer.json", "vocab.json"))
            tokenizer = str(source) if has_files else "qwen2.5"
        if tokenizer is not None:
            write_tokenizer(stage, tokenizer)
    return Path(output)

