"""Build a tiny random-weight Qwen2 model directory that vLLM can serve, with no model hub.

    .venv/bin/python scripts/make_tiny_hf_model.py OUT_DIR [--vocab 512] [--seed 0]

Why: tests and benchmarks of the critic client need a *real* OpenAI-compatible vLLM server, and
no machine here reaches a model hub. The labels such a model produces mean nothing; what matters
is that the server tokenises, schedules, decodes under a JSON-schema grammar and answers like a
real one. Facts behind the shape (../shared/notes/vllm-cpu.md): head_dim must be >= 32 (vLLM's
CPU attention rejects 16 at the first request), the config's vocab_size must cover the
tokenizer, and the tokenizer is a byte-level BPE trained here (so any text tokenises) with the
ChatML special tokens and chat template. Deterministic for a given seed; builds in seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def build_tokenizer(vocab_size: int):
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


def build(out_dir: str | Path, vocab_size: int = 512, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(vocab_size)
    n_vocab = max(vocab_size, len(tok))
    config = Qwen2Config(
        vocab_size=n_vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=32768,
        tie_word_embeddings=True, torch_dtype="float32",
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id}) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="directory to write (config.json, safetensors, tokenizer files)")
    parser.add_argument("--vocab", type=int, default=512, help="BPE vocabulary size (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args()
    print(build(args.out_dir, args.vocab, args.seed))


if __name__ == "__main__":
    main()
