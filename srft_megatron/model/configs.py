"""Named Qwen2.5 shapes: the one place that says what each model size looks like.

Every Qwen2.5 dense model is the same architecture (RMSNorm, SwiGLU, QKV bias, grouped-query
attention, RoPE with base 1e6); sizes differ only in the numbers below, copied from the
published Hugging Face `config.json` of each checkpoint. The converter (HF <-> Megatron) and
the trainer both build from a `Qwen2Shape`, so a checkpoint converted from HF and a model
built for training agree on every dimension by construction.

`vocab_size` is the number of *rows of the embedding matrix* (Qwen pads its 151,665-token
tokenizer to 151,936 or 152,064 rows), not the tokenizer's length.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srft_megatron.errors import ConfigError


@dataclass(frozen=True)
class Qwen2Shape:
    """Dimensions of a Qwen2-architecture decoder (names follow megatron-core)."""

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    vocab_size: int
    tie_word_embeddings: bool
    kv_channels: int | None = None  # head dim; None means hidden_size // num_attention_heads
    rotary_base: float = 1_000_000.0
    norm_epsilon: float = 1e-6
    max_position_embeddings: int = 32768
    seq_length: int = 4096  # default training sequence length
    init_method_std: float = 0.02
    bos_token_id: int | None = 151643
    eos_token_id: int | None = 151645

    def __post_init__(self) -> None:
        if self.kv_channels is None:
            object.__setattr__(self, "kv_channels", self.hidden_size // self.num_attention_heads)
        self.validate()

    def validate(self) -> None:
        if self.num_attention_heads % self.num_query_groups:
            raise ConfigError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                              f"num_query_groups={self.num_query_groups}")
        if self.seq_length > self.max_position_embeddings:
            raise ConfigError(f"seq_length={self.seq_length} exceeds max_position_embeddings="
                              f"{self.max_position_embeddings}")
        for name in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    def replace(self, **changes: Any) -> "Qwen2Shape":
        return dataclasses.replace(self, **changes)

    def num_parameters(self) -> int:
        """Parameter count (embedding counted once when tied)."""
        h, f, kv = self.hidden_size, self.ffn_hidden_size, self.kv_channels
        q_out = self.num_attention_heads * kv
        kv_out = 2 * self.num_query_groups * kv
        attn = h * (q_out + kv_out) + (q_out + kv_out) + q_out * h
        mlp = 2 * h * f + f * h
        norms = 2 * h
        per_layer = attn + mlp + norms
        emb = self.vocab_size * h
        return self.num_layers * per_layer + h + emb * (1 if self.tie_word_embeddings else 2)

    # ---- Hugging Face Qwen2Config <-> shape -------------------------------------------------
    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any], *, seq_length: int | None = None) -> "Qwen2Shape":
        """Build from a HF `Qwen2Config` dict (the contents of `config.json`)."""
        model_type = cfg.get("model_type")
        if model_type not in (None, "qwen2"):
            raise ConfigError(f"expected a qwen2 config, got model_type={model_type!r}")
        try:
            heads = int(cfg["num_attention_heads"])
            hidden = int(cfg["hidden_size"])
            max_pos = int(cfg.get("max_position_embeddings", 32768))
            return cls(
                num_layers=int(cfg["num_hidden_layers"]),
                hidden_size=hidden,
                ffn_hidden_size=int(cfg["intermediate_size"]),
                num_attention_heads=heads,
                num_query_groups=int(cfg.get("num_key_value_heads", heads)),
                kv_channels=int(cfg.get("head_dim") or hidden // heads),
                vocab_size=int(cfg["vocab_size"]),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                rotary_base=_rope_base(cfg),
                norm_epsilon=float(cfg.get("rms_norm_eps", 1e-6)),
                max_position_embeddings=max_pos,
                seq_length=min(seq_length or 4096, max_pos),
                init_method_std=float(cfg.get("initializer_range", 0.02)),
                bos_token_id=cfg.get("bos_token_id"),
                eos_token_id=cfg.get("eos_token_id"),
            )
        except KeyError as exc:
            raise ConfigError(f"HF config lacks required key {exc.args[0]!r}") from None

    def to_hf_config(self, torch_dtype: str = "bfloat16") -> dict[str, Any]:
        """The HF `Qwen2Config` dict for this shape (what `config.json` holds)."""
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": self.init_method_std,
            "intermediate_size": self.ffn_hidden_size,
            "max_position_embeddings": self.max_position_embeddings,
            "max_window_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_layers,
            "num_key_value_heads": self.num_query_groups,
            "head_dim": self.kv_channels,
            "rms_norm_eps": self.norm_epsilon,
            "rope_theta": self.rotary_base,
            "rope_scaling": None,
            "sliding_window": None,
            "use_sliding_window": False,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": torch_dtype,
            "use_cache": True,
            "vocab_size": self.vocab_size,
        }


def _qwen(layers, hidden, ffn, heads, groups, vocab, tie, eps=1e-6, max_pos=32768) -> Qwen2Shape:
    return Qwen2Shape(num_layers=layers, hidden_size=hidden, ffn_hidden_size=ffn,
                      num_attention_heads=heads, num_query_groups=groups, vocab_size=vocab,
                      tie_word_embeddings=tie, norm_epsilon=eps, max_position_embeddings=max_pos)


# Published Qwen2.5 configs (Hugging Face `Qwen/<name>/config.json`).
QWEN2_SHAPES: dict[str, Qwen2Shape] = {
    "qwen2.5-0.5b": _qwen(24, 896, 4864, 14, 2, 151936, True),
    "qwen2.5-1.5b": _qwen(28, 1536, 8960, 12, 2, 151936, True),
    "qwen2.5-3b": _qwen(36, 2048, 11008, 16, 2, 151936, True),
    "qwen2.5-7b": _qwen(28, 3584, 18944, 28, 4, 152064, False, max_pos=131072),
    "qwen2.5-14b": _qwen(48, 5120, 13824, 40, 8, 152064, False, eps=1e-5, max_pos=131072),
    "qwen2.5-32b": _qwen(64, 5120, 27648, 40, 8, 152064, False, eps=1e-5, max_pos=131072),
    "qwen2.5-coder-32b-instruct": _qwen(64, 5120, 27648, 40, 8, 152064, False),
    # Test shapes: Qwen2-shaped (GQA, QKV bias, SwiGLU, tied embeddings), tiny.
    "tiny": Qwen2Shape(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                       num_query_groups=2, kv_channels=16, vocab_size=512, tie_word_embeddings=True,
                       max_position_embeddings=2048, seq_length=128, bos_token_id=None, eos_token_id=None),
    "tiny-untied": Qwen2Shape(num_layers=4, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                              num_query_groups=2, kv_channels=16, vocab_size=512, tie_word_embeddings=False,
                              max_position_embeddings=2048, seq_length=128, bos_token_id=None,
                              eos_token_id=None),
    "tiny-qwen-vocab": Qwen2Shape(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                                  num_query_groups=2, kv_channels=16, vocab_size=151936,
                                  tie_word_embeddings=True, max_position_embeddings=32768, seq_length=1024),
}


def _rope_base(cfg: dict) -> float:
    """RoPE base: `rope_theta` (transformers 4) or `rope_parameters.rope_theta` (transformers 5)."""
    if cfg.get("rope_theta") is not None:
        return float(cfg["rope_theta"])
    params = cfg.get("rope_parameters") or {}
    if params.get("rope_type", "default") not in ("default", None):
        raise ConfigError(f"rope scaling {params.get('rope_type')!r} is not supported")
    return float(params.get("rope_theta", 1_000_000.0))


def get_shape(name_or_path: str | Path, **overrides: Any) -> Qwen2Shape:
    """A named shape, or one read from a HF `config.json` (file or directory holding one)."""
    key = str(name_or_path)
    if key.lower() in QWEN2_SHAPES:
        shape = QWEN2_SHAPES[key.lower()]
    else:
        path = Path(key)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"unknown model {key!r}: not one of {', '.join(QWEN2_SHAPES)} "
                              f"and no HF config.json at {path}")
        shape = Qwen2Shape.from_hf_config(json.loads(path.read_text(encoding="utf-8")))
    return shape.replace(**overrides) if overrides else shape
