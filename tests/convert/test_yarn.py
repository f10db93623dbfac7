"""YaRN long context: a tiny Qwen2 with YaRN (original context 128, factor 4) made with
transformers converts to Megatron with megatron-core's `position_embedding_type="yarn"` and
gives the same logits on 400 tokens (past the original context), and the round trip keeps
`rope_scaling`. One subprocess runs the conversion and the verification (the CPU shim stays
out of the pytest process)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from srft_megatron.convert.from_hf import shape_from_hf
from srft_megatron.convert.to_hf import convert_megatron_to_hf
from srft_megatron.errors import InputError
from srft_megatron.model.configs import QWEN2_SHAPES, Qwen2Shape, YarnScaling
from tests.convert.test_roundtrip import WORKER, _assert_bitwise_equal, _ok, _run
from srft_megatron.convert.tiny_hf import save_tiny_qwen2

YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128}
TOKENS = 400


@pytest.fixture(scope="module")
def yarn_converted(tmp_path_factory):
    base = tmp_path_factory.mktemp("yarn")
    hf = save_tiny_qwen2(base / "hf-yarn", tied=False, seed=5, rope_scaling=dict(YARN), max_position_embeddings=512)
    ckpt = base / "ckpt-yarn"
    proc = _ok(_run([sys.executable, str(WORKER), f"from-hf:{hf}:{ckpt}:1:1", f"verify:{hf}:{ckpt}:{TOKENS}"]))
    report = next(json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("VERIFY "))
    return hf, ckpt, report


def test_yarn_hf_to_megatron_logits_match(yarn_converted):
    _, _, report = yarn_converted
    assert report["tokens"] == TOKENS
    assert report["max_abs_logit_diff"] <= 1e-4 and report["greedy_agreement"] == 1.0, report
    assert report["max_abs_loss_diff"] <= 1e-4, report


def test_yarn_matters_past_the_original_context(yarn_converted, tmp_path):
    """The same weights with plain RoPE give other logits: the check above can fail."""
    from transformers import AutoModelForCausalLM

    hf, _, _ = yarn_converted
    plain = tmp_path / "plain"
    shutil.copytree(hf, plain)
    cfg = json.loads((plain / "config.json").read_text())
    cfg.pop("rope_scaling", None)
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6}
    (plain / "config.json").write_text(json.dumps(cfg))
    ids = torch.randint(0, 250, (1, TOKENS), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(str(hf), local_files_only=True).eval()(ids).logits
        b = AutoModelForCausalLM.from_pretrained(str(plain), local_files_only=True).eval()(ids).logits
    assert (a - b).abs().max().item() > 1e-2


def test_yarn_round_trip_keeps_rope_scaling(yarn_converted, tmp_path):
    from transformers import AutoConfig

    hf, ckpt, _ = yarn_converted
    out = convert_megatron_to_hf(str(ckpt), str(tmp_path / "hf"), tokenizer=None, progress=False)
    assert _assert_bitwise_equal(hf, out) == 2 * 12 + 3
    written = json.loads((out / "config.json").read_text())
    assert {k: written["rope_scaling"][k] for k in YARN} == YARN  # Qwen's spelling, for vLLM
    original, exported = AutoConfig.from_pretrained(str(hf)), AutoConfig.from_pretrained(str(out))
    assert exported.rope_parameters == original.rope_parameters
    assert exported.rope_parameters["rope_type"] == "yarn"
    shape = shape_from_hf(written, "config.json")
    assert shape.rope_scaling == YarnScaling(factor=4.0, original_max_position_embeddings=128)
    assert shape.max_position_embeddings == 512


def test_shapes_read_and_write_yarn():
    long = QWEN2_SHAPES["qwen2.5-coder-32b-instruct-128k"]
    assert long.max_position_embeddings == 131072 and long.rope_scaling.context_length == 131072
    assert long.num_parameters() == QWEN2_SHAPES["qwen2.5-coder-32b-instruct"].num_parameters()
    # Qwen's documented config.json: max_position_embeddings stays 32768, rope_scaling added
    published = {**QWEN2_SHAPES["qwen2.5-coder-32b-instruct"].to_hf_config(), "rope_scaling": dict(YARN, factor=4.0,
                 original_max_position_embeddings=32768)}
    assert Qwen2Shape.from_hf_config(published, seq_length=131072) == long.replace(seq_length=131072)
    assert Qwen2Shape.from_hf_config(long.to_hf_config()) == long
    assert abs(long.rope_scaling.attention_factor - (0.1 * torch.log(torch.tensor(4.0)).item() + 1)) < 1e-7


def test_unsupported_rope_types_are_refused():
    cfg = {**QWEN2_SHAPES["tiny"].to_hf_config(), "rope_scaling": {"type": "dynamic", "factor": 2.0}}
    with pytest.raises(InputError, match="rope type 'dynamic' is not supported"):
        shape_from_hf(cfg, "config.json")
    cfg["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                           "attention_factor": 2.0}
    with pytest.raises(InputError, match="attention_factor"):
        shape_from_hf(cfg, "config.json")
