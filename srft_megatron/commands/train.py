"""Train Qwen2.5 with the step-weighted (SRFT) loss on megatron-core.

    srft train --config configs/tiny.yaml --run-dir runs/tiny [section.key=value ...]
    torchrun --nproc-per-node 4 .venv/bin/srft train --config configs/tiny.yaml \\
        --run-dir runs/tiny parallel.tensor=2 parallel.pipeline=2

The config (model, data blend, parallelism, precision, optimizer, checkpointing, logging) is
printed at start; `section.key=value` arguments override it (e.g. `train.steps=50`,
`data.prefixes=[data/resolved,data/unresolved]`). Writes `RUN_DIR/metrics.jsonl` (one object
per step), `RUN_DIR/tensorboard/`, `RUN_DIR/checkpoints/`; re-running with the same run
directory resumes from its latest checkpoint. SIGTERM saves a checkpoint and exits.

Before any process group starts (and with --check, which stops there) the config and the data
are validated: every dataset reads, is non-empty and consistent with its index headers and
metadata, its token ids fit the model's vocabulary and its documents fit model.seq_length; the
initial and the resume checkpoint have all their files at their recorded sizes (their checksums
are verified when loaded). A failure is one line and exit code 2. During training a step with a
non-finite loss, weight sum or gradient, or a bad document, is skipped (exit 1 after
train.max_skipped_steps in a row); non-finite parameters are never saved.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config YAML (see configs/)")
    parser.add_argument("--run-dir", required=True,
                        help="directory for metrics.jsonl, tensorboard/, checkpoints/ (resumes if present)")
    parser.add_argument("--check", action="store_true",
                        help="validate the config (and datasets) and exit without training")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, e.g. train.steps=10 parallel.tensor=2")


def main(args: argparse.Namespace) -> int:
    from srft_megatron.parallel.dims import world_from_env
    from srft_megatron.training.config import load_config
    from srft_megatron.training.preflight import validate

    cfg = load_config(args.config, args.overrides)
    rank, world = world_from_env()
    validated = validate(cfg, world)  # the one validation: a clear error before any process group starts
    if cfg.checkpoint.resume:
        from pathlib import Path

        from srft_megatron.training.checkpoint import latest_checkpoint
        from srft_megatron.training.integrity import check_files

        latest = latest_checkpoint(Path(args.run_dir) / "checkpoints")
        if latest is not None:
            check_files(latest)  # missing or truncated files: refused before any process group
    if rank == 0:
        print("[srft train] config:\n" + cfg.to_yaml(), flush=True)
    if args.check:
        return 0
    from srft_megatron.parallel.cpu_compat import enable_cpu_compat
    from srft_megatron.parallel.dims import destroy
    from srft_megatron.training.trainer import Trainer

    enable_cpu_compat()  # this process runs megatron-core: on the CPU where it has no GPU (no-op with CUDA)

    try:
        return Trainer(cfg, args.run_dir, validated=validated).train()
    finally:
        destroy(process_group=True)
