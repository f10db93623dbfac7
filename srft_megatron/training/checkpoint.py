"""Megatron-core distributed checkpoints: model-only (initial weights) and full train state.

Both kinds are megatron-core `dist_checkpointing` directories (`torch_dist` format), so they
reshard on load: a checkpoint written at TP=2/PP=2 loads at TP=1/PP=1 and vice versa.

Directory layout::

    CKPT/                              one checkpoint (model-only or train state)
      metadata.json                    megatron dist-checkpoint metadata (format, versions)
      common.pt                        non-sharded objects (scheduler, trainer counters)
      __*.distcp, .metadata            torch.distributed.checkpoint shards
      srft_checkpoint.json             ours: {"format_version", "kind": "model"|"train",
                                       "step", "hf_config" (the Qwen2 shape), "parallel",
                                       "consumed_samples", "files": {path: {"size",
                                       "xxh3_128"}}, "checksum_seconds", ...}; written last, so
                                       its presence marks a complete checkpoint

    RUN_DIR/checkpoints/               what `srft train` writes
      iter_0000100/                    a train-state CKPT as above, one per save
      latest                           text: the name of the newest complete iter_* dir

Sharded keys: the model's standard megatron names under `model.` (`model0.`, `model1.` ... for
interleaved virtual pipeline chunks; the tensor keys themselves are global layer names, so
chunking does not change them). The train state adds `optimizer.` (distributed optimizer,
`dp_reshardable`: resumable at the same TP/PP, any DP), `rng_state` (one object per rank,
restored only when the layout matches), and the scheduler / counters as common objects.

The HF -> Megatron converter calls `save_model_checkpoint(model_chunks, dir, shape=shape)`;
the trainer loads that as its initial weights with `train.init_from=DIR`.

Integrity (`srft_megatron.training.integrity`): the marker records a checksum of every file;
both loaders verify them (and, after loading, that every parameter is finite) and refuse a
partial, truncated or corrupted checkpoint with one `CheckpointError` line naming the file. The
trainer never saves non-finite parameters (`Trainer.save`), so `latest` never points to them.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from srft_megatron.errors import CheckpointError, ConfigError
from srft_megatron.io import write_json
from srft_megatron.training.integrity import MARKER, read_marker  # noqa: F401  (read_marker: re-exported)

FORMAT_VERSION = 1
LATEST = "latest"


def _unwrap(module):
    while hasattr(module, "module"):
        module = module.module
    return module


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def model_sharded_state_dict(model_chunks: Sequence[torch.nn.Module]) -> dict[str, Any]:
    chunks = [_unwrap(c) for c in model_chunks]
    if len(chunks) == 1:
        return {"model": chunks[0].sharded_state_dict()}
    return {f"model{i}": c.sharded_state_dict() for i, c in enumerate(chunks)}


def _load_into_model(model_chunks, loaded: dict[str, Any], strict: bool = True) -> None:
    chunks = [_unwrap(c) for c in model_chunks]
    keys = ["model"] if len(chunks) == 1 else [f"model{i}" for i in range(len(chunks))]
    for chunk, key in zip(chunks, keys):
        chunk.load_state_dict(loaded[key], strict=strict)


def _save(sharded: dict[str, Any], ckpt_dir: Path, marker: dict[str, Any]) -> dict[str, Any]:
    """Write to `ckpt_dir.tmp`, checksum every file, write the marker, then rename into place
    (rank 0) once every rank is done. Returns the marker."""
    import time

    from megatron.core import dist_checkpointing

    from srft_megatron.training.integrity import ALGORITHM, checksum_directory

    tmp = ckpt_dir.with_name(ckpt_dir.name + ".tmp")
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    start = time.perf_counter()
    dist_checkpointing.save(sharded, str(tmp))
    _barrier()
    save_seconds = time.perf_counter() - start
    files, cost = checksum_directory(tmp)  # collective: every rank hashes a share
    marker = {"format_version": FORMAT_VERSION, **marker, "checksum_algorithm": ALGORITHM, "files": files,
              "bytes": int(cost["bytes"]), "save_seconds": round(save_seconds, 3),
              "checksum_seconds": round(cost["seconds"], 3)}
    if _rank() == 0:
        write_json(tmp / MARKER, marker)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        os.replace(tmp, ckpt_dir)
    _barrier()
    return marker


def verify(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """Checksums of every file against the marker (collective); raises CheckpointError."""
    from srft_megatron.training.integrity import verify_checkpoint

    return verify_checkpoint(ckpt_dir)


def non_finite_parameters(model_chunks) -> int:
    """How many parameter tensors hold a NaN or an infinity, summed over every rank."""
    bad = torch.zeros((), dtype=torch.float32)
    flags = [torch.isfinite(p.detach()).all() for c in model_chunks for p in c.parameters()]
    if flags:
        bad = (~torch.stack(flags)).sum().float()
    if dist.is_initialized():
        if torch.cuda.is_available():
            bad = bad.cuda()
        dist.all_reduce(bad)
    return int(bad.item())


def _refuse_non_finite(model_chunks, ckpt_dir) -> None:
    n = non_finite_parameters(model_chunks)
    if n:
        raise CheckpointError(f"checkpoint {ckpt_dir} holds non-finite parameters ({n} tensors with NaN or Inf); "
                              "refusing to load it")


def save_model_checkpoint(model_chunks: Sequence[torch.nn.Module], ckpt_dir: str | os.PathLike, *,
                          shape=None, step: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """Write a model-only dist checkpoint (the converter's output, the trainer's `init_from`)."""
    ckpt_dir = Path(ckpt_dir)
    marker = {"kind": "model", "step": step, "parallel": _layout(),
              "hf_config": shape.to_hf_config() if shape is not None else None, **(extra or {})}
    _save(model_sharded_state_dict(model_chunks), ckpt_dir, marker)
    return ckpt_dir


def load_model_checkpoint(model_chunks: Sequence[torch.nn.Module], ckpt_dir: str | os.PathLike,
                          *, strict: bool = True) -> dict[str, Any]:
    """Load model weights from a model-only or train-state checkpoint (any TP/PP), after
    verifying its checksums; refuses non-finite weights. The returned marker carries the
    verification report under "verification"."""
    from megatron.core import dist_checkpointing

    marker = read_marker(ckpt_dir)
    report = verify(ckpt_dir)
    with torch.no_grad():
        loaded = dist_checkpointing.load(model_sharded_state_dict(model_chunks), str(ckpt_dir))
        _load_into_model(model_chunks, loaded, strict=strict)
    _refuse_non_finite(model_chunks, ckpt_dir)
    return {**marker, "verification": report}


def _layout() -> dict[str, int]:
    from megatron.core import parallel_state as ps

    if not ps.model_parallel_is_initialized():
        return {"tp": 1, "pp": 1, "dp": 1}
    return {"tp": ps.get_tensor_model_parallel_world_size(),
            "pp": ps.get_pipeline_model_parallel_world_size(),
            "dp": ps.get_data_parallel_world_size()}


# ---- full train state ----------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    from megatron.core import tensor_parallel

    state = {"random": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(),
             "tracker": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _rng_sharded_object(state: dict[str, Any] | None):
    """One RNG object per rank, keyed by its place in the layout (as Megatron-LM does)."""
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    pp, tp, dp = (ps.get_pipeline_model_parallel_world_size(), ps.get_tensor_model_parallel_world_size(),
                  ps.get_data_parallel_world_size())
    return ShardedObject("rng_state", state, (pp, tp, dp),
                         (ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank(),
                          ps.get_data_parallel_rank()), replica_id=0)


OPTIM_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}


def _train_sharded_state_dict(model_chunks, optimizer, is_loading: bool,
                              rng: dict[str, Any] | None) -> dict[str, Any]:
    sharded = model_sharded_state_dict(model_chunks)
    sharded["optimizer"] = optimizer.sharded_state_dict(sharded, is_loading=is_loading,
                                                       metadata=OPTIM_METADATA)
    sharded["rng_state"] = _rng_sharded_object(rng)
    return sharded


def _init_optimizer_state(optimizer) -> None:
    """A fresh optimizer has no Adam state yet; the loading state dict needs its shapes (and,
    for torch's Adam, a `step`), so take one zero-gradient step first, as Megatron does.
    The loaded checkpoint then overwrites every value."""
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        if opt.optimizer is None or all(len(s) for s in opt.optimizer.state.values()) and opt.optimizer.state:
            continue
        if hasattr(opt, "_init_optimizer_states_with_dummy_values"):
            opt._init_optimizer_states_with_dummy_values()
        else:
            for group in opt.optimizer.param_groups:
                for param in group["params"]:
                    param.grad = torch.zeros_like(param)
            opt.optimizer.step()
            opt.optimizer.zero_grad()


def _restore_adam_step(optimizer, loaded_optimizer: dict[str, Any]) -> None:
    """torch Adam keeps its bias-correction counter in a per-parameter `step` tensor; megatron's
    dp_reshardable load leaves the dummy value from `_init_optimizer_state` there (measured:
    exp_avg/exp_avg_sq/main params come back exact, `step` does not). Restore it from the
    saved param groups so the first update after resume equals the uninterrupted one."""
    groups = (loaded_optimizer.get("optimizer") or {}).get("param_groups") or []
    steps = {g["step"] for g in groups if "step" in g}
    if len(steps) != 1:
        return
    step = float(steps.pop())
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        if opt.optimizer is None:
            continue
        for state in opt.optimizer.state.values():
            if "step" in state:
                state["step"] = torch.tensor(step, dtype=torch.float32)
        for group in opt.optimizer.param_groups:
            if "step" in group:
                group["step"] = step


def save_train_checkpoint(run_ckpt_dir: str | os.PathLike, step: int, *, model_chunks, optimizer,
                          scheduler, trainer_state: dict[str, Any], shape=None) -> Path:
    """Save everything needed for an exact resume as `RUN/checkpoints/iter_%07d`."""
    root = Path(run_ckpt_dir)
    ckpt_dir = root / f"iter_{step:07d}"
    sharded = _train_sharded_state_dict(model_chunks, optimizer, False, _rng_state())
    sharded["scheduler"] = scheduler.state_dict()
    sharded["trainer"] = dict(trainer_state)
    marker = {"kind": "train", "step": step, "parallel": _layout(),
              "consumed_samples": trainer_state.get("consumed_samples"),
              "hf_config": shape.to_hf_config() if shape is not None else None}
    _save(sharded, ckpt_dir, marker)
    if _rank() == 0:
        from srft_megatron.io import atomic_open

        with atomic_open(root / LATEST) as handle:
            handle.write(ckpt_dir.name + "\n")
    _barrier()
    return ckpt_dir


def latest_checkpoint(run_ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint `latest` names; None when there is no `latest`. A `latest` naming a
    directory that is gone or has no marker is refused (CheckpointError): starting over from
    step 0 in silence would overwrite the run."""
    path = Path(run_ckpt_dir) / LATEST
    if not path.is_file():
        return None
    name = path.read_text(encoding="utf-8").strip()
    ckpt = Path(run_ckpt_dir) / name
    if not name or not (ckpt / MARKER).is_file():
        raise CheckpointError(f"checkpoint {ckpt} named by {path} is "
                              f"{'missing' if not ckpt.is_dir() else 'incomplete (no ' + MARKER + ')'}; refusing to "
                              "resume (restore it, point latest at an earlier iter_*, or set checkpoint.resume=false)")
    return ckpt


def load_train_checkpoint(ckpt_dir: str | os.PathLike, *, model_chunks, optimizer,
                          scheduler) -> dict[str, Any]:
    """Restore model, optimizer, scheduler, RNG (same layout only), after verifying the
    checkpoint's checksums; return the trainer state (with the verification report under
    "verification")."""
    from megatron.core import dist_checkpointing

    marker = read_marker(ckpt_dir)
    if marker.get("kind") != "train":
        raise ConfigError(f"{ckpt_dir} is a {marker.get('kind')} checkpoint, not a train state")
    same_layout = marker.get("parallel") == _layout()
    saved_mp = {k: v for k, v in marker["parallel"].items() if k != "dp"}
    if saved_mp != {k: v for k, v in _layout().items() if k != "dp"}:
        raise ConfigError(f"resuming {ckpt_dir} needs the same tensor/pipeline layout "
                          f"{saved_mp} (use train.init_from to load only its weights at another layout)")
    report = verify(ckpt_dir)
    _init_optimizer_state(optimizer)
    with torch.no_grad():
        sharded = _train_sharded_state_dict(model_chunks, optimizer, True, None)
        if not same_layout:
            sharded.pop("rng_state")
        loaded = dist_checkpointing.load(sharded, str(ckpt_dir))
        _load_into_model(model_chunks, loaded)
        optimizer.load_state_dict(loaded["optimizer"])
        _restore_adam_step(optimizer, loaded["optimizer"])
    _refuse_non_finite(model_chunks, ckpt_dir)
    scheduler.load_state_dict(loaded["scheduler"])
    if same_layout and loaded.get("rng_state") is not None:
        _set_rng_state(loaded["rng_state"])
    return {**dict(loaded["trainer"]), "verification": report}
