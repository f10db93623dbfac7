"""The `srft train` configuration: one YAML file, dataclass schema, dotted overrides.

    srft train --config configs/tiny.yaml --run-dir runs/tiny train.steps=50 parallel.tensor=2

Every section is a dataclass; unknown keys and wrong types are rejected here, with a one-line
`ConfigError`; the sections' `build` methods make megatron-core's objects from them. Whether a
config can work (layout, engine, data, validation, initial checkpoint) is checked once, before
any process group starts, by `training/preflight.py`'s `validate`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from srft_megatron.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "tiny"                  # a name in QWEN2_SHAPES or a HF config.json / dir
    seq_length: int = 128               # tokens per (packed) training sequence
    precision: str = "bf16"             # bf16 | fp32 | fp8 (TE + Hopper)
    fp8_recipe: str = "delayed"         # delayed | tensorwise (current scaling)
    # Delayed scaling only; TE's DelayedScaling defaults, not megatron-core's (history 1, most_recent).
    fp8_amax_history_len: int = 1024    # steps of amax history per FP8 tensor
    fp8_amax_compute_algo: str = "max"  # max | most_recent: how the history gives the scale
    fp8_margin: int = 0                 # scale down by 2^margin for headroom
    recompute: str | None = None        # null | selective | full
    recompute_num_layers: int | None = None
    use_te: bool | None = None          # null: use Transformer Engine when it imports

    def resolve_use_te(self) -> bool:
        """`use_te`, or (null) whether Transformer Engine imports in this process."""
        from srft_megatron.model.provider import te_available

        return te_available() if self.use_te is None else self.use_te

    def build(self, shape, parallel: "ParallelConfig"):
        """megatron-core's `TransformerConfig` for `shape` under `parallel` (`model/provider.py`
        maps Qwen2 onto it), with the per-token loss normalisation SRFT needs (`training/loss.py`)."""
        from srft_megatron.model.provider import transformer_config

        return transformer_config(
            shape, precision=self.precision, tp=parallel.tensor, pp=parallel.pipeline,
            vpp=parallel.virtual_pipeline, cp=parallel.context, sequence_parallel=parallel.sequence_parallel,
            fp8_recipe=self.fp8_recipe, fp8_amax_history_len=self.fp8_amax_history_len,
            fp8_amax_compute_algo=self.fp8_amax_compute_algo, fp8_margin=self.fp8_margin,
            recompute=self.recompute, recompute_num_layers=self.recompute_num_layers,
            use_te=self.resolve_use_te(), per_token_loss=True)


@dataclass
class DataConfig:
    prefixes: list[str] = field(default_factory=list)  # dataset prefixes written by `srft preprocess`
    weights: list[float] | None = None  # blend weights (null: proportional to size)
    pack: bool = True                   # several whole trajectories per sequence
    seed: int = 1234
    cache_dir: str | None = None
    # Validation (training/evaluation.py): whole datasets with the label channel, or a fraction of
    # the training documents held out (seeded by `seed`, never trained); at most one of the two.
    validation_prefixes: list[str] = field(default_factory=list)
    validation_fraction: float = 0.0


@dataclass
class ParallelConfig:
    tensor: int = 1
    pipeline: int = 1
    virtual_pipeline: int | None = None  # interleaved 1F1B: model chunks per pipeline rank
    sequence_parallel: bool = False      # needs TE and tensor > 1
    distributed_optimizer: bool = True
    context: int = 1                     # context parallel (CP): needs TE (THD split, training/context_parallel.py)

    def build_ddp_config(self):
        """megatron-core's `DistributedDataParallelConfig`: fp32 gradient reduction (exact sums of
        the SRFT loss's shares), no overlap, the distributed optimizer as configured."""
        from megatron.core.distributed import DistributedDataParallelConfig

        return DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False,
                                             use_distributed_optimizer=self.distributed_optimizer)


@dataclass
class OptimizerConfig:
    lr: float = 1e-5
    min_lr: float = 1e-6
    warmup_steps: int = 0
    decay_style: str = "cosine"          # cosine | linear | constant
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0

    def build(self, *, precision: str, distributed_optimizer: bool):
        """megatron-core's `OptimizerConfig` (Adam; fp32 main parameters under bf16/fp8)."""
        import torch
        from megatron.core.optimizer import OptimizerConfig as MegatronOptimizerConfig

        bf16 = precision in ("bf16", "fp8")
        return MegatronOptimizerConfig(
            optimizer="adam", lr=self.lr, min_lr=self.min_lr, weight_decay=self.weight_decay,
            adam_beta1=self.adam_beta1, adam_beta2=self.adam_beta2, adam_eps=self.adam_eps,
            clip_grad=self.clip_grad, bf16=bf16, params_dtype=torch.bfloat16 if bf16 else torch.float32,
            use_distributed_optimizer=distributed_optimizer,
            # A constant scale of 1 changes no number but gives the mixed-precision and distributed
            # optimizers a grad scaler, hence megatron-core's found-inf check and skip.
            loss_scale=1.0)

    def build_scheduler(self, optimizer, steps: int):
        """megatron-core's `OptimizerParamScheduler` over `steps`: linear warm-up from 0 (at most
        steps - 1 steps), then `decay_style` down to `min_lr`; constant weight decay."""
        from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

        warmup = min(self.warmup_steps, steps - 1) if steps > 1 else 0
        return OptimizerParamScheduler(
            optimizer, init_lr=0.0 if warmup else self.lr, max_lr=self.lr, min_lr=self.min_lr,
            lr_warmup_steps=warmup, lr_decay_steps=steps, lr_decay_style=self.decay_style,
            start_wd=self.weight_decay, end_wd=self.weight_decay, wd_incr_steps=steps,
            wd_incr_style="constant")


@dataclass
class TrainConfig:
    steps: int = 100
    global_batch_size: int = 8          # sequences per optimizer step (all micro-batches, all DP ranks)
    micro_batch_size: int = 1
    seed: int = 1234
    init_from: str | None = None        # model-only or train checkpoint to start from (any TP/PP)
    exit_after_step: int | None = None  # stop (with a checkpoint) after this step, e.g. for tests
    # A step whose loss, weight sum or gradients are not finite (or whose data is bad) is not
    # applied; this many in a row stop the run (exit 1). >= 1.
    max_skipped_steps: int = 3
    # If the first this-many steps all have zero weighted tokens, stop (exit 1): the data trains
    # nothing (a policy masking every step, the wrong datasets). 0: never stop for that.
    max_empty_steps: int = 10
    eval_interval: int = 0              # per-label validation NLL every N steps, before the first and at the end (0: off)
    eval_samples: int = 8               # validation sequences per eval (a multiple of micro_batch_size x data-parallel)


@dataclass
class CheckpointConfig:
    save_interval: int = 0              # save every N steps (0: only at exit)
    save_on_exit: bool = True           # at the end, and on SIGTERM/SIGINT (pre-emption)
    resume: bool = True                 # continue from RUN_DIR/checkpoints/latest if present


@dataclass
class LoggingConfig:
    log_interval: int = 1
    tensorboard: bool = True
    wandb_project: str | None = None
    wandb_run_name: str | None = None
    peak_tflops_per_gpu: float | None = None  # dense peak of one GPU (e.g. 989 for H100 bf16): `mfu` per step (null: not reported)


@dataclass
class SrftTrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---- building from dicts with type checks ---------------------------------------------------
def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                return float(value)  # YAML reads 1e-5 as a string
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key {where + '.' if where else ''}{unknown[0]} "
                          f"(valid: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, key)
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw != "" else None))
    return out


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (`srft_megatron/configs/NAME.yaml`)."""
    return sorted(p.name[:-len(".yaml")] for p in resources.files("srft_megatron.configs").iterdir()
                  if p.name.endswith(".yaml"))


def resolve_config(path: str | os.PathLike) -> Path:
    """A config file as given, else a shipped config by name (`--config tiny`)."""
    given = Path(path)
    if given.is_file():
        return given
    # by name: a bare name in the shipped list (names hold dots, "qwen2.5-7b": no suffix test)
    if given.name == str(path) and given.name in shipped_configs():
        return Path(str(resources.files("srft_megatron.configs").joinpath(f"{given.name}.yaml")))
    raise ConfigError(f"config file {path} not found (shipped configs, by name: {', '.join(shipped_configs())})")


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> SrftTrainConfig:
    """Read the YAML file, apply `section.key=value` overrides, build and type-check."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = resolve_config(path)
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(tree, key, value)
    return _build(SrftTrainConfig, tree, "")


# ---- semantic validation (before any process group) ------------------------------------------
