"""The declarative table against Hugging Face's own Qwen2 modules (pure torch, no megatron).

The fused QKV layout is checked the way megatron-core *uses* it (view as [groups,
(q_per_group + 2) * head_dim] and split), not by re-running our own inverse, so an
interleave that round-trips but is semantically wrong fails here."""

from __future__ import annotations

import pytest
import torch

from srft_megatron.convert import mapping as M
from srft_megatron.errors import InputError
from srft_megatron.convert.tiny_hf import tiny_qwen2_model


def _dims(model, megatron_vocab=None):
    c = model.config
    return M.AttentionDims(num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads,
                           head_dim=c.head_dim, hidden=c.hidden_size, vocab_size=c.vocab_size,
                           megatron_vocab_size=megatron_vocab or c.vocab_size)


@pytest.fixture(scope="module")
def hf_model():
    return tiny_qwen2_model(tied=False, num_layers=2)


def test_fused_qkv_matches_hf_projections_as_megatron_splits_them(hf_model):
    d = _dims(hf_model)
    attn = hf_model.model.layers[1].self_attn
    sd = {k: v for k, v in attn.state_dict().items()}
    w = M.qkv_to_megatron(sd["q_proj.weight"], sd["k_proj.weight"], sd["v_proj.weight"], d)
    b = M.qkv_to_megatron(sd["q_proj.bias"], sd["k_proj.bias"], sd["v_proj.bias"], d)
    x = torch.randn(5, d.hidden)
    mixed = (x @ w.T + b).view(5, d.num_kv_heads, (d.num_heads // d.num_kv_heads + 2) * d.head_dim)
    per_group = d.num_heads // d.num_kv_heads
    q, k, v = torch.split(mixed, [per_group * d.head_dim, d.head_dim, d.head_dim], dim=2)
    # megatron: query heads of group g are heads g*per_group .. (g+1)*per_group-1
    torch.testing.assert_close(q.reshape(5, d.num_heads, d.head_dim),
                               attn.q_proj(x).view(5, d.num_heads, d.head_dim), rtol=0, atol=1e-6)
    torch.testing.assert_close(k.reshape(5, d.num_kv_heads, d.head_dim),
                               attn.k_proj(x).view(5, d.num_kv_heads, d.head_dim), rtol=0, atol=1e-6)
    torch.testing.assert_close(v.reshape(5, d.num_kv_heads, d.head_dim),
                               attn.v_proj(x).view(5, d.num_kv_heads, d.head_dim), rtol=0, atol=1e-6)


def test_fused_fc1_is_gate_then_up_as_megatron_swiglu_applies_it(hf_model):
    d = _dims(hf_model)
    mlp = hf_model.model.layers[0].mlp
    fc1 = M.gated_to_megatron(mlp.gate_proj.weight, mlp.up_proj.weight, d)
    x = torch.randn(3, d.hidden)
    h = x @ fc1.T
    first, second = torch.chunk(h, 2, dim=-1)  # megatron's glu: act(first) * second
    out = (torch.nn.functional.silu(first) * second) @ mlp.down_proj.weight.T
    torch.testing.assert_close(out, mlp(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_every_tensor_round_trips_bitwise_with_vocab_padding(tied):
    model = tiny_qwen2_model(tied=tied, num_layers=2, vocab_size=250)
    sd = {k: v for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    d = _dims(model, megatron_vocab=256)
    expected = M.expected_hf_names(2, tied=tied)
    assert sorted(expected) == sorted(sd)
    back = {}
    for mapping in M.active_mappings(tied):
        for layer in (range(2) if mapping.per_layer else [None]):
            meg = M.hf_to_megatron(mapping, [sd[n] for n in mapping.hf_names(layer)], d)
            if mapping.transform is M.VOCAB:
                assert meg.shape[0] == 256 and torch.count_nonzero(meg[250:]) == 0
            back.update(M.megatron_to_hf(mapping, meg, d, layer))
    assert sorted(back) == sorted(sd)
    for name, tensor in sd.items():
        assert torch.equal(back[name], tensor), name


def test_names_resolve_through_layers_and_te_aliases():
    m, layer = M.mapping_for("decoder.layers.7.self_attention.linear_qkv.layer_norm_weight")
    assert layer == 7 and m.hf_names(layer) == ["model.layers.7.input_layernorm.weight"]
    m, layer = M.mapping_for("decoder.layers.3.mlp.linear_fc1.layer_norm_weight")
    assert m.hf_names(layer) == ["model.layers.3.post_attention_layernorm.weight"]
    m, layer = M.mapping_for("output_layer.weight")
    assert layer is None and m.untied_only
    with pytest.raises(InputError, match="no HF mapping"):
        M.mapping_for("decoder.layers.0.self_attention.q_layernorm.weight")


def test_inconsistent_dims_are_rejected():
    with pytest.raises(InputError, match="not a multiple"):
        M.AttentionDims(num_heads=6, num_kv_heads=4, head_dim=8, hidden=48, vocab_size=10, megatron_vocab_size=10)
    with pytest.raises(InputError, match="smaller"):
        M.AttentionDims(num_heads=4, num_kv_heads=2, head_dim=8, hidden=32, vocab_size=10, megatron_vocab_size=8)
