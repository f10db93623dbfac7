"""Streaming safetensors writing/reading and the all-or-nothing output directory."""

from __future__ import annotations

import json

import pytest
import torch

from srft_megatron.convert import hf_io
from srft_megatron.errors import InputError


def test_sharded_writer_splits_by_size_and_reader_reads_back_bitwise(tmp_path):
    tensors = {f"t{i}": torch.randn(64, 32, generator=torch.Generator().manual_seed(i)) for i in range(5)}
    writer = hf_io.ShardedSafetensorsWriter(tmp_path, max_shard_bytes=3 * 64 * 32 * 4)
    for name, t in tensors.items():
        writer.add(name, t)
    weight_map = writer.close()
    index = json.loads((tmp_path / hf_io.INDEX_NAME).read_text())
    assert index["weight_map"] == weight_map
    assert index["metadata"]["total_size"] == 5 * 64 * 32 * 4
    assert sorted(set(weight_map.values())) == ["model-00001-of-00002.safetensors",
                                                "model-00002-of-00002.safetensors"]
    assert not list(tmp_path.glob(".shard-*"))
    with hf_io.HFCheckpointReader(tmp_path) as reader:
        assert sorted(reader.names()) == sorted(tensors)
        assert reader.shape("t3") == [64, 32]
        for name, t in tensors.items():
            assert torch.equal(reader.get(name), t)
        with pytest.raises(InputError, match="missing tensor 'nope'"):
            reader.require(["t0", "nope"])


def test_staged_directory_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with hf_io.staged_directory(out) as stage:
            (stage / "half.bin").write_bytes(b"x")
            raise RuntimeError("conversion failed half way")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with hf_io.staged_directory(out) as stage:
        (stage / "a").write_text("1")
    assert (out / "a").read_text() == "1"
    with pytest.raises(InputError, match="not empty"):
        with hf_io.staged_directory(out):
            pass
    with hf_io.staged_directory(out, overwrite=True) as stage:
        (stage / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_non_qwen2_config_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(InputError, match="not a Qwen2 model") as info:
        hf_io.read_hf_config(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)
    with pytest.raises(InputError, match="no config.json"):
        hf_io.read_hf_config(tmp_path / "missing")
