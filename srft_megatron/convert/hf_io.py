"""Hugging Face side of the conversion: read a Qwen2 directory lazily, write one by streaming.

A 32B model is ~65 GB in bf16, so neither direction may hold the whole model: the reader
opens each safetensors shard with `safe_open` and returns one tensor at a time; the writer
buffers tensors only until a shard is full (default 5 GB, like `save_pretrained`), writes
`model-0000k-of-0000n.safetensors` plus `model.safetensors.index.json`, and the whole
directory appears at its final path only when complete (staged beside it, then renamed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from srft_megatron.errors import InputError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
DEFAULT_SHARD_BYTES = 5 * 1024**3
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja")


def read_hf_config(hf_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a Qwen2ForCausalLM directory; anything else is a one-line InputError."""
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise InputError("no config.json (not a Hugging Face model directory)", file=str(hf_dir))
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    model_type = config.get("model_type")
    archs = config.get("architectures") or []
    if model_type != "qwen2" or (archs and "Qwen2ForCausalLM" not in archs):
        raise InputError(f"not a Qwen2 model (model_type={model_type!r}, architectures={archs}); "
                         "only Qwen2ForCausalLM (Qwen2/Qwen2.5) is supported", file=str(path))
    return config


class HFCheckpointReader:
    """Name -> tensor access to the safetensors of an HF directory, one tensor at a time."""

    def __init__(self, hf_dir: str | os.PathLike):
        self.dir = Path(hf_dir)
        index = self.dir / INDEX_NAME
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (self.dir / SINGLE_NAME).is_file():
            with safe_open(self.dir / SINGLE_NAME, framework="pt") as f:
                weight_map = {name: SINGLE_NAME for name in f.keys()}
        else:
            raise InputError(f"no {INDEX_NAME} or {SINGLE_NAME}", file=str(self.dir))
        self.weight_map: dict[str, str] = weight_map
        self._open: dict[str, Any] = {}
        self._stack = contextlib.ExitStack()

    def names(self) -> list[str]:
        return list(self.weight_map)

    def __contains__(self, name: str) -> bool:
        return name in self.weight_map

    def require(self, names: list[str]) -> None:
        """Fail before writing anything if a tensor the model needs is absent."""
        missing = [n for n in names if n not in self.weight_map]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(f"missing tensor {missing[0]!r}{more}", file=str(self.dir))

    def _handle(self, name: str):
        shard = self.weight_map.get(name)
        if shard is None:
            raise InputError(f"missing tensor {name!r}", file=str(self.dir))
        handle = self._open.get(shard)
        if handle is None:
            handle = self._stack.enter_context(safe_open(self.dir / shard, framework="pt"))
            self._open[shard] = handle
        return handle

    def get(self, name: str) -> torch.Tensor:
        return self._handle(name).get_tensor(name)

    def shape(self, name: str) -> list[int]:
        return list(self._handle(name).get_slice(name).get_shape())

    def close(self) -> None:
        self._stack.close()
        self._open.clear()

    def __enter__(self) -> "HFCheckpointReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ShardedSafetensorsWriter:
    """Streams tensors into size-bounded safetensors shards and writes the index at `close()`."""

    def __init__(self, out_dir: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.dir = Path(out_dir)
        self.max_shard_bytes = max_shard_bytes
        self._buffer: dict[str, torch.Tensor] = {}
        self._buffer_bytes = 0
        self._shards: list[list[str]] = []   # tensor names per written shard
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._buffer or any(name in s for s in self._shards):
            raise ValueError(f"tensor {name} written twice")
        nbytes = tensor.numel() * tensor.element_size()
        if self._buffer and self._buffer_bytes + nbytes > self.max_shard_bytes:
            self._flush()
        self._buffer[name] = tensor.detach().contiguous().cpu()
        self._buffer_bytes += nbytes
        self.total_bytes += nbytes

    def _flush(self) -> None:
        if not self._buffer:
            return
        number = len(self._shards) + 1
        save_file(self._buffer, str(self.dir / f".shard-{number:05d}.safetensors"), metadata={"format": "pt"})
        self._shards.append(list(self._buffer))
        self._buffer, self._buffer_bytes = {}, 0

    def close(self) -> dict[str, str]:
        """Name the shards k-of-n, write the index; returns the weight map."""
        self._flush()
        n = len(self._shards)
        weight_map: dict[str, str] = {}
        for k, names in enumerate(self._shards, start=1):
            final = f"model-{k:05d}-of-{n:05d}.safetensors"
            os.replace(self.dir / f".shard-{k:05d}.safetensors", self.dir / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        return weight_map


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside `final`; it becomes `final` only on success.

    An existing non-empty `final` is an error unless `overwrite` (then it is replaced only
    after the new one is complete), so a failed conversion never leaves half a model."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise InputError("output exists and is not empty (pass --overwrite to replace it)", file=str(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield stage
        trash = None
        if final.exists():
            trash = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, trash)
        os.replace(stage, final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_generation_config(out_dir: Path, config: dict[str, Any]) -> None:
    """generation_config.json with the Qwen2.5-Instruct stop tokens (eos = <|im_end|>, <|endoftext|>)."""
    from transformers import GenerationConfig

    eos = config.get("eos_token_id", 151645)
    eos_ids = eos if isinstance(eos, list) else [eos]
    if 151643 not in eos_ids and config.get("vocab_size", 0) > 151643:
        eos_ids = [*eos_ids, 151643]
    gen = GenerationConfig(bos_token_id=config.get("bos_token_id", 151643), eos_token_id=eos_ids,
                           pad_token_id=151643 if config.get("vocab_size", 0) > 151643 else None,
                           do_sample=False)
    gen.save_pretrained(str(out_dir))


def write_tokenizer(out_dir: Path, tokenizer_source: str | os.PathLike) -> None:
    """Tokenizer files of `tokenizer_source`: an HF directory (files copied as they are) or a
    name known to `srft_megatron.load_tokenizer` (e.g. "qwen2.5", saved with save_pretrained)."""
    src = Path(tokenizer_source)
    if src.is_dir():
        copied = [name for name in TOKENIZER_FILES if (src / name).is_file()]
        if "tokenizer.json" not in copied and "vocab.json" not in copied:
            raise InputError("no tokenizer files (tokenizer.json or vocab.json)", file=str(src))
        for name in copied:
            shutil.copy2(src / name, out_dir / name)
        return
    from srft_megatron import load_tokenizer

    load_tokenizer(str(tokenizer_source)).save_pretrained(str(out_dir))
