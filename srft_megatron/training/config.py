"""The `srft train` configuration: one YAML file, dataclass schema, dotted overrides.

    srft train --config configs/tiny.yaml --run-dir runs/tiny train.steps=50 parallel.tensor=2

Every section is a dataclass; unknown keys, wrong types and layouts that cannot work are
rejected here, with a one-line `ConfigError`, before any process group starts. `validate`
checks what can be checked from the files alone: the model shape, TP against heads, the
layers against PP, and the datasets (`_validate_data`, from their metadata and index headers:
non-empty and self-consistent, token ids inside the model's vocabulary, documents no longer
than the model's sequence, some weighted tokens) and the initial checkpoint's files.
"""

from __future__ import annotations

import dataclasses
import math
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
def sequence_multiple(cfg: SrftTrainConfig) -> int:
    """What every sequence length fed to the model must be a multiple of: 16 for FP8 GEMMs, and
    TP x CP under sequence parallelism (each CP rank's share is split across TP). `validate`
    checks `model.seq_length` against it; the trainer trims packed THD micro-batches to it."""
    p = cfg.parallel
    multiple = 16 if cfg.model.precision == "fp8" else 1
    if p.sequence_parallel:
        multiple = math.lcm(multiple, p.tensor * p.context)
    return multiple


def validate(cfg: SrftTrainConfig, world_size: int, *, check_data: bool = True):
    """Check everything that can fail before training starts; return (shape, ParallelDims).

    The one validation of a training config: `srft train` calls it before any process group
    starts and hands the result to `Trainer`, which builds from it (the `build` methods above)
    without checking again. Transformer Engine needs (FP8, sequence parallelism, THD micro-batch
    1, context parallelism) are checked here too (`_validate_engine`)."""
    from srft_megatron.model.configs import get_shape
    from srft_megatron.model.provider import FP8_RECIPES, PRECISIONS, check_fp8_scaling
    from srft_megatron.parallel.dims import ParallelDims

    shape = get_shape(cfg.model.name)
    if cfg.model.seq_length > shape.max_position_embeddings:
        raise ConfigError(f"model.seq_length={cfg.model.seq_length} exceeds {cfg.model.name}'s "
                          f"max_position_embeddings={shape.max_position_embeddings}")
    shape = shape.replace(seq_length=cfg.model.seq_length)
    if cfg.model.precision not in PRECISIONS:
        raise ConfigError(f"model.precision must be one of {PRECISIONS}, got {cfg.model.precision!r}")
    if cfg.model.fp8_recipe not in FP8_RECIPES:
        raise ConfigError(f"model.fp8_recipe must be one of {FP8_RECIPES}, got {cfg.model.fp8_recipe!r}")
    check_fp8_scaling(cfg.model.fp8_amax_history_len, cfg.model.fp8_amax_compute_algo,
                      cfg.model.fp8_margin, prefix="model.")
    p = cfg.parallel
    _validate_engine(cfg)
    dims = ParallelDims.from_world(world_size, tp=p.tensor, pp=p.pipeline, vpp=p.virtual_pipeline,
                                   sequence_parallel=p.sequence_parallel, cp=p.context)
    dims.validate_model(num_layers=shape.num_layers, num_attention_heads=shape.num_attention_heads,
                        num_query_groups=shape.num_query_groups, vocab_size=shape.vocab_size)
    multiple = sequence_multiple(cfg)
    if cfg.model.seq_length % multiple:
        raise ConfigError(f"model.seq_length={cfg.model.seq_length} must be a multiple of {multiple} "
                          f"(FP8 / sequence parallelism)")
    t = cfg.train
    if t.global_batch_size % (t.micro_batch_size * dims.dp):
        raise ConfigError(f"train.global_batch_size={t.global_batch_size} is not divisible by "
                          f"micro_batch_size x data-parallel = {t.micro_batch_size} x {dims.dp}")
    if p.virtual_pipeline and p.virtual_pipeline > 1:
        n_micro = t.global_batch_size // (t.micro_batch_size * dims.dp)
        if n_micro % p.pipeline:
            raise ConfigError(f"interleaved pipeline needs micro-batches per step ({n_micro}) to be a "
                              f"multiple of parallel.pipeline={p.pipeline}")
    if t.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {t.steps}")
    if t.max_skipped_steps < 1 or t.max_empty_steps < 0:
        raise ConfigError(f"train.max_skipped_steps must be >= 1 and train.max_empty_steps >= 0, got "
                          f"{t.max_skipped_steps} and {t.max_empty_steps}")
    if cfg.optimizer.decay_style not in ("cosine", "linear", "constant"):
        raise ConfigError("optimizer.decay_style must be cosine, linear or constant")
    _validate_eval(cfg, dims, shape if check_data else None)
    if check_data:
        _validate_data(cfg, shape)
    if t.init_from is not None:
        from srft_megatron.training.integrity import check_files

        if not (Path(t.init_from) / "srft_checkpoint.json").is_file():
            raise ConfigError(f"train.init_from={t.init_from} is not a complete srft checkpoint")
        check_files(t.init_from)  # missing / truncated files; checksums are verified on load
    return shape, dims


def _validate_engine(cfg: SrftTrainConfig) -> None:
    """What needs Transformer Engine, checked here rather than when megatron builds the model
    (after the process groups started): FP8 GEMMs, sequence parallelism (megatron-core's local
    spec has none), and THD packing, which takes one sequence per micro-batch; then CP."""
    use_te = cfg.model.resolve_use_te()
    _validate_context_parallel(cfg, use_te)
    if cfg.model.precision == "fp8" and not use_te:
        raise ConfigError("model.precision=fp8 needs Transformer Engine on a CUDA GPU (Hopper or newer); "
                          "it is not available here")
    if cfg.parallel.sequence_parallel and not use_te:
        raise ConfigError("parallel.sequence_parallel=true needs Transformer Engine on CUDA GPUs "
                          "(megatron-core's local spec has no sequence parallelism); it is not available here "
                          "(to check a GPU config on a machine without TE: model.use_te=true)")
    if use_te and cfg.data.pack and cfg.train.micro_batch_size != 1:
        raise ConfigError("packed THD sequences on Transformer Engine need train.micro_batch_size=1 "
                          "(pack more documents per sequence instead)")


def _validate_context_parallel(cfg: SrftTrainConfig, use_te: bool) -> None:
    """CP runs only on Transformer Engine (its attention exchanges K/V across CP ranks and takes
    the THD `cu_seqlens`); megatron-core's local spec has no CP attention at all. The trainer
    pads every document to a multiple of 2 x CP (`training/context_parallel.py`), so packed
    sequences and micro-batches of one are required."""
    cp = cfg.parallel.context
    if cp < 1:
        raise ConfigError(f"parallel.context must be >= 1, got {cp}")
    if cp == 1:
        return
    if not use_te:
        raise ConfigError(f"parallel.context={cp} needs Transformer Engine on CUDA GPUs (context-parallel "
                          f"THD attention); it is not available here (to check a GPU config on a machine "
                          f"without TE: model.use_te=true)")
    if not cfg.data.pack or cfg.train.micro_batch_size != 1:
        raise ConfigError("parallel.context > 1 needs packed THD sequences: data.pack=true, train.micro_batch_size=1")
    if cfg.model.seq_length % (2 * cp):
        raise ConfigError(f"model.seq_length={cfg.model.seq_length} must be a multiple of 2 x parallel.context "
                          f"= {2 * cp}")


def _validate_data(cfg: SrftTrainConfig, shape=None) -> list:
    """Every dataset of the blend, from its metadata and index headers (never its tokens): it
    reads, is non-empty and self-consistent (`check_dataset`), its token ids fit the model's
    vocabulary, its documents fit the model's sequence, and the blend has weighted tokens.
    Returns the `DatasetInfo`s."""
    from srft_megatron.dataset import check_dataset
    from srft_megatron.errors import DatasetError

    d = cfg.data
    if not d.prefixes:
        raise ConfigError("data.prefixes is empty: give at least one dataset prefix from `srft preprocess`")
    if d.weights is not None and len(d.weights) != len(d.prefixes):
        raise ConfigError(f"data.weights has {len(d.weights)} entries for {len(d.prefixes)} prefixes")
    if d.weights is not None and (min(d.weights) < 0 or sum(d.weights) <= 0):
        raise ConfigError("data.weights must be non-negative with a positive sum")
    infos = []
    for prefix in d.prefixes:
        try:
            info = check_dataset(prefix)
        except (FileNotFoundError, DatasetError) as exc:
            raise ConfigError(f"data.prefixes: {exc}") from None
        if shape is not None:
            _check_fits_model(info, cfg, shape)
        infos.append(info)
    used = [i for k, i in enumerate(infos) if d.weights is None or d.weights[k] > 0]
    if not any(i.weighted_tokens > 0 for i in used):
        names = ", ".join(f"{i.prefix} ({_policy(i)})" for i in used)
        raise ConfigError(f"data.prefixes: no dataset of the blend has a weighted token: {names} "
                          "(every loss weight is 0, training would learn nothing: check the policy and labels "
                          "given to srft preprocess)")
    return infos


def _validate_eval(cfg: SrftTrainConfig, dims, shape=None) -> None:
    """Validation settings (`training/evaluation.py`); with `shape`, the validation datasets too:
    they read, fit the model like the training data, and have the label channel (so do the
    training datasets a `validation_fraction` holds documents out of)."""
    from srft_megatron.dataset import LABEL_SUFFIXES, check_dataset
    from srft_megatron.errors import DatasetError
    from srft_megatron.training.data import held_out_documents

    d, t = cfg.data, cfg.train
    if not 0.0 <= d.validation_fraction < 1.0:
        raise ConfigError(f"data.validation_fraction must be in [0, 1), got {d.validation_fraction}")
    if d.validation_prefixes and d.validation_fraction > 0:
        raise ConfigError("give data.validation_prefixes or data.validation_fraction, not both")
    if t.eval_interval < 0:
        raise ConfigError(f"train.eval_interval must be >= 0 (0: no validation), got {t.eval_interval}")
    if cfg.logging.peak_tflops_per_gpu is not None and cfg.logging.peak_tflops_per_gpu <= 0:
        raise ConfigError(f"logging.peak_tflops_per_gpu must be > 0 or null, got {cfg.logging.peak_tflops_per_gpu}")
    if not t.eval_interval:
        return
    if not d.validation_prefixes and not d.validation_fraction:
        raise ConfigError(f"train.eval_interval={t.eval_interval} needs validation data: set "
                          "data.validation_prefixes=[PREFIX,...] or data.validation_fraction (e.g. 0.05)")
    per_step = t.micro_batch_size * dims.dp
    if t.eval_samples < 1 or t.eval_samples % per_step:
        raise ConfigError(f"train.eval_samples={t.eval_samples} must be a positive multiple of "
                          f"micro_batch_size x data-parallel = {per_step}")
    vpp = cfg.parallel.virtual_pipeline
    if vpp and vpp > 1 and (t.eval_samples // per_step) % cfg.parallel.pipeline:
        raise ConfigError(f"interleaved pipeline needs eval micro-batches ({t.eval_samples // per_step}) to be a "
                          f"multiple of parallel.pipeline={cfg.parallel.pipeline}: change train.eval_samples")
    if shape is None:
        return
    for key, prefixes in (("data.validation_prefixes", d.validation_prefixes),
                          ("data.prefixes", d.prefixes if d.validation_fraction else [])):
        for prefix in prefixes:
            try:
                info = check_dataset(prefix)
            except (FileNotFoundError, DatasetError) as exc:
                raise ConfigError(f"{key}: {exc}") from None
            _check_fits_model(info, cfg, shape)
            if "label_codes" not in info.meta or not all(s in (info.meta.get("files") or {}) for s in LABEL_SUFFIXES):
                raise ConfigError(f"{key}: dataset {prefix} has no label channel ({prefix}_labels), which per-label "
                                  "validation reads: re-run srft preprocess (it writes the channel)")
            if key == "data.prefixes" and len(held_out_documents(info.documents, d.validation_fraction,
                                                                 d.seed)) >= info.documents:
                raise ConfigError(f"data.validation_fraction={d.validation_fraction} holds out all {info.documents} "
                                  f"documents of {prefix}: nothing would be trained on it")


def _policy(info) -> str:
    policy = info.meta.get("policy")
    return f"policy {policy.get('name')}" if isinstance(policy, dict) else "no policy recorded"


def _check_fits_model(info, cfg: SrftTrainConfig, shape) -> None:
    """Token ids below the model's (padded) vocabulary; documents within model.seq_length + 1."""
    vocab, model = shape.vocab_size, cfg.model.name
    tok_vocab, max_id = info.tokenizer_vocab_size, info.max_token_id
    tokenizer = f"tokenizer {info.tokenizer_name}" if info.tokenizer_name else "its tokenizer"
    fix = ("pick a model whose vocabulary holds the tokenizer's (the tokenizer's own model, or "
           "model.name=tiny-qwen-vocab for a tiny one with Qwen2.5's vocabulary), or re-run srft preprocess "
           "with the model's tokenizer")
    if max_id is not None and max_id >= vocab:
        raise ConfigError(f"dataset {info.prefix}: largest token id {max_id} is not below model.name={model}'s "
                          f"vocabulary of {vocab} rows ({tokenizer}"
                          + (f", {tok_vocab} tokens" if tok_vocab else "") + f"): {fix}")
    if tok_vocab is not None and tok_vocab > vocab:
        raise ConfigError(f"dataset {info.prefix}: {tokenizer} has {tok_vocab} tokens, more than "
                          f"model.name={model}'s vocabulary of {vocab} rows: {fix}")
    seq = cfg.model.seq_length
    if info.max_document_tokens > seq + 1:
        cut = int((info.lengths > seq + 1).sum())
        pre = info.seq_length
        made = f"preprocessed with --seq-length {pre}" if pre is not None else "no --seq-length recorded"
        need = pre if pre is not None and pre >= info.max_document_tokens - 1 else info.max_document_tokens - 1
        raise ConfigError(
            f"dataset {info.prefix} ({made}) has documents of up to {info.max_document_tokens} tokens, longer "
            f"than model.seq_length={seq} + 1: {cut} of {info.documents} documents would be cut and their later "
            f"steps never trained; re-run srft preprocess with --seq-length {seq}, or raise model.seq_length "
            f"to {need}")
