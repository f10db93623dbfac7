"""The CUDA->CPU shim bends device arguments only, and leaves torch as it found it when disabled."""

import pytest
import torch

from srft_megatron.parallel import cpu_compat

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the shim is a no-op where CUDA exists")


@pytest.fixture
def shim():
    was_active = cpu_compat.cpu_compat_active()
    assert cpu_compat.enable_cpu_compat()
    yield
    if not was_active:
        cpu_compat.disable_cpu_compat()


def test_sizes_stay_sizes_and_devices_become_cpu(shim):
    x = torch.ones(2)
    assert x.new_zeros(4, 3).shape == (4, 3)          # an int size is not a "cuda:4" device
    assert x.new_empty(5).shape == (5,)
    assert x.to("cuda").device.type == "cpu"
    assert x.to(0).device.type == "cpu"                # a bare int in Tensor.to is a CUDA index
    assert x.to(torch.float64).dtype == torch.float64
    assert torch.zeros(3, device="cuda").device.type == "cpu"
    assert x.cuda() is x
    assert x.type() == "torch.cuda.FloatTensor"       # what megatron's optimizers dispatch on
    assert torch.cuda.current_device() == torch.device("cpu")


def test_disable_restores_torch():
    cpu_compat.disable_cpu_compat()                    # whatever earlier tests in this process left on
    from megatron.core.tensor_parallel import random as mrandom
    originals = (torch.cuda.current_device, torch.cuda.get_rng_state, mrandom._get_cuda_rng_state)
    assert torch.cuda.current_device.__module__.startswith("torch.cuda")
    cpu_compat.enable_cpu_compat()
    assert torch.cuda.current_device is not originals[0]
    assert mrandom._get_cuda_rng_state is not originals[2]
    cpu_compat.disable_cpu_compat()
    assert (torch.cuda.current_device, torch.cuda.get_rng_state, mrandom._get_cuda_rng_state) == originals
    assert torch.ones(2).type() == "torch.FloatTensor"
    with pytest.raises((RuntimeError, AssertionError)):
        torch.zeros(1, device="cuda")                 # no CUDA here, and no shim any more
