"""srft-megatron: Step Rejection Fine-Tuning (SRFT) of Qwen2.5 on megatron-core.

The pipeline's stages meet only through files (see DESIGN: trajectories.jsonl, labels.jsonl,
Megatron indexed datasets with a loss-weight channel, dist checkpoints, HF directories).
Light public API is importable without torch; heavy parts import megatron-core lazily.
"""

__version__ = "0.1.0"


def load_tokenizer(name_or_path: str = "qwen2.5"):
    """The Hugging Face tokenizer for `name_or_path` ("qwen2.5", offline, or a HF directory)."""
    from srft_megatron.tokenizer import load_tokenizer as _load

    return _load(name_or_path)


__all__ = ["load_tokenizer", "__version__"]
