"""Let megatron-core run on a machine without CUDA (tests and CI only).

megatron-core assumes a GPU: it builds tensors with `device="cuda"`, asks
`torch.cuda.current_device()` where to put buffers, keeps its model-parallel RNG streams in
CUDA generators, synchronises streams and dispatches its optimizers on
`tensor.type() == "torch.cuda.FloatTensor"`. With gloo and the local layer spec everything
else works on CPU (see /work/shared/notes/megatron-core-cpu.md), so this module bends exactly
those places back to the CPU:

* a process-wide `TorchFunctionMode` rewrites any `cuda` device argument to `cpu`, makes
  `Tensor.cuda()` / `pin_memory()` identities and reports CPU tensors' `.type()` as the CUDA
  type name the optimizers expect;
* `torch.cuda.current_device()` returns the CPU device; streams, events and synchronisation
  become no-ops;
* the CUDA RNG functions (and megatron's copies of them) use the CPU default generator, so
  `model_parallel_cuda_manual_seed` and the RNG tracker work and checkpoints capture state.

`enable_cpu_compat()` does nothing when CUDA is present, and is idempotent. Production code
never depends on it: it is called by the process-group setup only when `torch.cuda` is
unavailable.
"""

from __future__ import annotations

import contextlib
import threading

import torch
from torch.overrides import TorchFunctionMode

_ENABLED = False
_LOCK = threading.Lock()
_CPU = torch.device("cpu")


def _is_cuda_device(dev) -> bool:
    if isinstance(dev, torch.device):
        return dev.type == "cuda"
    if isinstance(dev, str):
        return dev.startswith("cuda")
    # A bare int means "cuda:<index>" for factory functions and Tensor.to.
    return isinstance(dev, int) and not isinstance(dev, bool)


class _CudaToCpuMode(TorchFunctionMode):
    """Rewrites CUDA device arguments to CPU for every torch call in the process."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name if ".cuda." in name else name.replace("torch.", "torch.cuda.", 1)
        if func in (torch.Tensor.cuda, torch.Tensor.pin_memory):
            return args[0]
        if func is torch.Tensor.is_pinned:
            return False
        if "device" in kwargs and _is_cuda_device(kwargs["device"]):
            kwargs["device"] = _CPU
        if func in (torch.Tensor.to, torch.Tensor.new_empty, torch.Tensor.new_zeros) and len(args) > 1:
            args = tuple(_CPU if (i == 1 and _is_cuda_device(a)) else a for i, a in enumerate(args))
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
        return func(*args, **kwargs)


class _NullStream:
    """Stand-in for `torch.cuda.Stream` / `Event`: every method is a no-op."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *a, **k: None

    def query(self) -> bool:
        return True

    def elapsed_time(self, other) -> float:
        return 0.0


@contextlib.contextmanager
def _null_context(*args, **kwargs):
    yield


def _patch_torch_cuda() -> None:
    cuda = torch.cuda
    cuda.current_device = lambda: _CPU
    cuda.set_device = lambda *a, **k: None
    cuda.synchronize = lambda *a, **k: None
    cuda.empty_cache = lambda *a, **k: None
    cuda.current_stream = lambda *a, **k: _NullStream()
    cuda.default_stream = lambda *a, **k: _NullStream()
    cuda.Stream = _NullStream
    cuda.Event = _NullStream
    cuda.stream = _null_context
    cuda.device = _null_context
    cuda.memory_allocated = lambda *a, **k: 0
    cuda.max_memory_allocated = lambda *a, **k: 0
    cuda.memory_reserved = lambda *a, **k: 0
    cuda.reset_peak_memory_stats = lambda *a, **k: None
    # RNG: the CPU default generator stands in for the (absent) CUDA one.
    cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
    cuda.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    # (torch.manual_seed itself calls torch.cuda.manual_seed_all, a no-op without CUDA.)
    cuda.manual_seed = lambda seed: torch.default_generator.manual_seed(int(seed))
    cuda.random.get_rng_state = cuda.get_rng_state
    cuda.random.set_rng_state = cuda.set_rng_state


def _patch_megatron() -> None:
    from megatron.core.tensor_parallel import random as mrandom

    mrandom._get_cuda_rng_state = lambda *a, **k: torch.get_rng_state()
    mrandom._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)


def enable_cpu_compat() -> bool:
    """Install the shim if CUDA is absent. Returns True when the shim is (now) active."""
    global _ENABLED
    if torch.cuda.is_available():
        return False
    with _LOCK:
        if _ENABLED:
            return True
        _patch_torch_cuda()
        _patch_megatron()
        # Entered for the rest of the process (never exited).
        _CudaToCpuMode().__enter__()
        _ENABLED = True
    return True


def cpu_compat_active() -> bool:
    return _ENABLED
