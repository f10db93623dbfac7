"""Validation during training: per-label NLL on held-out trajectories (issue 13).

    srft train --config configs/tiny.yaml --run-dir runs/tiny data.prefixes=[data/srft] \\
        data.validation_fraction=0.1 train.eval_interval=50 train.eval_samples=16

Why: the one weighted training loss cannot say whether SRFT does what it claims. What a user
watches is the NLL of each kind of step on trajectories the model never trained on: kept
(`good`) steps should get more likely, `harmful` steps (in context, never trained) should not.

The validation set is fixed for the whole run, so every eval measures the same tokens:
- `data.validation_prefixes`: every document of those datasets; or
- `data.validation_fraction`: per training prefix the documents `data.held_out_documents` picks
  (seeded by `data.seed`), which the training dataset leaves out.
Its documents are packed as for training (`data.pack_documents`, `data.assemble_sample` with
the label channel, so the label codes are shifted by `dataset.shifted_example` like the loss
weights), sources interleaved sample by sample; the first `train.eval_samples` sequences are
the validation batch (fewer real samples: the rest are padding, which counts for nothing). DP
rank r takes the r-th contiguous share, in micro-batches of `train.micro_batch_size`.

One eval is megatron-core's `get_forward_backward_func()(forward_only=True)` over those
micro-batches (the trainer's own forward step: same masks / THD parameters, same layout). Each
micro-batch's loss function returns `label_nll.eval_sums` (sums, never means); they are added
over micro-batches, all-reduced over data parallel and broadcast from the last pipeline stage,
exactly as the trainer reduces its loss, and divided once (`label_nll.eval_metrics`). So any
TP/PP/DP layout gives the numbers of one process (tests/training/test_train.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from srft_megatron.training.label_nll import EVAL_SIZE, eval_metrics, eval_sums


@dataclass
class EvalSource:
    """Documents `doc_ids` of one dataset (tokens, weights and its label channel)."""

    prefix: str
    docs: Any
    labels: Any
    doc_ids: np.ndarray


def validation_sources(data_cfg) -> list[EvalSource]:
    """The validation documents `data.validation_prefixes` / `data.validation_fraction` name
    (empty when neither is set)."""
    from srft_megatron.dataset import open_dataset, open_labels
    from srft_megatron.training.data import held_out_documents

    sources = []
    if data_cfg.validation_prefixes:
        for prefix in data_cfg.validation_prefixes:
            docs = open_dataset(prefix)
            sources.append(EvalSource(str(prefix), docs, open_labels(prefix), np.arange(len(docs), dtype=np.int64)))
    elif data_cfg.validation_fraction > 0:
        for prefix in data_cfg.prefixes:
            docs = open_dataset(prefix)
            held = held_out_documents(len(docs), data_cfg.validation_fraction, data_cfg.seed)
            sources.append(EvalSource(str(prefix), docs, open_labels(prefix), held))
    return sources


def validation_samples(sources: list[EvalSource], *, seq_length: int, num_samples: int, seed: int,
                       pack: bool = True, vocab_size: int | None = None,
                       length_multiple: int = 1) -> list[dict[str, np.ndarray]]:
    """`num_samples` packed sequences of the validation documents (see module docstring);
    `length_multiple`: as `data.pack_documents` (2 x CP under context parallelism)."""
    from srft_megatron.training.data import assemble_sample, pack_documents

    per_source = []
    for src in sources:
        lengths = src.docs.tokens.sequence_lengths[src.doc_ids].astype(np.int64)
        order, bounds = pack_documents(lengths, seq_length, None, seed, pack, length_multiple)
        per_source.append([(src, src.doc_ids[order[bounds[i]:bounds[i + 1]]]) for i in range(len(bounds) - 1)])
    groups = [p[k] for k in range(max((len(p) for p in per_source), default=0)) for p in per_source if k < len(p)]
    samples = [assemble_sample(src.docs, ids, seq_length, vocab_size, labels=src.labels)
               for src, ids in groups[:num_samples]]
    if len(samples) < num_samples:
        empty = assemble_sample(sources[0].docs, [], seq_length, vocab_size, labels=sources[0].labels)
        samples += [empty] * (num_samples - len(samples))
    return samples


def eval_loss(output_tensor: torch.Tensor, label_codes: torch.Tensor, loss_weights: torch.Tensor,
              resolved: torch.Tensor):
    """Megatron loss-function contract for a forward-only pass over per-token NLL [b, s]: the loss
    is the micro-batch's weighted NLL sum (unused), the report its `eval_sums`."""
    w = loss_weights.to(output_tensor.device, torch.float32)
    loss = (output_tensor.float() * w).sum()
    sums = eval_sums(output_tensor, label_codes, loss_weights, resolved)
    return loss, (w > 0).sum().to(torch.int), {"eval_sums": sums}


def eval_loss_for(mb: dict[str, torch.Tensor], device) -> Callable:
    """`loss_func(output_tensor)` of one validation micro-batch (the trainer's forward step calls it)."""
    return partial(eval_loss, label_codes=mb["label_codes"].to(device),
                   loss_weights=mb["loss_weights"].to(device), resolved=mb["resolved"].to(device))


class Evaluator:
    """This data-parallel rank's validation micro-batches, built once; `run` evaluates a model."""

    def __init__(self, samples: list[dict[str, np.ndarray]], *, micro_batch_size: int, dp_rank: int,
                 dp_size: int):
        from srft_megatron.training.data import collate

        if len(samples) % (micro_batch_size * dp_size):
            raise ValueError(f"{len(samples)} validation samples do not split into micro-batches of "
                             f"{micro_batch_size} over {dp_size} data-parallel ranks")
        share = len(samples) // dp_size
        mine = samples[dp_rank * share:(dp_rank + 1) * share]
        self.micro = [collate(mine[i:i + micro_batch_size]) for i in range(0, share, micro_batch_size)]
        self.micro_batch_size = micro_batch_size
        self.bad_documents = [b for s in mine for b in s.get("bad", ())]

    def run(self, model_chunks, forward_step_func, seq_length: int) -> dict[str, float]:
        """The `val/...` metrics of the model now (forward only, no gradients; the chunks are put
        back in training mode)."""
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from srft_megatron.training.loss import reduce_reports

        start = time.perf_counter()
        for chunk in model_chunks:
            chunk.eval()
        try:
            with torch.no_grad():
                iters = [iter(self.micro) for _ in model_chunks]
                reports = get_forward_backward_func()(
                    forward_step_func=forward_step_func, data_iterator=iters if len(iters) > 1 else iters[0],
                    model=model_chunks, num_microbatches=len(self.micro), seq_length=seq_length,
                    micro_batch_size=self.micro_batch_size, forward_only=True)
        finally:
            for chunk in model_chunks:
                chunk.train()
        metrics = eval_metrics(reduce_reports(reports, "eval_sums", EVAL_SIZE))
        metrics["val/time_s"] = time.perf_counter() - start
        return metrics
