"""Tiny random-weight Qwen2ForCausalLM directories, built locally (no model hub).

Every parameter is drawn at random, including the QKV biases and the RMSNorm weights that
Hugging Face initialises to constants: a converter that drops or swaps them must fail.
Run directly to build one: `python -m tests.convert.tiny_hf OUT_DIR [--untied]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=1_000_000.0)


def tiny_qwen2_config(*, vocab_size: int = 250, num_layers: int = 2, tied: bool = True, **overrides):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=vocab_size, num_hidden_layers=num_layers, tie_word_embeddings=tied,
                       bos_token_id=None, eos_token_id=None, **{**TINY, **overrides})


def tiny_qwen2_model(*, vocab_size: int = 250, num_layers: int = 2, tied: bool = True, seed: int = 0,
                     **overrides):
    """`overrides`: other Qwen2Config fields (e.g. head_dim=32, which vLLM's CPU attention needs)."""
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_qwen2_config(vocab_size=vocab_size, num_layers=num_layers, tied=tied,
                                               **overrides))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                param.copy_(0.1 * noise)
            else:
                param.copy_(0.05 * noise)
    return model.eval()


def save_tiny_qwen2(out_dir: str | Path, dtype: torch.dtype = torch.float32, tokenizer: bool = False,
                    **kwargs) -> Path:
    """Save a tiny model (in `dtype`), optionally with the offline Qwen2.5 tokenizer files."""
    out_dir = Path(out_dir)
    tiny_qwen2_model(**kwargs).to(dtype).save_pretrained(str(out_dir))
    if tokenizer:
        from srft_megatron import load_tokenizer

        load_tokenizer("qwen2.5").save_pretrained(str(out_dir))
    return out_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", help="directory to write")
    parser.add_argument("--untied", action="store_true", help="separate lm_head (7B+ style)")
    parser.add_argument("--vocab-size", type=int, default=250, help="embedding rows")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers")
    a = parser.parse_args()
    save_tiny_qwen2(a.out_dir, vocab_size=a.vocab_size, num_layers=a.layers, tied=not a.untied)
