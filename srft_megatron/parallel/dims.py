"""The parallel layout of a run, validated before any process group exists, and its setup.

`ParallelDims` is the single object that says how the world is cut: tensor parallel (TP),
pipeline parallel (PP, optionally interleaved into `vpp` virtual stages per rank), context
parallel (CP, sequences split across ranks; Transformer Engine only) and data parallel (DP),
with TP x PP x CP x DP = world size. `initialize` turns it into megatron-core's
process groups (gloo on CPU, NCCL on GPU) and seeds the model-parallel RNG streams;
`destroy` tears them down so tests can switch layouts inside one launch.

Works from a `torchrun` process (reads RANK/WORLD_SIZE/MASTER_ADDR from the environment) and
from a plain single process (a world of one on a free local port).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from srft_megatron.errors import ConfigError
from srft_megatron.ports import free_port


@dataclass(frozen=True)
class ParallelDims:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    vpp: int | None = None  # virtual pipeline stages per PP rank (interleaved 1F1B)
    sequence_parallel: bool = False
    cp: int = 1  # context parallel: each sequence split across cp ranks (TE only)

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "cp"):
            if getattr(self, name) < 1:
                raise ConfigError(f"parallel.{name} must be >= 1, got {getattr(self, name)}")
        if self.vpp is not None:
            if self.vpp < 1:
                raise ConfigError(f"parallel.virtual_pipeline must be >= 1, got {self.vpp}")
            if self.pp == 1 and self.vpp > 1:
                raise ConfigError("parallel.virtual_pipeline > 1 needs parallel.pipeline > 1")
        if self.sequence_parallel and self.tp == 1:
            raise ConfigError("sequence parallelism needs parallel.tensor > 1")

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.cp * self.dp

    @classmethod
    def from_world(cls, world_size: int, tp: int = 1, pp: int = 1, vpp: int | None = None,
                   sequence_parallel: bool = False, cp: int = 1) -> "ParallelDims":
        """Infer DP from the world size; error if TP x PP x CP does not divide it."""
        if world_size % (tp * pp * cp):
            names, sizes = ("tensor x pipeline", f"{tp} x {pp}") if cp == 1 else \
                ("tensor x pipeline x context", f"{tp} x {pp} x {cp}")
            raise ConfigError(f"world size {world_size} is not divisible by {names} = {sizes}")
        return cls(tp=tp, pp=pp, dp=world_size // (tp * pp * cp), vpp=vpp,
                   sequence_parallel=sequence_parallel, cp=cp)

    def validate_model(self, *, num_layers: int, num_attention_heads: int, num_query_groups: int,
                       vocab_size: int) -> None:
        """Errors a model layout would hit deep inside megatron, raised up front."""
        if num_attention_heads % self.tp:
            raise ConfigError(f"parallel.tensor={self.tp} does not divide num_attention_heads="
                              f"{num_attention_heads}")
        if num_query_groups % self.tp:
            raise ConfigError(f"parallel.tensor={self.tp} does not divide num_query_groups="
                              f"{num_query_groups}")
        if vocab_size % self.tp:
            raise ConfigError(f"parallel.tensor={self.tp} does not divide vocab_size={vocab_size}")
        stages = self.pp * (self.vpp or 1)
        if num_layers % stages:
            raise ConfigError(f"num_layers={num_layers} is not divisible by pipeline x virtual "
                              f"stages = {stages}")


def world_from_env() -> tuple[int, int]:
    """(rank, world_size) of this process as torchrun sets them; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_process_group(timeout_minutes: int = 30) -> None:
    """Start torch.distributed (gloo on CPU, NCCL on GPU) if not started yet."""
    if dist.is_initialized():
        return
    rank, world = world_from_env()
    if "RANK" not in os.environ:  # plain single process: a world of one on a fresh port
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(free_port())
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=timeout_minutes))


def initialize(dims: ParallelDims, seed: int = 1234) -> None:
    """Create megatron-core's TP/PP/DP groups for `dims` and seed its RNG streams.

    megatron-core needs CUDA. A process without it (tests, CI, the CPU demo, local conversion)
    asks for the CPU shim itself, once, before this: `cpu_compat.enable_cpu_compat()` — as
    `srft train`, `srft convert` and the test workers do. It is never switched on here."""
    from megatron.core import parallel_state, tensor_parallel

    from srft_megatron.parallel.cpu_compat import cpu_compat_active

    if not torch.cuda.is_available() and not cpu_compat_active():
        raise ConfigError("no CUDA device in this process: megatron-core needs one; on a CPU machine call "
                          "srft_megatron.parallel.cpu_compat.enable_cpu_compat() first (srft train and "
                          "srft convert do)")
    init_process_group()
    world = dist.get_world_size()
    if dims.world_size != world:
        raise ConfigError(f"parallel layout tp={dims.tp} x pp={dims.pp} x cp={dims.cp} x dp={dims.dp} = "
                          f"{dims.world_size} does not match world size {world}")
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=dims.tp,
        pipeline_model_parallel_size=dims.pp,
        context_parallel_size=dims.cp,
        virtual_pipeline_model_parallel_size=dims.vpp if (dims.vpp or 1) > 1 else None,
    )
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def destroy(process_group: bool = False) -> None:
    """Tear down megatron's groups (and optionally torch.distributed itself)."""
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if process_group and dist.is_initialized():
        dist.destroy_process_group()
