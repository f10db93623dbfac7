"""Preflight: everything about a training config that can fail, checked before any process group.

    shape, dims = validate(cfg, world_size)      # srft train calls it once, then Trainer(cfg, ..., checked)

`validate` checks what can be checked from the config and the files alone: the model shape, the
engine (Transformer Engine for FP8, sequence parallelism, THD and context parallelism), TP
against heads, the layers against PP, batch sizes against the layout, the datasets
(`_validate_data`, from their metadata and index headers: non-empty and self-consistent, token
ids inside the model's vocabulary, documents no longer than the model's sequence, some weighted
tokens), the validation set and the initial checkpoint's files. Why a module of its own: the
schema (`config.py`) says what a config is; this says whether it can run, and a refusal here costs
seconds instead of a queue wait and a cluster start-up.
"""

from __future__ import annotations

import math
from pathlib import Path

from srft_megatron.errors import ConfigError
from srft_megatron.training.config import SrftTrainConfig


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
