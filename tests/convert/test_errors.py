"""Mismatched inputs give one clear line (exit 2) and write nothing.

These run the real `srft` entry point in-process: every check happens before megatron-core
or a process group is touched, which is itself part of what is tested."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from srft_megatron.cli import main as srft
from srft_megatron.convert.tiny_hf import save_tiny_qwen2


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return save_tiny_qwen2(tmp_path_factory.mktemp("hf") / "tiny", tied=True)


def _fails(capsys, argv, *needles):
    rc = srft(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("srft convert: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_non_qwen2_config_is_rejected(tmp_path, tiny_hf, capsys):
    llama = tmp_path / "llama"
    shutil.copytree(tiny_hf, llama)
    cfg = json.loads((llama / "config.json").read_text())
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (llama / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "ckpt"
    _fails(capsys, ["convert", "from-hf", "--hf", str(llama), "--output", str(out)],
           "not a Qwen2 model", str(llama / "config.json"))
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["llama"]


def test_tp_that_does_not_divide_heads_is_rejected(tmp_path, tiny_hf, capsys):
    out = tmp_path / "ckpt"
    _fails(capsys, ["convert", "from-hf", "--hf", str(tiny_hf), "--output", str(out), "--tp", "3"],
           "parallel.tensor=3 does not divide num_attention_heads=4", "config.json")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_tensor_is_rejected(tmp_path, tiny_hf, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_hf, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["model.layers.1.self_attn.v_proj.bias"]
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "ckpt"
    _fails(capsys, ["convert", "from-hf", "--hf", str(broken), "--output", str(out)],
           "missing tensor 'model.layers.1.self_attn.v_proj.bias'", str(broken))
    assert not out.exists()


def test_tensor_of_the_wrong_shape_is_rejected(tmp_path, tiny_hf, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_hf, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    name = "model.layers.0.self_attn.k_proj.weight"
    tensors[name] = tensors[name][:16].contiguous()  # one KV head instead of two
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "ckpt"
    _fails(capsys, ["convert", "from-hf", "--hf", str(broken), "--output", str(out)],
           f"tensor '{name}' has shape (16, 64), config.json implies (32, 64)")
    assert not out.exists()


def test_existing_output_is_not_overwritten_without_flag(tmp_path, tiny_hf, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    _fails(capsys, ["convert", "from-hf", "--hf", str(tiny_hf), "--output", str(out)], "--overwrite")
    assert (out / "keep.txt").read_text() == "precious" and len(list(out.iterdir())) == 1


def test_to_hf_of_a_directory_that_is_no_checkpoint(tmp_path, tiny_hf, capsys):
    out = tmp_path / "hf-out"
    _fails(capsys, ["convert", "to-hf", "--checkpoint", str(tiny_hf), "--output", str(out)],
           "not a megatron-core torch_dist checkpoint", str(tiny_hf))
    _fails(capsys, ["convert", "to-hf", "--checkpoint", str(tmp_path / "nope"), "--output", str(out)],
           "checkpoint directory not found")
    assert not out.exists()


def test_help_lists_every_action(capsys):
    with pytest.raises(SystemExit) as info:
        srft(["convert", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert all(action in text for action in ("from-hf", "to-hf", "verify"))
