"""The exported HF directory is served by a real vLLM (CPU) and generates what transformers does.

HF -> Megatron -> HF, then vLLM's OpenAI server (`srft_megatron.evaluate.serve`, its own venv and
transformers version) loads `config.json`, the sharded safetensors and the tokenizer files
written by `srft convert to-hf`; its greedy tokens must equal transformers' on the same prompt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from srft_megatron.convert.to_hf import convert_megatron_to_hf
from srft_megatron.convert.tiny_hf import save_tiny_qwen2

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.vllm, pytest.mark.distributed]


def test_vllm_serves_the_exported_directory(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from srft_megatron.evaluate.serve import local_cpu_configs, start_servers

    # vLLM's CPU attention needs head_dim >= 32 (notes/vllm-cpu.md)
    hf = save_tiny_qwen2(tmp_path / "hf", tied=True, vocab_size=151936, seed=5, tokenizer=True,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    ckpt = tmp_path / "ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "convert", "from-hf", "--hf", str(hf),
                           "--output", str(ckpt)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = convert_megatron_to_hf(str(ckpt), str(tmp_path / "exported"), max_shard_bytes=20 * 1024**2,
                                 progress=False)
    assert len(set(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].values())) > 1

    tok = AutoTokenizer.from_pretrained(str(out))
    prompt = "def fibonacci(n):\n"
    ids = tok(prompt)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).eval()
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                             pad_token_id=0, eos_token_id=None)[0, len(ids):].tolist()

    # started once more if the first start-up dies (another process's /dev/shm clean-up, see start_servers)
    server, = start_servers(local_cpu_configs(out, served_name="exported", max_model_len=512,
                                              run_dir=tmp_path / "vllm"), attempts=2)
    try:
        reply = httpx.post(f"{server.url}/completions", timeout=120, json={
            "model": "exported", "prompt": ids, "max_tokens": 8, "temperature": 0.0, "ignore_eos": True,
            "logprobs": 1, "return_tokens_as_token_ids": True}).json()
    finally:
        server.stop()
    got = [int(t.split(":")[1]) for t in reply["choices"][0]["logprobs"]["tokens"]]
    assert got == ref
