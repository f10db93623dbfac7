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

`enable_cpu_compat()` does nothing when CUDA is present, and is idempotent;
`disable_cpu_compat()` undoes every patch (tests that run megatron-core in the test process
enable it for their module only). Production code never depends on it: it is called by the
process-group setup only when `torch.cuda` is unavailable.
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
        # Only `Tensor.to` takes a device positionally (`x.to("cuda")`, `x.to(0)`); the positional
        # arguments of `new_zeros`/`new_empty` are sizes, and an int there is a size, not a device.
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda_device(args[1]):
            args = (args[0], _CPU, *args[2:])
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


_SAVED: list[tuple[object, str, object]] = []   # (owner, attribute, original) to undo the patches
_MODE: TorchFunctionMode | None = None


def _set(owner, name: str, value) -> None:
    _SAVED.append((owner, name, getattr(owner, name)))
    setattr(owner, name, value)


class _Patcher:
    """`cuda.x = v` records the original so `disable_cpu_compat` can put it back."""

    def __init__(self, owner):
        object.__setattr__(self, "_owner", owner)

    def __getattr__(self, name):
        return getattr(self._owner, name)

    def __setattr__(self, name, value):
        _set(self._owner, name, value)


def _patch_torch_cuda() -> None:
    cuda = _Patcher(torch.cuda)
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
    random = _Patcher(torch.cuda.random)
    random.get_rng_state = torch.cuda.get_rng_state
    random.set_rng_state = torch.cuda.set_rng_state


def _patch_megatron() -> None:
    from megatron.core.tensor_parallel import random as mrandom

    _set(mrandom, "_get_cuda_rng_state", lambda *a, **k: torch.get_rng_state())
    _set(mrandom, "_set_cuda_rng_state", lambda state, *a, **k: torch.set_rng_state(state))


def enable_cpu_compat() -> bool:
    """Install the shim if CUDA is absent. Returns True when the shim is (now) active."""
    global _ENABLED, _MODE
    if torch.cuda.is_available():
        return False
    with _LOCK:
        if _ENABLED:
            return True
        _patch_torch_cuda()
        _patch_megatron()
        _MODE = _CudaToCpuMode()
        _MODE.__enter__()   # until disable_cpu_compat() (a training process keeps it to its end)
        _ENABLED = True
    return True


def disable_cpu_compat() -> None:
    """Undo `enable_cpu_compat`: leave the device mode and restore every patched attribute.

    For tests that run megatron-core in the test process: the shim is theirs for their
    duration only, so the rest of the suite sees an unpatched torch in any test order."""
    global _ENABLED, _MODE
    with _LOCK:
        if not _ENABLED:
            return
        _MODE.__exit__(None, None, None)
        _MODE = None
        while _SAVED:
            owner, name, original = _SAVED.pop()
            setattr(owner, name, original)
        _ENABLED = False


def cpu_compat_active() -> bool:
    return _ENABLED
