"""Per-step metrics: loss, weighted-token fraction, tokens/s, TFLOP/s per GPU, MFU, peak memory,
grad norm, LR; and the validation metrics of each eval.

Written by the global rank 0 to `RUN_DIR/metrics.jsonl` (one JSON object per optimizer step,
appended and flushed, so a killed run keeps the steps it finished), to TensorBoard
(`RUN_DIR/tensorboard`) and to Weights & Biases when `logging.wandb_project` is set. A step that
was not applied says so: `skipped` (with `skip_reason`: bad data, non-finite loss or gradients)
or `empty` (no weighted token); its `loss`/`grad_norm` are null when there are none.

Per step also: `peak_memory_gb` with `memory_kind` (`cuda_max_allocated`: the largest
`torch.cuda.max_memory_allocated` of any rank since the start; `cpu_max_rss`: the largest
resident set of any rank's process, `resource.getrusage`, on CPU) and, when
`logging.peak_tflops_per_gpu` is set, `mfu` = tflops_per_gpu / that peak.

Validation (`training/evaluation.py`) writes *separate* records, one per eval: `{"step": k,
"val/loss": ..., "val/nll/<label>": ..., "val/nll/resolved": ..., "val/nll/unresolved": ...,
"val/tokens": ..., "val/time_s": ...}` where k is the number of steps trained when the model was
measured (0: before the first step); such a record has no `loss` key (`is_eval_record`). Keys
holding a `/` keep their own namespace in TensorBoard / W&B (`val/...`); the others are logged
under `train/`.

FLOPs are exactly Megatron-LM's `num_floating_point_operations(args, batch_size,
seqlen_squared_sum_in_batch, total_real_tokens_in_batch)` (NVIDIA/Megatron-LM d98e8a64,
megatron/training/training.py line 802, its dense MHA/GQA branch) for a dense GPT with
grouped-query attention and SwiGLU: 3 (forward, dgrad, wgrad) x 2 (multiply-add) x [QKV + output
projections, SwiGLU MLP, logits per real token, plus core attention (QK^T and AV) over the causal
half of each document's n_d^2 score pairs]. `real_tokens` is their `total_real_tokens_in_batch`
(padding of packed sequences excluded) and `attn_pairs` their `seqlen_squared_sum_in_batch`
(sum of n_d^2 over packed documents, which do not attend to each other).
tests/training/test_gpu_path.py transcribes that function and compares.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


def is_eval_record(record: dict[str, Any]) -> bool:
    """A validation record of metrics.jsonl (as opposed to a training step's)."""
    return any(key.startswith("val/") for key in record)


def peak_memory() -> tuple[float, str]:
    """(GB, kind): the peak memory of the most loaded rank so far (see module docstring). A
    collective (MAX over all ranks) when torch.distributed is running: every rank calls it."""
    if torch.cuda.is_available():
        value, kind = torch.cuda.max_memory_allocated() / 1e9, "cuda_max_allocated"
    else:
        import resource

        value, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, "cpu_max_rss"  # KiB on Linux
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([value], dtype=torch.float64,
                         device=torch.cuda.current_device() if torch.cuda.is_available() else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        value = float(t)
    return value, kind


def step_flops(shape, real_tokens: int, attn_pairs: int) -> float:
    """Training FLOPs of one step over `real_tokens` tokens and sum(n_d^2) = `attn_pairs`."""
    h, layers = shape.hidden_size, shape.num_layers
    q = shape.num_attention_heads * shape.kv_channels
    kv = 2 * shape.num_query_groups * shape.kv_channels
    per_token = (
        layers * (h * (q + kv) + q * h          # QKV and output projections
                  + 3 * h * shape.ffn_hidden_size)  # SwiGLU: gate, up, down
        + h * shape.vocab_size                  # logits
    )
    # QK^T and AV (2 GEMMs) over the causal half of each document's n_d^2 pairs.
    attention = layers * q * attn_pairs / 2 * 2
    return 3.0 * 2.0 * (per_token * real_tokens + attention)


class MetricsWriter:
    """Rank-0 sink for step metrics (JSONL always; TensorBoard / W&B when configured)."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, tensorboard: bool = True,
                 wandb_project: str | None = None, wandb_run_name: str | None = None,
                 config: dict[str, Any] | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if wandb_project:
            import wandb  # optional: only when configured

            self._wandb = wandb.init(project=wandb_project, name=wandb_run_name, config=config)
        self._last = time.perf_counter()

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        # strict JSON: a NaN or an infinity (a skipped step's loss, say) is written as null
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")
        self._file.flush()
        step = record["step"]
        named = {(k if "/" in k else f"train/{k}"): v for k, v in record.items() if k != "step"}
        if self._tb is not None:
            for key, value in named.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(named, step=step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
