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


# Strings where normalisation, pre-tokenisation or byte-level BPE could go wrong: decomposed
# combining marks (NFC composes them), compatibility characters (NFC keeps them; NFKC would not),
# the Angstrom sign (NFC maps it to U+00C5), Hangul jamo, CJK and full-width forms, emoji with
# modifiers and joiners, CRLF, tabs and code.
TRICKY = [
    "Cafe\u0301 cafe\u0301s na\u0303o Tie\u0302\u0301ng Vie\u0323\u0302t",
    "\u212b \u00c5 A\u030a \ufb01 \u2460 \u210c \u00bd",
    "\u1100\u1161\u11a8 \ud55c\uad6d\uc5b4",
    "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5\uff0c\u5168\u89d2\uff1a\uff21\uff22\uff23 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\U0001f44d\U0001f3fd family \U0001f468\u200d\U0001f469\u200d\U0001f467 flag \U0001f1ef\U0001f1f5 \u2764\ufe0f",
    "line1\r\nline2\r\n\r\n  \r\n\ttab\n",
    "def f(x):\n\tif x:\n        return {'a': [1, 2], \"caf\u0065\u0301\": None}  # \u00e9\r\n",
    "diff --git a/x.py b/x.py\n@@ -1,3 +1,3 @@\n-    s = 'Zo\u0308e'\n+    s = 'Zo\u00ebe'\n",
]


def test_nfc_normalisation_matches_transformers_qwen2_tokenizer(tokenizer):
    """transformers' own `Qwen2Tokenizer` (what vLLM loads for Qwen2.5), built from the same BPE
    ranks (vocab + merges of our converted tokenizer), gives the same ids on every tricky string;
    and decomposed text gives the ids of its NFC form."""
    import json
    import unicodedata

    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    reference = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                                                             for m in model["merges"]])
    assert type(reference.backend_tokenizer.normalizer).__name__ == "NFC"
    changed = 0
    for text in TRICKY:
        ours = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ours == reference(text, add_special_tokens=False)["input_ids"], text
        nfc = unicodedata.normalize("NFC", text)
        assert ours == tokenizer(nfc, add_special_tokens=False)["input_ids"], text
        assert tokenizer.decode(ours) == nfc
        changed += nfc != text
    assert changed >= 4  # the set really exercises normalisation
    assert tokenizer("Cafe\u0301", add_special_tokens=False)["input_ids"] == \
        tokenizer("Caf\u00e9", add_special_tokens=False)["input_ids"]
    assert tokenizer("\ufb01", add_special_tokens=False)["input_ids"] != \
        tokenizer("fi", add_special_tokens=False)["input_ids"]  # NFC, not NFKC


def test_decomposed_text_renders_to_the_ids_of_its_nfc_form(tokenizer):
    """The render's round-trip check compares with the normalised text: decomposed input is
    trained on the ids vLLM computes for it, not rejected."""
    from srft_megatron.render import StepRenderer
    from srft_megatron.trajectory import Trajectory

    def render(text):
        return StepRenderer(tokenizer).render(Trajectory.from_json({"id": "t", "messages": [
            {"role": "user", "content": f"fix {text}"}, {"role": "assistant", "content": text}]}))

    decomposed, composed = render(TRICKY[0]), render(unicodedata_nfc(TRICKY[0]))
    assert decomposed.input_ids.tolist() == composed.input_ids.tolist()
    assert [(s.start, s.end) for s in decomposed.steps] == [(s.start, s.end) for s in composed.steps]


def unicodedata_nfc(text):
    import unicodedata

    return unicodedata.normalize("NFC", text)
