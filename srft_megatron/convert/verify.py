"""Numerical proof that a Megatron checkpoint and an HF directory are the same model.

    srft convert verify --hf hf/Qwen2.5-0.5B-Instruct --checkpoint ckpt/init \\
        --trajectory ../shared/data/trajectories/function_calling_simple.traj --max-tokens 512

Runs the HF model (transformers) and the Megatron model (the trainer's GPTModel, loaded with
the trainer's checkpoint loader at TP=1/PP=1 in this process) on the same tokens, in float32
by default, and reports the max/mean absolute logit difference, the agreement of greedy next
tokens, and the difference of per-token losses (HF: cross-entropy of its logits; Megatron:
the model's own `labels=` loss, the path training uses). A converter is trustworthy only when
this says so: conversion bugs (a swapped gate/up, a mis-interleaved QKV, a lost bias) do not
crash, they only change numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from srft_megatron.errors import InputError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class VerifyReport:
    tokens: int
    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    greedy_agreement: float        # fraction of positions whose argmax agrees
    max_abs_loss_diff: float       # per-token loss, next-token prediction
    mean_loss_hf: float
    mean_loss_megatron: float

    def passed(self, atol: float) -> bool:
        return self.max_abs_logit_diff <= atol and self.greedy_agreement == 1.0

    def table(self) -> str:
        rows = [("tokens", f"{self.tokens}"),
                ("max |logit diff|", f"{self.max_abs_logit_diff:.3e}"),
                ("mean |logit diff|", f"{self.mean_abs_logit_diff:.3e}"),
                ("greedy next tokens agree", f"{self.greedy_agreement * 100:.2f}%"),
                ("max |per-token loss diff|", f"{self.max_abs_loss_diff:.3e}"),
                ("mean loss HF / Megatron", f"{self.mean_loss_hf:.6f} / {self.mean_loss_megatron:.6f}")]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def to_json(self) -> dict:
        return asdict(self)


def trajectory_tokens(path: str | Path, tokenizer_name: str = "qwen2.5", render: str = "tools") -> list[int]:
    """Token ids of the first trajectory in `path` (.traj / .jsonl), rendered exactly as
    `srft preprocess` renders it (chat template, step spans)."""
    from srft_megatron import load_tokenizer
    from srft_megatron.ingest import read_any
    from srft_megatron.render import StepRenderer

    for item in read_any(path):
        if isinstance(item.result, InputError):
            raise item.result.located(file=item.file, line=item.line)
        rendered = StepRenderer(load_tokenizer(tokenizer_name), mode=render).render(item.result)
        return [int(t) for t in rendered.input_ids]
    raise InputError("no trajectory in file", file=str(path))


def load_hf_model(hf_dir: str | Path, precision: str = "fp32"):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=PRECISIONS[precision],
                                                 local_files_only=True, attn_implementation="eager")
    return model.eval()


def load_megatron_model(ckpt_dir: str | Path, shape, precision: str = "fp32"):
    """The trainer's GPTModel at TP=1/PP=1 in this process, loaded by the trainer's loader."""
    from srft_megatron.model.provider import build_gpt_model
    from srft_megatron.parallel.dims import ParallelDims, initialize
    from srft_megatron.training.checkpoint import load_model_checkpoint

    initialize(ParallelDims())
    model = build_gpt_model(shape, precision=precision, perform_initialization=False)
    load_model_checkpoint([model], ckpt_dir)
    return model.eval()


def megatron_forward(model, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [b, s, V], per-token loss [b, s-1]) of a megatron GPTModel on `ids` [b, s]."""
    b, s = ids.shape
    position_ids = torch.arange(s).unsqueeze(0).expand(b, s)
    mask = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1).view(1, 1, s, s)  # True = masked
    with torch.no_grad():
        logits = model(ids, position_ids, mask)
        labels = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)  # last position's label is discarded
        loss = model(ids, position_ids, mask, labels=labels)
    return logits.float(), loss[:, :-1].float()


def compare(hf_model, megatron_model, ids: Sequence[int], vocab_rows: int) -> VerifyReport:
    tokens = torch.tensor([list(ids)], dtype=torch.long)
    if tokens.shape[1] < 2:
        raise InputError("verify needs at least 2 tokens")
    with torch.no_grad():
        hf_logits = hf_model(input_ids=tokens).logits.float()
    meg_logits, meg_loss = megatron_forward(megatron_model, tokens)
    meg_logits = meg_logits[..., :vocab_rows]  # drop Megatron's vocabulary padding, if any
    hf_loss = F.cross_entropy(hf_logits[0, :-1], tokens[0, 1:], reduction="none").unsqueeze(0)
    diff = (hf_logits - meg_logits).abs()
    agree = (hf_logits.argmax(-1) == meg_logits.argmax(-1)).float().mean().item()
    report = VerifyReport(tokens=tokens.shape[1], max_abs_logit_diff=diff.max().item(),
                          mean_abs_logit_diff=diff.mean().item(), greedy_agreement=agree,
                          max_abs_loss_diff=(hf_loss - meg_loss).abs().max().item(),
                          mean_loss_hf=hf_loss.mean().item(), mean_loss_megatron=meg_loss.mean().item())
    if not all(math.isfinite(v) for v in (report.max_abs_logit_diff, report.mean_loss_megatron)):
        raise InputError("non-finite logits: the checkpoint is corrupt or was not filled")
    return report


def verify(hf_dir: str, ckpt_dir: str, ids: Sequence[int], precision: str = "fp32") -> VerifyReport:
    from srft_megatron.convert.from_hf import shape_from_hf
    from srft_megatron.convert.hf_io import read_hf_config

    config = read_hf_config(hf_dir)
    shape = shape_from_hf(config, str(Path(hf_dir) / "config.json"))
    if max(ids) >= shape.vocab_size:
        raise InputError(f"token id {max(ids)} is outside the model's vocabulary ({shape.vocab_size} rows)")
    hf_model = load_hf_model(hf_dir, precision)
    megatron_model = load_megatron_model(ckpt_dir, shape, precision)
    return compare(hf_model, megatron_model, ids, shape.vocab_size)
