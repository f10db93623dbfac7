"""Megatron side of the conversion: fill a GPTModel from HF tensors, and stream a dist checkpoint out.

HF -> Megatron builds the *trainer's own* model (`srft_megatron.model.provider`) for this
rank's TP/PP shard and walks its `sharded_state_dict()`: every `ShardedTensor` there says
which slice of which global tensor the rank holds (`global_offset`, `local_shape`, and a
prepended layer axis for stacked decoder layers). The global tensor comes from the HF
tensors through the mapping table, sliced, and copied into the parameter. So TP/PP slicing
is megatron-core's, not ours, and the checkpoint is written by the same sharded state dict
the trainer saves and loads, hence loadable at any TP/PP.

Megatron -> HF never builds a model: it reads the checkpoint's tensor metadata and loads
one decoder layer at a time (a slice of each stacked tensor, read through
torch.distributed.checkpoint, the format of megatron-core's torch_dist backend), converts,
and hands the HF tensors to the streaming safetensors writer. Peak memory is about one
layer plus one output shard, so a 32B model converts on a CPU node.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator

import torch

from srft_megatron.convert.mapping import (AttentionDims, Mapping, active_mappings, hf_to_megatron,
                                           mapping_for, megatron_to_hf, split_layer)
from srft_megatron.errors import InputError

EMBEDDING_KEY = "embedding.word_embeddings.weight"


def attention_dims(shape, megatron_vocab_size: int | None = None) -> AttentionDims:
    return AttentionDims(num_heads=shape.num_attention_heads, num_kv_heads=shape.num_query_groups,
                         head_dim=shape.kv_channels, hidden=shape.hidden_size, vocab_size=shape.vocab_size,
                         megatron_vocab_size=megatron_vocab_size or shape.vocab_size)


# --------------------------------------------------------------------------- HF -> Megatron
def iter_sharded_tensors(sharded_state_dict) -> Iterator[Any]:
    """Every ShardedTensor of a (nested) sharded state dict, with SwiGLU factories built
    (their sub-tensors are views of the parameter, so writing them writes the parameter)."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    stack = [sharded_state_dict]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, ShardedTensorFactory):
            stack.append(node.build())
        elif isinstance(node, ShardedTensor):
            yield node
        # ShardedObject (`_extra_state`) and plain values carry no weights


def concrete_name(sh_ten) -> tuple[str, int | None, str | None]:
    """(per-layer Megatron name, global layer, SwiGLU half) of a ShardedTensor.

    Stacked decoder layers have key `decoder.layers.X` and the layer on a prepended axis;
    non-homogeneous checkpoints use `decoder.layers.{i}.X` keys. `singleton_local_shards`
    splits fc1 into `..._w` (gate) and `..._v` (up)."""
    key, half = sh_ten.key, None
    if key.endswith(("linear_fc1.weight_w", "linear_fc1.weight_v")):
        key, half = key[:-2], key[-1]
    if sh_ten.prepend_axis_num:
        if sh_ten.prepend_axis_num != 1 or "decoder.layers." not in key:
            raise InputError(f"unsupported sharded layout for {sh_ten.key!r} "
                             f"(prepend_axis_num={sh_ten.prepend_axis_num})")
        layer = sh_ten.global_offset[0]
        key = key.replace("decoder.layers.", f"decoder.layers.{layer}.", 1)
    return key, split_layer(key)[1], half


def fill_from_hf(sharded_state_dict, read_hf: Callable[[str], torch.Tensor], dims: AttentionDims,
                 progress: Callable[[int], None] | None = None) -> int:
    """Copy HF weights into the parameters behind `sharded_state_dict`; returns tensors filled.

    `read_hf(name)` returns one HF tensor (lazily, from safetensors). A global tensor whose
    shape disagrees with the model is an InputError naming the HF tensors."""
    with torch.no_grad():
        return _fill(sharded_state_dict, read_hf, dims, progress)


def _fill(sharded_state_dict, read_hf, dims, progress) -> int:
    cache: dict[tuple[str, int | None], torch.Tensor] = {}
    filled = 0
    for sh_ten in sorted(iter_sharded_tensors(sharded_state_dict), key=lambda t: (t.key, t.global_offset)):
        name, layer, half = concrete_name(sh_ten)
        mapping, _ = mapping_for(name)
        cache_key = (mapping.megatron, layer)
        full = cache.get(cache_key)
        if full is None:
            cache.clear()  # keep one global tensor at a time (both SwiGLU halves come in a row)
            hf_names = mapping.hf_names(layer)
            full = hf_to_megatron(mapping, [read_hf(n) for n in hf_names], dims)
            cache[cache_key] = full
        if half is not None:
            full_part = torch.chunk(full, 2, dim=0)[0 if half == "w" else 1]
        else:
            full_part = full
        p = sh_ten.prepend_axis_num
        expected = tuple(sh_ten.global_shape[p:])
        if tuple(full_part.shape) != expected:
            raise InputError(f"{', '.join(mapping.hf_names(layer))}: shape {tuple(full_part.shape)} "
                             f"after {mapping.transform.name}, model expects {expected}")
        # local_shape has no prepended (layer) axes; global_offset has them first
        index = tuple(slice(o, o + n) for o, n in zip(sh_ten.global_offset[p:], sh_ten.local_shape))
        sh_ten.data.copy_(full_part[index])
        filled += 1
        if progress is not None:
            progress(1)
    return filled


# --------------------------------------------------------------------------- Megatron -> HF
class _SliceLoadPlanner:
    """A torch DCP load planner that reads chosen slices of stored tensors into buffers.

    megatron-core's own loader cannot read part of a tensor in a world of one process (it
    places the other fragments on "another rank"), so to-hf reads the same files one level
    down, through torch.distributed.checkpoint's resharding (`create_read_items_for_chunk_list`)."""

    def __new__(cls, requests: dict[str, tuple[torch.Tensor, tuple[int, ...]]]):
        from torch.distributed.checkpoint import DefaultLoadPlanner
        from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
        from torch.distributed.checkpoint.planner import LoadPlan
        from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

        class Planner(DefaultLoadPlanner):
            def create_local_plan(self) -> LoadPlan:
                items = []
                for fqn, (buf, offsets) in requests.items():
                    chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=buf.shape)
                    items += create_read_items_for_chunk_list(fqn, self.metadata.state_dict_metadata[fqn], [chunk])
                return LoadPlan(items)

            def lookup_tensor(self, index):
                return requests[index.fqn][0]

        return Planner(flatten_state_dict=False, flatten_sharded_tensors=False)


class CheckpointTensors:
    """Global tensors of a megatron-core (torch_dist) checkpoint, read slice by slice.

    Understands stacked (`decoder.layers.X`, layer on axis 0) and per-layer
    (`decoder.layers.{i}.X`) keys, an optional key prefix, Transformer Engine aliases, and
    SwiGLU split into `_w`/`_v`."""

    def __init__(self, ckpt_dir: str):
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.dir = str(ckpt_dir)
        try:
            self.reader = FileSystemReader(self.dir)
            metadata = self.reader.read_metadata()
        except Exception as exc:
            raise InputError(f"not a megatron-core torch_dist checkpoint ({type(exc).__name__}: {exc})",
                             file=self.dir) from None
        self.meta = {k: v for k, v in metadata.state_dict_metadata.items() if isinstance(v, TensorStorageMetadata)}
        # model keys are unprefixed in our checkpoints; accept a prefix, never an optimizer key
        emb = sorted((k for k in self.meta if k.endswith(EMBEDDING_KEY) and "optimizer" not in k), key=len)
        if not emb:
            raise InputError(f"no '{EMBEDDING_KEY}' tensor: not a Qwen2 GPTModel checkpoint", file=self.dir)
        self.prefix = emb[0][: -len(EMBEDDING_KEY)]

    def _key(self, name: str) -> str:
        return self.prefix + name

    def has(self, name: str) -> bool:
        return self._resolve(name, None) is not None

    def _resolve(self, template: str, layer: int | None):
        """(checkpoint key, stacked?, swiglu_split?) for a per-layer Megatron name, or None."""
        candidates = []
        if layer is None:
            candidates.append((self._key(template), False))
        else:
            candidates.append((self._key(template.replace("{i}.", "")), True))
            candidates.append((self._key(template.format(i=layer)), False))
        for key, stacked in candidates:
            if key in self.meta:
                return key, stacked, False
            if key + "_w" in self.meta and key + "_v" in self.meta:
                return key, stacked, True
        return None

    def resolve(self, mapping: Mapping, layer: int | None):
        for name in mapping.megatron_names:
            found = self._resolve(name, layer)
            if found is not None:
                return found
        where = mapping.megatron if layer is None else mapping.megatron.format(i=layer)
        raise InputError(f"missing tensor {where!r} (and its aliases)", file=self.dir)

    def global_shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.meta[key].size)

    def vocab_rows(self) -> int:
        """Rows of the (possibly padded) Megatron embedding."""
        return self.meta[self._key(EMBEDDING_KEY)].size[0]

    def dtype(self) -> torch.dtype:
        return self.meta[self._key(EMBEDDING_KEY)].properties.dtype

    def num_layers(self) -> int:
        """Number of decoder layers, from the stacked axis or the per-layer keys."""
        layers = set()
        for key, ten in self.meta.items():
            rest = key[len(self.prefix):]
            if rest.startswith("decoder.layers."):
                _, layer = split_layer(rest)
                if layer is None:
                    return ten.size[0]
                layers.add(layer)
        return len(layers)

    def load(self, requests: list[tuple[Mapping, int | None]]) -> dict[tuple[str, int | None], torch.Tensor]:
        """Load the global tensors of several (mapping, layer) pairs in one read."""
        import torch.distributed.checkpoint as dcp

        buffers, plan = {}, {}
        for mapping, layer in requests:
            key, stacked, split = self.resolve(mapping, layer)
            keys = [key + "_w", key + "_v"] if split else [key]
            for k in keys:
                meta = self.meta[k]
                if stacked:
                    buf = torch.empty((1, *meta.size[1:]), dtype=meta.properties.dtype)
                    offsets = (layer,) + (0,) * (len(meta.size) - 1)
                else:
                    buf = torch.empty(tuple(meta.size), dtype=meta.properties.dtype)
                    offsets = (0,) * len(meta.size)
                buffers[k] = (buf, offsets)
            plan[(mapping.megatron, layer)] = (keys, stacked)
        with warnings.catch_warnings():  # single-process on purpose: no process group needed
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load({}, storage_reader=self.reader, planner=_SliceLoadPlanner(buffers), no_dist=True)
        out = {}
        for what, (keys, stacked) in plan.items():
            parts = [buffers[k][0][0] if stacked else buffers[k][0] for k in keys]
            out[what] = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        return out


def iter_hf_tensors(ckpt: CheckpointTensors, dims: AttentionDims, num_layers: int, tied: bool,
                    bias: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """HF (name, tensor) pairs in model order: embeddings, layer by layer, final norm, lm_head."""
    maps = active_mappings(tied, bias)
    glob = [m for m in maps if not m.per_layer]
    per_layer = [m for m in maps if m.per_layer]
    first = ckpt.load([(glob[0], None)])
    yield from megatron_to_hf(glob[0], first[(glob[0].megatron, None)], dims).items()
    del first
    for layer in range(num_layers):
        tensors = ckpt.load([(m, layer) for m in per_layer])
        for m in per_layer:
            yield from megatron_to_hf(m, tensors.pop((m.megatron, layer)), dims, layer).items()
    rest = ckpt.load([(m, None) for m in glob[1:]])
    for m in glob[1:]:
        yield from megatron_to_hf(m, rest.pop((m.megatron, None)), dims).items()
