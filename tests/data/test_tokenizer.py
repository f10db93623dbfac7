"""The offline Qwen2.5 tokenizer gives the published Qwen2.5 ids and chat template."""

from __future__ import annotations

from srft_megatron.tokenizer import QWEN_SPECIAL_TOKENS


def test_known_strings_have_published_ids(tokenizer):
    assert tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [9707, 1879]
    # The default system turn of every Qwen2.5-Instruct prompt, as published tokenizers encode it.
    text = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == [
        151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264,
        10950, 17847, 13, 151645, 198]
    assert tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"] == [151644, 77091, 198]


def test_special_tokens_and_sizes(tokenizer):
    assert len(tokenizer) == 151665
    for offset, token in enumerate(QWEN_SPECIAL_TOKENS):
        assert tokenizer.convert_tokens_to_ids(token) == 151643 + offset
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 151645
    assert tokenizer.pad_token == "<|endoftext|>"


def test_chat_template_renders_tool_calls_and_merges_tool_turns(tokenizer):
    messages = [
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            {"type": "function", "function": {"name": "bash", "arguments": {"command": "ls"}}}]},
        {"role": "tool", "content": "a.py"},
        {"role": "tool", "content": "b.py"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    assert ('<|im_start|>assistant\nLooking.\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}'
            "\n</tool_call><|im_end|>\n") in text
    assert text.endswith("<|im_start|>user\n<tool_response>\na.py\n</tool_response>\n<tool_response>\n"
                         "b.py\n</tool_response><|im_end|>\n")


def test_hf_directory_round_trip(tokenizer, tmp_path):
    from srft_megatron import load_tokenizer

    tokenizer.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    assert again("def f(x):\n    return x", add_special_tokens=False)["input_ids"] == \
        tokenizer("def f(x):\n    return x", add_special_tokens=False)["input_ids"]
    assert again.chat_template == tokenizer.chat_template
