"""The one table that says how every Qwen2 weight maps between Megatron and Hugging Face.

Conversion bugs are silent: a wrong QKV interleave or a swapped gate/up still produces a
model that runs. So every name and every transform lives here, in one declarative table
(`QWEN2_MAPPINGS`), in the spirit of Megatron-Bridge's `QKVMapping`/`GatedMLPMapping`
(which cannot be installed without Transformer Engine, see notes/megatron-core-cpu.md).

All transforms work on *global* (unsharded) tensors in the layout megatron-core's
distributed checkpoint stores, which does not depend on TP/PP:

- `linear_qkv` is fused per query group: for each of the `G` KV groups, the `H/G` query
  heads of the group, then its key head, then its value head (weight and Qwen2's bias).
- `linear_fc1` of SwiGLU is `[gate; up]` stacked on dim 0 (megatron applies the
  activation to the first half).
- Embedding / output rows may be padded past the HF vocabulary; padding rows are zero on
  import and dropped on export.

Megatron names are per layer with `{i}` (`decoder.layers.{i}.…`); the Transformer Engine
spec fuses the layer norms into the following linear, so those mappings carry aliases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from srft_megatron.errors import InputError


@dataclass(frozen=True)
class AttentionDims:
    """What the transforms need to know about the model (no megatron import)."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden: int
    vocab_size: int          # rows in the HF checkpoint (config.json "vocab_size")
    megatron_vocab_size: int  # rows in the Megatron checkpoint (>= vocab_size, padded)

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise InputError(f"num_attention_heads={self.num_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_kv_heads}")
        if self.megatron_vocab_size < self.vocab_size:
            raise InputError(f"Megatron vocabulary ({self.megatron_vocab_size} rows) is smaller "
                             f"than the HF vocabulary ({self.vocab_size} rows)")


# --------------------------------------------------------------------------- transforms
# Each transform is a pair: to_megatron(list of HF tensors) -> one tensor, and
# to_hf(one tensor) -> list of HF tensors (same order as the mapping's `hf` names).

def qkv_to_megatron(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, d: AttentionDims) -> torch.Tensor:
    """Interleave separate q/k/v (weight [out, hidden] or bias [out]) per query group."""
    groups, per_group = d.num_kv_heads, d.num_heads // d.num_kv_heads
    rest = q.shape[1:]
    q = q.reshape(groups, per_group * d.head_dim, *rest)
    k = k.reshape(groups, d.head_dim, *rest)
    v = v.reshape(groups, d.head_dim, *rest)
    return torch.cat([q, k, v], dim=1).reshape(-1, *rest).contiguous()


def qkv_to_hf(qkv: torch.Tensor, d: AttentionDims) -> list[torch.Tensor]:
    """Inverse of `qkv_to_megatron`."""
    groups, per_group = d.num_kv_heads, d.num_heads // d.num_kv_heads
    rest = qkv.shape[1:]
    grouped = qkv.reshape(groups, (per_group + 2) * d.head_dim, *rest)
    q, k, v = torch.split(grouped, [per_group * d.head_dim, d.head_dim, d.head_dim], dim=1)
    return [t.reshape(-1, *rest).contiguous() for t in (q, k, v)]


def gated_to_megatron(gate: torch.Tensor, up: torch.Tensor, d: AttentionDims) -> torch.Tensor:
    return torch.cat([gate, up], dim=0).contiguous()


def gated_to_hf(fc1: torch.Tensor, d: AttentionDims) -> list[torch.Tensor]:
    gate, up = torch.chunk(fc1, 2, dim=0)
    return [gate.contiguous(), up.contiguous()]


def vocab_to_megatron(rows: torch.Tensor, d: AttentionDims) -> torch.Tensor:
    """Pad the HF vocabulary rows with zeros up to the Megatron (padded) vocabulary."""
    if rows.shape[0] != d.vocab_size:
        raise InputError(f"embedding has {rows.shape[0]} rows, config.json says vocab_size={d.vocab_size}")
    if d.megatron_vocab_size == d.vocab_size:
        return rows
    pad = rows.new_zeros(d.megatron_vocab_size - d.vocab_size, *rows.shape[1:])
    return torch.cat([rows, pad], dim=0)


def vocab_to_hf(rows: torch.Tensor, d: AttentionDims) -> list[torch.Tensor]:
    return [rows[: d.vocab_size].contiguous()]


def identity_to_megatron(t: torch.Tensor, d: AttentionDims) -> torch.Tensor:
    return t


def identity_to_hf(t: torch.Tensor, d: AttentionDims) -> list[torch.Tensor]:
    return [t]


@dataclass(frozen=True)
class Transform:
    name: str
    to_megatron: Callable[..., torch.Tensor]
    to_hf: Callable[..., list[torch.Tensor]]


IDENTITY = Transform("identity", identity_to_megatron, identity_to_hf)
QKV = Transform("qkv", qkv_to_megatron, qkv_to_hf)
GATED_MLP = Transform("gated_mlp", gated_to_megatron, gated_to_hf)
VOCAB = Transform("vocab_rows", vocab_to_megatron, vocab_to_hf)


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Mapping:
    megatron: str                      # Megatron name; `{i}` = global layer index
    hf: tuple[str, ...]                # HF name(s) in the order the transform takes them
    transform: Transform = IDENTITY
    aliases: tuple[str, ...] = ()      # other Megatron names (Transformer Engine spec)
    untied_only: bool = False          # lm_head exists only when embeddings are untied
    per_layer: bool = field(init=False, default=False)

    def __post_init__(self):
        object.__setattr__(self, "per_layer", "{i}" in self.megatron)

    @property
    def megatron_names(self) -> tuple[str, ...]:
        return (self.megatron, *self.aliases)

    def hf_names(self, layer: int | None = None) -> list[str]:
        return [n.format(i=layer) for n in self.hf]


_L = "decoder.layers.{i}."
_H = "model.layers.{i}."

QWEN2_MAPPINGS: tuple[Mapping, ...] = (
    Mapping("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), VOCAB),
    Mapping(_L + "input_layernorm.weight", (_H + "input_layernorm.weight",),
            aliases=(_L + "self_attention.linear_qkv.layer_norm_weight",)),
    Mapping(_L + "self_attention.linear_qkv.weight",
            (_H + "self_attn.q_proj.weight", _H + "self_attn.k_proj.weight", _H + "self_attn.v_proj.weight"), QKV),
    Mapping(_L + "self_attention.linear_qkv.bias",
            (_H + "self_attn.q_proj.bias", _H + "self_attn.k_proj.bias", _H + "self_attn.v_proj.bias"), QKV),
    Mapping(_L + "self_attention.linear_proj.weight", (_H + "self_attn.o_proj.weight",)),
    Mapping(_L + "pre_mlp_layernorm.weight", (_H + "post_attention_layernorm.weight",),
            aliases=(_L + "mlp.linear_fc1.layer_norm_weight",)),
    Mapping(_L + "mlp.linear_fc1.weight", (_H + "mlp.gate_proj.weight", _H + "mlp.up_proj.weight"), GATED_MLP),
    Mapping(_L + "mlp.linear_fc2.weight", (_H + "mlp.down_proj.weight",)),
    Mapping("decoder.final_layernorm.weight", ("model.norm.weight",)),
    Mapping("output_layer.weight", ("lm_head.weight",), VOCAB, untied_only=True),
)

_LAYER_RE = re.compile(r"^(?P<pre>.*?decoder\.layers\.)(?P<i>\d+)\.(?P<rest>.+)$")


def split_layer(name: str) -> tuple[str, int | None]:
    """`decoder.layers.3.mlp.linear_fc2.weight` -> (`decoder.layers.{i}.mlp.linear_fc2.weight`, 3)."""
    m = _LAYER_RE.match(name)
    if not m:
        return name, None
    return f"{m['pre']}{{i}}.{m['rest']}", int(m["i"])


def _index() -> dict[str, Mapping]:
    out = {}
    for mapping in QWEN2_MAPPINGS:
        for name in mapping.megatron_names:
            out[name] = mapping
    return out


_BY_MEGATRON = _index()


def mapping_for(megatron_name: str) -> tuple[Mapping, int | None]:
    """The mapping of a concrete Megatron parameter name, and its layer index.

    Unknown names raise: a converter that skips a parameter it does not know is a
    converter that silently drops weights."""
    template, layer = split_layer(megatron_name)
    mapping = _BY_MEGATRON.get(template)
    if mapping is None:
        raise InputError(f"no HF mapping for Megatron parameter {megatron_name!r}")
    return mapping, layer


def active_mappings(tied: bool, bias: bool = True) -> list[Mapping]:
    """Mappings present in a Qwen2 model (the lm_head only when untied; QKV bias for Qwen2)."""
    out = []
    for m in QWEN2_MAPPINGS:
        if m.untied_only and tied:
            continue
        if m.megatron.endswith("linear_qkv.bias") and not bias:
            continue
        out.append(m)
    return out


def expected_hf_names(num_layers: int, tied: bool, bias: bool = True) -> list[str]:
    """Every tensor name a Qwen2ForCausalLM checkpoint must contain, in model order."""
    names: list[str] = []
    glob = [m for m in active_mappings(tied, bias) if not m.per_layer]
    layer = [m for m in active_mappings(tied, bias) if m.per_layer]
    names += glob[0].hf_names()
    for i in range(num_layers):
        for m in layer:
            names += m.hf_names(i)
    for m in glob[1:]:
        names += m.hf_names()
    return names


def expected_hf_shape(name: str, dims: AttentionDims, ffn_hidden_size: int) -> tuple[int, ...]:
    """Shape a Qwen2ForCausalLM tensor must have, from its name (checked before converting)."""
    q, kv, h = dims.num_heads * dims.head_dim, dims.num_kv_heads * dims.head_dim, dims.hidden
    suffixes = {
        "embed_tokens.weight": (dims.vocab_size, h), "lm_head.weight": (dims.vocab_size, h),
        "norm.weight": (h,), "layernorm.weight": (h,),
        "q_proj.weight": (q, h), "k_proj.weight": (kv, h), "v_proj.weight": (kv, h),
        "q_proj.bias": (q,), "k_proj.bias": (kv,), "v_proj.bias": (kv,), "o_proj.weight": (h, q),
        "gate_proj.weight": (ffn_hidden_size, h), "up_proj.weight": (ffn_hidden_size, h),
        "down_proj.weight": (h, ffn_hidden_size),
    }
    for suffix, shape in suffixes.items():
        if name.endswith(suffix):
            return shape
    raise KeyError(name)


def hf_to_megatron(mapping: Mapping, tensors: Iterable[torch.Tensor], dims: AttentionDims) -> torch.Tensor:
    return mapping.transform.to_megatron(*tensors, dims)


def megatron_to_hf(mapping: Mapping, tensor: torch.Tensor, dims: AttentionDims,
                   layer: int | None = None) -> dict[str, torch.Tensor]:
    outs = mapping.transform.to_hf(tensor, dims)
    names = mapping.hf_names(layer)
    assert len(outs) == len(names), (mapping, len(outs))
    return dict(zip(names, outs))
