"""Named Qwen2.5 shapes: the one place that says what each model size looks like.

Every Qwen2.5 dense model is the same architecture (RMSNorm, SwiGLU, QKV bias, grouped-query
attention, RoPE with base 1e6); sizes differ only in the numbers below, copied from the
published Hugging Face `config.json` of each checkpoint. The converter (HF <-> Megatron) and
the trainer both build from a `Qwen2Shape`, so a checkpoint converted from HF and a model
built for training agree on every dimension by construction.

`vocab_size` is the number of *rows of the embedding matrix* (Qwen pads its 151,665-token
tokenizer to 151,936 or 152,064 rows), not the tokenizer's length.

Long context: Qwen documents YaRN (factor 4 over the 32,768 positions RoPE was trained on) for
Qwen2.5 up to 131,072 tokens, by adding `rope_scaling` to `config.json`. `YarnScaling` holds those
settings; the `-128k` shapes carry it. transformers (`rope_parameters`) and megatron-core
(`position_embedding_type="yarn"`, see `model/provider.py`) compute the same frequencies and
attention factor from it (`srft convert verify` proves it numerically).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srft_megatron.errors import ConfigError


YARN_DEFAULTS = {"beta_fast": 32.0, "beta_slow": 1.0, "mscale": None, "mscale_all_dim": None, "truncate": True}


@dataclass(frozen=True)
class YarnScaling:
    """YaRN RoPE scaling as HF `rope_scaling` / `rope_parameters` spells it (type "yarn").

    The attention factor is derived as transformers and megatron-core both derive it:
    0.1 ln(factor) + 1, or the mscale / mscale_all_dim ratio when both are set."""

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True   # round the correction range to whole dimensions (megatron's round_to_int)

    def __post_init__(self) -> None:
        if not self.factor >= 1.0 or self.original_max_position_embeddings <= 0:
            raise ConfigError(f"yarn rope_scaling needs factor >= 1 and original_max_position_embeddings > 0, "
                              f"got factor={self.factor}, original={self.original_max_position_embeddings}")

    @property
    def context_length(self) -> int:
        return int(self.original_max_position_embeddings * self.factor)

    @property
    def attention_factor(self) -> float:
        def get(scale: float, m: float = 1.0) -> float:
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        if self.mscale and self.mscale_all_dim:
            return get(self.factor, self.mscale) / get(self.factor, self.mscale_all_dim)
        return get(self.factor)

    @classmethod
    def from_hf(cls, params: dict[str, Any]) -> "YarnScaling":
        """From a `rope_scaling` / `rope_parameters` dict whose type is yarn."""
        try:
            scaling = cls(factor=float(params["factor"]),
                          original_max_position_embeddings=int(params["original_max_position_embeddings"]),
                          beta_fast=float(params.get("beta_fast") or 32.0),
                          beta_slow=float(params.get("beta_slow") or 1.0),
                          mscale=params.get("mscale"), mscale_all_dim=params.get("mscale_all_dim"),
                          truncate=bool(params.get("truncate", True)))
        except KeyError as exc:
            raise ConfigError(f"yarn rope_scaling lacks {exc.args[0]!r}") from None
        given = params.get("attention_factor")
        if given is not None and abs(float(given) - scaling.attention_factor) > 1e-9:
            # megatron-core derives the factor from mscale; an arbitrary one cannot be expressed
            raise ConfigError(f"yarn attention_factor={given} differs from the derived "
                              f"{scaling.attention_factor:.6f}; megatron-core cannot use it")
        return scaling

    def to_hf(self) -> dict[str, Any]:
        """`rope_scaling` as Qwen documents it (`type`), plus `rope_type` for transformers >= 4.45."""
        out: dict[str, Any] = {"type": "yarn", "rope_type": "yarn", "factor": self.factor,
                               "original_max_position_embeddings": self.original_max_position_embeddings}
        out.update({k: getattr(self, k) for k, v in YARN_DEFAULTS.items() if getattr(self, k) != v})
        return out


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
    rope_scaling: YarnScaling | None = None  # YaRN long-context scaling (None: plain RoPE)

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
            scaling = _rope_scaling(cfg)
            if scaling is not None:  # Qwen's documented recipe keeps max_position_embeddings at 32k
                max_pos = max(max_pos, scaling.context_length)
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
                rope_scaling=scaling,
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
            "rope_scaling": self.rope_scaling.to_hf() if self.rope_scaling else None,
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


# Qwen's long-context recipe (Qwen2.5 model cards): YaRN, factor 4 over 32,768 positions.
QWEN_YARN_128K = YarnScaling(factor=4.0, original_max_position_embeddings=32768)


def _long(shape: Qwen2Shape) -> Qwen2Shape:
    return shape.replace(rope_scaling=QWEN_YARN_128K, max_position_embeddings=QWEN_YARN_128K.context_length)


# Published Qwen2.5 configs (Hugging Face `Qwen/<name>/config.json`).
QWEN2_SHAPES: dict[str, Qwen2Shape] = {
    "qwen2.5-0.5b": _qwen(24, 896, 4864, 14, 2, 151936, True),
    "qwen2.5-1.5b": _qwen(28, 1536, 8960, 12, 2, 151936, True),
    "qwen2.5-3b": _qwen(36, 2048, 11008, 16, 2, 151936, True),
    "qwen2.5-7b": _qwen(28, 3584, 18944, 28, 4, 152064, False, max_pos=131072),
    "qwen2.5-14b": _qwen(48, 5120, 13824, 40, 8, 152064, False, eps=1e-5, max_pos=131072),
    "qwen2.5-32b": _qwen(64, 5120, 27648, 40, 8, 152064, False, eps=1e-5, max_pos=131072),
    "qwen2.5-coder-32b-instruct": _qwen(64, 5120, 27648, 40, 8, 152064, False),
}
for _name in ("qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-coder-32b-instruct"):
    QWEN2_SHAPES[f"{_name}-128k"] = _long(QWEN2_SHAPES[_name])
QWEN2_SHAPES |= {
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
    "tiny-yarn": Qwen2Shape(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                            num_query_groups=2, kv_channels=16, vocab_size=512, tie_word_embeddings=True,
                            max_position_embeddings=2048, seq_length=512, bos_token_id=None, eos_token_id=None,
                            rope_scaling=YarnScaling(factor=4.0, original_max_position_embeddings=512)),
}


def _rope_base(cfg: dict) -> float:
    """RoPE base: `rope_theta` (transformers 4) or `rope_parameters.rope_theta` (transformers 5)."""
    if cfg.get("rope_theta") is not None:
        return float(cfg["rope_theta"])
    params = cfg.get("rope_parameters") or {}
    return float(params.get("rope_theta", 1_000_000.0))


def rope_type(cfg: dict) -> str:
    """"default" or "yarn" (or another type, which callers refuse) from either spelling:
    `rope_scaling` (Qwen's documentation, transformers 4) or `rope_parameters` (transformers 5)."""
    for key in ("rope_scaling", "rope_parameters"):
        params = cfg.get(key) or {}
        kind = params.get("rope_type") or params.get("type")
        if kind not in (None, "default"):
            return str(kind)
    return "default"


def _rope_scaling(cfg: dict) -> YarnScaling | None:
    kind = rope_type(cfg)
    if kind == "default":
        return None
    if kind != "yarn":
        raise ConfigError(f"rope type {kind!r} is not supported (default RoPE or yarn)")
    params = cfg.get("rope_scaling") or {}
    if (params.get("rope_type") or params.get("type")) != "yarn":
        params = cfg.get("rope_parameters") or {}
    return YarnScaling.from_hf(params)


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
