"""Training throughput table: tokens/s and TFLOP/s per GPU for Qwen2.5 shapes and precisions.

    .venv/bin/python bench/train.py                                   # GPU: 0.5b, 1.5b x bf16, fp8
    .venv/bin/python bench/train.py --models tiny --precisions fp32 --steps 5 --seq-length 128  # CPU
    torchrun --nproc-per-node 8 bench/train.py --models qwen2.5-7b --tp 2

Each row trains `--steps` optimizer steps of the real `srft train` path (packed synthetic
documents with SRFT-like weight spans, weighted NLL, distributed optimizer) after `--warmup`
untimed steps, and reports the median step. TFLOP/s are Megatron-LM's
`num_floating_point_operations` on real (non-padding) tokens with the causal halving of core
attention per document (see srft_megatron/training/metrics.py). Until issue 18 that term was
counted non-causal, overstating TFLOP/s for full-length documents by 5% / 32% (7B at 4k / 32k),
4% / 25% (32B), 15% / 59% (0.5B); MFU is against `--peak-tflops` (default: datasheet H100 SXM dense BF16
989, FP8 1979; bench/gpu_check.sh passes the measured bf16 matmul rate). `--json PATH` also
writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEAK = {"bf16": 989.0, "fp8": 1979.0, "fp32": 67.0}


def make_data(prefix: Path, vocab: int, seq_length: int, n_docs: int = 256) -> Path:
    from srft_megatron.dataset import DatasetWriter

    rng = np.random.RandomState(0)
    with DatasetWriter(prefix) as writer:
        for _ in range(n_docs):
            n = int(rng.randint(seq_length // 4, seq_length))
            w = (rng.rand(n) > 0.4).astype(np.float32)
            writer.add(rng.randint(1, min(vocab, 150000), n).astype(np.int32), w)
        writer.commit({"source": "bench synthetic"})
    return prefix


def run_one(model: str, precision: str, args, data: Path, run_dir: Path) -> dict:
    from srft_megatron.parallel.dims import destroy
    from srft_megatron.training.config import load_config
    from srft_megatron.training.trainer import Trainer

    steps = args.warmup + args.steps
    cfg = load_config(None, [
        f"model.name={model}", f"model.precision={precision}", f"model.seq_length={args.seq_length}",
        f"data.prefixes=[{data}]", f"parallel.tensor={args.tp}", f"parallel.pipeline={args.pp}",
        f"train.steps={steps}", f"train.global_batch_size={args.global_batch}",
        f"train.micro_batch_size={args.micro_batch}", "logging.tensorboard=false",
        "checkpoint.save_on_exit=false", "checkpoint.resume=false",
        *( ["model.recompute=full"] if args.recompute else [])])
    trainer = Trainer(cfg, run_dir)
    records = []
    try:
        while trainer.step < steps:
            records.append(trainer.train_step())
    finally:
        destroy()
    timed = records[args.warmup:]
    t = statistics.median(r["step_time_s"] for r in timed)
    tokens = statistics.median(r["tokens"] for r in timed)
    tflops = statistics.median(r["tflops_per_gpu"] for r in timed)
    return {"model": model, "precision": precision, "seq": args.seq_length, "tokens/step": int(tokens),
            "step_s": t, "tokens/s": tokens / t, "TFLOP/s/GPU": tflops,
            "MFU%": 100 * tflops / (args.peak_tflops or PEAK[precision]), "loss": timed[-1]["loss"]}


def main() -> int:
    from srft_megatron.parallel.cpu_compat import enable_cpu_compat

    enable_cpu_compat()  # `--models tiny` on a CPU machine (no-op with CUDA)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b", help="comma-separated shape names")
    p.add_argument("--precisions", default="bf16,fp8", help="comma-separated: bf16, fp8, fp32")
    p.add_argument("--seq-length", type=int, default=4096, help="packed sequence length")
    p.add_argument("--global-batch", type=int, default=8, help="sequences per step")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch")
    p.add_argument("--tp", type=int, default=1, help="tensor parallel size")
    p.add_argument("--pp", type=int, default=1, help="pipeline parallel size")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--recompute", action="store_true", help="full activation recompute")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s per GPU for MFU")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()

    import torch.distributed as dist

    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import te_available

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            data = make_data(Path(tmp) / f"data-{model}", get_shape(model).vocab_size, args.seq_length)
            for precision in args.precisions.split(","):
                if precision == "fp8" and not te_available():
                    print(f"skip {model} fp8: Transformer Engine not available", file=sys.stderr)
                    continue
                rows.append(run_one(model, precision, args, data, Path(tmp) / f"run-{model}-{precision}"))
    if dist.is_initialized():
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank != 0:
            return 0
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    cols = ["model", "precision", "seq", "tokens/step", "step_s", "tokens/s", "TFLOP/s/GPU", "MFU%", "loss"]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(c), *(len(fmt(r[c])) for r in rows)) if rows else len(c) for c in cols]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(fmt(r[c]).ljust(w) for c, w in zip(cols, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
