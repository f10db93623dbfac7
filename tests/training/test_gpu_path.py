"""GPU-path logic proven on CPU (marker `gpu_path`): what a GPU run would do differently from the
CPU tests, checked where no GPU is needed.

- The local spec as a GPU without Transformer Engine builds it (`on_gpu=True`, `use_te=False`)
  runs a bf16 forward with a block-diagonal mask. megatron's fused masked softmax would raise
  `ModuleNotFoundError: scaled_masked_softmax_cuda` here (the wheel has no such extension) and,
  where the kernel exists, apply a plain causal mask instead of ours.
- Packed vs one-by-one per-token NLL at a tight tolerance, on a model whose outputs depend on
  context, with a leaky (plain causal) mask as the negative control that must fail.
- `step_flops` equals Megatron-LM's `num_floating_point_operations`, transcribed below.
- FP8 delayed-scaling settings reach the `TransformerConfig` as configured.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from srft_megatron.errors import ConfigError
from srft_megatron.model.configs import get_shape
from srft_megatron.model.provider import build_gpt_model, kernel_flags, transformer_config
from srft_megatron.parallel.dims import ParallelDims, destroy, initialize
from srft_megatron.training.config import load_config
from srft_megatron.training.preflight import validate
from srft_megatron.training.data import block_causal_mask
from srft_megatron.training.metrics import step_flops

from .helpers import (CONTEXT_INIT_STD, TINY_CONFIG, assert_nll_close, context_docs,
                      packed_and_alone_nll)

pytestmark = [pytest.mark.gpu_path, pytest.mark.usefixtures("cpu_shim")]

SHAPE = get_shape("tiny")


@pytest.fixture(scope="module")
def world():
    initialize(ParallelDims(), seed=11)
    yield
    destroy(process_group=True)


def _model(precision: str):
    """`tiny` with the kernel flags of a GPU without TE (initialised on CPU so it builds here)."""
    cfg = transformer_config(SHAPE, precision=precision, use_te=False, on_gpu=True,
                             use_cpu_initialization=True, init_method_std=CONTEXT_INIT_STD)
    return build_gpt_model(SHAPE, use_te=False, config=cfg)


def _nll(model, leaky: bool = False):
    device = next(model.parameters()).device  # CUDA where there is one (bench/gpu_check.sh)

    def forward(batch):
        b = {k: v.to(device) for k, v in batch.items()}
        seg = torch.zeros_like(b["segment_ids"]) if leaky else b["segment_ids"]
        return model(b["tokens"], b["position_ids"], block_causal_mask(seg), labels=b["labels"])
    return forward


# ---- no fused masked softmax ------------------------------------------------------------------
@pytest.mark.parametrize("on_gpu,use_te", [(True, False), (True, True), (False, False)])
def test_masked_softmax_fusion_is_never_on(on_gpu, use_te):
    assert kernel_flags(on_gpu=on_gpu, use_te=use_te)["masked_softmax_fusion"] is False


def test_bf16_block_mask_forward_as_on_a_gpu_without_te(world):
    model = _model("bf16")
    assert model.config.bf16 and not model.config.masked_softmax_fusion
    assert next(model.parameters()).dtype == torch.bfloat16
    store = context_docs(SHAPE.vocab_size)
    packed, alone = packed_and_alone_nll(_nll(model), store)
    assert torch.isfinite(packed).all()
    # bf16 kernels differ by layout (measured max 0.028 nats); a leaky mask moves NLL by 3.3.
    assert_nll_close(packed, alone, atol=0.1)
    leaky, _ = packed_and_alone_nll(_nll(model, leaky=True), store)
    with pytest.raises(AssertionError):
        assert_nll_close(leaky, alone, atol=0.1)


# ---- packing: tight per-token check with a negative control ------------------------------------
def test_packed_per_token_nll_equals_one_by_one_and_a_leaky_mask_fails(world):
    model = _model("fp32")
    store = context_docs(SHAPE.vocab_size)
    packed, alone = packed_and_alone_nll(_nll(model), store)
    assert_nll_close(packed, alone, atol=1e-4)  # measured max 1e-6
    leaky, _ = packed_and_alone_nll(_nll(model, leaky=True), store)
    # The model's outputs depend on context: a mask that lets documents see each other fails
    # the same check by a wide margin (the first document is unaffected: nothing precedes it).
    with pytest.raises(AssertionError):
        assert_nll_close(leaky, alone, atol=1e-4)
    assert float((leaky - alone).abs().max()) > 1.0
    first = len(store.docs[0][0]) - 1
    assert_nll_close(leaky[:first], alone[:first], atol=1e-4)


# ---- FLOPs: Megatron-LM's num_floating_point_operations ---------------------------------------
def megatron_num_floating_point_operations(args, batch_size, seqlen_squared_sum_in_batch=None,
                                           total_real_tokens_in_batch=None):
    """Transcription of Megatron-LM's `num_floating_point_operations` for a dense transformer
    (no MoE, MTP, MLA, linear attention or attention output gate), from
    NVIDIA/Megatron-LM megatron/training/training.py at commit
    d98e8a64ddf34856e74b24714e3bedb2f5a39553: defaults lines 835-838, the MHA/GQA terms lines
    1140-1170, the total lines 1255-1310 (`transformer_flops`)."""
    if seqlen_squared_sum_in_batch is None:
        seqlen_squared_sum_in_batch = batch_size * args.seq_length * args.seq_length
    if total_real_tokens_in_batch is None:
        total_real_tokens_in_batch = batch_size * args.seq_length
    fwd_bwd, fma = 3, 2
    ffn_expansion = 3 if args.swiglu else 2
    q_size = args.kv_channels * args.num_attention_heads
    kv_size = args.kv_channels * args.num_query_groups
    attn_linear = fwd_bwd * fma * (args.hidden_size * (q_size + kv_size + kv_size) + q_size * args.hidden_size)
    attn_core = fwd_bwd * fma * q_size / 2 * 2  # causal half; QK^T and (QK^T)V
    mlp = fwd_bwd * fma * args.hidden_size * args.ffn_hidden_size * ffn_expansion * args.num_layers
    logits = fwd_bwd * fma * args.hidden_size * args.padded_vocab_size
    return (total_real_tokens_in_batch * (mlp + attn_linear * args.num_layers + logits)
            + seqlen_squared_sum_in_batch * attn_core * args.num_layers)


def _args(shape, seq_length):
    return SimpleNamespace(num_layers=shape.num_layers, hidden_size=shape.hidden_size,
                           ffn_hidden_size=shape.ffn_hidden_size, swiglu=True,
                           num_attention_heads=shape.num_attention_heads,
                           num_query_groups=shape.num_query_groups, kv_channels=shape.kv_channels,
                           padded_vocab_size=shape.vocab_size, seq_length=seq_length)


@pytest.mark.parametrize("name", ["tiny", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-coder-32b-instruct"])
def test_step_flops_equal_megatron_lm(name):
    shape = get_shape(name)
    # Unpacked batch of full sequences: Megatron's defaults.
    for seq, batch in ((4096, 8), (32768, 1)):
        ours = step_flops(shape, batch * seq, batch * seq * seq)
        assert ours == pytest.approx(megatron_num_floating_point_operations(_args(shape, seq), batch), rel=1e-12)
    # Packed documents plus padding: real tokens and per-document sum of squares (THD path).
    docs = [3000, 700, 250, 90]
    theirs = megatron_num_floating_point_operations(
        _args(shape, 4096), 1, seqlen_squared_sum_in_batch=sum(n * n for n in docs),
        total_real_tokens_in_batch=sum(docs))
    assert step_flops(shape, sum(docs), sum(n * n for n in docs)) == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize("name,seq,low,high", [("qwen2.5-7b", 4096, 1.05, 1.06),
                                               ("qwen2.5-7b", 32768, 1.31, 1.32),
                                               ("qwen2.5-coder-32b-instruct", 32768, 1.25, 1.26)])
def test_the_old_noncausal_count_overstated_by(name, seq, low, high):
    """What the causal halving changes: the old count (core attention 12·L·q·Σn², non-causal)
    over the new one, for full-length documents (the README quotes these)."""
    shape = get_shape(name)
    q = shape.num_attention_heads * shape.kv_channels
    ours = step_flops(shape, seq, seq * seq)
    noncausal = ours + 6 * shape.num_layers * q * seq * seq
    assert low < noncausal / ours < high


# ---- FP8 delayed-scaling settings ---------------------------------------------------------------
def test_fp8_amax_settings_reach_the_transformer_config():
    # TE's fused kernels are off here only because TE is absent; the FP8 fields are what we test.
    cfg = transformer_config(SHAPE, precision="fp8", use_te=True, on_gpu=True, use_cpu_initialization=True,
                             apply_rope_fusion=False)
    assert (cfg.fp8, cfg.fp8_recipe) == ("hybrid", "delayed")
    assert (cfg.fp8_amax_history_len, cfg.fp8_amax_compute_algo, cfg.fp8_margin) == (1024, "max", 0)
    cfg = transformer_config(SHAPE, precision="fp8", use_te=True, on_gpu=True, use_cpu_initialization=True,
                             apply_rope_fusion=False, fp8_amax_history_len=16,
                             fp8_amax_compute_algo="most_recent", fp8_margin=1)
    assert (cfg.fp8_amax_history_len, cfg.fp8_amax_compute_algo, cfg.fp8_margin) == (16, "most_recent", 1)


def test_fp8_config_defaults_and_bad_values(tmp_path):
    cfg = load_config(TINY_CONFIG)
    assert (cfg.model.fp8_amax_history_len, cfg.model.fp8_amax_compute_algo, cfg.model.fp8_margin) == (1024, "max", 0)
    for override, message in (("model.fp8_amax_compute_algo=mean", "fp8_amax_compute_algo"),
                              ("model.fp8_amax_history_len=0", "fp8_amax_history_len"),
                              ("model.fp8_margin=-1", "fp8_margin")):
        with pytest.raises(ConfigError, match=message):
            validate(load_config(TINY_CONFIG, [override]), 1, check_data=False)


# ---- the one-shot device check -----------------------------------------------------------------
def test_gpu_check_dry_run_names_the_carry_and_existing_tests():
    import re
    import subprocess

    from .helpers import ROOT

    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "megatron" in out and "run(command='bash bench/gpu_check.sh', carry=['.gpu-carry']" in out
    phases = re.findall(r"^(\S+)\s+\(<= +(\d+) s\): (.*)$", out, re.M)
    assert [p[0] for p in phases] == ["gpu-tests", "train-tests", "bench", "overfit"]
    assert sum(int(p[1]) for p in phases) <= 600  # plus setup, inside the 10-minute device call
    for path in re.findall(r"(tests/\S+\.py|bench/\S+\.py)", out):
        assert (ROOT / path).is_file(), path


def test_gpu_report_writes_what_was_measured_and_nothing_else(tmp_path):
    import importlib.util
    import json

    from .helpers import ROOT

    spec = importlib.util.spec_from_file_location("gpu_report", ROOT / "bench" / "gpu_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    (tmp_path / "phases.tsv").write_text("gpu-tests\tpassed\t41\nbench\ttimed out after 200 s\t200\n")
    (tmp_path / "junit-gpu-tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="tests.training.test_gpu" name="test_a" time="2.5"/>'
        '<testcase classname="tests.training.test_gpu" name="test_b"><failure message="boom"/></testcase>'
        '<testcase classname="tests.training.test_gpu" name="test_te"><skipped message="no TE"/></testcase>'
        '</testsuite></testsuites>')
    text = report.write_results(tmp_path)
    assert "peak: not measured" in text and "Not run or did not finish" in text  # nothing invented
    assert "gpu-tests: 1 passed, 1 failed, 1 skipped" in text and "| test_gpu::test_b | FAILED | boom |" in text
    assert "| bench | timed out after 200 s | 200 |" in text and "Transformer Engine" in text
    (tmp_path / "peak.json").write_text(json.dumps({"tflops": 790.4, "n": 8192, "iters": 10, "device": "H200"}))
    (tmp_path / "bench.json").write_text(json.dumps([{"model": "qwen2.5-0.5b", "precision": "bf16", "seq": 4096,
                                                      "tokens/step": 20000, "step_s": 0.5, "tokens/s": 40000.0,
                                                      "TFLOP/s/GPU": 150.0, "MFU%": 19.0, "loss": 12.0}]))
    text = report.write_results(tmp_path)
    assert "**790 TFLOP/s**" in text and "| qwen2.5-0.5b | bf16 | 4096 | 20000 | 0.500 | 40000.0 | 150.0 | 19.0 |" in text
