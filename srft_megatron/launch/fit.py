"""The fit check `srft launch` runs on the training stage before anything is submitted.

Why here: a 32B job waits hours in a SLURM queue and an out-of-memory layout dies in its first
step. Before submitting, `srft launch` reads the training stage's own config (its `--config`
and dotted overrides, exactly what `srft train` will read), takes the layout it asks for on
the stage's `nodes x nproc_per_node` GPUs, and runs `srft plan`'s memory model on it
(`srft_megatron.plan.check_fits`: weights, gradients, optimizer state, activations, 10% kept
free). A layout that cannot fit, or cannot be formed on that many GPUs, is refused with the
numbers and a pointer to `srft plan`; nothing is submitted.

The GPU memory is the pipeline's `executor.gpu_memory_gb` (default 80: A100/H100 80 GB), or
`srft launch --gpu-memory-gb`. The check is skipped, with a line saying so, where it means
nothing: a pipeline without a train stage among those launched, the local executor (this
machine), or a train stage that asks for no GPUs (`gpus_per_node` unset on the stage and the
executor: CPU pipelines such as `tiny-cpu`), or a train stage with its own entry script
(`SRFT_ENTRY`, whose arguments need not be srft train's). `--no-fit-check` skips it on purpose (e.g. a
model the planner does not describe). Everything else about the config is checked by
`srft train` itself when the job starts (`training.preflight.validate`).

    srft launch qwen2.5-32b-128k --run-dir /lustre/runs/q128k --dry-run --gpu-memory-gb 141
"""

from __future__ import annotations

import argparse

from srft_megatron.errors import ConfigError
from srft_megatron.launch.pipeline import PipelineSpec, StageSpec


def train_stage_config(stage: StageSpec, where: str = "stages.train"):
    """The `SrftTrainConfig` the train stage will run: its `--config` file and dotted overrides."""
    from pathlib import Path

    from srft_megatron.commands.train import add_arguments
    from srft_megatron.training.config import load_config

    parser = argparse.ArgumentParser(prog="srft train", add_help=False)
    add_arguments(parser)
    try:
        args = parser.parse_args(stage.args)
    except SystemExit:
        raise ConfigError(f"{where}: arguments {stage.args} are not those of srft train "
                          "(--config FILE --run-dir DIR [section.key=value ...])") from None
    if not Path(args.config).is_file() and Path(args.config).suffix in (".yaml", ".yml"):
        raise ConfigError(f"{where}: training config {args.config} not found: write it there before launching the "
                          "train stage (srft launch checks that its layout fits the GPUs), or launch --stages "
                          "without train")
    return load_config(args.config, args.overrides)


def check_training_fits(spec: PipelineSpec, gpu_memory_gb: float | None = None) -> str:
    """Refuse (ConfigError) a train stage whose layout cannot fit its GPUs; else one line saying
    what was checked, or why nothing was."""
    from srft_megatron.model.configs import get_shape
    from srft_megatron.parallel.dims import ParallelDims
    from srft_megatron.plan import check_fits

    names = [s.name for s in spec.stages]
    if "train" not in names:
        return "fit check: no train stage launched"
    stage = spec.stage("train")
    gpus = stage.gpus_per_node or spec.executor.gpus_per_node
    if spec.executor.kind == "local" or not gpus:
        return "fit check skipped: the train stage asks for no GPUs (CPU pipeline)"
    if stage.env.get("SRFT_ENTRY"):
        return "fit check skipped: the train stage runs its own entry (SRFT_ENTRY), not srft train"
    memory = gpu_memory_gb if gpu_memory_gb is not None else spec.executor.gpu_memory_gb
    where = f"{spec.source}: stages.train"
    cfg = train_stage_config(stage, where)
    world = stage.nodes * stage.nproc_per_node
    p, m = cfg.parallel, cfg.model
    try:
        dims = ParallelDims.from_world(world, tp=p.tensor, pp=p.pipeline, vpp=p.virtual_pipeline,
                                       sequence_parallel=p.sequence_parallel, cp=p.context)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {stage.nodes} nodes x {stage.nproc_per_node} GPUs: {exc}") from None
    try:
        layout = check_fits(get_shape(m.name), seq_length=m.seq_length, tp=dims.tp, pp=dims.pp, cp=dims.cp,
                            dp=dims.dp, distributed_optimizer=p.distributed_optimizer, recompute=m.recompute,
                            gpu_memory_gb=memory, global_batch_size=cfg.train.global_batch_size,
                            precision=m.precision)
    except ConfigError as exc:
        raise ConfigError(f"{where} ({m.name}, seq_length {m.seq_length}, {world} GPUs of {memory:g} GiB): {exc}"
                          ) from None
    return (f"fit check: {m.name} at {m.seq_length} tokens, tp={layout.tp} pp={layout.pp} cp={layout.cp} "
            f"dp={layout.dp}: {layout.memory_gb['total']} GiB of {memory:g} GiB per GPU")

