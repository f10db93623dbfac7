"""The SRFT loss: weighted NLL normalised over the *global* batch.

    L = sum_{tokens t in global batch} w_t * NLL_t  /  sum_{t in global batch} w_t

where the global batch is every micro-batch on every data-parallel rank of one optimizer step.
Averaging each micro-batch on its own (Megatron's default, and `run_simple_mcore_train_loop`)
biases a step-masked loss whenever kept-token counts differ between micro-batches, and
megatron-core's per-token mode (`calculate_per_token_loss`) counts tokens as integers, which
cannot express fractional weights. So, like OLMo-core's `loss_div_factor`:

1. before the step, every rank sums the weights of its own micro-batches and the sum is
   all-reduced over the data-parallel group (`global_weight_sum`; the trainer folds the same sum
   into one all-reduce with its data checks, `Trainer._data_stats`) — every rank reads the same
   data in its TP/PP group, so all ranks know the divisor before any forward pass;
2. each micro-batch's loss is `sum(w * nll) / W_global`, so the sum of the gradients of all
   micro-batches on all DP ranks is exactly the gradient of L;
3. the model config sets `calculate_per_token_loss=True` — the schedules then neither divide by
   the micro-batch count nor average over DP (gradients are summed) — and
   `finalize_model_grads_without_token_scaling` is installed so megatron applies no second
   division by its integer token count.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.distributed as dist


def global_weight_sum(micro_batches, dp_group=None) -> torch.Tensor:
    """Sum of loss weights over this rank's micro-batches, all-reduced over data parallel (fp64)."""
    total = torch.zeros((), dtype=torch.float64)
    for mb in micro_batches:
        total += mb["loss_weights"].double().sum()
    if dist.is_initialized():
        if torch.cuda.is_available():
            total = total.cuda()
        dist.all_reduce(total, group=dp_group)
    return total


def weighted_nll(per_token_nll: torch.Tensor, loss_weights: torch.Tensor, weight_sum: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Megatron loss-function contract: `(loss, num_tokens, report)`.

    `loss` is this micro-batch's share of the global weighted mean; `num_tokens` (int) is the
    count of weighted tokens, which megatron accumulates but we do not divide by; `report`
    holds `[sum(w*nll), sum(w)]` so the step's loss can be logged exactly."""
    nll = per_token_nll.float()
    w = loss_weights.to(nll.device, torch.float32)
    weighted = (nll * w).sum()
    loss = weighted / weight_sum.to(nll.device, torch.float32).clamp(min=1e-12)
    num_tokens = (w > 0).sum().to(torch.int)
    report = torch.stack([weighted.detach().double(), w.sum().double()])
    return loss, num_tokens, {"weighted_nll": report}


def loss_func_for(loss_weights: torch.Tensor, weight_sum: torch.Tensor):
    """`loss_func(output_tensor)` for megatron's schedules (output = per-token NLL [b, s])."""
    return partial(weighted_nll, loss_weights=loss_weights, weight_sum=weight_sum)


def reduce_reports(reports, key: str, size: int) -> torch.Tensor:
    """Sum `report[key]` (float64 [size]) over this rank's micro-batches on the last pipeline
    stage, all-reduce over data x context parallel (each CP rank reports its share of the
    sequences) and broadcast from the last stage: every rank gets the global sums. The step's
    `weighted_nll` and validation's sums (`evaluation.py`) are reduced by this one rule."""
    from megatron.core import parallel_state as ps

    dev = torch.cuda.current_device() if torch.cuda.is_available() else torch.device("cpu")
    stats = torch.zeros(size, dtype=torch.float64, device=dev)
    if ps.is_pipeline_last_stage(ignore_virtual=True):
        for r in reports:
            stats += r[key].to(dev)
    dist.all_reduce(stats, group=ps.get_data_parallel_group(with_context_parallel=True))
    if ps.get_pipeline_model_parallel_world_size() > 1:
        dist.broadcast(stats, src=ps.get_pipeline_model_parallel_last_rank(),
                       group=ps.get_pipeline_model_parallel_group())
    return stats


def finalize_model_grads_without_token_scaling(model, num_tokens=None, **kwargs):
    """megatron's `finalize_model_grads` (DP reduce, tied-embedding sync) minus its division by
    the integer token count: our loss is already divided by the global weight sum."""
    from megatron.core.distributed import finalize_model_grads

    return finalize_model_grads(model, None, **kwargs)


def reference_weighted_nll(logits: torch.Tensor, labels: torch.Tensor,
                           loss_weights: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch L for a batch of full logits [b, s, V] (used by tests as an oracle)."""
    nll = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(),
                                            reduction="none")
    w = loss_weights.flatten().float()
    return (nll * w).sum() / w.sum()
