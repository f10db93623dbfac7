"""HF -> Megatron (TP=1, TP=2, PP=2) -> HF is bitwise; both models give the same numbers.

Random-weight tiny Qwen2 models (GQA, QKV bias; tied and untied) are converted with the real
megatron-core model and checkpoint writer in subprocesses (megatron's CPU shim stays out of
the pytest process): one 2-process torchrun launch does every TP=2/PP=2 conversion, the CLI
does TP=1 and the spawn path. Megatron -> HF needs no model and runs in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from srft_megatron.convert.hf_io import HFCheckpointReader
from srft_megatron.convert.to_hf import convert_megatron_to_hf
from srft_megatron.convert.tiny_hf import save_tiny_qwen2

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")
pytestmark = pytest.mark.distributed


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _srft(*args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "srft_megatron.cli", "convert", *args])


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _swap_gate_up(hf_dir: Path, out: Path) -> Path:
    """A copy of `hf_dir` with layer 0's gate and up projections swapped (a classic bug)."""
    shutil.copytree(hf_dir, out)
    tensors = load_file(str(out / "model.safetensors"))
    g, u = "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"
    tensors[g], tensors[u] = tensors[u], tensors[g]
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """HF dirs, their Megatron checkpoints at several layouts ({name: (hf_dir, ckpt_dir)}) and
    the verify reports of the single-process launch ({name: report})."""
    base = tmp_path_factory.mktemp("convert")
    hf = {"tied": save_tiny_qwen2(base / "hf-tied", tied=True, seed=1),
          "untied": save_tiny_qwen2(base / "hf-untied", tied=False, seed=2, tokenizer=True),
          "bf16": save_tiny_qwen2(base / "hf-bf16", tied=False, seed=4, dtype=torch.bfloat16),
          "qwen-vocab": save_tiny_qwen2(base / "hf-qwen-vocab", tied=True, vocab_size=151936, seed=3)}
    swapped = _swap_gate_up(hf["tied"], base / "hf-tied-swapped")
    out: dict[str, tuple[Path, Path]] = {}
    jobs: dict[int, list[str]] = {1: [], 2: []}  # world size -> from-hf jobs
    for model in ("tied", "untied"):
        for tp, pp in ((1, 1), (2, 1), (1, 2)):
            name = f"{model}-tp{tp}-pp{pp}"
            out[name] = (hf[model], base / f"ckpt-{name}")
            jobs[tp * pp].append(f"from-hf:{hf[model]}:{out[name][1]}:{tp}:{pp}")
    _ok(_run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
              str(WORKER), *jobs[2]]))
    out["bf16-tp1-pp1"] = (hf["bf16"], base / "ckpt-bf16")
    one = jobs[1] + [f"from-hf:{hf['bf16']}:{out['bf16-tp1-pp1'][1]}:1:1"]
    one += [f"verify:{hf['untied']}:{out['untied-tp1-pp2'][1]}:64",
            f"verify:{swapped}:{out['tied-tp2-pp1'][1]}:64"]
    proc = _ok(_run([sys.executable, str(WORKER), *one]))
    reports = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("VERIFY ")]
    out["qwen-vocab-tp2"] = (hf["qwen-vocab"], base / "ckpt-qwen-vocab-tp2")  # the CLI spawns 2 processes
    _ok(_srft("from-hf", "--hf", str(hf["qwen-vocab"]), "--output", str(out["qwen-vocab-tp2"][1]), "--tp", "2"))
    return out, {"untied-pp2": reports[0], "swapped": reports[1]}


def _assert_bitwise_equal(original: Path, exported: Path) -> int:
    with HFCheckpointReader(original) as a, HFCheckpointReader(exported) as b:
        assert sorted(a.names()) == sorted(b.names())
        for name in a.names():
            x, y = a.get(name), b.get(name)
            assert x.dtype == y.dtype and torch.equal(x, y), name
        return len(a.names())


@pytest.mark.parametrize("layout", ["tp1-pp1", "tp2-pp1", "tp1-pp2"])
@pytest.mark.parametrize("model", ["tied", "untied"])
def test_round_trip_is_bitwise(converted, tmp_path, model, layout):
    hf_dir, ckpt = converted[0][f"{model}-{layout}"]
    marker = json.loads((ckpt / "srft_checkpoint.json").read_text())
    assert marker["kind"] == "model" and marker["hf_config"]["tie_word_embeddings"] == (model == "tied")
    tp, pp = int(layout[2]), int(layout[-1])
    assert marker["parallel"]["tp"] == tp and marker["parallel"]["pp"] == pp
    out = convert_megatron_to_hf(str(ckpt), str(tmp_path / "hf"), tokenizer=None, progress=False)
    count = _assert_bitwise_equal(hf_dir, out)
    assert count == 2 * 12 + 2 + (model == "untied")  # 12 tensors a layer, embed + norm (+ lm_head)


def test_bf16_model_round_trips_bitwise_in_bf16(converted, tmp_path):
    hf_dir, ckpt = converted[0]["bf16-tp1-pp1"]
    assert json.loads((ckpt / "srft_checkpoint.json").read_text())["precision"] == "bf16"
    out = convert_megatron_to_hf(str(ckpt), str(tmp_path / "hf"), tokenizer=None, progress=False)
    assert _assert_bitwise_equal(hf_dir, out) == 27
    with HFCheckpointReader(out) as reader:
        assert reader.get("model.embed_tokens.weight").dtype == torch.bfloat16
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dtype"] == cfg["torch_dtype"] == "bfloat16" and cfg["rope_theta"] == 1e6


def test_exported_dir_loads_in_transformers_and_generates(converted, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_dir, ckpt = converted[0]["untied-tp1-pp2"]
    out = tmp_path / "exported"
    proc = _ok(_srft("to-hf", "--checkpoint", str(ckpt), "--output", str(out), "--max-shard-gb", "0.0002",
                     "--quiet"))
    assert "wrote" in proc.stdout
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / s).is_file() for s in shards)
    # tokenizer files and generation config come from the HF directory it was converted from
    for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (hf_dir / name).read_bytes(), name
    assert AutoTokenizer.from_pretrained(str(out))("Hello world")["input_ids"] == [9707, 1879]
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).eval()
    original = AutoModelForCausalLM.from_pretrained(str(hf_dir), local_files_only=True).eval()
    prompt = torch.tensor([[3, 14, 15, 92, 65]])
    gen = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    ref = original.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert gen.shape == (1, 13) and torch.equal(gen, ref)


def _verify(*args: str) -> tuple[int, dict]:
    proc = _srft("verify", *args, "--json")
    assert proc.returncode in (0, 1), proc.stderr[-4000:]
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_verify_same_logits_random_tokens_pp2_checkpoint(converted):
    report = converted[1]["untied-pp2"]
    assert report["tokens"] == 64
    assert report["max_abs_logit_diff"] <= 1e-4 and report["greedy_agreement"] == 1.0
    assert report["max_abs_loss_diff"] <= 1e-4


def test_verify_same_per_token_loss_on_real_trajectory(converted, traj_dir):
    hf_dir, ckpt = converted[0]["qwen-vocab-tp2"]
    rc, report = _verify("--hf", str(hf_dir), "--checkpoint", str(ckpt), "--atol", "1e-4",
                         "--trajectory", str(traj_dir / "function_calling_simple.traj"), "--max-tokens", "512")
    assert rc == 0, report
    assert report["tokens"] == 512  # the rendered trajectory (1959 tokens) is longer
    assert report["max_abs_logit_diff"] <= 1e-4 and report["max_abs_loss_diff"] <= 1e-4
    assert abs(report["mean_loss_hf"] - report["mean_loss_megatron"]) <= 1e-5
    assert 10.0 < report["mean_loss_hf"] < 14.0  # ~ln(151936) = 11.9 for a random tiny model


def test_verify_detects_swapped_gate_and_up(converted):
    report = converted[1]["swapped"]  # correct checkpoint vs an HF copy with gate/up swapped
    assert report["max_abs_logit_diff"] > 1e-2, report
